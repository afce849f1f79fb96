//! A real Prometheus server (the distribution's package, installed by
//! scripts/test-tools.sh) scrapes `ccwatch demo` under a job name that is not
//! "ccwatch", loads deploy/ccwatch-rules.yml, and answers every dashboard and
//! rule expression through its HTTP API. The test fails on any query error,
//! on an expression that names a metric no target has, and on the
//! "Critical alerts (24h)" stat or the paging rule missing the demo's
//! critical alerts.

#![cfg(feature = "external-tool-tests")]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PromQL query through the HTTP API: the result, or the API's error.
async fn query(prom: &str, q: &str) -> Result<Vec<serde_json::Value>, String> {
    let r = reqwest::Client::new().get(format!("{prom}/api/v1/query")).query(&[("query", q)]).send().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn value(result: &[serde_json::Value]) -> f64 {
    result.iter().map(|r| r["value"][1].as_str().unwrap().parse::<f64>().unwrap()).sum()
}

/// Every expression of the dashboard, its template variables resolved as
/// Grafana would for "All" and a 1 s scrape interval.
fn dashboard_exprs() -> Vec<(String, String)> {
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("dashboards/ccwatch.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().unwrap();
            let e = e.replace("$job", ".+").replace("$instance", ".+").replace("$__rate_interval", "15s");
            out.push((p["title"].as_str().unwrap().to_string(), e));
        }
    }
    out
}

/// Every rule expression of deploy/ccwatch-rules.yml (a small YAML reader:
/// `expr:` either inline or as a `|` block).
fn rule_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/ccwatch-rules.yml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut name = String::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if let Some(n) = t.strip_prefix("- alert: ") {
            name = n.to_string();
        } else if let Some(e) = t.strip_prefix("expr: ") {
            let indent = l.len() - t.len();
            let e = if e.trim() == "|" {
                lines[i + 1..]
                    .iter()
                    .take_while(|x| x.len() - x.trim_start().len() > indent || x.trim().is_empty())
                    .map(|x| x.trim())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                e.to_string()
            };
            out.push((name.clone(), e));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_dashboard_and_rule_expression_and_sees_the_first_critical_alerts() {
    let prometheus = std::env::var("CCWATCH_TEST_PROMETHEUS")
        .expect("CCWATCH_TEST_PROMETHEUS is not set: run `make test` (scripts/test-tools.sh installs Prometheus)");
    let dir = tempfile::tempdir().unwrap();
    let (metrics_port, prom_port) = (free_port(), free_port());
    std::fs::copy(root().join("deploy/ccwatch-rules.yml"), dir.path().join("ccwatch-rules.yml")).unwrap();
    // A job name other than "ccwatch": nothing may depend on it.
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [ccwatch-rules.yml]\n\
             scrape_configs:\n  - job_name: soc-detectors\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus"),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let up = loop {
        let ready = reqwest::get(format!("{prom}/-/ready")).await.map(|r| r.status().is_success()).unwrap_or(false);
        if ready || Instant::now() >= deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        up,
        "prometheus did not become ready: {}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap()
    );

    let demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_ccwatch"))
            .current_dir(root())
            .args(["demo", "--config", "ccwatch.toml", "--listen", &format!("127.0.0.1:{metrics_port}")])
            .stdout(std::fs::File::create(dir.path().join("alerts.jsonl")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("demo.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    // The demo's own count of critical alerts, once it has processed everything.
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let mut critical = 0.0;
    let mut steady_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(&metrics_url).await {
            let text = r.text().await.unwrap_or_default();
            let now: f64 = text
                .lines()
                .filter(|l| l.starts_with("ccwatch_alerts_raised_total{") && l.contains("severity=\"critical\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            if now != critical {
                (critical, steady_since) = (now, Instant::now());
            }
            let caught_up = common::metric(&text, "ccwatch_audit_caught_up") == 1.0;
            if critical > 0.0 && caught_up && steady_since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        critical > 0.0,
        "the demo raised no critical alert: {}",
        std::fs::read_to_string(dir.path().join("demo.log")).unwrap()
    );

    // Prometheus has scraped the final count.
    let stat = &dashboard_exprs().into_iter().find(|(t, _)| t == "Critical alerts (24h)").unwrap().1;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0.0;
    while Instant::now() < deadline {
        seen = value(&query(&prom, stat).await.unwrap());
        if seen == critical {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(seen, critical, "the Critical alerts (24h) stat shows {seen} after {critical} critical alerts");

    // Every expression evaluates, and each metric it names exists.
    let mut failures = Vec::new();
    let all: Vec<(String, String)> = dashboard_exprs().into_iter().chain(rule_exprs()).collect();
    assert!(all.len() >= 40, "{} expressions", all.len());
    for (title, e) in &all {
        if let Err(err) = query(&prom, e).await {
            failures.push(format!("{title}: {e}: {err}"));
        }
    }
    let mut names: Vec<String> = all
        .iter()
        .flat_map(|(_, e)| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("ccwatch_") || w.starts_with("process_"))
                .map(|w| w.trim_end_matches("_bucket").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    for n in &names {
        let series = if n.ends_with("_seconds") && n.contains("latency") { format!("{n}_bucket") } else { n.clone() };
        if query(&prom, &format!("count({series})")).await.map(|r| r.is_empty()).unwrap_or(true) {
            failures.push(format!("no series of {series} (it must be exported from start-up)"));
        }
    }
    assert!(failures.is_empty(), "{} failing expressions:\n{}", failures.len(), failures.join("\n"));

    // The dashboard's template variables find the instance under its job.
    let r = reqwest::Client::new()
        .get(format!("{prom}/api/v1/label/job/values"))
        .query(&[("match[]", "ccwatch_build_info")])
        .send()
        .await
        .unwrap();
    let r: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(r["data"], serde_json::json!(["soc-detectors"]));

    // The paging rule fired for the demo's first critical alerts.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut firing = Vec::new();
    while Instant::now() < deadline {
        firing = query(&prom, "ALERTS{alertname=\"CcwatchCriticalAlert\",alertstate=\"firing\"}").await.unwrap();
        if !firing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!firing.is_empty(), "CcwatchCriticalAlert did not fire after {critical} critical alerts");
    assert_eq!(firing[0]["metric"]["job"], "soc-detectors");
    // Health rules stay quiet on a healthy instance.
    let noisy =
        query(&prom, "ALERTS{alertname=~\"CcwatchAbsent|CcwatchTargetDown|CcwatchNotReady|CcwatchSinkFailing\"}")
            .await
            .unwrap();
    assert!(noisy.is_empty(), "health alerts on a healthy demo: {noisy:?}");
    drop(demo);
}
