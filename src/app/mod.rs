//! The application shell: wires a source, the pipeline and the sinks, and
//! keeps the run's tally (the stderr summary and the `--rejects` file).
//!
//! This is the only module that knows more than one stage. `replay` is
//! synchronous and meant for a blocking thread; cancellation is a flag the
//! async `main` sets on Ctrl-C, after which intake stops, open aggregates are
//! closed and every output is flushed.

pub mod demo;
pub mod live;
pub mod pipeline;
pub mod produce;

use crate::config::Config;
use crate::correlate::CorrelateStats;
use crate::decode::{Reject, RejectReason};
use crate::enrich::Enrichment;
use crate::event::EmitKind;
use crate::event::Format;
use crate::event::{EventTime, GrantClass, NormalizedEvent, RecordKind, Severity};
use crate::sink::AlertWriter;
use crate::source::replay::{discover, Replay, Side};
use anyhow::Context;
use pipeline::{Output, Pipeline};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub paths: Vec<PathBuf>,
    pub inventory: Vec<PathBuf>,
    pub since: Option<EventTime>,
    pub until: Option<EventTime>,
    pub rejects: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub format: Format,
    /// Draw a progress bar (only honoured when stderr is a terminal).
    pub progress: bool,
    /// Map plain input files into memory (the default) instead of reading them.
    pub mmap: bool,
}

/// What one run did, as printed to stderr at the end.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub files: usize,
    pub read: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub grants: BTreeMap<&'static str, u64>,
    pub audit_applied: u64,
    pub audit_ignored: u64,
    pub audit_unparsed: u64,
    /// Post-grant API-activity records read (all of `read`'s activity kinds).
    pub activity: u64,
    pub outside_window: u64,
    pub out_of_order: u64,
    /// Distinct alerts by final severity.
    pub alerts: BTreeMap<&'static str, u64>,
    pub lines_written: u64,
    pub state: CorrelateStats,
    pub users_tracked: usize,
    pub pairs_tracked: usize,
    pub ips_tracked: usize,
    /// `Enrichment::describe`: what reference data was loaded.
    pub enrichment: String,
    /// The reader of the alert output went away (EPIPE, as `| head` does):
    /// replay stopped there.
    pub output_closed: bool,
}

fn kv(map: &BTreeMap<&'static str, u64>) -> String {
    let total: u64 = map.values().sum();
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        format!("{} (total {total})", parts.join(" "))
    }
}

impl Summary {
    /// The read errors, when they are all the run met: not one record, good
    /// or bad, could be read. A failure, not an empty archive.
    pub fn unreadable(&self) -> Option<u64> {
        let label = RejectReason::ReadError.label();
        let read_errors = self.rejected.get(label).copied().unwrap_or(0);
        let only_read_errors = self.rejected.keys().all(|r| *r == label);
        (self.read.is_empty() && read_errors > 0 && only_read_errors).then_some(read_errors)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "ccwatch replay summary: {} input file(s)", self.files);
        if self.output_closed {
            let _ = writeln!(
                s,
                "  output:           closed by its reader; replay stopped after {} line(s)",
                self.lines_written
            );
        }
        let _ = writeln!(s, "  records read:     {}", kv(&self.read));
        let _ = writeln!(s, "  records rejected: {}", kv(&self.rejected));
        let _ = writeln!(s, "  grants:           {}", kv(&self.grants));
        let _ = writeln!(
            s,
            "  audit records:    applied={} ignored_unknown_action={} unparsed_display={}",
            self.audit_applied, self.audit_ignored, self.audit_unparsed
        );
        let _ = writeln!(
            s,
            "  ordering:         out_of_order={} outside_time_window={}",
            self.out_of_order, self.outside_window
        );
        let sev: Vec<String> = Severity::ALL
            .iter()
            .rev()
            .map(|sv| format!("{}={}", sv.label(), self.alerts.get(sv.label()).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(s, "  alerts:           {} (lines written {})", sev.join(" "), self.lines_written);
        let _ = writeln!(
            s,
            "  state:            users={} pairs={} ips={} evictions(pairs={} ips={} failure_users={}) unresolved_users={}",
            self.users_tracked,
            self.pairs_tracked,
            self.ips_tracked,
            self.state.pair_evictions,
            self.state.ip_evictions,
            self.state.failure_evictions,
            self.state.unresolved_users
        );
        if self.activity > 0 {
            let a = &self.state.sessions;
            let _ = writeln!(
                s,
                "  activity:         records={} sessions={} attributed(key={} request={} tuple={} late={}) \
                 unattributed={} waiting={} evictions(sessions={} waiting={})",
                self.activity,
                a.opened,
                a.by_key,
                a.by_request,
                a.by_tuple,
                a.late,
                a.unattributed,
                self.state.activity_waiting,
                a.evicted_sessions,
                a.evicted_waiting
            );
            let _ = writeln!(s, "  enrichment:       {}", self.enrichment);
        }
        s
    }

    fn count_event(&mut self, ev: &NormalizedEvent) {
        match ev {
            NormalizedEvent::Login(l) => {
                let g = if l.success { "client_credentials_success" } else { "client_credentials_failure" };
                *self.grants.entry(g).or_default() += 1;
            }
            NormalizedEvent::Audit(a) => match a.change {
                crate::event::AuditChange::Ignored => self.audit_ignored += 1,
                crate::event::AuditChange::Unparsed => self.audit_unparsed += 1,
                _ => self.audit_applied += 1,
            },
            NormalizedEvent::Activity(_) => self.activity += 1,
            NormalizedEvent::Inventory(_) => {}
        }
        *self.read.entry(ev.kind().label()).or_default() += 1;
    }
}

/// The `Side` of a replay: summary counts, the rejects file and the progress bar.
struct Tally {
    summary: Summary,
    rejects: Option<BufWriter<File>>,
    rejects_error: Option<std::io::Error>,
    bar: Option<indicatif::ProgressBar>,
}

impl Side for Tally {
    fn reject(&mut self, file: &str, line: u64, r: Reject, excerpt: Option<&str>) {
        *self.summary.rejected.entry(r.reason.label()).or_default() += 1;
        tracing::debug!(file, line, reason = r.reason.label(), detail = %r.detail, "Rejected record.");
        if let Some(w) = &mut self.rejects {
            let rec = serde_json::json!({
                "file": file,
                "line": line,
                "index": r.index,
                "reason": r.reason.label(),
                "detail": r.detail,
                "excerpt": excerpt,
            });
            let res =
                serde_json::to_writer(&mut *w, &rec).map_err(std::io::Error::from).and_then(|_| w.write_all(b"\n"));
            if let Err(e) = res {
                self.rejects_error.get_or_insert(e);
            }
        }
    }

    fn counted(&mut self, kind: RecordKind, grant: GrantClass, _success: bool, n: u64) {
        *self.summary.read.entry(kind.label()).or_default() += n;
        *self.summary.grants.entry(grant.label()).or_default() += n;
    }

    fn progress(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }
}

fn create(path: &PathBuf, what: &str) -> anyhow::Result<BufWriter<File>> {
    let f = File::create(path).with_context(|| format!("cannot create {what} {}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 16, f))
}

/// Writes what the pipeline emitted and counts closed alerts by final
/// severity. `Ok(false)` when the output's reader went away (EPIPE): a
/// pipeline like `ccwatch replay … | head` ends there, quietly.
fn drain_outputs(pending: &mut Vec<Output>, tally: &mut Tally, writer: &mut AlertWriter) -> anyhow::Result<bool> {
    for (emit, write) in pending.drain(..) {
        if emit.kind == EmitKind::Closed {
            *tally.summary.alerts.entry(emit.alert.severity.label()).or_default() += 1;
        }
        if write {
            match writer.write(&emit) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(false),
                Err(e) => return Err(e).context("cannot write alerts"),
            }
        }
    }
    Ok(true)
}

/// Applies inventory files as the privilege baseline, before any event: User
/// and PermissionSetAssignment records go into `pipeline`; any other record
/// is rejected through `side`, never processed. Shared by replay and `run`.
/// Returns the records applied per kind and how many were out of order.
/// `mmap`: map plain files (see `Replay::mmap`).
pub fn load_inventory(
    files: &[PathBuf],
    cfg: &Config,
    mmap: bool,
    cancel: Arc<AtomicBool>,
    pipeline: &mut Pipeline,
    side: &mut dyn Side,
) -> (BTreeMap<&'static str, u64>, u64) {
    let mut applied: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Inventory records raise nothing (no observation, no watermark move).
    let mut none = Vec::new();
    let mut inv = Replay::new(files, cfg.replay.reorder_buffer, cancel).mmap(mmap);
    while let Some(s) = inv.next(side) {
        if let NormalizedEvent::Inventory(_) = s.event {
            *applied.entry(s.event.kind().label()).or_default() += 1;
            pipeline.process(&s.event, &mut none);
        } else {
            side.reject(
                &s.file,
                s.line,
                Reject {
                    reason: RejectReason::UnsupportedType,
                    detail: "only User and PermissionSetAssignment records belong in an --inventory file".into(),
                    index: None,
                },
                None,
            );
        }
    }
    debug_assert!(none.is_empty());
    (applied, inv.out_of_order)
}

/// Runs a replay to completion (or cancellation) and returns its summary.
pub fn replay(opts: &ReplayOptions, cfg: &Config, cancel: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let found = discover(&opts.paths)?;
    let inventory = if opts.inventory.is_empty() { Default::default() } else { discover(&opts.inventory)? };
    let skipped: Vec<PathBuf> = found.skipped.into_iter().chain(inventory.skipped).collect();
    let (files, inventory) = (found.files, inventory.files);
    let out: Box<dyn Write + Send> = match &opts.output {
        Some(p) if !crate::source::replay::is_stdio(p) => Box::new(create(p, "output file")?),
        _ => Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout())),
    };
    let mut writer = AlertWriter::new(out, opts.format);
    let rejects = opts.rejects.as_ref().map(|p| create(p, "rejects file")).transpose()?;
    let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let total = files.iter().chain(&inventory).filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut tally = Tally {
        summary: Summary { files: files.len() + inventory.len(), ..Summary::default() },
        rejects,
        rejects_error: None,
        bar,
    };
    for p in &skipped {
        let detail = "a FIFO, socket or device in a directory: not read (name it on the command line to read it)";
        let r = Reject { reason: RejectReason::NotARegularFile, detail: detail.into(), index: None };
        tally.reject(&p.display().to_string(), 0, r, None);
    }
    let mut pipeline = Pipeline::new(cfg);
    let enrichment = Enrichment::load(&cfg.enrichment)?;
    tally.summary.enrichment = enrichment.describe();
    pipeline.correlator.set_enrichment(Arc::new(enrichment));
    let mut pending: Vec<Output> = Vec::new();
    // The inventory is the baseline: it is applied before any event.
    let (applied, inventory_out_of_order) =
        load_inventory(&inventory, cfg, opts.mmap, cancel.clone(), &mut pipeline, &mut tally);
    for (kind, n) in applied {
        *tally.summary.read.entry(kind).or_default() += n;
    }

    let mut events = Replay::new(&files, cfg.replay.reorder_buffer, cancel).mmap(opts.mmap);
    while let Some(s) = events.next(&mut tally) {
        tally.summary.count_event(&s.event);
        let t = s.event.time();
        if opts.until.is_some_and(|u| t > u) {
            tally.summary.outside_window += 1;
            continue;
        }
        if opts.since.is_some_and(|since| t < since) {
            // Before the window: audit records still build context, silently;
            // logins are skipped.
            tally.summary.outside_window += 1;
            if !matches!(s.event, NormalizedEvent::Login(_)) {
                pipeline.absorb(&s.event);
            }
            continue;
        }
        pipeline.process(&s.event, &mut pending);
        if !drain_outputs(&mut pending, &mut tally, &mut writer)? {
            tally.summary.output_closed = true;
            break;
        }
    }
    if !tally.summary.output_closed {
        pipeline.finish(&mut pending);
        tally.summary.output_closed = !drain_outputs(&mut pending, &mut tally, &mut writer)?;
    }
    match writer.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => tally.summary.output_closed = true,
        r => r.context("cannot write alerts")?,
    }
    if let Some(w) = &mut tally.rejects {
        if let Err(e) = w.flush() {
            tally.rejects_error.get_or_insert(e);
        }
    }
    if let Some(e) = tally.rejects_error.take() {
        anyhow::bail!("cannot write rejects file: {e}");
    }
    if let Some(b) = &tally.bar {
        b.finish_and_clear();
    }
    let c = &pipeline.correlator;
    let mut summary = tally.summary;
    summary.out_of_order = events.out_of_order + inventory_out_of_order;
    summary.lines_written = writer.lines;
    summary.state = c.stats();
    summary.users_tracked = c.users_tracked();
    summary.pairs_tracked = c.pairs_tracked();
    summary.ips_tracked = c.ips_tracked();
    // The process ends after a replay: freeing 100,000 grant sessions and
    // their indexes one by one took a sixth of a grant-dense replay's time,
    // for memory the exit returns at once.
    std::mem::forget(pipeline);
    Ok(summary)
}
