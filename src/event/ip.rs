//! Allowed IP ranges: parsing and membership.
//!
//! Salesforce prints profile login IP ranges as `from A to B`; operators write
//! CIDR blocks in the config. Both become one inclusive `[start, end]` range of
//! one address family. IPv4-mapped IPv6 source addresses are compared as IPv4.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

fn key(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (4, u128::from(u32::from(v4))),
            None => (6, u128::from(v6)),
        },
    }
}

/// A source IP as written, trimmed, unless blank or `Salesforce.com IP` (a
/// call from inside Salesforce, which names no address to match).
pub fn usable_ip(ip: Option<&str>) -> Option<&str> {
    ip.map(str::trim).filter(|i| !i.is_empty() && !i.eq_ignore_ascii_case("Salesforce.com IP"))
}

/// Parses a source IP as Salesforce records it (trimmed; `Salesforce.com IP` and
/// other non-addresses give `None`).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

impl IpRange {
    /// An inclusive range; `None` when the ends differ in family or are reversed.
    pub fn new(start: IpAddr, end: IpAddr) -> Option<IpRange> {
        let (a, b) = (key(start), key(end));
        (a.0 == b.0 && a.1 <= b.1).then_some(IpRange { start, end })
    }

    /// Accepts `10.0.0.0/8`, `1.1.1.2-255.255.255.255`, `1.1.1.2 to 1.1.1.9` or one address.
    pub fn parse(s: &str) -> Option<IpRange> {
        let s = s.trim();
        if let Some((net, bits)) = s.split_once('/') {
            let net: IpAddr = net.trim().parse().ok()?;
            let bits: u32 = bits.trim().parse().ok()?;
            let (fam, base) = key(net);
            let width = if fam == 4 { 32 } else { 128 };
            if bits > width {
                return None;
            }
            let host_bits = width - bits;
            let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
            let lo = base & !mask;
            let hi = lo | mask;
            return Some(if fam == 4 {
                IpRange { start: IpAddr::V4((lo as u32).into()), end: IpAddr::V4((hi as u32).into()) }
            } else {
                IpRange { start: IpAddr::V6(lo.into()), end: IpAddr::V6(hi.into()) }
            });
        }
        let (a, b) = s.split_once(" to ").or_else(|| s.split_once('-')).unwrap_or((s, s));
        IpRange::new(parse_ip(a)?, parse_ip(b)?)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (f, v) = key(ip);
        let (fs, s) = key(self.start);
        let (_, e) = key(self.end);
        f == fs && s <= v && v <= e
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn salesforce_from_to_form() {
        let r = IpRange::parse("1.1.1.2 to 255.255.255.255").unwrap();
        assert!(r.contains(ip("8.8.8.8")));
        assert!(!r.contains(ip("1.1.1.1")));
        assert_eq!(r.to_string(), "1.1.1.2-255.255.255.255");
    }

    #[test]
    fn cidr_and_single() {
        let r = IpRange::parse("198.51.100.0/24").unwrap();
        assert!(r.contains(ip("198.51.100.255")));
        assert!(!r.contains(ip("198.51.101.0")));
        assert!(r.contains(ip("::ffff:198.51.100.7")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.1")));
        assert!(IpRange::parse("2001:db8::/32").unwrap().contains(ip("2001:db8::1")));
        assert!(IpRange::parse("203.0.113.5").unwrap().contains(ip("203.0.113.5")));
    }

    #[test]
    fn rejects_bad_ranges() {
        for s in ["", "10.0.0.0/33", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "Salesforce.com IP", "1.2.3/8"] {
            assert!(IpRange::parse(s).is_none(), "{s}");
        }
    }
}
