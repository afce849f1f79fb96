//! The shipped operations files, checked by the tools that consume them:
//! Prometheus rules by `promtool` (their unit tests included), the systemd
//! unit by `systemd-analyze verify`, the Kubernetes manifests against
//! Kubernetes' schemas, the compose file against the config keys, and the
//! OCSF alerts against the official OCSF schema and Prowler's models. The
//! tools are installed by scripts/test-tools.sh, which `make test` runs.

#![cfg(feature = "external-tool-tests")]

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run `make test` (scripts/test-tools.sh)"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn promtool_passes_the_rule_unit_tests_and_checks_the_config() {
    let promtool = tool("CCWATCH_TEST_PROMTOOL");
    let text = run(Command::new(&promtool).current_dir(root().join("deploy")).args([
        "test",
        "rules",
        "ccwatch-rules.test.yml",
    ]));
    assert!(text.contains("SUCCESS"), "{text}");
    run(Command::new(&promtool).current_dir(root().join("deploy")).args(["check", "config", "prometheus.yml"]));
    // Every rule has a unit test.
    let rules = std::fs::read_to_string(root().join("deploy/ccwatch-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(root().join("deploy/ccwatch-rules.test.yml")).unwrap();
    let names: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert!(names.len() >= 10);
    for n in names {
        assert!(tests.contains(&format!("alertname: {n}\n")), "no promtool test for {n}");
    }
}

/// The sample archive's alerts, every line of every kind, in `format`.
fn sample_alerts(format: &str, dir: &std::path::Path) -> PathBuf {
    let out = dir.join(format!("alerts.{format}.jsonl"));
    run(Command::new(env!("CARGO_BIN_EXE_ccwatch")).current_dir(root()).args([
        "replay",
        "--no-progress",
        "--format",
        format,
        "--output",
        out.to_str().unwrap(),
        "--config",
        "ccwatch.toml",
        "--inventory",
        "samples/inventory/users.json",
        "--inventory",
        "samples/inventory/permission-set-assignments.json",
        "samples/audit",
        "samples/logins",
        "samples/elf",
        "samples/activity",
    ]));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().count() >= 10, "{text}");
    for action in ["raised", "closed"] {
        // Native `action`, OCSF `unmapped.action`, ECS `event.action` (the samples raise no
        // alert whose score rises: the encoder's unit tests cover `updated`).
        assert!(text.contains(&format!("\"action\":\"{action}\"")), "no {action} line in the {format} sample alerts");
    }
    out
}

#[test]
fn ocsf_alerts_validate_against_the_official_schema_and_prowlers_models() {
    let python = tool("CCWATCH_TEST_PYTHON");
    let dir = tempfile::tempdir().unwrap();
    let file = sample_alerts("ocsf", dir.path());
    let text = run(Command::new(&python).arg(root().join("tests/validate_alerts.py")).arg("ocsf").arg(&file));
    assert!(text.contains("ocsf lines valid"), "{text}");
}

#[test]
fn ecs_alerts_use_only_ecs_fields_or_the_ccwatch_namespace() {
    let python = tool("CCWATCH_TEST_PYTHON");
    let fields = tool("CCWATCH_TEST_ECS_FIELDS");
    let dir = tempfile::tempdir().unwrap();
    let file = sample_alerts("ecs", dir.path());
    let text =
        run(Command::new(&python).arg(root().join("tests/validate_alerts.py")).arg("ecs").arg(&file).arg(&fields));
    assert!(text.contains("ecs lines valid"), "{text}");
}

/// The systemd unit passes `systemd-analyze verify` (its ExecStart pointed at
/// the binary just built, which the verifier requires to exist) and keeps its
/// hardening.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let analyze = tool("CCWATCH_TEST_SYSTEMD_ANALYZE");
    let unit = std::fs::read_to_string(root().join("deploy/systemd/ccwatch.service")).unwrap();
    for directive in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ccwatch.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/ccwatch", env!("CARGO_BIN_EXE_ccwatch"))).unwrap();
    let out = Command::new(&analyze).arg("verify").arg(&path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "systemd-analyze verify: {text}");
    assert!(!text.contains("ccwatch.service:"), "systemd-analyze verify warns: {text}");
}

/// Kubernetes manifests against Kubernetes' schemas, the compose stack, the
/// Dockerfile and logrotate against each other and the config keys
/// (tests/check_deploy.py says what exactly).
#[test]
fn the_kubernetes_manifests_compose_stack_dockerfile_and_logrotate_are_consistent() {
    let python = tool("CCWATCH_TEST_PYTHON");
    let text = run(Command::new(&python).arg(root().join("tests/check_deploy.py")).arg(env!("CARGO_BIN_EXE_ccwatch")));
    assert!(text.contains("deploy/ is consistent"), "{text}");
}
