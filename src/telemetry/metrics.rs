//! The metric catalogue: one typed handle per metric, registered on an owned
//! `prometheus::Registry` (never the global one), so tests can read values in
//! isolation and two pipelines in one process never collide.
//!
//! Names are `ccwatch_<what>_<unit>`; counters end in `_total`. Every
//! counter whose label values are known in advance is exported at 0 from
//! start-up (rule × severity, grant class × outcome, alert line kinds,
//! eviction kinds; sinks and reject reasons through `preset`), so a first
//! increment is an `increase()` Prometheus can see. `ccwatch_build_info` and
//! the standard `process_*` metrics are registered too.

use crate::event::{GrantClass, Rule, Severity};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Kinds of `ccwatch_state_evictions_total`.
pub const EVICTION_KINDS: [&str; 7] =
    ["pairs", "ips", "failure_users", "setup_records", "sessions", "activity_waiting", "activity_pairs"];

pub struct Metrics {
    pub registry: Registry,
    /// Messages received, by topic and decoded record kind.
    pub records_consumed: IntCounterVec,
    /// Records set aside, by reason.
    pub records_rejected: IntCounterVec,
    /// Login records classified, by grant class and outcome.
    pub grants: IntCounterVec,
    /// New alerts, by rule and severity.
    pub alerts_raised: IntCounterVec,
    /// Alert lines emitted, by why (raised, score_rose, closed).
    pub alert_updates: IntCounterVec,
    pub sink_deliveries: IntCounterVec,
    pub sink_failures: IntCounterVec,
    pub dead_letters: IntCounterVec,
    /// Event time → alert accepted by every sink.
    pub end_to_end_latency: Histogram,
    /// Message received → its offset stored.
    pub processing_latency: Histogram,
    pub consumer_lag: IntGaugeVec,
    pub offsets_stored: IntCounter,
    pub offset_store_failures: IntCounter,
    /// Login offsets skipped between the expected next offset and the one
    /// delivered: compaction, transaction markers, or a broker losing records.
    pub offset_gaps: IntCounter,
    /// Login records re-read below a committed offset to rebuild correlation
    /// state after a restart or rebalance (`kafka.warmup_messages`).
    pub warmup_records: IntCounter,
    /// Login partition assignment changes, by change (assigned, revoked).
    pub assignment_changes: IntCounterVec,
    /// 1 while intake has paused its partitions because the run loop (usually
    /// a failing sink) took nothing for a second.
    pub intake_paused: IntGauge,
    pub intake_pauses: IntCounter,
    /// Records released from the event-time merge later than a record already processed.
    pub out_of_order: IntCounter,
    /// Records released before their turn because `kafka.max_pending` was reached.
    pub forced_releases: IntCounter,
    pub pending_records: IntGauge,
    pub open_alerts: IntGauge,
    pub state_users: IntGauge,
    pub state_pairs: IntGauge,
    pub state_ips: IntGauge,
    /// Evictions from bounded state, by kind (`EVICTION_KINDS`).
    pub state_evictions: IntCounterVec,
    /// 1, labelled with the version.
    pub build_info: IntGaugeVec,
    pub event_time_watermark: IntGauge,
    pub audit_caught_up: IntGauge,
    /// Setup-audit records deleted before this instance started.
    pub audit_expired_records: IntGauge,
    /// Records received from a partition that was revoked before they were
    /// processed: dropped, to be read again by the partition's next owner.
    pub revoked_records_dropped: IntCounter,
    /// Messages redelivered after a partition came back that this instance
    /// had already processed: skipped, not counted twice.
    pub redelivered_withheld: IntCounter,
    /// Setup records that arrived after a later grant had been scored without them.
    pub late_setup_records: IntCounter,
    /// Alerts closed before their day ended because `alerts.max_open` was reached.
    pub alerts_closed_early: IntCounter,
    /// Grant sessions open (post-grant activity attaches to them).
    pub sessions_open: IntGauge,
    /// Activity records attributed to a grant, by method (key, request, tuple).
    pub activity_attributed: IntCounterVec,
    pub enrichment_reloads: IntCounterVec,
    /// Activity of client-credentials run-as users that matched no grant.
    pub activity_unattributed: IntCounter,
    /// Alerts a sink refused for good, set aside to the alert dead letter, by sink and reason.
    pub sink_dead_letters: IntCounterVec,
    /// Delivery attempts repeated after a transient failure, by sink.
    pub sink_retries: IntCounterVec,
    /// Undecodable records whose payload was cut to fit the dead-letter topic.
    pub dead_letters_truncated: IntCounter,
    /// Undecodable records the dead-letter topic refused even without payload.
    pub dead_letters_refused: IntCounter,
    /// 1 while a login partition has lag but has delivered nothing for
    /// `kafka.stall_after_secs`, by partition.
    pub partition_stalled: IntGaugeVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Creates each listed label set at 0.
fn preset(c: IntCounterVec, label_sets: &[Vec<&str>]) -> IntCounterVec {
    for l in label_sets {
        c.with_label_values(l);
    }
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let fast = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        // Salesforce publishes login events within seconds but ELF files hours later.
        let e2e = vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 6.0 * 3600.0, 86400.0];
        let assignment_changes = counter_vec(
            &r,
            "ccwatch_partition_assignment_changes_total",
            "Login-topic partition assignment changes (group rebalances), by change: assigned or revoked.",
            &["change"],
        );
        for change in ["assigned", "revoked"] {
            assignment_changes.with_label_values(&[change]);
        }
        Metrics {
            assignment_changes,
            records_consumed: counter_vec(
                &r,
                "ccwatch_records_consumed_total",
                "Kafka messages consumed, by topic and decoded record kind.",
                &["topic", "kind"],
            ),
            records_rejected: counter_vec(
                &r,
                "ccwatch_records_rejected_total",
                "Records that could not be decoded, by reason.",
                &["reason"],
            ),
            grants: preset(
                counter_vec(
                    &r,
                    "ccwatch_grants_total",
                    "Login records classified, by grant class and outcome.",
                    &["class", "outcome"],
                ),
                &GrantClass::ALL
                    .iter()
                    .flat_map(|c| ["success", "failure"].map(|o| vec![c.label(), o]))
                    .collect::<Vec<_>>(),
            ),
            alerts_raised: preset(
                counter_vec(
                    &r,
                    "ccwatch_alerts_raised_total",
                    "New alerts, by rule and severity.",
                    &["rule", "severity"],
                ),
                &Rule::ALL.iter().flat_map(|r| Severity::ALL.map(|s| vec![r.id(), s.label()])).collect::<Vec<_>>(),
            ),
            alert_updates: preset(
                counter_vec(
                    &r,
                    "ccwatch_alert_lines_total",
                    "Alert lines emitted (raised, score_rose, closed).",
                    &["kind"],
                ),
                &[vec!["raised"], vec!["score_rose"], vec!["closed"]],
            ),
            sink_deliveries: counter_vec(
                &r,
                "ccwatch_sink_deliveries_total",
                "Alerts or dead letters accepted by a sink.",
                &["sink"],
            ),
            sink_failures: counter_vec(
                &r,
                "ccwatch_sink_failures_total",
                "Failed delivery attempts, by sink.",
                &["sink"],
            ),
            dead_letters: counter_vec(
                &r,
                "ccwatch_dead_letters_total",
                "Undecodable records sent to the dead-letter topic, by reason.",
                &["reason"],
            ),
            end_to_end_latency: histogram(
                &r,
                "ccwatch_end_to_end_latency_seconds",
                "From a record's event time to its alert accepted by every sink.",
                e2e,
            ),
            processing_latency: histogram(
                &r,
                "ccwatch_processing_latency_seconds",
                "From a message received to its offset stored.",
                fast,
            ),
            consumer_lag: gauge_vec(
                &r,
                "ccwatch_consumer_lag_messages",
                "Consumer lag per partition, from librdkafka statistics.",
                &["topic", "partition"],
            ),
            offsets_stored: counter(&r, "ccwatch_offsets_stored_total", "Offset stores after sinks accepted."),
            offset_store_failures: counter(
                &r,
                "ccwatch_offset_store_failures_total",
                "Offset stores refused (usually a partition revoked by a rebalance).",
            ),
            offset_gaps: counter(
                &r,
                "ccwatch_offset_gap_offsets_total",
                "Login-topic offsets never delivered: between a partition's committed offset and its first \
                 message, or between consecutive messages. Expected on compacted or transactional topics \
                 (markers take an offset); otherwise records were skipped before reaching ccwatch.",
            ),
            warmup_records: counter(
                &r,
                "ccwatch_warmup_records_total",
                "Login records re-read below a committed offset to rebuild correlation state after a restart \
                 or rebalance; their alerts were delivered before and are withheld.",
            ),
            intake_paused: gauge(
                &r,
                "ccwatch_intake_paused",
                "1 while consumption is paused because the run loop took nothing for a second (a sink \
                 failing): the consumers keep polling, so the instance stays in its group.",
            ),
            intake_pauses: counter(
                &r,
                "ccwatch_intake_pauses_total",
                "Times consumption was paused because the run loop took nothing for a second.",
            ),
            out_of_order: counter(
                &r,
                "ccwatch_out_of_order_total",
                "Records processed after a later-timed record (arrived too late to be ordered).",
            ),
            forced_releases: counter(
                &r,
                "ccwatch_forced_releases_total",
                "Records released before their turn because kafka.max_pending was reached.",
            ),
            pending_records: gauge(
                &r,
                "ccwatch_pending_records",
                "Records received and waiting in the event-time merge.",
            ),
            open_alerts: gauge(&r, "ccwatch_open_alerts", "Alert aggregates not yet closed."),
            state_users: gauge(&r, "ccwatch_state_users", "Users whose privileges are tracked."),
            state_pairs: gauge(&r, "ccwatch_state_pairs", "(user, app) pairs with source-IP history."),
            state_ips: gauge(&r, "ccwatch_state_ips", "Source IPs remembered across all pairs."),
            state_evictions: preset(
                counter_vec(
                    &r,
                    "ccwatch_state_evictions_total",
                    "Entries evicted from bounded state, by kind.",
                    &["kind"],
                ),
                &EVICTION_KINDS.map(|k| vec![k]),
            ),
            build_info: {
                let g = gauge_vec(
                    &r,
                    "ccwatch_build_info",
                    "1, labelled with ccwatch's version and build profile.",
                    &["version", "profile"],
                );
                let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
                g.with_label_values(&[env!("CARGO_PKG_VERSION"), profile]).set(1);
                g
            },
            event_time_watermark: gauge(
                &r,
                "ccwatch_event_time_watermark_seconds",
                "Latest event time processed (Unix seconds).",
            ),
            audit_caught_up: gauge(
                &r,
                "ccwatch_audit_caught_up",
                "1 once every setup-audit partition has been read to its end.",
            ),
            audit_expired_records: gauge(
                &r,
                "ccwatch_audit_expired_records",
                "Setup-audit records already deleted (retention) when this instance started, so never read: \
                 the sum of the audit partitions' first offsets. Privilege changes they carried are unknown \
                 unless an inventory snapshot covers them.",
            ),
            revoked_records_dropped: counter(
                &r,
                "ccwatch_revoked_records_dropped_total",
                "Login records received from a partition revoked before they were processed; dropped \
                 unprocessed and uncommitted, so the partition's next owner reads them again.",
            ),
            redelivered_withheld: counter(
                &r,
                "ccwatch_redelivered_withheld_total",
                "Login messages redelivered after their partition came back to this instance that it had \
                 already processed and delivered; they rebuild correlation state with their alerts withheld.",
            ),
            sessions_open: gauge(
                &r,
                "ccwatch_sessions_open",
                "Client-credentials grant sessions open; post-grant activity attaches to them.",
            ),
            activity_attributed: {
                let c = counter_vec(
                    &r,
                    "ccwatch_activity_attributed_total",
                    "API-activity records attributed to a grant, by method: key (LoginKey, SessionKey, \
                     LoginHistoryId), request (a sibling row's REQUEST_ID), tuple (org, user, app, IP in the \
                     token lifetime).",
                    &["method"],
                );
                for m in ["key", "request", "tuple"] {
                    c.with_label_values(&[m]);
                }
                c
            },
            enrichment_reloads: {
                let c = counter_vec(
                    &r,
                    "ccwatch_enrichment_reloads_total",
                    "Enrichment files (tor_exit_list, ioc_file, asn_db) reloaded after they changed, by result: \
                     ok, or error (the previous version stays in use).",
                    &["file", "result"],
                );
                for f in crate::enrich::FileKind::ALL {
                    for r in ["ok", "error"] {
                        c.with_label_values(&[f.label(), r]);
                    }
                }
                c
            },
            activity_unattributed: counter(
                &r,
                "ccwatch_activity_unattributed_total",
                "API-activity records of client-credentials run-as users that matched no grant within the \
                 token lifetime: a blind spot of the detector (missing grant records, or keys it cannot see).",
            ),
            alerts_closed_early: counter(
                &r,
                "ccwatch_alerts_closed_early_total",
                "Alerts closed before their day ended because alerts.max_open was reached; their final line \
                 was written, and a later record continues the count.",
            ),
            late_setup_records: counter(
                &r,
                "ccwatch_late_setup_records_total",
                "Setup-audit records that arrived after a later grant had already been scored without them; \
                 grants after their arrival see them.",
            ),
            sink_dead_letters: counter_vec(
                &r,
                "ccwatch_sink_dead_letters_total",
                "Alerts a sink refused for good (4xx, too large, unknown topic), written to the alert dead \
                 letter instead, by sink and reason.",
                &["sink", "reason"],
            ),
            sink_retries: counter_vec(
                &r,
                "ccwatch_sink_retries_total",
                "Delivery attempts repeated after a transient failure, by sink.",
                &["sink"],
            ),
            dead_letters_truncated: counter(
                &r,
                "ccwatch_dead_letters_truncated_total",
                "Undecodable records whose payload was cut to fit the dead-letter topic (original size and \
                 SHA-256 in headers).",
            ),
            dead_letters_refused: counter(
                &r,
                "ccwatch_dead_letters_refused_total",
                "Undecodable records the dead-letter topic refused even without their payload; logged with \
                 origin and hash, not retried.",
            ),
            partition_stalled: gauge_vec(
                &r,
                "ccwatch_partition_stalled",
                "1 while a login partition has lag but has delivered nothing for kafka.stall_after_secs.",
                &["topic", "partition"],
            ),
            registry: r,
        }
        .with_process_metrics()
    }

    /// Registers the standard `process_*` metrics (CPU, memory, open file
    /// descriptors, start time) where the platform has them.
    fn with_process_metrics(self) -> Metrics {
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            self.registry.register(Box::new(pc)).expect("unique metric");
        }
        self
    }

    /// Exports at 0 the counters of each configured sink (deliveries,
    /// failures, retries, and refusals by reason) and of each reject reason
    /// (rejects, dead letters), which only the caller knows.
    pub fn preset(&self, sinks: &[&str], refusals: &[&str], reject_reasons: &[&str]) {
        for s in sinks {
            self.sink_deliveries.with_label_values(&[s]);
            self.sink_failures.with_label_values(&[s]);
            self.sink_retries.with_label_values(&[s]);
            for r in refusals {
                self.sink_dead_letters.with_label_values(&[s, r]);
            }
        }
        for r in reject_reasons {
            self.records_rejected.with_label_values(&[r]);
            self.dead_letters.with_label_values(&[r]);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that first appears at 1 is invisible to `increase()`: every
    /// label set known in advance is exported at 0 before anything happens.
    #[test]
    fn known_label_sets_are_exported_at_zero_from_start_up() {
        let m = Metrics::new();
        m.preset(&["soar"], &["http_4xx"], &["invalid_json"]);
        let text = m.render();
        for line in [
            r#"ccwatch_alerts_raised_total{rule="client_credentials_grant",severity="critical"} 0"#,
            r#"ccwatch_alerts_raised_total{rule="client_credentials_data_access",severity="low"} 0"#,
            r#"ccwatch_grants_total{class="client_credentials",outcome="failure"} 0"#,
            r#"ccwatch_alert_lines_total{kind="closed"} 0"#,
            r#"ccwatch_state_evictions_total{kind="sessions"} 0"#,
            r#"ccwatch_sink_failures_total{sink="soar"} 0"#,
            r#"ccwatch_sink_deliveries_total{sink="soar"} 0"#,
            r#"ccwatch_sink_dead_letters_total{reason="http_4xx",sink="soar"} 0"#,
            r#"ccwatch_records_rejected_total{reason="invalid_json"} 0"#,
            r#"ccwatch_dead_letters_total{reason="invalid_json"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}");
        }
        assert!(text.contains(&format!(
            "ccwatch_build_info{{profile=\"{}\",version=\"{}\"}} 1",
            if cfg!(debug_assertions) { "debug" } else { "release" },
            env!("CARGO_PKG_VERSION")
        )));
        #[cfg(target_os = "linux")]
        for name in ["process_start_time_seconds", "process_resident_memory_bytes", "process_cpu_seconds_total"] {
            assert!(text.lines().any(|l| l.starts_with(name)), "missing {name}");
        }
        // Counters that only rise are counters named _total.
        for l in text.lines().filter(|l| l.starts_with("# TYPE ccwatch_")) {
            let (name, kind) = l["# TYPE ".len()..].split_once(' ').unwrap();
            assert_eq!(kind == "counter", name.ends_with("_total"), "{l}");
        }
    }
}
