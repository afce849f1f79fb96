//! Live mode against librdkafka's in-process mock cluster: the same `run`
//! the binary calls, with the real rdkafka client, a real HTTP /metrics
//! endpoint and a real local webhook receiver. The mock cluster's fault
//! injection stands in for broker errors; tests against a real broker are in
//! `live_broker.rs`.

mod common;

use ccwatch::app::live::{self, RunOptions, Started};
use ccwatch::app::produce;
use ccwatch::config::live::{SinkConfig, SinkKind, WebhookStyle};
use ccwatch::config::Config;
use ccwatch::event::Format;
use ccwatch::event::Severity;
use ccwatch::telemetry::Metrics;
use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Login-topic messages `load_samples` writes: the samples' 55 and three sentinels.
const LOGIN_MESSAGES: i64 = 58;

async fn load_samples(bootstrap: &str, t: &Topics) {
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let s = root().join("samples");
    let audit = produce::collect(&[s.join("inventory"), s.join("audit")], false).unwrap();
    let logins = produce::collect(&[s.join("logins"), s.join("elf"), s.join("activity")], false).unwrap();
    assert_eq!(logins.len() as i64 + 3, LOGIN_MESSAGES);
    produce::send(&producer, &t.audit, &audit).await.unwrap();
    produce::send(&producer, &t.logins, &logins).await.unwrap();
    // Past the samples' last day, so live closes their alerts as replay's end does.
    to_partitions(bootstrap, &t.logins, &[sentinel(0), sentinel(1), sentinel(2)]).await;
}

/// A mock cluster with fresh topics, the samples loaded; and its bootstrap address.
async fn loaded_cluster() -> (Topics, MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String) {
    let t = Topics::new();
    let c = MockCluster::new(1).unwrap();
    c.create_topic(&t.logins, 3, 1).unwrap();
    c.create_topic(&t.audit, 1, 1).unwrap();
    c.create_topic(&t.alerts, 1, 1).unwrap();
    c.create_topic(&t.dead, 1, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    load_samples(&bootstrap, &t).await;
    (t, c, bootstrap)
}

struct Running {
    token: CancellationToken,
    metrics_url: String,
    task: tokio::task::JoinHandle<anyhow::Result<live::RunReport>>,
}

async fn start(cfg: Config) -> Running {
    let token = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<Started>();
    let opts = RunOptions {
        on_start: Box::new(move |s| {
            let _ = tx.send(s);
        }),
        ..RunOptions::default()
    };
    let t = token.clone();
    let task = tokio::spawn(async move { live::run_with(&cfg, t, Arc::new(Metrics::new()), opts).await });
    let started = rx.await.expect("run started");
    Running { token, metrics_url: format!("http://{}", started.metrics_addr), task }
}

async fn scrape(r: &Running) -> String {
    get(&format!("{}/metrics", r.metrics_url)).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_gives_replays_alerts_with_dead_letters_offsets_and_metrics() {
    let (t, _cluster, bootstrap) = loaded_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.jsonl");
    let cfg = live_config(&bootstrap, &t, vec![kafka_sink(&t.alerts), file_sink(&file)]);
    let run = start(cfg).await;
    let expected = replay_lines();

    eventually(90, "every alert in the file sink", || async {
        std::fs::read_to_string(&file).map(|s| s.lines().count()).unwrap_or(0) >= expected.len()
    })
    .await;
    eventually(90, "readiness and committed offsets", || async {
        get(&format!("{}/readyz", run.metrics_url)).await.0 == 200
            && committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1).sum::<i64>() == LOGIN_MESSAGES
    })
    .await;
    assert_eq!(get(&format!("{}/healthz", run.metrics_url)).await.0, 200);

    // The same alert lines as replay, and the same last line per alert_id.
    // (Setup-audit records are applied as they arrive, so an enablement
    // alert may be written before grants that precede it in event time.)
    let got: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(str::to_string).collect();
    assert_eq!(sorted(&got), sorted(&expected), "live and replay disagree");
    assert_eq!(last_per_id(&got), last_per_id(&expected));
    // The alerts topic: key = alert_id, value = the same JSON, in the file's order.
    let topic = read_topic(&bootstrap, &t.alerts);
    let values: Vec<String> = topic.iter().map(|r| String::from_utf8(r.value.clone()).unwrap()).collect();
    assert_eq!(values, got);
    for r in &topic {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        assert_eq!(r.key.as_deref(), v["alert_id"].as_str());
    }
    // Four damaged login lines, each with its reason and origin.
    let dead = read_topic(&bootstrap, &t.dead);
    assert_eq!(dead.len(), 4);
    for d in &dead {
        assert_eq!(d.headers["ccwatch.source.topic"], t.logins);
        assert!(!d.headers["ccwatch.reason"].is_empty() && d.headers.contains_key("ccwatch.detail"));
        let p: i32 = d.headers["ccwatch.source.partition"].parse().unwrap();
        let o: i64 = d.headers["ccwatch.source.offset"].parse().unwrap();
        let original =
            read_topic(&bootstrap, &t.logins).into_iter().find(|r| r.partition == p && r.offset == o).unwrap();
        assert_eq!(original.value, d.value, "the dead letter carries the original bytes");
    }
    // Committed offsets reach the end of every login partition.
    assert_eq!(committed(&bootstrap, &t.group, &t.logins), high_watermarks(&bootstrap, &t.logins));

    let m = scrape(&run).await;
    let n = expected.len() as f64;
    assert_eq!(metric(&m, "ccwatch_records_consumed_total{*}"), 27.0 + LOGIN_MESSAGES as f64, "{m}");
    assert_eq!(metric(&m, "ccwatch_audit_expired_records"), 0.0, "the whole audit topic was read");
    assert_eq!(metric(&m, "ccwatch_records_rejected_total{*}"), 4.0);
    assert_eq!(metric(&m, "ccwatch_dead_letters_total{*}"), 4.0);
    assert_eq!(metric(&m, "ccwatch_alert_lines_total{*}"), n);
    assert_eq!(metric(&m, "ccwatch_alerts_raised_total{*}"), 13.0);
    assert_eq!(metric(&m, r#"ccwatch_sink_deliveries_total{sink="alerts-topic"}"#), n);
    assert_eq!(metric(&m, r#"ccwatch_sink_deliveries_total{sink="alerts-file"}"#), n);
    assert_eq!(metric(&m, r#"ccwatch_sink_deliveries_total{sink="dead_letter"}"#), 4.0);
    assert!(metric(&m, r#"ccwatch_grants_total{class="client_credentials",outcome="success"}"#) > 0.0);
    assert!(metric(&m, "ccwatch_end_to_end_latency_seconds_count") >= n);
    assert!(metric(&m, "ccwatch_processing_latency_seconds_count") >= LOGIN_MESSAGES as f64);
    assert!(metric(&m, "ccwatch_state_users") > 0.0 && metric(&m, "ccwatch_state_ips") > 0.0);
    assert_eq!(metric(&m, "ccwatch_audit_caught_up"), 1.0);
    assert_eq!(metric(&m, "ccwatch_pending_records"), 0.0);
    assert_eq!(metric(&m, "ccwatch_offset_gap_offsets_total"), 0.0, "every offset was delivered");
    eventually(10, "consumer lag from librdkafka statistics", || async {
        scrape(&run).await.contains("ccwatch_consumer_lag_messages{partition=")
    })
    .await;
    // No label carries a user, IP, app or org value.
    for secret in ["acme.example", "198.51.100", "192.0.2", "Acme ETL", "Marketing Sync", "00D5j", "0055j"] {
        assert!(!m.contains(secret), "metrics expose {secret}");
    }

    run.token.cancel();
    let report = run.task.await.unwrap().unwrap();
    assert!(report.offsets_committed);
    assert_eq!(report.alert_lines, expected.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_errors_on_the_alerts_topic_are_retried_without_loss() {
    let (t, c, bootstrap) = loaded_cluster().await;
    // From now on, the next produce requests fail with a non-retriable error.
    c.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4]);
    let cfg = live_config(&bootstrap, &t, vec![kafka_sink(&t.alerts)]);
    let run = start(cfg).await;
    let expected = replay_lines();
    eventually(90, "every alert on the alerts topic", || async {
        read_topic(&bootstrap, &t.alerts).len() >= expected.len()
    })
    .await;
    let m = scrape(&run).await;
    // The injected errors hit whichever produce came first: alerts or dead letters.
    assert!(metric(&m, "ccwatch_sink_failures_total{*}") >= 1.0, "{m}");
    assert_eq!(read_topic(&bootstrap, &t.dead).len(), 4, "a dead letter was lost");
    let mut got: Vec<String> =
        read_topic(&bootstrap, &t.alerts).iter().map(|r| String::from_utf8(r.value.clone()).unwrap()).collect();
    got.dedup();
    let mut want = expected.clone();
    want.dedup();
    // Every line arrives, in order; a retried batch may repeat lines already accepted.
    let got_set: std::collections::BTreeSet<_> = got.iter().collect();
    assert!(want.iter().all(|l| got_set.contains(l)), "an alert line was lost");
    eventually(90, "offsets committed after recovery", || async {
        committed(&bootstrap, &t.group, &t.logins) == high_watermarks(&bootstrap, &t.logins)
    })
    .await;
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_holds_offsets_until_it_recovers() {
    let (t, _cluster, bootstrap) = loaded_cluster().await;
    let hook = Hook::default();
    hook.failing.store(true, Ordering::SeqCst);
    let url = hook.start().await;
    let webhook = webhook("slack", &url, WebhookStyle::Slack, Severity::High, 1, 20);
    let cfg = live_config(&bootstrap, &t, vec![webhook]);
    let run = start(cfg).await;
    eventually(90, "webhook attempts", || async { hook.attempts.load(Ordering::SeqCst) >= 6 }).await;
    // Auto-commit runs every second; give it two.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let held: i64 = committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1.max(0)).sum();
    assert!(held < LOGIN_MESSAGES, "offsets advanced past undelivered alerts ({held})");
    assert_eq!(get(&format!("{}/readyz", run.metrics_url)).await.0, 503, "not ready while a sink fails");
    let m = scrape(&run).await;
    assert!(metric(&m, r#"ccwatch_sink_failures_total{sink="slack"}"#) >= 2.0);

    hook.failing.store(false, Ordering::SeqCst);
    let high_or_worse: Vec<serde_json::Value> = replay_lines()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| a["severity"] == "high" || a["severity"] == "critical")
        .collect();
    eventually(90, "offsets committed after the webhook recovered", || async {
        committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1).sum::<i64>() == LOGIN_MESSAGES
    })
    .await;
    let bodies = hook.accepted.lock().unwrap().clone();
    assert!(bodies.len() >= high_or_worse.len());
    for a in &high_or_worse {
        let id = a["alert_id"].as_str().unwrap();
        assert!(bodies.iter().any(|b| b.contains(id)), "alert {id} never reached the webhook");
    }
    let first: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert!(first["text"].as_str().unwrap().starts_with("*["), "Slack payload: {first}");
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// The README's main command, as a user runs it: the demo's alerts are
/// replay's alerts, and it exits cleanly once caught up.
#[test]
fn demo_command_prints_replays_alerts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .current_dir(root())
        .args(["demo", "--config", "ccwatch.toml", "--listen", "127.0.0.1:0", "--exit-when-caught-up"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(sorted(&lines), sorted(&replay_lines()));
    assert_eq!(last_per_id(&lines), last_per_id(&replay_lines()));
    assert!(stderr.contains("4 set aside to ccwatch.dead-letter"), "{stderr}");
}

#[test]
fn run_without_kafka_settings_is_a_one_line_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .current_dir(root())
        .args(["run", "--config", "ccwatch.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("[kafka]") && err.trim_end().lines().count() == 1, "{err}");
}

/// `inventory` files in the config are the privilege baseline, as in replay:
/// a login found in one is rejected and counted, never processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_an_inventory_file_is_rejected_not_processed() {
    let (t, _cluster, bootstrap) = loaded_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("inventory.jsonl");
    let grant = std::fs::read_to_string(root().join("samples/logins/login-events.jsonl"))
        .unwrap()
        .lines()
        .find(|l| l.contains("OAuth Client Credentials") && l.contains("\"Success\""))
        .unwrap()
        .to_string();
    std::fs::write(&inventory, format!("{grant}\n")).unwrap();
    let file = dir.path().join("alerts.jsonl");
    let mut cfg = live_config(&bootstrap, &t, vec![file_sink(&file)]);
    cfg.live.inventory = vec![root().join("samples/inventory"), inventory];
    let run = start(cfg).await;
    let expected = replay_lines();
    eventually(90, "every alert in the file sink", || async {
        std::fs::read_to_string(&file).map(|s| s.lines().count()).unwrap_or(0) >= expected.len()
    })
    .await;
    let m = scrape(&run).await;
    assert_eq!(metric(&m, r#"ccwatch_records_rejected_total{reason="unsupported_type"}"#), 1.0, "{m}");
    let got: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(str::to_string).collect();
    assert_eq!(sorted(&got), sorted(&expected));
    assert_eq!(last_per_id(&got), last_per_id(&expected));
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// A mock cluster with fresh, empty topics (`login_partitions` for logins),
/// its bootstrap address and a producer.
fn empty_cluster(
    login_partitions: i32,
) -> (Topics, MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String, FutureProducer) {
    let t = Topics::new();
    let c = MockCluster::new(1).unwrap();
    c.create_topic(&t.logins, login_partitions, 1).unwrap();
    c.create_topic(&t.audit, 1, 1).unwrap();
    c.create_topic(&t.dead, 1, 1).unwrap();
    let bootstrap = c.bootstrap_servers();
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    (t, c, bootstrap, producer)
}

/// A client-credentials grant as a `LoginEvent` record, for the warm-up test.
fn grant(id: u32, ip: &str, at: &str) -> produce::Unit {
    let value = serde_json::json!({
        "attributes": {"type": "LoginEvent"},
        "EventIdentifier": format!("warmup-{id}"),
        "EventDate": at,
        "UserId": "0055j00000Hum01AAB",
        "Username": "warmup-integration@acme.example",
        "LoginType": "Remote Access 2.0",
        "LoginSubType": "OAuth Client Credentials",
        "Status": "Success",
        "SourceIp": ip,
        "Application": "Warmup ETL",
    });
    produce::Unit { value: serde_json::to_vec(&value).unwrap(), key: None, time: None }
}

/// Runs `cfg` until the group has committed `offset` on partition 0 of the
/// login topic, then shuts it down cleanly; returns the metrics text at the end.
async fn run_until_committed(cfg: Config, bootstrap: &str, t: &Topics, offset: i64) -> String {
    let run = start(cfg).await;
    eventually(60, "every login offset to be committed", || async {
        committed(bootstrap, &t.group, &t.logins) == [(0, offset)]
    })
    .await;
    let m = scrape(&run).await;
    run.token.cancel();
    run.task.await.unwrap().unwrap();
    m
}

/// After a restart the correlator's state comes back from messages already
/// delivered (`kafka.warmup_messages`): a grant from a new IP for a (user,
/// app) pair seen before the restart is still scored `new_source_ip`, and the
/// re-read grants raise nothing a second time. With warm-up off, the restarted
/// instance has no history for the pair and the factor is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_correlation_state_from_messages_already_delivered() {
    let (t, _cluster, bootstrap, producer) = empty_cluster(1);
    let dir = tempfile::tempdir().unwrap();
    let history = [
        grant(1, "198.51.100.10", "2024-07-09T06:00:00.000+0000"),
        grant(2, "198.51.100.10", "2024-07-09T06:05:00.000+0000"),
        grant(3, "198.51.100.10", "2024-07-09T06:10:00.000+0000"),
    ];
    produce::send(&producer, &t.logins, &history).await.unwrap();

    let first = dir.path().join("first.jsonl");
    let mut cfg = live_config(&bootstrap, &t, vec![file_sink(&first)]);
    if let Some(k) = cfg.live.kafka.as_mut() {
        k.warmup_messages = 1000;
        // The mock cluster keeps a cleanly closed member until its session
        // expires (45 s by default) before it assigns the restarted one.
        k.consumer.push(("session.timeout.ms".into(), "6000".into()));
    }
    run_until_committed(cfg.clone(), &bootstrap, &t, 3).await;
    let first_alerts = std::fs::read_to_string(&first).unwrap();
    assert!(first_alerts.contains("198.51.100.10"), "{first_alerts}");

    // After the restart: one grant from an IP the pair has never used.
    produce::send(&producer, &t.logins, &[grant(4, "203.0.113.99", "2024-07-09T06:15:00.000+0000")]).await.unwrap();
    let second = dir.path().join("second.jsonl");
    cfg.live.sinks = vec![file_sink(&second)];
    let m = run_until_committed(cfg, &bootstrap, &t, 4).await;

    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&second).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().all(|a| a["source_ip"] == "203.0.113.99"), "re-read grants raised alerts again: {lines:#?}");
    let new_ip = lines.first().expect("the new IP's grant raised an alert");
    let factors: Vec<&str> = new_ip["factors"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert!(factors.contains(&"new_source_ip"), "the pair's IP history was not rebuilt: {factors:?}");
    assert_eq!(metric(&m, "ccwatch_warmup_records_total"), 3.0, "{m}");
    assert_eq!(metric(&m, "ccwatch_offset_gap_offsets_total"), 0.0, "warm-up is not a gap");
}

/// A sink outage longer than `max.poll.interval.ms` does not cost the group
/// membership. The run loop stops taking messages while the webhook fails;
/// once intake has waited a second, it pauses its partitions and keeps
/// polling, so librdkafka does not leave the group (which would hand the
/// partitions to another instance and rebalance the group again on return).
/// When the webhook recovers, consumption resumes where it stopped: every
/// message is committed, no offset is skipped, every alert is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_longer_than_the_poll_interval_pauses_instead_of_leaving_the_group() {
    // More than intake's queues hold (18 chunks of at most 1,024 messages),
    // but under the 5 MB the mock cluster keeps per partition: past that it
    // drops the oldest messages, and a paused consumer would never see them.
    const MESSAGES: u32 = 24_000;
    const IPS: u32 = 40;
    let (t, _cluster, bootstrap, producer) = empty_cluster(2);
    let start_at = chrono::DateTime::parse_from_rfc3339("2024-07-09T00:00:00Z").unwrap();
    let grants: Vec<produce::Unit> = (0..MESSAGES)
        .map(|i| {
            let at = (start_at + chrono::Duration::seconds(i64::from(i))).format("%Y-%m-%dT%H:%M:%S%.3f+0000");
            // Keyed, so the two partitions get even shares.
            produce::Unit {
                key: Some(format!("k{i}")),
                ..grant(i, &format!("198.51.100.{}", i % IPS), &at.to_string())
            }
        })
        .collect();
    produce::send(&producer, &t.logins, &grants[..1]).await.unwrap();

    let hook = Hook::default();
    hook.failing.store(true, Ordering::SeqCst);
    let url = hook.start().await;
    let mut cfg = live_config(&bootstrap, &t, vec![]);
    cfg.live.sinks = Config::parse(
        &format!(
            "[[sinks]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"{url}\"\nbackoff_ms = 10\nmax_backoff_ms = 50\n"
        ),
        "t",
    )
    .unwrap()
    .live
    .sinks;
    if let Some(k) = cfg.live.kafka.as_mut() {
        for (key, v) in
            [("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500"), ("max.poll.interval.ms", "6000")]
        {
            k.consumer.push((key.into(), v.into()));
        }
    }
    let run = start(cfg).await;
    // The first grant's alert stalls the run loop; then far more messages than
    // intake's queues hold arrive behind it.
    eventually(60, "the first webhook attempt", || async { hook.attempts.load(Ordering::SeqCst) >= 1 }).await;
    produce::send(&producer, &t.logins, &grants[1..]).await.unwrap();
    eventually(60, "intake to pause behind the failing webhook", || async {
        metric(&scrape(&run).await, "ccwatch_intake_paused") == 1.0
    })
    .await;
    // Stay down for two poll intervals.
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    let during = scrape(&run).await;
    assert_eq!(metric(&during, "ccwatch_intake_paused"), 1.0, "{during}");
    hook.failing.store(false, Ordering::SeqCst);

    eventually(120, "every login offset committed after the webhook recovered", || async {
        committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1.max(0)).sum::<i64>() == i64::from(MESSAGES)
    })
    .await;
    for p in 0..2 {
        let (low, _) = listed_watermarks(&bootstrap, &t.logins, p);
        assert_eq!(
            low, 0,
            "the mock cluster dropped messages of partition {p} (over its 5 MB): the test's premise broke"
        );
    }
    let m = scrape(&run).await;
    assert_eq!(
        metric(&m, r#"ccwatch_partition_assignment_changes_total{change="revoked"}"#),
        0.0,
        "left the group: {m}"
    );
    assert_eq!(metric(&m, r#"ccwatch_partition_assignment_changes_total{change="assigned"}"#), 1.0, "{m}");
    assert_eq!(metric(&m, "ccwatch_intake_paused"), 0.0, "resumed");
    assert!(metric(&m, "ccwatch_intake_pauses_total") >= 1.0);
    assert_eq!(metric(&m, "ccwatch_offset_gap_offsets_total"), 0.0, "no offset skipped across the pause");
    assert_eq!(metric(&m, "ccwatch_records_consumed_total{*}"), f64::from(MESSAGES), "each message once: {m}");
    let ids: std::collections::HashSet<String> = hook
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()["alert_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len() as u32, IPS, "one alert per source IP reached the webhook");
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// Setup-audit records that retention deleted before ccwatch started are not
/// lost silently: their number is `ccwatch_audit_expired_records` (and the
/// partition is logged). The mock cluster keeps at most 5 MB per partition,
/// so 60 messages of 100 KB push its first ones out, as retention would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_deleted_by_retention_are_counted() {
    let (t, _cluster, bootstrap, producer) = empty_cluster(1);
    let padded = produce::Unit {
        value: format!("{{\"Action\":\"padding\",\"Display\":\"{}\"}}", "x".repeat(100_000)).into_bytes(),
        key: None,
        time: None,
    };
    for _ in 0..60 {
        produce::send(&producer, &t.audit, std::slice::from_ref(&padded)).await.unwrap();
    }
    let (low, high) = listed_watermarks(&bootstrap, &t.audit, 0);
    assert!(low > 0 && high == 60, "the mock cluster should have dropped the oldest messages: {low}..{high}");

    let dir = tempfile::tempdir().unwrap();
    let run = start(live_config(&bootstrap, &t, vec![file_sink(&dir.path().join("alerts.jsonl"))])).await;
    let m = scrape(&run).await;
    assert_eq!(metric(&m, "ccwatch_audit_expired_records"), low as f64, "{m}");
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// A webhook sink posting to `url`, retrying `max_retries` times from 10 ms
/// up to `max_backoff_ms`.
fn webhook(
    name: &str,
    url: &str,
    style: WebhookStyle,
    min_severity: Severity,
    max_retries: u32,
    max_backoff_ms: u64,
) -> SinkConfig {
    SinkConfig {
        name: name.into(),
        min_severity,
        format: Format::Native,
        kind: SinkKind::Webhook {
            url: Config::parse(&format!("[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\n"), "t")
                .map(|c| match &c.live.sinks[0].kind {
                    SinkKind::Webhook { url, .. } => url.clone(),
                    _ => unreachable!(),
                })
                .unwrap(),
            style,
            timeout_ms: 2000,
            max_retries,
            backoff_ms: 10,
            max_backoff_ms,
        },
    }
}

/// A JSON webhook sink named `hook` posting to `url`.
fn json_webhook(url: &str, max_retries: u32) -> SinkConfig {
    webhook("hook", url, WebhookStyle::Json, Severity::Low, max_retries, 40)
}

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

/// A webhook that answers 400 to one alert: that alert goes to the alert
/// dead letter with the sink and reason, every other alert is delivered to
/// the webhook and the file sink, and intake goes on to commit every offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_400_sets_that_alert_aside_and_intake_goes_on() {
    let (t, _cluster, bootstrap) = loaded_cluster().await;
    let expected = replay_lines();
    let victim: serde_json::Value = expected
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|a| a["severity"] == "critical")
        .unwrap();
    let victim_id = victim["alert_id"].as_str().unwrap().to_string();
    let hook = Hook::default();
    *hook.refuse.lock().unwrap() = Some(victim_id.clone());
    let url = hook.start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.jsonl");
    let dead = dir.path().join("alert-dead-letters.jsonl");
    let mut cfg = live_config(&bootstrap, &t, vec![json_webhook(&url, 2), file_sink(&file)]);
    cfg.live.alert_dead_letter =
        Some(ccwatch::config::live::AlertDeadLetterConfig::File { path: dead.clone(), mode: 0o600 });
    let run = start(cfg).await;
    eventually(90, "every offset committed past the refused alert", || async {
        committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1).sum::<i64>() == LOGIN_MESSAGES
    })
    .await;
    assert_eq!(sorted(&lines_of(&file)), sorted(&expected), "the file sink got every line");
    let set_aside: Vec<serde_json::Value> = lines_of(&dead).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!set_aside.is_empty());
    for d in &set_aside {
        assert_eq!((d["sink"].as_str(), d["reason"].as_str()), (Some("hook"), Some("http_4xx")), "{d}");
        assert_eq!(d["alert"]["alert_id"].as_str(), Some(victim_id.as_str()), "only the refused alert: {d}");
        assert_eq!(d["detail"].as_str(), Some("HTTP 400"));
    }
    let accepted = hook.accepted.lock().unwrap().clone();
    let others = expected.iter().filter(|l| !l.contains(&victim_id)).count();
    assert_eq!(accepted.len(), others, "every other line reached the webhook");
    let m = scrape(&run).await;
    assert_eq!(metric(&m, r#"ccwatch_sink_dead_letters_total{reason="http_4xx",sink="hook"}"#), set_aside.len() as f64);
    assert_eq!(get(&format!("{}/readyz", run.metrics_url)).await.0, 200, "a refused alert does not stop intake");
    use std::os::unix::fs::PermissionsExt;
    for f in [&file, &dead] {
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{} is private", f.display());
    }
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// Without an alert dead letter a refused alert is retried (the documented
/// choice: nothing is dropped), so offsets are held and readiness fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_alert_dead_letter_a_400_is_retried_and_holds_offsets() {
    let (t, _cluster, bootstrap) = loaded_cluster().await;
    let hook = Hook::default();
    let first_id = serde_json::from_str::<serde_json::Value>(&replay_lines()[0]).unwrap()["alert_id"]
        .as_str()
        .unwrap()
        .to_string();
    *hook.refuse.lock().unwrap() = Some(first_id);
    let url = hook.start().await;
    let run = start(live_config(&bootstrap, &t, vec![json_webhook(&url, 0)])).await;
    eventually(60, "repeated attempts", || async { hook.attempts.load(Ordering::SeqCst) >= 3 }).await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let held: i64 = committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1.max(0)).sum();
    assert!(held < LOGIN_MESSAGES, "offsets advanced past an alert no sink took ({held})");
    assert_eq!(get(&format!("{}/readyz", run.metrics_url)).await.0, 503);
    let m = scrape(&run).await;
    assert!(metric(&m, r#"ccwatch_sink_failures_total{sink="hook"}"#) >= 2.0, "{m}");
    assert!(metric(&m, r#"ccwatch_sink_retries_total{sink="hook"}"#) >= 2.0, "{m}");
    run.token.cancel();
    let _ = run.task.await.unwrap();
}

/// 429 with `Retry-After: 2`: the next attempt waits at least that long,
/// retries are counted, and every alert arrives once the webhook recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    let (t, _cluster, bootstrap) = loaded_cluster().await;
    let hook = Hook::default();
    hook.failing.store(true, Ordering::SeqCst);
    hook.fail_status.store(429, Ordering::SeqCst);
    *hook.retry_after.lock().unwrap() = Some("2".into());
    let url = hook.start().await;
    let run = start(live_config(&bootstrap, &t, vec![json_webhook(&url, 3)])).await;
    eventually(60, "three attempts", || async { hook.attempts.load(Ordering::SeqCst) >= 3 }).await;
    hook.failing.store(false, Ordering::SeqCst);
    eventually(90, "offsets committed after the webhook recovered", || async {
        committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1).sum::<i64>() == LOGIN_MESSAGES
    })
    .await;
    let times = hook.attempt_times.lock().unwrap().clone();
    for w in times.windows(2).take(2) {
        let gap = w[1] - w[0];
        assert!(gap >= std::time::Duration::from_millis(1900), "retried after {gap:?}, not after Retry-After: 2");
    }
    let m = scrape(&run).await;
    assert!(metric(&m, r#"ccwatch_sink_retries_total{sink="hook"}"#) >= 2.0, "{m}");
    assert_eq!(hook.accepted.lock().unwrap().len(), replay_lines().len());
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// A webhook answering 503 for 20 s: retried until it recovers, nothing set
/// aside, nothing lost, offsets committed only after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_for_twenty_seconds_is_retried_without_loss() {
    let (t, _cluster, bootstrap) = loaded_cluster().await;
    let hook = Hook::default();
    hook.failing.store(true, Ordering::SeqCst);
    let url = hook.start().await;
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("alert-dead-letters.jsonl");
    let mut cfg = live_config(&bootstrap, &t, vec![json_webhook(&url, 1)]);
    cfg.live.alert_dead_letter =
        Some(ccwatch::config::live::AlertDeadLetterConfig::File { path: dead.clone(), mode: 0o600 });
    let run = start(cfg).await;
    let began = std::time::Instant::now();
    eventually(30, "first attempts", || async { hook.attempts.load(Ordering::SeqCst) >= 1 }).await;
    while began.elapsed() < std::time::Duration::from_secs(20) {
        let held: i64 = committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1.max(0)).sum();
        assert!(held < LOGIN_MESSAGES, "offsets committed while the webhook answered 503");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    hook.failing.store(false, Ordering::SeqCst);
    eventually(90, "offsets committed after recovery", || async {
        committed(&bootstrap, &t.group, &t.logins).iter().map(|x| x.1).sum::<i64>() == LOGIN_MESSAGES
    })
    .await;
    assert!(lines_of(&dead).is_empty(), "a 503 is transient: nothing set aside");
    let got = hook.accepted.lock().unwrap().clone();
    assert_eq!(sorted(&got), sorted(&replay_lines()), "every alert after recovery");
    let m = scrape(&run).await;
    assert!(metric(&m, r#"ccwatch_sink_retries_total{sink="hook"}"#) >= 4.0, "{m}");
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// A Kafka sink topic (or dead-letter topic) that does not exist is a
/// one-line error at start-up, not a stall on the first alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_sink_or_dead_letter_topic_fails_start_up() {
    let (t, _cluster, bootstrap) = loaded_cluster().await;
    let cfg = live_config(&bootstrap, &t, vec![kafka_sink("no-such-alerts-topic")]);
    let err = live::run(&cfg, CancellationToken::new(), Arc::new(Metrics::new())).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("sink alerts-topic: topic no-such-alerts-topic does not exist"), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");
    let mut cfg = live_config(&bootstrap, &t, vec![kafka_sink(&t.alerts)]);
    cfg.live.kafka.as_mut().unwrap().dead_letter_topic = Some("no-such-dead-letters".into());
    let err = live::run(&cfg, CancellationToken::new(), Arc::new(Metrics::new())).await.unwrap_err();
    assert!(format!("{err:#}").contains("dead-letter: topic no-such-dead-letters does not exist"), "{err:#}");
}

/// An undecodable message bigger than the dead-letter producer accepts is
/// dead-lettered cut to fit, with its original size and hash in headers;
/// it is counted, and offsets move on instead of retrying forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_undecodable_message_is_dead_lettered_truncated() {
    let (t, _c, bootstrap, _) = empty_cluster(1);
    let big: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.max.bytes", "3000000")
        .create()
        .unwrap();
    let mut garbage = b"{\"not\": \"a login\", \"pad\": \"".to_vec();
    garbage.resize(1_200_000, b'x');
    let units = vec![
        produce::Unit { value: garbage.clone(), key: Some("k".into()), time: None },
        grant(1, "10.0.0.1", "2024-07-09T10:00:00Z"),
    ];
    produce::send(&big, &t.logins, &units).await.unwrap();
    let mut cfg = live_config(&bootstrap, &t, vec![]);
    let dir = tempfile::tempdir().unwrap();
    cfg.live.sinks = vec![file_sink(&dir.path().join("a.jsonl"))];
    let m = run_until_committed(cfg, &bootstrap, &t, 2).await;
    assert_eq!(metric(&m, "ccwatch_dead_letters_truncated_total"), 1.0, "{m}");
    let dead = read_topic(&bootstrap, &t.dead);
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.headers.get("ccwatch.truncated").map(String::as_str), Some("true"));
    assert_eq!(d.headers.get("ccwatch.original_size").map(String::as_str), Some("1200000"));
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&garbage).iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(d.headers.get("ccwatch.original_sha256"), Some(&hash));
    assert!(d.value.len() < 1_000_000 && garbage.starts_with(&d.value), "the leading bytes, cut to fit");
    assert_eq!(d.headers.get("ccwatch.source.offset").map(String::as_str), Some("0"));
}

/// A message the broker will not serve to this consumer (larger than its
/// `receive.message.max.bytes`) stops its partition: the lag keeps counting
/// it and, after `stall_after`, `ccwatch_partition_stalled` turns 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_stuck_behind_an_unservable_message_is_reported_stalled() {
    let (t, _c, bootstrap, _) = empty_cluster(1);
    let big: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.max.bytes", "10000000")
        .create()
        .unwrap();
    let mut huge = b"{\"pad\": \"".to_vec();
    huge.resize(3_000_000, b'x');
    let units = vec![
        grant(1, "10.0.0.1", "2024-07-09T10:00:00Z"),
        produce::Unit { value: huge, key: None, time: None },
        grant(2, "10.0.0.2", "2024-07-09T10:01:00Z"),
    ];
    produce::send(&big, &t.logins, &units).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = live_config(&bootstrap, &t, vec![file_sink(&dir.path().join("a.jsonl"))]);
    {
        let k = cfg.live.kafka.as_mut().unwrap();
        k.stall_after = std::time::Duration::from_secs(2);
        k.lag_interval = std::time::Duration::from_millis(300);
        k.consumer.push(("message.max.bytes".into(), "100000".into()));
        k.consumer.push(("fetch.max.bytes".into(), "100000".into()));
        k.consumer.push(("receive.message.max.bytes".into(), "200000".into()));
    }
    let run = start(cfg).await;
    let series = format!(r#"ccwatch_partition_stalled{{partition="0",topic="{}"}}"#, t.logins);
    eventually(60, "the partition reported stalled", || async { metric(&scrape(&run).await, &series) == 1.0 }).await;
    let m = scrape(&run).await;
    let lag = metric(&m, &format!(r#"ccwatch_consumer_lag_messages{{partition="0",topic="{}"}}"#, t.logins));
    assert!(lag >= 2.0, "the stuck message and the one after it are lag: {lag}\n{m}");
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// Live mode follows a token from its grant: API activity on the login topic
/// is attached to the grant's session by key, and activity of the run-as
/// user that matches no grant is counted as unattributed once its token
/// lifetime is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_attributes_activity_to_its_grant() {
    let (t, _c, bootstrap, producer) = empty_cluster(1);
    let user = "005J4000001AbCdIAK";
    let unit = |v: serde_json::Value| produce::Unit { value: serde_json::to_vec(&v).unwrap(), key: None, time: None };
    let mut units = vec![unit(serde_json::json!({
        "attributes": {"type": "LoginEvent"}, "EventIdentifier": "g1", "EventDate": "2025-08-14T00:17:00.000+0000",
        "UserId": user, "LoginType": "Remote Access 2.0", "LoginSubType": "OAuth Client Credentials",
        "Status": "Success", "SourceIp": "44.215.108.109", "Application": "Drift", "LoginKey": "Qv1P3iAGDrGQxSmN"
    }))];
    for (i, o) in ["Account", "Contact", "User"].iter().enumerate() {
        units.push(unit(serde_json::json!({
            "attributes": {"type": "ApiEvent"}, "EventIdentifier": format!("a{i}"),
            "EventDate": format!("2025-08-14T00:18:0{i}.000+0000"), "Query": format!("SELECT COUNT() FROM {o}"),
            "QueriedEntities": o, "LoginKey": "Qv1P3iAGDrGQxSmN", "SourceIp": "44.215.108.109", "UserId": user
        })));
    }
    // No keys, another IP: nothing to attach to.
    units.push(unit(serde_json::json!({
        "EVENT_TYPE": "ApiTotalUsage", "TIMESTAMP_DERIVED": "2025-08-14T01:00:00.000Z", "USER_ID": "005J4000001AbCd",
        "REQUEST_ID": "TID:1", "CLIENT_IP": "208.68.36.90", "API_RESOURCE": "/v58.0/sobjects/"
    })));
    // Three hours later: the token lifetime of the row above is over.
    units.push(unit(serde_json::json!({
        "EVENT_TYPE": "ApiTotalUsage", "TIMESTAMP_DERIVED": "2025-08-14T04:00:00.000Z", "USER_ID": "005J4000001AbCd",
        "REQUEST_ID": "TID:2", "CLIENT_IP": "208.68.36.90", "API_RESOURCE": "/v58.0/limits/"
    })));
    produce::send(&producer, &t.logins, &units).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = live_config(&bootstrap, &t, vec![file_sink(&dir.path().join("a.jsonl"))]);
    let run = start(cfg).await;
    eventually(60, "the activity attributed", || async {
        metric(&scrape(&run).await, r#"ccwatch_activity_attributed_total{method="key"}"#) == 3.0
    })
    .await;
    eventually(30, "the unmatched row counted", || async {
        metric(&scrape(&run).await, "ccwatch_activity_unattributed_total") == 1.0
    })
    .await;
    let m = scrape(&run).await;
    assert_eq!(metric(&m, "ccwatch_sessions_open"), 1.0, "{m}");
    assert_eq!(metric(&m, r#"ccwatch_activity_attributed_total{method="tuple"}"#), 0.0);
    let consumed =
        |kind: &str| metric(&m, &format!(r#"ccwatch_records_consumed_total{{kind="{kind}",topic="{}"}}"#, t.logins));
    assert_eq!((consumed("api_event"), consumed("elf_api_total_usage")), (3.0, 2.0), "{m}");
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// `ccwatch run` picks up a changed IOC file without a restart: a grant from
/// an address added to it is scored `anonymizing_source_ip`. A broken file
/// is counted as a failed reload and the previous version stays in use: the
/// next grant from that address still gets the factor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_ioc_file_is_reloaded_and_a_broken_one_keeps_the_last_good_version() {
    let (t, _c, bootstrap, producer) = empty_cluster(1);
    let dir = tempfile::tempdir().unwrap();
    let iocs = dir.path().join("iocs.toml");
    std::fs::write(&iocs, "[[ioc]]\nip = \"203.0.113.200\"\nnote = \"first version\"\n").unwrap();
    let alerts = dir.path().join("a.jsonl");
    let mut cfg = live_config(&bootstrap, &t, vec![file_sink(&alerts)]);
    cfg.enrichment.ioc_file = Some(iocs.clone());
    cfg.enrichment.reload_seconds = 1;
    let run = start(cfg).await;
    let reloads = |result: &str| {
        let run = &run;
        let q = format!(r#"ccwatch_enrichment_reloads_total{{file="ioc_file",result="{result}"}}"#);
        async move { metric(&scrape(run).await, &q) }
    };
    assert_eq!((reloads("ok").await, reloads("error").await), (0.0, 0.0), "counted from 0");
    let anonymizing = |ip: &str| {
        std::fs::read_to_string(&alerts).unwrap_or_default().lines().any(|l| {
            let a: serde_json::Value = serde_json::from_str(l).unwrap();
            a["source_ip"] == ip && a["factors"].as_array().unwrap().iter().any(|f| f["id"] == "anonymizing_source_ip")
        })
    };

    // The file changes (a second at least after start-up, so its mtime moves).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    std::fs::write(&iocs, "[[ioc]]\nip = \"198.51.100.77\"\nnote = \"added while running\"\n").unwrap();
    eventually(30, "the changed file reloaded", || async { reloads("ok").await == 1.0 }).await;
    produce::send(&producer, &t.logins, &[grant(1, "198.51.100.77", "2024-07-09T06:00:00.000+0000")]).await.unwrap();
    eventually(30, "the new IOC applied", || async { anonymizing("198.51.100.77") }).await;

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    std::fs::write(&iocs, "[[ioc]]\nnote = \"no indicator\"\n").unwrap();
    eventually(30, "the broken file counted", || async { reloads("error").await == 1.0 }).await;
    // Another day: its own alert, scored with the version still in use.
    produce::send(&producer, &t.logins, &[grant(2, "198.51.100.77", "2024-07-10T06:00:00.000+0000")]).await.unwrap();
    eventually(30, "the second grant's alert", || async {
        std::fs::read_to_string(&alerts).unwrap_or_default().lines().count() >= 2
    })
    .await;
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&alerts).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        lines.iter().all(|a| a["factors"].as_array().unwrap().iter().any(|f| f["id"] == "anonymizing_source_ip")),
        "{lines:#?}"
    );
    run.token.cancel();
    run.task.await.unwrap().unwrap();
}

/// API activity on a topic of its own (`kafka.activity_topic`), keyed by user
/// id like the logins and co-partitioned with them: its partitions follow the
/// login partitions the group assigns, its records reach their grant (three
/// COUNT() queries on distinct objects raise the data-access alert), and its
/// offsets are committed to the group `<group_id>.activity`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_on_its_own_topic_reaches_its_grant_and_commits_its_offsets() {
    let (t, c, bootstrap, producer) = empty_cluster(2);
    let activity_topic = format!("{}.activity", t.logins);
    c.create_topic(&activity_topic, 2, 1).unwrap();
    let user = "005J4000001AbCdIAK";
    let unit = |v: serde_json::Value| produce::Unit {
        value: serde_json::to_vec(&v).unwrap(),
        key: Some(user.to_string()),
        time: None,
    };
    let grant = unit(serde_json::json!({
        "attributes": {"type": "LoginEvent"}, "EventIdentifier": "g1", "EventDate": "2025-08-14T00:17:00.000+0000",
        "UserId": user, "LoginType": "Remote Access 2.0", "LoginSubType": "OAuth Client Credentials",
        "Status": "Success", "SourceIp": "44.215.108.109", "Application": "Drift", "LoginKey": "Qv1P3iAGDrGQxSmN"
    }));
    let queries: Vec<produce::Unit> = ["Account", "Contact", "User"]
        .iter()
        .enumerate()
        .map(|(i, o)| {
            unit(serde_json::json!({
                "attributes": {"type": "ApiEvent"}, "EventIdentifier": format!("a{i}"),
                "EventDate": format!("2025-08-14T00:18:0{i}.000+0000"), "Query": format!("SELECT COUNT() FROM {o}"),
                "QueriedEntities": o, "LoginKey": "Qv1P3iAGDrGQxSmN", "SourceIp": "44.215.108.109", "UserId": user
            }))
        })
        .collect();
    produce::send(&producer, &t.logins, &[grant]).await.unwrap();
    produce::send(&producer, &activity_topic, &queries).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("a.jsonl");
    let mut cfg = live_config(&bootstrap, &t, vec![file_sink(&alerts)]);
    cfg.live.kafka.as_mut().unwrap().activity_topic = Some(activity_topic.clone());
    let run = start(cfg.clone()).await;
    eventually(60, "the data-access alert", || async {
        std::fs::read_to_string(&alerts).unwrap_or_default().contains("client_credentials_data_access")
    })
    .await;
    let ends = high_watermarks(&bootstrap, &activity_topic);
    let group = format!("{}.activity", t.group);
    eventually(30, "the activity offsets committed", || async {
        committed(&bootstrap, &group, &activity_topic) == ends
    })
    .await;
    let m = scrape(&run).await;
    assert_eq!(metric(&m, r#"ccwatch_activity_attributed_total{method="key"}"#), 3.0, "{m}");
    run.token.cancel();
    run.task.await.unwrap().unwrap();

    // Not co-partitioned: refused at start-up, with both counts.
    let lonely = format!("{}.lonely", t.logins);
    c.create_topic(&lonely, 1, 1).unwrap();
    cfg.live.kafka.as_mut().unwrap().activity_topic = Some(lonely);
    let err = live::run(&cfg, CancellationToken::new(), Arc::new(Metrics::new())).await.unwrap_err().to_string();
    assert!(err.contains("has 1 partitions") && err.contains("has 2"), "{err}");
}
