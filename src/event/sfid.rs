//! Salesforce record ids, held in their canonical 18-character form.
//!
//! Salesforce prints the same id as 15 case-sensitive characters (ELF `USER_ID`,
//! SetupAuditTrail `Display`) or 18 characters (REST, ELF `USER_ID_DERIVED`).
//! The last three characters of the 18-character form are a checksum of the
//! case of the first fifteen, so `SfId` keeps the first fifteen as written and
//! recomputes the suffix: both forms compare and hash equal.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SfId([u8; 18]);

const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

impl SfId {
    /// Accepts a 15- or 18-character alphanumeric id; anything else is `None`.
    pub fn parse(s: &str) -> Option<SfId> {
        let b = s.trim().as_bytes();
        if (b.len() != 15 && b.len() != 18) || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut id = [0u8; 18];
        id[..15].copy_from_slice(&b[..15]);
        for chunk in 0..3 {
            let mut bits = 0usize;
            for i in 0..5 {
                if id[chunk * 5 + i].is_ascii_uppercase() {
                    bits |= 1 << i;
                }
            }
            id[15 + chunk] = SUFFIX_ALPHABET[bits];
        }
        Some(SfId(id))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SfId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_and_eighteen_compare_equal() {
        let a = SfId::parse("0055j00000AT6I1").unwrap();
        let b = SfId::parse("0055j00000AT6I1AAL").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "0055j00000AT6I1AAL");
        assert_eq!(SfId::parse("0055j000000utlP").unwrap().as_str(), "0055j000000utlPAAQ");
        assert_eq!(&SfId::parse("00D5j00000DgAYG").unwrap().as_str()[..15], "00D5j00000DgAYG");
    }

    #[test]
    fn suffix_case_is_canonicalised() {
        assert_eq!(SfId::parse("0055j00000AT6I1aal"), SfId::parse("0055j00000AT6I1AAL"));
    }

    #[test]
    fn rejects_non_ids() {
        for s in ["", "0055j00000AT6I", "0055j00000AT6I1AA", "0055j00000-T6I1", "Salesforce.com IP"] {
            assert!(SfId::parse(s).is_none(), "{s}");
        }
    }
}
