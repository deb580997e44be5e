//! The crash soak's researcher process (see [`super::crash_soak`]): the
//! library `Researcher` with a state directory on a fixed port, submitting
//! requests of random sizes to the soak's nodes, at most
//! [`MAX_OPEN_PER_NODE`] (and [`MAX_OPEN_BYTES_PER_NODE`]) open per node,
//! and printing one line per fact on stdout:
//! `listening <port>` once it listens, then
//! `recovered <request_id> <node>` for each request `RecoveredRequests`
//! lists, `sent <request_id> <node> <bytes>` once `Submit` returned Ok,
//! `delivered <request_id> <node>` on each `Reply` event and
//! `noreply <request_id> <node> <reason>` on each `NoReply` event, and
//! `unmatched <request_id> <node>` on each `UnmatchedReply` event (a reply
//! no request of this process waits for: evidence, not an answer).
//! A reply whose content is not what was sent also prints
//! `mismatch <request_id> <what>`.
//!
//! It reads stdin: `drain` stops submitting; the end of stdin (the parent
//! is done, or gone) stops the researcher and the process. It also stops
//! by itself after its lifetime.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use rand::Rng;
use tokio::sync::{mpsc, Notify};

use super::crash_soak::CRASH_RESEARCHER_ENV;
use super::rig::params_of;
use super::BenchError;
use fedroute::researcher::{self, RecoveredRequests, ResearcherConfig, ResearcherEvent, Submit};
use fedroute::wire::{Envelope, NdArray, PingRequest, TrainRequest};

/// Requests open (submitted, not answered) per node at most.
pub(crate) const MAX_OPEN_PER_NODE: usize = 32;
/// Payload bytes open per node at most (a few multi-MiB models at once).
pub(crate) const MAX_OPEN_BYTES_PER_NODE: usize = 64 << 20;
/// Share of pings among the requests (the others echo a payload).
const PING_SHARE: f64 = 0.4;
/// Of the echoes: the share above 64 KiB, and of those, above 1 MiB.
const MEDIUM_SHARE: f64 = 0.2;
const LARGE_SHARE: f64 = 0.25;
/// How long a node waits after a refused `Submit` before the next one.
const REFUSED_PAUSE: Duration = Duration::from_millis(50);
/// How long the loop waits for an event when it cannot submit.
const IDLE_WAIT: Duration = Duration::from_millis(10);

/// What the parent asked, from [`CRASH_RESEARCHER_ENV`].
struct Spec {
    port: u16,
    nodes: Vec<String>,
    max_payload: usize,
    timeout: Duration,
    lifetime: Duration,
    state_dir: PathBuf,
}

fn parse_spec(spec: &str) -> Result<Spec, BenchError> {
    let bad = |what: &str| BenchError::Setup {
        what: format!(
            "{CRASH_RESEARCHER_ENV}={spec:?}: {what} (expected `<port> <node ids> <max payload> \
             <timeout ms> <lifetime s> <state dir>`)"
        ),
    };
    let mut parts = spec.splitn(6, ' ');
    let mut next = |what: &str| parts.next().ok_or_else(|| bad(&format!("no {what}")));
    let port = next("port")?.parse().map_err(|_| bad("bad port"))?;
    let nodes = next("node ids")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let max_payload = next("max payload")?
        .parse()
        .map_err(|_| bad("bad max payload"))?;
    let timeout = Duration::from_millis(next("timeout")?.parse().map_err(|_| bad("bad timeout"))?);
    let lifetime = Duration::from_secs(next("lifetime")?.parse().map_err(|_| bad("bad lifetime"))?);
    let state_dir = PathBuf::from(next("state dir")?);
    Ok(Spec {
        port,
        nodes,
        max_payload,
        timeout,
        lifetime,
        state_dir,
    })
}

/// The open requests of every node, shared by the event handler and the
/// submitting loop (one thread: the actix `System`'s).
#[derive(Default)]
struct Book {
    nodes: HashMap<String, Open>,
    /// Answers that came before their `Submit` returned (so that the
    /// request is not counted open when it does).
    early: HashSet<String>,
}

type SharedBook = Rc<RefCell<Book>>;

/// Prints each answer among the researcher's events *in its handler*: the
/// line is out before the handler returns, the most an application can do
/// to have seen a reply before the library forgets it.
struct Sink {
    book: SharedBook,
    wake: Rc<Notify>,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<ResearcherEvent> for Sink {
    type Result = ();
    fn handle(&mut self, event: ResearcherEvent, _: &mut Context<Self>) {
        if on_event(event, &mut self.book.borrow_mut()) {
            self.wake.notify_one();
        }
    }
}

/// One node's open requests.
#[derive(Default)]
struct Open {
    /// Request id -> payload bytes (`None`: recovered, size unknown).
    ids: HashMap<String, Option<usize>>,
    bytes: usize,
    /// No `Submit` before this (after a refusal).
    pause_until: Option<tokio::time::Instant>,
}

/// Runs the crash soak's researcher until stdin closes or its lifetime
/// ends.
pub(crate) fn main(spec: &str) -> Result<(), BenchError> {
    let spec = parse_spec(spec)?;
    let mut stdin = super::child::stdin_lines();
    actix::System::new().block_on(async move {
        let book: SharedBook = Rc::new(RefCell::new(Book {
            nodes: spec
                .nodes
                .iter()
                .map(|n| (n.clone(), Open::default()))
                .collect(),
            early: HashSet::new(),
        }));
        let wake = Rc::new(Notify::new());
        let sink = Sink {
            book: book.clone(),
            wake: wake.clone(),
        }
        .start();
        let mut config = ResearcherConfig::default();
        config.listen.address = std::net::SocketAddr::from(([127, 0, 0, 1], spec.port));
        config.state_dir = Some(spec.state_dir.clone());
        config.nodes.queue_capacity = 4096;
        let handle = researcher::start(config, Some(sink.recipient())).await?;
        say(&format!("listening {}", handle.local_addr.port()));
        let end = tokio::time::Instant::now() + spec.lifetime;
        for r in handle.addr.send(RecoveredRequests).await? {
            say(&format!("recovered {} {}", r.request_id, r.node_id));
            let mut b = book.borrow_mut();
            if !b.early.remove(&r.request_id) {
                b.nodes
                    .entry(r.node_id)
                    .or_default()
                    .ids
                    .insert(r.request_id, None);
            }
        }
        let blob = Bytes::from(vec![0x5au8; spec.max_payload]);
        let mut draining = false;
        let mut turn = 0usize;
        loop {
            if tokio::time::Instant::now() >= end {
                break;
            }
            match stdin.try_recv() {
                Ok(line) if line.trim() == "drain" => draining = true,
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
            // One Submit, to the next node (round robin) with room.
            let now = tokio::time::Instant::now();
            let node = (!draining)
                .then(|| {
                    let b = book.borrow();
                    (0..spec.nodes.len())
                        .map(|k| &spec.nodes[(turn + k) % spec.nodes.len()])
                        .find(|n| b.nodes.get(*n).is_some_and(|o| has_room(o, now)))
                        .cloned()
                })
                .flatten();
            let Some(node) = node else {
                // Room comes with an answer; stdin and the end are looked
                // at every IDLE_WAIT.
                let _ = tokio::time::timeout(IDLE_WAIT, wake.notified()).await;
                continue;
            };
            turn = turn.wrapping_add(1);
            let (message, bytes) = request(&handle.researcher_id, &blob)?;
            let Some(request_id) = message.request_id().map(str::to_owned) else {
                return Err(BenchError::Failed {
                    what: "a bench request has no request_id".into(),
                });
            };
            let submit = Submit {
                node_id: node.clone(),
                message,
                timeout: spec.timeout,
            };
            let submitted = handle.addr.send(submit).await?;
            let mut b = book.borrow_mut();
            match submitted {
                Ok(()) => {
                    say(&format!("sent {request_id} {node} {bytes}"));
                    if !b.early.remove(&request_id) {
                        let o = b.nodes.entry(node.clone()).or_default();
                        o.ids.insert(request_id, Some(bytes));
                        o.bytes += bytes;
                    }
                }
                Err(e) => {
                    // Not accepted (the node has not polled this researcher
                    // yet, a full queue): no fact, try later.
                    log::debug!("submit to {node} refused: {}", fedroute::ErrorChain(&e));
                    let o = b.nodes.entry(node.clone()).or_default();
                    o.pause_until = Some(tokio::time::Instant::now() + REFUSED_PAUSE);
                }
            }
        }
        let _ = handle.shutdown().await;
        Ok(())
    })
}

fn has_room(o: &Open, now: tokio::time::Instant) -> bool {
    o.ids.len() < MAX_OPEN_PER_NODE
        && o.bytes < MAX_OPEN_BYTES_PER_NODE
        && o.pause_until.is_none_or(|t| now >= t)
}

/// Prints the fact of `event` (a reply, a `NoReply`, or a reply that
/// matched no request) and closes its request; false for other events.
fn on_event(event: ResearcherEvent, book: &mut Book) -> bool {
    let (node_id, request_id, fact) = match event {
        ResearcherEvent::Reply {
            node_id,
            request_id,
            message,
        } => {
            let size = book
                .nodes
                .get(&node_id)
                .and_then(|o| o.ids.get(&request_id).copied().flatten());
            if let Some(why) = check_reply(&message, size) {
                say(&format!("mismatch {request_id} {why}"));
            }
            say(&format!("delivered {request_id} {node_id}"));
            (node_id, request_id, "delivered")
        }
        ResearcherEvent::NoReply {
            node_id,
            request_id,
            reason,
        } => {
            let reason = reason.replace('\n', " ");
            say(&format!("noreply {request_id} {node_id} {reason}"));
            (node_id, request_id, "noreply")
        }
        ResearcherEvent::UnmatchedReply(message) => {
            // Not an answer: the request, if open, stays open.
            let Some(request_id) = message.request_id() else {
                return false;
            };
            let node_id = message.node_id().unwrap_or_default();
            say(&format!("unmatched {request_id} {node_id}"));
            return true;
        }
        _ => return false,
    };
    log::trace!("{fact} {request_id}");
    match book
        .nodes
        .get_mut(&node_id)
        .and_then(|o| o.ids.remove(&request_id).map(|b| (o, b)))
    {
        Some((o, bytes)) => o.bytes = o.bytes.saturating_sub(bytes.unwrap_or(0)),
        None => {
            // Before its `Submit` returned (or a second answer): bounded
            // by the requests in flight.
            if book.early.len() < 4 * MAX_OPEN_PER_NODE * book.nodes.len().max(1) {
                book.early.insert(request_id);
            }
        }
    }
    true
}

/// A random request: a ping, or a `TrainRequest` whose params (mostly
/// small, some above 64 KiB, a few multi-MiB up to the blob's size) the
/// node echoes. Returns it with its payload size.
fn request(researcher_id: &str, blob: &Bytes) -> Result<(Envelope, usize), BenchError> {
    let mut rng = rand::rng();
    if rng.random_bool(PING_SHARE) {
        return Ok((Envelope::from_typed(&PingRequest::new(researcher_id))?, 0));
    }
    let max = blob.len();
    let size = if rng.random_bool(MEDIUM_SHARE) {
        if rng.random_bool(LARGE_SHARE) && max > 1 << 20 {
            rng.random_range((1 << 20)..=max)
        } else {
            rng.random_range((64 << 10).min(max)..=(1 << 20).min(max))
        }
    } else {
        rng.random_range(0..=(64 << 10).min(max))
    };
    let params = params_of(blob.slice(0..size));
    let message = TrainRequest::new(researcher_id, "crash-soak", "echo", params);
    Ok((Envelope::from_typed(&message)?, size))
}

/// Why `reply` is not the echo of a `size`-byte request (`None`: it is, or
/// the size is unknown).
fn check_reply(reply: &Envelope, size: Option<usize>) -> Option<String> {
    match (reply.class(), size) {
        ("PingReply", Some(0)) | (_, None) => None,
        ("TrainReply", Some(size)) => {
            let got = reply
                .get("params")
                .and_then(|p| p.get("w"))
                .and_then(|w| NdArray::from_value(w).ok())
                .map(|a| a.data.len());
            match got {
                Some(n) if n == size => None,
                Some(n) => Some(format!("{n} bytes echoed, {size} sent")),
                None if size == 0 => None,
                None => Some(format!("no params echoed, {size} bytes sent")),
            }
        }
        (class, Some(size)) => Some(format!("a {class} to a request of {size} bytes")),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_read_back_with_a_path_holding_spaces() {
        let s = parse_spec("4242 NODE_a,NODE_b 1048576 30000 90 /tmp/a dir/researcher").unwrap();
        assert_eq!(s.port, 4242);
        assert_eq!(s.nodes, ["NODE_a", "NODE_b"]);
        assert_eq!(s.max_payload, 1 << 20);
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.lifetime, Duration::from_secs(90));
        assert_eq!(s.state_dir, PathBuf::from("/tmp/a dir/researcher"));
        assert!(parse_spec("x").is_err());
        assert!(parse_spec("1 N 2 3 4").is_err());
    }

    #[test]
    fn requests_stay_within_the_blob_and_carry_an_id() {
        let blob = Bytes::from(vec![0u8; 2 << 20]);
        for _ in 0..200 {
            let (m, size) = request("RESEARCHER_x", &blob).unwrap();
            assert!(size <= blob.len());
            assert!(m.request_id().is_some());
        }
    }
}
