//! [`PendingTable`]: requests waiting for their replies, keyed by
//! `request_id`, as a plain struct. An entry leaves the table on its reply,
//! its timeout, its task's expiry or failure, or shutdown: the table holds
//! only what is really pending (Fed-BioMed keeps every reply forever).

use std::collections::HashMap;

/// One waiting request.
#[derive(Debug)]
pub(super) struct Pending<W> {
    /// The node the request went to; only that node may answer it.
    pub node_id: String,
    /// Whatever resolves the request (a oneshot sender in the actor).
    pub waiter: W,
}

/// Why an entry was not added.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PendingRefusal {
    /// An entry with this request id is already waiting.
    Duplicate,
    /// The table holds its limit of entries.
    Full {
        /// The limit.
        limit: usize,
    },
}

/// What a reply found in the table.
#[derive(Debug)]
pub(super) enum ReplyMatch<W> {
    /// The waiting request, now removed.
    Matched(Pending<W>),
    /// No request waits under this id (never sent, already answered, timed
    /// out).
    Unknown,
    /// A request waits under this id, but for another node; it stays.
    WrongNode {
        /// The node the request went to.
        expected: String,
    },
}

/// Requests waiting for replies, at most `limit` at once.
#[derive(Debug)]
pub(super) struct PendingTable<W> {
    entries: HashMap<String, Pending<W>>,
    limit: usize,
}

impl<W> PendingTable<W> {
    /// An empty table holding at most `limit` entries.
    pub(super) fn new(limit: usize) -> PendingTable<W> {
        PendingTable {
            entries: HashMap::new(),
            limit,
        }
    }

    /// Entries waiting.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entry waiting.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `request_id` waits.
    #[cfg(test)]
    pub(super) fn contains(&self, request_id: &str) -> bool {
        self.entries.contains_key(request_id)
    }

    /// Adds a request sent to `node_id`.
    pub(super) fn insert(
        &mut self,
        request_id: &str,
        node_id: &str,
        waiter: W,
    ) -> Result<(), (PendingRefusal, W)> {
        if self.entries.contains_key(request_id) {
            return Err((PendingRefusal::Duplicate, waiter));
        }
        if self.entries.len() >= self.limit {
            return Err((PendingRefusal::Full { limit: self.limit }, waiter));
        }
        self.entries.insert(
            request_id.to_string(),
            Pending {
                node_id: node_id.to_string(),
                waiter,
            },
        );
        Ok(())
    }

    /// Matches a reply from `node_id` to request `request_id`.
    pub(super) fn answer(&mut self, request_id: &str, node_id: &str) -> ReplyMatch<W> {
        match self.entries.get(request_id) {
            None => ReplyMatch::Unknown,
            Some(p) if p.node_id != node_id => ReplyMatch::WrongNode {
                expected: p.node_id.clone(),
            },
            Some(_) => match self.entries.remove(request_id) {
                Some(p) => ReplyMatch::Matched(p),
                None => ReplyMatch::Unknown,
            },
        }
    }

    /// The entry waiting under `request_id`.
    pub(super) fn get(&self, request_id: &str) -> Option<&Pending<W>> {
        self.entries.get(request_id)
    }

    /// The entry waiting under `request_id`, to change.
    pub(super) fn get_mut(&mut self, request_id: &str) -> Option<&mut Pending<W>> {
        self.entries.get_mut(request_id)
    }

    /// Removes `request_id` whoever it went to (timeout, expiry, failure).
    pub(super) fn remove(&mut self, request_id: &str) -> Option<Pending<W>> {
        self.entries.remove(request_id)
    }

    /// Removes every entry (shutdown).
    pub(super) fn drain(&mut self) -> Vec<(String, Pending<W>)> {
        self.entries.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_matches_once() {
        let mut t = PendingTable::new(10);
        t.insert("r1", "n1", 7).unwrap();
        assert_eq!(t.len(), 1);
        match t.answer("r1", "n1") {
            ReplyMatch::Matched(p) => assert_eq!((p.node_id.as_str(), p.waiter), ("n1", 7)),
            other => panic!("expected a match, got {other:?}"),
        }
        assert!(matches!(t.answer("r1", "n1"), ReplyMatch::Unknown));
        assert!(t.is_empty());
    }

    #[test]
    fn reply_from_another_node_does_not_consume() {
        let mut t = PendingTable::new(10);
        t.insert("r1", "n1", ()).unwrap();
        match t.answer("r1", "n2") {
            ReplyMatch::WrongNode { expected } => assert_eq!(expected, "n1"),
            other => panic!("expected WrongNode, got {other:?}"),
        }
        assert!(t.contains("r1"));
    }

    #[test]
    fn duplicates_and_limit_are_refused() {
        let mut t = PendingTable::new(2);
        t.insert("r1", "n", 1).unwrap();
        assert_eq!(
            t.insert("r1", "n", 2).unwrap_err(),
            (PendingRefusal::Duplicate, 2)
        );
        t.insert("r2", "n", 3).unwrap();
        assert_eq!(
            t.insert("r3", "n", 4).unwrap_err(),
            (PendingRefusal::Full { limit: 2 }, 4)
        );
    }

    #[test]
    fn remove_and_drain_empty_the_table() {
        let mut t = PendingTable::new(10);
        for i in 0..5 {
            t.insert(&format!("r{i}"), "n", i).unwrap();
        }
        assert_eq!(t.remove("r0").unwrap().waiter, 0);
        assert!(t.remove("r0").is_none());
        assert_eq!(t.drain().len(), 4);
        assert!(t.is_empty());
    }

    #[test]
    fn many_rounds_leave_nothing_behind() {
        let mut t = PendingTable::new(4);
        for i in 0..10_000 {
            let id = format!("r{i}");
            t.insert(&id, "n", ()).unwrap();
            if i % 3 == 0 {
                t.remove(&id);
            } else {
                assert!(matches!(t.answer(&id, "n"), ReplyMatch::Matched(_)));
            }
        }
        assert!(t.is_empty());
    }
}
