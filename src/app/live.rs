//! `ccwatch run`: the live shell. Kafka consumers → decode → event-time merge
//! → the same `Pipeline` replay uses → sinks → offset store.
//!
//! Built by `Run::build`, driven by `Run::turn`, ended by `Run::shutdown`.
//! Four threads: intake's receive and decode threads (`source::intake`), the
//! lag watcher (`source::kafka::spawn_lag_watch`), and this loop, which owns
//! all state (`Live`: merge, correlator, sinks, ledger): there is no shared
//! mutable state but metrics. Each turn takes the decoded messages intake has
//! queued (up to `BATCH`), releases what the merge allows, runs it through
//! the pipeline, hands the resulting alerts and dead letters to every sink,
//! and only then stores offsets for the messages whose records are all done.
//! A transiently failing sink stops the loop where it is: nothing further is
//! consumed or stored until it accepts, so delivery is at-least-once and in
//! order per partition; an alert a sink refuses for good goes to the alert
//! dead letter when one is configured. Offsets the broker never delivers
//! (see `Ledger::open`) are counted and logged: at-least-once can only cover
//! what arrives, so what does not arrive must at least be seen. What happens
//! is reported through `telemetry::events`, which writes each log line with
//! its metric; the per-record consumed and grant counters keep resolved
//! handles (`Counters`) because they run for every record.
//!
//! API activity arrives on the login topic, or on `kafka.activity_topic`:
//! then a consumer of its own is assigned the login partitions' numbers
//! whenever the group assigns them (`kafka::mirror_assign`), its lanes join
//! the merge, and the ledger stores its offsets on that consumer.
//!
//! Setup-audit records skip the merge: the correlator keeps them on an
//! event-time timeline and scores each grant as of its own time, so they are
//! applied the moment they arrive, however far ahead of the logins they are.
//!
//! Rebalances: the login consumer uses the eager protocol (a cooperative
//! strategy is refused by the config), so a rebalance revokes every
//! partition. Records received and not yet released are dropped unprocessed
//! (their offsets were never stored, so the next owner reads them), and the
//! pipeline forgets all state built from logins and activity, open alert
//! aggregates included, without writing a line. Whatever partitions come
//! back are read from their committed offsets with warm-up, exactly as after
//! a restart. Keeping the state instead would count records twice (warm-up
//! re-reads what the state already holds) and would let an instance close an
//! alert of a partition now read elsewhere with the count it had seen so far.
//! A redelivered message this instance had already delivered before the
//! revocation (its offset not yet committed) rebuilds state like warm-up,
//! with its raised and score-rose lines withheld (see `Ledger`).
//!
//! Warm-up (`kafka.warmup_messages`): messages below a partition's committed
//! offset are re-read to rebuild correlation state. Their raised and
//! score-rose lines were delivered before and are withheld; a close line is
//! always written, since a close carries the alert's final count.
//!
//! Shutdown (SIGINT/SIGTERM cancels the token): stop intake, process what the
//! merge's event-time order allows, deliver, store and commit those offsets
//! synchronously, flush sinks. What the merge still holds is left uncommitted
//! and is read again on restart. Open aggregates are *not* closed: in live
//! mode they close on event time, and a restart continues from the committed
//! offsets.

use crate::app::pipeline::{Output, Pipeline};
use crate::config::live::KafkaConfig;
use crate::config::Config;
use crate::decode::{Decoded, Reject};
use crate::enrich::{Enrichment, Reloader};
use crate::event::{Emit, EmitKind};
use crate::event::{EventTime, GrantClass, NormalizedEvent};
use crate::sink::live::{AlertDeadLetters, DeadLetter, DeadLetters, RefusedAlert, Sink, SinkError};
use crate::source::intake::{Chunk, Intake, Item, PauseGauges, Received};
use crate::source::kafka::{self, Assigned, Assignment, LiveConsumer};
use crate::source::ledger::{Ledger, Ticket};
use crate::source::merge::{Lane, Merge, Stream};
use crate::source::replay::{discover, Side};
use crate::telemetry::events::{
    AlertDeadLetterFailed, AlertLine, AlertsDeadLettered, DeadLetterFailed, EnrichmentReloaded, InternalEvent,
    LogLimiter, OffsetGap, OffsetStored, PartitionsAssigned, PartitionsRevoked, RecordFinished, RecordRejected,
    RecordReleased, RecordsDeadLettered, RedeliveryWithheld, SinkDelivered, SinkFailed, SinkRetried, WarmupRecord,
};
use crate::telemetry::server::Health;
use crate::telemetry::Metrics;
use anyhow::Context as _;
use prometheus::IntCounter;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Messages taken per turn of the loop.
const BATCH: usize = 4096;
/// How often the state gauges are refreshed.
const GAUGE_PERIOD: Duration = Duration::from_secs(1);
/// How long shutdown keeps retrying a failing sink before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A record waiting in the event-time merge.
struct Pending {
    ev: NormalizedEvent,
    /// Re-read for warm-up (delivered before a restart or rebalance): it
    /// updates correlation state, but its alerts are withheld and it stores
    /// no offset.
    warm: bool,
    /// The login message whose offset store waits for this record.
    ticket: Ticket,
    received: Instant,
}

/// A record finished this turn: its message's offset may be stored once the
/// sinks accept the turn's alerts.
struct Done {
    ticket: Option<Ticket>,
    received: Instant,
}

/// What one turn of the loop produced, handed to the sinks together.
#[derive(Default)]
struct Turn {
    /// Alert lines, in emission order.
    emits: Vec<Emit>,
    letters: Vec<DeadLetter>,
    /// Alerts a sink refused for good, until the alert dead letter takes them.
    refused: Vec<RefusedAlert>,
    done: Vec<Done>,
}

/// Which setup-audit partitions have been read to their end.
#[derive(Default)]
struct AuditProgress {
    eof: HashMap<i32, bool>,
}

impl AuditProgress {
    fn caught_up(&self) -> bool {
        self.eof.values().all(|e| *e)
    }
}

/// What `run` reports when it ends.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    pub messages: u64,
    pub rejected: u64,
    pub alert_lines: u64,
    pub offsets_committed: bool,
}

/// Started services, for callers (the demo) that want to print addresses.
pub struct Started {
    pub metrics_addr: std::net::SocketAddr,
}

/// Counter handles resolved once per label set: `with_label_values` hashes
/// its labels on every call, which showed at 150k+ records/s.
#[derive(Default)]
struct Counters {
    consumed: HashMap<(Stream, &'static str), IntCounter>,
    grants: HashMap<(GrantClass, bool), IntCounter>,
}

impl Counters {
    fn consumed(&mut self, m: &Metrics, stream: Stream, topic: &str, kind: &'static str) -> &IntCounter {
        self.consumed.entry((stream, kind)).or_insert_with(|| m.records_consumed.with_label_values(&[topic, kind]))
    }

    fn grant(&mut self, m: &Metrics, class: GrantClass, success: bool) -> &IntCounter {
        self.grants.entry((class, success)).or_insert_with(|| {
            m.grants.with_label_values(&[class.label(), if success { "success" } else { "failure" }])
        })
    }
}

/// The run loop's state: everything a turn reads or changes.
struct Live {
    counters: Counters,
    login_topic: String,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    pipeline: Pipeline,
    merge: Merge<Pending>,
    ledger: Ledger,
    audit: AuditProgress,
    sinks: Vec<Sink>,
    dead_letters: Option<DeadLetters>,
    alert_dead_letters: Option<AlertDeadLetters>,
    log_limiter: LogLimiter,
    turn: Turn,
    /// Whether the login consumer was ever assigned partitions.
    assigned: bool,
    outputs: Vec<Output>,
    /// Cumulative counts already moved into the metrics' counters.
    seen: Seen,
    report: RunReport,
    audit_topic: String,
    /// Login and activity lanes rewound for warm-up → their committed offset:
    /// messages before it are warm-up.
    warm_until: HashMap<Lane, i64>,
    /// `kafka.activity_topic`'s consumer and topic, when activity has its own.
    activity: Option<Arc<LiveConsumer>>,
    activity_topic: String,
}

/// Moves the pipeline's outputs into this turn's alert lines. For a
/// warm-up record only close lines are kept: its raised and score-rose
/// lines were delivered before the restart, while a close carries the
/// final count, which may never have been written.
fn take_outputs(outputs: &mut Vec<Output>, turn: &mut Turn, metrics: &Metrics, warm: bool) {
    for (emit, write) in outputs.drain(..) {
        let kind = match emit.kind {
            EmitKind::Raised | EmitKind::ScoreRose if warm => continue,
            EmitKind::Raised => "raised",
            EmitKind::ScoreRose => "score_rose",
            EmitKind::Closed => "closed",
        };
        if write {
            let raised = (emit.kind == EmitKind::Raised).then(|| (emit.alert.rule.id(), emit.alert.severity.label()));
            AlertLine { kind, raised }.emit(metrics);
            turn.emits.push(emit);
        }
    }
}

/// After one message of `lane`: its pushed events already moved the lane's
/// watermark; counted records (latest time `latest`) move it here, and a
/// message with no event at all still marks the lane live.
fn advance_lane(merge: &mut Merge<Pending>, lane: (Stream, i32), events: u32, latest: Option<EventTime>) {
    if events == 0 || latest.is_some() {
        merge.advance(lane, latest);
    }
}

impl Live {
    /// A loop with no sinks, dead letters or audit partitions yet.
    fn new(
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        login_topic: &str,
        audit_topic: Option<&str>,
        max_pending: usize,
    ) -> Live {
        Live {
            counters: Counters::default(),
            audit_topic: audit_topic.unwrap_or_default().to_string(),
            login_topic: login_topic.to_string(),
            metrics,
            health,
            pipeline,
            merge: Merge::new(max_pending),
            ledger: Ledger::default(),
            audit: AuditProgress::default(),
            sinks: Vec::new(),
            dead_letters: None,
            alert_dead_letters: None,
            log_limiter: LogLimiter::default(),
            turn: Turn::default(),
            warm_until: HashMap::new(),
            activity: None,
            activity_topic: String::new(),
            assigned: false,
            outputs: Vec::new(),
            seen: Seen::default(),
            report: RunReport::default(),
        }
    }

    /// One chunk from intake: messages (already decoded), end-of-partition
    /// markers and assignment changes, in the order received.
    fn on_chunk(&mut self, chunk: Chunk) {
        let received = chunk.received;
        let mut decoded = chunk.decoded.into_iter();
        for item in chunk.items {
            match item {
                Item::Message(m) => {
                    let n = m.records as usize;
                    self.on_message(m, decoded.by_ref().take(n), received);
                }
                Item::Eof((Stream::Audit, p)) => {
                    self.audit.eof.insert(p, true);
                }
                Item::Eof(lane) => self.merge.set_eof(lane),
                Item::Assignment(a) => {
                    self.assigned = true;
                    self.on_assignment(a);
                }
            }
        }
    }

    /// One message's decoded records.
    fn on_message(&mut self, msg: Received, records: impl Iterator<Item = Decoded>, received: Instant) {
        self.report.messages += 1;
        let Received { stream, partition, offset, raw, .. } = msg;
        let lane = (stream, partition);
        if stream == Stream::Audit {
            self.audit.eof.insert(partition, false);
        }
        if stream.is_traffic() && self.warm_until.get(&lane).is_some_and(|&c| offset < c) {
            return self.on_warmup_message(lane, records, received);
        }
        if stream.is_traffic() && self.ledger.already_processed(lane, offset) {
            // Processed and delivered by this instance before its partitions
            // were revoked, but not yet committed: it rebuilds the state the
            // revocation forgot, like warm-up, and its offset is done.
            RedeliveryWithheld.emit(&self.metrics);
            self.ledger.open(lane, offset, 0);
            return self.on_warmup_message(lane, records, received);
        }
        let topic: &str = match stream {
            Stream::Audit => &self.audit_topic,
            Stream::Login => &self.login_topic,
            Stream::Activity => &self.activity_topic,
        };
        let mut events = 0u32;
        let mut latest = None;
        for d in records {
            match d {
                Decoded::Event(ev) => {
                    self.counters.consumed(&self.metrics, stream, topic, ev.kind().label()).inc();
                    if let NormalizedEvent::Login(l) = &ev {
                        self.counters.grant(&self.metrics, l.grant, l.success).inc();
                    }
                    if stream == Stream::Audit {
                        // Applied at its own event time by the correlator's timeline.
                        self.pipeline.process(&ev, &mut self.outputs);
                        take_outputs(&mut self.outputs, &mut self.turn, &self.metrics, false);
                        continue;
                    }
                    events += 1;
                    let ticket = Ticket { lane, offset };
                    self.merge.push(lane, ev.time(), ev.rank(), Pending { ev, warm: false, ticket, received });
                }
                Decoded::Counted { kind, grant, success, time } => {
                    self.counters.consumed(&self.metrics, stream, topic, kind.label()).inc();
                    self.counters.grant(&self.metrics, grant, success).inc();
                    latest = latest.max(Some(time));
                }
                Decoded::Rejected(r) => {
                    self.report.rejected += 1;
                    RecordRejected {
                        topic,
                        partition,
                        offset,
                        reason: r.reason.label(),
                        detail: &r.detail,
                        dead_lettered: self.dead_letters.is_some(),
                    }
                    .emit(&self.metrics);
                    if self.dead_letters.is_some() {
                        let raw = raw.as_ref();
                        self.turn.letters.push(DeadLetter {
                            payload: raw.map(|r| r.payload.clone()).unwrap_or_default(),
                            key: raw.and_then(|r| r.key.clone()),
                            reason: r.reason.label(),
                            detail: r.detail,
                            index: r.index,
                            topic: topic.to_string(),
                            partition,
                            offset,
                        });
                    }
                }
            }
        }
        if stream == Stream::Audit {
            return;
        }
        advance_lane(&mut self.merge, lane, events, latest);
        if let Some(gap) = self.ledger.open(lane, offset, events) {
            OffsetGap { topic, partition, from: gap.from, to: gap.to }.emit(&self.metrics);
        }
        if events == 0 {
            self.turn.done.push(Done { ticket: None, received });
        }
    }

    /// A login message re-read for warm-up: its events go through the merge
    /// and the pipeline like any other, to rebuild state, but nothing else
    /// happens. It is not counted as consumed, its rejects were dead-lettered
    /// when it was first read, and its offset is neither checked for gaps nor
    /// stored (it is below the committed offset).
    fn on_warmup_message(&mut self, lane: (Stream, i32), records: impl Iterator<Item = Decoded>, received: Instant) {
        let mut latest = None;
        let mut events = 0u32;
        for d in records {
            WarmupRecord.emit(&self.metrics);
            match d {
                Decoded::Event(ev) => {
                    events += 1;
                    let ticket = Ticket { lane, offset: 0 };
                    self.merge.push(lane, ev.time(), ev.rank(), Pending { ev, warm: true, ticket, received });
                }
                Decoded::Counted { time, .. } => latest = latest.max(Some(time)),
                Decoded::Rejected(_) => {}
            }
        }
        advance_lane(&mut self.merge, lane, events, latest);
    }

    fn on_assignment(&mut self, a: Assignment) {
        match a {
            Assignment::Assigned(ps) => {
                let partitions: Vec<i32> = ps.iter().map(|a| a.partition).collect();
                PartitionsAssigned { partitions: &partitions }.emit(&self.metrics);
                self.assign_lanes(Stream::Login, ps);
                // The activity topic's same partitions follow the login ones.
                if let Some(c) = self.activity.clone() {
                    let mirrored = kafka::mirror_assign(&c, &partitions);
                    self.assign_lanes(Stream::Activity, mirrored);
                }
            }
            Assignment::Revoked(ps) => {
                let mut dropped = self.merge.revoke(Stream::Login, &ps) as u64;
                let mut lanes: Vec<Lane> = ps.iter().map(|&p| (Stream::Login, p)).collect();
                if let Some(c) = &self.activity {
                    kafka::mirror_revoke(c, &ps);
                    dropped += self.merge.revoke(Stream::Activity, &ps) as u64;
                    lanes.extend(ps.iter().map(|&p| (Stream::Activity, p)));
                }
                PartitionsRevoked { partitions: &ps, dropped }.emit(&self.metrics);
                self.ledger.revoke(&lanes);
                for l in &lanes {
                    self.warm_until.remove(l);
                }
                // The eager protocol revokes every partition: whatever comes
                // back is read again from its committed offset and warm-up.
                self.pipeline.forget_traffic();
            }
        }
    }

    /// Lanes of `stream` assigned: where each resumes, and its warm-up range.
    fn assign_lanes(&mut self, stream: Stream, ps: Vec<Assigned>) {
        let partitions: Vec<i32> = ps.iter().map(|a| a.partition).collect();
        self.merge.assign(stream, &partitions);
        for a in ps {
            let lane = (stream, a.partition);
            // Gaps are checked from the committed offset: the warm-up
            // range before it was checked when it was first read.
            if let Some(o) = a.committed {
                self.ledger.expect(lane, o);
            }
            match (a.warmup_from, a.committed) {
                (Some(from), Some(c)) => {
                    tracing::info!(
                        stream = ?stream,
                        partition = a.partition,
                        from,
                        to = c,
                        "Re-reading messages already delivered to rebuild correlation state; their alerts are withheld."
                    );
                    self.warm_until.insert(lane, c);
                }
                _ => {
                    self.warm_until.remove(&lane);
                }
            }
        }
    }

    /// Runs every record the merge's event-time order releases through the
    /// pipeline.
    fn process(&mut self) {
        while let Some(r) = self.merge.pop_ready() {
            RecordReleased { late: r.late, forced: r.forced }.emit(&self.metrics);
            self.pipeline.process(&r.item.ev, &mut self.outputs);
            if !r.item.warm {
                self.turn.done.push(Done { ticket: Some(r.item.ticket), received: r.item.received });
            }
            take_outputs(&mut self.outputs, &mut self.turn, &self.metrics, r.item.warm);
        }
    }

    /// Hands this turn's alerts and dead letters to every sink, retrying
    /// until all accept. Gives up only on shutdown (after `grace`, if given).
    async fn deliver(&mut self, shutdown: &CancellationToken, grace: Option<Duration>) -> Result<(), SinkError> {
        if self.turn.emits.is_empty() && self.turn.letters.is_empty() {
            return Ok(());
        }
        let deadline = grace.map(|g| Instant::now() + g);
        for s in &mut self.sinks {
            s.reset();
        }
        let set_aside = self.alert_dead_letters.is_some();
        let mut letters_done = self.turn.letters.is_empty();
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut failure: Option<SinkError> = None;
            for s in &mut self.sinks {
                if s.done(&self.turn.emits) {
                    continue;
                }
                let result = s.deliver(&self.turn.emits, set_aside).await;
                match result {
                    Ok(d) => {
                        SinkDelivered { sink: &s.name, count: d.accepted }.emit(&self.metrics);
                        SinkRetried { sink: &s.name, count: d.retries }.emit(&self.metrics);
                        for r in d.refused {
                            self.turn.refused.push(RefusedAlert {
                                sink: s.name.clone(),
                                refusal: r.refusal,
                                detail: r.detail,
                                emit: self.turn.emits[r.index].clone(),
                            });
                        }
                    }
                    Err(e) => {
                        let permanent = matches!(e, SinkError::Permanent { .. });
                        SinkFailed { sink: &s.name, error: &e, permanent }.emit(&self.metrics);
                        SinkRetried { sink: &s.name, count: 1 }.emit(&self.metrics);
                        failure = Some(e);
                    }
                }
            }
            if !self.turn.refused.is_empty() {
                if let Some(adl) = &mut self.alert_dead_letters {
                    match adl.send(&self.turn.refused).await {
                        Ok(()) => {
                            for r in self.turn.refused.drain(..) {
                                AlertsDeadLettered {
                                    sink: &r.sink,
                                    reason: r.refusal.label(),
                                    detail: &r.detail,
                                    count: 1,
                                    limiter: &mut self.log_limiter,
                                }
                                .emit(&self.metrics);
                            }
                        }
                        Err(e) => {
                            AlertDeadLetterFailed { error: &e }.emit(&self.metrics);
                            failure = Some(e);
                        }
                    }
                }
            }
            if !letters_done {
                if let Some(dl) = &self.dead_letters {
                    match dl.send(&self.turn.letters).await {
                        Ok(sent) => {
                            letters_done = true;
                            let reasons: Vec<&'static str> = self.turn.letters.iter().map(|l| l.reason).collect();
                            RecordsDeadLettered { reasons: &reasons, truncated: sent.truncated, refused: sent.refused }
                                .emit(&self.metrics);
                        }
                        Err(e) => {
                            DeadLetterFailed { topic: dl.topic(), error: &e }.emit(&self.metrics);
                            failure = Some(e);
                        }
                    }
                }
            }
            let Some(err) = failure else { break };
            self.health.ready.store(false, Ordering::Relaxed);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(err);
            }
            let wait = err.retry_after().map_or(backoff, |ra| ra.max(backoff));
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if deadline.is_none() => return Err(err),
                _ = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        for e in &self.turn.emits {
            self.metrics.end_to_end_latency.observe(((now_ms - e.alert.last_time.0).max(0) as f64) / 1000.0);
        }
        self.report.alert_lines += self.turn.emits.len() as u64;
        self.turn.emits.clear();
        self.turn.letters.clear();
        Ok(())
    }

    /// Marks this turn's records finished and stores what offsets may be,
    /// on the login consumer or the activity one.
    fn store_offsets(&mut self, login: &LiveConsumer) {
        for d in self.turn.done.drain(..) {
            if let Some(t) = d.ticket {
                self.ledger.finish(t);
            }
            RecordFinished { latency: d.received.elapsed() }.emit(&self.metrics);
        }
        for s in self.ledger.storable() {
            let (stream, p) = s.lane;
            // store_offset takes the offset of the last processed message.
            let stored = match (stream, &self.activity) {
                (Stream::Activity, Some(c)) => c.store_offset(&self.activity_topic, p, s.next - 1),
                _ => login.store_offset(&self.login_topic, p, s.next - 1),
            };
            OffsetStored { partition: p, error: stored.as_ref().err().map(|e| e as &dyn std::fmt::Display) }
                .emit(&self.metrics);
        }
    }

    fn update_gauges(&mut self) {
        let m = &self.metrics;
        let c = &self.pipeline.correlator;
        m.pending_records.set(self.merge.len() as i64);
        m.open_alerts.set(self.pipeline.open_alerts() as i64);
        m.state_users.set(c.users_tracked() as i64);
        m.state_pairs.set(c.pairs_tracked() as i64);
        m.state_ips.set(c.ips_tracked() as i64);
        let stats = c.stats();
        m.sessions_open.set(stats.sessions_open as i64);
        let (a, seen) = (stats.sessions, &mut self.seen.correlate);
        let evictions = [
            ("pairs", stats.pair_evictions, &mut seen.pair_evictions),
            ("ips", stats.ip_evictions, &mut seen.ip_evictions),
            ("failure_users", stats.failure_evictions, &mut seen.failure_evictions),
            ("setup_records", stats.setup_evictions, &mut seen.setup_evictions),
            ("sessions", a.evicted_sessions, &mut seen.sessions.evicted_sessions),
            ("activity_waiting", a.evicted_waiting, &mut seen.sessions.evicted_waiting),
            ("activity_pairs", stats.activity_evictions, &mut seen.activity_evictions),
        ];
        for (kind, now, seen) in evictions {
            count_up(&m.state_evictions.with_label_values(&[kind]), now, seen);
        }
        count_up(&m.late_setup_records, stats.late_setup_records, &mut seen.late_setup_records);
        count_up(&m.activity_attributed.with_label_values(&["key"]), a.by_key, &mut seen.sessions.by_key);
        count_up(&m.activity_attributed.with_label_values(&["request"]), a.by_request, &mut seen.sessions.by_request);
        count_up(&m.activity_attributed.with_label_values(&["tuple"]), a.by_tuple, &mut seen.sessions.by_tuple);
        count_up(&m.activity_unattributed, a.unattributed, &mut seen.sessions.unattributed);
        count_up(&m.alerts_closed_early, self.pipeline.early_closes(), &mut self.seen.early_closes);
        let w = c.watermark();
        if w != crate::event::EventTime::BEGINNING {
            m.event_time_watermark.set(w.0 / 1000);
        }
    }
}

/// The correlator's and aggregator's cumulative counts as last moved into
/// the metrics (`count_up`).
#[derive(Default)]
struct Seen {
    correlate: crate::correlate::CorrelateStats,
    early_closes: u64,
}

/// Moves a Prometheus counter up to a cumulative count kept by the pipeline.
fn count_up(counter: &IntCounter, now: u64, seen: &mut u64) {
    counter.inc_by(now.saturating_sub(*seen));
    *seen = now;
}

/// A no-op `Side` for loading inventory files: rejects are logged and counted.
struct InventorySide<'a>(&'a Metrics);

impl Side for InventorySide<'_> {
    fn reject(&mut self, file: &str, line: u64, r: Reject, _excerpt: Option<&str>) {
        self.0.records_rejected.with_label_values(&[r.reason.label()]).inc();
        tracing::warn!(file, line, reason = r.reason.label(), detail = %r.detail, "Rejected inventory record.");
    }
    fn counted(&mut self, _k: crate::event::RecordKind, _g: GrantClass, _s: bool, _n: u64) {}
    fn progress(&mut self, _bytes: u64) {}
}

/// Hooks and switches for callers other than `ccwatch run` (the demo, tests).
pub struct RunOptions {
    /// Stop (as on SIGTERM) once every partition is read to its end and
    /// everything received is delivered.
    pub exit_when_caught_up: bool,
    /// Called once the metrics endpoint listens.
    pub on_start: Box<dyn FnOnce(Started) + Send>,
    /// Called each time the run becomes caught up after having been behind.
    pub on_caught_up: Box<dyn FnMut() + Send>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { exit_when_caught_up: false, on_start: Box::new(|_| {}), on_caught_up: Box::new(|| {}) }
    }
}

/// Every topic `run` writes to, with what it is for.
fn written_topics(cfg: &Config, k: &KafkaConfig) -> Vec<(String, String)> {
    use crate::config::live::{AlertDeadLetterConfig, SinkKind};
    let mut out = Vec::new();
    for s in &cfg.live.sinks {
        if let SinkKind::Kafka { topic } = &s.kind {
            out.push((format!("sink {}", s.name), topic.clone()));
        }
    }
    if let Some(t) = &k.dead_letter_topic {
        out.push(("dead-letter".to_string(), t.clone()));
    }
    if let Some(AlertDeadLetterConfig::Kafka { topic }) = &cfg.live.alert_dead_letter {
        out.push(("alert dead-letter".to_string(), topic.clone()));
    }
    out
}

/// Runs until `shutdown` is cancelled.
pub async fn run(cfg: &Config, shutdown: CancellationToken, metrics: Arc<Metrics>) -> anyhow::Result<RunReport> {
    run_with(cfg, shutdown, metrics, RunOptions::default()).await
}

pub async fn run_with(
    cfg: &Config,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    mut opts: RunOptions,
) -> anyhow::Result<RunReport> {
    let mut run = Run::build(cfg, &shutdown, metrics).await?;
    (opts.on_start)(Started { metrics_addr: run.metrics_addr });
    let failed = loop {
        match run.turn(&shutdown).await {
            TurnEnd::Continue => {}
            TurnEnd::CaughtUp => {
                (opts.on_caught_up)();
                if opts.exit_when_caught_up {
                    break None;
                }
            }
            TurnEnd::Stop => break None,
            TurnEnd::Failed(e) => break Some(e),
        }
    };
    run.shutdown(&shutdown, failed).await
}

/// How a turn of the loop ended.
enum TurnEnd {
    Continue,
    /// Every partition read to its end and everything received delivered,
    /// after having been behind.
    CaughtUp,
    /// Shutdown was asked for.
    Stop,
    /// A sink gave up (only on shutdown) or intake died.
    Failed(String),
}

/// A built run: the loop's state and the services around it.
struct Run {
    live: Live,
    intake: Intake,
    login: Arc<LiveConsumer>,
    producer: Option<FutureProducer>,
    server: tokio::task::JoinHandle<()>,
    metrics_addr: std::net::SocketAddr,
    /// The lag and stall watcher, and its stop flag.
    lag_watch: (Arc<AtomicBool>, std::thread::JoinHandle<()>),
    was_caught_up: bool,
    gauges_at: Instant,
    /// Watches the enrichment files; checked every `enrichment.reload_seconds`.
    enrichment: (Reloader, Duration, Instant),
}

impl Run {
    /// Starts the metrics endpoint, sinks, inventory baseline, consumers and
    /// intake; checks every topic written to.
    async fn build(cfg: &Config, shutdown: &CancellationToken, metrics: Arc<Metrics>) -> anyhow::Result<Run> {
        let k = cfg.live.kafka.clone().context("`run` needs a [kafka] section in the config")?;
        if cfg.live.sinks.is_empty() {
            anyhow::bail!("`run` needs at least one [[sinks]] entry in the config");
        }
        let health = Arc::new(Health::default());
        let (metrics_addr, server) =
            crate::telemetry::server::serve(cfg.live.metrics_listen, metrics.clone(), health.clone(), shutdown.clone())
                .await
                .with_context(|| format!("cannot listen on {}", cfg.live.metrics_listen))?;
        tracing::info!(%metrics_addr, "Serving /metrics, /healthz and /readyz.");

        let needs_producer = k.dead_letter_topic.is_some()
            || cfg.live.sinks.iter().any(|s| matches!(s.kind, crate::config::live::SinkKind::Kafka { .. }))
            || matches!(cfg.live.alert_dead_letter, Some(crate::config::live::AlertDeadLetterConfig::Kafka { .. }));
        let producer: Option<FutureProducer> = if needs_producer {
            Some(
                // acks=all: an alert counts as delivered once the topic has it.
                // linger 1 ms: the loop awaits each batch's acks, so lingering
                // longer only adds latency. producer_properties override both.
                kafka::producer_config(&k, &[("acks", "all"), ("linger.ms", "1"), ("message.timeout.ms", "30000")])
                    .create_with_context::<_, FutureProducer>(rdkafka::client::DefaultClientContext)
                    .context("cannot create Kafka producer")?,
            )
        } else {
            None
        };
        let sinks =
            cfg.live.sinks.iter().map(|s| Sink::new(s, producer.as_ref())).collect::<anyhow::Result<Vec<_>>>()?;
        // Every sink's counters at 0 from start-up; the dead letters count
        // under their own sink labels, and refuse nothing.
        let configured: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
        metrics.preset(
            &configured,
            &crate::sink::live::Refusal::ALL.map(|r| r.label()),
            &crate::decode::RejectReason::ALL.map(|r| r.label()),
        );
        let dead_letter_sinks = [
            k.dead_letter_topic.is_some().then_some(crate::telemetry::events::DEAD_LETTER_SINK),
            cfg.live.alert_dead_letter.is_some().then_some(crate::telemetry::events::ALERT_DEAD_LETTER_SINK),
        ];
        metrics.preset(&dead_letter_sinks.into_iter().flatten().collect::<Vec<_>>(), &[], &[]);
        let dead_letters = match (&k.dead_letter_topic, &producer) {
            (Some(t), Some(p)) => Some(DeadLetters::new(p.clone(), t.clone(), k.producer_message_max_bytes())),
            _ => None,
        };
        let alert_dead_letters =
            cfg.live.alert_dead_letter.as_ref().map(|d| AlertDeadLetters::new(d, producer.as_ref())).transpose()?;

        let mut pipeline = Pipeline::new(cfg);
        let enrichment = Arc::new(Enrichment::load(&cfg.enrichment)?);
        tracing::info!(loaded = %enrichment.describe(), "Enrichment loaded.");
        pipeline.correlator.set_enrichment(enrichment.clone());
        let reloader = Reloader::new(cfg.enrichment.clone(), enrichment);
        if !cfg.live.inventory.is_empty() {
            let found = discover(&cfg.live.inventory)?;
            for p in &found.skipped {
                tracing::warn!(path = %p.display(), "Inventory directory entry is not a regular file; not read.");
            }
            let cancel = Arc::new(AtomicBool::new(false));
            let (applied, _) = crate::app::load_inventory(
                &found.files,
                cfg,
                true,
                cancel,
                &mut pipeline,
                &mut InventorySide(&metrics),
            );
            tracing::info!(?applied, "Inventory baseline applied.");
        }

        let login = Arc::new(kafka::login_consumer(&k).context("cannot create the login consumer")?);
        kafka::check_topics(&login, &written_topics(cfg, &k))?;
        let mut audit_progress = AuditProgress::default();
        let audit = match &k.audit_topic {
            Some(t) => {
                let (c, parts) = kafka::audit_consumer(&k, t, metrics.clone())?;
                audit_progress.eof.extend(parts.iter().map(|p| (*p, false)));
                Some(Arc::new(c))
            }
            None => None,
        };
        let activity = match &k.activity_topic {
            Some(t) => {
                let logins = kafka::partitions_of(&login, "login", &k.login_topic)?.len();
                let own = kafka::partitions_of(&login, "activity", t)?.len();
                if own != logins {
                    anyhow::bail!(
                        "activity topic {t} has {own} partitions and login topic {} has {logins}: they must match, keyed by user id alike, so a user's grants and activity meet on one instance",
                        k.login_topic
                    );
                }
                Some(Arc::new(kafka::activity_consumer(&k, t).context("cannot create the activity consumer")?))
            }
            None => None,
        };
        let watched: Vec<Arc<LiveConsumer>> =
            std::iter::once(login.clone()).chain(audit.clone()).chain(activity.clone()).collect();
        let lag_stop = Arc::new(AtomicBool::new(false));
        let lag_watch =
            kafka::spawn_lag_watch(watched, metrics.clone(), k.lag_interval, k.stall_after, lag_stop.clone())
                .context("cannot start the lag thread")?;
        let gauges = PauseGauges { paused: metrics.intake_paused.clone(), pauses: metrics.intake_pauses.clone() };
        let intake =
            Intake::spawn(login.clone(), audit, activity.clone(), gauges).context("cannot start the intake thread")?;
        let mut live = Live::new(pipeline, metrics, health, &k.login_topic, k.audit_topic.as_deref(), k.max_pending);
        live.audit = audit_progress;
        live.activity = activity;
        live.activity_topic = k.activity_topic.clone().unwrap_or_default();
        live.sinks = sinks;
        live.dead_letters = dead_letters;
        live.alert_dead_letters = alert_dead_letters;
        Ok(Run {
            live,
            intake,
            login,
            producer,
            server,
            metrics_addr,
            lag_watch: (lag_stop, lag_watch),
            was_caught_up: false,
            gauges_at: Instant::now(),
            enrichment: (reloader, Duration::from_secs(cfg.enrichment.reload_seconds.max(1)), Instant::now()),
        })
    }

    /// One turn: take what intake has queued (up to `BATCH` messages), run
    /// what the merge releases through the pipeline, deliver, store offsets.
    async fn turn(&mut self, shutdown: &CancellationToken) -> TurnEnd {
        let live = &mut self.live;
        let chunk = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return TurnEnd::Stop,
            c = self.intake.rx.recv() => match c {
                Some(c) => Some(c),
                None => return TurnEnd::Failed("the intake thread stopped".to_string()),
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => None,
        };
        if let Some(c) = chunk {
            let mut taken = c.items.len();
            live.on_chunk(c);
            while taken < BATCH {
                let Ok(c) = self.intake.rx.try_recv() else { break };
                taken += c.items.len();
                live.on_chunk(c);
            }
        }
        live.process();
        if let Err(e) = live.deliver(shutdown, None).await {
            return TurnEnd::Failed(e.to_string());
        }
        live.store_offsets(&self.login);
        let audit_ok = live.audit.caught_up();
        live.metrics.audit_caught_up.set(i64::from(audit_ok));
        live.health.ready.store(live.assigned && audit_ok, Ordering::Relaxed);
        let caught_up = live.assigned
            && audit_ok
            && live.merge.is_empty()
            && live.merge.caught_up(Stream::Login)
            && live.merge.caught_up(Stream::Activity);
        // State gauges walk the correlator's pairs: once a second, and whenever
        // the run catches up or falls behind, not on every 20 ms idle turn.
        if caught_up != self.was_caught_up || self.gauges_at.elapsed() >= GAUGE_PERIOD {
            live.update_gauges();
            self.gauges_at = Instant::now();
        }
        let (reloader, every, at) = &mut self.enrichment;
        if at.elapsed() >= *every {
            *at = Instant::now();
            let reloads = reloader.poll();
            for r in &reloads {
                let error = r.result.as_ref().err().map(|e| e as &dyn std::fmt::Display);
                EnrichmentReloaded { file: r.kind.label(), error }.emit(&live.metrics);
            }
            if reloads.iter().any(|r| r.result.is_ok()) {
                live.pipeline.correlator.set_enrichment(reloader.current.clone());
            }
        }
        let newly = caught_up && !self.was_caught_up;
        self.was_caught_up = caught_up;
        if newly {
            tracing::info!(messages = live.report.messages, "Caught up with every partition.");
            return TurnEnd::CaughtUp;
        }
        TurnEnd::Continue
    }

    /// Stops intake, processes what event-time order allows of what was
    /// received, delivers, commits and flushes. What the merge still holds
    /// stays uncommitted and is read again on restart.
    async fn shutdown(self, shutdown: &CancellationToken, mut failed: Option<String>) -> anyhow::Result<RunReport> {
        let Run { mut live, mut intake, login, producer, server, lag_watch, .. } = self;
        live.health.ready.store(false, Ordering::Relaxed);
        intake.stop();
        lag_watch.0.store(true, Ordering::Relaxed);
        if failed.is_none() {
            while let Some(c) = intake.rx.recv().await {
                live.on_chunk(c);
            }
            live.process();
            if let Err(e) = live.deliver(shutdown, Some(SHUTDOWN_GRACE)).await {
                failed = Some(e.to_string());
            } else {
                live.store_offsets(&login);
            }
        }
        // Dropping the receiver ends the thread even if it is blocked sending.
        let _ = tokio::task::spawn_blocking(move || {
            intake.join();
            let _ = lag_watch.1.join();
        })
        .await;
        live.update_gauges();
        let consumers = std::iter::once(&login).chain(live.activity.as_ref());
        let committed: Vec<bool> = consumers
            .map(|c| match c.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => true,
                // Nothing stored since the last auto-commit: everything is already committed.
                Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "Final offset commit failed.");
                    false
                }
            })
            .collect();
        live.report.offsets_committed = committed.iter().all(|c| *c);
        for s in &mut live.sinks {
            if let Err(e) = s.flush() {
                tracing::error!(sink = %s.name, error = %e, "Sink flush failed.");
                failed.get_or_insert(e);
            }
        }
        if let Some(p) = &producer {
            let _ = rdkafka::producer::Producer::flush(p, Duration::from_secs(10));
        }
        login.unsubscribe();
        shutdown.cancel();
        let _ = server.await;
        match failed {
            None => Ok(live.report),
            Some(e) => anyhow::bail!(
                "stopped with alerts not delivered ({e}); their offsets were not committed, so they are redelivered on restart"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The run loop's rebalance rules, driven message by message without a
    //! broker: what a revocation forgets and how what comes back is read.
    use super::*;
    use crate::source::intake::Received;
    use crate::source::kafka::Assigned;

    fn bare() -> Live {
        let metrics = Arc::new(Metrics::new());
        Live::new(Pipeline::new(&Config::default()), metrics, Arc::new(Health::default()), "logins", None, 10_000)
    }

    /// The sample client-credentials grant, for `user` at `time`.
    fn grant(user: &str, time: &str) -> Vec<Decoded> {
        let samples =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/logins/login-events.jsonl"));
        let line = samples.unwrap().lines().find(|l| l.contains("OAuth Client Credentials")).unwrap().to_string();
        let mut v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["EventDate"] = time.into();
        v["CreatedDate"] = time.into();
        v["EventIdentifier"] = format!("{user}-{time}").into();
        v["UserId"] = user.into();
        v["Username"] = format!("{user}@example.com").into();
        let mut out = Vec::new();
        crate::decode::decode_json_unit(v.to_string().as_bytes(), &mut out);
        assert!(matches!(out.as_slice(), [Decoded::Event(_)]), "{out:?}");
        out
    }

    const U: &str = "005000000000001AAA";
    const V: &str = "005000000000002AAA";

    fn message(live: &mut Live, partition: i32, offset: i64, user: &str, time: &str) {
        let d = grant(user, time);
        let msg = Received::for_test(Stream::Login, partition, offset, d.len() as u32);
        live.on_message(msg, d.into_iter(), Instant::now());
    }

    /// The day's grants for `user`: 06:00, 06:10, … one per offset.
    fn morning(live: &mut Live, partition: i32, offsets: std::ops::Range<i64>, user: &str) {
        for o in offsets {
            message(live, partition, o, user, &format!("2024-07-09T06:{:02}:00.000+0000", o * 5));
        }
    }

    /// A grant the next day, past the first day's close.
    const NEXT_DAY: &str = "2024-07-10T02:00:00.000+0000";

    fn assign(live: &mut Live, ps: &[(i32, Option<i64>, Option<i64>)]) {
        let ps = ps.iter().map(|&(partition, committed, warmup_from)| Assigned { partition, committed, warmup_from });
        live.on_assignment(Assignment::Assigned(ps.collect()));
    }

    /// One turn as if every sink accepted: the lines written.
    fn turn(live: &mut Live, eof: &[i32]) -> Vec<Emit> {
        for &p in eof {
            live.merge.set_eof((Stream::Login, p));
        }
        live.process();
        for d in live.turn.done.drain(..) {
            if let Some(t) = d.ticket {
                live.ledger.finish(t);
            }
        }
        let _ = live.ledger.storable();
        std::mem::take(&mut live.turn.emits)
    }

    fn lines_of(emits: &[Emit], user: &str) -> Vec<(EmitKind, u64)> {
        let day = "2024-07-09";
        let of = |e: &&Emit| e.alert.user_id.as_deref() == Some(user) && e.alert.first_seen.starts_with(day);
        emits.iter().filter(of).map(|e| (e.kind, e.alert.count)).collect()
    }

    #[test]
    fn a_rebalance_during_warm_up_counts_nothing_twice() {
        let mut live = bare();
        assign(&mut live, &[(0, Some(4), Some(0))]);
        morning(&mut live, 0, 0..2, U);
        assert!(turn(&mut live, &[0]).is_empty(), "warm-up lines are withheld");
        live.on_assignment(Assignment::Revoked(vec![0]));
        assign(&mut live, &[(0, Some(4), Some(0))]);
        morning(&mut live, 0, 0..6, U);
        let mut emits = turn(&mut live, &[0]);
        message(&mut live, 0, 6, U, NEXT_DAY);
        emits.extend(turn(&mut live, &[0]));
        assert_eq!(lines_of(&emits, U), [(EmitKind::Closed, 6)], "six grants, each counted once");
    }

    #[test]
    fn a_revoked_partitions_alerts_are_not_closed_by_its_former_owner() {
        let mut live = bare();
        assign(&mut live, &[(0, None, None), (1, None, None)]);
        morning(&mut live, 0, 0..2, U);
        assert_eq!(lines_of(&turn(&mut live, &[0, 1]), U), [(EmitKind::Raised, 1)]);
        live.on_assignment(Assignment::Revoked(vec![0, 1]));
        assign(&mut live, &[(1, Some(0), None)]);
        // Event time moves past U's day on the partition this instance kept.
        message(&mut live, 1, 0, V, NEXT_DAY);
        let emits = turn(&mut live, &[1]);
        assert!(lines_of(&emits, U).is_empty(), "U's alert (count 2 so far) is its new owner's to close");
        assert_eq!(live.pipeline.open_alerts(), 1, "only V's");
    }

    #[test]
    fn redelivered_messages_it_had_delivered_rebuild_state_without_new_lines() {
        let mut live = bare();
        assign(&mut live, &[(0, Some(0), None)]);
        morning(&mut live, 0, 0..4, U);
        assert_eq!(lines_of(&turn(&mut live, &[0]), U), [(EmitKind::Raised, 1)]);
        // Revoked before the commit of offsets 0-3 landed; back from offset 0.
        live.on_assignment(Assignment::Revoked(vec![0]));
        assign(&mut live, &[(0, Some(0), None)]);
        morning(&mut live, 0, 0..5, U);
        let mut emits = turn(&mut live, &[0]);
        message(&mut live, 0, 5, U, NEXT_DAY);
        emits.extend(turn(&mut live, &[0]));
        assert_eq!(lines_of(&emits, U), [(EmitKind::Closed, 5)]);
        assert_eq!(live.metrics.redelivered_withheld.get(), 4);
    }
}
