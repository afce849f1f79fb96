//! `ccwatch demo`: the live pipeline with no services to install.
//!
//! Starts librdkafka's in-process mock cluster, creates the topics, loads the
//! shipped samples into them with `produce` (setup-audit and inventory into
//! the audit topic, every login export into the login topic), then runs the
//! very same `live::run` against it: alerts go to the alerts topic and to
//! stdout, metrics are served, and the run stops on Ctrl-C (or, with
//! `--exit-when-caught-up`, once everything is processed).

use crate::app::live::{self, RunReport};
use crate::app::produce;
use crate::config::live::{KafkaConfig, SinkConfig, SinkKind};
use crate::config::Config;
use crate::event::Format;
use crate::event::Severity;
use crate::telemetry::Metrics;
use anyhow::Context as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const LOGIN_TOPIC: &str = "salesforce.logins";
pub const AUDIT_TOPIC: &str = "salesforce.setup-audit";
pub const ALERTS_TOPIC: &str = "ccwatch.alerts";
pub const DEAD_LETTER_TOPIC: &str = "ccwatch.dead-letter";

pub struct DemoOptions {
    pub samples: PathBuf,
    pub listen: SocketAddr,
    pub exit_when_caught_up: bool,
    pub format: Format,
}

/// The live config the demo runs with: the detection settings of `base`,
/// pointed at the mock cluster.
fn demo_config(base: &Config, bootstrap: &str, opts: &DemoOptions) -> Config {
    let mut cfg = base.clone();
    cfg.live.kafka = Some(KafkaConfig::plaintext(
        bootstrap,
        "ccwatch-demo",
        LOGIN_TOPIC,
        Some(AUDIT_TOPIC),
        Some(DEAD_LETTER_TOPIC),
        1000,
    ));
    cfg.live.sinks = vec![
        SinkConfig {
            name: "alerts-topic".into(),
            min_severity: Severity::Low,
            format: opts.format,
            kind: SinkKind::Kafka { topic: ALERTS_TOPIC.into() },
        },
        SinkConfig {
            name: "stdout".into(),
            min_severity: Severity::Low,
            format: opts.format,
            kind: SinkKind::File { path: "/dev/stdout".into(), mode: 0o600 },
        },
    ];
    cfg.live.metrics_listen = opts.listen;
    cfg
}

pub async fn demo(base: &Config, opts: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<RunReport> {
    let samples = &opts.samples;
    for sub in ["audit", "inventory", "logins", "elf", "activity"] {
        if !samples.join(sub).is_dir() {
            anyhow::bail!("{} has no {sub}/ directory (run the demo from the repository root)", samples.display());
        }
    }
    let cluster = MockCluster::new(1).context("cannot start the mock Kafka cluster")?;
    for (t, parts) in [(LOGIN_TOPIC, 3), (AUDIT_TOPIC, 1), (ALERTS_TOPIC, 1), (DEAD_LETTER_TOPIC, 1)] {
        cluster.create_topic(t, parts, 1).with_context(|| format!("cannot create topic {t}"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .context("cannot create the demo producer")?;
    let audit = produce::collect(&[samples.join("inventory"), samples.join("audit")], false)?;
    let logins = produce::collect(&[samples.join("logins"), samples.join("elf"), samples.join("activity")], false)?;
    let a = produce::send(&producer, AUDIT_TOPIC, &audit).await?;
    let l = produce::send(&producer, LOGIN_TOPIC, &logins).await?;
    drop(producer);
    eprintln!(
        "ccwatch demo: mock Kafka cluster at {bootstrap}; loaded {a} records into {AUDIT_TOPIC} and {l} into {LOGIN_TOPIC}"
    );
    let cfg = demo_config(base, &bootstrap, &opts);
    let metrics = Arc::new(Metrics::new());
    let exit = opts.exit_when_caught_up;
    let report = live::run_with(
        &cfg,
        shutdown,
        metrics,
        live::RunOptions {
            exit_when_caught_up: exit,
            on_start: Box::new(|s| {
                eprintln!("ccwatch demo: metrics at http://{}/metrics (also /healthz, /readyz)", s.metrics_addr)
            }),
            on_caught_up: Box::new(move || {
                if !exit {
                    eprintln!("ccwatch demo: caught up; still consuming. Press Ctrl-C to stop.");
                }
            }),
        },
    )
    .await?;
    eprintln!(
        "ccwatch demo: {} messages consumed, {} set aside to {DEAD_LETTER_TOPIC}, {} alert lines delivered",
        report.messages, report.rejected, report.alert_lines
    );
    drop(cluster);
    Ok(report)
}
