//! Live sinks: the Kafka alerts topic, a JSONL file and HTTP webhooks, plus the
//! dead-letter topic for undecodable records.
//!
//! A sink accepts a *batch* (the alerts one intake batch produced) and reports
//! success only when every alert it wants is durably handed over: acknowledged
//! by the broker, written and flushed, or answered 2xx. Each sink remembers how
//! far into the batch it got, so a retry after a partial failure does not
//! resend what one sink already took while another was failing. The run loop
//! stores no offset until every sink has taken the whole batch.
//!
//! Errors are strings with the failed operation: the only action a caller
//! takes is "count, back off, try again", so no richer type is needed.

use crate::config::live::{SinkConfig, SinkKind, WebhookStyle};
use crate::event::Severity;
use crate::score::aggregate::Emit;
use crate::sink::encode::{self, Format};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

/// A record set aside by the decoder, bound for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub payload: Vec<u8>,
    pub key: Option<Vec<u8>>,
    pub reason: &'static str,
    pub detail: String,
    pub index: Option<u32>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

enum Imp {
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
    File {
        out: std::fs::File,
        path: String,
    },
    Webhook {
        client: reqwest::Client,
        url: String,
        style: WebhookStyle,
        retries: u32,
        backoff: Duration,
        max_backoff: Duration,
    },
}

pub struct Sink {
    pub name: String,
    min_severity: Severity,
    format: Format,
    imp: Imp,
    /// Alerts of the current batch already accepted.
    progress: usize,
}

/// Sends every record, then waits for every acknowledgement. When librdkafka's
/// queue is full, or more than `MAX_INFLIGHT` wait, it waits for the oldest
/// first. Shared by the sinks and `ccwatch produce`.
pub async fn produce_all(producer: &FutureProducer, records: Vec<FutureRecord<'_, [u8], [u8]>>) -> Result<(), String> {
    const MAX_INFLIGHT: usize = 100_000;
    let mut inflight: VecDeque<DeliveryFuture> = VecDeque::new();
    for mut rec in records {
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    inflight.push_back(f);
                    break;
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    r,
                )) => {
                    rec = r;
                    match inflight.pop_front() {
                        Some(f) => ack(f).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => return Err(format!("cannot enqueue: {e}")),
            }
        }
        if inflight.len() > MAX_INFLIGHT {
            if let Some(f) = inflight.pop_front() {
                ack(f).await?;
            }
        }
    }
    for f in inflight {
        ack(f).await?;
    }
    Ok(())
}

async fn ack(f: DeliveryFuture) -> Result<(), String> {
    match f.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(format!("broker refused: {e}")),
        Err(_) => Err("producer shut down".into()),
    }
}

/// The Slack-compatible text for one alert.
pub fn slack_text(e: &Emit) -> String {
    let a = &e.alert;
    let mut s = format!(
        "*[{} {:.1}] {}*\nuser: {} | app: {} | source IP: {} | count: {} | {} → {}\n",
        a.severity.label().to_uppercase(),
        a.score,
        a.title,
        a.username.as_deref().or(a.user_id.as_deref()).unwrap_or("unknown"),
        a.app.as_deref().unwrap_or("unknown"),
        a.source_ip.as_deref().unwrap_or("-"),
        a.count,
        a.first_seen,
        a.last_seen,
    );
    for f in &a.factors {
        s.push_str(&format!("• {} ({:+}): {}\n", f.id, f.weight, f.detail));
    }
    s.push_str(&format!("alert_id {} · {}", a.alert_id, a.remediation));
    s
}

impl Sink {
    pub fn new(cfg: &SinkConfig, producer: Option<&FutureProducer>) -> anyhow::Result<Sink> {
        let imp = match &cfg.kind {
            SinkKind::Kafka { topic } => Imp::Kafka {
                producer: producer.cloned().ok_or_else(|| anyhow::anyhow!("sink {}: no Kafka producer", cfg.name))?,
                topic: topic.clone(),
            },
            SinkKind::File { path } => Imp::File {
                out: std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| anyhow::anyhow!("sink {}: cannot open {}: {e}", cfg.name, path.display()))?,
                path: path.display().to_string(),
            },
            SinkKind::Webhook { url, style, timeout_ms, max_retries, backoff_ms, max_backoff_ms } => Imp::Webhook {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_millis(*timeout_ms))
                    .user_agent(concat!("ccwatch/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| anyhow::anyhow!("sink {}: cannot build HTTP client: {e}", cfg.name))?,
                url: url.expose().to_string(),
                style: *style,
                retries: *max_retries,
                backoff: Duration::from_millis(*backoff_ms),
                max_backoff: Duration::from_millis(*max_backoff_ms),
            },
        };
        Ok(Sink { name: cfg.name.clone(), min_severity: cfg.min_severity, format: cfg.format, imp, progress: 0 })
    }

    pub fn wants(&self, e: &Emit) -> bool {
        e.alert.severity >= self.min_severity
    }

    /// Whether the whole current batch has been accepted.
    pub fn done(&self, batch: &[Emit]) -> bool {
        self.progress >= batch.len()
    }

    /// A new batch begins.
    pub fn reset(&mut self) {
        self.progress = 0;
    }

    /// Delivers what is left of `batch`; returns how many alerts it accepted.
    pub async fn deliver(&mut self, batch: &[Emit]) -> Result<u64, String> {
        let start = self.progress;
        let todo: Vec<&Emit> = batch[start..].iter().filter(|e| e.alert.severity >= self.min_severity).collect();
        let format = self.format;
        let encoded = |e: &Emit| {
            let mut buf = Vec::with_capacity(1024);
            encode::encode(format, &e.alert, e.kind, &mut buf);
            buf.pop(); // the newline
            buf
        };
        match &mut self.imp {
            Imp::Kafka { producer, topic } => {
                let payloads: Vec<(Vec<u8>, &str)> =
                    todo.iter().map(|e| (encoded(e), e.alert.alert_id.as_str())).collect();
                let mut records: Vec<FutureRecord<'_, [u8], [u8]>> = Vec::with_capacity(payloads.len());
                for (p, k) in &payloads {
                    records.push(FutureRecord::to(topic.as_str()).key(k.as_bytes()).payload(p.as_slice()));
                }
                produce_all(producer, records).await.map_err(|e| format!("topic {topic}: {e}"))?;
                self.progress = batch.len();
            }
            Imp::File { out, path } => {
                let mut buf = Vec::new();
                for e in &todo {
                    buf.extend_from_slice(&encoded(e));
                    buf.push(b'\n');
                }
                out.write_all(&buf).and_then(|_| out.flush()).map_err(|e| format!("cannot write {path}: {e}"))?;
                self.progress = batch.len();
            }
            Imp::Webhook { client, url, style, retries, backoff, max_backoff } => {
                for (i, e) in batch.iter().enumerate().skip(start) {
                    if e.alert.severity >= self.min_severity {
                        let body = match style {
                            WebhookStyle::Json => encoded(e),
                            WebhookStyle::Slack => {
                                serde_json::to_vec(&serde_json::json!({ "text": slack_text(e) })).unwrap_or_default()
                            }
                        };
                        post(client, url, body, *retries, *backoff, *max_backoff).await?;
                    }
                    self.progress = i + 1;
                }
            }
        }
        Ok(todo.len() as u64)
    }

    /// Flushes buffered output (shutdown).
    pub fn flush(&mut self) -> Result<(), String> {
        match &mut self.imp {
            Imp::Kafka { producer, topic } => rdkafka::producer::Producer::flush(producer, Duration::from_secs(10))
                .map_err(|e| format!("topic {topic}: flush failed: {e}")),
            // Pipes and terminals (the demo's /dev/stdout) cannot be synced.
            Imp::File { out, path } => match out.metadata() {
                Ok(m) if m.is_file() => out.sync_data().map_err(|e| format!("cannot sync {path}: {e}")),
                _ => Ok(()),
            },
            Imp::Webhook { .. } => Ok(()),
        }
    }
}

/// One POST with retries: timeouts, connection errors, 429 and 5xx are retried
/// with doubling backoff; other statuses fail at once (a config problem).
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
) -> Result<(), String> {
    let mut delay = backoff;
    let mut attempt = 0;
    loop {
        let res = client.post(url).header("content-type", "application/json").body(body.clone()).send().await;
        let err = match res {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => format!("HTTP {}", r.status()),
            Ok(r) => return Err(format!("webhook answered HTTP {} (not retried)", r.status())),
            // reqwest errors may include the URL, which can be a secret: keep only the kind.
            Err(e) if e.is_timeout() => "timed out".to_string(),
            Err(e) if e.is_connect() => "connection failed".to_string(),
            Err(_) => "request failed".to_string(),
        };
        if attempt >= retries {
            return Err(format!("webhook failed after {} attempt(s): {err}", attempt + 1));
        }
        tracing::debug!(attempt, error = %err, "Webhook attempt failed; retrying.");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max_backoff);
        attempt += 1;
    }
}

/// The dead-letter topic writer.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: String) -> DeadLetters {
        DeadLetters { producer, topic }
    }

    /// Sends every letter with its reason and origin in headers; the payload is
    /// the original bytes, untouched.
    pub async fn send(&self, letters: &[DeadLetter]) -> Result<(), String> {
        let meta: Vec<(OwnedHeaders, &DeadLetter)> = letters
            .iter()
            .map(|l| {
                let (p, o, i) = (l.partition.to_string(), l.offset.to_string(), l.index.map(|i| i.to_string()));
                let mut h = OwnedHeaders::new()
                    .insert(Header { key: "ccwatch.reason", value: Some(l.reason) })
                    .insert(Header { key: "ccwatch.detail", value: Some(l.detail.as_str()) })
                    .insert(Header { key: "ccwatch.source.topic", value: Some(l.topic.as_str()) })
                    .insert(Header { key: "ccwatch.source.partition", value: Some(p.as_str()) })
                    .insert(Header { key: "ccwatch.source.offset", value: Some(o.as_str()) });
                if let Some(i) = &i {
                    h = h.insert(Header { key: "ccwatch.record_index", value: Some(i.as_str()) });
                }
                (h, l)
            })
            .collect();
        let mut records: Vec<FutureRecord<'_, [u8], [u8]>> = Vec::with_capacity(meta.len());
        for (h, l) in meta {
            let r = FutureRecord::to(self.topic.as_str()).payload(l.payload.as_slice()).headers(h);
            records.push(match &l.key {
                Some(k) => r.key(k.as_slice()),
                None => r,
            });
        }
        produce_all(&self.producer, records).await.map_err(|e| format!("dead-letter topic {}: {e}", self.topic))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}
