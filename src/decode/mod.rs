//! Decode: raw bytes of one input unit → `NormalizedEvent`s, counts and rejects.
//!
//! A *unit* is one JSONL line, one whole JSON document, or one CSV row. Each
//! unit may hold many records (a REST query result, an `sf data query --json`
//! result, a CometD batch), so decoding appends `Decoded` items to a vector.
//!
//! Detection is per record, never per file: `attributes.type` wins, then the
//! envelope (`records`, `result`, CometD `channel`/`data`, Elastic's
//! `event.original`/`message`), then the set of fields present. Any record in
//! any file may therefore be any kind.
//!
//! Logins that cannot matter downstream (not `Remote Access 2.0`, or
//! `Remote Access 2.0` with a blank sub-type) are validated and counted here
//! but not materialised as events: they are >95% of a real archive, and
//! skipping their allocations is what keeps replay above a million records a
//! second. Everything here is pure and synchronous.

pub mod activity;
pub mod audit;
pub mod csv;
pub mod display;
pub mod inventory;
pub mod json;
pub mod login;

use crate::event::{GrantClass, NormalizedEvent, RecordKind};
use json::{Object, Val};
use std::borrow::Cow;

/// Why a record was set aside. Labels are a bounded set (safe as metric labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    InvalidUtf8,
    InvalidJson,
    InvalidCsv,
    MissingField,
    BadTimestamp,
    UnknownShape,
    UnsupportedType,
    RecordTooLarge,
    ReadError,
    /// A CSV file whose first row is not a Salesforce header: its columns
    /// cannot be named.
    CsvWithoutHeader,
    /// A FIFO, socket or device met while walking a directory: not read.
    NotARegularFile,
}

impl RejectReason {
    pub const ALL: [RejectReason; 11] = [
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::InvalidCsv,
        RejectReason::MissingField,
        RejectReason::BadTimestamp,
        RejectReason::UnknownShape,
        RejectReason::UnsupportedType,
        RejectReason::RecordTooLarge,
        RejectReason::ReadError,
        RejectReason::CsvWithoutHeader,
        RejectReason::NotARegularFile,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::InvalidCsv => "invalid_csv",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::UnknownShape => "unknown_shape",
            RejectReason::UnsupportedType => "unsupported_type",
            RejectReason::RecordTooLarge => "record_too_large",
            RejectReason::ReadError => "read_error",
            RejectReason::CsvWithoutHeader => "csv_without_header",
            RejectReason::NotARegularFile => "not_a_regular_file",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
    /// Position of the record inside a multi-record unit (REST `records[i]`).
    pub index: Option<u32>,
}

/// One outcome of decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A record that reaches the correlator.
    Event(NormalizedEvent),
    /// A login that was validated and classified but is not needed downstream.
    Counted {
        kind: RecordKind,
        grant: GrantClass,
        success: bool,
        /// Its event time: live ordering advances on every record, not only grants.
        time: crate::event::EventTime,
    },
    Rejected(Reject),
}

impl Decoded {
    fn reject(reason: RejectReason, detail: impl Into<String>, index: Option<u32>) -> Decoded {
        Decoded::Rejected(Reject { reason, detail: detail.into(), index })
    }
}

/// Read access to one record's fields, whatever it was parsed from.
pub trait Fields<'a> {
    /// The field's text; blank values and `null` are `None`. Dotted names reach
    /// into nested relationship objects (`CreatedBy.Username`).
    fn text(&self, key: &str) -> Option<Cow<'a, str>>;
    /// Whether the field exists at all (even blank).
    fn has(&self, key: &str) -> bool;
    /// A few field names, for "unknown shape" messages.
    fn sample_keys(&self) -> String;
}

impl<'a> Fields<'a> for Object<'a> {
    #[inline]
    fn text(&self, key: &str) -> Option<Cow<'a, str>> {
        self.path_text(key)
    }
    fn has(&self, key: &str) -> bool {
        Object::has(self, key)
    }
    fn sample_keys(&self) -> String {
        let all = self.keys();
        let mut keys: Vec<String> = all.iter().take(8).map(|k| k.to_string()).collect();
        if all.len() > 8 {
            keys.push("…".into());
        }
        keys.join(",")
    }
}

/// First present field among `keys`.
pub fn first_text<'a, F: Fields<'a>>(f: &F, keys: &[&str]) -> Option<Cow<'a, str>> {
    keys.iter().find_map(|k| f.text(k))
}

/// Largest unit accepted; bigger ones are rejected rather than buffered.
pub const MAX_UNIT_BYTES: usize = 256 << 20;

/// Decodes one JSON unit (a JSONL line or a whole document).
pub fn decode_json_unit(bytes: &[u8], out: &mut Vec<Decoded>) {
    // SIMD validation first (the common, valid case); std only to locate an error.
    let text = match simdutf8::basic::from_utf8(bytes).or_else(|_| std::str::from_utf8(bytes)) {
        Ok(t) => t,
        Err(e) => {
            out.push(Decoded::reject(
                RejectReason::InvalidUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                None,
            ));
            return;
        }
    };
    let root = if text.trim_start().starts_with('{') {
        Object::parse(text).map(json::Root::Object)
    } else {
        json::parse(text).map(json::Root::Other)
    };
    match root {
        Ok(json::Root::Object(obj)) => decode_object(&obj, None, 0, out),
        Ok(json::Root::Other(v)) => decode_value(v, None, 0, out),
        Err(e) => out.push(Decoded::reject(RejectReason::InvalidJson, e.to_string(), None)),
    }
}

/// Wrappers unwrapped at most this deep (REST result inside Elastic's `message`…).
const MAX_WRAP: u8 = 4;

fn decode_value(v: Val<'_>, index: Option<u32>, wrap: u8, out: &mut Vec<Decoded>) {
    match v {
        Val::Obj(_) => match v.as_object() {
            Some(obj) => decode_object(&obj, index, wrap, out),
            None => out.push(Decoded::reject(RejectReason::InvalidJson, "unreadable object", index)),
        },
        Val::Arr(_) if wrap < MAX_WRAP => {
            for (i, item) in v.as_array().unwrap_or_default().into_iter().enumerate() {
                decode_value(item, Some(i as u32), wrap + 1, out);
            }
        }
        other => out.push(Decoded::reject(
            RejectReason::UnknownShape,
            format!("expected an object, found {}", other.type_name()),
            index,
        )),
    }
}

fn decode_object(obj: &Object<'_>, index: Option<u32>, wrap: u8, out: &mut Vec<Decoded>) {
    // A REST row names its type; no envelope carries `attributes`.
    // `path_text("attributes.type")` spelled out, so the hot path skips
    // finding the dot: a flat member of that name, else the nested one.
    let attr_type = obj.text("attributes.type").or_else(|| obj.nested_member_text("attributes", "type"));
    if attr_type.is_some() {
        return decode_record(obj, attr_type.as_deref(), index, out);
    }
    if wrap < MAX_WRAP {
        // REST query result: {"totalSize":…,"done":…,"records":[…]}
        if let Some(records @ Val::Arr(_)) = obj.get("records") {
            for (i, item) in records.as_array().unwrap_or_default().into_iter().enumerate() {
                decode_value(item, Some(i as u32), wrap + 1, out);
            }
            return;
        }
        // `sf data query --json`: {"status":0,"result":{"records":[…]}}
        if let (Some(result @ Val::Obj(_)), true) = (obj.get("result"), obj.has("status")) {
            return decode_value(result, index, wrap + 1, out);
        }
        if obj.has("status") && obj.has("message") && obj.has("name") && !obj.has("result") {
            let msg = obj.text("message").unwrap_or_default();
            out.push(Decoded::reject(RejectReason::UnknownShape, format!("sf cli error: {msg}"), index));
            return;
        }
        // CometD: {"channel":"/event/LoginEventStream","data":{"event":{…},"payload":{…}}}
        if let (Some(channel), Some(data)) = (obj.text("channel"), obj.get("data").and_then(|d| d.as_object())) {
            return decode_cometd(&channel, &data, index, out);
        }
        // Elastic and other forwarders keep the original text.
        for key in ["event.original", "message"] {
            if let Some(Val::Str(s)) = get_path(obj, key) {
                let inner = s.value();
                let trimmed = inner.trim_start();
                if trimmed.starts_with('{') || trimmed.starts_with('[') {
                    match json::parse(&inner) {
                        Ok(v) => decode_value(v, index, wrap + 1, out),
                        Err(e) => out.push(Decoded::reject(RejectReason::InvalidJson, format!("in {key}: {e}"), index)),
                    }
                    return;
                }
            }
        }
    }
    decode_record(obj, None, index, out);
}

fn get_path<'a>(obj: &Object<'a>, path: &str) -> Option<Val<'a>> {
    if let Some(v) = obj.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    get_path(&obj.get(head)?.as_object()?, rest)
}

fn decode_cometd(channel: &str, data: &Object<'_>, index: Option<u32>, out: &mut Vec<Decoded>) {
    let name = channel.rsplit('/').next().unwrap_or(channel);
    let activity = activity::kind_of_channel(name);
    if !(name.eq_ignore_ascii_case("LoginEventStream") || name.eq_ignore_ascii_case("LoginEvent")) && activity.is_none()
    {
        out.push(Decoded::reject(
            RejectReason::UnsupportedType,
            format!("CometD channel {channel} is not a login or API-activity channel"),
            index,
        ));
        return;
    }
    let Some(payload) = data.get("payload").and_then(|p| p.as_object()) else {
        out.push(Decoded::reject(RejectReason::MissingField, "CometD message without data.payload", index));
        return;
    };
    let fallback_id = data
        .get("event")
        .and_then(|e| e.as_object())
        .and_then(|e| e.text("EventUuid").or_else(|| e.text("replayId")).map(|s| s.into_owned()));
    out.push(match activity {
        Some(kind) => activity::decode(&payload, kind, fallback_id.as_deref(), index),
        None => login::decode(&payload, RecordKind::LoginEventStream, fallback_id.as_deref(), index),
    });
}

/// Decodes one flat record (JSON object or CSV row) by `attributes.type` or fields.
pub fn decode_record<'a, F: Fields<'a>>(f: &F, attr_type: Option<&str>, index: Option<u32>, out: &mut Vec<Decoded>) {
    let kind = match attr_type {
        Some(t) => match t {
            "LoginEvent" => RecordKind::LoginEvent,
            "LoginEventStream" => RecordKind::LoginEventStream,
            "LoginHistory" => RecordKind::LoginHistory,
            "LoginEventLog" => RecordKind::LoginEventLog,
            "SetupAuditTrail" => RecordKind::SetupAuditTrail,
            "User" => RecordKind::User,
            "PermissionSetAssignment" => RecordKind::PermissionSetAssignment,
            other => match activity::kind_of_type(other) {
                Some(k) => k,
                None => {
                    out.push(Decoded::reject(
                        RejectReason::UnsupportedType,
                        format!("attributes.type {other} is not a login, audit, inventory or API-activity type"),
                        index,
                    ));
                    return;
                }
            },
        },
        None => match detect_kind(f) {
            Ok(k) => k,
            Err(reject) => {
                out.push(Decoded::Rejected(Reject { index, ..reject }));
                return;
            }
        },
    };
    out.push(match kind {
        RecordKind::SetupAuditTrail => audit::decode(f, index),
        RecordKind::User | RecordKind::PermissionSetAssignment => inventory::decode(f, kind, index),
        k if k.is_activity() => activity::decode(f, k, None, index),
        _ => login::decode(f, kind, None, index),
    });
}

/// Recognises a record from the fields it carries.
fn detect_kind<'a, F: Fields<'a>>(f: &F) -> Result<RecordKind, Reject> {
    if f.has("EVENT_TYPE") {
        let t = f.text("EVENT_TYPE").unwrap_or_default();
        if t == "Login" {
            return Ok(RecordKind::ElfLogin);
        }
        return activity::kind_of_elf(&t).ok_or_else(|| Reject {
            reason: RejectReason::UnsupportedType,
            detail: format!("EventLogFile EVENT_TYPE {t:?} is not Login or an API-activity type"),
            index: None,
        });
    }
    if let Some(k) = activity::detect(f) {
        return Ok(k);
    }
    if f.has("EventIdentifier") || (f.has("EventDate") && f.has("LoginType")) {
        return Ok(if f.has("ReplayId") || f.has("EventUuid") {
            RecordKind::LoginEventStream
        } else {
            RecordKind::LoginEvent
        });
    }
    if f.has("LoginTime") {
        return Ok(RecordKind::LoginHistory);
    }
    if f.has("Action") && (f.has("Display") || f.has("Section")) {
        return Ok(RecordKind::SetupAuditTrail);
    }
    if f.has("LoginStatus") && f.has("Timestamp") {
        return Ok(RecordKind::LoginEventLog);
    }
    if f.has("AssigneeId") || f.has("PermissionSet.Name") || f.has("PermissionSet") {
        return Ok(RecordKind::PermissionSetAssignment);
    }
    if f.has("Username") && (f.has("Profile") || f.has("Profile.Name") || f.has("IsActive")) {
        return Ok(RecordKind::User);
    }
    Err(Reject {
        reason: RejectReason::UnknownShape,
        detail: format!("no known record shape has fields {}", f.sample_keys()),
        index: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NormalizedEvent;

    fn decode(s: &str) -> Vec<Decoded> {
        let mut out = Vec::new();
        decode_json_unit(s.as_bytes(), &mut out);
        out
    }

    #[test]
    fn garbage_is_rejected_with_reason() {
        assert!(
            matches!(&decode("\u{0}\u{1}garbage")[0], Decoded::Rejected(r) if r.reason == RejectReason::InvalidJson)
        );
        let mut out = Vec::new();
        decode_json_unit(&[0xff, 0xfe, b'{'], &mut out);
        assert!(matches!(&out[0], Decoded::Rejected(r) if r.reason == RejectReason::InvalidUtf8));
        assert!(matches!(&decode("42")[0], Decoded::Rejected(r) if r.reason == RejectReason::UnknownShape));
        assert!(matches!(&decode(r#"{"foo":1}"#)[0], Decoded::Rejected(r) if r.reason == RejectReason::UnknownShape));
    }

    #[test]
    fn unsupported_types_are_named() {
        let out = decode(r#"{"attributes":{"type":"Account"},"Id":"001"}"#);
        assert!(
            matches!(&out[0], Decoded::Rejected(r) if r.reason == RejectReason::UnsupportedType && r.detail.contains("Account"))
        );
        let out = decode(r#"{"EVENT_TYPE":"LoginAs","TIMESTAMP":"20231218054831.655"}"#);
        assert!(matches!(&out[0], Decoded::Rejected(r) if r.detail.contains("LoginAs")));
        let out = decode(r#"{"channel":"/event/Low_Ink__e","data":{"payload":{}}}"#);
        assert!(matches!(&out[0], Decoded::Rejected(r) if r.reason == RejectReason::UnsupportedType));
    }

    #[test]
    fn envelopes_nest() {
        let inner = r#"{"EventIdentifier":"e1","EventDate":"2024-01-01T00:00:00Z","UserId":"0055j00000AT6I1","LoginType":"Remote Access 2.0","LoginSubType":"OAuth Client Credentials","Status":"Success","SourceIp":"1.2.3.4","Application":"A"}"#;
        let wrapped = format!(
            r#"{{"message":{}}}"#,
            serde_json::to_string(&format!(r#"{{"totalSize":1,"done":true,"records":[{inner}]}}"#)).unwrap()
        );
        let out = decode(&wrapped);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Decoded::Event(NormalizedEvent::Login(l)) if l.app.as_deref() == Some("A")));
        let sf = format!(r#"{{"status":0,"result":{{"totalSize":1,"done":true,"records":[{inner},{inner}]}}}}"#);
        assert_eq!(decode(&sf).len(), 2);
    }
}
