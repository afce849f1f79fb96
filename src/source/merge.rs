//! Event-time merge for live sources: records from many Kafka partitions
//! (login and setup-audit topics) → one stream in event-time order, plus the
//! offset bookkeeping that makes delivery at-least-once.
//!
//! This is replay's k-way merge, made incremental. Each assigned partition is
//! a *lane* with a watermark (the latest event time it delivered). A record is
//! released once every lane that may still deliver something earlier has
//! passed it: `time <= min(watermark of lanes not at end-of-partition)`. A
//! lane at end-of-partition (librdkafka's partition EOF) constrains nothing,
//! so a quiet audit topic never delays logins. A stream that is not assigned
//! yet (a consumer group still joining) holds everything until it is, so the
//! privileges read from the audit topic at start-up apply at their own event
//! times, exactly as in replay. Memory is bounded by `max_pending`: past it,
//! the oldest record is released anyway and counted.
//!
//! `Offsets` tracks, per partition, which messages are still in flight, and
//! yields the highest offset that may be stored: only after every earlier
//! message's alerts were accepted by every sink.
//!
//! Pure and synchronous; `app::live` drives it. No clock: "released" depends
//! only on what arrived.

use crate::event::EventTime;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

/// Which consumer a lane belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Audit,
    Login,
}

/// One partition of one stream.
pub type Lane = (Stream, i32);

#[derive(Debug, Default, Clone, Copy)]
struct LaneState {
    watermark: Option<EventTime>,
    eof: bool,
}

struct Entry<T> {
    key: (EventTime, u8, u64),
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key.cmp(&o.key)
    }
}

/// A record released from the merge.
#[derive(Debug, PartialEq)]
pub struct Released<T> {
    pub item: T,
    pub time: EventTime,
    /// An earlier-released record had a later event time (this one arrived late).
    pub late: bool,
    /// Released only because `max_pending` was reached.
    pub forced: bool,
}

pub struct Merge<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    lanes: HashMap<Lane, LaneState>,
    /// Streams whose partitions are not known yet.
    waiting: HashSet<Stream>,
    seq: u64,
    released_max: Option<EventTime>,
    max_pending: usize,
}

impl<T> Merge<T> {
    pub fn new(max_pending: usize) -> Merge<T> {
        Merge {
            heap: BinaryHeap::new(),
            lanes: HashMap::new(),
            waiting: HashSet::new(),
            seq: 0,
            released_max: None,
            max_pending: max_pending.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Hold every release until `stream` is assigned (`assign`) or released (`unwait`).
    pub fn wait_for(&mut self, stream: Stream) {
        self.waiting.insert(stream);
    }

    pub fn unwait(&mut self, stream: Stream) {
        self.waiting.remove(&stream);
    }

    /// Partitions now assigned to `stream`.
    pub fn assign(&mut self, stream: Stream, partitions: &[i32]) {
        self.waiting.remove(&stream);
        for &p in partitions {
            self.lanes.entry((stream, p)).or_default();
        }
    }

    /// Partitions taken away: they constrain nothing any more. Records already
    /// received from them are still processed.
    pub fn revoke(&mut self, stream: Stream, partitions: &[i32]) {
        for &p in partitions {
            self.lanes.remove(&(stream, p));
        }
    }

    /// The lane has delivered everything it had.
    pub fn set_eof(&mut self, lane: Lane) {
        self.lanes.entry(lane).or_default().eof = true;
    }

    /// Whether every assigned lane of `stream` is at end-of-partition.
    pub fn caught_up(&self, stream: Stream) -> bool {
        !self.waiting.contains(&stream) && self.lanes.iter().filter(|(l, _)| l.0 == stream).all(|(_, s)| s.eof)
    }

    /// A record received from `lane`. `rank` orders records of equal time
    /// (audit before login, as in replay).
    pub fn push(&mut self, lane: Lane, time: EventTime, rank: u8, item: T) {
        let st = self.lanes.entry(lane).or_default();
        st.eof = false;
        if st.watermark.is_none_or(|w| time > w) {
            st.watermark = Some(time);
        }
        self.seq += 1;
        self.heap.push(Reverse(Entry { key: (time, rank, self.seq), item }));
    }

    /// A message from `lane` that needs no processing (an uninteresting login,
    /// a rejected record) still proves the lane is live and, when it has an
    /// event time, that the lane has reached it.
    pub fn advance(&mut self, lane: Lane, time: Option<EventTime>) {
        let st = self.lanes.entry(lane).or_default();
        st.eof = false;
        if let Some(t) = time {
            if st.watermark.is_none_or(|w| t > w) {
                st.watermark = Some(t);
            }
        }
    }

    /// Records may be released up to this time (inclusive); `None`: nothing may.
    fn bound(&self) -> Option<Option<EventTime>> {
        if !self.waiting.is_empty() {
            return None;
        }
        let mut bound: Option<EventTime> = None; // None = unbounded
        for st in self.lanes.values().filter(|s| !s.eof) {
            match st.watermark {
                None => return None,
                Some(w) => bound = Some(bound.map_or(w, |b: EventTime| b.min(w))),
            }
        }
        Some(bound)
    }

    /// The next record whose turn has come.
    pub fn pop_ready(&mut self) -> Option<Released<T>> {
        let head = self.heap.peek()?.0.key.0;
        let forced = self.heap.len() > self.max_pending;
        let ready = match self.bound() {
            None => false,
            Some(None) => true,
            Some(Some(b)) => head <= b,
        };
        if !(ready || forced) {
            return None;
        }
        Some(self.take(forced && !ready))
    }

    /// Every pending record, in order (shutdown: finish what was received).
    pub fn pop_any(&mut self) -> Option<Released<T>> {
        self.heap.peek()?;
        Some(self.take(false))
    }

    fn take(&mut self, forced: bool) -> Released<T> {
        let Reverse(e) = self.heap.pop().expect("peeked");
        let time = e.key.0;
        let late = self.released_max.is_some_and(|m| time < m);
        if !late {
            self.released_max = Some(time);
        }
        Released { item: e.item, time, late, forced }
    }
}

/// Per-partition in-flight offsets → the offset that may be stored next.
#[derive(Default)]
pub struct Offsets {
    parts: HashMap<i32, Part>,
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

/// Offsets the broker skipped: `from..to` never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub from: i64,
    pub to: i64,
}

impl Offsets {
    /// The partition was assigned and will be read from `committed` (its
    /// first message should carry that offset).
    pub fn expect(&mut self, partition: i32, committed: i64) {
        self.parts.entry(partition).or_default().start = Some(committed);
    }

    /// A message arrived carrying `records` records to finish (0: done now).
    /// Returns the offsets skipped since the previous message (or since the
    /// committed start), if any: Kafka offsets are dense unless the topic is
    /// compacted or transactional, so a gap otherwise means records that
    /// never reached ccwatch.
    pub fn open(&mut self, partition: i32, offset: i64, records: u32) -> Option<Gap> {
        let p = self.parts.entry(partition).or_default();
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

    /// One record of the message at `offset` has been fully delivered.
    pub fn finish(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.parts.get_mut(&partition) {
            if let Some(n) = p.open.get_mut(&offset) {
                *n -= 1;
                if *n == 0 {
                    p.open.remove(&offset);
                }
            }
        }
    }

    /// The partitions whose next offset to store (Kafka's "next to read")
    /// moved since the last call.
    pub fn storable(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (&partition, p) in &mut self.parts {
            let next = match p.open.keys().next() {
                Some(&first) => first,
                None => match p.last {
                    Some(l) => l + 1,
                    None => continue,
                },
            };
            if p.stored.is_none_or(|s| next > s) {
                p.stored = Some(next);
                out.push((partition, next));
            }
        }
        out.sort_unstable();
        out
    }

    pub fn forget(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.parts.remove(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> EventTime {
        EventTime(s * 1000)
    }

    fn drain(m: &mut Merge<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| m.pop_ready().map(|r| r.item)).collect()
    }

    #[test]
    fn audit_from_the_future_waits_for_logins_to_reach_it() {
        let mut m = Merge::new(100);
        m.wait_for(Stream::Login);
        m.assign(Stream::Audit, &[0]);
        m.push((Stream::Audit, 0), t(10), 0, "assign-admin@10");
        m.push((Stream::Audit, 0), t(30), 0, "enable@30");
        m.set_eof((Stream::Audit, 0));
        // The login group has not been assigned yet: nothing moves.
        assert!(drain(&mut m).is_empty());
        m.assign(Stream::Login, &[0, 1]);
        m.push((Stream::Login, 0), t(5), 1, "login@5");
        // Partition 1 has said nothing yet: it may still deliver something earlier.
        assert!(drain(&mut m).is_empty());
        m.push((Stream::Login, 1), t(20), 1, "login@20");
        assert_eq!(drain(&mut m), ["login@5"]);
        m.push((Stream::Login, 0), t(25), 1, "login@25");
        assert_eq!(drain(&mut m), ["assign-admin@10", "login@20"]);
        m.set_eof((Stream::Login, 0));
        m.set_eof((Stream::Login, 1));
        assert_eq!(drain(&mut m), ["login@25", "enable@30"]);
        assert!(m.caught_up(Stream::Login) && m.caught_up(Stream::Audit));
    }

    #[test]
    fn equal_times_release_audit_first_and_late_records_are_flagged() {
        let mut m = Merge::new(100);
        m.assign(Stream::Login, &[0]);
        m.assign(Stream::Audit, &[0]);
        m.set_eof((Stream::Audit, 0));
        m.push((Stream::Login, 0), t(10), 1, "login@10");
        m.push((Stream::Audit, 0), t(10), 0, "audit@10");
        m.set_eof((Stream::Audit, 0));
        assert_eq!(drain(&mut m), ["audit@10", "login@10"]);
        m.push((Stream::Audit, 0), t(3), 0, "audit@3");
        m.set_eof((Stream::Audit, 0));
        let r = m.pop_ready().unwrap();
        assert_eq!((r.item, r.late, r.forced), ("audit@3", true, false));
    }

    #[test]
    fn max_pending_bounds_memory() {
        let mut m = Merge::new(2);
        m.wait_for(Stream::Login);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            m.push((Stream::Audit, 0), t(i as i64), 0, name);
        }
        let r = m.pop_ready().unwrap();
        assert_eq!((r.item, r.forced), ("a", true));
        assert!(m.pop_ready().is_none());
        assert_eq!(m.len(), 2);
        assert_eq!(std::iter::from_fn(|| m.pop_any().map(|r| r.item)).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn records_that_need_no_processing_still_move_their_lane() {
        let mut m = Merge::new(100);
        m.assign(Stream::Login, &[0]);
        m.assign(Stream::Audit, &[0]);
        m.push((Stream::Audit, 0), t(50), 0, "audit@50");
        m.set_eof((Stream::Audit, 0));
        m.push((Stream::Login, 0), t(40), 1, "grant@40");
        assert_eq!(drain(&mut m), ["grant@40"]);
        m.advance((Stream::Login, 0), Some(t(60)));
        assert_eq!(drain(&mut m), ["audit@50"]);
    }

    #[test]
    fn revoked_lanes_stop_holding_back() {
        let mut m = Merge::new(100);
        m.assign(Stream::Login, &[0, 1]);
        m.push((Stream::Login, 0), t(5), 1, "x");
        assert!(drain(&mut m).is_empty());
        m.revoke(Stream::Login, &[1]);
        assert_eq!(drain(&mut m), ["x"]);
    }

    #[test]
    fn offsets_report_what_the_broker_skipped() {
        let mut o = Offsets::default();
        o.expect(0, 10);
        // A broker that resumes at the next batch instead of the committed offset.
        assert_eq!(o.open(0, 60, 1), Some(Gap { from: 10, to: 60 }));
        assert_eq!(o.open(0, 61, 0), None);
        assert_eq!(o.open(0, 63, 0), Some(Gap { from: 62, to: 63 }), "a transaction marker or compaction");
        assert_eq!(o.open(0, 61, 0), None, "a redelivered earlier offset is not a gap");
        o.expect(1, 5);
        assert_eq!(o.open(1, 5, 0), None, "resumed exactly at the committed offset");
        assert_eq!(o.open(2, 7, 0), None, "no committed offset known: nothing to compare with");
    }

    #[test]
    fn offsets_are_stored_only_past_finished_messages() {
        let mut o = Offsets::default();
        o.open(0, 10, 1);
        o.open(0, 11, 2);
        o.open(0, 12, 0); // a message with no events (e.g. dead-lettered after delivery)
        assert_eq!(o.storable(), [(0, 10)]);
        o.finish(0, 11);
        o.finish(0, 11);
        assert!(o.storable().is_empty(), "10 still in flight");
        o.finish(0, 10);
        assert_eq!(o.storable(), [(0, 13)]);
        assert!(o.storable().is_empty());
        o.forget(&[0]);
        o.open(0, 40, 0);
        assert_eq!(o.storable(), [(0, 41)]);
    }
}
