//! Test support for the `fedroute` process tests: the binary, free ports,
//! and bounded waits for child processes.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Bound on any one process the tests run.
pub const PROCESS_BOUND: Duration = Duration::from_secs(90);

/// The `fedroute` binary under test.
pub fn fedroute_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("fedroute")
}

/// The variable `fedroute` reads its default state directory from.
pub const STATE_DIR_ENV: &str = "FEDROUTE_STATE_DIR";

/// A fresh state directory for one `fedroute` process, under the target
/// directory (git-ignored), so that tests neither share trust stores and
/// identities nor write into the user's home. `--state-dir` still wins.
pub fn test_state_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bin = fedroute_bin();
    let base = bin
        .parent()
        .map_or_else(std::env::temp_dir, |d| d.join("test-state"));
    base.join(format!("{}-{n}", std::process::id()))
}

/// `fedroute` with the given arguments and logging as asked, with a state
/// directory of its own ([`test_state_dir`]).
pub fn fedroute(args: &[&str], rust_log: &str) -> Command {
    let mut cmd = Command::new(fedroute_bin());
    cmd.args(args)
        .env(STATE_DIR_ENV, test_state_dir())
        .env("RUST_LOG", rust_log)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits for `child` at most `bound`; kills it (and fails) when it overruns.
pub fn wait_bounded(child: &mut Child, bound: Duration) -> ExitStatus {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the fedroute process did not finish within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child's whole output once it finished (bounded).
pub fn output_bounded(mut child: Child, bound: Duration) -> (ExitStatus, String, String) {
    use std::io::Read;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, bound);
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Sends SIGINT (what Ctrl-C sends) to `child`.
pub fn interrupt(child: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT failed");
}

/// Set in a test binary re-run by [`rerun_alone`]: the test it runs.
const ALONE_VAR: &str = "FEDROUTE_TEST_ALONE";

/// For a test that needs process-wide state of its own (the global logger,
/// rustls' default crypto provider), which the other tests of the same
/// binary would share: runs `test` (its full path, `module::name`) again in
/// a child process of this test binary, alone, and fails when it fails
/// there (bounded by [`PROCESS_BOUND`]). Such children run one at a time.
///
/// Returns `true` in the parent, which should then return at once, and
/// `false` in the child, which runs the test's body:
/// ```ignore
/// if fedroute_testkit::process::rerun_alone("security_logs::no_key_material") {
///     return;
/// }
/// ```
pub fn rerun_alone(test: &str) -> bool {
    if std::env::var(ALONE_VAR).is_ok_and(|t| t == test) {
        return false;
    }
    // One such child at a time: two of them would measure each other's load
    // (as when each test file was its own binary, run one after the other).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(exe)
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ALONE_VAR, test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test binary starts again");
    let (status, stdout, stderr) = output_bounded(child, PROCESS_BOUND);
    assert!(
        status.success() && stdout.contains("1 passed"),
        "{test}, run alone, failed ({status}):\n{stdout}\n{stderr}"
    );
    true
}
