//! The delivery store: what a node or a researcher has accepted to deliver,
//! kept on disk so that it survives the process (see the README's
//! "Delivery guarantee").
//!
//! One [redb](https://docs.rs/redb) database, `delivery.redb`, in the
//! state directory, plus one file per large payload in `delivery-payloads/`:
//! - `queue`: (group, seq) → the item: its request id, deadline, a tag the
//!   owner gives it, and its payload (inline below [`FILE_PAYLOAD_MIN`],
//!   else the name of its file). A group is a node's researcher endpoint
//!   or a researcher's node id; `seq` is unique in the store and keeps the
//!   order items were accepted in.
//! - `answered`: (group, seq) → a request id the node answered (the
//!   node's task dedup window, at most `answered_window` per group).
//! - `meta`: the store's format number ([`FORMAT`]).
//!
//! Writes go through one writer thread ([`writer`]) that commits whatever
//! is waiting in one transaction: many small replies share an fsync. A
//! large payload is written from its own buffers straight to its file
//! (write, fsync, rename), so a 100 MiB model is not copied on its way to
//! disk; the database holds only its name. At open, a file no row names
//! (left by a crash between the file and the commit) is removed, and a row
//! whose file is missing is a [`StoreError::Damaged`] store.
//!
//! redb rather than SQLite or sled: pure Rust (no system library), ACID
//! with a checksummed commit, and a lock file that keeps a second process
//! off the same state directory.

mod fair;
mod files;
mod writer;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::wire::Payload;

pub use writer::StoreStats;

/// The store's format; a store with a larger one was written by a newer
/// fedroute and is refused.
pub(crate) const FORMAT: u64 = 1;
/// The database's file name in the state directory.
pub(crate) const FILE_NAME: &str = "delivery.redb";
/// The directory of large payloads in the state directory.
pub(crate) const PAYLOAD_DIR: &str = "delivery-payloads";
/// Payloads from this size on get a file of their own (64 KiB).
pub(crate) const FILE_PAYLOAD_MIN: usize = 64 * 1024;

type Key<'a> = (&'a str, u64);
/// (request id, deadline in ms since the Unix epoch (0: none), tag,
/// payload kind, inline payload or file name).
type Row<'a> = (Option<&'a str>, u64, u8, u8, &'a [u8]);

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const QUEUE: TableDefinition<Key, Row> = TableDefinition::new("queue");
const ANSWERED: TableDefinition<Key, &str> = TableDefinition::new("answered");

const INLINE: u8 = 0;
const IN_FILE: u8 = 1;

/// Why the delivery store could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The state directory or the database could not be opened.
    #[error("cannot open the delivery store {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another process has the store open.
    #[error(
        "the delivery store {path} is in use by another process (one state directory per process)"
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The store does not hold together (not a database, a checksum that
    /// fails, a payload file missing). Nothing is reset: move the file
    /// away to start empty, knowing that what it held is lost.
    #[error("the delivery store {path} is damaged: {reason}")]
    Damaged {
        /// The database file (or the payload file at fault).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A newer fedroute wrote the store.
    #[error("the delivery store {path} has format {found}; this fedroute reads format {supported} and older")]
    NewerFormat {
        /// The database file.
        path: PathBuf,
        /// Its format.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
    /// A write did not reach the disk (full disk, I/O error): what it
    /// carried was not accepted; what was accepted before is intact.
    #[error("cannot write to the delivery store {path}")]
    Write {
        /// The database or payload file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The store's writer has stopped (the process is ending).
    #[error("the delivery store {path} is closed")]
    Closed {
        /// The database file.
        path: PathBuf,
    },
}

/// One item kept in the store.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Its group: a researcher endpoint (node) or a node id (researcher).
    pub group: String,
    /// Its place in the store's order ([`DeliveryStore::next_seq`]).
    pub seq: u64,
    /// Its request id, if any.
    pub request_id: Option<String>,
    /// When it expires, in milliseconds since the Unix epoch (0: never).
    pub deadline_ms: u64,
    /// What the owner needs to know of it (the researcher: who waits).
    pub tag: u8,
    /// The message.
    pub payload: Payload,
}

/// What the store held when it was opened.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// The items, by group, each group in the order it was accepted.
    pub items: BTreeMap<String, Vec<Item>>,
    /// The answered request ids by group, oldest first.
    pub answered: HashMap<String, Vec<String>>,
}

impl Recovered {
    /// The items of `group`, removed from what is left.
    pub(crate) fn take_items(&mut self, group: &str) -> Vec<Item> {
        self.items.remove(group).unwrap_or_default()
    }

    /// The answered ids of `group`, removed from what is left.
    pub(crate) fn take_answered(&mut self, group: &str) -> Vec<String> {
        self.answered.remove(group).unwrap_or_default()
    }
}

/// A handle on an open delivery store (cheap to clone). The writer thread
/// ends when the last handle is dropped, after what was asked of it.
#[derive(Clone, Debug)]
pub(crate) struct DeliveryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    next_seq: AtomicU64,
    ops: mpsc::Sender<writer::Op>,
    stats: Arc<writer::Counters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    /// Waits for the writer to finish what it was asked and close the
    /// database, so that the store can be opened again at once (a node
    /// restarted in the same process).
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.ops, closed));
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Called with the outcome of a [`DeliveryStore::put`], on the writer
/// thread, once the item is on disk (or was refused).
pub(crate) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

impl DeliveryStore {
    /// Opens (or creates) the store in `state_dir`; `answered_window` is
    /// the most answered ids kept per group.
    pub(crate) fn open(
        state_dir: &Path,
        answered_window: usize,
    ) -> Result<(DeliveryStore, Recovered), StoreError> {
        let path = state_dir.join(FILE_NAME);
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.clone(),
            source,
        };
        crate::state_file::create_state_dir(state_dir).map_err(|e| open_error(e.into()))?;
        let payload_dir = state_dir.join(PAYLOAD_DIR);
        crate::state_file::create_state_dir(&payload_dir).map_err(|e| open_error(e.into()))?;
        let db = Database::create(&path).map_err(|e| opening_failed(&path, e))?;
        check_format(&db, &path)?;
        let read = read_all(&db, &path, &payload_dir)?;
        files::remove_orphans(&payload_dir, &read.files);
        let (recovered, max_seq, answered_seqs) =
            (read.recovered, read.max_seq, read.answered_seqs);
        let stats = Arc::new(writer::Counters::default());
        let (ops, thread) = writer::spawn(
            db,
            writer::Paths {
                db: path.clone(),
                payloads: payload_dir,
            },
            answered_window,
            answered_seqs,
            max_seq + 1,
            Arc::clone(&stats),
        )
        .map_err(|e| open_error(e.into()))?;
        let count: usize = recovered.items.values().map(Vec::len).sum();
        log::info!(
            "delivery store {}: opened, {count} item(s) to deliver",
            path.display()
        );
        Ok((
            DeliveryStore {
                inner: Arc::new(Inner {
                    path,
                    next_seq: AtomicU64::new(max_seq + 1),
                    ops,
                    stats,
                    thread: Some(thread),
                }),
            },
            recovered,
        ))
    }

    /// A fresh sequence number, larger than every one before it.
    pub(crate) fn next_seq(&self) -> u64 {
        self.inner.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Stores `item` (with `answered`: records its request id as answered
    /// in the same commit); `done` is called on the writer thread once it
    /// is on disk, or with the error. Calls complete in the order they were
    /// made.
    pub(crate) fn put(&self, item: Item, answered: bool, done: Done) {
        let op = writer::Op::Put {
            item,
            answered,
            done,
        };
        if let Err(mpsc::SendError(writer::Op::Put { done, .. })) = self.inner.ops.send(op) {
            done(Err(self.closed()));
        }
    }

    /// Removes the item `(group, seq)` (delivered, or given up); not
    /// waited for: a crash before the commit delivers it once more, which
    /// the receiving side drops as a duplicate.
    pub(crate) fn remove(&self, group: &str, seq: u64) {
        let _ = self.inner.ops.send(writer::Op::Remove {
            group: group.to_string(),
            seq,
        });
    }

    /// Resolves once everything asked before is on disk and the database
    /// is closed (another process, or a new controller, may open it);
    /// every later call on any handle fails with [`StoreError::Closed`].
    pub(crate) fn close(&self) -> impl std::future::Future<Output = Result<(), StoreError>> {
        self.wait_for(|done| writer::Op::Close { done })
    }

    fn wait_for(
        &self,
        op: impl FnOnce(Done) -> writer::Op,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.inner.ops.send(op(Box::new(move |r| {
            let _ = tx.send(r);
        })));
        let closed = self.closed();
        async move {
            if sent.is_err() {
                return Err(closed);
            }
            rx.await.unwrap_or(Err(closed))
        }
    }

    /// Commits and items written so far.
    pub(crate) fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            path: self.inner.path.clone(),
        }
    }
}

fn opening_failed(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
            path: path.to_path_buf(),
        },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
            StoreError::Damaged {
                path: path.to_path_buf(),
                reason,
            }
        }
        redb::DatabaseError::UpgradeRequired(v) => StoreError::Damaged {
            path: path.to_path_buf(),
            reason: format!("written by an older database format ({v}) this build cannot read"),
        },
        other => StoreError::Open {
            path: path.to_path_buf(),
            source: other.into(),
        },
    }
}

/// A redb error while reading or setting up: a damaged store when redb
/// says so, else an error opening it.
fn read_failed(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(reason) => StoreError::Damaged {
            path: path.to_path_buf(),
            reason,
        },
        other => StoreError::Open {
            path: path.to_path_buf(),
            source: other.into(),
        },
    }
}

/// Records the format of a new store; refuses a newer one.
fn check_format(db: &Database, path: &Path) -> Result<(), StoreError> {
    let fail = |e: redb::Error| read_failed(path, e);
    let tx = db.begin_write().map_err(|e| fail(e.into()))?;
    {
        let mut meta = tx.open_table(META).map_err(|e| fail(e.into()))?;
        let found = meta
            .get("format")
            .map_err(|e| fail(e.into()))?
            .map(|v| v.value());
        match found {
            Some(found) if found > FORMAT => {
                return Err(StoreError::NewerFormat {
                    path: path.to_path_buf(),
                    found,
                    supported: FORMAT,
                })
            }
            Some(_) => {}
            None => {
                meta.insert("format", FORMAT).map_err(|e| fail(e.into()))?;
            }
        }
        tx.open_table(QUEUE).map_err(|e| fail(e.into()))?;
        tx.open_table(ANSWERED).map_err(|e| fail(e.into()))?;
    }
    tx.commit().map_err(|e| fail(e.into()))
}

/// What [`read_all`] found.
struct Read {
    recovered: Recovered,
    /// The largest sequence number in the store (0: empty).
    max_seq: u64,
    /// The keys of the answered ids, by group, oldest first.
    answered_seqs: HashMap<String, VecDeque<u64>>,
    /// The payload files the rows name.
    files: HashSet<String>,
}

/// Everything the store holds.
fn read_all(db: &Database, path: &Path, payload_dir: &Path) -> Result<Read, StoreError> {
    let fail = |e: redb::Error| read_failed(path, e);
    let tx = db.begin_read().map_err(|e| fail(e.into()))?;
    let mut recovered = Recovered::default();
    let mut max_seq = 0;
    let mut files = HashSet::new();
    let mut answered_seqs: HashMap<String, VecDeque<u64>> = HashMap::new();
    let queue = tx.open_table(QUEUE).map_err(|e| fail(e.into()))?;
    for row in queue.iter().map_err(|e| fail(e.into()))? {
        let (key, value) = row.map_err(|e| fail(e.into()))?;
        let (group, seq) = key.value();
        let (request_id, deadline_ms, tag, kind, data) = value.value();
        max_seq = max_seq.max(seq);
        let payload = match kind {
            INLINE => Payload::from(Bytes::copy_from_slice(data)),
            IN_FILE => {
                let (name, payload) = files::read(payload_dir, data)?;
                files.insert(name);
                payload
            }
            other => {
                return Err(StoreError::Damaged {
                    path: path.to_path_buf(),
                    reason: format!("item {group}/{seq} has an unknown payload kind {other}"),
                })
            }
        };
        recovered
            .items
            .entry(group.to_string())
            .or_default()
            .push(Item {
                group: group.to_string(),
                seq,
                request_id: request_id.map(str::to_string),
                deadline_ms,
                tag,
                payload,
            });
    }
    let answered = tx.open_table(ANSWERED).map_err(|e| fail(e.into()))?;
    for row in answered.iter().map_err(|e| fail(e.into()))? {
        let (key, id) = row.map_err(|e| fail(e.into()))?;
        let (group, seq) = key.value();
        max_seq = max_seq.max(seq);
        answered_seqs
            .entry(group.to_string())
            .or_default()
            .push_back(seq);
        recovered
            .answered
            .entry(group.to_string())
            .or_default()
            .push(id.value().to_string());
    }
    Ok(Read {
        recovered,
        max_seq,
        answered_seqs,
        files,
    })
}

#[cfg(test)]
mod tests;
