//! Live intake: two threads between the Kafka consumers and the run loop.
//! The *receive* thread takes messages from every consumer (logins, setup
//! audit, and activity when `kafka.activity_topic` is set) and copies them
//! into chunks, with end-of-partition markers and partition assignment
//! changes in-band, in the order received. The *decode* thread decodes each
//! message (the same `decode_json_unit` replay uses) and hands the chunk to
//! the run loop.
//!
//! Why threads: profiling `make bench-kafka` showed the single loop thread
//! spending ~40% of its time decoding and ~25% in librdkafka's receive path,
//! while a plain consumer drew records from the broker ~1.5× faster than the
//! loop took them. With receive, decode and the loop (merge, correlate,
//! score, deliver, store offsets) on three threads, each stage has a core's
//! worth of time. Decoding stays pure: this module only moves its inputs and
//! results between threads.
//!
//! Backpressure: each channel holds a few chunks; when the run loop stops
//! taking them (a failing sink), decode and then receive stop taking more.
//! Receive does not simply block, though: librdkafka counts a consumer that
//! is not polled for `max.poll.interval.ms` (5 min by default) as dead and
//! leaves the group, which hands its partitions to another instance and
//! rebalances the whole group again when it returns. So once the run loop has
//! taken nothing for `PAUSE_AFTER`, receive pauses every assigned partition
//! and keeps polling (rebalance callbacks still run; messages already fetched
//! join the waiting chunk), and resumes them when the chunk is taken. Order:
//! a rebalance callback runs inside `recv` on the receive thread, so an
//! assignment change is queued before any message of the new assignment.
//!
//! Stopping: cancel the token; the chunk being filled is still sent and
//! decoded (the run loop drains the channel to finish in-flight records),
//! then both threads end. If the run loop drops the receiver instead, they
//! end at their next send.

use crate::decode::{self, Decoded, Reject, RejectReason};
use crate::source::kafka::{self, Assignment, LiveConsumer};
use crate::source::merge::{Lane, Stream};
use prometheus::{IntCounter, IntGauge};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages per chunk at most (a chunk is whatever is already buffered).
const CHUNK: usize = 1024;
/// Login messages taken between two polls of an audit topic found empty.
const AUDIT_RECHECK: u32 = 64;
/// Chunks queued between intake and the run loop.
const QUEUE: usize = 8;
/// How long a chunk may wait for the run loop before receive pauses its
/// partitions. A healthy loop takes a chunk within milliseconds, even when it
/// is the bottleneck; pausing discards librdkafka's prefetched messages, so
/// it is kept for real stalls. Far below any sane `max.poll.interval.ms`.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// The pause state, for /metrics.
#[derive(Clone)]
pub struct PauseGauges {
    pub paused: IntGauge,
    pub pauses: IntCounter,
}

/// One consumed message and how many decoded records it gave.
#[derive(Debug)]
pub struct Received {
    pub stream: Stream,
    pub partition: i32,
    pub offset: i64,
    /// Its records: the next `records` entries of the chunk's `decoded`.
    pub records: u32,
    /// The original bytes, kept only when a record was rejected (dead letters).
    pub raw: Option<Raw>,
    /// Where its value and key sit in the chunk's `bytes` (until decoded).
    payload: Range<usize>,
    key: Option<Range<usize>>,
}

#[cfg(test)]
impl Received {
    /// A login or audit message as the run loop sees it, for its tests.
    pub fn for_test(stream: Stream, partition: i32, offset: i64, records: u32) -> Received {
        Received { stream, partition, offset, records, raw: None, payload: 0..0, key: None }
    }
}

#[derive(Debug)]
pub struct Raw {
    pub payload: Vec<u8>,
    pub key: Option<Vec<u8>>,
}

#[derive(Debug)]
pub enum Item {
    Message(Received),
    /// The lane has delivered everything it has for now.
    Eof(Lane),
    /// The login consumer's assignment changed.
    Assignment(Assignment),
}

/// What intake hands over at once.
#[derive(Debug)]
pub struct Chunk {
    /// When its first message was received: processing latency is measured
    /// from here, so it is never understated.
    pub received: Instant,
    pub items: Vec<Item>,
    /// Every message's records, in message order (filled by `decode`).
    pub decoded: Vec<Decoded>,
    /// The messages' values and keys, copied out of librdkafka's buffers.
    bytes: Vec<u8>,
}

impl Chunk {
    /// A chunk whose first message was just received.
    fn new() -> Chunk {
        Chunk {
            received: Instant::now(),
            items: Vec::with_capacity(CHUNK),
            decoded: Vec::with_capacity(CHUNK),
            bytes: Vec::with_capacity(CHUNK * 1024),
        }
    }

    /// Receive stage: copies the message out (the consumer's buffer is
    /// released at once), or records the end of a partition.
    fn add(&mut self, stream: Stream, m: Result<BorrowedMessage<'_>, KafkaError>) {
        let msg = match m {
            Ok(msg) => msg,
            Err(KafkaError::PartitionEOF(p)) => {
                self.items.push(Item::Eof((stream, p)));
                return;
            }
            Err(e) => {
                tracing::warn!(stream = ?stream, error = %e, "Consumer error.");
                return;
            }
        };
        self.push_message(stream, msg.partition(), msg.offset(), msg.payload().unwrap_or_default(), msg.key());
    }

    fn push_message(&mut self, stream: Stream, partition: i32, offset: i64, value: &[u8], key: Option<&[u8]>) {
        let mut copy = |b: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(b);
            start..self.bytes.len()
        };
        let payload = copy(value);
        let key = key.map(copy);
        self.items.push(Item::Message(Received { stream, partition, offset, records: 0, raw: None, payload, key }));
    }

    /// Decode stage: every message's records, and the original bytes of any
    /// message with a rejected record.
    fn decode(&mut self) {
        for item in &mut self.items {
            let Item::Message(m) = item else { continue };
            let value = &self.bytes[m.payload.clone()];
            let before = self.decoded.len();
            decode_message(value, &mut self.decoded);
            let new = &self.decoded[before..];
            m.records = new.len() as u32;
            if new.iter().any(|d| matches!(d, Decoded::Rejected(_))) {
                m.raw = Some(Raw { payload: value.to_vec(), key: m.key.clone().map(|k| self.bytes[k].to_vec()) });
            }
        }
        self.bytes = Vec::new();
    }
}

/// Decodes one message value, appending to `out`: one JSON record (or a
/// document of several), in any shape replay accepts. Empty and oversized
/// values are rejected.
pub fn decode_message(value: &[u8], out: &mut Vec<Decoded>) {
    if value.is_empty() {
        out.push(Decoded::Rejected(Reject {
            reason: RejectReason::MissingField,
            detail: "message has no value".into(),
            index: None,
        }));
    } else if value.len() > decode::MAX_UNIT_BYTES {
        out.push(Decoded::Rejected(Reject {
            reason: RejectReason::RecordTooLarge,
            detail: format!("message of {} bytes", value.len()),
            index: None,
        }));
    } else {
        decode::decode_json_unit(value, out);
    }
}

/// The running intake: a receive thread and a decode thread.
pub struct Intake {
    pub rx: mpsc::Receiver<Chunk>,
    stop: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Intake {
    /// Starts receiving from `login` (and `audit`, if any).
    pub fn spawn(
        login: Arc<LiveConsumer>,
        audit: Option<Arc<LiveConsumer>>,
        activity: Option<Arc<LiveConsumer>>,
        gauges: PauseGauges,
    ) -> std::io::Result<Intake> {
        let (raw_tx, mut raw_rx) = mpsc::channel::<Chunk>(QUEUE);
        let (tx, rx) = mpsc::channel(QUEUE);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let receiver = std::thread::Builder::new().name("ccwatch-intake".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "Intake cannot start its runtime.");
                    return;
                }
            };
            rt.block_on(receive(login, audit, activity, raw_tx, token, gauges));
        })?;
        let decoder = std::thread::Builder::new().name("ccwatch-decode".into()).spawn(move || {
            while let Some(mut chunk) = raw_rx.blocking_recv() {
                chunk.decode();
                if tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
        })?;
        Ok(Intake { rx, stop, threads: vec![receiver, decoder] })
    }

    /// Stops intake. The caller then drains `rx` until it yields `None` (to
    /// finish in-flight records) or drops it, and calls `join`.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the threads to end (they end once stopped and their last
    /// chunk is taken, or once `rx` is dropped).
    pub fn join(self) {
        drop(self.rx);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

async fn recv_opt(c: Option<&LiveConsumer>) -> Result<BorrowedMessage<'_>, KafkaError> {
    match c {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

async fn receive(
    login: Arc<LiveConsumer>,
    audit: Option<Arc<LiveConsumer>>,
    activity: Option<Arc<LiveConsumer>>,
    tx: mpsc::Sender<Chunk>,
    stop: CancellationToken,
    gauges: PauseGauges,
) {
    let (audit, activity) = (audit.as_deref(), activity.as_deref());
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            m = recv_opt(audit) => (Stream::Audit, m),
            m = login.recv() => (Stream::Login, m),
            m = recv_opt(activity) => (Stream::Activity, m),
        };
        let mut chunk = Chunk::new();
        take_assignments(&login, &mut chunk);
        chunk.add(first.0, first.1);
        // Audit first while it has records (a backlog at start is read before
        // the logins it orders); once a poll finds it empty, it is polled again
        // only after `AUDIT_RECHECK` login messages (and at every chunk's
        // start): an empty poll per login message cost the intake thread a
        // fifth of its time in librdkafka's queue lock and clock reads.
        let mut audit_wait = 0u32;
        while chunk.items.len() < CHUNK {
            let poll_audit = audit_wait == 0;
            let next = tokio::select! {
                biased;
                m = recv_opt(audit), if poll_audit => (Stream::Audit, m),
                m = login.recv() => (Stream::Login, m),
                m = recv_opt(activity) => (Stream::Activity, m),
                _ = std::future::ready(()) => break,
            };
            audit_wait = match (poll_audit, next.0) {
                (true, Stream::Login | Stream::Activity) => AUDIT_RECHECK,
                _ => audit_wait.saturating_sub(1),
            };
            // A rebalance runs inside `recv`: its change goes before the message.
            take_assignments(&login, &mut chunk);
            chunk.add(next.0, next.1);
        }
        take_assignments(&login, &mut chunk);
        if !hand_over(chunk, &login, audit, activity, &tx, &stop, &gauges).await {
            return;
        }
    }
}

/// Hands `chunk` to the decode thread. If it is not taken within
/// `PAUSE_AFTER`, pauses every assigned partition of both consumers and keeps
/// polling them until it is (see the module doc), then resumes them. Whatever
/// polling still yields (messages fetched before the pause, end-of-partition
/// markers, assignment changes) joins the chunk, in order; a partition
/// assigned meanwhile is paused too. False once the decode thread is gone.
async fn hand_over(
    mut chunk: Chunk,
    login: &LiveConsumer,
    audit: Option<&LiveConsumer>,
    activity: Option<&LiveConsumer>,
    tx: &mpsc::Sender<Chunk>,
    stop: &CancellationToken,
    gauges: &PauseGauges,
) -> bool {
    match tokio::time::timeout(PAUSE_AFTER, tx.reserve()).await {
        Ok(Ok(permit)) => {
            permit.send(chunk);
            return true;
        }
        Ok(Err(_)) => return false,
        Err(_) => {}
    }
    tracing::warn!(
        "The run loop has taken nothing for {} ms (a sink failing?): pausing consumption; \
         still polling, so this instance keeps its partitions.",
        PAUSE_AFTER.as_millis()
    );
    gauges.paused.set(1);
    gauges.pauses.inc();
    set_paused(login, audit, activity, true);
    let taken = loop {
        let polled = tokio::select! {
            biased;
            p = tx.reserve() => break p.map(|p| p.send(chunk)).is_ok(),
            // Shutdown: the run loop drains the channel, so this send ends.
            _ = stop.cancelled() => break tx.send(chunk).await.is_ok(),
            m = recv_opt(audit) => (Stream::Audit, m),
            m = login.recv() => (Stream::Login, m),
            m = recv_opt(activity) => (Stream::Activity, m),
        };
        let reassigned = take_assignments(login, &mut chunk);
        chunk.add(polled.0, polled.1);
        if reassigned {
            set_paused(login, audit, activity, true);
        }
    };
    gauges.paused.set(0);
    if taken && !stop.is_cancelled() {
        set_paused(login, audit, activity, false);
        tracing::info!("The run loop took the waiting messages: consumption resumed.");
    }
    taken
}

/// Pauses or resumes every partition currently assigned to either consumer.
fn set_paused(login: &LiveConsumer, audit: Option<&LiveConsumer>, activity: Option<&LiveConsumer>, pause: bool) {
    for c in std::iter::once(login).chain(audit).chain(activity) {
        let result = c.assignment().and_then(|tpl| match pause {
            _ if tpl.count() == 0 => Ok(()),
            true => c.pause(&tpl),
            false => c.resume(&tpl),
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, pause, "Cannot pause or resume partitions.");
        }
    }
}

/// Queues the login consumer's assignment changes, if any; true when there were.
fn take_assignments(login: &LiveConsumer, chunk: &mut Chunk) -> bool {
    if !kafka::assignments_pending(login) {
        return false;
    }
    let changes = kafka::take_assignments(login);
    let any = !changes.is_empty();
    chunk.items.extend(changes.into_iter().map(Item::Assignment));
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoded_chunk_keeps_message_order_record_counts_and_only_rejected_bytes() {
        let login = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reference/s3_login_event_stream_payload.json"
        ))
        .unwrap();
        let mut chunk = Chunk::new();
        chunk.push_message(Stream::Login, 0, 10, login.as_bytes(), Some(b"k1"));
        chunk.items.push(Item::Eof((Stream::Audit, 0)));
        chunk.push_message(Stream::Login, 1, 7, b"\xff garbage", Some(b"k2"));
        chunk.push_message(Stream::Login, 0, 11, b"", None);
        chunk.decode();
        assert!(chunk.bytes.is_empty(), "copied bytes are released once decoded");
        let msgs: Vec<&Received> = chunk
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Message(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(msgs.iter().map(|m| (m.partition, m.offset)).collect::<Vec<_>>(), [(0, 10), (1, 7), (0, 11)]);
        assert!(matches!(chunk.items[1], Item::Eof((Stream::Audit, 0))));
        assert_eq!(msgs.iter().map(|m| m.records).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(chunk.decoded.len(), 3);
        assert!(matches!(chunk.decoded[0], Decoded::Event(_) | Decoded::Counted { .. }), "{:?}", chunk.decoded[0]);
        assert!(msgs[0].raw.is_none(), "a good message keeps no copy");
        let raw = msgs[1].raw.as_ref().expect("a rejected message keeps its bytes for the dead-letter topic");
        assert_eq!(raw.payload, b"\xff garbage");
        assert_eq!(raw.key.as_deref(), Some(&b"k2"[..]));
        assert!(matches!(&chunk.decoded[1], Decoded::Rejected(r) if r.reason == RejectReason::InvalidUtf8));
        assert!(matches!(&chunk.decoded[2], Decoded::Rejected(r) if r.reason == RejectReason::MissingField));
        assert_eq!(msgs[2].raw.as_ref().map(|r| r.key.is_none()), Some(true));
    }

    #[test]
    fn empty_and_oversized_messages_are_rejected_with_their_reason() {
        let mut out = Vec::new();
        decode_message(b"", &mut out);
        decode_message(&vec![b' '; decode::MAX_UNIT_BYTES + 1], &mut out);
        decode_message(b"{\"not\":\"a record\"}", &mut out);
        let reasons: Vec<_> = out
            .iter()
            .map(|d| match d {
                Decoded::Rejected(r) => r.reason,
                other => panic!("expected a reject, got {other:?}"),
            })
            .collect();
        assert_eq!(reasons[0], RejectReason::MissingField);
        assert_eq!(reasons[1], RejectReason::RecordTooLarge);
        assert_eq!(reasons.len(), 3);
    }
}
