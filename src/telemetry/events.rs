//! The internal-events catalogue: one type per thing that happens in the live
//! shell, each writing its log line and its metric together (as in Vector's
//! `internal_events`). The run loop says *what* happened by emitting one; how
//! it is logged and counted is decided here, once, so a log line never goes
//! without its metric or the other way round, and no label carries a user,
//! IP, app or org value.

use super::Metrics;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The `sink` label of the dead-letter topic for undecodable records.
pub const DEAD_LETTER_SINK: &str = "dead_letter";
/// The `sink` label of the alert dead letter.
pub const ALERT_DEAD_LETTER_SINK: &str = "alert_dead_letter";

/// Something the live shell reports.
pub trait InternalEvent {
    fn emit(self, m: &Metrics);
}

/// A sink took alerts.
pub struct SinkDelivered<'a> {
    pub sink: &'a str,
    pub count: u64,
}

impl InternalEvent for SinkDelivered<'_> {
    fn emit(self, m: &Metrics) {
        m.sink_deliveries.with_label_values(&[self.sink]).inc_by(self.count);
    }
}

/// A sink failed a delivery attempt; intake waits and the batch is retried.
pub struct SinkFailed<'a> {
    pub sink: &'a str,
    pub error: &'a dyn std::fmt::Display,
    pub permanent: bool,
}

impl InternalEvent for SinkFailed<'_> {
    fn emit(self, m: &Metrics) {
        m.sink_failures.with_label_values(&[self.sink]).inc();
        if self.permanent {
            tracing::error!(
                sink = self.sink, error = %self.error,
                "Sink refused an alert for good and no [alert_dead_letter] is configured: retrying it, \
                 offsets are held until it is taken."
            );
        } else {
            tracing::error!(sink = self.sink, error = %self.error, "Sink did not accept alerts; offsets are held until it does.");
        }
    }
}

/// A sink repeated attempts after transient failures.
pub struct SinkRetried<'a> {
    pub sink: &'a str,
    pub count: u64,
}

impl InternalEvent for SinkRetried<'_> {
    fn emit(self, m: &Metrics) {
        if self.count > 0 {
            m.sink_retries.with_label_values(&[self.sink]).inc_by(self.count);
        }
    }
}

/// Alerts a sink refused for good were written to the alert dead letter.
/// Logged at most once a minute per sink and reason (`LogLimiter`).
pub struct AlertsDeadLettered<'a> {
    pub sink: &'a str,
    pub reason: &'static str,
    pub detail: &'a str,
    pub count: u64,
    pub limiter: &'a mut LogLimiter,
}

impl InternalEvent for AlertsDeadLettered<'_> {
    fn emit(self, m: &Metrics) {
        m.sink_dead_letters.with_label_values(&[self.sink, self.reason]).inc_by(self.count);
        if let Some(suppressed) = self.limiter.allow(self.sink, self.reason, self.count) {
            tracing::warn!(
                sink = self.sink,
                reason = self.reason,
                error = self.detail,
                alerts = self.count,
                suppressed_since_last_log = suppressed,
                "Sink refused alerts for good; they were written to the alert dead letter and intake goes on."
            );
        }
    }
}

/// Undecodable records went to the dead-letter topic.
pub struct RecordsDeadLettered<'a> {
    pub reasons: &'a [&'static str],
    pub truncated: u64,
    pub refused: u64,
}

impl InternalEvent for RecordsDeadLettered<'_> {
    fn emit(self, m: &Metrics) {
        m.sink_deliveries.with_label_values(&[DEAD_LETTER_SINK]).inc_by(self.reasons.len() as u64 - self.refused);
        for r in self.reasons {
            m.dead_letters.with_label_values(&[r]).inc();
        }
        m.dead_letters_truncated.inc_by(self.truncated);
        m.dead_letters_refused.inc_by(self.refused);
        if self.truncated > 0 {
            tracing::warn!(
                records = self.truncated,
                "Undecodable records larger than the dead-letter topic accepts were set aside cut to fit; \
                 their original size and SHA-256 are in headers."
            );
        }
    }
}

/// The dead-letter topic failed; offsets are held.
pub struct DeadLetterFailed<'a> {
    pub topic: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for DeadLetterFailed<'_> {
    fn emit(self, m: &Metrics) {
        m.sink_failures.with_label_values(&[DEAD_LETTER_SINK]).inc();
        tracing::error!(topic = self.topic, error = %self.error, "Dead letters not accepted; offsets are held.");
    }
}

/// The alert dead letter failed; offsets are held.
pub struct AlertDeadLetterFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for AlertDeadLetterFailed<'_> {
    fn emit(self, m: &Metrics) {
        m.sink_failures.with_label_values(&[ALERT_DEAD_LETTER_SINK]).inc();
        tracing::error!(error = %self.error, "Alert dead letter not written; offsets are held until it is.");
    }
}

/// The group gave this instance login partitions.
pub struct PartitionsAssigned<'a> {
    pub partitions: &'a [i32],
}

impl InternalEvent for PartitionsAssigned<'_> {
    fn emit(self, m: &Metrics) {
        m.assignment_changes.with_label_values(&["assigned"]).inc();
        tracing::info!(partitions = ?self.partitions, "Login partitions assigned.");
    }
}

/// The group took login partitions away; records received from them and
/// not processed were dropped.
pub struct PartitionsRevoked<'a> {
    pub partitions: &'a [i32],
    pub dropped: u64,
}

impl InternalEvent for PartitionsRevoked<'_> {
    fn emit(self, m: &Metrics) {
        m.assignment_changes.with_label_values(&["revoked"]).inc();
        m.revoked_records_dropped.inc_by(self.dropped);
        tracing::info!(
            partitions = ?self.partitions, dropped = self.dropped,
            "Login partitions revoked: records received from them and not yet processed are dropped; their \
             offsets were not stored, so the next owner reads them again."
        );
    }
}

/// A login message this instance had processed and delivered before its
/// partition was revoked came back uncommitted: it only rebuilds state.
pub struct RedeliveryWithheld;

impl InternalEvent for RedeliveryWithheld {
    fn emit(self, m: &Metrics) {
        m.redelivered_withheld.inc();
    }
}

/// The broker delivered no message for a range of login offsets.
pub struct OffsetGap<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl InternalEvent for OffsetGap<'_> {
    fn emit(self, m: &Metrics) {
        m.offset_gaps.inc_by((self.to - self.from) as u64);
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            from = self.from,
            to = self.to,
            "The broker delivered no message for offsets [from, to): expected on a compacted or \
             transactional topic, otherwise those records never reached ccwatch."
        );
    }
}

/// A record could not be decoded.
pub struct RecordRejected<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub reason: &'static str,
    pub detail: &'a str,
    /// Whether it goes to the dead-letter topic (else it is only logged).
    pub dead_lettered: bool,
}

impl InternalEvent for RecordRejected<'_> {
    fn emit(self, m: &Metrics) {
        m.records_consumed.with_label_values(&[self.topic, "rejected"]).inc();
        m.records_rejected.with_label_values(&[self.reason]).inc();
        if !self.dead_lettered {
            tracing::warn!(
                topic = self.topic,
                partition = self.partition,
                offset = self.offset,
                reason = self.reason,
                detail = self.detail,
                "Set aside an undecodable record (no dead_letter_topic configured)."
            );
        }
    }
}

/// A login partition has lag but delivered nothing for the stall period, or
/// moved again after one.
pub struct PartitionStalled<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub lag: i64,
    pub stalled: bool,
    pub for_secs: u64,
}

impl InternalEvent for PartitionStalled<'_> {
    fn emit(self, m: &Metrics) {
        let p = self.partition.to_string();
        m.partition_stalled.with_label_values(&[self.topic, &p]).set(i64::from(self.stalled));
        if self.stalled {
            tracing::warn!(
                topic = self.topic,
                partition = self.partition,
                lag = self.lag,
                seconds = self.for_secs,
                "Partition has lag but has delivered nothing: a message the broker will not serve (larger than \
                 fetch.max.bytes?), intake paused behind a failing sink, or a broker problem."
            );
        } else {
            tracing::info!(topic = self.topic, partition = self.partition, "Partition is moving again.");
        }
    }
}

/// An alert line goes to the sinks (`kind`: raised, score_rose, closed).
pub struct AlertLine<'a> {
    pub kind: &'static str,
    /// Rule and severity, for a newly raised alert.
    pub raised: Option<(&'a str, &'a str)>,
}

impl InternalEvent for AlertLine<'_> {
    fn emit(self, m: &Metrics) {
        if let Some((rule, severity)) = self.raised {
            m.alerts_raised.with_label_values(&[rule, severity]).inc();
        }
        m.alert_updates.with_label_values(&[self.kind]).inc();
    }
}

/// The merge released a record: after a later one (`late`), or before its
/// turn because `kafka.max_pending` was reached (`forced`).
pub struct RecordReleased {
    pub late: bool,
    pub forced: bool,
}

impl InternalEvent for RecordReleased {
    fn emit(self, m: &Metrics) {
        if self.late {
            m.out_of_order.inc();
        }
        if self.forced {
            m.forced_releases.inc();
        }
    }
}

/// A message's records are all delivered: its processing latency.
pub struct RecordFinished {
    pub latency: Duration,
}

impl InternalEvent for RecordFinished {
    fn emit(self, m: &Metrics) {
        m.processing_latency.observe(self.latency.as_secs_f64());
    }
}

/// An offset was stored for the next commit, or refused.
pub struct OffsetStored<'a> {
    pub partition: i32,
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl InternalEvent for OffsetStored<'_> {
    fn emit(self, m: &Metrics) {
        match self.error {
            None => m.offsets_stored.inc(),
            Some(e) => {
                m.offset_store_failures.inc();
                tracing::debug!(partition = self.partition, error = %e, "Offset not stored (partition no longer assigned?).");
            }
        }
    }
}

/// A login record re-read below a committed offset to rebuild state.
pub struct WarmupRecord;

impl InternalEvent for WarmupRecord {
    fn emit(self, m: &Metrics) {
        m.warmup_records.inc();
    }
}

/// At most one log line per key and period; counts what it held back.
pub struct LogLimiter {
    period: Duration,
    last: HashMap<(String, &'static str), (Instant, u64)>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter { period: Duration::from_secs(60), last: HashMap::new() }
    }
}

impl LogLimiter {
    /// `Some(suppressed since the last line)` when a line may be written now.
    pub fn allow(&mut self, sink: &str, reason: &'static str, n: u64) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(&(sink.to_string(), reason)) {
            Some((at, held)) if now.duration_since(*at) < self.period => {
                *held += n;
                None
            }
            Some((at, held)) => {
                let suppressed = *held;
                *at = now;
                *held = 0;
                Some(suppressed)
            }
            None => {
                self.last.insert((sink.to_string(), reason), (now, 0));
                Some(0)
            }
        }
    }
}

/// An enrichment file changed and was read again (or could not be: the
/// previous version stays in use).
pub struct EnrichmentReloaded<'a> {
    pub file: &'static str,
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl InternalEvent for EnrichmentReloaded<'_> {
    fn emit(self, m: &Metrics) {
        let result = if self.error.is_some() { "error" } else { "ok" };
        m.enrichment_reloads.with_label_values(&[self.file, result]).inc();
        match self.error {
            None => tracing::info!(file = self.file, "Enrichment file reloaded."),
            Some(e) => {
                tracing::error!(file = self.file, error = %e, "Enrichment file not reloaded; the previous version stays in use.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_logs_once_per_period_and_counts_the_rest() {
        let mut l = LogLimiter { period: Duration::from_millis(50), last: HashMap::new() };
        assert_eq!(l.allow("hook", "http_4xx", 1), Some(0));
        assert_eq!(l.allow("hook", "http_4xx", 2), None);
        assert_eq!(l.allow("hook", "too_large", 1), Some(0), "another reason logs on its own");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.allow("hook", "http_4xx", 1), Some(2));
    }

    #[test]
    fn every_event_moves_its_metric() {
        let m = Metrics::new();
        let mut limiter = LogLimiter::default();
        AlertsDeadLettered { sink: "hook", reason: "http_4xx", detail: "HTTP 400", count: 2, limiter: &mut limiter }
            .emit(&m);
        PartitionsRevoked { partitions: &[1], dropped: 5 }.emit(&m);
        OffsetGap { topic: "t", partition: 0, from: 3, to: 7 }.emit(&m);
        SinkRetried { sink: "hook", count: 3 }.emit(&m);
        let text = m.render();
        for (series, want) in [
            (r#"ccwatch_sink_dead_letters_total{reason="http_4xx",sink="hook"}"#, "2"),
            ("ccwatch_revoked_records_dropped_total", "5"),
            ("ccwatch_offset_gap_offsets_total", "4"),
            (r#"ccwatch_sink_retries_total{sink="hook"}"#, "3"),
        ] {
            assert!(text.lines().any(|l| l == format!("{series} {want}")), "{series} {want}\n{text}");
        }
    }
}
