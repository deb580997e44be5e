//! `fedroute demo` with small sizes: every request gets its reply, the
//! researcher restart is survived, and the summary says "0 lost".

use crate::cli_support;

use cli_support::*;

#[test]
fn demo_with_small_sizes_loses_nothing() {
    let child = fedroute(
        &[
            "demo",
            "--pings",
            "6",
            "--rounds",
            "2",
            "--model-size",
            "256KiB",
            "--timeout",
            "20",
        ],
        "error",
    )
    .spawn()
    .unwrap();
    let (status, stdout, stderr) = output_bounded(child, PROCESS_BOUND);
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(stdout.contains("\n0 lost"), "{stdout}");
    assert!(stdout.contains("3/3 nodes reconnected"), "{stdout}");
    assert!(stdout.contains("new certificate"), "{stdout}");
    assert!(
        stdout.contains("3/3 nodes accepted the rotated certificate by its proof"),
        "{stdout}"
    );
    // 3 nodes x (6 pings + 1 search + 2 rounds).
    let total = stdout.lines().find(|l| l.starts_with("total")).unwrap();
    let counts: Vec<&str> = total.split_whitespace().skip(1).take(2).collect();
    assert_eq!(counts, ["27", "27"], "{total}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn no_sub_command_is_the_demo() {
    let out = fedroute(&["--help"], "off").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("default: demo"), "{help}");
    let out = fedroute(&["demo", "--help"], "off").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("[default: 16MiB]"), "{help}");
}
