//! Kafka consumers for live mode, and the librdkafka context that routes its
//! logs and rebalances into tracing and the run loop; a watcher thread
//! measures lag and stalls against the broker's watermarks.
//!
//! Two consumers, by design (three with `kafka.activity_topic`, see
//! `activity_consumer`):
//! - **logins**: a consumer group (`kafka.group_id`) subscribed to the login
//!   topic, so instances split the load. Auto-commit is on, but
//!   `enable.auto.offset.store=false`: an offset is stored only after every
//!   sink accepted the alerts of that message and of every earlier one.
//! - **audit**: the setup-audit topic, assigned manually (every partition,
//!   from the beginning) and never committed, so every instance knows every
//!   user's privileges.
//!
//! Both report end-of-partition (`enable.partition.eof`), which the event-time
//! merge uses to know a lane has nothing older to deliver.
//!
//! On each assignment the rebalance callback also reads the group's committed
//! offsets (one round trip), so the run loop can tell when the first message
//! of a partition comes later than where reading should resume: offsets the
//! broker skipped are counted, never passed over silently. With
//! `kafka.warmup_messages` it then starts each partition that many messages
//! before its committed offset, so the correlator's state (IP history,
//! failure windows) is rebuilt from records already delivered; the run loop
//! withholds their alerts. That is why this context does the rebalance itself
//! instead of rdkafka's default: start offsets must be set before `assign`.

use crate::config::live::KafkaConfig;
use crate::telemetry::events::{InternalEvent, PartitionStalled};
use crate::telemetry::Metrics;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A partition assignment change, handed from librdkafka's thread to the run loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Assignment {
    Assigned(Vec<Assigned>),
    Revoked(Vec<i32>),
}

/// One newly assigned partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub partition: i32,
    /// The group's committed offset, where delivery resumes, when one is known.
    pub committed: Option<i64>,
    /// Where reading actually starts when it was rewound for warm-up
    /// (`kafka.warmup_messages`): messages from here up to `committed` were
    /// delivered before and only rebuild correlation state.
    pub warmup_from: Option<i64>,
}

/// The librdkafka context: logs → tracing,
/// rebalances → a queue the run loop drains.
pub struct Context {
    topic: String,
    /// Messages to re-read before a committed offset on assignment (0: none).
    warmup: i64,
    pub assignments: Mutex<Vec<Assignment>>,
    /// Set when `assignments` has something: checked after every message
    /// without taking the lock.
    pending: AtomicBool,
}

/// A partition's lag: its high watermark minus the consumer's position, or
/// the committed offset when nothing was consumed yet, or the low watermark
/// when nothing is committed either; so every assigned partition counts,
/// including one stuck before its first message.
pub fn partition_lag(low: i64, high: i64, position: Option<i64>, committed: Option<i64>) -> (i64, i64) {
    let pos = position.or(committed).unwrap_or(low).max(low);
    (pos, (high - pos).max(0))
}

/// Measures lag and watches for stalls on every assigned partition of the
/// given consumers, every `period`, on a thread of its own: the consumer's
/// position (`position()`) against the broker's watermarks (a ListOffsets
/// request, not librdkafka's statistics, whose high watermark only moves
/// when a fetch succeeds, so a message the broker will not serve would hide
/// its own lag). Stops when `stop` is set.
pub fn spawn_lag_watch(
    consumers: Vec<Arc<LiveConsumer>>,
    metrics: Arc<Metrics>,
    period: Duration,
    stall_after: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("ccwatch-lag".into()).spawn(move || {
        let mut stalls = Stalls::new(stall_after);
        let timeout = Duration::from_secs(5);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            for c in &consumers {
                let Ok(positions) = c.position() else { continue };
                for e in positions.elements() {
                    let (topic, p) = (e.topic(), e.partition());
                    let Ok((low, high)) = c.fetch_watermarks(topic, p, timeout) else { continue };
                    let position = match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    };
                    let committed = if position.is_none() {
                        let mut tpl = TopicPartitionList::new();
                        tpl.add_partition(topic, p);
                        c.committed_offsets(tpl, timeout).ok().and_then(|t| {
                            match t.find_partition(topic, p)?.offset() {
                                Offset::Offset(o) => Some(o),
                                _ => None,
                            }
                        })
                    } else {
                        None
                    };
                    let (pos, lag) = partition_lag(low, high, position, committed);
                    let partition = p.to_string();
                    metrics.consumer_lag.with_label_values(&[topic, &partition]).set(lag);
                    // Exported at 0 until the partition stalls.
                    metrics.partition_stalled.with_label_values(&[topic, &partition]);
                    if let Some(stalled) = stalls.observe(topic, p, pos, lag, now) {
                        let for_secs = stalls.idle_for(topic, p, now).as_secs();
                        PartitionStalled { topic, partition: p, lag, stalled, for_secs }.emit(&metrics);
                    }
                }
            }
            let next = now + period;
            while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
}

/// Which partitions have lag but no progress for `after`.
#[derive(Debug)]
pub struct Stalls {
    after: Duration,
    /// (topic, partition) → (position last seen, when it last moved, stalled).
    seen: HashMap<(String, i32), (i64, Instant, bool)>,
}

impl Stalls {
    pub fn new(after: Duration) -> Stalls {
        Stalls { after, seen: HashMap::new() }
    }

    /// One lag sample; `Some(stalled)` when the partition's state changed.
    pub fn observe(&mut self, topic: &str, partition: i32, position: i64, lag: i64, now: Instant) -> Option<bool> {
        let e = self.seen.entry((topic.to_string(), partition)).or_insert((position, now, false));
        if position != e.0 || lag == 0 {
            e.0 = position;
            e.1 = now;
        }
        let stalled = lag > 0 && now.duration_since(e.1) >= self.after;
        (stalled != e.2).then(|| {
            e.2 = stalled;
            stalled
        })
    }

    /// How long the partition has made no progress.
    pub fn idle_for(&self, topic: &str, partition: i32, now: Instant) -> Duration {
        self.seen.get(&(topic.to_string(), partition)).map_or(Duration::ZERO, |e| now.duration_since(e.1))
    }
}

impl Context {
    pub fn new(topic: &str) -> Context {
        Context {
            topic: topic.to_string(),
            warmup: 0,
            assignments: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
        }
    }

    /// Re-reads up to `warmup` messages before each committed offset: sets
    /// the start offsets in `tpl` (before it is assigned) and returns them.
    fn rewind<C: Consumer<Context>>(
        &self,
        c: &C,
        tpl: &mut TopicPartitionList,
        committed: &HashMap<i32, i64>,
    ) -> HashMap<i32, i64> {
        let mut from = HashMap::new();
        if self.warmup <= 0 {
            return from;
        }
        for p in self.partitions(tpl) {
            let Some(&resume) = committed.get(&p) else { continue };
            let low = match c.fetch_watermarks(&self.topic, p, Duration::from_secs(10)) {
                Ok((low, _)) => low,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "Cannot read the partition's watermarks; no warm-up for it.");
                    continue;
                }
            };
            let start = resume.saturating_sub(self.warmup).max(low);
            if start < resume && tpl.set_partition_offset(&self.topic, p, Offset::Offset(start)).is_ok() {
                from.insert(p, start);
            }
        }
        from
    }

    /// Before `tpl` is assigned: reads its committed offsets, rewinds it for
    /// warm-up, and says where each partition resumes.
    fn prepare<C: Consumer<Context>>(&self, c: &C, tpl: &mut TopicPartitionList) -> Vec<Assigned> {
        let committed = committed(c, tpl, &self.topic);
        let from = self.rewind(c, tpl, &committed);
        self.partitions(tpl)
            .into_iter()
            .map(|p| Assigned {
                partition: p,
                committed: committed.get(&p).copied(),
                warmup_from: from.get(&p).copied(),
            })
            .collect()
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect()
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, message = log_message, "librdkafka error.")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, message = log_message, "librdkafka warning."),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, message = log_message, "librdkafka notice.")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, message = log_message, "librdkafka debug."),
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // End-of-partition is reported here too; the run loop already gets it from `recv`.
        if matches!(error.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)) {
            tracing::debug!(reason, "End of partition.");
        } else {
            tracing::error!(%error, reason, "Kafka client error.");
        }
    }
}

/// The committed offset of each partition in `tpl` (one round trip to the
/// group coordinator). `None` where nothing is committed or the lookup failed:
/// reading then starts at `auto.offset.reset` and there is nothing to check.
fn committed<C: Consumer<Context>>(c: &C, tpl: &TopicPartitionList, topic: &str) -> HashMap<i32, i64> {
    match c.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
        Ok(got) => got
            .elements()
            .iter()
            .filter(|e| e.topic() == topic)
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot read committed offsets; skipped-offset checks start at the first message.");
            HashMap::new()
        }
    }
}

impl ConsumerContext for Context {
    /// librdkafka's rebalance, done here rather than by rdkafka's default so
    /// that an assignment can start before the committed offsets (warm-up):
    /// the start offsets must be in the list given to `assign`. Otherwise the
    /// same as the default: (incremental) assign or unassign, by protocol.
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let change = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = self.prepare(c, tpl);
                let done = if cooperative { c.incremental_assign(tpl) } else { c.assign(tpl) };
                if let Err(e) = done {
                    tracing::error!(error = %e, "Cannot take the assigned partitions.");
                }
                Assignment::Assigned(assigned)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let done = if cooperative { c.incremental_unassign(tpl) } else { c.unassign() };
                if let Err(e) = done {
                    tracing::error!(error = %e, "Cannot release the revoked partitions.");
                }
                Assignment::Revoked(self.partitions(tpl))
            }
            other => {
                tracing::error!(error = ?other, "Rebalance failed.");
                let _ = if cooperative { c.incremental_unassign(tpl) } else { c.unassign() };
                return;
            }
        };
        tracing::info!(topic = %self.topic, ?change, "Partition assignment changed.");
        if let Ok(mut q) = self.assignments.lock() {
            q.push(change);
            self.pending.store(true, Ordering::Release);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, "Offset commit failed; it will be retried with the next commit.");
        }
    }
}

pub type LiveConsumer = StreamConsumer<Context>;

/// Client settings shared by every client (bootstrap, TLS, SASL).
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (key, v) in &k.client {
        c.set(key, v.expose());
    }
    c
}

/// Client settings plus the consumer-only ones. `fetch.wait.max.ms` defaults
/// to 10 ms (librdkafka: 500): some Kafka-protocol brokers (Tansu among them)
/// hold every fetch for the full wait even when data is ready, which caps
/// throughput at a few fetches a second and adds the wait to every alert's
/// latency. Apache Kafka answers at once either way; the cost is a few more
/// empty fetches a second on an idle topic. `consumer_properties` override it.
pub fn consumer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = client_config(k);
    c.set("fetch.wait.max.ms", "10");
    for (key, v) in &k.consumer {
        c.set(key, v);
    }
    c
}

/// Client settings, then the caller's `defaults`, then `producer_properties`,
/// so the config file has the last word (`linger.ms`, `acks`…). Statistics
/// are a consumer matter (lag): producers only get them when
/// `producer_properties` asks, since their default context logs each report.
pub fn producer_config(k: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = client_config(k);
    c.remove("statistics.interval.ms");
    for (key, v) in defaults {
        c.set(*key, *v);
    }
    for (key, v) in &k.producer {
        c.set(key, v);
    }
    c
}

/// The group consumer for login records.
pub fn login_consumer(k: &KafkaConfig) -> KafkaResult<LiveConsumer> {
    let mut cfg = consumer_config(k);
    if let Some(id) = &k.group_instance_id {
        cfg.set("group.instance.id", id);
    }
    let consumer: LiveConsumer = cfg
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", &k.auto_offset_reset)
        .create_with_context(Context { warmup: k.warmup_messages, ..Context::new(&k.login_topic) })?;
    consumer.subscribe(&[k.login_topic.as_str()])?;
    Ok(consumer)
}

/// The activity consumer (`kafka.activity_topic`): not a group member, but
/// assigned by hand the same partition numbers the group gives the login
/// consumer (`mirror_assign`), so a user's grants and activity, keyed alike
/// into co-partitioned topics, meet on one instance. Its offsets are stored
/// like the login consumer's and committed to the group `<group_id>.activity`
/// (no member ever joins it, so the broker accepts them). A consumer of its
/// own because one consumer of two topics cannot tell whose end-of-partition
/// marker it got (librdkafka's error carries the partition only).
pub fn activity_consumer(k: &KafkaConfig, topic: &str) -> KafkaResult<LiveConsumer> {
    consumer_config(k)
        .set("group.id", format!("{}.activity", k.group_id))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", &k.auto_offset_reset)
        .create_with_context(Context { warmup: k.warmup_messages, ..Context::new(topic) })
}

/// Assigns the activity consumer the login partitions just assigned, from
/// its own committed offsets (less warm-up, as the login consumer does).
pub fn mirror_assign(c: &LiveConsumer, partitions: &[i32]) -> Vec<Assigned> {
    let ctx = c.context();
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(&ctx.topic, p);
    }
    let assigned = ctx.prepare(c, &mut tpl);
    // Not a group member: the start offsets are given, not left to the group.
    for a in assigned.iter().filter(|a| a.warmup_from.is_none()) {
        if let Some(o) = a.committed {
            let _ = tpl.set_partition_offset(&ctx.topic, a.partition, Offset::Offset(o));
        }
    }
    if let Err(e) = c.incremental_assign(&tpl) {
        tracing::error!(error = %e, "Cannot take the activity partitions.");
    }
    assigned
}

/// Releases the activity partitions mirroring revoked login partitions.
pub fn mirror_revoke(c: &LiveConsumer, partitions: &[i32]) {
    let topic = &c.context().topic;
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    if let Err(e) = c.incremental_unassign(&tpl) {
        tracing::error!(error = %e, "Cannot release the activity partitions.");
    }
}

/// The audit consumer: every partition, from the beginning, never committed.
pub fn audit_consumer(k: &KafkaConfig, topic: &str, metrics: Arc<Metrics>) -> anyhow::Result<(LiveConsumer, Vec<i32>)> {
    let consumer: LiveConsumer = consumer_config(k)
        .set("group.id", format!("{}-audit", k.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(Context::new(topic))?;
    let partitions = partitions_of(&consumer, "audit", topic)?;
    if partitions.is_empty() {
        anyhow::bail!("audit topic {topic} does not exist or has no partitions");
    }
    metrics.audit_expired_records.set(expired_records(&consumer, topic, &partitions));
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok((consumer, partitions))
}

/// Checks that every topic ccwatch writes to exists, before anything is
/// consumed: a missing alerts or dead-letter topic would otherwise pass
/// start-up and stall on the first alert or bad record. `topics` pairs a
/// description ("sink alerts-topic") with the topic. The metadata request
/// goes through the login consumer, which never asks the broker to create a
/// topic (`allow.auto.create.topics` is false for consumers).
pub fn check_topics(c: &LiveConsumer, topics: &[(String, String)]) -> anyhow::Result<()> {
    for (what, topic) in topics {
        if partitions_of(c, what, topic)?.is_empty() {
            anyhow::bail!("{what}: topic {topic} does not exist; create it before starting ccwatch");
        }
    }
    Ok(())
}

/// The partitions the broker reports for `topic`; none when it does not
/// exist. `what` names the topic's role in the error.
pub fn partitions_of(c: &LiveConsumer, what: &str, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("cannot read metadata of {what} topic {topic}: {e}"))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Audit records deleted before this instance could read them: the sum of
/// the partitions' low watermarks, since the audit topic is read from its
/// beginning. Retention (or DeleteRecords) removed them, so the privilege
/// changes they carried are known only if an inventory snapshot covers them.
/// Each such partition is logged.
fn expired_records(c: &LiveConsumer, topic: &str, partitions: &[i32]) -> i64 {
    let mut expired = 0;
    for &p in partitions {
        match c.fetch_watermarks(topic, p, Duration::from_secs(10)) {
            Ok((low, _)) if low > 0 => {
                tracing::warn!(
                    topic,
                    partition = p,
                    first_offset = low,
                    "The audit topic no longer holds its first records (retention deleted them): privilege changes \
                     they carried are unknown unless the inventory covers them. Keep this topic with retention.ms=-1."
                );
                expired += low;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(topic, partition = p, error = %e, "Cannot read an audit partition's watermarks."),
        }
    }
    expired
}

/// Drains assignment changes queued by librdkafka's rebalance callback.
pub fn take_assignments(c: &LiveConsumer) -> Vec<Assignment> {
    c.context()
        .assignments
        .lock()
        .map(|mut q| {
            c.context().pending.store(false, Ordering::Release);
            std::mem::take(&mut *q)
        })
        .unwrap_or_default()
}

/// Whether assignment changes are queued (cheap: no lock).
pub fn assignments_pending(c: &LiveConsumer) -> bool {
    c.context().pending.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_files_properties_override_built_in_defaults() {
        let mut k = KafkaConfig::plaintext("127.0.0.1:9092", "g", "logins", None, None, 500);
        k.producer.push(("linger.ms".into(), "50".into()));
        k.consumer.push(("fetch.wait.max.ms".into(), "100".into()));
        let p = producer_config(&k, &[("linger.ms", "1"), ("acks", "all")]);
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("statistics.interval.ms"), None, "producers do not log statistics reports");
        assert_eq!(p.get("acks"), Some("all"));
        let c = consumer_config(&k);
        assert_eq!(c.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(c.get("statistics.interval.ms"), None, "lag comes from the watcher, not statistics");
        assert_eq!(
            consumer_config(&KafkaConfig::plaintext("b:1", "g", "l", None, None, 0)).get("fetch.wait.max.ms"),
            Some("10")
        );
    }

    #[test]
    fn every_assigned_partition_has_a_lag() {
        assert_eq!(partition_lag(0, 20_642, None, None), (0, 20_642), "nothing consumed or committed");
        assert_eq!(partition_lag(0, 100, None, Some(40)), (40, 60), "from the committed offset");
        assert_eq!(partition_lag(0, 100, Some(90), Some(40)), (90, 10), "from the position");
        assert_eq!(partition_lag(30, 100, None, Some(10)), (30, 70), "retention moved the start past the commit");
    }

    #[test]
    fn a_partition_with_lag_and_no_progress_is_stalled() {
        let mut s = Stalls::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(s.observe("l", 0, 5, 100, t0), None);
        assert_eq!(s.observe("l", 0, 5, 100, t0 + Duration::from_secs(9)), None);
        assert_eq!(s.observe("l", 0, 5, 100, t0 + Duration::from_secs(10)), Some(true));
        assert_eq!(s.observe("l", 0, 5, 100, t0 + Duration::from_secs(11)), None, "reported once");
        assert_eq!(s.observe("l", 0, 6, 99, t0 + Duration::from_secs(12)), Some(false), "moving again");
        assert_eq!(s.observe("l", 1, 7, 0, t0), None);
        assert_eq!(s.observe("l", 1, 7, 0, t0 + Duration::from_secs(60)), None, "no lag: idle, not stalled");
    }
}
