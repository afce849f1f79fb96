//! `json-libs-bench FILE [ROUNDS]`: how ccwatch's decoder compares with the
//! SIMD JSON parsers a rewrite would borrow from, on the same JSONL lines.
//!
//! Each round times, one after another on the lines already in memory:
//! - `ccwatch`: `decode_json_unit`, the replay's whole per-line work
//!   (UTF-8 check, validation, member index, login decoding, event building);
//! - `simd-json tape`: simdjson's two stages (structural index, then a
//!   validating tape), plus the copy of the line its in-place parser needs;
//! - `sonic-rs skip`: a validating parse into `IgnoredAny`, the cheapest
//!   serde path (every value skipped, nothing built);
//! - `sonic-rs DOM`: a full document parse, then one field read.
//!
//! The libraries do less than ccwatch: none decodes a login. The host is
//! shared and noisy, so the best round of each is reported and the rounds
//! interleave the four.
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: json-libs-bench FILE [ROUNDS]");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rounds: usize = args.next().map_or(7, |r| r.parse().expect("rounds"));
    let mut lines = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', &data) {
        if end > start {
            lines.push(&data[start..end]);
        }
        start = end + 1;
    }
    let n = lines.len() as f64;
    let mut best = [f64::MAX; 4];
    let mut checks = [0usize; 4];
    let (mut events, mut copy, mut tapes) = (Vec::new(), Vec::new(), simd_json::Buffers::default());
    for _ in 0..rounds {
        let t = Instant::now();
        checks[0] = 0;
        for l in &lines {
            ccwatch::decode::decode_json_unit(l, &mut events);
            checks[0] += events.len();
            events.clear();
        }
        best[0] = best[0].min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        checks[1] = 0;
        for l in &lines {
            copy.clear();
            copy.extend_from_slice(l);
            checks[1] += simd_json::to_tape_with_buffers(&mut copy, &mut tapes).is_ok() as usize;
        }
        best[1] = best[1].min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        checks[2] = 0;
        for l in &lines {
            checks[2] += sonic_rs::from_slice::<serde::de::IgnoredAny>(l).is_ok() as usize;
        }
        best[2] = best[2].min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        checks[3] = 0;
        for l in &lines {
            if let Ok(v) = sonic_rs::from_slice::<sonic_rs::Value>(l) {
                checks[3] += sonic_rs::JsonValueTrait::as_str(&v["LoginType"]).is_some() as usize;
            }
        }
        best[3] = best[3].min(t.elapsed().as_secs_f64());
    }
    println!("{} lines, best of {rounds} rounds, one thread:", lines.len());
    let names =
        ["ccwatch decode_json_unit", "simd-json tape (+ line copy)", "sonic-rs skip (IgnoredAny)", "sonic-rs DOM"];
    let units = ["records decoded", "valid lines", "valid lines", "lines with LoginType"];
    for i in 0..4 {
        println!("  {:<30} {:>6.0} ns/line   ({} {})", names[i], best[i] * 1e9 / n, checks[i], units[i]);
    }
}
