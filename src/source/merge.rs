//! Event-time merge for live logins: records from many Kafka partitions → one
//! stream in event-time order.
//!
//! This is replay's k-way merge, made incremental. Each assigned partition is
//! a *lane* with a watermark (the latest event time it delivered). A record is
//! released once every lane that may still deliver something earlier has
//! passed it: `time <= min(watermark of lanes not at end-of-partition)`. A
//! lane at end-of-partition (librdkafka's partition EOF) constrains nothing.
//! Memory is bounded by `max_pending`: past it, the oldest record is released
//! anyway and counted.
//!
//! Setup-audit records do not go through the merge: correlation keeps them on
//! an event-time timeline and answers every grant as of its own time, so they
//! are applied as soon as they arrive. What the merge's order still decides is
//! per-pair state (IP history, failure windows) and when alerts close.
//!
//! Pure and synchronous; `app::live` drives it. No clock: "released" depends
//! only on what arrived.

use crate::event::EventTime;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Which consumer a lane belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Audit,
    Login,
    /// `kafka.activity_topic`, when API activity has a topic of its own.
    Activity,
}

impl Stream {
    /// Login and activity lanes: grouped, committed, merged by event time.
    pub fn is_traffic(self) -> bool {
        self != Stream::Audit
    }
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
    lane: Lane,
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
    seq: u64,
    released_max: Option<EventTime>,
    max_pending: usize,
}

impl<T> Merge<T> {
    pub fn new(max_pending: usize) -> Merge<T> {
        Merge {
            heap: BinaryHeap::new(),
            lanes: HashMap::new(),
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

    /// Partitions now assigned to `stream`.
    pub fn assign(&mut self, stream: Stream, partitions: &[i32]) {
        for &p in partitions {
            self.lanes.entry((stream, p)).or_default();
        }
    }

    /// Partitions taken away: they constrain nothing any more, and the
    /// records received from them and not yet released are dropped (their
    /// offsets were not stored, so the partition's next owner reads them
    /// again). Returns how many were dropped.
    pub fn revoke(&mut self, stream: Stream, partitions: &[i32]) -> usize {
        for &p in partitions {
            self.lanes.remove(&(stream, p));
        }
        let before = self.heap.len();
        self.heap.retain(|Reverse(e)| !(e.lane.0 == stream && partitions.contains(&e.lane.1)));
        before - self.heap.len()
    }

    /// The lane has delivered everything it had.
    pub fn set_eof(&mut self, lane: Lane) {
        self.lanes.entry(lane).or_default().eof = true;
    }

    /// Whether every assigned lane of `stream` is at end-of-partition.
    pub fn caught_up(&self, stream: Stream) -> bool {
        self.lanes.iter().filter(|(l, _)| l.0 == stream).all(|(_, s)| s.eof)
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
        self.heap.push(Reverse(Entry { key: (time, rank, self.seq), lane, item }));
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
    fn a_record_waits_for_every_live_partition_to_reach_it() {
        let mut m = Merge::new(100);
        m.assign(Stream::Login, &[0, 1]);
        m.push((Stream::Login, 0), t(5), 1, "p0@5");
        // Partition 1 has said nothing yet: it may still deliver something earlier.
        assert!(drain(&mut m).is_empty());
        m.push((Stream::Login, 1), t(20), 1, "p1@20");
        assert_eq!(drain(&mut m), ["p0@5"]);
        m.push((Stream::Login, 0), t(25), 1, "p0@25");
        assert_eq!(drain(&mut m), ["p1@20"]);
        m.set_eof((Stream::Login, 0));
        m.set_eof((Stream::Login, 1));
        assert_eq!(drain(&mut m), ["p0@25"]);
        assert!(m.caught_up(Stream::Login));
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
        m.assign(Stream::Login, &[0, 1]);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            m.push((Stream::Login, 0), t(i as i64), 1, name);
        }
        let r = m.pop_ready().unwrap();
        assert_eq!((r.item, r.forced), ("a", true));
        assert!(m.pop_ready().is_none(), "partition 1 holds the rest back");
        assert_eq!(m.len(), 2);
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
    fn revoked_lanes_stop_holding_back_and_their_records_are_dropped() {
        let mut m = Merge::new(100);
        m.assign(Stream::Login, &[0, 1, 2]);
        m.push((Stream::Login, 0), t(5), 1, "x");
        m.push((Stream::Login, 1), t(6), 1, "from-1");
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.revoke(Stream::Login, &[1, 2]), 1, "the record received from partition 1 is dropped");
        assert_eq!(drain(&mut m), ["x"]);
        assert!(m.is_empty());
    }
}
