//! Enrichment: offline reference data the correlator asks about an IP or a
//! user agent. It owns the three `[enrichment]` files, their parsing, and
//! the lookups; nothing here touches the network.
//!
//! - `tor_exit_list`: the `torbulkexitlist` format (one IP a line; blank
//!   lines and `#` comments skipped; FireHOL-style `IP/len` lines accepted).
//! - `ioc_file`: TOML `[[ioc]]` entries, each with exactly one of `ip`,
//!   `cidr` or `user_agent` (a case-insensitive substring), a `note`, and an
//!   optional `expires = "YYYY-MM-DD"`. An entry matches records whose event
//!   time is before the end of its expiry day: replay and live answer alike.
//! - `asn_db`: a MaxMind or DB-IP ASN database (`.mmdb`), read into memory.
//!
//! A missing or broken file is an `EnrichError` naming it. At start-up that
//! ends the run; on a reload (`Reloader::poll`, live mode) the previous
//! version stays in use. Lookups are pure and synchronous; `Enrichment` is
//! immutable and shared (`Arc`), and a reload builds a new one.
//!
//! Reference data is read by `correlate` like `config` is: it is not a
//! stage of the one-way flow.

use crate::event::ip::parse_ip;
use crate::event::{contains_ci, EventTime, IpRange};
use serde::Deserialize;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// `[enrichment]`: where the reference files are. Relative paths are
/// resolved from the config file's directory.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentConfig {
    pub tor_exit_list: Option<PathBuf>,
    pub ioc_file: Option<PathBuf>,
    pub asn_db: Option<PathBuf>,
    /// Live mode: how often the files' modification times are checked.
    pub reload_seconds: u64,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        EnrichmentConfig { tor_exit_list: None, ioc_file: None, asn_db: None, reload_seconds: 30 }
    }
}

impl EnrichmentConfig {
    /// Resolves relative paths against `base` (the config file's directory).
    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.tor_exit_list, &mut self.ioc_file, &mut self.asn_db].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// Which file a load or reload was about (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    TorExitList,
    IocFile,
    AsnDb,
}

impl FileKind {
    pub const ALL: [FileKind; 3] = [FileKind::TorExitList, FileKind::IocFile, FileKind::AsnDb];

    pub fn label(self) -> &'static str {
        match self {
            FileKind::TorExitList => "tor_exit_list",
            FileKind::IocFile => "ioc_file",
            FileKind::AsnDb => "asn_db",
        }
    }

    fn path(self, c: &EnrichmentConfig) -> Option<&Path> {
        match self {
            FileKind::TorExitList => c.tor_exit_list.as_deref(),
            FileKind::IocFile => c.ioc_file.as_deref(),
            FileKind::AsnDb => c.asn_db.as_deref(),
        }
    }
}

/// A reference file that could not be used. Displays as one line.
#[derive(Debug, thiserror::Error)]
#[error("enrichment.{} {}: {message}", .kind.label(), .path.display())]
pub struct EnrichError {
    pub kind: FileKind,
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Indicator {
    Ip(IpAddr),
    Range(IpRange),
    /// Lowercased.
    UserAgent(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Ioc {
    indicator: Indicator,
    note: String,
    /// Matches records before this time (the end of the `expires` day).
    until: Option<EventTime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIoc {
    ip: Option<String>,
    cidr: Option<String>,
    user_agent: Option<String>,
    note: String,
    expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIocFile {
    #[serde(default)]
    ioc: Vec<RawIoc>,
}

#[derive(Default)]
struct TorList {
    ips: HashSet<IpAddr>,
    ranges: Vec<IpRange>,
}

/// An ASN and its organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asn {
    pub number: u32,
    pub org: String,
}

/// The reference data in use. Each file's data is shared, so a reload of one
/// file keeps the others' as they are.
#[derive(Default, Clone)]
pub struct Enrichment {
    tor: Option<Arc<TorList>>,
    iocs: Option<Arc<Vec<Ioc>>>,
    asn: Option<Arc<maxminddb::Reader<Vec<u8>>>>,
}

impl std::fmt::Debug for Enrichment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Enrichment {
    /// Loads every configured file; the first that fails is the error.
    pub fn load(c: &EnrichmentConfig) -> Result<Enrichment, EnrichError> {
        let mut e = Enrichment::default();
        for kind in FileKind::ALL {
            if let Some(path) = kind.path(c) {
                e.set(kind, path)?;
            }
        }
        Ok(e)
    }

    /// Reads one file into `self`.
    fn set(&mut self, kind: FileKind, path: &Path) -> Result<(), EnrichError> {
        let err = |message: String| EnrichError { kind, path: path.to_path_buf(), message };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        match kind {
            FileKind::TorExitList => self.tor = Some(Arc::new(parse_tor(&bytes).map_err(err)?)),
            FileKind::IocFile => self.iocs = Some(Arc::new(parse_iocs(&bytes).map_err(err)?)),
            FileKind::AsnDb => {
                let reader = maxminddb::Reader::from_source(bytes).map_err(|e| err(e.to_string()))?;
                self.asn = Some(Arc::new(reader));
            }
        }
        Ok(())
    }

    /// One line for the summary: what is loaded and which factors are off.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.tor {
            parts.push(format!("tor_exit_list={}", t.ips.len() + t.ranges.len()));
        }
        if let Some(i) = &self.iocs {
            parts.push(format!("ioc_file={}", i.len()));
        }
        if let Some(a) = &self.asn {
            parts.push(format!("asn_db={}", a.metadata().database_type));
        }
        let mut off = Vec::new();
        if self.tor.is_none() && self.iocs.is_none() {
            off.push("anonymizing_source_ip");
        }
        if self.asn.is_none() {
            off.push("new_asn");
        }
        if parts.is_empty() {
            parts.push("none".into());
        }
        if !off.is_empty() {
            parts.push(format!("off: {}", off.join(",")));
        }
        parts.join(" ")
    }

    /// Why `ip` is an anonymizing or known-bad source at `at`, if it is.
    pub fn anonymizing(&self, ip: &str, at: EventTime) -> Option<String> {
        if self.tor.is_none() && self.iocs.is_none() {
            return None;
        }
        let addr = parse_ip(ip)?;
        if let Some(t) = &self.tor {
            if t.ips.contains(&addr) || t.ranges.iter().any(|r| r.contains(addr)) {
                return Some(format!("source IP {ip} is a Tor exit (tor_exit_list)"));
            }
        }
        let ioc =
            self.iocs.as_ref()?.iter().filter(|i| i.until.is_none_or(|u| at < u)).find(|i| match &i.indicator {
                Indicator::Ip(x) => *x == addr,
                Indicator::Range(r) => r.contains(addr),
                Indicator::UserAgent(_) => false,
            })?;
        Some(format!("source IP {ip} matches IOC: {}", ioc.note))
    }

    /// The IOC note of a user agent, at `at`, if one matches.
    pub fn ioc_user_agent(&self, user_agent: &str, at: EventTime) -> Option<&str> {
        let iocs = self.iocs.as_ref()?;
        iocs.iter().filter(|i| i.until.is_none_or(|u| at < u)).find_map(|i| match &i.indicator {
            Indicator::UserAgent(ua) if contains_ci(user_agent, ua) => Some(i.note.as_str()),
            _ => None,
        })
    }

    /// The ASN `ip` belongs to, when an ASN database is loaded and knows it.
    pub fn asn(&self, ip: &str) -> Option<Asn> {
        let db = self.asn.as_ref()?;
        let found = db.lookup(parse_ip(ip)?).ok()?;
        let a: maxminddb::geoip2::Asn = found.decode().ok()??;
        Some(Asn { number: a.autonomous_system_number?, org: a.autonomous_system_organization.unwrap_or("").into() })
    }
}

fn parse_tor(bytes: &[u8]) -> Result<TorList, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let mut t = TorList::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(ip) = parse_ip(line) {
            t.ips.insert(ip);
        } else if let Some(r) = line.contains('/').then(|| IpRange::parse(line)).flatten() {
            t.ranges.push(r);
        } else {
            return Err(format!("line {}: {line:?} is not an IP address or CIDR", n + 1));
        }
    }
    Ok(t)
}

fn parse_iocs(bytes: &[u8]) -> Result<Vec<Ioc>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let raw: RawIocFile = toml::from_str(text).map_err(|e| e.message().replace('\n', " "))?;
    let mut out = Vec::new();
    for (n, r) in raw.ioc.into_iter().enumerate() {
        let at = |m: &str| format!("ioc[{n}]: {m}");
        let indicator = match (&r.ip, &r.cidr, &r.user_agent) {
            (Some(ip), None, None) => {
                Indicator::Ip(parse_ip(ip).ok_or_else(|| at(&format!("ip {ip:?} is not an IP")))?)
            }
            (None, Some(c), None) => {
                Indicator::Range(IpRange::parse(c).ok_or_else(|| at(&format!("cidr {c:?} is not a CIDR range")))?)
            }
            (None, None, Some(ua)) if !ua.trim().is_empty() => Indicator::UserAgent(ua.trim().to_ascii_lowercase()),
            _ => return Err(at("needs exactly one of ip, cidr or a non-empty user_agent")),
        };
        let until = match &r.expires {
            Some(d) => Some(
                crate::event::time::parse_timestamp(&format!("{d}T00:00:00Z"))
                    .map(|t| t.next_day_start())
                    .ok_or_else(|| at(&format!("expires {d:?} is not a YYYY-MM-DD date")))?,
            ),
            None => None,
        };
        out.push(Ioc { indicator, note: r.note, until });
    }
    Ok(out)
}

/// Live mode: watches the configured files and rebuilds the enrichment
/// when one changes.
pub struct Reloader {
    config: EnrichmentConfig,
    seen: Vec<(FileKind, Option<SystemTime>)>,
    pub current: Arc<Enrichment>,
}

/// What one reload did.
pub struct Reload {
    pub kind: FileKind,
    pub result: Result<(), EnrichError>,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Reloader {
    pub fn new(config: EnrichmentConfig, current: Arc<Enrichment>) -> Reloader {
        let seen = FileKind::ALL.into_iter().filter_map(|k| k.path(&config).map(|p| (k, modified(p)))).collect();
        Reloader { config, seen, current }
    }

    /// Reloads the files whose modification time changed. A file that no
    /// longer reads or parses keeps its previous version; the error is
    /// returned, and the file is tried again when it changes next.
    pub fn poll(&mut self) -> Vec<Reload> {
        let mut out = Vec::new();
        for (kind, seen) in &mut self.seen {
            let Some(path) = kind.path(&self.config) else { continue };
            let now = modified(path);
            if now == *seen {
                continue;
            }
            *seen = now;
            let mut next = (*self.current).clone();
            let result = next.set(*kind, path);
            if result.is_ok() {
                self.current = Arc::new(next);
            }
            out.push(Reload { kind: *kind, result });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> EventTime {
        EventTime::from_rfc3339(s).unwrap()
    }

    #[test]
    fn tor_list_lines_comments_and_ranges() {
        let t0 = t("2025-08-17T11:11:23Z");
        let list = b"# torbulkexitlist\n185.220.101.33\n\n192.42.116.0/24 # a FireHOL netset line\n";
        let e = Enrichment { tor: Some(Arc::new(parse_tor(list).unwrap())), ..Enrichment::default() };
        assert!(e.anonymizing("185.220.101.33", t0).unwrap().contains("Tor exit"));
        assert!(e.anonymizing("192.42.116.20", t0).is_some());
        assert!(e.anonymizing("208.68.36.90", t0).is_none());
        assert!(e.anonymizing("Salesforce.com IP", t0).is_none());
        let bad = parse_tor(b"185.220.101.33\nnot-an-ip\n").map(|_| ()).unwrap_err();
        assert_eq!(bad, "line 2: \"not-an-ip\" is not an IP address or CIDR");
    }

    #[test]
    fn iocs_match_by_ip_cidr_and_agent_until_they_expire() {
        let text = br#"
[[ioc]]
ip = "208.68.36.90"
note = "UNC6395 exfiltration (DigitalOcean)"
expires = "2025-12-31"

[[ioc]]
cidr = "44.215.108.0/24"
note = "UNC6395 recon (AWS)"

[[ioc]]
user_agent = "Python-urllib/"
note = "loose tier"
"#;
        let e = Enrichment { iocs: Some(Arc::new(parse_iocs(text).unwrap())), ..Enrichment::default() };
        let aug = t("2025-08-17T11:11:23Z");
        assert!(e.anonymizing("208.68.36.90", aug).unwrap().contains("DigitalOcean"));
        assert!(e.anonymizing("208.68.36.90", t("2025-12-31T23:59:59Z")).is_some(), "through its expiry day");
        assert!(e.anonymizing("208.68.36.90", t("2026-01-01T00:00:00Z")).is_none(), "expired");
        assert!(e.anonymizing("44.215.108.109", aug).is_some());
        assert_eq!(e.ioc_user_agent("python-urllib/3.12", aug), Some("loose tier"));
        assert_eq!(e.ioc_user_agent("Acme-ETL/4.2", aug), None);
        for bad in [
            "[[ioc]]\nnote = \"none\"\n",
            "[[ioc]]\nip = \"1.2.3.4\"\ncidr = \"1.2.3.0/24\"\nnote = \"two\"\n",
            "[[ioc]]\nip = \"1.2.3\"\nnote = \"bad ip\"\n",
            "[[ioc]]\nip = \"1.2.3.4\"\nnote = \"bad date\"\nexpires = \"31/12/2025\"\n",
            "[[ioc]]\nip = \"1.2.3.4\"\n",
        ] {
            assert!(parse_iocs(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn asn_from_the_sample_database() {
        let db = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/enrichment/asn-sample.mmdb");
        let mut c = EnrichmentConfig { asn_db: Some(db.into()), ..EnrichmentConfig::default() };
        let e = Enrichment::load(&c).unwrap();
        assert_eq!(e.asn("208.68.36.90"), Some(Asn { number: 14061, org: "DIGITALOCEAN-ASN".into() }));
        assert_eq!(e.asn("8.8.8.8"), None);
        assert_eq!(e.asn("Salesforce.com IP"), None);
        c.asn_db = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").into());
        let err = Enrichment::load(&c).unwrap_err().to_string();
        assert!(err.starts_with("enrichment.asn_db ") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn describe_says_which_factors_are_off() {
        assert_eq!(Enrichment::default().describe(), "none off: anonymizing_source_ip,new_asn");
    }
}
