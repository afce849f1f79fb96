//! Aggregate: repeated alerts with the same `alert_id` fold into one.
//!
//! An alert is emitted when first raised and again (same id) whenever its score
//! rises. It closes when event time passes the end of its UTC day plus a grace
//! hour, or at end of input; the close emits a final line if anything changed
//! since the last one, so the last line per id always carries the final count.
//! Event time only: never the wall clock.
//!
//! Memory is bounded. At most `max_open` alerts are open: past it the one
//! that would close first is closed early (its final line written, counted in
//! `early_closes`). The last `max_closed` closed alerts are remembered (least
//! recently closed forgotten first), so a late record, however late in event
//! time, continues its alert's count and writes a line with it instead of
//! starting again at 1.

use crate::event::time::MS_PER_HOUR;
use crate::event::{Alert, Emit, EmitKind, EventTime, Factor};
use hashbrown::HashMap;
use lru::LruCache;
use std::collections::BTreeSet;
use std::num::NonZeroUsize;

struct Open {
    alert: Alert,
    /// Count or time changed since the last emitted line.
    dirty: bool,
    close_at: EventTime,
}

pub struct Aggregator {
    max_evidence: usize,
    max_open: usize,
    open: HashMap<String, Open>,
    /// Open aggregates by when they close, then id: the next to close first.
    by_close: BTreeSet<(EventTime, String)>,
    /// Closed aggregates, so late records continue them.
    closed: LruCache<String, Alert>,
    /// Alerts closed before their time because `max_open` was reached.
    pub early_closes: u64,
}

const GRACE_MS: i64 = MS_PER_HOUR;

impl Aggregator {
    pub fn new(max_evidence: usize, max_open: usize, max_closed: usize) -> Aggregator {
        Aggregator {
            max_evidence,
            max_open: max_open.max(1),
            open: HashMap::new(),
            by_close: BTreeSet::new(),
            closed: LruCache::new(NonZeroUsize::new(max_closed).unwrap_or(NonZeroUsize::MIN)),
            early_closes: 0,
        }
    }

    /// Drops every open and remembered aggregate without a line: their
    /// records will be read again (see `Pipeline::forget_traffic`).
    pub fn forget(&mut self) {
        self.open.clear();
        self.by_close.clear();
        self.closed.clear();
    }

    /// The factors of an open or remembered alert.
    pub fn factors_of(&self, id: &str) -> Option<Vec<Factor>> {
        match self.open.get(id) {
            Some(o) => Some(o.alert.factors.clone()),
            None => self.closed.peek(id).map(|a| a.factors.clone()),
        }
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Folds one alert in; appends the lines to write (the alert's own, and
    /// an early close when the bound pushes the oldest open alert out).
    pub fn observe(&mut self, mut cand: Alert, out: &mut Vec<(Emit, bool)>) {
        cand.evidence.truncate(self.max_evidence);
        let Some(open) = self.open.get_mut(&cand.alert_id) else {
            let close_at = cand.first_time.next_day_start().plus(GRACE_MS);
            let (alert, kind) = match self.closed.pop(&cand.alert_id) {
                Some(prev) => {
                    let mut merged = prev;
                    let rose = merge(&mut merged, cand, self.max_evidence);
                    (merged, if rose { EmitKind::ScoreRose } else { EmitKind::Raised })
                }
                None => (cand, EmitKind::Raised),
            };
            if self.open.len() >= self.max_open {
                if let Some((_, oldest)) = self.by_close.first().cloned() {
                    self.early_closes += 1;
                    out.extend(self.close(&oldest));
                }
            }
            self.by_close.insert((close_at, alert.alert_id.clone()));
            self.open.insert(alert.alert_id.clone(), Open { alert: alert.clone(), dirty: false, close_at });
            out.push((Emit { kind, alert }, true));
            return;
        };
        if merge(&mut open.alert, cand, self.max_evidence) {
            open.dirty = false;
            out.push((Emit { kind: EmitKind::ScoreRose, alert: open.alert.clone() }, true));
            return;
        }
        open.dirty = true;
    }

    /// Folds one more grant into its open aggregate without an alert being
    /// built, when that cannot change what is written: the aggregate is open
    /// and `score` does not rise above it. The same as `observe` with a
    /// one-count candidate in that case; false when the caller must build the
    /// alert and call `observe`.
    pub fn fold_repeat(&mut self, alert_id: &str, score: f64, time: EventTime, evidence: Option<&str>) -> bool {
        let Some(open) = self.open.get_mut(alert_id) else { return false };
        if score > open.alert.score {
            return false;
        }
        add_occurrences(&mut open.alert, 1, time, time, evidence, self.max_evidence);
        open.dirty = true;
        true
    }

    /// Closes aggregates whose day (plus grace) ended before `watermark`.
    /// Returns every closed aggregate; `Emit::alert` is final.
    pub fn close_through(&mut self, watermark: EventTime) -> Vec<(Emit, bool)> {
        let mut out = Vec::new();
        while let Some((at, id)) = self.by_close.first().cloned() {
            if at > watermark {
                break;
            }
            out.extend(self.close(&id));
        }
        out
    }

    /// Closes everything (end of input), ordered by first time then id.
    pub fn finish(&mut self) -> Vec<(Emit, bool)> {
        let mut ids: Vec<(EventTime, String)> =
            self.open.iter().map(|(k, o)| (o.alert.first_time, k.clone())).collect();
        ids.sort();
        ids.into_iter().filter_map(|(_, id)| self.close(&id)).collect()
    }

    /// Returns the final alert and whether a line must be written for it.
    fn close(&mut self, id: &str) -> Option<(Emit, bool)> {
        let o = self.open.remove(id)?;
        self.by_close.remove(&(o.close_at, id.to_string()));
        self.closed.put(id.to_string(), o.alert.clone());
        Some((Emit { kind: EmitKind::Closed, alert: o.alert }, o.dirty))
    }
}

/// Counts `count` more occurrences spanning `first..=last` into `agg`, widening
/// its time span and keeping new evidence ids up to the bound.
fn add_occurrences<'e>(
    agg: &mut Alert,
    count: u64,
    first: EventTime,
    last: EventTime,
    evidence: impl IntoIterator<Item = &'e str>,
    max_evidence: usize,
) {
    agg.count += count;
    if first < agg.first_time {
        agg.first_time = first;
        agg.first_seen = first.to_string();
    }
    if last > agg.last_time {
        agg.last_time = last;
        agg.last_seen = last.to_string();
    }
    for e in evidence {
        if agg.evidence.len() >= max_evidence {
            break;
        }
        if !agg.evidence.iter().any(|x| x == e) {
            agg.evidence.push(e.to_string());
        }
    }
}

/// Folds `cand` into `agg`; true when the score rose (factors replaced).
/// Activity summaries add up.
fn merge(agg: &mut Alert, cand: Alert, max_evidence: usize) -> bool {
    let evidence = cand.evidence.iter().map(String::as_str);
    add_occurrences(agg, cand.count, cand.first_time, cand.last_time, evidence, max_evidence);
    if let Some(activity) = &cand.activity {
        agg.activity.get_or_insert_default().absorb(activity);
    }
    if cand.score > agg.score {
        agg.score = cand.score;
        agg.severity = cand.severity;
        agg.factors = cand.factors;
        agg.title = cand.title;
        if agg.username.is_none() {
            agg.username = cand.username;
        }
        return true;
    }
    // At the same (capped) score, a candidate naming more factors (a
    // data-access day that found one more) explains the alert better.
    if cand.score == agg.score && cand.factors.len() > agg.factors.len() {
        agg.factors = cand.factors;
        agg.title = cand.title;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::time::MS_PER_DAY;
    use crate::event::{Rule, Severity};

    /// `observe`, returning the alert's own line (not early closes).
    fn seen(agg: &mut Aggregator, a: Alert) -> Option<Emit> {
        let mut out = Vec::new();
        let id = a.alert_id.clone();
        agg.observe(a, &mut out);
        out.into_iter().map(|(e, _)| e).find(|e| e.alert.alert_id == id && e.kind != EmitKind::Closed)
    }

    fn alert(id: &str, t: i64, score: f64, ev: &str) -> Alert {
        Alert {
            alert_id: id.into(),
            rule: Rule::ClientCredentialsGrant,
            severity: Severity::High,
            score,
            title: format!("t{score}"),
            org_id: None,
            user_id: None,
            username: None,
            app: None,
            source_ip: None,
            first_seen: EventTime(t).to_string(),
            last_seen: EventTime(t).to_string(),
            count: 1,
            factors: vec![],
            evidence: vec![ev.into()],
            activity: None,
            mitre: vec![],
            remediation: "",
            first_time: EventTime(t),
            last_time: EventTime(t),
        }
    }

    #[test]
    fn raises_then_counts_then_rises_then_closes() {
        let mut agg = Aggregator::new(2, 100, 100);
        let e = seen(&mut agg, alert("a", 1000, 7.0, "e1")).unwrap();
        assert_eq!((e.kind, e.alert.count), (EmitKind::Raised, 1));
        assert!(seen(&mut agg, alert("a", 2000, 7.0, "e2")).is_none());
        let e = seen(&mut agg, alert("a", 3000, 8.0, "e3")).unwrap();
        assert_eq!((e.kind, e.alert.count, e.alert.score), (EmitKind::ScoreRose, 3, 8.0));
        assert_eq!(e.alert.evidence, vec!["e1", "e2"], "evidence is bounded");
        assert!(seen(&mut agg, alert("a", 4000, 7.5, "e4")).is_none());
        let closed = agg.finish();
        assert_eq!(closed.len(), 1);
        let (e, write) = &closed[0];
        assert!(write);
        assert_eq!((e.alert.count, e.alert.score, e.alert.last_seen.as_str()), (4, 8.0, "1970-01-01T00:00:04.000Z"));
    }

    #[test]
    fn folding_a_repeat_equals_observing_it_and_declines_what_it_cannot_fold() {
        let steps = [(500, 7.0, "e0"), (2000, 7.0, "e2"), (2000, 6.5, "e2"), (3000, 7.0, "e3"), (4000, 7.0, "e4")];
        let (mut by_alert, mut by_fold) = (Aggregator::new(3, 100, 100), Aggregator::new(3, 100, 100));
        seen(&mut by_alert, alert("a", 1000, 7.0, "e1"));
        assert!(!by_fold.fold_repeat("a", 7.0, EventTime(1000), Some("e1")), "nothing open to fold into");
        seen(&mut by_fold, alert("a", 1000, 7.0, "e1"));
        for (t, score, ev) in steps {
            assert!(seen(&mut by_alert, alert("a", t, score, ev)).is_none());
            assert!(by_fold.fold_repeat("a", score, EventTime(t), Some(ev)));
        }
        assert!(!by_fold.fold_repeat("a", 7.5, EventTime(5000), None), "a rising score needs the full alert");
        assert!(!by_fold.fold_repeat("b", 7.0, EventTime(5000), None));
        let (a, f) = (by_alert.finish(), by_fold.finish());
        assert_eq!(a, f);
        assert_eq!((f[0].0.alert.count, f[0].0.alert.first_seen.as_str()), (6, "1970-01-01T00:00:00.500Z"));
        assert_eq!(f[0].0.alert.evidence, vec!["e1", "e0", "e2"]);
    }

    #[test]
    fn unchanged_aggregate_closes_without_a_line() {
        let mut agg = Aggregator::new(5, 100, 100);
        seen(&mut agg, alert("a", 1000, 7.0, "e1"));
        let closed = agg.finish();
        assert!(!closed[0].1);
    }

    #[test]
    fn closes_by_event_time_and_continues_late_records() {
        let mut agg = Aggregator::new(5, 100, 100);
        seen(&mut agg, alert("a", 1000, 7.0, "e1"));
        seen(&mut agg, alert("a", 2000, 7.0, "e2"));
        assert!(agg.close_through(EventTime(MS_PER_DAY)).is_empty(), "grace hour not over");
        let closed = agg.close_through(EventTime(MS_PER_DAY + GRACE_MS));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].0.alert.count, 2);
        assert_eq!(agg.open_count(), 0);
        let late = seen(&mut agg, alert("a", 3000, 7.0, "e3")).unwrap();
        assert_eq!(late.alert.count, 3, "a late record continues the closed count");
    }

    #[test]
    fn past_max_open_the_first_to_close_is_closed_early_with_its_count() {
        let mut agg = Aggregator::new(5, 2, 100);
        let mut out = Vec::new();
        agg.observe(alert("day2", MS_PER_DAY + 10, 7.0, "e1"), &mut out);
        agg.observe(alert("day1", 10, 7.0, "e2"), &mut out);
        agg.observe(alert("day1", 20, 7.0, "e3"), &mut out);
        out.clear();
        agg.observe(alert("day3", 2 * MS_PER_DAY + 10, 7.0, "e4"), &mut out);
        let closed: Vec<_> = out.iter().filter(|(e, _)| e.kind == EmitKind::Closed).collect();
        assert_eq!(closed.len(), 1);
        let (e, write) = closed[0];
        assert_eq!((e.alert.alert_id.as_str(), e.alert.count, *write), ("day1", 2, true), "its final line, written");
        assert_eq!((agg.early_closes, agg.open_count()), (1, 2));
        // A late record still continues it.
        let late = seen(&mut agg, alert("day1", 30, 7.0, "e5")).unwrap();
        assert_eq!(late.alert.count, 3);
    }

    #[test]
    fn a_record_days_late_continues_its_closed_alert() {
        let mut agg = Aggregator::new(5, 100, 100);
        seen(&mut agg, alert("a", 1000, 7.0, "e1"));
        assert_eq!(agg.close_through(EventTime(30 * MS_PER_DAY)).len(), 1);
        let late = seen(&mut agg, alert("a", 2000, 7.0, "e2")).unwrap();
        assert_eq!(late.alert.count, 2, "remembered by count, not by time");
    }
}
