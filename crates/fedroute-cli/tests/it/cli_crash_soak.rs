//! `fedroute bench --crash-soak` in short: a researcher and three nodes as
//! processes with their own state directories, each SIGKILLed at random
//! moments and restarted on the same state; every request accepted is
//! answered once (its reply or a NoReply), none twice.

use crate::cli_support;

use cli_support::*;

/// The summary line's numbers: (seconds, kills, sent, delivered,
/// duplicates, lost).
fn figures(line: &str) -> Option<[u64; 6]> {
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    nums.try_into().ok()
}

#[test]
fn twenty_seconds_of_kills_lose_and_duplicate_nothing() {
    let child = fedroute(
        &[
            "bench",
            "--crash-soak",
            "20",
            // Multi-frame models (frames are about 4 MB) but small enough
            // for a debug build on two cores.
            "--crash-soak-max-payload",
            "6MiB",
            // Bounds the drain (timeout + 15 s) and so the test.
            "--crash-soak-timeout",
            "10",
        ],
        "error",
    )
    .spawn()
    .unwrap();
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = output_bounded(child, PROCESS_BOUND);
    let took = started.elapsed();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("crash-soak: ") && l.contains(" kills: "))
        .unwrap_or_else(|| panic!("no summary line ({status}):\n{stdout}\n{stderr}"));
    let [seconds, kills, sent, delivered, duplicates, lost] =
        figures(line).unwrap_or_else(|| panic!("not the summary form: {line}"));
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert_eq!((duplicates, lost), (0, 0), "{stdout}");
    assert!(kills >= 5, "{stdout}");
    assert!(seconds >= 20, "{stdout}");
    assert!(sent > 0 && delivered > 0, "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" kills: ")).count(),
        1,
        "{stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("{line} (in {took:?})");
}

#[test]
fn the_summary_line_reads_back() {
    assert_eq!(
        figures("crash-soak: 20 s, 7 kills: sent 10 / delivered 9 / duplicates 0 / lost 1"),
        Some([20, 7, 10, 9, 0, 1])
    );
    assert_eq!(figures("crash-soak: 20 s"), None);
}
