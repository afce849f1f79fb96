//! Login records of every shape → `Login`, with the client-credentials rule.
//!
//! One table per shape names its fields (`Schema`); one function reads any
//! shape through `Fields`, so a CSV row, a forwarded ELF object, a REST row
//! and a CometD payload all go through the same classification code.
//!
//! Key fields: event time, a user (id or name) and a status. A record missing
//! one is rejected as `missing_field`; an unparsable time as `bad_timestamp`.

use super::{first_text, Decoded, Fields, Reject, RejectReason};
use crate::event::time::parse_timestamp;
use crate::event::{GrantClass, GrantKeys, Login, NormalizedEvent, RecordKind, SfId};

/// Where each logical field lives in one record shape; first present name wins.
struct Schema {
    time: &'static [&'static str],
    id: &'static [&'static str],
    user_id: &'static [&'static str],
    username: &'static [&'static str],
    login_type: &'static str,
    sub_type: &'static str,
    ip: &'static str,
    status: &'static str,
    app: Option<&'static str>,
    org: Option<&'static str>,
    uri: Option<&'static str>,
    login_key: Option<&'static str>,
    session_key: Option<&'static str>,
    login_history_id: Option<&'static str>,
    request_id: Option<&'static str>,
}

const RTEM: Schema = Schema {
    time: &["EventDate"],
    id: &["EventIdentifier"],
    user_id: &["UserId"],
    username: &["Username"],
    login_type: "LoginType",
    sub_type: "LoginSubType",
    ip: "SourceIp",
    status: "Status",
    app: Some("Application"),
    org: None,
    uri: None,
    login_key: Some("LoginKey"),
    session_key: Some("SessionKey"),
    login_history_id: Some("LoginHistoryId"),
    request_id: None,
};

const LOGIN_HISTORY: Schema = Schema {
    time: &["LoginTime"],
    id: &["Id"],
    user_id: &["UserId"],
    username: &["Username", "User.Username"],
    login_key: None,
    session_key: None,
    login_history_id: Some("Id"),
    ..RTEM
};

const ELF: Schema = Schema {
    time: &["TIMESTAMP_DERIVED", "TIMESTAMP"],
    id: &["REQUEST_ID", "LOGIN_KEY"],
    user_id: &["USER_ID_DERIVED", "USER_ID"],
    username: &["USER_NAME"],
    login_type: "LOGIN_TYPE",
    sub_type: "LOGIN_SUB_TYPE",
    ip: "SOURCE_IP",
    status: "LOGIN_STATUS",
    app: None,
    org: Some("ORGANIZATION_ID"),
    uri: Some("URI"),
    login_key: Some("LOGIN_KEY"),
    session_key: Some("SESSION_KEY"),
    login_history_id: None,
    request_id: Some("REQUEST_ID"),
};

const LOGIN_EVENT_LOG: Schema = Schema {
    time: &["Timestamp"],
    id: &["RequestIdentifier", "LoginKey", "Id"],
    user_id: &["UserIdentifier", "UserId"],
    username: &["Username", "UserName"],
    login_type: "LoginType",
    sub_type: "LoginSubType",
    ip: "SourceIp",
    status: "LoginStatus",
    app: None,
    org: None,
    uri: Some("Uri"),
    login_key: Some("LoginKey"),
    session_key: Some("SessionKey"),
    login_history_id: None,
    request_id: Some("RequestIdentifier"),
};

/// The OAuth token endpoint; an ELF row without `LOGIN_TYPE` (pre-2023 header)
/// that hit it is an OAuth grant of unknown flow.
const TOKEN_URI: &str = "/services/oauth2/token";

/// True when `s` lowercased with every non-alphanumeric removed equals `target`.
fn norm_eq(s: &str, target: &str) -> bool {
    let mut t = target.bytes();
    for b in s.bytes().filter(u8::is_ascii_alphanumeric) {
        if t.next() != Some(b.to_ascii_lowercase()) {
            return false;
        }
    }
    t.next().is_none()
}

/// The client-credentials rule of the reference's §0.2.
pub fn classify(login_type: Option<&str>, sub_type: Option<&str>, uri: Option<&str>) -> GrantClass {
    let remote_access_2 = match login_type {
        // ELF codes are case-sensitive: `i` is Remote Access 2.0, `I` Other Apex API.
        Some(t) => t == "Remote Access 2.0" || t == "i",
        None => uri == Some(TOKEN_URI),
    };
    if !remote_access_2 {
        return GrantClass::Other;
    }
    match sub_type.map(str::trim).filter(|s| !s.is_empty()) {
        None => GrantClass::Unclassified,
        Some(s) if norm_eq(s, "oauthclientcredentials") || norm_eq(s, "oauthclientcredential") => {
            GrantClass::ClientCredentials
        }
        Some(_) => GrantClass::Other,
    }
}

fn reject(reason: RejectReason, detail: String, index: Option<u32>) -> Decoded {
    Decoded::Rejected(Reject { reason, detail, index })
}

/// Decodes one login record of `kind`. `fallback_id` is used when the record has
/// no id of its own (a CometD envelope's `EventUuid` or `replayId`).
pub fn decode<'a, F: Fields<'a>>(f: &F, kind: RecordKind, fallback_id: Option<&str>, index: Option<u32>) -> Decoded {
    let schema = match kind {
        RecordKind::LoginHistory => &LOGIN_HISTORY,
        RecordKind::ElfLogin => &ELF,
        RecordKind::LoginEventLog => &LOGIN_EVENT_LOG,
        _ => &RTEM,
    };
    let Some(time_text) = first_text(f, schema.time) else {
        return reject(RejectReason::MissingField, format!("{} has no {}", kind.label(), schema.time[0]), index);
    };
    let Some(time) = parse_timestamp(&time_text) else {
        return reject(
            RejectReason::BadTimestamp,
            format!("{} {:?} is not a timestamp", schema.time[0], truncate(&time_text)),
            index,
        );
    };
    let user_text = first_text(f, schema.user_id);
    let username = first_text(f, schema.username);
    // Parse the id only when it matters: for a grant, or when it is the only key.
    let user_id = || user_text.as_deref().and_then(SfId::parse);
    if username.is_none() && user_id().is_none() {
        return reject(
            RejectReason::MissingField,
            format!("{} has no {} or {}", kind.label(), schema.user_id[0], schema.username[0]),
            index,
        );
    }
    let Some(status) = f.text(schema.status) else {
        return reject(RejectReason::MissingField, format!("{} has no {}", kind.label(), schema.status), index);
    };
    let success = status == "Success" || status == "LOGIN_NO_ERROR";
    let uri = schema.uri.and_then(|u| f.text(u));
    let grant = classify(f.text(schema.login_type).as_deref(), f.text(schema.sub_type).as_deref(), uri.as_deref());
    if grant != GrantClass::ClientCredentials {
        return Decoded::Counted { kind, grant, success, time };
    }
    let event_id = first_text(f, schema.id).map(|s| s.into()).or_else(|| fallback_id.map(Into::into));
    Decoded::Event(NormalizedEvent::Login(Login {
        time,
        kind,
        event_id,
        org_id: schema.org.and_then(|o| f.text(o)).and_then(|o| SfId::parse(&o)),
        user_id: user_id(),
        username: username.map(|u| u.into()),
        app: schema.app.and_then(|a| f.text(a)).map(|a| a.into()),
        source_ip: f.text(schema.ip).map(|s| s.trim().into()),
        success,
        status: status.into(),
        grant,
        keys: GrantKeys {
            login_key: key_text(f, schema.login_key),
            session_key: key_text(f, schema.session_key),
            login_history_id: key_text(f, schema.login_history_id),
            request_id: key_text(f, schema.request_id),
        },
    }))
}

/// A key field's trimmed text, when present and not blank.
fn key_text<'a, F: Fields<'a>>(f: &F, field: Option<&str>) -> Option<Box<str>> {
    let t = f.text(field?)?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.into())
}

/// At most 64 characters of untrusted text, for error details.
pub fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_rule() {
        use GrantClass::*;
        let c = |t, s| classify(t, s, None);
        assert_eq!(c(Some("Remote Access 2.0"), Some("OAuth Client Credentials")), ClientCredentials);
        assert_eq!(c(Some("Remote Access 2.0"), Some("OauthClientCredentials")), ClientCredentials);
        assert_eq!(c(Some("i"), Some("oauthclientcredential")), ClientCredentials);
        assert_eq!(c(Some("i"), Some("oauth_client-credentials")), ClientCredentials);
        assert_eq!(c(Some("I"), Some("oauthclientcredential")), Other, "ELF codes are case-sensitive");
        assert_eq!(c(Some("Remote Access 2.0"), Some("OAuth Refresh Token")), Other);
        assert_eq!(c(Some("Remote Access 2.0"), Some("OAuth Client Credentialsx")), Other);
        assert_eq!(c(Some("Remote Access 2.0"), None), Unclassified);
        assert_eq!(c(Some("i"), Some("  ")), Unclassified);
        assert_eq!(c(Some("Application"), Some("OAuth Client Credentials")), Other);
        assert_eq!(classify(None, None, Some(TOKEN_URI)), Unclassified);
        assert_eq!(classify(None, None, Some("/")), Other);
    }
}
