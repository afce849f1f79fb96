//! The live binary and signals: SIGHUP (logrotate's postrotate) makes file
//! sinks reopen their paths and never ends the process; SIGTERM still stops it
//! cleanly afterwards.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn kill(pid: u32, signal: &str) {
    assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
}

#[test]
fn sighup_does_not_end_the_live_process_and_sigterm_still_stops_it_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ccwatch"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--config", "ccwatch.toml", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("{\"alert_id\""), "{first}");
    for _ in 0..3 {
        kill(child.id(), "-HUP");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP ended the process");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "metrics endpoint gone after SIGHUP");
    // The demo is still running and its output still readable.
    let rest: Vec<String> = lines.by_ref().take(3).map(|l| l.unwrap()).collect();
    assert_eq!(rest.len(), 3);
    kill(child.id(), "-TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}
