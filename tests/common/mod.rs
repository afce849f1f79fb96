//! Helpers shared by the live-mode integration tests: a config for a given
//! broker, topic readers, committed-offset queries, a /metrics scraper and a
//! scripted HTTP server standing in for a webhook receiver.

#![allow(dead_code)]

use ccwatch::config::live::{KafkaConfig, SinkConfig, SinkKind};
use ccwatch::config::Config;
use ccwatch::event::Format;
use ccwatch::event::Severity;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A name no other test (or earlier run against a persistent broker) used.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub struct Topics {
    pub logins: String,
    pub audit: String,
    pub alerts: String,
    pub dead: String,
    pub group: String,
}

impl Topics {
    pub fn new() -> Topics {
        Topics {
            logins: unique("logins"),
            audit: unique("audit"),
            alerts: unique("alerts"),
            dead: unique("dead"),
            group: unique("group"),
        }
    }
}

/// `ccwatch.toml`'s detection settings, pointed at `bootstrap` and `topics`.
pub fn live_config(bootstrap: &str, t: &Topics, sinks: Vec<SinkConfig>) -> Config {
    let mut cfg = Config::load(&root().join("ccwatch.toml")).unwrap();
    cfg.live.kafka = Some(KafkaConfig::plaintext(bootstrap, &t.group, &t.logins, Some(&t.audit), Some(&t.dead), 500));
    cfg.live.sinks = sinks;
    cfg.live.metrics_listen = "127.0.0.1:0".parse().unwrap();
    cfg
}

pub fn kafka_sink(topic: &str) -> SinkConfig {
    SinkConfig {
        name: "alerts-topic".into(),
        min_severity: Severity::Low,
        format: Format::Native,
        kind: SinkKind::Kafka { topic: topic.into() },
    }
}

pub fn file_sink(path: &Path) -> SinkConfig {
    SinkConfig {
        name: "alerts-file".into(),
        min_severity: Severity::Low,
        format: Format::Native,
        kind: SinkKind::File { path: path.to_path_buf(), mode: 0o600 },
    }
}

/// The alert lines replay writes for the samples (the reviewed golden file).
pub fn replay_lines() -> Vec<String> {
    std::fs::read_to_string(root().join("tests/golden/samples.native.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Every record of `topic`, read from the beginning to the end of each partition.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut eof = std::collections::HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Tansu may report end-of-partition before the real end (its high
    // watermark lags), so "done" is: every partition said EOF and nothing
    // more arrived for a while.
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        if eof.len() == parts.len() && quiet_since.elapsed() > Duration::from_millis(1500) {
            break;
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for x in h.iter() {
                        headers.insert(x.key.to_string(), String::from_utf8_lossy(x.value.unwrap_or_default()).into());
                    }
                }
                eof.remove(&m.partition());
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into()),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            _ => {}
        }
    }
    assert_eq!(eof.len(), parts.len(), "timed out reading {topic}");
    out
}

/// The end offset (last offset + 1, or 0) of every partition, from reading
/// it: Tansu's ListOffsets answer is not reliable, its fetches are.
pub fn high_watermarks(bootstrap: &str, topic: &str) -> Vec<(i32, i64)> {
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", unique("hw")).create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut ends: HashMap<i32, i64> = md.topics()[0].partitions().iter().map(|p| (p.id(), 0)).collect();
    for r in read_topic(bootstrap, topic) {
        let e = ends.entry(r.partition).or_default();
        *e = (*e).max(r.offset + 1);
    }
    let mut out: Vec<(i32, i64)> = ends.into_iter().collect();
    out.sort();
    out
}

/// A partition's low and high watermarks as the broker lists them
/// (ListOffsets; the mock cluster's answer is exact, Tansu's is not, see
/// `high_watermarks`).
pub fn listed_watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    c.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap()
}

/// The group's committed offset per partition (0 when none).
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> Vec<(i32, i64)> {
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, _) in high_watermarks(bootstrap, topic) {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    let mut out: Vec<(i32, i64)> = got
        .elements()
        .iter()
        .map(|e| (e.partition(), if let Offset::Offset(o) = e.offset() { o } else { 0 }))
        .collect();
    out.sort();
    out
}

/// GET a URL; (status, body).
pub async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of one sample in Prometheus text (`name{labels}` exactly as
/// exposed, or a bare name); the sum over all series when `series` is a bare
/// metric name followed by `{*}`.
pub fn metric(text: &str, series: &str) -> f64 {
    if let Some(name) = series.strip_suffix("{*}") {
        return text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
    }
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Polls `cond` every 100 ms until it holds or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A webhook receiver: answers `fail_status` (503 when 0) while `failing` is
/// set, 400 to a body containing `refuse`, else 200; keeps every body it
/// accepted and the time of every attempt.
#[derive(Clone, Default)]
pub struct Hook {
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    pub fail_status: Arc<std::sync::atomic::AtomicU16>,
    /// `Retry-After` sent with a failing answer.
    pub retry_after: Arc<Mutex<Option<String>>>,
    /// Bodies containing this are answered 400.
    pub refuse: Arc<Mutex<Option<String>>>,
    pub attempts: Arc<AtomicUsize>,
    pub attempt_times: Arc<Mutex<Vec<std::time::Instant>>>,
    pub accepted: Arc<Mutex<Vec<String>>>,
    /// Added before each answer.
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Hook {
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            me.attempts.fetch_add(1, Ordering::SeqCst);
                            me.attempt_times.lock().unwrap().push(std::time::Instant::now());
                            let delay = me.delay_ms.load(Ordering::SeqCst);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                            }
                            let text = String::from_utf8_lossy(&body).to_string();
                            let refused =
                                me.refuse.lock().unwrap().as_deref().is_some_and(|needle| text.contains(needle));
                            let failing = me.failing.load(Ordering::SeqCst);
                            let status = if refused {
                                400
                            } else if failing {
                                match me.fail_status.load(Ordering::SeqCst) {
                                    0 => 503,
                                    s => s,
                                }
                            } else {
                                me.accepted.lock().unwrap().push(text);
                                200
                            };
                            let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            if let (true, Some(ra)) = (failing && !refused, me.retry_after.lock().unwrap().clone()) {
                                r.headers_mut().insert("retry-after", ra.parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}/hook")
    }
}

/// Creates topics with the admin API (a real broker does not auto-create them).
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let new: Vec<NewTopic> = topics.iter().map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1))).collect();
    let res = admin.create_topics(&new, &AdminOptions::new()).await.unwrap();
    for r in res {
        if let Err((name, e)) = r {
            panic!("cannot create topic {name}: {e}");
        }
    }
}

/// The broker the live tests use: `CCWATCH_TEST_BROKER`, set by `make test`
/// (scripts/test-broker.sh starts one).
pub fn broker() -> String {
    std::env::var("CCWATCH_TEST_BROKER")
        .expect("CCWATCH_TEST_BROKER is not set: run `make test`, which starts a broker (scripts/test-broker.sh)")
}

/// The last line written per `alert_id`: the authoritative state of each alert.
pub fn last_per_id(lines: &[String]) -> std::collections::BTreeMap<String, String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("alert lines are JSON");
            (v["alert_id"].as_str().expect("alert_id").to_string(), l.clone())
        })
        .collect()
}

/// Lines as a sorted list: the same alert lines whatever the order they were written in.
pub fn sorted(lines: &[String]) -> Vec<String> {
    let mut v = lines.to_vec();
    v.sort();
    v
}

/// A failed client-credentials grant for a user no alert is about, after
/// the samples and the generated archive: it moves event time past every
/// alert's day, so live closes every alert (and writes its final count) as
/// replay's end of input does.
pub fn sentinel(n: usize) -> String {
    serde_json::json!({
        "attributes": {"type": "LoginEvent"},
        "EventIdentifier": format!("sentinel-{n}"),
        "EventDate": "2024-07-12T00:00:00.000+0000",
        "UserId": "005Sn0000000001AAA",
        "Username": "sentinel@acme.example",
        "LoginType": "Remote Access 2.0",
        "LoginSubType": "OAuth Client Credentials",
        "Status": "Failed: Invalid Client Credentials",
        "SourceIp": "192.0.2.250",
        "Application": "Sentinel",
    })
    .to_string()
}

/// Produces `payloads[i]` to partition `i` of `topic`.
pub async fn to_partitions(bootstrap: &str, topic: &str, payloads: &[String]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    for (i, p) in payloads.iter().enumerate() {
        let rec = FutureRecord::<(), str>::to(topic).payload(p).partition(i as i32);
        producer.send(rec, std::time::Duration::from_secs(10)).await.unwrap();
    }
}
