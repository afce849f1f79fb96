//! Key normalisation: the one comparable form of the names Salesforce prints
//! in different cases and spacings (usernames, app names, permission sets,
//! profiles), used by config, correlate and score alike so that a name
//! written one way in the config and another way in a record still meets.

use super::SfId;
use std::borrow::Cow;

/// `str::to_lowercase`, without a copy when there is nothing to lower.
pub fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// Whether `text` contains `needle`, ASCII case-insensitively, without
/// allocating (user agents, SOQL and operation names, once per record).
pub fn contains_ci(text: &str, needle: &str) -> bool {
    let n = needle.as_bytes();
    n.is_empty() || text.as_bytes().windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// A name's comparable form: trimmed and lowercased (usernames, app names,
/// permission sets and groups).
pub fn key(s: &str) -> Cow<'_, str> {
    lowercase(s.trim())
}

/// Profile names are printed with a `Custom: ` / `Standard: ` prefix in some
/// audit actions and without it in others; this is the comparable form.
pub fn profile_key(s: &str) -> Cow<'_, str> {
    let s = s.trim();
    let strip = |prefix: &str| {
        (s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
            .then(|| &s[prefix.len()..])
    };
    key(strip("Custom:").or_else(|| strip("Standard:")).unwrap_or(s))
}

/// A user's key: the 18-character id when known, else the username's key.
pub fn user_key<'a>(id: Option<&'a SfId>, name: Option<&'a str>) -> Option<Cow<'a, str>> {
    match id {
        Some(id) => Some(Cow::Borrowed(id.as_str())),
        None => name.map(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_in_one_form() {
        assert_eq!(key("  Marketing Sync "), "marketing sync");
        assert!(matches!(key("already lower"), Cow::Borrowed(_)));
        assert_eq!(profile_key("Custom: Support Profile"), "support profile");
        assert_eq!(profile_key("standard:System Administrator"), "system administrator");
        assert_eq!(profile_key("System Administrator"), "system administrator");
        let id = SfId::parse("0055j00000MktS1").unwrap();
        assert_eq!(user_key(Some(&id), Some("X@Y")).unwrap(), id.as_str());
        assert_eq!(user_key(None, Some(" Sync@Acme.Example ")).unwrap(), "sync@acme.example");
        assert_eq!(user_key(None, None), None);
    }
}
