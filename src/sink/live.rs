//! Live sinks: the Kafka alerts topic, a JSONL file and HTTP webhooks; the
//! dead-letter topic for undecodable records; and the alert dead letter for
//! alerts a sink refuses for good.
//!
//! A sink accepts a *batch* (the alerts one turn of the run loop produced) and
//! reports success only when every alert it wants is durably handed over:
//! acknowledged by the broker, written, flushed and synced to disk, or answered
//! 2xx. Each sink remembers how far into the batch it got, so a retry after a
//! partial failure does not resend what one sink already took while another
//! was failing. The run loop stores no offset until every sink has taken the
//! whole batch.
//!
//! Errors are typed (`SinkError`) because the caller decides from them:
//! *transient* failures (network errors, timeouts, 5xx, 408, 429 with its
//! `Retry-After`, broker errors librdkafka retries) are retried with backoff
//! while intake waits; *permanent* refusals (other 4xx, a payload too large,
//! an unknown topic) of one alert are, when an alert dead letter is
//! configured, reported per alert so the caller can set that alert aside and
//! go on with the rest.
//!
//! File outputs reopen their path before the next write after
//! `request_reopen` (the binary calls it on SIGHUP), so logrotate can move the
//! JSONL file away without `copytruncate`.

use crate::config::live::{AlertDeadLetterConfig, SinkConfig, SinkKind, WebhookStyle};
use crate::event::{Emit, Format, Severity};
use crate::sink::encode;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest `Retry-After` honoured; a larger value is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Why a sink refused an alert for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A 4xx other than 408 and 429: the request itself is wrong.
    HttpStatus,
    /// Larger than the sink accepts.
    TooLarge,
    /// The topic does not exist (and is not created on demand).
    UnknownTopic,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::HttpStatus => "http_4xx",
            Refusal::TooLarge => "too_large",
            Refusal::UnknownTopic => "unknown_topic",
        }
    }

    pub const ALL: [Refusal; 3] = [Refusal::HttpStatus, Refusal::TooLarge, Refusal::UnknownTopic];
}

/// A sink's failure, as the run loop decides from it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying: the same request may succeed later.
    #[error("{detail}")]
    Transient { detail: String, retry_after: Option<Duration> },
    /// The sink will never take this alert as it is.
    #[error("{detail}")]
    Permanent { refusal: Refusal, detail: String },
}

impl SinkError {
    fn transient(detail: impl Into<String>) -> SinkError {
        SinkError::Transient { detail: detail.into(), retry_after: None }
    }

    /// How a producer error is treated: permanent for a payload too large or
    /// a topic that does not exist, transient otherwise.
    pub fn from_kafka(topic: &str, e: &KafkaError) -> SinkError {
        let code = match e {
            KafkaError::MessageProduction(c) => Some(*c),
            _ => e.rdkafka_error_code(),
        };
        let detail = format!("topic {topic}: {e}");
        match code {
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
                SinkError::Permanent { refusal: Refusal::TooLarge, detail }
            }
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                SinkError::Permanent { refusal: Refusal::UnknownTopic, detail }
            }
            _ => SinkError::transient(detail),
        }
    }

    /// How an HTTP status is treated (`None`: success).
    pub fn from_http(status: u16, retry_after: Option<Duration>) -> Option<SinkError> {
        match status {
            200..=299 => None,
            408 | 429 | 500..=599 => Some(SinkError::Transient { detail: format!("HTTP {status}"), retry_after }),
            _ => Some(SinkError::Permanent { refusal: Refusal::HttpStatus, detail: format!("HTTP {status}") }),
        }
    }

    /// The wait the sink asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::Transient { retry_after, .. } => *retry_after,
            SinkError::Permanent { .. } => None,
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at `MAX_RETRY_AFTER`.
pub fn parse_retry_after(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = v.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            (at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// One alert of a batch a sink refused for good.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Index in the batch.
    pub index: usize,
    pub refusal: Refusal,
    pub detail: String,
}

/// What one `deliver` call achieved.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Alerts the sink took.
    pub accepted: u64,
    /// Alerts it refused for good (only when the caller can set them aside).
    pub refused: Vec<Refused>,
    /// Attempts repeated inside the call (webhook retries).
    pub retries: u64,
}

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
    File(AppendFile),
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

/// Sends every record, then waits for every acknowledgement; returns each
/// record's outcome, in order. When librdkafka's queue is full, or more than
/// `MAX_INFLIGHT` wait, it waits for the oldest first.
pub async fn produce_each(
    producer: &FutureProducer,
    records: Vec<FutureRecord<'_, [u8], [u8]>>,
) -> Vec<Result<(), KafkaError>> {
    const MAX_INFLIGHT: usize = 100_000;
    let mut out: Vec<Option<Result<(), KafkaError>>> = Vec::with_capacity(records.len());
    let mut inflight: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
    for mut rec in records {
        let i = out.len();
        out.push(None);
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    inflight.push_back((i, f));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    match inflight.pop_front() {
                        Some((j, f)) => out[j] = Some(ack(f).await),
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => {
                    out[i] = Some(Err(e));
                    break;
                }
            }
        }
        if inflight.len() > MAX_INFLIGHT {
            if let Some((j, f)) = inflight.pop_front() {
                out[j] = Some(ack(f).await);
            }
        }
    }
    for (j, f) in inflight {
        out[j] = Some(ack(f).await);
    }
    out.into_iter().map(|r| r.unwrap_or(Err(KafkaError::Canceled))).collect()
}

/// `produce_each`, failing on the first refused record (for `ccwatch produce`).
pub async fn produce_all(producer: &FutureProducer, records: Vec<FutureRecord<'_, [u8], [u8]>>) -> Result<(), String> {
    match produce_each(producer, records).await.into_iter().find_map(Result::err) {
        None => Ok(()),
        Some(e) => Err(format!("broker refused: {e}")),
    }
}

async fn ack(f: DeliveryFuture) -> Result<(), KafkaError> {
    match f.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
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
            SinkKind::File { path, mode } => Imp::File(
                AppendFile::open(path, *mode)
                    .map_err(|e| anyhow::anyhow!("sink {}: cannot open {}: {e}", cfg.name, path.display()))?,
            ),
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

    /// Delivers what is left of `batch`. With `set_aside`, an alert the sink
    /// refuses for good is reported in `Delivery::refused` and delivery goes
    /// on; without it, the refusal is the error and the alert is tried again
    /// on the next call.
    pub async fn deliver(&mut self, batch: &[Emit], set_aside: bool) -> Result<Delivery, SinkError> {
        let start = self.progress;
        let mut d = Delivery::default();
        let format = self.format;
        let min = self.min_severity;
        let encoded = |e: &Emit| {
            let mut buf = Vec::with_capacity(1024);
            encode::encode(format, &e.alert, e.kind, &mut buf);
            buf.pop(); // the newline
            buf
        };
        match &mut self.imp {
            Imp::Kafka { producer, topic } => {
                let todo: Vec<(usize, Vec<u8>)> = batch[start..]
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.alert.severity >= min)
                    .map(|(i, e)| (start + i, encoded(e)))
                    .collect();
                let records: Vec<FutureRecord<'_, [u8], [u8]>> = todo
                    .iter()
                    .map(|(i, p)| {
                        FutureRecord::to(topic.as_str()).key(batch[*i].alert.alert_id.as_bytes()).payload(p.as_slice())
                    })
                    .collect();
                let results = produce_each(producer, records).await;
                // A transient failure anywhere retries the rest of the batch
                // (at-least-once: lines already acknowledged may repeat).
                let mut refused = Vec::new();
                for ((i, _), r) in todo.iter().zip(&results) {
                    match r.as_ref().map_err(|e| SinkError::from_kafka(topic, e)) {
                        Ok(()) => d.accepted += 1,
                        Err(SinkError::Permanent { refusal, detail }) if set_aside => {
                            refused.push(Refused { index: *i, refusal, detail })
                        }
                        Err(e) => return Err(e),
                    }
                }
                d.refused = refused;
                self.progress = batch.len();
            }
            Imp::File(out) => {
                let mut buf = Vec::new();
                for e in batch[start..].iter().filter(|e| e.alert.severity >= min) {
                    buf.extend_from_slice(&encoded(e));
                    buf.push(b'\n');
                    d.accepted += 1;
                }
                out.append(&buf).map_err(|e| SinkError::transient(format!("cannot write {}: {e}", out.name())))?;
                self.progress = batch.len();
            }
            Imp::Webhook { client, url, style, retries, backoff, max_backoff } => {
                for (i, e) in batch.iter().enumerate().skip(start) {
                    if e.alert.severity >= min {
                        let body = match style {
                            WebhookStyle::Json => encoded(e),
                            WebhookStyle::Slack => {
                                serde_json::to_vec(&serde_json::json!({ "text": slack_text(e) })).unwrap_or_default()
                            }
                        };
                        match post(client, url, body, *retries, *backoff, *max_backoff, &mut d.retries).await {
                            Ok(()) => d.accepted += 1,
                            Err(SinkError::Permanent { refusal, detail }) if set_aside => {
                                d.refused.push(Refused { index: i, refusal, detail })
                            }
                            Err(err) => return Err(err),
                        }
                    }
                    self.progress = i + 1;
                }
            }
        }
        Ok(d)
    }

    /// Flushes buffered output (shutdown).
    pub fn flush(&mut self) -> Result<(), String> {
        match &mut self.imp {
            Imp::Kafka { producer, topic } => rdkafka::producer::Producer::flush(producer, Duration::from_secs(10))
                .map_err(|e| format!("topic {topic}: flush failed: {e}")),
            Imp::File(out) => sync_if_file(&out.out).map_err(|e| format!("cannot sync {}: {e}", out.name())),
            Imp::Webhook { .. } => Ok(()),
        }
    }
}

/// Opens `path` for appending, creating it with `mode` permission bits.
fn open_append(path: &std::path::Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(mode).open(path)
}

/// Bumped by `request_reopen` (SIGHUP): every file output reopens its path
/// before its next write.
static REOPEN: AtomicU64 = AtomicU64::new(0);

/// Asks every file sink and file dead letter to reopen its path before its
/// next write: after logrotate moved the file away (`kill -HUP`), new lines
/// go to a new file at the configured path.
pub fn request_reopen() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
}

/// A file written by appending, reopened at its path after `request_reopen`.
pub struct AppendFile {
    out: std::fs::File,
    path: std::path::PathBuf,
    mode: u32,
    generation: u64,
}

impl AppendFile {
    fn open(path: &std::path::Path, mode: u32) -> std::io::Result<AppendFile> {
        let generation = REOPEN.load(Ordering::Relaxed);
        Ok(AppendFile { out: open_append(path, mode)?, path: path.to_path_buf(), mode, generation })
    }

    /// The path, as messages name it.
    fn name(&self) -> std::path::Display<'_> {
        self.path.display()
    }

    /// Writes, flushes and syncs `buf`, reopening the path first if asked to.
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let generation = REOPEN.load(Ordering::Relaxed);
        if generation != self.generation {
            self.out = open_append(&self.path, self.mode)?;
            self.generation = generation;
            tracing::info!(path = %self.path.display(), "Reopened the output file (SIGHUP).");
        }
        self.out.write_all(buf)?;
        self.out.flush()?;
        sync_if_file(&self.out)
    }
}

/// `fsync`s a regular file; pipes and terminals (the demo's /dev/stdout)
/// cannot be synced and need not be.
fn sync_if_file(out: &std::fs::File) -> std::io::Result<()> {
    match out.metadata() {
        Ok(m) if m.is_file() => out.sync_data(),
        _ => Ok(()),
    }
}

/// One POST with retries: transient failures (timeouts, connection errors,
/// 408, 429, 5xx) are retried with doubling backoff, or after the server's
/// `Retry-After` when it gives one; a permanent refusal fails at once.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    retried: &mut u64,
) -> Result<(), SinkError> {
    let mut delay = backoff;
    let mut attempt = 0;
    loop {
        let res = client.post(url).header("content-type", "application/json").body(body.clone()).send().await;
        let err = match res {
            Ok(r) => {
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                match SinkError::from_http(r.status().as_u16(), retry_after) {
                    None => return Ok(()),
                    Some(e @ SinkError::Permanent { .. }) => return Err(e),
                    Some(e) => e,
                }
            }
            // reqwest errors may include the URL, which can be a secret: keep only the kind.
            Err(e) if e.is_timeout() => SinkError::transient("timed out"),
            Err(e) if e.is_connect() => SinkError::transient("connection failed"),
            Err(_) => SinkError::transient("request failed"),
        };
        if attempt >= retries {
            return Err(match err {
                SinkError::Transient { detail, retry_after } => SinkError::Transient {
                    detail: format!("webhook failed after {} attempt(s): {detail}", attempt + 1),
                    retry_after,
                },
                other => other,
            });
        }
        tracing::debug!(attempt, error = %err, "Webhook attempt failed; retrying.");
        tokio::time::sleep(err.retry_after().unwrap_or(delay)).await;
        delay = (delay * 2).min(max_backoff);
        attempt += 1;
        *retried += 1;
    }
}

/// The dead-letter topic writer for undecodable records.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    /// The producer's `message.max.bytes`: a payload is cut to fit under it.
    max_bytes: usize,
}

/// Room left for headers, key and framing when a payload is cut to fit.
const DEAD_LETTER_OVERHEAD: usize = 4096;

/// What `DeadLetters::send` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LettersSent {
    /// Letters whose payload had to be cut to fit the topic.
    pub truncated: u64,
    /// Letters the broker refused even cut to nothing but their headers:
    /// logged with their origin and hash, not retried.
    pub refused: u64,
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: String, max_bytes: usize) -> DeadLetters {
        DeadLetters { producer, topic, max_bytes }
    }

    /// Sends every letter with its reason and origin in headers; the payload is
    /// the original bytes, or as many leading bytes as fit, with the original
    /// size and its SHA-256 in headers. A broker that refuses a letter as too
    /// large gets it again cut to half, down to the headers alone.
    pub async fn send(&self, letters: &[DeadLetter]) -> Result<LettersSent, SinkError> {
        let mut out = LettersSent::default();
        let mut limits: Vec<usize> =
            letters.iter().map(|_| self.max_bytes.saturating_sub(DEAD_LETTER_OVERHEAD)).collect();
        let mut todo: Vec<usize> = (0..letters.len()).collect();
        let mut cut = vec![false; letters.len()];
        while !todo.is_empty() {
            let built: Vec<(OwnedHeaders, &DeadLetter, usize)> =
                todo.iter().map(|&i| (letter_headers(&letters[i], limits[i]), &letters[i], limits[i])).collect();
            let records: Vec<FutureRecord<'_, [u8], [u8]>> = built
                .iter()
                .map(|(h, l, limit)| {
                    let payload = &l.payload[..l.payload.len().min(*limit)];
                    let r = FutureRecord::to(self.topic.as_str()).payload(payload).headers(h.clone());
                    match &l.key {
                        Some(k) => r.key(k.as_slice()),
                        None => r,
                    }
                })
                .collect();
            let results = produce_each(&self.producer, records).await;
            let mut again = Vec::new();
            for (&i, r) in todo.iter().zip(results) {
                let l = &letters[i];
                if l.payload.len() > limits[i] {
                    cut[i] = true;
                }
                match r.map_err(|e| SinkError::from_kafka(&self.topic, &e)) {
                    Ok(()) => {}
                    Err(SinkError::Permanent { refusal: Refusal::TooLarge, .. }) if limits[i] > 0 => {
                        limits[i] = (limits[i].min(l.payload.len())) / 2;
                        again.push(i);
                    }
                    Err(SinkError::Permanent { detail, .. }) => {
                        out.refused += 1;
                        tracing::error!(
                            topic = %l.topic, partition = l.partition, offset = l.offset, reason = l.reason,
                            size = l.payload.len(), sha256 = %sha256_hex(&l.payload), error = %detail,
                            "The dead-letter topic refused an undecodable record even without its payload; \
                             it is not retried."
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
            todo = again;
        }
        out.truncated = cut.iter().filter(|c| **c).count() as u64;
        Ok(out)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A dead letter's headers; a payload longer than `limit` also gets its
/// original size and SHA-256.
fn letter_headers(l: &DeadLetter, limit: usize) -> OwnedHeaders {
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
    if l.payload.len() > limit {
        let size = l.payload.len().to_string();
        let kept = limit.to_string();
        let hash = sha256_hex(&l.payload);
        h = h
            .insert(Header { key: "ccwatch.truncated", value: Some("true") })
            .insert(Header { key: "ccwatch.original_size", value: Some(size.as_str()) })
            .insert(Header { key: "ccwatch.kept_bytes", value: Some(kept.as_str()) })
            .insert(Header { key: "ccwatch.original_sha256", value: Some(hash.as_str()) });
    }
    h
}

/// An alert a sink refused for good, bound for the alert dead letter.
#[derive(Debug, Clone)]
pub struct RefusedAlert {
    pub sink: String,
    pub refusal: Refusal,
    pub detail: String,
    pub emit: Emit,
}

impl RefusedAlert {
    /// The dead-letter line: the sink, the reason and the alert (native shape).
    fn line(&self) -> Vec<u8> {
        let mut alert = Vec::with_capacity(1024);
        encode::encode(Format::Native, &self.emit.alert, self.emit.kind, &mut alert);
        let alert: serde_json::Value = serde_json::from_slice(&alert).unwrap_or(serde_json::Value::Null);
        serde_json::to_vec(&serde_json::json!({
            "sink": self.sink,
            "reason": self.refusal.label(),
            "detail": self.detail,
            "alert": alert,
        }))
        .unwrap_or_default()
    }
}

/// Where alerts a sink refused for good are set aside.
pub enum AlertDeadLetters {
    Kafka { producer: FutureProducer, topic: String },
    File(AppendFile),
}

impl AlertDeadLetters {
    pub fn new(cfg: &AlertDeadLetterConfig, producer: Option<&FutureProducer>) -> anyhow::Result<AlertDeadLetters> {
        Ok(match cfg {
            AlertDeadLetterConfig::Kafka { topic } => AlertDeadLetters::Kafka {
                producer: producer.cloned().ok_or_else(|| anyhow::anyhow!("alert_dead_letter: no Kafka producer"))?,
                topic: topic.clone(),
            },
            AlertDeadLetterConfig::File { path, mode } => AlertDeadLetters::File(
                AppendFile::open(path, *mode)
                    .map_err(|e| anyhow::anyhow!("alert_dead_letter: cannot open {}: {e}", path.display()))?,
            ),
        })
    }

    /// Writes every refused alert, or fails as a whole (transient: retried).
    pub async fn send(&mut self, refused: &[RefusedAlert]) -> Result<(), SinkError> {
        match self {
            AlertDeadLetters::Kafka { producer, topic } => {
                let lines: Vec<Vec<u8>> = refused.iter().map(RefusedAlert::line).collect();
                let records = refused
                    .iter()
                    .zip(&lines)
                    .map(|(r, l)| {
                        FutureRecord::to(topic.as_str()).key(r.emit.alert.alert_id.as_bytes()).payload(l.as_slice())
                    })
                    .collect();
                match produce_each(producer, records).await.into_iter().find_map(Result::err) {
                    None => Ok(()),
                    Some(e) => Err(SinkError::transient(format!("alert dead-letter topic {topic}: {e}"))),
                }
            }
            AlertDeadLetters::File(out) => {
                let mut buf = Vec::new();
                for r in refused {
                    buf.extend_from_slice(&r.line());
                    buf.push(b'\n');
                }
                out.append(&buf).map_err(|e| {
                    SinkError::transient(format!("cannot write alert dead letters to {}: {e}", out.name()))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// logrotate moves the file away and sends SIGHUP: the next write goes to
    /// a new file at the configured path, the moved one keeps what it had.
    #[test]
    fn a_file_output_reopens_its_path_after_a_reopen_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut f = AppendFile::open(&path, 0o640).unwrap();
        f.append(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("alerts.jsonl.1")).unwrap();
        f.append(b"two\n").unwrap(); // no request yet: still the moved file
        assert!(!path.exists());
        request_reopen();
        f.append(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("alerts.jsonl.1")).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn http_statuses_are_transient_or_permanent() {
        assert_eq!(SinkError::from_http(204, None), None);
        for s in [408, 429, 500, 503] {
            assert!(matches!(SinkError::from_http(s, None), Some(SinkError::Transient { .. })), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(
                matches!(
                    SinkError::from_http(s, None),
                    Some(SinkError::Permanent { refusal: Refusal::HttpStatus, .. })
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn producer_errors_are_transient_or_permanent() {
        let p = |c| SinkError::from_kafka("t", &KafkaError::MessageProduction(c));
        assert!(matches!(
            p(RDKafkaErrorCode::MessageSizeTooLarge),
            SinkError::Permanent { refusal: Refusal::TooLarge, .. }
        ));
        assert!(matches!(
            p(RDKafkaErrorCode::UnknownTopicOrPartition),
            SinkError::Permanent { refusal: Refusal::UnknownTopic, .. }
        ));
        assert!(matches!(
            p(RDKafkaErrorCode::UnknownTopic),
            SinkError::Permanent { refusal: Refusal::UnknownTopic, .. }
        ));
        for c in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(matches!(p(c), SinkError::Transient { .. }), "{c:?}");
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_capped() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Mon, 30 Nov 2026 12:00:07 GMT", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Mon, 30 Nov 2026 11:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn an_oversized_dead_letter_carries_its_size_and_hash() {
        let l = DeadLetter {
            payload: vec![b'x'; 100],
            key: None,
            reason: "invalid_json",
            detail: "d".into(),
            index: None,
            topic: "logins".into(),
            partition: 0,
            offset: 7,
        };
        use rdkafka::message::Headers;
        let h = letter_headers(&l, 10);
        let get = |k: &str| {
            h.iter().find(|x| x.key == k).and_then(|x| x.value).map(|v| String::from_utf8_lossy(v).to_string())
        };
        assert_eq!(get("ccwatch.original_size").as_deref(), Some("100"));
        assert_eq!(get("ccwatch.kept_bytes").as_deref(), Some("10"));
        assert_eq!(get("ccwatch.original_sha256").map(|s| s.len()), Some(64));
        assert_eq!(get("ccwatch.source.offset").as_deref(), Some("7"));
        assert!(letter_headers(&l, 100).iter().all(|x| x.key != "ccwatch.truncated"), "fits: untouched");
    }
}
