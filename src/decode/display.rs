//! SetupAuditTrail `Display` strings → `AuditChange`.
//!
//! Patterns follow the reference's §6.2. Salesforce's wording drifts between
//! releases, so matching is case-insensitive, tolerates optional words
//! ("with expiration", "general user", the `Custom: ` profile prefix) and takes
//! user ids from the `(UserID: [..])` bracket when one is present. A relevant
//! action whose text matches nothing becomes `AuditChange::Unparsed` (counted),
//! never a guess.

use crate::event::{AuditChange, IpRange, Perms, SfId, UserRef};

/// Finds `needle` case-insensitively; returns the byte offset in `hay`.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn rfind_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.is_empty() || n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).rev().find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let s = s.trim_start();
    (s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
        .then(|| &s[prefix.len()..])
}

fn split_ci<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    find_ci(s, sep).map(|i| (&s[..i], &s[i + sep.len()..]))
}

fn rsplit_ci<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    rfind_ci(s, sep).map(|i| (&s[..i], &s[i + sep.len()..]))
}

fn boxed(s: &str) -> Box<str> {
    s.trim().trim_end_matches('.').trim().into()
}

/// `Darth Vader (UserID: [0052A00000EsOI0])` → name + id; trailing text after the
/// bracket (", expiring on …") is ignored.
pub fn user_ref(s: &str) -> UserRef {
    let s = s.trim();
    if let Some(open) = find_ci(s, "(UserID:") {
        let name = s[..open].trim();
        let rest = &s[open + "(UserID:".len()..];
        let id = rest
            .trim_start()
            .trim_start_matches('[')
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .and_then(SfId::parse);
        return UserRef { id, name: (!name.is_empty()).then(|| name.into()) };
    }
    let name = s.trim_end_matches('.').trim();
    match SfId::parse(name) {
        Some(id) if name.starts_with("005") => UserRef { id: Some(id), name: None },
        _ => UserRef { id: None, name: (!name.is_empty()).then(|| name.into()) },
    }
}

/// `from X to Y` → `(X, Y)`.
fn from_to(s: &str) -> Option<(&str, &str)> {
    let (_, rest) = split_ci(s, "from ")?;
    let (a, b) = split_ci(rest, " to ")?;
    Some((a.trim(), b.trim().trim_end_matches('.')))
}

fn enabled_word(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "enabled" | "true" | "on" | "checked" => Some(true),
        "disabled" | "false" | "off" | "unchecked" => Some(false),
        _ => None,
    }
}

/// Parses one record; `Ignored` for actions ccwatch does not use.
pub fn parse(action: &str, display: &str) -> AuditChange {
    let a = action.trim().to_ascii_lowercase();
    let parsed = match a.as_str() {
        "permsetassign" | "permsetassign_hasexpiration" | "permsetgroupassign" => perm_set_assignment(display, true),
        "permsetunassign" | "permsetgroupunassign" => perm_set_assignment(display, false),
        "permsetenableuserperm" | "permsetdisableuserperm" => perm_set_permission(display),
        "profilepermchangedcustom" | "profilepermchangedstandard" => profile_permission(display),
        "permissionsetgroupcomponentadd" | "permissionsetgroupcomponentremove" => group_component(display),
        "changedprofileforuser"
        | "changedprofileforusercusttostd"
        | "changedprofileforuserstdtocust"
        | "changedprofileforuserstdtostd"
        | "changedprofileforusercusttocust" => user_profile(display),
        "loginiprange" => login_ip_range(display, true),
        "deletedloginiprange_withprofile" | "deletedloginiprange" => login_ip_range(display, false),
        "changeapplicationclientcredentialenabled" => client_credentials_enabled(display),
        "addoauthclientcredentialuser" => client_credentials_user(display),
        "changeiprelaxationpolicy" => ip_relaxation(display),
        _ => return AuditChange::Ignored,
    };
    parsed.unwrap_or(AuditChange::Unparsed)
}

fn perm_set_assignment(d: &str, assigned: bool) -> Option<AuditChange> {
    let (group, rest) = match strip_prefix_ci(d, "Permission set group ") {
        Some(r) => (true, r),
        None => (false, strip_prefix_ci(d, "Permission set ")?),
    };
    let sep = if assigned { ": assigned to user " } else { ": unassigned from user " };
    let (name, user) = split_ci(rest, sep)?;
    let name = match rfind_ci(name, " with expiration") {
        Some(i) if i + " with expiration".len() == name.len() => &name[..i],
        _ => name,
    };
    Some(AuditChange::PermSetAssignment { perm_set: boxed(name), user: user_ref(user), assigned, group })
}

/// `<name>: <Label> permission was changed from disabled to enabled`
fn name_label_state(rest: &str) -> Option<(&str, &str, bool)> {
    let (left, states) = split_ci(rest, " was changed ")?;
    let (_, to) = from_to(states)?;
    let enabled = enabled_word(to)?;
    let (name, label) = rsplit_ci(left, ": ")?;
    Some((name, label, enabled))
}

fn perm_set_permission(d: &str) -> Option<AuditChange> {
    let rest = strip_prefix_ci(d, "Changed permission set ")?;
    let (name, label, enabled) = name_label_state(rest)?;
    let label = label.trim();
    let label = match rfind_ci(label, " permission") {
        Some(i) if i + " permission".len() == label.len() => &label[..i],
        _ => label,
    };
    Some(AuditChange::PermSetPermission {
        perm_set: boxed(name),
        perm: Perms::from_label(label),
        label: boxed(label),
        enabled,
    })
}

fn profile_permission(d: &str) -> Option<AuditChange> {
    let rest = strip_prefix_ci(d, "Changed profile ")?;
    let (name, label, enabled) = name_label_state(rest)?;
    let mut label = label.trim();
    for prefix in [
        "general user permission ",
        "system permission ",
        "administrative permission ",
        "user permission ",
        "permission ",
    ] {
        if let Some(l) = strip_prefix_ci(label, prefix) {
            label = l;
            break;
        }
    }
    Some(AuditChange::ProfilePermission {
        profile: boxed(name),
        perm: Perms::from_label(label),
        label: boxed(label),
        enabled,
    })
}

fn group_component(d: &str) -> Option<AuditChange> {
    let rest = strip_prefix_ci(d, "Changed permission set group ")?;
    let (group, rest) = split_ci(rest, ": group member ")?;
    let (member, state) = rsplit_ci(rest, " was ")?;
    let added = match state.trim().trim_end_matches('.').to_ascii_lowercase().as_str() {
        "added" => true,
        "removed" | "deleted" => false,
        _ => return None,
    };
    Some(AuditChange::GroupComponent { group: boxed(group), perm_set: boxed(member), added })
}

fn user_profile(d: &str) -> Option<AuditChange> {
    let rest = strip_prefix_ci(d, "Changed profile for user ")?;
    let (user, profiles) = split_ci(rest, " from ")?;
    let (from, to) = rsplit_ci(profiles, " to ")?;
    Some(AuditChange::UserProfile { user: user_ref(user), from: boxed(from), to: boxed(to) })
}

fn login_ip_range(d: &str, added: bool) -> Option<AuditChange> {
    let rest = strip_prefix_ci(d, if added { "Added Login Ip Range to " } else { "Deleted Login Ip Range to " })
        .or_else(|| {
            strip_prefix_ci(d, if added { "Added Login Ip Range for " } else { "Deleted Login Ip Range from " })
        })?;
    let (profile, range) = rsplit_ci(rest, " from ")?;
    let range = IpRange::parse(range.trim().trim_end_matches('.'))?;
    Some(AuditChange::LoginIpRange { profile: boxed(profile), range, added })
}

fn client_credentials_enabled(d: &str) -> Option<AuditChange> {
    let at = find_ci(d, "Enable Client Credentials Flow")?;
    let (_, to) = from_to(&d[at..])?;
    let enabled = enabled_word(to)?;
    // Variants that name the app: "Changed connected app X Enable Client…" /
    // "… for connected app X".
    let before = &d[..at];
    let app = strip_prefix_ci(before, "Changed connected app ")
        .or_else(|| strip_prefix_ci(before, "Changed external client app "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let (_, app) = split_ci(&d[at..], " for connected app ")?;
            Some(app.trim().trim_end_matches('.'))
        })
        .map(boxed);
    Some(AuditChange::ClientCredentialsEnabled { app, enabled })
}

fn client_credentials_user(d: &str) -> Option<AuditChange> {
    let rest = strip_prefix_ci(d, "Assigned OAuth client credentials user ")?;
    let (user, app) = split_ci(rest, " to app ")?;
    let (app, app_id) = match split_ci(app, "(AppID:") {
        Some((name, id)) => (
            name,
            id.trim_start()
                .trim_start_matches('[')
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .and_then(SfId::parse),
        ),
        None => (app, None),
    };
    if app.trim().is_empty() {
        return None;
    }
    Some(AuditChange::ClientCredentialsUser { user: user_ref(user), app: boxed(app), app_id })
}

fn ip_relaxation(d: &str) -> Option<AuditChange> {
    let rest =
        strip_prefix_ci(d, "Changed connected app ").or_else(|| strip_prefix_ci(d, "Changed external client app "))?;
    let (app, states) = split_ci(rest, " IP relaxation setting ")?;
    let (_, to) = from_to(states)?;
    let relaxed = strip_prefix_ci(to, "Relax").is_some();
    Some(AuditChange::IpRelaxation { app: boxed(app), relaxed, setting: boxed(to) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Option<SfId> {
        SfId::parse(s)
    }

    #[test]
    fn reference_examples() {
        assert_eq!(
            parse(
                "PermSetAssign",
                "Permission set Sith Lord: assigned to user Darth Vader (UserID: [0052A00000EsOI0])"
            ),
            AuditChange::PermSetAssignment {
                perm_set: "Sith Lord".into(),
                user: UserRef { id: id("0052A00000EsOI0"), name: Some("Darth Vader".into()) },
                assigned: true,
                group: false
            }
        );
        assert_eq!(
            parse(
                "PermSetAssign_HasExpiration",
                "Permission set SithLord with expiration: assigned to user Darth Vader (UserID: [0052A00000EsOI0]), expiring on Sat May 20 06:59:59 GMT 2023"
            ),
            AuditChange::PermSetAssignment {
                perm_set: "SithLord".into(),
                user: UserRef { id: id("0052A00000EsOI0"), name: Some("Darth Vader".into()) },
                assigned: true,
                group: false
            }
        );
        assert!(matches!(
            parse(
                "PermSetGroupUnassign",
                "Permission set group Sith: unassigned from user Darth Vader (UserID: [0052A00000EsOI0])"
            ),
            AuditChange::PermSetAssignment { group: true, assigned: false, .. }
        ));
        assert_eq!(
            parse(
                "PermSetEnableUserPerm",
                "Changed permission set Sith Lord: Modify All Data permission was changed from disabled to enabled"
            ),
            AuditChange::PermSetPermission {
                perm_set: "Sith Lord".into(),
                perm: Perms::MODIFY_ALL_DATA,
                label: "Modify All Data".into(),
                enabled: true
            }
        );
        assert!(matches!(
            parse(
                "PermSetDisableUserPerm",
                "Changed permission set Death Star: Convert Leads permission was changed from enabled to disabled"
            ),
            AuditChange::PermSetPermission { enabled: false, perm: Perms(0), .. }
        ));
        assert_eq!(
            parse(
                "profilePermChangedCustom",
                "Changed profile Sith: general user permission View All Data was changed from disabled to enabled"
            ),
            AuditChange::ProfilePermission {
                profile: "Sith".into(),
                perm: Perms::VIEW_ALL_DATA,
                label: "View All Data".into(),
                enabled: true
            }
        );
        assert_eq!(
            parse("changedprofileforuser", "Changed profile for user Anakin Skywalker from Jedi to Sith"),
            AuditChange::UserProfile {
                user: UserRef { id: None, name: Some("Anakin Skywalker".into()) },
                from: "Jedi".into(),
                to: "Sith".into()
            }
        );
        assert_eq!(
            parse("loginIpRange", "Added Login Ip Range to Custom: Support Profile from 1.1.1.2 to 255.255.255.255"),
            AuditChange::LoginIpRange {
                profile: "Custom: Support Profile".into(),
                range: IpRange::parse("1.1.1.2-255.255.255.255").unwrap(),
                added: true
            }
        );
        assert!(matches!(
            parse(
                "deletedLoginIpRange_withProfile",
                "Deleted Login Ip Range to Custom: Support Profile from 1.1.1.2 to 255.255.255.255"
            ),
            AuditChange::LoginIpRange { added: false, .. }
        ));
        assert_eq!(
            parse(
                "changeApplicationClientCredentialEnabled",
                "Changed Enable Client Credentials Flow from false to true"
            ),
            AuditChange::ClientCredentialsEnabled { app: None, enabled: true }
        );
        assert_eq!(
            parse(
                "addOauthClientCredentialUser",
                "Assigned OAuth client credentials user darth@vader.com (UserID: [005790000024p8r]) to app Death Star Connector (AppID: [0H479000000CcUh])"
            ),
            AuditChange::ClientCredentialsUser {
                user: UserRef { id: id("005790000024p8r"), name: Some("darth@vader.com".into()) },
                app: "Death Star Connector".into(),
                app_id: id("0H479000000CcUh")
            }
        );
        assert_eq!(
            parse(
                "changeIpRelaxationPolicy",
                "Changed connected app DeathStar IP relaxation setting from Enforce IP restrictions to Relax IP restrictions"
            ),
            AuditChange::IpRelaxation {
                app: "DeathStar".into(),
                relaxed: true,
                setting: "Relax IP restrictions".into()
            }
        );
        assert_eq!(
            parse(
                "PermissionSetGroupComponentAdd",
                "Changed permission set group Sith_Lord: group member Death Star was added"
            ),
            AuditChange::GroupComponent { group: "Sith_Lord".into(), perm_set: "Death Star".into(), added: true }
        );
    }

    #[test]
    fn tolerated_variants() {
        assert!(matches!(
            parse("PERMSETASSIGN", "permission set Admin Tools: Assigned To User ops@acme.example"),
            AuditChange::PermSetAssignment { assigned: true, user: UserRef { id: None, .. }, .. }
        ));
        assert_eq!(
            parse(
                "changeApplicationClientCredentialEnabled",
                "Changed connected app Acme ETL Enable Client Credentials Flow setting from false to true."
            ),
            AuditChange::ClientCredentialsEnabled { app: Some("Acme ETL".into()), enabled: true }
        );
        assert_eq!(
            parse(
                "changeApplicationClientCredentialEnabled",
                "Changed Enable Client Credentials Flow from true to false"
            ),
            AuditChange::ClientCredentialsEnabled { app: None, enabled: false }
        );
    }

    #[test]
    fn unknown_and_unparsed() {
        assert_eq!(parse("createduser", "Created new user Anakin Skywalker"), AuditChange::Ignored);
        assert_eq!(parse("PermSetAssign", "something else entirely"), AuditChange::Unparsed);
        assert_eq!(parse("loginIpRange", "Added Login Ip Range to X from a to b"), AuditChange::Unparsed);
    }
}
