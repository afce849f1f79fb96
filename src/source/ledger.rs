//! The offset ledger: per lane (a partition of the login or activity topic), which messages are still in
//! flight, which offset may be stored next, which offsets the broker skipped,
//! and which messages a partition taken away and given back has already had
//! processed.
//!
//! An offset may be stored only once every earlier message of its partition
//! was fully processed and its alerts accepted by every sink; that is what
//! makes delivery at-least-once. When a partition is revoked, the messages
//! already finished are remembered (`Revoked`): if the partition comes back
//! to this instance before its offsets were committed (a broker outage longer
//! than the session timeout does this), the broker redelivers them from the
//! last commit, and the ledger says which of those were processed already so
//! they are skipped instead of counted twice. Messages still in flight at the
//! revocation were dropped unprocessed by the caller and are processed on
//! redelivery.
//!
//! Pure and synchronous; `app::live` drives it.

use crate::source::merge::Lane;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One login message whose offset waits for its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    pub lane: Lane,
    pub offset: i64,
}

/// An offset that may now be stored: the next one to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Storable {
    pub lane: Lane,
    pub next: i64,
}

/// Offsets the broker skipped: `from..to` never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: i64,
    pub to: i64,
}

#[derive(Default)]
struct Part {
    /// Offset → records of that message not yet finished.
    open: BTreeMap<i64, u32>,
    /// Highest offset received.
    last: Option<i64>,
    /// What was last returned by `storable`.
    stored: Option<i64>,
    /// The committed offset the partition was assigned at, until its first message.
    start: Option<i64>,
}

/// What a revoked partition had finished: every offset below `below` except
/// those in `unfinished`.
#[derive(Debug, Default)]
struct Revoked {
    below: i64,
    unfinished: BTreeSet<i64>,
}

#[derive(Default)]
pub struct Ledger {
    parts: HashMap<Lane, Part>,
    revoked: HashMap<Lane, Revoked>,
}

impl Ledger {
    /// The partition was assigned and will be read from `committed` (its
    /// first message should carry that offset).
    pub fn expect(&mut self, lane: Lane, committed: i64) {
        self.parts.entry(lane).or_default().start = Some(committed);
    }

    /// Whether the message at `offset` was already processed by this instance
    /// before its partition was revoked (a redelivery to skip).
    pub fn already_processed(&mut self, lane: Lane, offset: i64) -> bool {
        let Some(r) = self.revoked.get(&lane) else { return false };
        if offset >= r.below {
            self.revoked.remove(&lane);
            return false;
        }
        !r.unfinished.contains(&offset)
    }

    /// A message arrived carrying `records` records to finish (0: done now).
    /// Returns the offsets skipped since the previous message (or since the
    /// committed start), if any: Kafka offsets are dense unless the topic is
    /// compacted or transactional, so a gap otherwise means records that
    /// never reached ccwatch.
    pub fn open(&mut self, lane: Lane, offset: i64, records: u32) -> Option<Gap> {
        let p = self.parts.entry(lane).or_default();
        let expected = p.last.map(|l| l + 1).or(p.start.take());
        let gap = expected.filter(|&e| offset > e).map(|e| Gap { from: e, to: offset });
        if p.last.is_none_or(|l| offset > l) {
            p.last = Some(offset);
        }
        if records > 0 {
            *p.open.entry(offset).or_default() += records;
        }
        gap
    }

    /// One record of the message has been fully delivered.
    pub fn finish(&mut self, t: Ticket) {
        if let Some(p) = self.parts.get_mut(&t.lane) {
            if let Some(n) = p.open.get_mut(&t.offset) {
                *n -= 1;
                if *n == 0 {
                    p.open.remove(&t.offset);
                }
            }
        }
    }

    /// The partitions whose next offset to store (Kafka's "next to read")
    /// moved since the last call.
    pub fn storable(&mut self) -> Vec<Storable> {
        let mut out = Vec::new();
        for (&lane, p) in &mut self.parts {
            let next = match p.open.keys().next() {
                Some(&first) => first,
                None => match p.last {
                    Some(l) => l + 1,
                    None => continue,
                },
            };
            if p.stored.is_none_or(|s| next > s) {
                p.stored = Some(next);
                out.push(Storable { lane, next });
            }
        }
        out.sort_unstable();
        out
    }

    /// The partitions were taken away. Their in-flight messages are
    /// abandoned (the caller drops their records unprocessed); what they had
    /// finished is remembered for `already_processed`.
    /// A partition revoked again before its redelivery passed what it had
    /// processed keeps the older memory beyond what it received since.
    pub fn revoke(&mut self, lanes: &[Lane]) {
        for p in lanes {
            let Some(part) = self.parts.remove(p) else { continue };
            let Some(last) = part.last else { continue };
            let mut r = Revoked { below: last + 1, unfinished: part.open.into_keys().collect() };
            if let Some(old) = self.revoked.remove(p) {
                r.below = r.below.max(old.below);
                r.unfinished.extend(old.unfinished.into_iter().filter(|&u| u > last));
            }
            self.revoked.insert(*p, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::merge::Stream;

    const P0: Lane = (Stream::Login, 0);
    const P1: Lane = (Stream::Login, 1);
    const P2: Lane = (Stream::Login, 2);

    fn done(l: &mut Ledger, lane: Lane, offset: i64) {
        l.finish(Ticket { lane, offset });
    }

    #[test]
    fn offsets_report_what_the_broker_skipped() {
        let mut o = Ledger::default();
        o.expect(P0, 10);
        // A broker that resumes at the next batch instead of the committed offset.
        assert_eq!(o.open(P0, 60, 1), Some(Gap { from: 10, to: 60 }));
        assert_eq!(o.open(P0, 61, 0), None);
        assert_eq!(o.open(P0, 63, 0), Some(Gap { from: 62, to: 63 }), "a transaction marker or compaction");
        assert_eq!(o.open(P0, 61, 0), None, "a redelivered earlier offset is not a gap");
        o.expect(P1, 5);
        assert_eq!(o.open(P1, 5, 0), None, "resumed exactly at the committed offset");
        assert_eq!(o.open(P2, 7, 0), None, "no committed offset known: nothing to compare with");
    }

    #[test]
    fn offsets_are_stored_only_past_finished_messages() {
        let mut o = Ledger::default();
        o.open(P0, 10, 1);
        o.open(P0, 11, 2);
        o.open(P0, 12, 0); // a message with no events (e.g. dead-lettered after delivery)
        assert_eq!(o.storable(), [Storable { lane: P0, next: 10 }]);
        done(&mut o, P0, 11);
        done(&mut o, P0, 11);
        assert!(o.storable().is_empty(), "10 still in flight");
        done(&mut o, P0, 10);
        assert_eq!(o.storable(), [Storable { lane: P0, next: 13 }]);
        assert!(o.storable().is_empty());
    }

    #[test]
    fn a_partition_given_back_skips_exactly_what_it_had_processed() {
        let mut o = Ledger::default();
        o.expect(P0, 10);
        for off in 10..15 {
            o.open(P0, off, 1);
        }
        // 10, 11 and 13 were processed (the merge released 13 before 12 by
        // event time); 12 and 14 were still waiting when the partition went.
        for off in [10, 11, 13] {
            done(&mut o, P0, off);
        }
        assert_eq!(o.storable(), [Storable { lane: P0, next: 12 }]);
        o.revoke(&[P0]);
        // Back again, from an older commit: the broker redelivers from 8.
        o.expect(P0, 8);
        let skipped: Vec<i64> = (8..17).filter(|&off| o.already_processed(P0, off)).collect();
        assert_eq!(skipped, [8, 9, 10, 11, 13], "below the last received offset, except what was in flight");
        assert!(!o.already_processed(P0, 13), "past the old range the memory is gone");
    }

    #[test]
    fn a_partition_revoked_again_mid_redelivery_keeps_what_it_had_processed() {
        let mut o = Ledger::default();
        o.expect(P0, 0);
        for off in 0..10 {
            o.open(P0, off, 1);
        }
        for off in (0..10).filter(|&off| off != 4) {
            done(&mut o, P0, off);
        }
        o.revoke(&[P0]);
        // Back from commit 0; offsets 0-2 are redelivered, then it is revoked again.
        o.expect(P0, 0);
        for off in 0..3 {
            assert!(o.already_processed(P0, off));
            o.open(P0, off, 0);
        }
        o.revoke(&[P0]);
        o.expect(P0, 0);
        let processed: Vec<i64> = (0..12).filter(|&off| o.already_processed(P0, off)).collect();
        assert_eq!(processed, [0, 1, 2, 3, 5, 6, 7, 8, 9], "4 never finished; 10 and on never arrived");
    }
}
