//! `make bench-kafka`: ccwatch's live mode against a real broker on this
//! machine (Tansu, started by scripts/test-broker.sh).
//!
//! 1. **Sustained throughput.** A topic is preloaded with N generated login
//!    records (`ccwatch generate`, ~1 KB each, 2 % client-credentials grants),
//!    then `ccwatch run` consumes it with a Kafka alerts sink. The rate is
//!    records consumed (from ccwatch's own /metrics, scraped every 100 ms)
//!    between the first and the last login record, so group join is excluded.
//! 2. **Latency at a fixed rate.** With ccwatch already running, records are
//!    produced at 10,000/s for 30 s with event time = now; every 100th is a
//!    client-credentials grant from a never-seen IP, so it raises a new alert.
//!    Latency = alert read from the alerts topic − grant handed to the
//!    producer, per alert; percentiles over all of them.
//!
//! Environment: CCWATCH_TEST_BROKER (set by the script), BENCH_KAFKA_RECORDS
//! (default 1,000,000), BENCH_KAFKA_SECONDS (default 30), BENCH_KAFKA_RATE
//! (default 10000), BENCH_KAFKA_FILE_SINK (set: a file sink too, which
//! fsyncs before offsets are stored).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ccwatch() -> Command {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/ccwatch"))
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Consumer settings for ccwatch and for the plain consumer it is compared
/// with (one list, so "same settings" stays true): the bench's raised fetch
/// limits, then `BENCH_KAFKA_EXTRA` (`"key" = "value";…`).
fn consumer_props() -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = [
        ("fetch.max.bytes", "52428800"),
        ("queued.max.messages.kbytes", "262144"),
        ("max.partition.fetch.bytes", "8388608"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let extra = std::env::var("BENCH_KAFKA_EXTRA").unwrap_or_default();
    for kv in extra.split(';').filter(|kv| !kv.trim().is_empty()) {
        let (k, v) = kv.split_once('=').expect("BENCH_KAFKA_EXTRA: \"key\" = \"value\";…");
        props.push((k.trim().trim_matches('"').to_string(), v.trim().trim_matches('"').to_string()));
    }
    props
}

fn config(dir: &Path, bootstrap: &str, prefix: &str, port: u16) -> PathBuf {
    let path = dir.join(format!("{prefix}.toml"));
    let props: String = consumer_props().iter().map(|(k, v)| format!("{k:?} = {v:?}\n")).collect();
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{prefix}-group"
login_topic = "{prefix}.logins"
audit_topic = "{prefix}.audit"
statistics_interval_ms = 1000
[kafka.consumer_properties]
{props}[metrics]
listen = "127.0.0.1:{port}"
[[sinks]]
type = "kafka"
name = "alerts-topic"
topic = "{prefix}.alerts"
"#
    );
    // BENCH_KAFKA_FILE_SINK=1: a file sink beside the topic, to measure what
    // its write + fsync before every offset store costs.
    let text = if std::env::var("BENCH_KAFKA_FILE_SINK").is_ok() {
        format!(
            "{text}[[sinks]]\ntype = \"file\"\nname = \"file\"\npath = \"{}\"\n",
            dir.join(format!("{prefix}.alerts.jsonl")).display()
        )
    } else {
        text
    };
    std::fs::write(&path, text).unwrap();
    path
}

fn scrape(port: u16, series: &str) -> f64 {
    let Ok(body) = reqwest::blocking_get(port) else { return f64::NAN };
    body.lines().filter(|l| l.starts_with(series)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

mod reqwest {
    /// A minimal blocking GET of /metrics (no extra client dependency for the bench).
    pub fn blocking_get(port: u16) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }
}

fn scrape_ready(port: u16) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return 0 };
    let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The upper bound of the bucket holding quantile `q` of a Prometheus histogram.
fn histogram_quantile(port: u16, name: &str, q: f64) -> f64 {
    let body = reqwest::blocking_get(port).unwrap_or_default();
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = body
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (le, rest) = l.split_once('"')?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    buckets.iter().find(|(_, c)| *c >= q * total).map(|b| b.0).unwrap_or(f64::NAN)
}

fn create_topics(bootstrap: &str, topics: &[(String, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let new: Vec<NewTopic> = topics.iter().map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1))).collect();
    for r in rt.block_on(admin.create_topics(&new, &AdminOptions::new())).unwrap() {
        r.expect("topic created");
    }
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let n = env_num("BENCH_KAFKA_RECORDS", 1_000_000);
    let seconds = env_num("BENCH_KAFKA_SECONDS", 30);
    let rate = env_num("BENCH_KAFKA_RATE", 10_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join(format!("bench-data/kafka-{n}"));
    if !data.join("logins.jsonl").exists() {
        run_ok(ccwatch().args(["generate", "--events", &n.to_string(), "--out"]).arg(&data));
    }
    let mut report = String::new();
    if let Ok(bootstrap) = std::env::var("CCWATCH_TEST_BROKER") {
        let create = |t: &str, p: i32| create_topics(&bootstrap, &[(t.to_string(), p)]);
        let storage = std::env::var("CCWATCH_TEST_BROKER_STORAGE").unwrap_or_else(|_| "unknown".into());
        report += &bench(
            &bootstrap,
            &format!("Tansu 0.6.0 ({storage} storage), separate process"),
            &create,
            Some(n),
            seconds,
            rate,
            &data,
        );
    }
    // The same run against librdkafka's mock broker (also a TCP Kafka-protocol
    // broker, hosted in this bench process), to separate ccwatch's cost from Tansu's.
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let create = |t: &str, p: i32| cluster.create_topic(t, p, 1).unwrap();
    // Latency only: the mock broker does not retain a 1 GB preloaded topic.
    report += &bench(&bootstrap, "librdkafka mock broker (in the bench process)", &create, None, seconds, rate, &data);
    println!("{report}");
}

#[allow(clippy::too_many_arguments)]
fn bench(
    bootstrap: &str,
    broker: &str,
    create: &dyn Fn(&str, i32),
    throughput_records: Option<u64>,
    seconds: u64,
    rate: u64,
    data: &Path,
) -> String {
    let bootstrap = bootstrap.to_string();
    let work = tempfile::tempdir().unwrap();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();

    let mut out: Vec<u8> = Vec::new();
    let _ = writeln!(out, "\n## bench-kafka: {broker}, {bootstrap}");
    if let Some(n) = throughput_records.filter(|_| std::env::var("BENCH_KAFKA_SKIP_THROUGHPUT").is_err()) {
        let line = throughput(&bootstrap, create, n, data, work.path(), stamp);
        let _ = writeln!(out, "{line}");
    }
    if std::env::var("BENCH_KAFKA_SKIP_LATENCY").is_ok() {
        return String::from_utf8(out).unwrap();
    }
    // ---- 2. Latency at a fixed rate.
    let prefix = format!("bench-lat-{stamp}");
    create(&format!("{prefix}.logins"), 2);
    create(&format!("{prefix}.audit"), 1);
    create(&format!("{prefix}.alerts"), 1);
    run_ok(
        ccwatch()
            .args(["produce", "--brokers", &bootstrap, "--topic"])
            .arg(format!("{prefix}.audit"))
            .arg(data.join("users.json")),
    );
    let port = free_port();
    let cfg = config(work.path(), &bootstrap, &prefix, port);
    let child =
        ccwatch().args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
    let ready_deadline = Instant::now() + Duration::from_secs(60);
    // Ready = login partitions assigned and the audit topic read to its end.
    while scrape_ready(port) != 200 {
        assert!(Instant::now() < ready_deadline, "ccwatch never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let done = Arc::new(AtomicBool::new(false));
    // Alerts read back from the alerts topic, keyed by the grant's source IP.
    let alerts_reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("{prefix}.alerts-reader"))
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&format!("{prefix}.alerts"), 0, Offset::Beginning).unwrap();
    alerts_reader.assign(&tpl).unwrap();
    let (reader, latencies) = time_arrivals(alerts_reader, sent.clone(), done.clone(), |p| {
        let v: serde_json::Value = serde_json::from_slice(p).unwrap_or_default();
        v["source_ip"].as_str().map(str::to_string)
    });
    // The same grants read straight from the login topic by a plain consumer:
    // what the broker alone costs, for comparison.
    let login_reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("{prefix}.logins-baseline"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    login_reader.subscribe(&[&format!("{prefix}.logins")]).unwrap();
    let (base_reader, baseline) = time_arrivals(login_reader, sent.clone(), done.clone(), |p| {
        if !p.windows(6).any(|w| w == b"bench-") {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(p).unwrap_or_default();
        v["SourceIp"].as_str().map(str::to_string)
    });
    std::thread::sleep(Duration::from_secs(5)); // let the baseline consumer join its group
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", std::env::var("BENCH_KAFKA_LINGER_MS").unwrap_or_else(|_| "20".into()))
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let template = std::fs::read_to_string(data.join("logins.jsonl")).unwrap();
    let ui_line = template.lines().find(|l| l.contains("\"UI Username-Password\"")).unwrap().to_string();
    let topic = format!("{prefix}.logins");
    let start = Instant::now();
    let mut i: u64 = 0;
    let total = rate * seconds;
    let mut grants = 0u64;
    while i < total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
        let (value, ip) = if i.is_multiple_of(100) {
            grants += 1;
            let ip = format!("10.{}.{}.{}", (grants >> 16) & 255, (grants >> 8) & 255, grants & 255);
            let v = format!(
                r#"{{"attributes":{{"type":"LoginEvent"}},"EventDate":"{ts}","EventIdentifier":"bench-{i}","Application":"Bench App","LoginType":"Remote Access 2.0","LoginSubType":"OAuth Client Credentials","SourceIp":"{ip}","Status":"Success","UserId":"005Ix0000000018IAA","Username":"integration18@acme.example"}}"#
            );
            (v, Some(ip))
        } else {
            let v = ui_line.replacen("2024-07-01T00:00:17.400+0000", &ts, 1);
            (v, None)
        };
        let key = format!("u{}", i % 64);
        if let Some(ip) = &ip {
            sent.lock().unwrap().insert(ip.clone(), Instant::now());
        }
        loop {
            match producer.send(BaseRecord::to(&topic).key(&key).payload(&value)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        producer.poll(Duration::ZERO);
        i += 1;
    }
    let achieved = total as f64 / start.elapsed().as_secs_f64();
    let _ = producer.flush(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(5));
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    base_reader.join().unwrap();
    let mut base = baseline.lock().unwrap().clone();
    base.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let processing_p99 = histogram_quantile(port, "ccwatch_processing_latency_seconds", 0.99) * 1000.0;
    let processing_p50 = histogram_quantile(port, "ccwatch_processing_latency_seconds", 0.50) * 1000.0;
    let own_e2e_p99 = histogram_quantile(port, "ccwatch_end_to_end_latency_seconds", 0.99) * 1000.0;
    stop(child);
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());

    let _ = writeln!(
        out,
        "latency: {total} records at {achieved:.0}/s for {seconds} s; {} of {grants} alerts read back",
        lat.len()
    );
    let _ = writeln!(
        out,
        "  end-to-end (grant produced -> alert read from the alerts topic): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        out,
        "  broker alone (grant produced -> read from the login topic by a plain consumer): p50 {:.1} ms, p99 {:.1} ms ({} samples)",
        percentile(&base, 0.50),
        percentile(&base, 0.99),
        base.len()
    );
    let _ = writeln!(
        out,
        "  ccwatch's own histograms (bucket upper bounds): processing (received -> offset stored) p50 <= {processing_p50:.1} ms, p99 <= {processing_p99:.1} ms; event time -> alert delivered p99 <= {own_e2e_p99:.0} ms"
    );
    String::from_utf8(out).unwrap()
}

/// Polls `c` on a thread until `done`; for each message whose `ip_of` is a
/// grant in `sent`, records how long after sending it arrived (ms).
fn time_arrivals(
    c: BaseConsumer,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    done: Arc<AtomicBool>,
    ip_of: fn(&[u8]) -> Option<String>,
) -> (std::thread::JoinHandle<()>, Arc<Mutex<Vec<f64>>>) {
    let out: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let samples = out.clone();
    let thread = std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                let now = Instant::now();
                let Some(ip) = ip_of(m.payload().unwrap_or_default()) else { continue };
                if let Some(t) = sent.lock().unwrap().get(&ip).copied() {
                    samples.lock().unwrap().push(now.duration_since(t).as_secs_f64() * 1000.0);
                }
            }
        }
    });
    (thread, out)
}

/// Phase 1: sustained records/s over a preloaded topic.
fn throughput(bootstrap: &str, create: &dyn Fn(&str, i32), n: u64, data: &Path, work: &Path, stamp: u128) -> String {
    let bootstrap = bootstrap.to_string();
    let prefix = format!("bench-{stamp}");
    create(&format!("{prefix}.logins"), 2);
    create(&format!("{prefix}.audit"), 1);
    create(&format!("{prefix}.alerts"), 1);
    let t0 = Instant::now();
    run_ok(
        ccwatch()
            .args(["produce", "--brokers", &bootstrap, "--keep-order", "--topic"])
            .arg(format!("{prefix}.logins"))
            .arg(data.join("logins.jsonl")),
    );
    let produce_secs = t0.elapsed().as_secs_f64();
    run_ok(ccwatch().args(["produce", "--brokers", &bootstrap, "--topic"]).arg(format!("{prefix}.audit")).args([
        data.join("users.json"),
        data.join("psa.json"),
        data.join("audit.jsonl"),
    ]));
    let port = free_port();
    let cfg = config(work, &bootstrap, &prefix, port);
    let child =
        ccwatch().args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
    let pid = child.id();
    let login_series = format!("ccwatch_records_consumed_total{{kind=\"login_event\",topic=\"{prefix}.logins\"}}");
    let mut first: Option<(Instant, f64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = (Instant::now(), 0.0);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let v = scrape(port, &login_series);
        if v.is_finite() && v > 0.0 && first.is_none() {
            first = Some((Instant::now(), v));
        }
        if v.is_finite() {
            last = (Instant::now(), v);
        }
        if v >= n as f64 || Instant::now() > deadline {
            break;
        }
    }
    let hwm = vm_hwm_kb(pid);
    let alerts = scrape(port, "ccwatch_sink_deliveries_total{sink=\"alerts-topic\"}");
    stop(child);
    let (t_first, v_first) = first.expect("ccwatch consumed nothing");
    let secs = last.0.duration_since(t_first).as_secs_f64();
    let throughput = (last.1 - v_first) / secs;

    let (plain_n, plain_secs) = plain_consume(&bootstrap, &format!("{prefix}.logins"), n);
    format!(
        "throughput: {n} preloaded login records (2 partitions), produce took {produce_secs:.1} s\n  ccwatch consumed {:.0} records in {secs:.2} s = {throughput:.0} records/s; {alerts} alert lines to the alerts topic; peak RSS {} MB\n  broker alone (a plain consumer, same consumer settings, reads the topic and does nothing else): {plain_n} records in {plain_secs:.2} s = {:.0} records/s",
        last.1 - v_first,
        hwm / 1024,
        plain_n as f64 / plain_secs
    )
}

/// What the broker alone delivers: a plain consumer with ccwatch's consumer
/// settings reads the preloaded topic (its own group, from the beginning) and
/// only counts. Timed from the first record to the last, like ccwatch.
fn plain_consume(bootstrap: &str, topic: &str, n: u64) -> (u64, f64) {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-plain"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // ccwatch's own default for its consumers.
        .set("fetch.wait.max.ms", "10");
    for (k, v) in consumer_props() {
        cfg.set(k, v);
    }
    let c: BaseConsumer = cfg.create().unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut count = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    while count < n && Instant::now() < deadline {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            last = Instant::now();
            first.get_or_insert(last);
            count += 1;
        }
    }
    (count, first.map(|f| last.duration_since(f).as_secs_f64()).unwrap_or(f64::NAN))
}
