//! End-to-end tests of `ccwatch replay` as a user runs it: the real binary on
//! the shipped samples and on damaged input.
//!
//! Golden files live in `tests/golden/`; after an intended change, regenerate
//! them with `UPDATE_GOLDEN=1 cargo test --test replay_cli` and review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ccwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccwatch")).current_dir(root()).args(args).output().unwrap()
}

const SAMPLE_ARGS: [&str; 9] = [
    "replay",
    "--inventory",
    "samples/inventory/users.json",
    "--inventory",
    "samples/inventory/permission-set-assignments.json",
    "--config",
    "ccwatch.toml",
    "samples/audit",
    "samples/logins",
];

fn sample_run(extra: &[&str]) -> Output {
    let mut args: Vec<&str> = SAMPLE_ARGS.to_vec();
    args.extend_from_slice(extra);
    args.push("samples/elf");
    args.push("samples/activity");
    let out = ccwatch(&args);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if expected != actual {
        for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
            if e != a {
                panic!("{name} differs at line {}:\nexpected: {e}\n  actual: {a}", i + 1);
            }
        }
        panic!("{name}: expected {} lines, got {}", expected.lines().count(), actual.lines().count());
    }
}

fn alerts(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The last line written for each alert id, in first-written order.
fn finals(lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut order: Vec<String> = Vec::new();
    let mut last = std::collections::HashMap::new();
    for l in lines {
        let id = l["alert_id"].as_str().unwrap().to_string();
        if !last.contains_key(&id) {
            order.push(id.clone());
        }
        last.insert(id, l.clone());
    }
    order.into_iter().map(|id| last.remove(&id).unwrap()).collect()
}

#[test]
fn golden_native_output_and_summary() {
    let out = sample_run(&[]);
    golden("samples.native.jsonl", &String::from_utf8(out.stdout).unwrap());
    golden("samples.summary.txt", &String::from_utf8(out.stderr).unwrap());
}

#[test]
fn golden_ocsf_and_ecs_output() {
    let ocsf = sample_run(&["--format", "ocsf"]);
    golden("samples.ocsf.jsonl", &String::from_utf8(ocsf.stdout.clone()).unwrap());
    let ecs = sample_run(&["--format", "ecs"]);
    golden("samples.ecs.jsonl", &String::from_utf8(ecs.stdout.clone()).unwrap());
    let native = alerts(&sample_run(&[]).stdout);
    let (ocsf, ecs) = (alerts(&ocsf.stdout), alerts(&ecs.stdout));
    assert_eq!((ocsf.len(), ecs.len()), (native.len(), native.len()));
    for ((n, o), e) in native.iter().zip(&ocsf).zip(&ecs) {
        assert_eq!(o["class_uid"], 2004);
        assert_eq!(o["finding_info"]["uid"], n["alert_id"]);
        assert_eq!(o["unmapped"]["factors"], n["factors"]);
        assert_eq!(o["evidences"][0]["src_endpoint"]["ip"], n["source_ip"]);
        assert_eq!(o["unmapped"]["action"], n["action"]);
        assert_eq!(e["event"]["action"], n["action"]);
        assert_eq!(e["source"]["ip"], n["source_ip"]);
        assert_eq!(o["count"], n["count"]);
        assert_eq!(e["event"]["id"], n["alert_id"]);
        assert_eq!(e["ccwatch"]["score"], n["score"]);
        assert_eq!(e["user"]["name"], n["username"]);
    }
}

#[test]
fn output_is_byte_identical_across_runs() {
    let a = sample_run(&[]);
    let b = sample_run(&[]);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stderr, b.stderr);
}

#[test]
fn sample_scenario_alerts_are_explained() {
    let lines = alerts(&sample_run(&[]).stdout);
    let finals = finals(&lines);
    let by = |user: &str, ip: &str| {
        finals
            .iter()
            .find(|a| a["username"] == user && a["source_ip"] == ip)
            .unwrap_or_else(|| panic!("no alert for {user} {ip}"))
            .clone()
    };
    // The attack: privileged, escalated, unrestricted, new IP, after a burst.
    let tor = by("marketing-sync@acme.example", "185.220.101.33");
    assert_eq!(tor["severity"], "critical");
    assert_eq!(tor["score"], 10.0);
    let ids: Vec<&str> = tor["factors"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "privileged_run_as_user",
            "recent_privilege_escalation",
            "no_ip_restriction",
            "new_source_ip",
            "flow_recently_enabled",
            "anonymizing_source_ip",
            "new_asn",
            "failed_grant_burst"
        ]
    );
    assert_eq!(tor["count"], 3, "two LoginEvent grants and one from the stream");
    // The control's low-risk case: inside the profile's login IP range.
    let etl = by("etl-integration@acme.example", "198.51.100.10");
    assert_eq!(etl["severity"], "medium");
    assert_eq!(etl["factors"][0]["id"], "ip_within_allowed_ranges");
    assert_eq!(etl["count"], 4, "LoginEvent and LoginHistory grants aggregate");
    // Outside the range.
    let leaked = by("etl-integration@acme.example", "192.0.2.77");
    assert_eq!(leaked["factors"][0]["id"], "ip_outside_allowed_ranges");
    // ELF grants carry the org from ORGANIZATION_ID; the failed ELF grant is not an alert.
    let elf = by("reporting-api@acme.example", "45.83.64.7");
    assert_eq!(elf["org_id"], "00D5j00000DgAYGEA3");
    assert_eq!(elf["count"], 2, "CSV and gzipped JSON rows");
    assert!(finals.iter().all(|a| a["source_ip"] != "198.18.0.9"));
    // The next day, after the permission set was removed: no longer privileged.
    let next_day = finals
        .iter()
        .find(|a| {
            a["username"] == "marketing-sync@acme.example"
                && a["first_seen"].as_str().unwrap().starts_with("2024-07-10")
        })
        .unwrap();
    assert_eq!(next_day["severity"], "high");
    // Set-up alerts are at least high.
    let enabled: Vec<_> = finals.iter().filter(|a| a["rule"] == "client_credentials_enabled").collect();
    assert_eq!(enabled.len(), 3);
    assert!(enabled.iter().all(|a| a["severity"] == "high" || a["severity"] == "critical"));
    // Every alert has the documented fields.
    for a in &finals {
        for k in [
            "alert_id",
            "rule",
            "severity",
            "score",
            "title",
            "org_id",
            "user_id",
            "username",
            "app",
            "source_ip",
            "first_seen",
            "last_seen",
            "count",
            "factors",
            "evidence",
            "mitre",
            "remediation",
        ] {
            assert!(a.get(k).is_some(), "missing {k} in {a}");
        }
    }
}

#[test]
fn repeated_grants_aggregate_and_last_line_has_final_count() {
    let lines = alerts(&sample_run(&[]).stdout);
    let grants: u64 = finals(&lines)
        .iter()
        .filter(|a| a["rule"] == "client_credentials_grant")
        .map(|a| a["count"].as_u64().unwrap())
        .sum();
    let summary = String::from_utf8(sample_run(&[]).stderr).unwrap();
    assert!(summary.contains("client_credentials_success=17"), "{summary}");
    assert_eq!(grants, 17, "every successful grant is counted in exactly one alert");
    // A score rise re-emits the same alert id.
    let ids: Vec<&str> = lines.iter().map(|l| l["alert_id"].as_str().unwrap()).collect();
    assert!(ids.len() > finals(&lines).len());
}

#[test]
fn records_are_processed_in_event_time_order_across_files() {
    // Shuffle the sorted login file: the reorder buffer restores event order,
    // so the final state of every alert is unchanged.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read(root().join("samples/logins/login-events.jsonl")).unwrap();
    let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    lines.reverse();
    let shuffled = dir.path().join("login-events.jsonl");
    std::fs::write(&shuffled, lines.join(&b'\n')).unwrap();
    let stream = root().join("samples/logins/login-event-stream.jsonl");
    let history = root().join("samples/logins/login-history.json");
    let run = |logins: &Path| {
        let out = ccwatch(&[
            "replay",
            "--inventory",
            "samples/inventory",
            "--config",
            "ccwatch.toml",
            "samples/elf",
            logins.to_str().unwrap(),
            stream.to_str().unwrap(),
            history.to_str().unwrap(),
            "samples/audit",
        ]);
        assert!(out.status.success());
        let mut f: Vec<String> = finals(&alerts(&out.stdout)).iter().map(|a| a.to_string()).collect();
        f.sort();
        f
    };
    assert_eq!(run(&shuffled), run(&root().join("samples/logins/login-events.jsonl")));
}

#[test]
fn rejects_are_counted_and_written_with_file_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let out = sample_run(&["--rejects", rejects.to_str().unwrap()]);
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(
        summary.contains("records rejected: bad_timestamp=1 invalid_json=2 missing_field=1 (total 4)"),
        "{summary}"
    );
    let recs: Vec<serde_json::Value> =
        std::fs::read_to_string(&rejects).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<(u64, &str)> =
        recs.iter().map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap())).collect();
    assert_eq!(got, [(29, "invalid_json"), (30, "missing_field"), (31, "bad_timestamp"), (32, "invalid_json")]);
    assert!(recs.iter().all(|r| r["file"] == "samples/logins/login-events.jsonl"));
    // The offending text comes along, so an analyst need not open the archive.
    assert!(recs[2]["excerpt"].as_str().unwrap().contains("last Tuesday"));
    assert!(recs[3]["excerpt"].as_str().unwrap().contains("binary garbage"));
}

#[test]
fn garbage_files_never_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("random.bin"), &garbage).unwrap();
    std::fs::write(dir.path().join("truncated.json"), b"{\"totalSize\":2,\"done\":true,\"records\":[{\"Id\":").unwrap();
    std::fs::write(dir.path().join("bad.csv"), b"\"EVENT_TYPE\",\"TIMESTAMP\",\"USER_ID\"\n\"Login\",\"2023\"\n\"Login\",\"20231218054831.655\",\"0055j00000AT6I1\",\"x\"\n").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"{\"EVENT_TYPE\":\"Login\"}\n").unwrap();
    let mut broken_gz = gz.finish().unwrap();
    broken_gz.truncate(broken_gz.len() - 6);
    std::fs::write(dir.path().join("broken.jsonl.gz"), &broken_gz).unwrap();
    let rejects = dir.path().join("rejects.jsonl");
    let out = ccwatch(&["replay", "--rejects", rejects.to_str().unwrap(), dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let summary = String::from_utf8(out.stderr).unwrap();
    for reason in ["invalid_json", "invalid_csv", "read_error"] {
        assert!(summary.contains(reason), "{reason} missing from {summary}");
    }
    let text = std::fs::read_to_string(&rejects).unwrap();
    assert!(text.contains("random.bin") && text.contains("truncated.json") && text.contains("bad.csv"));
}

#[test]
fn oversized_line_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = b"{\"EventDate\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 17 << 20));
    big.extend(b"\"}\n{\"foo\":1}\n");
    let f = dir.path().join("big.jsonl");
    std::fs::write(&f, big).unwrap();
    let rejects = dir.path().join("r.jsonl");
    let out = ccwatch(&["replay", "--rejects", rejects.to_str().unwrap(), f.to_str().unwrap()]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&rejects).unwrap();
    assert!(text.contains("\"line\":1,") && text.contains("record_too_large"), "{text}");
    assert!(text.contains("\"line\":2,") && text.contains("unknown_shape"), "{text}");
}

#[test]
fn unreadable_path_is_one_line_error_and_nonzero_exit() {
    let out = ccwatch(&["replay", "does/not/exist.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ccwatch: cannot read does/not/exist.jsonl"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let out = ccwatch(&["replay", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no input files"));
}

#[test]
fn invalid_config_is_one_line_error_and_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[scoring]\nmedium_from = 8\nhigh_from = 7\n[correlation]\nfailed_burst_threshold = 0\nbogus = 1\n",
    )
    .unwrap();
    let out = ccwatch(&["replay", "--config", cfg.to_str().unwrap(), "samples/logins"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bogus"), "{err}");
    std::fs::write(&cfg, "[scoring]\nmedium_from = 8\nhigh_from = 7\n[correlation]\nfailed_burst_threshold = 0\n")
        .unwrap();
    let out = ccwatch(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1);
    assert!(err.contains("bands") && err.contains("failed_burst_threshold"), "all problems at once: {err}");
    let out = ccwatch(&["check-config", "ccwatch.toml"]);
    assert!(out.status.success());
    let out = ccwatch(&["replay", "--config", "missing.toml", "samples/logins"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn since_and_until_window_logins_but_keep_audit_context() {
    let out = sample_run(&["--since", "2024-07-09T10:00:00Z", "--until", "2024-07-09T23:59:59Z"]);
    let finals = finals(&alerts(&out.stdout));
    assert!(finals.iter().all(|a| a["rule"] == "client_credentials_grant"), "set-up alerts are before --since");
    assert!(finals.iter().all(|a| a["first_seen"].as_str().unwrap() >= "2024-07-09T10:00:00"));
    assert!(finals.iter().all(|a| a["last_seen"].as_str().unwrap() < "2024-07-10"));
    // Audit records before --since still made the run-as user privileged.
    let tor = finals.iter().find(|a| a["source_ip"] == "185.220.101.33").unwrap();
    assert_eq!(tor["factors"][0]["id"], "privileged_run_as_user");
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(summary.contains("outside_time_window="), "{summary}");
    assert!(!summary.contains("outside_time_window=0"), "{summary}");
}

#[test]
fn output_file_option() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("alerts.jsonl");
    let out = sample_run(&["--output", f.to_str().unwrap()]);
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(&f).unwrap(), sample_run(&[]).stdout);
}

/// Files larger than the 1 MiB read chunk: records straddle chunk boundaries,
/// line numbers keep counting across chunks, CSV quotes may hide newlines.
#[test]
fn chunk_boundaries_keep_records_whole_and_lines_exact() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("samples/logins/login-events.jsonl")).unwrap();
    let good: Vec<&str> =
        base.lines().filter(|l| l.starts_with("{\"attributes\"") && l.contains("\"Username\"")).collect();
    // Past 17 MiB, so the plain file is read through three mapped segments
    // (8 MiB each) and the gzipped copy through the streaming reader.
    let mut jsonl = String::new();
    let mut n = 0u64;
    let mut late_broken = 0u64;
    while jsonl.len() < 17 << 20 {
        n += 1;
        if late_broken == 0 && jsonl.len() > (8 << 20) + (300 << 10) {
            late_broken = n;
        }
        if n == 2500 || n == late_broken {
            jsonl.push_str("{\"broken\": \n");
        } else {
            jsonl.push_str(good[(n as usize) % good.len()]);
            jsonl.push('\n');
        }
    }
    let big = dir.path().join("big.jsonl");
    std::fs::write(&big, &jsonl).unwrap();
    // The same file gzipped must give the same outcome.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, jsonl.as_bytes()).unwrap();
    let gz_path = dir.path().join("big2.jsonl.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();

    // A CSV whose quoted field holds a newline, repeated past several chunks.
    let header = "\"EVENT_TYPE\",\"TIMESTAMP\",\"USER_ID\",\"LOGIN_TYPE\",\"LOGIN_SUB_TYPE\",\"LOGIN_STATUS\",\"SOURCE_IP\",\"BROWSER_TYPE\"\n";
    let mut csv = String::from(header);
    let mut rows = 0u64;
    while csv.len() < 3 << 20 {
        rows += 1;
        csv.push_str(&format!(
            "\"Login\",\"20240709{:02}0000.000\",\"0055j00000Rpt01\",\"i\",\"oauthclientcredential\",\"LOGIN_NO_ERROR\",\"192.0.2.10\",\"line one\nline two {}\"\n",
            rows % 24,
            "x".repeat(200)
        ));
    }
    csv.push_str("\"Login\",\"not-a-time\",\"0055j00000Rpt01\",\"i\",\"\",\"LOGIN_NO_ERROR\",\"192.0.2.10\",\"b\"\n");
    let csv_path = dir.path().join("big.csv");
    std::fs::write(&csv_path, &csv).unwrap();

    // Mapped (the default) and read through the buffer (`--no-mmap`): the same outcome.
    for flags in [&[][..], &["--no-mmap"][..]] {
        let rejects = dir.path().join("r.jsonl");
        let mut args = vec!["replay", "--rejects", rejects.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.extend([big.to_str().unwrap(), gz_path.to_str().unwrap(), csv_path.to_str().unwrap()]);
        let out = ccwatch(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let summary = String::from_utf8(out.stderr).unwrap();
        let recs: Vec<serde_json::Value> =
            std::fs::read_to_string(&rejects).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let mut got: Vec<(String, u64, String)> = recs
            .iter()
            .map(|r| {
                let f = r["file"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
                (f, r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_string())
            })
            .collect();
        got.sort();
        // Each CSV row spans two lines; the bad row starts after the header and all good rows.
        let csv_bad_line = 2 + rows * 2;
        assert_eq!(
            got,
            [
                ("big.csv".to_string(), csv_bad_line, "bad_timestamp".to_string()),
                ("big.jsonl".to_string(), 2500, "invalid_json".to_string()),
                ("big.jsonl".to_string(), late_broken, "invalid_json".to_string()),
                ("big2.jsonl.gz".to_string(), 2500, "invalid_json".to_string()),
                ("big2.jsonl.gz".to_string(), late_broken, "invalid_json".to_string()),
            ],
            "{summary}"
        );
        let login_events = 2 * (n - 2);
        assert!(summary.contains(&format!("elf_login={rows} ")), "{summary}");
        assert!(summary.contains(&format!("login_event={login_events} ")), "{summary}");
    }
}

/// Records displaced further than the reorder buffer are still processed, and
/// counted as out of order; none is dropped.
#[test]
fn disorder_beyond_the_reorder_buffer_is_counted_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in (0..600).rev() {
        lines.push(format!(
            r#"{{"EventIdentifier":"e{i}","EventDate":"2024-07-09T{:02}:{:02}:00Z","UserId":"0055j00000Rpt01","Username":"r@x","LoginType":"Remote Access 2.0","LoginSubType":"OAuth Client Credentials","Status":"Success","SourceIp":"192.0.2.10","Application":"R"}}"#,
            i / 60,
            i % 60
        ));
    }
    let f = dir.path().join("desc.jsonl");
    std::fs::write(&f, lines.join("\n")).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[replay]\nreorder_buffer = 1\n").unwrap();
    let out = ccwatch(&["replay", "--config", cfg.to_str().unwrap(), f.to_str().unwrap()]);
    assert!(out.status.success());
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(!summary.contains("out_of_order=0 "), "{summary}");
    let total: u64 = finals(&alerts(&out.stdout)).iter().map(|a| a["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 600, "every grant is counted");
    // With a buffer larger than the file the same input is fully ordered.
    std::fs::write(&cfg, "[replay]\nreorder_buffer = 100000\n").unwrap();
    let out = ccwatch(&["replay", "--config", cfg.to_str().unwrap(), f.to_str().unwrap()]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("out_of_order=0 "));
}

/// SIGTERM (what a job runner sends) and SIGINT both end a replay cleanly:
/// open alerts closed, output flushed, summary printed, exit 0. The last
/// input is a FIFO whose writer stays open, so the replay is certainly still
/// running when the signal arrives; closing the writer afterwards lets it end.
#[test]
fn sigterm_and_sigint_end_a_replay_cleanly() {
    for sig in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("live.jsonl");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let mut child = Command::new(env!("CARGO_BIN_EXE_ccwatch"))
            .current_dir(root())
            .args(SAMPLE_ARGS)
            .arg("--no-progress")
            .arg(&fifo)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Opening for writing waits for ccwatch to open the FIFO; holding it
        // open keeps the replay waiting for more input.
        let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        assert!(child.try_wait().unwrap().is_none(), "replay ended before the signal");
        assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(writer);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{sig}: {:?} {stderr}", out.status);
        assert!(stderr.contains("Interrupted; closing open alerts"), "{sig}: {stderr}");
        assert!(stderr.contains("ccwatch replay summary:"), "{sig}: the summary is printed: {stderr}");
    }
}

/// `name=N` from a summary line, or 0.
fn count(summary: &str, name: &str) -> u64 {
    summary
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `ccwatch replay --no-progress PATH`, its stdout and stderr piped.
fn spawn_replay(path: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .args(["replay", "--no-progress"])
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo failed");
}

/// Waits for `child` to exit within `secs`; kills it and fails otherwise.
fn exits_within(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ccwatch did not exit within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A FIFO inside a directory is set aside with its reason; the walk does not
/// open it (which would wait for a writer forever).
#[test]
fn a_fifo_in_a_directory_is_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("samples/logins/login-events.jsonl"), dir.path().join("a.jsonl")).unwrap();
    mkfifo(&dir.path().join("b.fifo"));
    let mut child = spawn_replay(dir.path());
    let status = exits_within(&mut child, 20);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{stderr}");
    assert_eq!(count(&stderr, "not_a_regular_file"), 1, "{stderr}");
    assert!(count(&stderr, "login_event") > 0, "{stderr}");
}

/// SIGTERM ends a replay blocked on a FIFO that nobody writes: the summary is
/// printed and the exit is 0, as for any interrupted replay.
#[test]
fn sigterm_ends_a_replay_blocked_on_input() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.fifo");
    mkfifo(&fifo);
    let mut child = spawn_replay(&fifo);
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "still waiting for input");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = exits_within(&mut child, 10);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("ccwatch replay summary"), "{stderr}");
}

/// A gzip file cut short keeps every complete record decompressed before the
/// damage, and reports the damage once.
#[test]
fn a_truncated_gzip_keeps_every_complete_record_before_the_damage() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    // Enough records that the damage falls far past the first read.
    let line = std::fs::read_to_string(root().join("samples/logins/login-events.jsonl")).unwrap();
    let line = line.lines().find(|l| l.contains("OAuth Client Credentials")).unwrap().to_string();
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&line.replace("\"EventIdentifier\":\"", &format!("\"EventIdentifier\":\"{i}-")));
        text.push('\n');
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let full = gz.finish().unwrap();
    let cut = &full[..full.len() * 3 / 4];
    let path = dir.path().join("logins.jsonl.gz");
    std::fs::write(&path, cut).unwrap();
    // What can be recovered: every whole line before the decoder fails.
    let mut got = Vec::new();
    let mut d = flate2::read::MultiGzDecoder::new(cut);
    let mut buf = [0u8; 8192];
    loop {
        match d.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let whole = got.iter().filter(|b| **b == b'\n').count() as u64;
    assert!(whole > 1000, "the cut falls late in the file");
    let out = ccwatch(&["replay", "--no-progress", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(count(&stderr, "login_event"), whole, "{stderr}");
    assert_eq!(count(&stderr, "read_error"), 1, "{stderr}");
}

/// A JSON-lines file whose first two lines are damaged is still read as JSON
/// lines: the two are rejected, the rest decode.
#[test]
fn jsonl_with_bad_first_lines_is_still_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let sample = root().join("samples/logins/login-events.jsonl");
    let good = std::fs::read_to_string(&sample).unwrap();
    let intact = ccwatch(&["replay", "--no-progress", sample.to_str().unwrap()]);
    let intact = String::from_utf8_lossy(&intact.stderr);
    let path = dir.path().join("damaged.jsonl");
    std::fs::write(&path, format!("{{\"EventDate\": \"2024-07-09T1\n{{broken\n{good}")).unwrap();
    let out = ccwatch(&["replay", "--no-progress", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(count(&stderr, "invalid_json"), count(&intact, "invalid_json") + 2, "{stderr}");
    assert_eq!(count(&stderr, "login_event"), count(&intact, "login_event"), "{stderr}");
    assert!(count(&stderr, "login_event") > 20);
}

/// ELF rows whose header was lost get their own reason, per row.
#[test]
fn a_csv_without_its_header_is_rejected_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let elf = std::fs::read_dir(root().join("samples/elf"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "csv"))
        .unwrap();
    let text = std::fs::read_to_string(&elf).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
    let path = dir.path().join("rows.csv");
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    let out = ccwatch(&["replay", "--no-progress", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(count(&stderr, "csv_without_header"), rows.len() as u64, "{stderr}");
    assert_eq!(count(&stderr, "invalid_json"), 0, "{stderr}");
}

/// Post-grant activity is decoded from every form replay reads (ELF CSV by
/// header, RTEM records in JSON lines) and counted by kind in the summary.
#[test]
fn api_activity_is_decoded_and_counted_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    // The reference's illustrative ApiTotalUsage and BulkApi2 rows.
    std::fs::write(
        dir.path().join("ApiTotalUsage.csv"),
        "\"EVENT_TYPE\",\"TIMESTAMP\",\"REQUEST_ID\",\"ORGANIZATION_ID\",\"USER_ID\",\"API_FAMILY\",\"API_VERSION\",\"API_RESOURCE\",\"CLIENT_NAME\",\"HTTP_METHOD\",\"CLIENT_IP\",\"COUNTS_AGAINST_API_LIMIT\",\"CONNECTED_APP_ID\",\"ENTITY_NAME\",\"STATUS_CODE\",\"CONNECTED_APP_NAME\",\"USER_NAME\",\"TIMESTAMP_DERIVED\"\n\
         \"ApiTotalUsage\",\"20250817111156.004\",\"TID:0000000000a1b2c3d5\",\"00D5j00000DgAYG\",\"005J4000001AbCd\",\"REST\",\"58.0\",\"/v58.0/jobs/query\",\"\",\"POST\",\"208.68.36.90\",\"true\",\"0H45j000000AbCd\",\"Case\",\"200\",\"Drift\",\"drift-int@example.com\",\"2025-08-17T11:11:56.004Z\"\n\
         \"ApiTotalUsage\",\"20250817111542.118\",\"TID:0000000000a1b2c3d6\",\"00D5j00000DgAYG\",\"005J4000001AbCd\",\"REST\",\"58.0\",\"/v58.0/jobs/query/7505j00000AbCdE\",\"\",\"DELETE\",\"208.68.36.90\",\"true\",\"0H45j000000AbCd\",\"\",\"204\",\"Drift\",\"drift-int@example.com\",\"2025-08-17T11:15:42.118Z\"\n",
    )
    .unwrap();
    // The reference's illustrative BulkApi2 rows (§2.6): upload, completion, deletion.
    std::fs::copy(
        root().join("tests/fixtures/reference/elf_bulkapi2_illustrative.csv"),
        dir.path().join("BulkApi2.csv"),
    )
    .unwrap();
    let recon = ["Account", "Contact", "User"].map(|o| {
        format!(
            r#"{{"attributes":{{"type":"ApiEvent"}},"EventDate":"2025-08-14T00:17:47.120+0000","ApiType":"REST","Operation":"Query","Query":"SELECT COUNT() FROM {o}","QueriedEntities":"{o}","LoginKey":"Qv1P3iAGDrGQxSmN","SourceIp":"44.215.108.109","UserAgent":"Salesforce-Multi-Org-Fetcher/1.0","UserId":"005J4000001AbCdIAK"}}"#
        )
    });
    std::fs::write(
        dir.path().join("api-events.jsonl"),
        recon.join("\n") + "\n{\"attributes\":{\"type\":\"ApiEvent\"}}\n",
    )
    .unwrap();
    // The grant that minted the token, with the LoginKey the activity carries.
    std::fs::write(
        dir.path().join("grant.jsonl"),
        r#"{"attributes":{"type":"LoginEvent"},"EventIdentifier":"g1","EventDate":"2025-08-14T00:17:00.000+0000","UserId":"005J4000001AbCdIAK","Username":"drift-int@example.com","LoginType":"Remote Access 2.0","LoginSubType":"OAuth Client Credentials","Status":"Success","SourceIp":"44.215.108.109","Application":"Drift","LoginKey":"Qv1P3iAGDrGQxSmN"}
"#,
    )
    .unwrap();
    let out = ccwatch(&["replay", "--no-progress", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(count(&stderr, "elf_api_total_usage"), 2, "{stderr}");
    assert_eq!(count(&stderr, "elf_bulk_api2"), 3, "{stderr}");
    assert_eq!(count(&stderr, "api_event"), 3, "{stderr}");
    assert_eq!(count(&stderr, "missing_field"), 1, "the record without EventDate: {stderr}");
    // The three ApiEvents and the three BulkApi2 rows carry the grant's
    // LoginKey; ApiTotalUsage has no keys and another IP: unattributed, and
    // counted, since its user is a client-credentials run-as user.
    assert_eq!(count(&stderr, "key"), 6, "{stderr}");
    assert_eq!(count(&stderr, "tuple"), 0, "{stderr}");
    assert_eq!(count(&stderr, "unattributed"), 2, "{stderr}");
}

/// The samples' UNC6395-style incident: a grant from a new hosting ASN on an
/// IOC address, COUNT() reconnaissance with the IOC user agent, a Bulk API
/// 2.0 export of Case deleted 24 s after it completed. One data-access alert
/// follows the token through all of it; the nightly ETL's reads of Account,
/// Contact and Opportunity stay below every trigger and raise nothing.
#[test]
fn the_sample_incident_raises_one_data_access_alert_and_the_etl_none() {
    let lines = alerts(&sample_run(&[]).stdout);
    let finals = finals(&lines);
    let access: Vec<_> = finals.iter().filter(|a| a["rule"] == "client_credentials_data_access").collect();
    assert_eq!(access.len(), 1, "{access:?}");
    let a = access[0];
    assert_eq!(
        (a["username"].as_str(), a["app"].as_str()),
        (Some("marketing-sync@acme.example"), Some("Marketing Sync"))
    );
    assert_eq!(a["severity"], "critical");
    let ids: Vec<&str> = a["factors"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    for id in [
        "anonymizing_source_ip",
        "new_asn",
        "recon_query_pattern",
        "sensitive_objects",
        "bulk_export",
        "bulk_job_deleted_quickly",
        "high_row_volume",
        "ioc_user_agent",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let act = &a["activity"];
    assert_eq!(a["count"], 7, "four ApiEvents and three BulkApi2 rows");
    assert_eq!(act["rows"], 412_977 + 20, "the export and the LIMIT 20 sample; COUNT() reads none");
    assert_eq!((act["bulk_jobs_completed"].as_u64(), act["bulk_jobs_deleted"].as_u64()), (Some(1), Some(1)));
    assert_eq!(act["attribution"]["key"], 7);
    assert_eq!(act["sources"], serde_json::json!(["ApiEvent", "BulkApi2"]));
    assert_eq!(act["asns"], serde_json::json!(["AS14061 DIGITALOCEAN-ASN"]));
    let evidence = a["evidence"].as_array().unwrap();
    assert_eq!(evidence[0], "00005a17-0000-0000-0000-0000000c0a01", "the grant's event id first: {evidence:?}");
    assert_eq!(evidence.len(), 8, "the grant and the seven records");
    assert!(finals
        .iter()
        .all(|x| x["username"] != "etl-integration@acme.example" || x["rule"] != "client_credentials_data_access"));
}

/// Replays `input` fed on stdin, with `args` (the input named among them).
fn replay_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .current_dir(root())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

/// `-` is stdin as an input and stdout for `--output`; a pipe read as
/// `/dev/stdin` and a FIFO named on the command line give the same alerts as
/// the file itself, through the buffered path (they cannot be mapped or seeked).
#[test]
fn stdin_dev_stdin_a_fifo_and_dash_output_give_the_files_alerts() {
    let file = "samples/logins/login-events.jsonl";
    let bytes = std::fs::read(root().join(file)).unwrap();
    let expected = ccwatch(&["replay", "--no-progress", file]);
    assert!(expected.status.success());
    assert!(expected.stdout.len() > 100);

    let dash = replay_stdin(&["replay", "--no-progress", "--output", "-", "-"], &bytes);
    assert!(dash.status.success(), "{}", String::from_utf8_lossy(&dash.stderr));
    assert_eq!(dash.stdout, expected.stdout);
    assert!(!root().join("-").exists(), "`--output -` created a file named -");

    let dev = replay_stdin(&["replay", "--no-progress", "/dev/stdin"], &bytes);
    assert!(dev.status.success(), "{}", String::from_utf8_lossy(&dev.stderr));
    assert_eq!(dev.stdout, expected.stdout);

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.fifo");
    mkfifo(&fifo);
    let child = spawn_replay(&fifo);
    std::fs::write(&fifo, &bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, expected.stdout);
    // Gzip through a pipe too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    let zipped = replay_stdin(&["replay", "--no-progress", "-"], &gz.finish().unwrap());
    assert_eq!(zipped.stdout, expected.stdout);
}

/// `| head`: the reader goes away mid-stream. Replay stops there, prints its
/// summary, and exits 0 without a "Broken pipe" error.
#[test]
fn a_closed_output_pipe_ends_replay_quietly_with_exit_0_after_the_summary() {
    use std::io::{BufRead, BufReader};
    // Enough alert lines that replay is still writing when the reader leaves.
    let dir = tempfile::tempdir().unwrap();
    let gen = ccwatch(&["generate", "--out", dir.path().to_str().unwrap(), "--events", "200000"]);
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
    let mut child = spawn_replay(dir.path());
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"alert_id\""), "{first}");
    // The reader (and the pipe's read end) is dropped here.
    let status = exits_within(&mut child, 60);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "exit {status:?}: {err}");
    assert!(err.contains("ccwatch replay summary") && err.contains("closed by its reader"), "{err}");
    assert!(!err.to_lowercase().contains("broken pipe"), "{err}");
}

#[test]
fn an_invalid_log_filter_is_a_one_line_error_with_exit_2() {
    for (flag, env) in [(Some("foo=["), None), (None, Some("bar=["))] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccwatch"));
        cmd.current_dir(root()).env_remove("RUST_LOG");
        if let Some(f) = flag {
            cmd.args(["--log", f]);
        }
        if let Some(e) = env {
            cmd.env("RUST_LOG", e);
        }
        let out = cmd.args(["replay", "--no-progress", "samples/logins"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(if flag.is_some() { "--log" } else { "RUST_LOG" }), "{err}");
        assert!(out.stdout.is_empty());
    }
}

/// RUST_LOG is the filter when `--log` is not given; `--log` wins over it;
/// NO_COLOR (and a non-terminal) means no escape codes.
#[test]
fn rust_log_and_no_color_are_honoured() {
    let run = |log: Option<&str>, env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccwatch"));
        cmd.current_dir(root()).env("NO_COLOR", "1").env_remove("RUST_LOG");
        if let Some(e) = env {
            cmd.env("RUST_LOG", e);
        }
        if let Some(l) = log {
            cmd.args(["--log", l]);
        }
        let out = cmd.args(["replay", "--no-progress", "--output", "/dev/null", "samples/"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let debug = run(None, Some("debug"));
    assert!(debug.contains("DEBUG") || debug.contains("INFO"), "RUST_LOG=debug logged nothing: {debug}");
    assert!(!debug.contains('\u{1b}'), "escape codes with NO_COLOR: {debug}");
    let quiet = run(Some("error"), Some("debug"));
    assert!(!quiet.contains("DEBUG") && !quiet.contains(" INFO "), "--log error did not win: {quiet}");
}

#[test]
fn completions_and_a_man_page_are_printed() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ccwatch(&["completions", shell]);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("ccwatch") && text.contains("replay") && text.contains("check-config"), "{shell}");
    }
    let man = ccwatch(&["man"]);
    assert!(man.status.success());
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(text.starts_with(".ie") && text.contains(".TH ccwatch 1"), "{text}");
    assert!(ccwatch(&["completions", "nosuchshell"]).status.code() == Some(2));
}

/// An input that cannot be read (here stdin redirected from a directory) is
/// a `read_error` reject, and a run that could read nothing at all exits
/// non-zero after its summary: never "0 records, exit 0".
#[test]
fn an_unreadable_stream_is_a_reject_and_reading_nothing_at_all_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .current_dir(root())
        .args(["replay", "--no-progress", "-"])
        .stdin(std::fs::File::open(root().join("samples")).unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("read_error=1"), "{err}");
    assert!(err.lines().last().unwrap().starts_with("ccwatch: no input could be read"), "{err}");
    // With one readable input beside it, the run succeeds and counts the reject.
    let out = Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .current_dir(root())
        .args(["replay", "--no-progress", "-", "samples/logins"])
        .stdin(std::fs::File::open(root().join("samples")).unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("read_error=1"), "{err}");
}
