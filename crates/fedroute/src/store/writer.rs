//! The store's writer thread: takes the operations waiting in its channel
//! (up to [`MAX_GROUP`], at most [`PER_GROUP`] of each group, see
//! [`FairQueue`]), writes large payloads to their files, applies the rest
//! in one transaction and commits it with one fsync (group commit), then
//! tells each `put` its outcome, in order.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use redb::{Database, Table};

use super::fair::FairQueue;
use super::{files, Done, Item, StoreError, ANSWERED, FILE_PAYLOAD_MIN, INLINE, IN_FILE, QUEUE};

/// Most operations in one commit.
const MAX_GROUP: usize = 1024;
/// Commits that take this long are logged (debug).
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(50);
/// Most operations of one group (a link, a node) in one commit.
const PER_GROUP: usize = 64;

/// Files `op` with its group, or as the closing one.
fn sort(op: Op, waiting: &mut FairQueue<Op>, close: &mut Option<Op>) {
    match &op {
        Op::Put { item, .. } => waiting.push(&item.group.clone(), op),
        Op::Remove { group, .. } => waiting.push(&group.clone(), op),
        Op::Close { .. } => *close = Some(op),
    }
}

/// What the writer is asked.
pub(super) enum Op {
    /// Store an item (and maybe its request id as answered).
    Put {
        item: Item,
        answered: bool,
        done: Done,
    },
    /// Remove an item.
    Remove { group: String, seq: u64 },
    /// Tell `done` once everything before is committed, then close the
    /// database (its lock is released) and end.
    Close { done: Done },
}

/// Where the store's files are.
pub(super) struct Paths {
    pub db: PathBuf,
    pub payloads: PathBuf,
}

/// What the writer did, counted.
#[derive(Debug, Default)]
pub(super) struct Counters {
    commits: AtomicU64,
    items: AtomicU64,
    removals: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
            removals: self.removals.load(Ordering::Relaxed),
        }
    }
}

/// What a delivery store wrote since it was opened: with group commit,
/// `commits` (one fsync of the database each, plus one per payload file)
/// stays below `items + removals` under load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Items stored.
    pub items: u64,
    /// Items removed (delivered or given up).
    pub removals: u64,
}

/// Starts the writer; it ends when every sender is dropped and the channel
/// is empty.
pub(super) fn spawn(
    db: Database,
    paths: Paths,
    window: usize,
    answered: HashMap<String, VecDeque<u64>>,
    next_answered: u64,
    counters: Arc<Counters>,
) -> std::io::Result<(mpsc::Sender<Op>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let writer = Writer {
        db,
        paths,
        window,
        answered,
        next_answered,
        counters,
    };
    let thread = std::thread::Builder::new()
        .name("fedroute-store".into())
        .spawn(move || writer.run(rx))?;
    Ok((tx, thread))
}

struct Writer {
    db: Database,
    paths: Paths,
    window: usize,
    /// The keys of each group's answered ids, oldest first.
    answered: HashMap<String, VecDeque<u64>>,
    next_answered: u64,
    counters: Arc<Counters>,
}

/// An operation with the payload file written for it, if any.
type Prepared = (Op, Option<String>);

impl Writer {
    fn run(mut self, ops: mpsc::Receiver<Op>) {
        let mut waiting = FairQueue::default();
        let mut close = None;
        loop {
            if waiting.is_empty() {
                if close.is_some() {
                    break;
                }
                match ops.recv() {
                    Ok(op) => sort(op, &mut waiting, &mut close),
                    Err(_) => return,
                }
            }
            while close.is_none() {
                match ops.try_recv() {
                    Ok(op) => sort(op, &mut waiting, &mut close),
                    Err(_) => break,
                }
            }
            let round = waiting.take_round(PER_GROUP, MAX_GROUP);
            if !round.is_empty() {
                self.commit(round)();
            }
        }
        // Nothing more is taken: later callers learn it is closed (and
        // those already in the channel that their call was dropped).
        drop(ops);
        let done = self.commit(close.into_iter().collect());
        drop(self.db);
        done();
    }

    /// Commits `ops` and tells their callers, except a `Close`, whose
    /// telling is returned (to run once the database is closed).
    fn commit(&mut self, ops: Vec<Op>) -> Box<dyn FnOnce()> {
        let mut prepared: Vec<Prepared> = Vec::with_capacity(ops.len());
        let mut wrote_files = false;
        for op in ops {
            match op {
                Op::Put {
                    item,
                    answered,
                    done,
                } if item.payload.len() >= FILE_PAYLOAD_MIN => {
                    match files::write(&self.paths.payloads, item.seq, &item.payload) {
                        Ok(name) => {
                            wrote_files = true;
                            prepared.push((
                                Op::Put {
                                    item,
                                    answered,
                                    done,
                                },
                                Some(name),
                            ));
                        }
                        Err(e) => done(Err(write_error(&failure(&self.paths.payloads, e.into())))),
                    }
                }
                op => prepared.push((op, None)),
            }
        }
        let mut removed_files = Vec::new();
        let started = std::time::Instant::now();
        let outcome = match wrote_files.then(|| files::sync_dir(&self.paths.payloads)) {
            Some(Err(e)) => Err(failure(&self.paths.payloads, e.into())),
            _ => self
                .apply(&prepared, &mut removed_files)
                .map_err(|e| failure(&self.paths.db, e.into())),
        };
        let took = started.elapsed();
        if took >= SLOW_COMMIT {
            log::debug!(
                "delivery store: a commit of {} operations took {took:?}",
                prepared.len()
            );
        }
        if outcome.is_ok() {
            self.counters.commits.fetch_add(1, Ordering::Relaxed);
            for name in &removed_files {
                files::remove(&self.paths.payloads, name);
            }
        }
        let mut close: Box<dyn FnOnce()> = Box::new(|| {});
        for (op, file) in prepared {
            match op {
                Op::Put { done, .. } => {
                    if outcome.is_ok() {
                        self.counters.items.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(name) = file {
                        files::remove(&self.paths.payloads, &name);
                    }
                    done(outcome.as_ref().map(|_| ()).map_err(write_error));
                }
                Op::Close { done } => {
                    let result = outcome.as_ref().map(|_| ()).map_err(write_error);
                    close = Box::new(move || done(result));
                }
                Op::Remove { .. } => {}
            }
        }
        close
    }

    /// One transaction with every prepared operation, committed durably.
    fn apply(
        &mut self,
        prepared: &[Prepared],
        removed_files: &mut Vec<String>,
    ) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        {
            let mut queue = tx.open_table(QUEUE)?;
            let mut answered = tx.open_table(ANSWERED)?;
            for (op, file) in prepared {
                match op {
                    Op::Put {
                        item,
                        answered: is_answer,
                        ..
                    } => {
                        let inline;
                        let (kind, data): (u8, &[u8]) = match file {
                            Some(name) => (IN_FILE, name.as_bytes()),
                            None => {
                                inline = item.payload.to_bytes();
                                (INLINE, &inline[..])
                            }
                        };
                        let row = (
                            item.request_id.as_deref(),
                            item.deadline_ms,
                            item.tag,
                            kind,
                            data,
                        );
                        queue.insert((item.group.as_str(), item.seq), row)?;
                        if let (true, Some(id)) = (*is_answer, &item.request_id) {
                            self.record_answered(&mut answered, &item.group, id)?;
                        }
                    }
                    Op::Remove { group, seq } => {
                        if let Some(old) = queue.remove((group.as_str(), *seq))? {
                            self.counters.removals.fetch_add(1, Ordering::Relaxed);
                            let (_, _, _, kind, data) = old.value();
                            if kind == IN_FILE {
                                removed_files.push(String::from_utf8_lossy(data).into_owned());
                            }
                        }
                    }
                    Op::Close { .. } => {}
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds `id` to `group`'s answered ids, forgetting the oldest beyond
    /// the window.
    fn record_answered(
        &mut self,
        table: &mut Table<'_, super::Key<'static>, &'static str>,
        group: &str,
        id: &str,
    ) -> Result<(), redb::Error> {
        let seq = self.next_answered;
        self.next_answered += 1;
        table.insert((group, seq), id)?;
        let keys = self.answered.entry(group.to_string()).or_default();
        keys.push_back(seq);
        while keys.len() > self.window {
            if let Some(old) = keys.pop_front() {
                table.remove((group, old))?;
            }
        }
        Ok(())
    }
}

/// A failed write: where, and why (shared by every caller of the commit).
type Failure = (PathBuf, Arc<dyn std::error::Error + Send + Sync>);

fn failure(path: &std::path::Path, source: Box<dyn std::error::Error + Send + Sync>) -> Failure {
    log::warn!(
        "delivery store: a write failed ({}): {source}",
        path.display()
    );
    (path.to_path_buf(), Arc::from(source))
}

fn write_error((path, source): &Failure) -> StoreError {
    StoreError::Write {
        path: path.clone(),
        source: Arc::clone(source),
    }
}
