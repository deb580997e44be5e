//! [`NodeTable`]: the researcher's agents by node id, with the rules that
//! keep a flood of made-up node ids from locking real nodes out, as a plain
//! struct (no actors, no timers: the researcher passes `now`).
//!
//! An agent is *forgettable* while its node is DISCONNECTED with nothing
//! queued, in flight or awaiting a reply: forgetting it loses nothing (the
//! node gets a new agent when it polls again). The agent reports when it
//! becomes forgettable; everything that gives an agent work (a poll, a task)
//! goes through the researcher, which marks the entry busy at once. Each
//! such mark bumps the entry's epoch, and a report counts only if it names
//! the current epoch, so a report that crossed new work in the mailboxes is
//! ignored.
//!
//! Forgettable agents are forgotten `forget_after` after they became so
//! ([`NodeTable::sweep`]), and when the table is full a new node id takes
//! the place of the agent that has been forgettable the longest
//! ([`NodeTable::make_room`]). A node with work is never forgotten; a new id is
//! refused only when every agent has work or an open poll.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What [`NodeTable::make_room`] decided for a new node id.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission<A> {
    /// There is room (after letting go of the agent returned, if any: stop
    /// it).
    Room(Option<A>),
    /// Every agent has work.
    Full,
}

#[derive(Debug)]
struct Entry<A> {
    agent: A,
    epoch: u64,
    forgettable_since: Option<Instant>,
}

/// Agents by node id; see the module documentation.
#[derive(Debug)]
pub(super) struct NodeTable<A> {
    max_nodes: usize,
    forget_after: Duration,
    entries: HashMap<String, Entry<A>>,
}

impl<A: Clone> NodeTable<A> {
    /// A table of at most `max_nodes` agents, forgetting idle ones after
    /// `forget_after`.
    pub(super) fn new(max_nodes: usize, forget_after: Duration) -> NodeTable<A> {
        NodeTable {
            max_nodes,
            forget_after,
            entries: HashMap::new(),
        }
    }

    /// Agents held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// No agent held.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The agent of `node_id`, if known.
    pub(super) fn get(&self, node_id: &str) -> Option<&A> {
        self.entries.get(node_id).map(|e| &e.agent)
    }

    /// Every (node id, agent).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &A)> {
        self.entries.iter().map(|(id, e)| (id, &e.agent))
    }

    /// Marks `node_id`'s agent busy (it is being given work) and returns it
    /// with the new epoch to hand along with the work.
    pub(super) fn busy(&mut self, node_id: &str) -> Option<(A, u64)> {
        let e = self.entries.get_mut(node_id)?;
        e.epoch += 1;
        e.forgettable_since = None;
        Some((e.agent.clone(), e.epoch))
    }

    /// The agent of `node_id` reported at `now` that it became forgettable
    /// after the work of `epoch`.
    pub(super) fn forgettable(&mut self, node_id: &str, epoch: u64, now: Instant) {
        if let Some(e) = self.entries.get_mut(node_id) {
            if e.epoch == epoch && e.forgettable_since.is_none() {
                e.forgettable_since = Some(now);
            }
        }
    }

    /// Finds room for a new node id (see [`Admission`]), to
    /// [`NodeTable::insert`] then.
    pub(super) fn make_room(&mut self) -> Admission<A> {
        if self.entries.len() < self.max_nodes {
            return Admission::Room(None);
        }
        let oldest = self
            .entries
            .iter()
            .filter_map(|(id, e)| e.forgettable_since.map(|t| (t, id)))
            .min()
            .map(|(_, id)| id.clone());
        match oldest.and_then(|id| self.entries.remove(&id)) {
            Some(e) => Admission::Room(Some(e.agent)),
            None => Admission::Full,
        }
    }

    /// Adds the agent of a new node id, busy (it is created for a poll),
    /// at epoch 1.
    pub(super) fn insert(&mut self, node_id: String, agent: A) {
        self.entries.insert(
            node_id,
            Entry {
                agent,
                epoch: 1,
                forgettable_since: None,
            },
        );
    }

    /// Forgets the agents forgettable for `forget_after` by `now`; returns
    /// them (stop them).
    pub(super) fn sweep(&mut self, now: Instant) -> Vec<(String, A)> {
        let after = self.forget_after;
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.forgettable_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= after)
            })
            .map(|(id, _)| id.clone())
            .collect();
        due.into_iter()
            .filter_map(|id| self.entries.remove(&id).map(|e| (id, e.agent)))
            .collect()
    }

    /// Removes every agent.
    #[cfg(test)]
    pub(super) fn drain(&mut self) -> Vec<A> {
        self.entries.drain().map(|(_, e)| e.agent).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORGET: Duration = Duration::from_secs(600);

    fn table(max: usize) -> NodeTable<u32> {
        NodeTable::new(max, FORGET)
    }

    #[test]
    fn a_full_table_makes_room_by_the_longest_forgettable_agent() {
        let mut t = table(3);
        let t0 = Instant::now();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(t.make_room(), Admission::Room(None));
            t.insert(id.to_string(), i as u32);
        }
        assert_eq!(t.get("b"), Some(&1));
        // Nobody is forgettable: a new id is refused.
        assert_eq!(t.make_room(), Admission::Full);
        t.forgettable("c", 1, t0);
        t.forgettable("a", 1, t0 + Duration::from_secs(1));
        // c has been forgettable the longest.
        assert_eq!(t.make_room(), Admission::Room(Some(2)));
        t.insert("d".into(), 3);
        assert!(t.get("c").is_none());
        assert_eq!(t.make_room(), Admission::Room(Some(0)));
    }

    #[test]
    fn work_makes_an_agent_busy_and_a_stale_report_is_ignored() {
        let mut t = table(1);
        let t0 = Instant::now();
        t.insert("a".into(), 7);
        // New work (epoch 2) crosses a report about epoch 1.
        assert_eq!(t.busy("a"), Some((7, 2)));
        t.forgettable("a", 1, t0);
        assert_eq!(t.make_room(), Admission::Full);
        assert!(t.sweep(t0 + FORGET * 2).is_empty());
        // The report after the work counts.
        t.forgettable("a", 2, t0);
        assert_eq!(t.make_room(), Admission::Room(Some(7)));
        assert!(t.busy("zz").is_none());
    }

    #[test]
    fn forgettable_agents_are_swept_after_forget_after() {
        let mut t = table(10);
        let t0 = Instant::now();
        t.insert("a".into(), 1);
        t.insert("b".into(), 2);
        t.forgettable("a", 1, t0);
        assert!(t.sweep(t0 + FORGET - Duration::from_secs(1)).is_empty());
        assert_eq!(t.sweep(t0 + FORGET), vec![("a".to_string(), 1)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.drain(), vec![2]);
        assert!(t.is_empty());
    }
}
