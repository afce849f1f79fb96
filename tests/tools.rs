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
