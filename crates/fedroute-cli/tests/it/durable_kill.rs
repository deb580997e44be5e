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

/// The request ids that follow `marker` in the lines of `log` that contain
/// `line_with` (`submitted request ID to NODE`, `the reply to ID is
/// accepted`, `...: task ID (...) received again; dropped as a duplicate`).
fn ids_after(log: &str, line_with: &str, marker: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(line_with))
        .filter_map(|l| l.split(marker).nth(1))
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
    let ids = ids_after(&r1.tail(), "submitted request ", "submitted request ");
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
    let accepted = |log: &str| ids_after(log, "is accepted", "the reply to ");
    let (first, second) = (accepted(&n1.tail()), accepted(&n2.tail()));
    let dropped = ids_after(&n2.tail(), "dropped as a duplicate", ": task ");
    let log = r2.tail();
    for id in &ids {
        // The restarted node answers a re-offered task, or drops it as
        // answered before (its reply was in the store), never both.
        let handled = usize::from(second.contains(id)) + usize::from(dropped.contains(id));
        assert_eq!(
            handled, 1,
            "request {id} handled {handled} times after the restart"
        );
        assert!(
            !(first.contains(id) && second.contains(id)),
            "request {id} answered by both node processes"
        );
        assert_eq!(
            count(&log, &format!("reply {id} from")),
            1,
            "request {id}:\n{log}"
        );
    }
    eprintln!(
        "durable_kill: {} requests; {} replies accepted (logged) before the node was killed, \
         {} dropped after its restart as answered, {} answered after it",
        ids.len(),
        first.len(),
        dropped.len(),
        second.len()
    );
    assert!(
        !dropped.is_empty(),
        "a reply came from the store:\n{}",
        n1.tail()
    );
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
    assert_eq!(
        std::fs::read(&file).unwrap(),
        vec![0x5a; 8192],
        "left alone"
    );
}

/// A researcher in this process with a state directory, on `port`.
async fn library_researcher(
    state: &str,
    port: u16,
) -> (
    fedroute::researcher::ResearcherHandle,
    crate::researcher_support::Events,
) {
    let mut config = crate::researcher_support::config();
    config.listen.address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    config.state_dir = Some(state.into());
    crate::researcher_support::start(config).await
}

/// Submits a `TrainRequest` carrying `model_bytes` of parameters; its id.
async fn submit_train(r: &fedroute::researcher::ResearcherHandle, model_bytes: usize) -> String {
    use fedroute::wire::{Envelope, TrainRequest, Value};
    let model = Value::Bin(crate::researcher_support::pattern(model_bytes));
    let train = TrainRequest::new(r.researcher_id.clone(), "exp", "ds", model);
    let message = Envelope::from_typed(&train).unwrap();
    let id = message.request_id().unwrap().to_string();
    let submit = fedroute::researcher::Submit {
        node_id: NODE.to_string(),
        message,
        timeout: Duration::from_secs(120),
    };
    bounded("submit", r.addr.send(submit))
        .await
        .unwrap()
        .unwrap();
    id
}

/// Waits for the `Reply` event of `id`; the reply's size in bytes.
async fn reply_of(events: &mut crate::researcher_support::Events, id: &str) -> usize {
    use fedroute::researcher::ResearcherEvent;
    let ev = events
        .wait_for(
            &format!("the reply to {id}"),
            |e| matches!(e, ResearcherEvent::Reply { request_id, .. } if request_id == id),
        )
        .await;
    match ev {
        ResearcherEvent::Reply { message, .. } => message.to_bytes().len(),
        _ => unreachable!(),
    }
}

fn temporary_payloads(node_state: &str) -> usize {
    std::fs::read_dir(Path::new(node_state).join("delivery-payloads"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".payload.tmp"))
                .count()
        })
        .unwrap_or(0)
}

#[actix_rt::test]
async fn a_node_killed_while_it_writes_a_large_reply_opens_its_store_and_answers() {
    const MODEL: usize = 64 << 20;
    let d = dirs();
    let port = crate::cli_support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let (r, mut events) = library_researcher(&d.researcher, port).await;
    let mut n1 = node(&listen, &d.node, &["--echo-train"]);
    events.connected(NODE).await;
    let id = submit_train(&r, MODEL).await;
    // The echo is being written to its payload file: kill the node then.
    bounded("the reply's payload file", async {
        while temporary_payloads(&d.node) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    kill(&mut n1);
    assert!(
        !n1.tail()
            .contains(&format!("the reply to {id} is accepted")),
        "killed before its reply was accepted"
    );
    assert_eq!(temporary_payloads(&d.node), 1, "the write was cut");

    // The store opens and removes the half-written file: seen from a node
    // process that reaches no researcher (so that no new reply, which could
    // reuse the file's name, is written meanwhile).
    let nowhere = format!("127.0.0.1:{}", crate::cli_support::free_port());
    let mut opened = node(&nowhere, &d.node, &["--echo-train"]);
    opened.wait_line("delivery store").await;
    assert_eq!(temporary_payloads(&d.node), 0, "{}", opened.tail());
    kill(&mut opened);
    // The task, never answered as far as the store knows, is answered by
    // the next process.
    let n2 = node(&listen, &d.node, &["--echo-train"]);
    let size = reply_of(&mut events, &id).await;
    assert!(size > MODEL, "{size}");
    assert!(!n2.tail().contains("cannot"), "{}", n2.tail());
    bounded("shutdown", r.addr.send(fedroute::researcher::Shutdown))
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_reply_that_cannot_be_stored_is_an_error_and_the_node_serves_on() {
    // At most 8 MiB per file, as a nearly full disk would allow; SIGXFSZ
    // ignored, so that a write past it fails with EFBIG instead.
    const LIMIT: usize = 8 << 20;
    let d = dirs();
    let port = crate::cli_support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let (r, mut events) = library_researcher(&d.researcher, port).await;
    let bin = crate::cli_support::fedroute_bin();
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec prlimit --fsize={LIMIT} {} node --researcher {listen} --id {NODE} \
             --state-dir {} --connect-timeout 0 --echo-train",
            bin.display(),
            d.node
        ))
        .env(crate::cli_support::STATE_DIR_ENV, &d.node);
    let n = Process::start_command(cmd, "info,fedroute::cli=debug");
    events.connected(NODE).await;
    let small = submit_train(&r, 1 << 20).await;
    assert!(reply_of(&mut events, &small).await > 1 << 20);
    let big = submit_train(&r, 2 * LIMIT).await;
    n.wait_line("could not be stored").await;
    assert!(
        !n.tail()
            .contains(&format!("the reply to {big} is accepted")),
        "{}",
        n.tail()
    );
    // Still serving, the store still writable for what fits.
    let after = submit_train(&r, 1 << 20).await;
    assert!(reply_of(&mut events, &after).await > 1 << 20);
    bounded("shutdown", r.addr.send(fedroute::researcher::Shutdown))
        .await
        .unwrap();
}
