//! Decodes every line of a JSONL file once (for instruction-count profiling).
fn main() {
    let data = std::fs::read(std::env::args().nth(1).expect("path")).unwrap();
    let mut out = Vec::new();
    let mut n = 0usize;
    for l in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        ccwatch::decode::decode_json_unit(l, &mut out);
        n += out.len();
        out.clear();
    }
    println!("{n}");
}
