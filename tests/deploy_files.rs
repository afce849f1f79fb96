//! The shipped operations files stay true to the code: the production config
//! example validates, and every metric the Grafana dashboard and the
//! Prometheus rules query is one ccwatch exports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exported() -> BTreeSet<String> {
    let src = include_str!("../src/telemetry/metrics.rs");
    let mut names = BTreeSet::new();
    for part in src.split('"').filter(|p| p.starts_with("ccwatch_") && !p.contains(' ')) {
        names.insert(part.to_string());
        for suffix in ["_bucket", "_count", "_sum"] {
            names.insert(format!("{part}{suffix}"));
        }
    }
    names
}

fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("ccwatch_") {
        let start = i + pos;
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        out.insert(text[start..end].to_string());
        i = end;
    }
    out
}

#[test]
fn dashboard_and_rules_query_only_exported_metrics() {
    let exported = exported();
    assert!(exported.contains("ccwatch_records_consumed_total") && exported.len() > 60);
    for file in ["dashboards/ccwatch.json", "deploy/ccwatch-rules.yml"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let used = referenced(&text);
        assert!(used.len() >= 5, "{file} queries too little");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(unknown.is_empty(), "{file} queries metrics ccwatch does not export: {unknown:?}");
    }
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("dashboards/ccwatch.json")).unwrap()).unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 10);
}

#[test]
fn production_config_example_validates_and_its_secrets_come_from_env() {
    let out = Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .current_dir(root())
        .args(["check-config", "deploy/ccwatch.toml"])
        .env("CCWATCH_SASL_PASSWORD", "s3cret-value")
        .env("CCWATCH_SLACK_WEBHOOK", "https://hooks.example/T000/B000/XXXX")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the variables: one line naming both, and no secret echoed.
    let out = Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .current_dir(root())
        .args(["check-config", "deploy/ccwatch.toml"])
        .env_remove("CCWATCH_SASL_PASSWORD")
        .env_remove("CCWATCH_SLACK_WEBHOOK")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("CCWATCH_SASL_PASSWORD") && err.contains("CCWATCH_SLACK_WEBHOOK"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// `ccwatch check-config` on a file holding `text`: whether it passed, and stderr.
fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ccwatch")).args(["check-config"]).arg(&cfg).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_kind_of_secret_property_is_refused_in_any_case() {
    for key in [
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.oauthbearer.config",
        "SSL.KEY.PASSWORD",
        "ssl.key.pem",
        "sasl.oauthbearer.client.secret",
        "Ssl.Keystore.Password",
    ] {
        let (ok, err) = check_config(&format!(
            "[kafka]\nbootstrap_servers = \"h:9092\"\nlogin_topic = \"l\"\n[kafka.consumer_properties]\n\"{key}\" = \"hunter2\"\n"
        ));
        assert!(!ok && err.contains("secret_properties"), "{key}: {err}");
        assert!(!err.contains("hunter2"), "the secret was echoed: {err}");
    }
}

#[test]
fn secrets_in_plain_properties_are_refused() {
    let (ok, err) = check_config(
        "[kafka]\nbootstrap_servers = \"h:9092\"\nlogin_topic = \"l\"\n[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n",
    );
    assert!(!ok && err.contains("secret_properties"), "{err}");
    assert!(!err.contains("hunter2"), "the secret was echoed: {err}");
}

/// Every rebalance makes ccwatch forget and rebuild its correlation state;
/// under the cooperative protocol an instance keeps some partitions through a
/// rebalance and would lose their state, so the setting is refused.
#[test]
fn a_cooperative_assignment_strategy_is_refused() {
    for (table, strategy, ok) in [
        ("consumer_properties", "cooperative-sticky", false),
        ("properties", "cooperative-sticky", false),
        ("consumer_properties", "range,roundrobin", true),
    ] {
        let (accepted, err) = check_config(&format!(
            "[kafka]\nbootstrap_servers = \"h:9092\"\nlogin_topic = \"l\"\n[kafka.{table}]\n\"partition.assignment.strategy\" = \"{strategy}\"\n"
        ));
        assert_eq!(accepted, ok, "{table} {strategy}: {err}");
        if !ok {
            assert!(err.contains("eager protocol") && err.trim_end().lines().count() == 1, "{err}");
        }
    }
}

/// Every rule's runbook_url points at a section of docs/operations.md that
/// exists, and every exported metric is explained there.
#[test]
fn runbooks_and_metric_meanings_are_in_the_operations_doc() {
    let ops = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let anchors: BTreeSet<String> = ops
        .lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .map(|h| h.trim().to_lowercase().replace(' ', "-"))
        .collect();
    let rules = std::fs::read_to_string(root().join("deploy/ccwatch-rules.yml")).unwrap();
    let mut urls = 0;
    for l in rules.lines() {
        if let Some(url) = l.trim().strip_prefix("runbook_url: ") {
            let anchor = url.trim_matches('"').strip_prefix("docs/operations.md#").expect(url);
            assert!(anchors.contains(anchor), "{url}: no such section in docs/operations.md");
            urls += 1;
        }
    }
    let alerts = rules.lines().filter(|l| l.trim().starts_with("- alert: ")).count();
    assert_eq!(urls, alerts, "every rule needs a runbook_url");
    let names = exported();
    let metrics = names
        .iter()
        .filter(|m| m.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .filter(|m| !m.ends_with("_bucket") && !m.ends_with("_count") && !m.ends_with("_sum"));
    for m in metrics {
        assert!(ops.contains(&format!("`{m}")), "docs/operations.md does not explain {m}");
    }
}
