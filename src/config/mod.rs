//! Configuration: TOML text → `RawConfig` (serde, unknown keys rejected) →
//! validated `Config`, with every problem reported at once.
//!
//! The file defines detection: scoring weights and bands, correlation windows
//! and state bounds, allowed IP ranges per app, user and profile. Runtime knobs
//! (inputs, output format, time window) are CLI flags. Later code takes
//! `&Config` and never re-validates.

pub mod live;

use crate::event::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
use crate::event::{key, profile_key, IpRange, SfId};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Why a config file was refused. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {error}")]
    Read { path: String, error: std::io::Error },
    /// The TOML is malformed or has unknown keys or wrong types.
    #[error("invalid config {path}: {message}")]
    Parse { path: String, message: String },
    /// Values parse but break a rule; all of them, joined.
    #[error("invalid config {path}: {}", .problems.join("; "))]
    Invalid { path: String, problems: Vec<String> },
}

/// Weights of each scoring factor (ids as in the alert's `factors[].id`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub privileged_run_as_user: f64,
    pub recent_privilege_escalation: f64,
    pub ip_outside_allowed_ranges: f64,
    pub no_ip_restriction: f64,
    pub ip_within_allowed_ranges: f64,
    pub new_source_ip: f64,
    pub flow_recently_enabled: f64,
    pub failed_grant_burst: f64,
    // Data-access factors (`client_credentials_data_access`); the last
    // two apply to grant alerts too.
    pub recon_query_pattern: f64,
    pub sensitive_objects: f64,
    pub bulk_export: f64,
    pub bulk_job_deleted_quickly: f64,
    pub high_row_volume: f64,
    pub ioc_user_agent: f64,
    pub activity_ip_differs: f64,
    pub shield_anomaly: f64,
    pub anonymizing_source_ip: f64,
    pub new_asn: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            privileged_run_as_user: 2.0,
            recent_privilege_escalation: 1.0,
            ip_outside_allowed_ranges: 1.5,
            no_ip_restriction: 0.5,
            ip_within_allowed_ranges: -2.5,
            new_source_ip: 1.0,
            flow_recently_enabled: 0.5,
            failed_grant_burst: 1.0,
            recon_query_pattern: 1.0,
            sensitive_objects: 0.5,
            bulk_export: 1.0,
            bulk_job_deleted_quickly: 1.5,
            high_row_volume: 1.0,
            ioc_user_agent: 1.5,
            activity_ip_differs: 0.5,
            shield_anomaly: 1.0,
            anonymizing_source_ip: 1.5,
            new_asn: 1.0,
        }
    }
}

/// Scoring: the starting score and the severity bands.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// Every successful grant starts here: the control's High band (CVSS 7.0).
    pub base_score: f64,
    pub weights: Weights,
    /// Scores at or above this are medium (below it, low).
    pub medium_from: f64,
    /// …high; also the floor of `client_credentials_enabled` alerts.
    pub high_from: f64,
    /// …critical.
    pub critical_from: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            base_score: 7.0,
            weights: Weights::default(),
            medium_from: 4.0,
            high_from: 7.0,
            critical_from: 9.0,
        }
    }
}

/// Correlation windows (event time) and state bounds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawCorrelation {
    /// `recent_privilege_escalation` looks back this far.
    pub escalation_window_hours: u32,
    /// `flow_recently_enabled` looks back this far.
    pub flow_enabled_window_hours: u32,
    /// `failed_grant_burst` counts failures this far before a success…
    pub failed_burst_window_minutes: u32,
    /// …and fires at this many.
    pub failed_burst_threshold: u32,
    /// Source IPs unseen for this long are forgotten.
    pub ip_history_days: u32,
    /// (user, app) pairs whose IP history is kept; least recently used evicted.
    pub max_pairs: usize,
    /// Distinct IPs remembered per pair.
    pub max_ips_per_pair: usize,
    /// Users whose recent failed grants are kept.
    pub max_failure_users: usize,
    /// Setup records (audit trail, inventory) kept on the event-time timeline
    /// privileges are answered from; past it the oldest are folded into the
    /// baseline and counted.
    pub max_setup_records: usize,
    /// How long after a grant its token may act: the window of tuple
    /// attribution (org, user, app, IP) and of waiting for a late grant.
    pub token_lifetime_minutes: u32,
    /// Grant sessions kept (least recently used evicted, counted).
    pub max_sessions: usize,
    /// Activity records kept waiting for a grant that may arrive later.
    pub max_waiting_activity: usize,
}

impl Default for RawCorrelation {
    fn default() -> Self {
        RawCorrelation {
            escalation_window_hours: 24,
            flow_enabled_window_hours: 24,
            failed_burst_window_minutes: 10,
            failed_burst_threshold: 5,
            ip_history_days: 30,
            max_pairs: 100_000,
            max_ips_per_pair: 64,
            max_failure_users: 100_000,
            max_setup_records: 1_000_000,
            token_lifetime_minutes: 120,
            max_sessions: 100_000,
            max_waiting_activity: 100_000,
        }
    }
}

/// `[activity]`: what the data-access rule counts as reconnaissance, bulk
/// export, high volume and sensitive (`correlate::access`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    /// Objects whose reading adds `sensitive_objects` (case-insensitive).
    pub sensitive_objects: Vec<String>,
    /// `recon_query_pattern`: this many `SELECT COUNT()` queries on distinct
    /// objects within `recon_window_minutes` (or a global `sobjects` list
    /// call and one `COUNT()`).
    pub recon_window_minutes: u32,
    pub recon_min_objects: usize,
    /// `bulk_job_deleted_quickly`: a Bulk API 2.0 job deleted at most this
    /// long after it completed.
    pub bulk_delete_within_seconds: u32,
    /// `bulk_export`: no bulk export in this many previous days of history.
    pub bulk_quiet_days: u32,
    /// `high_row_volume`: rows read in a UTC day ≥ max(`median_factor` × the
    /// pair's median, `min_rows`) once the pair has `baseline_days` of
    /// history; before that ≥ `absolute_rows`.
    pub median_factor: f64,
    pub min_rows: u64,
    pub absolute_rows: u64,
    pub baseline_days: u32,
    /// `shield_anomaly`: an `ApiAnomalyEventStore` score (0–1) at least this.
    pub anomaly_score: f64,
    /// `ioc_user_agent`: user agents matched as case-insensitive substrings;
    /// the default is the published UNC6395 agents.
    pub ioc_user_agents: Vec<String>,
    /// (user, app) pairs whose activity history is kept (LRU, evictions counted).
    pub max_pairs: usize,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        ActivityConfig {
            sensitive_objects: s(&["Account", "Contact", "Lead", "User", "Case", "Opportunity", "Organization"]),
            recon_window_minutes: 10,
            recon_min_objects: 3,
            bulk_delete_within_seconds: 300,
            bulk_quiet_days: 7,
            median_factor: 10.0,
            min_rows: 10_000,
            absolute_rows: 100_000,
            baseline_days: 7,
            anomaly_score: 0.8,
            ioc_user_agents: s(&[
                "Salesforce-Multi-Org-Fetcher/1.0",
                "Salesforce-CLI/1.0",
                "python-requests/2.32.4",
                "Python/3.11 aiohttp/3.12.15",
            ]),
            max_pairs: 100_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Event ids kept per alert.
    pub max_evidence: usize,
    /// Alerts held open at once; past it the oldest is closed early (its
    /// final line written, counted as an early close).
    pub max_open: usize,
    /// Closed alerts remembered so a late record continues the count.
    pub max_closed: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig { max_evidence: 20, max_open: 50_000, max_closed: 50_000 }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Records per input held to restore event-time order inside one file.
    pub reorder_buffer: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig { reorder_buffer: 131_072 }
    }
}

/// One `[[ip_ranges]]` table: exactly one of `app`, `user`, `profile`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawIpRanges {
    pub app: Option<String>,
    /// A user id (15 or 18 characters) or username.
    pub user: Option<String>,
    pub profile: Option<String>,
    pub ranges: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Org id for records that carry none (only ELF rows carry `ORGANIZATION_ID`).
    pub org_id: Option<String>,
    #[serde(default)]
    pub scoring: ScoringConfig,
    #[serde(default)]
    pub correlation: RawCorrelation,
    #[serde(default)]
    pub alerts: AlertConfig,
    #[serde(default)]
    pub activity: ActivityConfig,
    #[serde(default)]
    pub enrichment: crate::enrich::EnrichmentConfig,
    #[serde(default)]
    pub replay: ReplayConfig,
    #[serde(default)]
    pub ip_ranges: Vec<RawIpRanges>,
    /// Inventory snapshots loaded at the start of `run` (the privilege baseline).
    #[serde(default)]
    pub inventory: Vec<std::path::PathBuf>,
    /// Live mode: the Kafka connection and topics.
    pub kafka: Option<live::RawKafka>,
    /// Live mode: where alerts go.
    #[serde(default)]
    pub sinks: Vec<live::RawSink>,
    /// Live mode: where alerts a sink refuses for good go.
    pub alert_dead_letter: Option<live::RawAlertDeadLetter>,
    /// Live mode: the metrics and health endpoint.
    #[serde(default)]
    pub metrics: live::RawMetrics,
}

/// Correlation settings in milliseconds, as the correlator uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelateConfig {
    pub escalation_window_ms: i64,
    pub flow_enabled_window_ms: i64,
    pub failed_burst_window_ms: i64,
    pub failed_burst_threshold: usize,
    pub ip_history_ms: i64,
    pub max_pairs: usize,
    pub max_ips_per_pair: usize,
    pub max_failure_users: usize,
    pub max_setup_records: usize,
    pub token_lifetime_ms: i64,
    pub max_sessions: usize,
    pub max_waiting_activity: usize,
    pub activity: ActivityConfig,
    pub ranges: AllowedRanges,
}

/// A configured range and the label used to explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledRange {
    pub range: IpRange,
    pub source: String,
}

/// Allowed ranges from the config file, keyed by normalised name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AllowedRanges {
    pub by_app: HashMap<String, Vec<LabeledRange>>,
    /// Keyed by 18-character id or lowercased username.
    pub by_user: HashMap<String, Vec<LabeledRange>>,
    /// Keyed by `event::profile_key`.
    pub by_profile: HashMap<String, Vec<LabeledRange>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub org_id: Option<SfId>,
    pub scoring: ScoringConfig,
    pub correlation: CorrelateConfig,
    pub alerts: AlertConfig,
    pub replay: ReplayConfig,
    pub enrichment: crate::enrich::EnrichmentConfig,
    pub live: live::LiveConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(RawConfig::default()).expect("defaults are valid")
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: p.clone(), error })?;
        let mut c = Config::parse(&text, &p)?;
        c.enrichment.resolve(path.parent().unwrap_or(Path::new(".")));
        Ok(c)
    }

    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().replace('\n', " ");
            ConfigError::Parse {
                path: path.to_string(),
                message: match line {
                    Some(l) => format!("line {l}: {msg}"),
                    None => msg,
                },
            }
        })?;
        Config::from_raw(raw).map_err(|problems| ConfigError::Invalid { path: path.to_string(), problems })
    }

    pub fn from_raw(raw: RawConfig) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        let org_id = raw.org_id.as_deref().and_then(|o| {
            let id = SfId::parse(o);
            if id.is_none() {
                problems.push(format!("org_id {o:?} is not a 15- or 18-character Salesforce id"));
            }
            id
        });
        let s = &raw.scoring;
        let w = &s.weights;
        for (name, v) in [
            ("scoring.base_score", s.base_score),
            ("scoring.weights.privileged_run_as_user", w.privileged_run_as_user),
            ("scoring.weights.recent_privilege_escalation", w.recent_privilege_escalation),
            ("scoring.weights.ip_outside_allowed_ranges", w.ip_outside_allowed_ranges),
            ("scoring.weights.no_ip_restriction", w.no_ip_restriction),
            ("scoring.weights.ip_within_allowed_ranges", w.ip_within_allowed_ranges),
            ("scoring.weights.new_source_ip", w.new_source_ip),
            ("scoring.weights.flow_recently_enabled", w.flow_recently_enabled),
            ("scoring.weights.failed_grant_burst", w.failed_grant_burst),
        ] {
            if !v.is_finite() || v.abs() > 10.0 {
                problems.push(format!("{name} = {v} must be a number between -10 and 10"));
            }
        }
        if !(0.0 <= s.medium_from
            && s.medium_from <= s.high_from
            && s.high_from <= s.critical_from
            && s.critical_from <= 10.0)
        {
            problems.push(format!(
                "scoring bands must satisfy 0 <= medium_from ({}) <= high_from ({}) <= critical_from ({}) <= 10",
                s.medium_from, s.high_from, s.critical_from
            ));
        }
        let c = &raw.correlation;
        for (name, v) in [
            ("correlation.escalation_window_hours", c.escalation_window_hours),
            ("correlation.flow_enabled_window_hours", c.flow_enabled_window_hours),
            ("correlation.failed_burst_window_minutes", c.failed_burst_window_minutes),
            ("correlation.failed_burst_threshold", c.failed_burst_threshold),
            ("correlation.ip_history_days", c.ip_history_days),
        ] {
            if v == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        for (name, v) in [
            ("correlation.max_pairs", c.max_pairs),
            ("correlation.max_ips_per_pair", c.max_ips_per_pair),
            ("correlation.max_failure_users", c.max_failure_users),
            ("correlation.max_setup_records", c.max_setup_records),
            ("correlation.max_sessions", c.max_sessions),
            ("correlation.max_waiting_activity", c.max_waiting_activity),
            ("replay.reorder_buffer", raw.replay.reorder_buffer),
        ] {
            if v == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if raw.alerts.max_evidence > 10_000 {
            problems.push("alerts.max_evidence must be at most 10000".into());
        }
        if raw.alerts.max_open == 0 || raw.alerts.max_closed == 0 {
            problems.push("alerts.max_open and alerts.max_closed must be positive".into());
        }
        let mut ranges = AllowedRanges::default();
        for (i, r) in raw.ip_ranges.iter().enumerate() {
            let which = format!("ip_ranges[{i}]");
            let (map, key, label) = match (&r.app, &r.user, &r.profile) {
                (Some(a), None, None) => (&mut ranges.by_app, key(a).into_owned(), format!("app '{a}' (config)")),
                (None, Some(u), None) => (
                    &mut ranges.by_user,
                    SfId::parse(u).map(|id| id.to_string()).unwrap_or_else(|| key(u).into_owned()),
                    format!("user '{u}' (config)"),
                ),
                (None, None, Some(p)) => {
                    (&mut ranges.by_profile, profile_key(p).into_owned(), format!("profile '{p}' (config)"))
                }
                _ => {
                    problems.push(format!("{which} needs exactly one of app, user or profile"));
                    continue;
                }
            };
            if r.ranges.is_empty() {
                problems.push(format!("{which} has no ranges"));
            }
            for text in &r.ranges {
                match IpRange::parse(text) {
                    Some(range) => {
                        map.entry(key.clone()).or_default().push(LabeledRange { range, source: label.clone() })
                    }
                    None => problems.push(format!("{which}: {text:?} is not an IP, CIDR block or a-b range")),
                }
            }
        }
        let live = live::validate(
            raw.kafka.as_ref(),
            raw.alert_dead_letter.as_ref(),
            &raw.sinks,
            &raw.metrics,
            &raw.inventory,
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            live,
            org_id,
            scoring: raw.scoring,
            correlation: CorrelateConfig {
                escalation_window_ms: i64::from(c.escalation_window_hours) * MS_PER_HOUR,
                flow_enabled_window_ms: i64::from(c.flow_enabled_window_hours) * MS_PER_HOUR,
                failed_burst_window_ms: i64::from(c.failed_burst_window_minutes) * MS_PER_MINUTE,
                failed_burst_threshold: c.failed_burst_threshold as usize,
                ip_history_ms: i64::from(c.ip_history_days) * MS_PER_DAY,
                max_pairs: c.max_pairs,
                max_ips_per_pair: c.max_ips_per_pair,
                max_failure_users: c.max_failure_users,
                max_setup_records: c.max_setup_records,
                token_lifetime_ms: i64::from(c.token_lifetime_minutes) * MS_PER_MINUTE,
                max_sessions: c.max_sessions,
                max_waiting_activity: c.max_waiting_activity,
                activity: raw.activity,
                ranges,
            },
            alerts: raw.alerts,
            replay: raw.replay,
            enrichment: raw.enrichment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", "x.toml").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.scoring.weights.ip_within_allowed_ranges, -2.5);
        assert_eq!(c.correlation.failed_burst_threshold, 5);
    }

    #[test]
    fn weights_and_ranges_are_read() {
        let c = Config::parse(
            r#"
            org_id = "00D5j00000DgAYG"
            [scoring.weights]
            new_source_ip = 3.0
            [[ip_ranges]]
            app = "Acme ETL"
            ranges = ["198.51.100.0/24", "203.0.113.7"]
            [[ip_ranges]]
            user = "0055j00000AT6I1"
            ranges = ["10.0.0.0/8"]
            "#,
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.scoring.weights.new_source_ip, 3.0);
        assert_eq!(c.scoring.weights.privileged_run_as_user, 2.0);
        assert_eq!(c.correlation.ranges.by_app["acme etl"].len(), 2);
        assert!(c.correlation.ranges.by_user.contains_key("0055j00000AT6I1AAL"));
        assert_eq!(c.org_id.unwrap().to_string(), "00D5j00000DgAYGEA3");
    }

    #[test]
    fn unknown_keys_and_all_problems_reported_on_one_line() {
        let e = Config::parse("[scoring]\nbase_scor = 7\n", "x.toml").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("base_scor"), "{e}");
        assert!(!e.contains('\n'));
        let e = Config::parse(
            "[scoring]\nmedium_from = 8.0\n[correlation]\nmax_pairs = 0\n[[ip_ranges]]\napp = \"a\"\nranges = [\"nope\"]\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bands") && e.contains("max_pairs") && e.contains("nope"), "{e}");
        assert!(!e.contains('\n'));
    }
}
