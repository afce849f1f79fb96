//! Replay source: archived files → decoded events in event-time order.
//!
//! Owns file discovery (directories walked, sorted), format sniffing (gzip by
//! magic bytes; CSV by header; JSON lines vs one JSON document by whether the
//! first line is a complete value), chunked reading, parallel decoding, and the
//! ordering guarantee: events leave in (time, audit-before-login, file, position)
//! order across all inputs.
//!
//! Ordering is streamed, not sorted in memory. Each file feeds a bounded
//! reorder heap (`replay.reorder_buffer` events shared across files), which
//! restores order inside a file whose records are locally shuffled; files are
//! then merged k-way. A record displaced further than the buffer is still
//! processed, and counted as `out_of_order`. A whole JSON document is already
//! in memory, so its records are fully sorted.
//!
//! Decoding runs on rayon's pool (one thread per core) over ~1 MiB chunks cut
//! at line boundaries (quote-aware for CSV); results are consumed strictly in
//! chunk order, so output does not depend on thread timing. Plain files are
//! memory-mapped in 8 MiB segments and chunked without a copy; gzip and
//! anything that is not a regular file (pipes, FIFOs) go through a buffer.
//!
//! A directory walk reads regular files only: FIFOs, sockets and devices in
//! it are set aside as `not_a_regular_file` (opening a FIFO nobody writes
//! blocks forever). A FIFO or `/dev/stdin` named on the command line is read,
//! on a thread of its own, so cancellation (SIGINT/SIGTERM) ends a replay
//! blocked on it. A read error (a truncated gzip member) keeps every complete
//! record read before it and reports the rest as `read_error`.

use crate::decode::csv::CsvHeader;
use crate::decode::{self, Decoded, Reject, RejectReason};
use crate::event::{EventTime, GrantClass, NormalizedEvent, RecordKind};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// A path given on the command line that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Missing, unreadable, or a directory that cannot be listed.
    #[error("cannot read {path}: {error}")]
    Unreadable { path: String, error: io::Error },
    /// Every path was an empty directory.
    #[error("no input files found under {paths}")]
    NoFiles { paths: String },
}

/// Longest JSONL line or CSV row accepted before it is set aside.
const MAX_LINE_BYTES: usize = 16 << 20;

/// What `discover` found.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Files to read: regular files, and whatever was named explicitly.
    pub files: Vec<PathBuf>,
    /// FIFOs, sockets and devices met in a directory walk: not read.
    pub skipped: Vec<PathBuf>,
}

/// `-`: standard input as an input path, standard output as an output path.
pub fn is_stdio(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Lists input files: files as given, directories walked recursively in
/// name order (hidden entries skipped). Every regular file is opened once to
/// fail early with a clear error.
pub fn discover(paths: &[PathBuf]) -> Result<Inputs, SourceError> {
    fn walk(dir: &Path, out: &mut Inputs) -> Result<(), SourceError> {
        let unreadable = |error| SourceError::Unreadable { path: dir.display().to_string(), error };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(unreadable)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
            .collect();
        entries.sort();
        for p in entries {
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => walk(&p, out)?,
                Ok(m) if m.is_file() => out.files.push(p),
                Ok(_) => out.skipped.push(p),
                // A dangling link or a race: opened below, which names the error.
                Err(_) => out.files.push(p),
            }
        }
        Ok(())
    }
    let mut found = Inputs::default();
    for p in paths {
        // `-` is standard input, read like any pipe (see `Cancellable`).
        if is_stdio(p) {
            found.files.push(PathBuf::from("/dev/stdin"));
            continue;
        }
        let meta =
            std::fs::metadata(p).map_err(|error| SourceError::Unreadable { path: p.display().to_string(), error })?;
        if meta.is_dir() {
            walk(p, &mut found)?;
        } else {
            found.files.push(p.clone());
        }
    }
    for f in &found.files {
        // Opening a FIFO waits for a writer: only regular files are tried here.
        if std::fs::metadata(f).map_or(true, |m| m.is_file()) {
            File::open(f).map_err(|error| SourceError::Unreadable { path: f.display().to_string(), error })?;
        }
    }
    if found.files.is_empty() && found.skipped.is_empty() {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(SourceError::NoFiles { paths: list.join(", ") });
    }
    Ok(found)
}

/// Reads a FIFO, pipe or device on a thread of its own, so the caller can
/// give up when `cancel` is set even while no byte arrives: its `read`
/// returns end-of-file then. The thread (blocked in the kernel) ends with the
/// process.
struct Cancellable {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    cancel: Arc<AtomicBool>,
    /// Bytes received and not yet read.
    head: Vec<u8>,
    done: bool,
}

impl Cancellable {
    fn open(path: PathBuf, cancel: Arc<AtomicBool>) -> Cancellable {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
        let spawned = std::thread::Builder::new().name("ccwatch-pipe".into()).spawn(move || {
            let mut f = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; 256 << 10];
                match f.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        let (rx, done) = match spawned {
            Ok(_) => (rx, false),
            Err(_) => (mpsc::sync_channel(1).1, true),
        };
        Cancellable { rx, cancel, head: Vec::new(), done }
    }
}

impl Read for Cancellable {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.head.is_empty() && !self.done {
            if self.cancel.load(Ordering::Relaxed) {
                self.done = true;
                break;
            }
            match self.rx.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(Ok(b)) => self.head = b,
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => self.done = true,
            }
        }
        let n = out.len().min(self.head.len());
        out[..n].copy_from_slice(&self.head[..n]);
        self.head.drain(..n);
        Ok(n)
    }
}

/// Receives everything a source learns besides events, in deterministic order.
pub trait Side {
    /// `excerpt`: the start of the offending text, when the record is one line.
    fn reject(&mut self, file: &str, line: u64, reject: Reject, excerpt: Option<&str>);
    fn counted(&mut self, kind: RecordKind, grant: GrantClass, success: bool, n: u64);
    fn progress(&mut self, bytes: u64);
}

/// One decoded event and where it came from.
#[derive(Debug)]
pub struct Sourced {
    pub file: Arc<str>,
    pub line: u64,
    pub event: NormalizedEvent,
}

/// Results of decoding one chunk; line numbers are relative to the chunk (1-based).
#[derive(Default)]
struct ChunkOut {
    /// Newlines in the chunk, so the next chunk's line numbers follow on.
    lines: u64,
    events: Vec<(u32, NormalizedEvent)>,
    rejects: Vec<(u32, Reject, Option<String>)>,
    counts: Vec<(RecordKind, GrantClass, bool, u64)>,
}

impl ChunkOut {
    fn push(&mut self, line: u32, d: Decoded) {
        match d {
            Decoded::Event(e) => self.events.push((line, e)),
            Decoded::Rejected(r) => self.rejects.push((line, r, None)),
            Decoded::Counted { kind, grant, success, .. } => {
                match self.counts.iter_mut().find(|c| c.0 == kind && c.1 == grant && c.2 == success) {
                    Some(c) => c.3 += 1,
                    None => self.counts.push((kind, grant, success, 1)),
                }
            }
        }
    }
}

fn decode_jsonl(bytes: &[u8]) -> ChunkOut {
    // Sized once for a chunk of decoded events (records are rarely under
    // 256 bytes): growing it by doubling had the allocator fetch and zero
    // fresh pages for every chunk (a fifth of a grant-dense replay's CPU
    // profile, on the decode threads; 10% after).
    let mut out = ChunkOut { events: Vec::with_capacity(bytes.len() / 256 + 1), ..ChunkOut::default() };
    let mut items = Vec::new();
    let mut start = 0usize;
    let mut line = 0u32;
    let unterminated = bytes.last().is_some_and(|&b| b != b'\n');
    let ends = memchr::memchr_iter(b'\n', bytes).chain(unterminated.then_some(bytes.len()));
    for end in ends {
        line += 1;
        let mut seg = &bytes[start..end];
        start = end + 1;
        while let [rest @ .., b'\r' | b' ' | b'\t'] = seg {
            seg = rest;
        }
        if seg.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        decode::decode_json_unit(seg, &mut items);
        for d in items.drain(..) {
            match d {
                Decoded::Rejected(r) if r.index.is_none() => out.rejects.push((line, r, Some(excerpt(seg)))),
                d => out.push(line, d),
            }
        }
    }
    // Newlines seen: the line walk counts them (no second pass over the chunk).
    out.lines = u64::from(line) - u64::from(unterminated);
    out
}

/// Rows of a CSV file without a header: each non-blank line is rejected.
fn decode_headerless(bytes: &[u8]) -> ChunkOut {
    let mut out = ChunkOut::default();
    let mut line = 0u32;
    let mut start = 0usize;
    let unterminated = bytes.last().is_some_and(|&b| b != b'\n');
    for end in memchr::memchr_iter(b'\n', bytes).chain(unterminated.then_some(bytes.len())) {
        line += 1;
        let seg = &bytes[start..end];
        start = end + 1;
        if seg.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let r = Reject {
            reason: RejectReason::CsvWithoutHeader,
            detail: "CSV row in a file whose first row is not a Salesforce header (EVENT_TYPE, TIMESTAMP, Id…): \
                     its columns cannot be named"
                .into(),
            index: None,
        };
        out.rejects.push((line, r, Some(excerpt(seg))));
    }
    out.lines = u64::from(line) - u64::from(unterminated);
    out
}

/// The first 160 characters of a rejected line, lossily decoded, for analysts.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(640)]);
    match text.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

fn decode_csv(header: &CsvHeader, bytes: &[u8]) -> ChunkOut {
    let mut out = ChunkOut { lines: memchr::memchr_iter(b'\n', bytes).count() as u64, ..ChunkOut::default() };
    let mut items = Vec::new();
    decode::csv::decode_chunk(header, bytes, 1, &mut items);
    for (line, d) in items {
        out.push(line as u32, d);
    }
    out
}

fn decode_document(bytes: &[u8]) -> ChunkOut {
    let mut out = ChunkOut::default();
    let mut items = Vec::new();
    decode::decode_json_unit(bytes, &mut items);
    for d in items {
        out.push(1, d);
    }
    // The whole document is in memory: sort it completely (stable, so records
    // at equal times keep their document order).
    out.events.sort_by_key(|(_, e)| (e.time(), e.rank()));
    out
}

#[derive(Clone)]
enum FileFormat {
    Jsonl,
    Csv(Arc<CsvHeader>),
    Document,
    /// Comma-separated rows with no Salesforce header: every row is set
    /// aside as `csv_without_header`.
    HeaderlessCsv,
}

/// What the reader hands out next.
enum Piece {
    /// Whole lines (or the whole document) to decode.
    Chunk { bytes: Bytes },
    /// A line longer than `MAX_LINE_BYTES`, skipped through its newline.
    Oversized,
    /// A read error; the rest of the file is abandoned.
    Failed(String),
}

/// Where a file's bytes come from.
enum Src {
    /// Read through a buffer: gzip, pipes, FIFOs, anything not mappable.
    Stream { r: Box<dyn Read + Send>, buf: Vec<u8> },
    /// A plain regular file, mapped into memory one segment at a time: chunks
    /// are slices of a segment, so the kernel's copy into a buffer (a tenth of
    /// replay's CPU) and the buffer's allocation are gone. A segment is
    /// unmapped when its last chunk is dropped, which keeps resident memory
    /// near two segments however large the file. `start..end` is the window,
    /// relative to `seg`, which begins at byte `seg_off` of the file.
    Mapped { file: File, len: u64, seg: Bytes, seg_off: u64, start: usize, end: usize },
}

/// Hands out a file as chunks of whole records. The window (`buf()`) holds the
/// bytes read but not yet handed out.
struct ChunkReader {
    src: Src,
    eof: bool,
    chunk_size: usize,
    skipping: bool,
    /// A read error met while filling: the bytes before it are still handed
    /// out (complete records decode), then it is reported.
    error: Option<io::Error>,
}

impl ChunkReader {
    fn stream(r: Box<dyn Read + Send>, chunk_size: usize) -> Self {
        ChunkReader { src: Src::Stream { r, buf: Vec::new() }, eof: false, chunk_size, skipping: false, error: None }
    }

    fn mapped(file: File, len: u64, chunk_size: usize) -> Self {
        let src = Src::Mapped { file, len, seg: Bytes::new(), seg_off: 0, start: 0, end: 0 };
        ChunkReader { src, eof: false, chunk_size, skipping: false, error: None }
    }

    /// The bytes read and not yet handed out.
    fn buf(&self) -> &[u8] {
        match &self.src {
            Src::Stream { buf, .. } => buf,
            Src::Mapped { seg, start, end, .. } => &seg[*start..*end],
        }
    }

    /// Grows the window to at least `want` bytes, or to the end of the file.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        match &mut self.src {
            Src::Stream { r, buf } => {
                while !self.eof && buf.len() < want {
                    let grow = (want - buf.len()).max(64 << 10);
                    // `read_to_end` on a `Take` reads into spare capacity
                    // without zeroing it, and keeps what it read before an error.
                    match r.take(grow as u64).read_to_end(buf) {
                        Ok(n) if n < grow => self.eof = true,
                        Ok(_) => {}
                        Err(e) => {
                            self.eof = true;
                            self.error = Some(e);
                        }
                    }
                }
            }
            Src::Mapped { file, len, seg, seg_off, start, end } => {
                let from = *seg_off + *start as u64;
                let to = (from + want as u64).min(*len).max(*seg_off + *end as u64);
                if to > *seg_off + seg.len() as u64 {
                    // Map a new segment from the window's start; the old one
                    // lives on in the chunks still being decoded.
                    let size = (to - from).max(MAP_SEGMENT).min(*len - from);
                    *seg = map_segment(file, from, size)?;
                    *seg_off = from;
                    *start = 0;
                }
                *end = (to - *seg_off) as usize;
                self.eof = to == *len;
            }
        }
        Ok(())
    }

    /// Drops the first `n` bytes of the window.
    fn discard(&mut self, n: usize) {
        match &mut self.src {
            Src::Stream { buf, .. } => {
                buf.drain(..n);
            }
            Src::Mapped { start, .. } => *start += n,
        }
    }

    fn clear(&mut self) {
        let n = self.buf().len();
        self.discard(n);
    }

    /// Hands out the first `upto` bytes of the window.
    fn take(&mut self, upto: usize) -> Bytes {
        match &mut self.src {
            Src::Stream { buf, .. } => {
                let mut next = Vec::with_capacity(self.chunk_size + (64 << 10));
                next.extend_from_slice(&buf[upto..]);
                buf.truncate(upto);
                Bytes::from(std::mem::replace(buf, next))
            }
            Src::Mapped { seg, start, .. } => {
                let piece = seg.slice(*start..*start + upto);
                *start += upto;
                piece
            }
        }
    }

    fn take_all(&mut self) -> Bytes {
        let n = self.buf().len();
        self.take(n)
    }

    /// The end of the last complete record in the buffer.
    fn cut(&self, csv: bool) -> Option<usize> {
        let buf = self.buf();
        if !csv {
            return memchr::memrchr(b'\n', buf).map(|i| i + 1);
        }
        let mut in_quotes = false;
        let mut last = None;
        for i in memchr::memchr2_iter(b'"', b'\n', buf) {
            if buf[i] == b'"' {
                in_quotes = !in_quotes;
            } else if !in_quotes {
                last = Some(i + 1);
            }
        }
        last
    }

    fn next_piece(&mut self, format: &FileFormat) -> Option<Piece> {
        if let FileFormat::Document = format {
            if self.eof && self.buf().is_empty() {
                return None;
            }
            // One fill up to just past the limit: a mapped file is mapped once
            // (growing it 4 MiB at a time remapped and re-populated it each
            // time), and a stream reads no more than before.
            if let Err(e) = self.fill(decode::MAX_UNIT_BYTES + 1) {
                self.eof = true;
                return Some(Piece::Failed(e.to_string()));
            }
            if self.buf().len() > decode::MAX_UNIT_BYTES {
                self.eof = true;
                self.clear();
                return Some(Piece::Oversized);
            }
            return Some(Piece::Chunk { bytes: self.take_all() });
        }
        let csv = matches!(format, FileFormat::Csv(_));
        let mut want = self.chunk_size;
        loop {
            if self.skipping {
                match memchr::memchr(b'\n', self.buf()) {
                    Some(i) => {
                        self.discard(i + 1);
                        self.skipping = false;
                    }
                    None if self.eof => {
                        self.clear();
                        self.skipping = false;
                        return None;
                    }
                    None => self.clear(),
                }
            }
            if let Err(e) = self.fill(want) {
                self.eof = true;
                self.clear();
                return Some(Piece::Failed(e.to_string()));
            }
            if self.skipping {
                continue;
            }
            if self.buf().is_empty() {
                return self.error.take().map(|e| Piece::Failed(e.to_string()));
            }
            if let Some(end) = self.cut(csv) {
                return Some(Piece::Chunk { bytes: self.take(end) });
            }
            if let Some(e) = self.error.take() {
                // The damaged tail: an incomplete record cut off by the error.
                let n = self.buf().len();
                self.clear();
                return Some(Piece::Failed(format!("{e}; an incomplete last record ({n} bytes) was dropped")));
            }
            if self.eof {
                return Some(Piece::Chunk { bytes: self.take_all() });
            }
            if self.buf().len() >= MAX_LINE_BYTES {
                self.clear();
                self.skipping = true;
                return Some(Piece::Oversized);
            }
            want = self.buf().len() * 2;
        }
    }
}

/// A queued decode: either a pool job or something the reader already knows.
enum Pending {
    Job { rx: mpsc::Receiver<ChunkOut>, bytes: u64 },
    Oversized,
    Failed(String),
}

/// An event waiting in a reorder heap; ordered by (time, rank, seq).
struct Queued {
    key: (EventTime, u8, u64),
    line: u64,
    event: NormalizedEvent,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

struct FileStream {
    path: Arc<str>,
    reader: Option<(ChunkReader, FileFormat)>,
    pending: VecDeque<Pending>,
    line_base: u64,
    heap: BinaryHeap<Reverse<Queued>>,
    cap: usize,
    seq: u64,
    depth: usize,
    opened: bool,
    file: PathBuf,
    chunk_size: usize,
    /// Map plain files (see `Src::Mapped`) rather than read them.
    map: bool,
    cancel: Arc<AtomicBool>,
}

impl FileStream {
    fn open(&mut self, side: &mut dyn Side) {
        self.opened = true;
        let reject = |side: &mut dyn Side, reason, detail: String| {
            side.reject(&self.path, 0, Reject { reason, detail, index: None }, None);
        };
        let regular = std::fs::metadata(&self.file).is_ok_and(|m| m.is_file());
        let mut reader = if regular {
            let mut file = match File::open(&self.file) {
                Ok(f) => f,
                Err(e) => return reject(side, RejectReason::ReadError, format!("cannot open: {e}")),
            };
            let mut head = [0u8; 2];
            let gz = file.read_exact(&mut head).is_ok() && head == [0x1f, 0x8b];
            if let Err(e) = file.seek(SeekFrom::Start(0)) {
                return reject(side, RejectReason::ReadError, e.to_string());
            }
            let len = if self.map { mappable(&file) } else { None };
            match (gz, len) {
                (false, Some(len)) => ChunkReader::mapped(file, len, self.chunk_size),
                (true, _) => ChunkReader::stream(Box::new(flate2::read::MultiGzDecoder::new(file)), self.chunk_size),
                (false, None) => ChunkReader::stream(Box::new(file), self.chunk_size),
            }
        } else {
            // A FIFO, pipe or device: opened and read on its own thread; gzip
            // is told by its first two bytes, which are put back.
            let mut pipe = Cancellable::open(self.file.clone(), self.cancel.clone());
            let mut head = Vec::with_capacity(2);
            while head.len() < 2 {
                let mut b = [0u8; 2];
                match pipe.read(&mut b[..2 - head.len()]) {
                    Ok(0) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                    Err(e) => return reject(side, RejectReason::ReadError, format!("cannot read: {e}")),
                }
            }
            let gz = head == [0x1f, 0x8b];
            let r = io::Cursor::new(head).chain(pipe);
            if gz {
                ChunkReader::stream(Box::new(flate2::read::MultiGzDecoder::new(r)), self.chunk_size)
            } else {
                ChunkReader::stream(Box::new(r), self.chunk_size)
            }
        };
        if let Err(e) = reader.fill(64 << 10) {
            return reject(side, RejectReason::ReadError, e.to_string());
        }
        if reader.buf().starts_with(b"\xEF\xBB\xBF") {
            reader.discard(3);
        }
        let Some(format) = sniff(&mut reader, &mut self.line_base) else { return };
        self.reader = Some((reader, format));
    }

    /// Queues decode jobs until `depth` are in flight or the file is read.
    fn refill(&mut self) {
        while self.pending.len() < self.depth {
            let Some((reader, format)) = self.reader.as_mut() else { return };
            let piece = reader.next_piece(format);
            let piece = match piece {
                Some(p) => p,
                None => {
                    self.reader = None;
                    return;
                }
            };
            match piece {
                Piece::Chunk { bytes } => {
                    let (tx, rx) = mpsc::sync_channel(1);
                    let n = bytes.len() as u64;
                    let format = format.clone();
                    rayon::spawn(move || {
                        let out = match &format {
                            FileFormat::Jsonl => decode_jsonl(&bytes),
                            FileFormat::Csv(h) => decode_csv(h, &bytes),
                            FileFormat::Document => decode_document(&bytes),
                            FileFormat::HeaderlessCsv => decode_headerless(&bytes),
                        };
                        let _ = tx.send(out);
                    });
                    self.pending.push_back(Pending::Job { rx, bytes: n });
                }
                Piece::Oversized => self.pending.push_back(Pending::Oversized),
                Piece::Failed(e) => {
                    self.pending.push_back(Pending::Failed(e));
                    self.reader = None;
                }
            }
        }
    }

    /// Next event of this file in event-time order, or `None` at its end.
    fn next(&mut self, side: &mut dyn Side) -> Option<Queued> {
        if !self.opened {
            self.open(side);
        }
        loop {
            let drained = self.reader.is_none() && self.pending.is_empty();
            if self.heap.len() > self.cap || (drained && !self.heap.is_empty()) {
                return self.heap.pop().map(|Reverse(q)| q);
            }
            if drained {
                return None;
            }
            self.refill();
            let Some(p) = self.pending.pop_front() else { continue };
            match p {
                Pending::Job { rx, bytes } => {
                    let Ok(out) = rx.recv() else {
                        side.reject(
                            &self.path,
                            self.line_base + 1,
                            Reject {
                                reason: RejectReason::ReadError,
                                detail: "decoder thread failed".into(),
                                index: None,
                            },
                            None,
                        );
                        continue;
                    };
                    side.progress(bytes);
                    for (line, r, excerpt) in out.rejects {
                        side.reject(&self.path, self.line_base + u64::from(line), r, excerpt.as_deref());
                    }
                    for (kind, grant, success, n) in out.counts {
                        side.counted(kind, grant, success, n);
                    }
                    for (line, event) in out.events {
                        self.seq += 1;
                        let key = (event.time(), event.rank(), self.seq);
                        self.heap.push(Reverse(Queued { key, line: self.line_base + u64::from(line), event }));
                    }
                    self.line_base += out.lines;
                }
                Pending::Oversized => {
                    side.reject(
                        &self.path,
                        self.line_base + 1,
                        Reject {
                            reason: RejectReason::RecordTooLarge,
                            detail: format!("record longer than {} MiB", MAX_LINE_BYTES >> 20),
                            index: None,
                        },
                        None,
                    );
                    self.line_base += 1;
                }
                Pending::Failed(e) => {
                    side.reject(
                        &self.path,
                        self.line_base + 1,
                        Reject {
                            reason: RejectReason::ReadError,
                            detail: format!("read failed, rest of file skipped: {e}"),
                            index: None,
                        },
                        None,
                    );
                }
            }
        }
    }
}

/// Decides a file's format from its first bytes; consumes a CSV header line.
fn sniff(reader: &mut ChunkReader, line_base: &mut u64) -> Option<FileFormat> {
    let buf = reader.buf();
    let first_non_ws = buf.iter().position(|b| !b.is_ascii_whitespace())?;
    let first = buf[first_non_ws];
    let newline = memchr::memchr(b'\n', buf);
    let line_end = newline.unwrap_or(buf.len());
    if (first == b'{' || first == b'[') && newline.is_none() && !reader.eof {
        // One line longer than the sniff window: JSON lines (a one-line REST
        // result is one unit too); an oversized line is set aside there.
        return Some(FileFormat::Jsonl);
    }
    if first == b'{' || first == b'[' {
        let complete = |s: &[u8]| std::str::from_utf8(s).is_ok_and(|t| decode::json::is_complete_value(t.trim()));
        if complete(&buf[..line_end]) {
            return Some(FileFormat::Jsonl);
        }
        // The whole file in the window, and one JSON value: a document.
        if reader.eof && complete(buf) {
            return Some(FileFormat::Document);
        }
        // Corrupt first lines of a JSONL file: any later line in the window
        // that is a whole object decides. A pretty-printed document's lines
        // are fragments (`{`, `"k": v,`), never a whole object.
        let mut rest = &buf[(line_end + 1).min(buf.len())..];
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest);
            let line = &rest[..end.unwrap_or(rest.len())];
            let t = line.trim_ascii();
            if t.first() == Some(&b'{') && complete(t) {
                return Some(FileFormat::Jsonl);
            }
            let Some(end) = end else { break };
            rest = &rest[end + 1..];
        }
        return Some(FileFormat::Document);
    }
    if let Ok(header) = CsvHeader::parse(&buf[..line_end]) {
        if header.looks_like_salesforce() {
            let header_len = (line_end + 1).min(buf.len());
            reader.discard(header_len);
            *line_base = 1;
            return Some(FileFormat::Csv(Arc::new(header)));
        }
    }
    // Several comma-separated fields but no header Salesforce writes: ELF
    // rows whose header was lost.
    if decode::csv::field_count(&buf[..line_end]) >= 3 {
        return Some(FileFormat::HeaderlessCsv);
    }
    // Not recognisably CSV or JSON: read it as lines, each rejected with its reason.
    Some(FileFormat::Jsonl)
}

/// Bytes mapped at a time from a plain file (see `Src::Mapped`).
const MAP_SEGMENT: u64 = 8 << 20;

/// The length of a plain regular file worth mapping, or `None` to read it
/// through a buffer instead (pipes, FIFOs, devices, empty files).
fn mappable(file: &File) -> Option<u64> {
    let meta = file.metadata().ok()?;
    (meta.is_file() && meta.len() > 0).then_some(meta.len())
}

/// Maps `size` bytes of `file` from `offset`, populated up front (one call
/// instead of a page fault per 4 KiB on the decoding threads).
///
/// A mapped file that another process truncates while replay reads it would
/// fault (SIGBUS). Archives under investigation are not rewritten in place;
/// for files that may be, `replay --no-mmap` reads through the buffer instead,
/// as `ripgrep --no-mmap` does.
fn map_segment(file: &File, offset: u64, size: u64) -> io::Result<Bytes> {
    let size = usize::try_from(size).map_err(|_| io::Error::other("segment larger than the address space"))?;
    // SAFETY: the map is read-only and private to this process; see above for
    // the one hazard (a concurrent truncation), which `mmap` cannot rule out.
    let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(size).populate().map(file)? };
    Ok(Bytes::from_owner(map))
}

/// All inputs merged into one event-time-ordered stream.
pub struct Replay {
    streams: Vec<FileStream>,
    heads: BinaryHeap<Reverse<(EventTime, u8, usize, u64)>>,
    head_items: Vec<Option<Queued>>,
    started: bool,
    last: Option<(EventTime, u8)>,
    cancel: Arc<AtomicBool>,
    /// Events processed earlier in time than the one before them.
    pub out_of_order: u64,
}

impl Replay {
    /// `reorder_buffer` events are shared across the files' reorder heaps.
    pub fn new(files: &[PathBuf], reorder_buffer: usize, cancel: Arc<AtomicBool>) -> Replay {
        let n = files.len().max(1);
        let chunk_size = ((32usize << 20) / n).clamp(64 << 10, 1 << 20);
        let depth = if n <= 4 {
            4
        } else if n <= 32 {
            2
        } else {
            1
        };
        let cap = (reorder_buffer / n).max(256);
        let streams = files
            .iter()
            .map(|f| FileStream {
                path: f.display().to_string().into(),
                reader: None,
                pending: VecDeque::new(),
                line_base: 0,
                heap: BinaryHeap::new(),
                cap,
                seq: 0,
                depth,
                opened: false,
                file: f.clone(),
                chunk_size,
                map: true,
                cancel: cancel.clone(),
            })
            .collect();
        Replay {
            streams,
            heads: BinaryHeap::new(),
            head_items: (0..n).map(|_| None).collect(),
            started: false,
            last: None,
            cancel,
            out_of_order: 0,
        }
    }

    /// Whether plain files are mapped (the default) or read through a buffer.
    /// Reading suits files that may be truncated in place while replay reads
    /// them (a log rotated with `copytruncate`): a mapped file truncated under
    /// the reader kills the process with SIGBUS.
    pub fn mmap(mut self, map: bool) -> Replay {
        for s in &mut self.streams {
            s.map = map;
        }
        self
    }

    fn pull(&mut self, i: usize, side: &mut dyn Side) {
        if let Some(q) = self.streams[i].next(side) {
            self.heads.push(Reverse((q.key.0, q.key.1, i, q.key.2)));
            self.head_items[i] = Some(q);
        }
    }

    pub fn next(&mut self, side: &mut dyn Side) -> Option<Sourced> {
        if self.cancel.load(Ordering::Relaxed) {
            return None;
        }
        if !self.started {
            self.started = true;
            for i in 0..self.streams.len() {
                self.pull(i, side);
            }
        }
        let Reverse((time, rank, i, _)) = self.heads.pop()?;
        let q = self.head_items[i].take()?;
        self.pull(i, side);
        if self.last.is_some_and(|last| (time, rank) < last) {
            self.out_of_order += 1;
        } else {
            self.last = Some((time, rank));
        }
        Some(Sourced { file: self.streams[i].path.clone(), line: q.line, event: q.event })
    }
}
