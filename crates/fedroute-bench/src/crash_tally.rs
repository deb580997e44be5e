//! The crash soak's bookkeeping at the application level (no I/O): the
//! lines the researcher process prints, one fact each, and what they add
//! up to.
//!
//! The researcher process (see `crash_child`) prints:
//! - `sent <request_id> ...` once `Submit` returned Ok (the request is on
//!   disk);
//! - `delivered <request_id> ...` on each `ResearcherEvent::Reply`;
//! - `noreply <request_id> ...` on each `ResearcherEvent::NoReply`;
//! - `recovered <request_id> ...` for each request `RecoveredRequests`
//!   listed at start;
//! - `unmatched <request_id> ...` for a reply the researcher held no
//!   request for (kept in the id's history as evidence, no count).
//!
//! Anything after the id is detail for humans. Other lines (start-up
//! messages, errors) are no facts and are ignored here.
//!
//! The counts (the library's guarantee, from the researcher's side):
//! - `sent`: ids with a `sent` line;
//! - `delivered`: distinct ids with a `delivered` line;
//! - `duplicates`: `delivered` lines beyond the first of their id, except
//!   those the guarantee allows (`window_duplicates`): a delivery by a
//!   restarted researcher that recovered the request, when the researcher
//!   before it was killed within [`CRASH_WINDOW`] of the previous delivery
//!   (killed after the `Reply` event and before its store forgot the
//!   request and the node had the acknowledgement of its reply);
//! - `late_noreply`: a `noreply` for an id already delivered (allowed: the
//!   reply was delivered just before a crash, the restarted researcher
//!   then timed the request out), not a loss;
//! - `lost`: sent, and neither delivered nor answered by `noreply`.

use std::collections::{BTreeMap, HashMap};

/// How soon after a delivery a researcher kill may come for a second
/// delivery by the next researcher process to be the one the guarantee
/// allows. The library's window is a commit and an acknowledgement (a few
/// milliseconds); line times are taken when this process reads them (up
/// to a tick late), so the bound is generous.
pub const CRASH_WINDOW: f64 = 0.1;

/// When a fact was printed: seconds since the soak started (read time)
/// and which researcher process printed it (its start count, from 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamp {
    /// Seconds since the soak started.
    pub at: f64,
    /// The researcher process (1 for the first, 2 after its first restart...).
    pub generation: u64,
}

/// One fact of the researcher process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// `Submit` returned Ok.
    Sent,
    /// A `Reply` event.
    Delivered,
    /// A `NoReply` event.
    NoReply,
    /// Listed by `RecoveredRequests` after a restart.
    Recovered,
    /// An `UnmatchedReply` event (evidence only).
    Unmatched,
}

/// Reads one line of the researcher process: its fact and request id, or
/// `None` for a line that is no fact (or has no id).
pub fn parse_line(line: &str) -> Option<(Fact, &str)> {
    let mut words = line.split_whitespace();
    let fact = match words.next()? {
        "sent" => Fact::Sent,
        "delivered" => Fact::Delivered,
        "noreply" => Fact::NoReply,
        "recovered" => Fact::Recovered,
        "unmatched" => Fact::Unmatched,
        _ => return None,
    };
    Some((fact, words.next()?))
}

/// What happened to one request id, with when each fact was printed, for
/// the counts and the report of a failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdHistory {
    /// When `sent` lines came (more than one would be a harness bug).
    pub sent: Vec<Stamp>,
    /// When `delivered` lines came.
    pub delivered: Vec<Stamp>,
    /// When `noreply` lines came.
    pub noreply: Vec<Stamp>,
    /// When `recovered` lines came.
    pub recovered: Vec<Stamp>,
    /// When `unmatched` lines came.
    pub unmatched: Vec<Stamp>,
    /// The first `noreply` came before any `delivered` (decided by the
    /// order of the lines, not their times, which can be equal).
    pub noreply_first: bool,
}

impl IdHistory {
    /// Neither delivered nor answered by `noreply` yet.
    pub fn is_open(&self) -> bool {
        self.delivered.is_empty() && self.noreply.is_empty()
    }
}

/// The counts of [`Tally::counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CrashCounts {
    /// Ids with a `sent` line.
    pub sent: u64,
    /// Distinct ids with a `delivered` line (sent or not: see
    /// `delivered_unsent`).
    pub delivered: u64,
    /// `delivered` lines beyond the first of their id, except the
    /// `window_duplicates`.
    pub duplicates: u64,
    /// Second deliveries the guarantee allows (see the module docs).
    pub window_duplicates: u64,
    /// Sent ids neither delivered nor answered by `noreply`.
    pub lost: u64,
    /// Ids with a `noreply` and no `delivered` before it.
    pub noreply: u64,
    /// `noreply` for an id already delivered (allowed, not a loss).
    pub late_noreply: u64,
    /// Ids delivered after their `noreply` (a reply the application had
    /// been told would not come).
    pub delivered_after_noreply: u64,
    /// Distinct ids listed by `RecoveredRequests` after a restart.
    pub recovered: u64,
    /// Ids delivered or recovered without a `sent` line: the researcher
    /// was killed between accepting the request and printing `sent`.
    pub delivered_unsent: u64,
}

/// Request ids with their history, as [`Tally::suspects`] lists them.
pub type Suspects<'a> = Vec<(&'a str, &'a IdHistory)>;

/// Every fact seen so far, by request id.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    ids: HashMap<String, IdHistory>,
    /// When each researcher process was killed (or ended), by generation.
    ended: BTreeMap<u64, f64>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally::default()
    }

    /// Records `line` (printed by researcher process `generation`, read
    /// `at` seconds into the soak); returns the fact when it was one.
    pub fn record(&mut self, line: &str, at: f64, generation: u64) -> Option<Fact> {
        let (fact, id) = parse_line(line)?;
        let at = Stamp { at, generation };
        let h = self.ids.entry(id.to_owned()).or_default();
        match fact {
            Fact::Sent => h.sent.push(at),
            Fact::Delivered => h.delivered.push(at),
            Fact::NoReply => {
                if h.noreply.is_empty() && h.delivered.is_empty() {
                    h.noreply_first = true;
                }
                h.noreply.push(at)
            }
            Fact::Recovered => h.recovered.push(at),
            Fact::Unmatched => h.unmatched.push(at),
        }
        Some(fact)
    }

    /// Researcher process `generation` was killed (or ended) `at` seconds
    /// into the soak.
    pub fn researcher_ended(&mut self, generation: u64, at: f64) {
        self.ended.insert(generation, at);
    }

    /// Whether delivery `i` (from 1) of `h` is one the guarantee allows.
    fn in_window(&self, h: &IdHistory, i: usize) -> bool {
        let (before, this) = (h.delivered[i - 1], h.delivered[i]);
        let killed = self.ended.get(&before.generation).copied();
        this.generation > before.generation
            && h.recovered.iter().any(|r| r.generation == this.generation)
            && killed.is_some_and(|k| k - before.at <= CRASH_WINDOW)
    }

    /// Sent ids still waiting for their reply or `noreply`.
    pub fn open(&self) -> usize {
        self.ids
            .values()
            .filter(|h| !h.sent.is_empty() && h.is_open())
            .count()
    }

    /// The history of `id`.
    pub fn history(&self, id: &str) -> Option<&IdHistory> {
        self.ids.get(id)
    }

    /// The counts so far (see the module docs).
    pub fn counts(&self) -> CrashCounts {
        let mut c = CrashCounts::default();
        for h in self.ids.values() {
            let sent = !h.sent.is_empty();
            if sent {
                c.sent += 1;
            } else if !h.delivered.is_empty() || !h.recovered.is_empty() {
                c.delivered_unsent += 1;
            }
            if !h.delivered.is_empty() {
                c.delivered += 1;
            }
            for i in 1..h.delivered.len() {
                if self.in_window(h, i) {
                    c.window_duplicates += 1;
                } else {
                    c.duplicates += 1;
                }
            }
            if !h.recovered.is_empty() {
                c.recovered += 1;
            }
            if !h.noreply.is_empty() {
                if !h.noreply_first {
                    c.late_noreply += 1;
                } else {
                    c.noreply += 1;
                    if !h.delivered.is_empty() {
                        c.delivered_after_noreply += 1;
                    }
                }
            }
            if sent && h.is_open() {
                c.lost += 1;
            }
        }
        c
    }

    /// Ids delivered more than once outside the crash window, ids lost,
    /// and ids delivered twice within the window, each sorted by the time
    /// of its first `sent` (or first delivery), for the report.
    pub fn suspects<'a>(&'a self) -> (Suspects<'a>, Suspects<'a>, Suspects<'a>) {
        let first = |h: &IdHistory| {
            h.sent
                .iter()
                .chain(&h.delivered)
                .map(|s| s.at)
                .fold(f64::INFINITY, f64::min)
        };
        let mut dups = BTreeMap::new();
        let mut lost = BTreeMap::new();
        let mut window = BTreeMap::new();
        for (id, h) in &self.ids {
            // Keyed by time in µs then id: a stable, chronological order.
            let key = ((first(h) * 1e6) as u64, id.as_str());
            for i in 1..h.delivered.len() {
                if self.in_window(h, i) {
                    window.insert(key, h);
                } else {
                    dups.insert(key, h);
                }
            }
            if !h.sent.is_empty() && h.is_open() {
                lost.insert(key, h);
            }
        }
        let list = |m: BTreeMap<(u64, &'a str), &'a IdHistory>| -> Suspects<'a> {
            m.into_iter().map(|((_, id), h)| (id, h)).collect()
        };
        (list(dups), list(lost), list(window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tally of `lines`, the i-th read at i seconds, all by the first
    /// researcher process.
    fn tally(lines: &[&str]) -> Tally {
        let mut t = Tally::new();
        for (i, l) in lines.iter().enumerate() {
            t.record(l, i as f64, 1);
        }
        t
    }

    #[test]
    fn lines_are_facts_with_an_id_and_optional_detail() {
        assert_eq!(parse_line("sent r1"), Some((Fact::Sent, "r1")));
        assert_eq!(
            parse_line("delivered r2 NODE_1 1024"),
            Some((Fact::Delivered, "r2"))
        );
        assert_eq!(
            parse_line("noreply r3 timed out after 30 s"),
            Some((Fact::NoReply, "r3"))
        );
        assert_eq!(parse_line("recovered r4"), Some((Fact::Recovered, "r4")));
        assert_eq!(parse_line("unmatched r5 N"), Some((Fact::Unmatched, "r5")));
        assert_eq!(parse_line("listening 4242"), None);
        assert_eq!(parse_line("sent"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("Sent r1"), None);
    }

    #[test]
    fn each_sent_id_delivered_once_is_neither_lost_nor_duplicated() {
        let t = tally(&["sent a", "sent b", "delivered b", "delivered a"]);
        let c = t.counts();
        assert_eq!((c.sent, c.delivered, c.duplicates, c.lost), (2, 2, 0, 0));
        assert_eq!(t.open(), 0);
    }

    #[test]
    fn a_second_delivery_by_the_same_process_is_a_duplicate() {
        let t = tally(&["sent a", "delivered a", "delivered a", "delivered a"]);
        let c = t.counts();
        assert_eq!((c.delivered, c.duplicates, c.window_duplicates), (1, 2, 0));
        let (dups, lost, window) = t.suspects();
        assert_eq!(dups.len(), 1);
        assert_eq!(dups[0].0, "a");
        let times: Vec<f64> = dups[0].1.delivered.iter().map(|s| s.at).collect();
        assert_eq!(times, [1.0, 2.0, 3.0]);
        assert!(lost.is_empty() && window.is_empty());
    }

    #[test]
    fn a_second_delivery_after_a_kill_right_after_the_first_is_allowed() {
        let mut t = Tally::new();
        t.record("sent a", 1.0, 1);
        t.record("delivered a", 1.50, 1);
        t.researcher_ended(1, 1.52);
        t.record("recovered a", 1.9, 2);
        t.record("delivered a", 2.0, 2);
        let c = t.counts();
        assert_eq!((c.delivered, c.duplicates, c.window_duplicates), (1, 0, 1));
        let (dups, _, window) = t.suspects();
        assert!(dups.is_empty());
        assert_eq!(window[0].0, "a");
    }

    #[test]
    fn a_second_delivery_is_a_duplicate_when_the_kill_came_late() {
        // Killed long after the first delivery: the store had time to
        // forget the request; delivering it again is a fault.
        let mut t = Tally::new();
        t.record("sent a", 1.0, 1);
        t.record("delivered a", 1.5, 1);
        t.researcher_ended(1, 1.5 + 2.0 * CRASH_WINDOW);
        t.record("recovered a", 2.0, 2);
        t.record("delivered a", 2.1, 2);
        assert_eq!(t.counts().duplicates, 1);
    }

    #[test]
    fn a_second_delivery_without_recovery_is_a_duplicate() {
        // The restarted researcher did not hold the request: a reply sent
        // again by the node must be dropped, not delivered.
        let mut t = Tally::new();
        t.record("sent a", 1.0, 1);
        t.record("delivered a", 1.5, 1);
        t.researcher_ended(1, 1.51);
        t.record("delivered a", 2.1, 2);
        let c = t.counts();
        assert_eq!((c.duplicates, c.window_duplicates), (1, 0));
    }

    #[test]
    fn sent_without_reply_or_noreply_is_lost() {
        let t = tally(&["sent a", "sent b", "delivered a", "sent c", "noreply c"]);
        let c = t.counts();
        assert_eq!((c.sent, c.delivered, c.lost, c.noreply), (3, 1, 1, 1));
        assert_eq!(t.open(), 1);
        // A reply the researcher dropped as unmatched answers nothing.
        let mut t = t;
        t.record("unmatched b NODE_1", 9.0, 2);
        assert_eq!(t.counts().lost, 1);
        assert_eq!(t.history("b").map(|h| h.unmatched.len()), Some(1));
        let (_, lost, _) = t.suspects();
        assert_eq!(lost.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn a_noreply_after_the_reply_is_late_not_lost() {
        let t = tally(&["sent a", "delivered a", "recovered a", "noreply a"]);
        let c = t.counts();
        assert_eq!((c.lost, c.noreply, c.late_noreply), (0, 0, 1));
        assert_eq!(c.recovered, 1);
        assert_eq!(c.delivered_after_noreply, 0);
    }

    #[test]
    fn a_reply_after_the_noreply_is_counted_apart() {
        let t = tally(&["sent a", "noreply a", "delivered a"]);
        let c = t.counts();
        assert_eq!(
            (c.noreply, c.late_noreply, c.delivered_after_noreply),
            (1, 0, 1)
        );
        assert_eq!((c.delivered, c.duplicates, c.lost), (1, 0, 0));
    }

    #[test]
    fn a_request_accepted_but_not_reported_before_a_crash_is_no_loss() {
        // Killed between Submit's Ok and the `sent` line: the restart
        // recovers the request and its reply arrives.
        let t = tally(&["recovered x", "delivered x"]);
        let c = t.counts();
        assert_eq!((c.sent, c.delivered, c.lost), (0, 1, 0));
        assert_eq!(c.delivered_unsent, 1);
        assert_eq!(t.open(), 0);
    }

    #[test]
    fn other_lines_are_ignored() {
        let mut t = Tally::new();
        assert_eq!(t.record("listening 50051", 0.0, 1), None);
        assert_eq!(t.record("error something", 0.0, 1), None);
        assert_eq!(t.record("sent a", 0.0, 1), Some(Fact::Sent));
        assert_eq!(t.counts().sent, 1);
    }
}
