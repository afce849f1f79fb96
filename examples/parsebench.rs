//! Micro-benchmark of the decode stages on one JSONL file (profiling aid).
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).expect("path");
    let data = std::fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let t = Instant::now();
    let mut n = 0;
    for l in &lines { if std::str::from_utf8(l).is_ok() { n += 1; } }
    println!("utf8     {:?} {n}", t.elapsed());
    let t = Instant::now();
    for l in &lines { let s = std::str::from_utf8(l).unwrap(); if ccwatch::decode::json::parse(s).is_ok() { n += 1; } }
    println!("validate {:?} {n}", t.elapsed());
    let t = Instant::now();
    for l in &lines { let s = std::str::from_utf8(l).unwrap(); if ccwatch::decode::json::Object::parse(s).is_ok() { n += 1; } }
    println!("object   {:?} {n}", t.elapsed());
    let t = Instant::now();
    let mut out = Vec::new();
    for l in &lines { ccwatch::decode::decode_json_unit(l, &mut out); out.clear(); }
    println!("decode   {:?}", t.elapsed());
}
