//! Live-mode configuration: the Kafka connection, topics, sinks and the
//! metrics listener (`[kafka]`, `[[sinks]]`, `[metrics]`, `inventory`).
//!
//! Parsed with the rest of the file (unknown keys rejected) and validated with
//! it, so `check-config` reports every problem at once. Secrets never appear in
//! the file: `kafka.secret_properties` and webhook `url_env` name environment
//! variables or files, resolved at load time into `Secret`s whose `Debug`
//! is redacted, so no log line or error message can carry them.

use crate::event::{Format, Severity};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A resolved secret value. `Debug` never shows it.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from: exactly one of an environment variable or a file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

impl RawSecret {
    fn resolve(&self, what: &str, problems: &mut Vec<String>) -> Option<Secret> {
        match (&self.env, &self.file) {
            (Some(var), None) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret(v)),
                _ => {
                    problems.push(format!("{what}: environment variable {var} is not set"));
                    None
                }
            },
            (None, Some(path)) => match std::fs::read_to_string(path) {
                // Secret files conventionally end with a newline; it is not part of the secret.
                Ok(v) => Some(Secret(v.trim_end_matches(['\r', '\n']).to_string())),
                Err(e) => {
                    problems.push(format!("{what}: cannot read {}: {e}", path.display()));
                    None
                }
            },
            _ => {
                problems.push(format!("{what}: needs exactly one of env or file"));
                None
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Consumer group for login records (split across instances).
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Static group membership (KIP-345): a stable, unique id per instance
    /// (e.g. the pod name). A restarted instance with the same id gets its
    /// partitions back at once instead of after `session.timeout.ms`, where
    /// the broker supports it.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Topic carrying login records (LoginEvent, LoginHistory, ELF rows…).
    pub login_topic: String,
    /// Topic carrying Setup Audit Trail records (and inventory snapshots);
    /// every instance reads all of it from the beginning.
    pub audit_topic: Option<String>,
    /// Topic carrying API activity (ApiEvent, BulkApiResult, ReportEvent, ELF
    /// API types), when it does not share the login topic. It must have as
    /// many partitions as the login topic, keyed by user id the same way:
    /// partition N of both goes to the same instance.
    #[serde(default)]
    pub activity_topic: Option<String>,
    /// Undecodable records go here with the reason in headers.
    pub dead_letter_topic: Option<String>,
    /// Where a new group starts on the login topic: `earliest` or `latest`.
    #[serde(default = "default_offset_reset")]
    pub auto_offset_reset: String,
    /// How often consumer lag is measured and stalls are checked, in
    /// milliseconds (0: every 5 s).
    #[serde(default = "default_stats_ms")]
    pub statistics_interval_ms: u32,
    /// Received records held for event-time ordering before the oldest is
    /// released regardless (bounds memory when one partition stalls).
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// On each assignment of a login partition that has a committed offset,
    /// re-read up to this many messages before it into the correlator (IP
    /// history, failure windows, open aggregates) with their alerts withheld,
    /// so a restart or rebalance does not start from empty state. 0: off.
    #[serde(default)]
    pub warmup_messages: u64,
    /// A login or audit partition with lag that delivers nothing for this
    /// many seconds is reported stalled (log + `ccwatch_partition_stalled`).
    #[serde(default = "default_stall_after_secs")]
    pub stall_after_secs: u64,
    /// Other librdkafka properties, passed through verbatim (TLS, SASL…).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values are secrets, read from env or files.
    #[serde(default)]
    pub secret_properties: BTreeMap<String, RawSecret>,
    /// Properties for the consumers only (session.timeout.ms, fetch sizes…).
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
    /// Properties for the producer only (linger.ms, compression.type…).
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
}

fn default_group() -> String {
    "ccwatch".into()
}
fn default_offset_reset() -> String {
    "earliest".into()
}
fn default_stats_ms() -> u32 {
    5000
}
fn default_stall_after_secs() -> u64 {
    120
}
fn default_max_pending() -> usize {
    200_000
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStyle {
    /// The alert JSON as the body.
    #[default]
    Json,
    /// `{"text": "…"}`, which Slack, Mattermost and Teams incoming webhooks accept.
    Slack,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum RawSink {
    Kafka {
        name: Option<String>,
        topic: String,
        #[serde(default)]
        min_severity: Option<Severity>,
        #[serde(default)]
        format: Option<Format>,
    },
    File {
        name: Option<String>,
        path: PathBuf,
        #[serde(default)]
        min_severity: Option<Severity>,
        #[serde(default)]
        format: Option<Format>,
        /// Permission bits of a file the sink creates, as an octal string.
        #[serde(default = "default_file_mode")]
        mode: String,
    },
    Webhook {
        name: Option<String>,
        /// The URL, when it is not a secret.
        url: Option<String>,
        /// An environment variable holding the URL (Slack URLs are secrets).
        url_env: Option<String>,
        #[serde(default)]
        style: WebhookStyle,
        #[serde(default)]
        min_severity: Option<Severity>,
        #[serde(default)]
        format: Option<Format>,
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        /// Attempts after the first, per delivery, before the sink reports failure.
        #[serde(default = "default_retries")]
        max_retries: u32,
        /// First retry delay; doubled per attempt up to `max_backoff_ms`.
        #[serde(default = "default_backoff_ms")]
        backoff_ms: u64,
        #[serde(default = "default_max_backoff_ms")]
        max_backoff_ms: u64,
    },
}

fn default_file_mode() -> String {
    "0600".into()
}

/// Where alerts a sink refuses for good go (`[alert_dead_letter]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum RawAlertDeadLetter {
    Kafka {
        topic: String,
    },
    File {
        path: PathBuf,
        #[serde(default = "default_file_mode")]
        mode: String,
    },
}

/// Validated alert dead-letter: where a permanently refused alert is written
/// with the sink, the reason and the alert.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertDeadLetterConfig {
    Kafka { topic: String },
    File { path: PathBuf, mode: u32 },
}

fn file_mode(what: &str, mode: &str, problems: &mut Vec<String>) -> u32 {
    match u32::from_str_radix(mode.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => m,
        _ => {
            problems.push(format!("{what}: mode {mode:?} is not octal permission bits like \"0600\""));
            0o600
        }
    }
}

fn default_timeout_ms() -> u64 {
    5000
}
fn default_retries() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address of `/metrics`, `/healthz`, `/readyz`. Loopback by default.
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics { listen: default_listen() }
    }
}

/// Validated Kafka settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    pub group_id: String,
    pub group_instance_id: Option<String>,
    pub login_topic: String,
    pub audit_topic: Option<String>,
    pub activity_topic: Option<String>,
    pub dead_letter_topic: Option<String>,
    pub max_pending: usize,
    /// Messages re-read per login partition on assignment (see `RawKafka`).
    pub warmup_messages: i64,
    /// A partition with lag and no progress for this long is reported stalled.
    pub stall_after: std::time::Duration,
    /// How often lag is measured and stalls checked.
    pub lag_interval: std::time::Duration,
    /// Every librdkafka property to set on clients (bootstrap, TLS, SASL,
    /// statistics), secrets included; shown only through `Debug` redaction.
    pub client: Vec<(String, ClientValue)>,
    pub consumer: Vec<(String, String)>,
    pub producer: Vec<(String, String)>,
    pub auto_offset_reset: String,
}

impl KafkaConfig {
    /// The producer's `message.max.bytes` (librdkafka's default unless set).
    pub fn producer_message_max_bytes(&self) -> usize {
        let set = self.producer.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let set = set.chain(self.client.iter().map(|(k, v)| (k.as_str(), v.expose())));
        set.filter(|(k, _)| *k == "message.max.bytes").find_map(|(_, v)| v.parse().ok()).unwrap_or(1_000_000)
    }
}

#[derive(Clone, PartialEq)]
pub enum ClientValue {
    Plain(String),
    Secret(Secret),
}

impl std::fmt::Debug for ClientValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientValue::Plain(v) => write!(f, "{v:?}"),
            ClientValue::Secret(s) => s.fmt(f),
        }
    }
}

impl ClientValue {
    pub fn expose(&self) -> &str {
        match self {
            ClientValue::Plain(v) => v,
            ClientValue::Secret(s) => s.expose(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Kafka {
        topic: String,
    },
    File {
        path: PathBuf,
        /// Permission bits when the sink creates the file.
        mode: u32,
    },
    Webhook {
        url: Secret,
        style: WebhookStyle,
        timeout_ms: u64,
        max_retries: u32,
        backoff_ms: u64,
        max_backoff_ms: u64,
    },
}

/// One validated sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Metric label and log field: bounded, chosen by the operator.
    pub name: String,
    pub min_severity: Severity,
    pub format: Format,
    pub kind: SinkKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub kafka: Option<KafkaConfig>,
    pub sinks: Vec<SinkConfig>,
    pub metrics_listen: SocketAddr,
    pub inventory: Vec<PathBuf>,
    /// Where permanently refused alerts go; `None`: such alerts are retried
    /// like transient failures, holding intake until the sink takes them.
    pub alert_dead_letter: Option<AlertDeadLetterConfig>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            kafka: None,
            alert_dead_letter: None,
            sinks: Vec::new(),
            metrics_listen: default_listen().parse().expect("valid default"),
            inventory: Vec::new(),
        }
    }
}

/// Property names whose values must come from `secret_properties`, in any
/// case: passwords and passphrases, secrets and tokens, the OAUTHBEARER
/// config string (it carries client secrets), and PEM contents.
fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passphrase", "secret", "token"].iter().any(|w| k.contains(w))
        || k == "sasl.oauthbearer.config"
        || k.ends_with(".pem")
}

fn kafka_config(k: &RawKafka, problems: &mut Vec<String>) -> KafkaConfig {
    let mut client: Vec<(String, ClientValue)> = Vec::new();
    if k.bootstrap_servers.trim().is_empty() {
        problems.push("kafka.bootstrap_servers is empty".into());
    }
    client.push(("bootstrap.servers".into(), ClientValue::Plain(k.bootstrap_servers.clone())));
    for (key, v) in plain_properties("properties", &k.properties, problems) {
        if key == "bootstrap.servers" || key == "group.id" {
            problems.push(format!("kafka.properties.{key:?} is set by its own key in [kafka]"));
        } else {
            client.push((key, ClientValue::Plain(v)));
        }
    }
    let consumer = plain_properties("consumer_properties", &k.consumer_properties, problems);
    let producer = plain_properties("producer_properties", &k.producer_properties, problems);
    for (key, s) in &k.secret_properties {
        if let Some(secret) = s.resolve(&format!("kafka.secret_properties.{key:?}"), problems) {
            client.push((key.clone(), ClientValue::Secret(secret)));
        }
    }
    for (what, t) in [
        ("login_topic", Some(&k.login_topic)),
        ("audit_topic", k.audit_topic.as_ref()),
        ("activity_topic", k.activity_topic.as_ref()),
        ("dead_letter_topic", k.dead_letter_topic.as_ref()),
    ] {
        if let Some(t) = t {
            if !topic_ok(t) {
                problems.push(format!("kafka.{what} {t:?} is not a valid topic name"));
            }
        }
    }
    if k.audit_topic.as_ref() == Some(&k.login_topic) {
        problems.push("kafka.audit_topic must differ from kafka.login_topic".into());
    }
    if let Some(a) = &k.activity_topic {
        if *a == k.login_topic || k.audit_topic.as_ref() == Some(a) {
            problems.push("kafka.activity_topic must differ from kafka.login_topic and kafka.audit_topic".into());
        }
    }
    if !matches!(k.auto_offset_reset.as_str(), "earliest" | "latest") {
        problems.push(format!("kafka.auto_offset_reset {:?} must be earliest or latest", k.auto_offset_reset));
    }
    if k.max_pending == 0 {
        problems.push("kafka.max_pending must be at least 1".into());
    }
    if k.group_instance_id.as_deref().is_some_and(|id| id.trim().is_empty() || id.len() > 249) {
        problems.push("kafka.group_instance_id must be a non-empty id of at most 249 characters".into());
    }
    for (what, map) in [("properties", &k.properties), ("consumer_properties", &k.consumer_properties)] {
        if map.get("partition.assignment.strategy").is_some_and(|v| v.contains("cooperative")) {
            problems.push(format!(
                "kafka.{what}.\"partition.assignment.strategy\" cannot be cooperative: ccwatch forgets and rebuilds correlation state on every rebalance, which needs the eager protocol"
            ));
        }
    }
    if k.consumer_properties.contains_key("group.instance.id") || k.properties.contains_key("group.instance.id") {
        problems
            .push("group.instance.id is set by kafka.group_instance_id (it applies to the login consumer only)".into());
    }
    KafkaConfig {
        group_id: k.group_id.clone(),
        login_topic: k.login_topic.clone(),
        audit_topic: k.audit_topic.clone(),
        activity_topic: k.activity_topic.clone(),
        dead_letter_topic: k.dead_letter_topic.clone(),
        group_instance_id: k.group_instance_id.clone(),
        max_pending: k.max_pending,
        warmup_messages: i64::try_from(k.warmup_messages).unwrap_or(i64::MAX),
        stall_after: std::time::Duration::from_secs(k.stall_after_secs.max(1)),
        lag_interval: std::time::Duration::from_millis(match k.statistics_interval_ms {
            0 => 5000,
            ms => u64::from(ms),
        }),
        client,
        consumer,
        producer,
        auto_offset_reset: k.auto_offset_reset.clone(),
    }
}

impl KafkaConfig {
    /// A plaintext broker at `bootstrap` with these topics, every other key at
    /// its default (the demo and tests).
    pub fn plaintext(
        bootstrap: &str,
        group_id: &str,
        login_topic: &str,
        audit_topic: Option<&str>,
        dead_letter_topic: Option<&str>,
        statistics_interval_ms: u32,
    ) -> KafkaConfig {
        let raw = RawKafka {
            bootstrap_servers: bootstrap.into(),
            group_id: group_id.into(),
            login_topic: login_topic.into(),
            audit_topic: audit_topic.map(Into::into),
            activity_topic: None,
            dead_letter_topic: dead_letter_topic.map(Into::into),
            auto_offset_reset: default_offset_reset(),
            statistics_interval_ms,
            max_pending: default_max_pending(),
            warmup_messages: 0,
            stall_after_secs: default_stall_after_secs(),
            group_instance_id: None,
            properties: BTreeMap::new(),
            secret_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        };
        let mut problems = Vec::new();
        let k = kafka_config(&raw, &mut problems);
        debug_assert!(problems.is_empty(), "{problems:?}");
        k
    }
}

/// Plain properties (for every client, or for one role): secrets are refused.
fn plain_properties(what: &str, map: &BTreeMap<String, String>, problems: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, v) in map {
        if looks_secret(key) {
            problems.push(format!(
                "kafka.{what}.{key:?} looks like a secret: set it in kafka.secret_properties from env or file"
            ));
        } else {
            out.push((key.clone(), v.clone()));
        }
    }
    out
}

fn topic_ok(t: &str) -> bool {
    !t.is_empty() && t.len() <= 249 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub fn validate(
    kafka: Option<&RawKafka>,
    alert_dead_letter: Option<&RawAlertDeadLetter>,
    sinks: &[RawSink],
    metrics: &RawMetrics,
    inventory: &[PathBuf],
    problems: &mut Vec<String>,
) -> LiveConfig {
    let metrics_listen = metrics.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(format!("metrics.listen {:?} is not an address like 127.0.0.1:9464", metrics.listen));
        default_listen().parse().expect("valid default")
    });
    let kafka = kafka.map(|k| kafka_config(k, problems));
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, s) in sinks.iter().enumerate() {
        let which = format!("sinks[{i}]");
        let (name, min, format, kind) = match s {
            RawSink::Kafka { name, topic, min_severity, format } => {
                if kafka.is_none() {
                    problems.push(format!("{which}: a kafka sink needs a [kafka] section"));
                }
                if !topic_ok(topic) {
                    problems.push(format!("{which}: topic {topic:?} is not a valid topic name"));
                }
                (
                    name.clone().unwrap_or_else(|| "kafka".into()),
                    min_severity,
                    format,
                    SinkKind::Kafka { topic: topic.clone() },
                )
            }
            RawSink::File { name, path, min_severity, format, mode } => (
                name.clone().unwrap_or_else(|| "file".into()),
                min_severity,
                format,
                SinkKind::File { path: path.clone(), mode: file_mode(&which, mode, problems) },
            ),
            RawSink::Webhook {
                name,
                url,
                url_env,
                style,
                min_severity,
                format,
                timeout_ms,
                max_retries,
                backoff_ms,
                max_backoff_ms,
            } => {
                let url = match (url, url_env) {
                    (Some(u), None) => Some(Secret(u.clone())),
                    (None, Some(var)) => {
                        RawSecret { env: Some(var.clone()), file: None }.resolve(&format!("{which}.url_env"), problems)
                    }
                    _ => {
                        problems.push(format!("{which}: a webhook needs exactly one of url or url_env"));
                        None
                    }
                };
                if let Some(u) = &url {
                    if !(u.expose().starts_with("http://") || u.expose().starts_with("https://")) {
                        problems.push(format!("{which}: the webhook URL must start with http:// or https://"));
                    }
                }
                if *timeout_ms == 0 || *backoff_ms == 0 || max_backoff_ms < backoff_ms {
                    problems.push(format!(
                        "{which}: timeout_ms and backoff_ms must be positive and backoff_ms <= max_backoff_ms"
                    ));
                }
                (
                    name.clone().unwrap_or_else(|| "webhook".into()),
                    min_severity,
                    format,
                    SinkKind::Webhook {
                        url: url.unwrap_or(Secret(String::new())),
                        style: *style,
                        timeout_ms: *timeout_ms,
                        max_retries: *max_retries,
                        backoff_ms: *backoff_ms,
                        max_backoff_ms: *max_backoff_ms,
                    },
                )
            }
        };
        if !names.insert(name.clone()) {
            problems.push(format!("{which}: sink name {name:?} is used twice (give each sink a distinct name)"));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
            problems.push(format!("{which}: sink name {name:?} may hold only letters, digits, - and _"));
        }
        out.push(SinkConfig {
            name,
            min_severity: min.unwrap_or(Severity::Low),
            format: format.unwrap_or(Format::Native),
            kind,
        });
    }
    let alert_dead_letter = alert_dead_letter.map(|d| match d {
        RawAlertDeadLetter::Kafka { topic } => {
            if kafka.is_none() {
                problems.push("alert_dead_letter: a kafka dead letter needs a [kafka] section".into());
            }
            if !topic_ok(topic) {
                problems.push(format!("alert_dead_letter: topic {topic:?} is not a valid topic name"));
            }
            AlertDeadLetterConfig::Kafka { topic: topic.clone() }
        }
        RawAlertDeadLetter::File { path, mode } => {
            AlertDeadLetterConfig::File { path: path.clone(), mode: file_mode("alert_dead_letter", mode, problems) }
        }
    });
    LiveConfig { kafka, sinks: out, metrics_listen, inventory: inventory.to_vec(), alert_dead_letter }
}
