//! Inventory exports (`User`, `PermissionSetAssignment`) → `Inventory`.
//!
//! These are the privilege baseline. Permission flags are read as JSON booleans
//! or `"true"`/`"false"` text; a flag column that is absent is recorded as
//! unknown rather than false, so a partial export never erases what an audit
//! event or another row established.

use super::{Decoded, Fields, Reject, RejectReason};
use crate::event::{Inventory, NormalizedEvent, Perms, RecordKind, SfId};

fn flag<'a, F: Fields<'a>>(f: &F, key: &str) -> Option<bool> {
    match f.text(key)?.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

pub fn decode<'a, F: Fields<'a>>(f: &F, kind: RecordKind, index: Option<u32>) -> Decoded {
    let missing = |field: &str| {
        Decoded::Rejected(Reject {
            reason: RejectReason::MissingField,
            detail: format!("{} has no valid {field}", kind.label()),
            index,
        })
    };
    let inv = if kind == RecordKind::User {
        let Some(id) = f.text("Id").and_then(|s| SfId::parse(&s)) else { return missing("Id") };
        Inventory::User {
            id,
            username: f.text("Username").map(|s| s.into()),
            name: f.text("Name").map(|s| s.into()),
            active: flag(f, "IsActive"),
            profile: f.text("Profile.Name").map(|s| s.into()),
        }
    } else {
        let Some(user_id) = f.text("AssigneeId").and_then(|s| SfId::parse(&s)) else {
            return missing("AssigneeId");
        };
        let Some(perm_set) = f.text("PermissionSet.Name") else { return missing("PermissionSet.Name") };
        let (mut perms, mut known) = (Perms::empty(), Perms::empty());
        for (perm, _, field) in Perms::ALL {
            if let Some(v) = flag(f, &format!("PermissionSet.{field}")) {
                known = known.union(perm);
                if v {
                    perms = perms.union(perm);
                }
            }
        }
        Inventory::PermissionSetAssignment {
            user_id,
            username: f.text("Assignee.Username").map(|s| s.into()),
            perm_set: perm_set.into(),
            owned_by_profile: flag(f, "PermissionSet.IsOwnedByProfile").unwrap_or(false),
            profile: f.text("PermissionSet.Profile.Name").map(|s| s.into()),
            perms,
            known,
        }
    };
    Decoded::Event(NormalizedEvent::Inventory(inv))
}
