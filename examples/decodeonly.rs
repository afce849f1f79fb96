//! Decodes every line of a JSONL file (for profiling the decoder alone):
//! `decodeonly FILE [ROUNDS]` times ROUNDS passes over the file, already in
//! memory, and prints the records decoded and the best pass in ns per line.
fn main() {
    let mut args = std::env::args().skip(1);
    let data = std::fs::read(args.next().expect("path")).expect("readable file");
    let rounds: usize = args.next().map_or(1, |r| r.parse().expect("rounds"));
    let mut out = Vec::new();
    let (mut best, mut events, mut lines) = (f64::MAX, 0usize, 0usize);
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        (events, lines) = (0, 0);
        for l in memchr::memchr_iter(b'\n', &data).scan(0, |s, e| {
            let l = &data[*s..e];
            *s = e + 1;
            Some(l)
        }) {
            ccwatch::decode::decode_json_unit(l, &mut out);
            events += out.len();
            lines += 1;
            out.clear();
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!("{events} records decoded; best pass {:.0} ns/line", best * 1e9 / lines.max(1) as f64);
}
