//! SetupAuditTrail records → `Audit`, with the `Display` parsed into an
//! `AuditChange` (see `display`).
//!
//! Key fields are `CreatedDate` and `Action`. `CreatedBy.Username` is read from
//! the nested REST relationship or a flattened column of that name.

use super::{display, first_text, Decoded, Fields, Reject, RejectReason};
use crate::decode::login::truncate;
use crate::event::time::parse_timestamp;
use crate::event::{Audit, NormalizedEvent, SfId};

pub fn decode<'a, F: Fields<'a>>(f: &F, index: Option<u32>) -> Decoded {
    let reject = |reason, detail: String| Decoded::Rejected(Reject { reason, detail, index });
    let Some(time_text) = f.text("CreatedDate") else {
        return reject(RejectReason::MissingField, "setup_audit_trail has no CreatedDate".into());
    };
    let Some(time) = parse_timestamp(&time_text) else {
        return reject(
            RejectReason::BadTimestamp,
            format!("CreatedDate {:?} is not a timestamp", truncate(&time_text)),
        );
    };
    let Some(action) = f.text("Action") else {
        return reject(RejectReason::MissingField, "setup_audit_trail has no Action".into());
    };
    let display = f.text("Display").unwrap_or_default();
    let change = display::parse(&action, &display);
    Decoded::Event(NormalizedEvent::Audit(Audit {
        time,
        id: f.text("Id").map(|s| s.into()),
        action: action.trim().into(),
        section: f.text("Section").map(|s| s.into()),
        display: display.into(),
        actor_id: f.text("CreatedById").and_then(|s| SfId::parse(&s)),
        actor: first_text(f, &["CreatedBy.Username", "CreatedByUsername", "CreatedBy.Name"]).map(|s| s.into()),
        delegate: f.text("DelegateUser").map(|s| s.into()),
        change,
    }))
}
