//! Live intake: one thread that receives messages from both Kafka consumers,
//! decodes each (the same `decode_json_unit` replay uses) and hands them to
//! the run loop in chunks, in the order received, with end-of-partition
//! markers and partition assignment changes in-band.
//!
//! Why a thread of its own: profiling `make bench-kafka` showed the single
//! loop thread spending ~40% of its time decoding and ~20% in librdkafka's
//! receive path, and a plain consumer drawing records from the broker ~1.5×
//! faster than the loop could take them. Receive + decode now run here, while
//! the run loop merges, correlates, scores, delivers and stores offsets.
//! Decoding stays pure: this module only moves its results between threads.
//!
//! Backpressure: the channel holds a few chunks; when the run loop stops
//! taking them (a failing sink), this thread stops receiving, exactly as the
//! single loop did. Order: a rebalance callback runs inside `recv` on this
//! thread, so an assignment change is queued before any message of the new
//! assignment.
//!
//! Stopping: cancel the token; the chunk being filled is still sent (the run
//! loop drains the channel to finish in-flight records), then the thread
//! ends. If the run loop drops the receiver instead, the thread ends at its
//! next send.

use crate::decode::{self, Decoded, Reject, RejectReason};
use crate::source::kafka::{self, Assignment, LiveConsumer};
use crate::source::merge::{Lane, Stream};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages per chunk at most (a chunk is whatever is already buffered).
pub const CHUNK: usize = 1024;
/// Chunks queued between intake and the run loop.
const QUEUE: usize = 8;

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
    /// Every message's records, in message order.
    pub decoded: Vec<Decoded>,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk { received: Instant::now(), items: Vec::with_capacity(CHUNK), decoded: Vec::with_capacity(CHUNK) }
    }

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
        let value = msg.payload().unwrap_or_default();
        let before = self.decoded.len();
        decode_message(value, &mut self.decoded);
        let new = &self.decoded[before..];
        let raw = new
            .iter()
            .any(|d| matches!(d, Decoded::Rejected(_)))
            .then(|| Raw { payload: value.to_vec(), key: msg.key().map(<[u8]>::to_vec) });
        self.items.push(Item::Message(Received {
            stream,
            partition: msg.partition(),
            offset: msg.offset(),
            records: new.len() as u32,
            raw,
        }));
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

/// The running intake thread.
pub struct Intake {
    pub rx: mpsc::Receiver<Chunk>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Intake {
    /// Starts receiving from `login` (and `audit`, if any).
    pub fn spawn(login: Arc<LiveConsumer>, audit: Option<Arc<LiveConsumer>>) -> std::io::Result<Intake> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let thread = std::thread::Builder::new().name("ccwatch-intake".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "Intake cannot start its runtime.");
                    return;
                }
            };
            rt.block_on(receive(login, audit, tx, token));
        })?;
        Ok(Intake { rx, stop, thread: Some(thread) })
    }

    /// Stops intake. The caller then drains `rx` until it yields `None` (to
    /// finish in-flight records) or drops it, and calls `join`.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the thread to end (it ends once stopped and its last chunk is
    /// taken, or once `rx` is dropped).
    pub fn join(mut self) {
        drop(self.rx);
        if let Some(t) = self.thread.take() {
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
    tx: mpsc::Sender<Chunk>,
    stop: CancellationToken,
) {
    let audit = audit.as_deref();
    loop {
        let mut chunk = Chunk::new();
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            m = recv_opt(audit) => (Stream::Audit, m),
            m = login.recv() => (Stream::Login, m),
        };
        chunk.received = Instant::now();
        take_assignments(&login, &mut chunk);
        chunk.add(first.0, first.1);
        while chunk.items.len() < CHUNK {
            let next = tokio::select! {
                biased;
                m = recv_opt(audit) => (Stream::Audit, m),
                m = login.recv() => (Stream::Login, m),
                _ = std::future::ready(()) => break,
            };
            // A rebalance runs inside `recv`: its change goes before the message.
            take_assignments(&login, &mut chunk);
            chunk.add(next.0, next.1);
        }
        take_assignments(&login, &mut chunk);
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

fn take_assignments(login: &LiveConsumer, chunk: &mut Chunk) {
    if kafka::assignments_pending(login) {
        chunk.items.extend(kafka::take_assignments(login).into_iter().map(Item::Assignment));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
