//! `ccwatch produce`: archived files → one Kafka message per record, for
//! backfills, the demo and tests.
//!
//! Each message value is one record in a shape replay accepts:
//! - a JSON-lines file: each line as it is, byte for byte (bad lines included,
//!   so the consumer's dead-letter path sees them);
//! - a JSON document: each element of a REST `records` array (also inside
//!   `sf data query --json`'s `result`), or the document itself;
//! - an ELF CSV file: each row as a JSON object keyed by column name, which
//!   is how forwarders ship ELF rows. A row that does not fit its header is
//!   sent as its raw text.
//!
//! Records are sent in event-time order across all inputs unless
//! `--keep-order` is given: live processing follows arrival order within a
//! partition, so a backfill should arrive the way Salesforce produced it.
//! Every record that carries a user id (grants, other logins counted but not
//! decoded, API activity) is keyed by it in its 18-character form, so one
//! user's grants and what their tokens did stay in one partition and
//! therefore one instance of a consumer group.

use crate::decode::{self, Decoded};
use crate::event::{EventTime, NormalizedEvent};
use anyhow::Context as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub value: Vec<u8>,
    pub key: Option<String>,
    pub time: Option<EventTime>,
}

fn read_all(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut raw = Vec::new();
    f.read_to_end(&mut raw).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("cannot decompress {}", path.display()))?;
        return Ok(out);
    }
    Ok(raw)
}

fn annotate(value: Vec<u8>) -> Unit {
    let mut out = Vec::new();
    decode::decode_json_unit(&value, &mut out);
    let mut time = None;
    let mut key = None;
    for d in &out {
        match d {
            Decoded::Event(ev) => {
                if ev.time() != EventTime::BEGINNING {
                    time = time.or(Some(ev.time()));
                }
                let user = match ev {
                    NormalizedEvent::Login(l) => l.user_id,
                    NormalizedEvent::Activity(a) => a.user_id,
                    _ => None,
                };
                key = key.or_else(|| user.map(|u| u.to_string()));
            }
            Decoded::Counted { time: t, .. } => time = time.or(Some(*t)),
            Decoded::Rejected(_) => {}
        }
    }
    // Records counted rather than decoded (non-grant logins) still carry a
    // user id: keyed by it too, so all of a user's records share a partition.
    let key = key.or_else(|| user_id_of(&value));
    Unit { value, key, time }
}

/// The user id a JSON record names (`UserId`, ELF `USER_ID`), also inside a
/// CometD envelope's payload, as the 18-character form grants are keyed by.
fn user_id_of(value: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    let payload = v.pointer("/data/payload").or_else(|| v.get("payload")).unwrap_or(&v);
    ["UserId", "USER_ID", "USER_ID_DERIVED"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|x| x.as_str()).and_then(crate::event::SfId::parse))
        .map(|id| id.to_string())
}

/// Splits one file into messages.
pub fn units(path: &Path) -> anyhow::Result<Vec<Unit>> {
    let bytes = read_all(path)?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    let mut out = Vec::new();
    match first {
        None => {}
        Some(b'{') | Some(b'[') => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(doc) => {
                let records = doc
                    .get("records")
                    .or_else(|| doc.get("result").and_then(|r| r.get("records")))
                    .and_then(|r| r.as_array())
                    .or_else(|| doc.as_array());
                match records {
                    Some(rs) => out.extend(rs.iter().map(|r| annotate(serde_json::to_vec(r).unwrap_or_default()))),
                    None => out.push(annotate(body.to_vec())),
                }
            }
            // Not one document: JSON lines.
            Err(_) => {
                for line in body.split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        out.push(annotate(line.to_vec()));
                    }
                }
            }
        },
        Some(_) => {
            let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(body);
            let header = rdr.headers().with_context(|| format!("{}: unreadable CSV header", path.display()))?.clone();
            let mut rec = csv::ByteRecord::new();
            loop {
                let start = rdr.position().byte() as usize;
                match rdr.read_byte_record(&mut rec) {
                    Ok(false) => break,
                    Ok(true) if rec.len() == header.len() => {
                        let obj: serde_json::Map<String, serde_json::Value> = header
                            .iter()
                            .zip(rec.iter())
                            .map(|(h, v)| (h.to_string(), String::from_utf8_lossy(v).into_owned().into()))
                            .collect();
                        out.push(annotate(serde_json::to_vec(&obj).unwrap_or_default()));
                    }
                    Ok(true) | Err(_) => {
                        let end = (rdr.position().byte() as usize).min(body.len());
                        let raw = body[start.min(end)..end].trim_ascii_end().to_vec();
                        out.push(Unit { value: raw, key: None, time: None });
                        if rdr.is_done() {
                            break;
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Every file's units; sorted by event time (stable; a unit with no time
/// keeps the time of the unit before it) unless `keep_order`.
pub fn collect(paths: &[PathBuf], keep_order: bool) -> anyhow::Result<Vec<Unit>> {
    let found = crate::source::replay::discover(paths)?;
    for p in &found.skipped {
        tracing::warn!(path = %p.display(), "Not a regular file (FIFO, socket or device); not read.");
    }
    let files = found.files;
    let mut all = Vec::new();
    for f in &files {
        let mut prev = EventTime::BEGINNING;
        for mut u in units(f)? {
            match u.time {
                Some(t) => prev = t,
                None => u.time = Some(prev),
            }
            all.push(u);
        }
    }
    if !keep_order {
        all.sort_by_key(|u| u.time);
    }
    Ok(all)
}

/// Fails with a clear message when `topic` does not exist, unless
/// `partitions` is given, in which case it is created.
pub async fn ensure_topic(client: &rdkafka::ClientConfig, topic: &str, partitions: Option<i32>) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        client.create().context("cannot create Kafka admin client")?;
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .with_context(|| format!("cannot read metadata for {topic}"))?;
    let exists = md.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    match (exists, partitions) {
        (true, _) => Ok(()),
        (false, None) => anyhow::bail!("topic {topic} does not exist (give --partitions N to create it)"),
        (false, Some(n)) => {
            let res = admin
                .create_topics(&[NewTopic::new(topic, n, TopicReplication::Fixed(1))], &AdminOptions::new())
                .await
                .with_context(|| format!("cannot create topic {topic}"))?;
            for r in res {
                if let Err((name, e)) = r {
                    if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                        anyhow::bail!("cannot create topic {name}: {e}");
                    }
                }
            }
            Ok(())
        }
    }
}

/// Sends `units` to `topic` and waits for every acknowledgement, in chunks
/// so the records borrowed for sending stay bounded.
pub async fn send(producer: &FutureProducer, topic: &str, units: &[Unit]) -> anyhow::Result<u64> {
    for chunk in units.chunks(100_000) {
        let records: Vec<FutureRecord<'_, [u8], [u8]>> = chunk
            .iter()
            .map(|u| {
                let rec = FutureRecord::to(topic).payload(u.value.as_slice());
                match &u.key {
                    Some(k) => rec.key(k.as_bytes()),
                    None => rec,
                }
            })
            .collect();
        crate::sink::live::produce_all(producer, records)
            .await
            .map_err(|e| anyhow::anyhow!("cannot produce to {topic}: {e}"))?;
    }
    Ok(units.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_split_into_records_with_times_and_keys() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        let rest = units(&root.join("audit/setup-audit-trail.json")).unwrap();
        assert!(rest.len() > 3 && rest.iter().all(|u| u.time.is_some()), "one message per REST record");
        let csv = units(&root.join("elf/2024-07-09T11-Login.csv")).unwrap();
        assert!(!csv.is_empty());
        let first: serde_json::Value = serde_json::from_slice(&csv[0].value).unwrap();
        assert!(first.get("LOGIN_TYPE").is_some(), "ELF rows become objects keyed by column");
        let gz = units(&root.join("elf/2024-07-09T14-Login.jsonl.gz")).unwrap();
        assert!(!gz.is_empty());
        let lines = units(&root.join("logins/login-events.jsonl")).unwrap();
        assert!(lines.iter().any(|u| u.key.is_some()), "grants are keyed by user");
        let ui_login = lines.iter().find(|u| {
            let v: serde_json::Value = serde_json::from_slice(&u.value).unwrap_or_default();
            v["LoginType"] == "Application" && v["UserId"].is_string()
        });
        let ui_login = ui_login.expect("the samples have a UI login");
        assert!(ui_login.key.is_some(), "a non-grant login is keyed by its user too");
        assert!(lines.iter().any(|u| u.time.is_none()), "damaged lines are kept, unparsed");
        let all = collect(&[root.join("logins"), root.join("elf")], false).unwrap();
        assert!(all.windows(2).all(|w| w[0].time <= w[1].time));
    }
}
