//! Score: `Observation` → `Alert`, explained factor by factor.
//!
//! Every successful client-credentials grant starts at the control's High band
//! (`base_score`, 7.0) and each applicable factor adds its configured weight;
//! the sum is capped to [0, 10] and mapped to a severity band. Each factor
//! carries a one-line detail naming its evidence, so an analyst can see why
//! without re-running anything. A data-access alert starts from the same base
//! with its best grant's factors and adds the activity factors' weights.
//! Pure: no state, no I/O.

pub mod aggregate;

use crate::config::ScoringConfig;
use crate::event::{key, user_key};
use crate::event::{
    AccessObservation, ActivityFactor, Alert, EnablementObservation, EventTime, Factor, GrantObservation, IpVerdict,
    Observation, PermGrant, Rule, Severity, SfId,
};
use hashbrown::HashMap;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::RefCell;

/// ATT&CK techniques: valid cloud accounts, stolen application access tokens,
/// use of application access tokens.
const GRANT_MITRE: [&str; 3] = ["T1078.004", "T1528", "T1550.001"];
/// Adding credentials to a cloud app, and the valid account it then enables.
const ENABLE_MITRE: [&str; 2] = ["T1098.001", "T1078.004"];
/// Using the token, data from an information repository, and exfiltration
/// over a web service.
const ACCESS_MITRE: [&str; 3] = ["T1550.001", "T1213", "T1567"];

/// From Salesforce's "OAuth Flow Enablement: Disable Client Credentials Flow" control.
pub const REMEDIATION: &str = "Disable the client credentials flow on this app unless it is required \
(Security Health Check: OAuth Flow Enablement: Disable Client Credentials Flow). If it is required, \
run it as a dedicated API-only integration user without administrative permissions or Modify All Data, \
enforce strict login IP ranges for that user, and prefer the JWT bearer flow with a certificate over a \
shared client secret. If this activity is unexpected, rotate the consumer secret and revoke the app's tokens.";

pub struct Scorer {
    cfg: ScoringConfig,
    default_org: Option<SfId>,
    /// Recent alert ids by their hash input: an integration grants the same
    /// (user, app, IP, day) many times, and SHA-256 in software is most of
    /// scoring a repeat. Bounded: cleared when full.
    ids: RefCell<HashMap<Vec<u8>, String>>,
}

/// Most distinct alert ids remembered by `Scorer::ids`.
const ID_MEMO: usize = 32_768;

/// A stable id: rule + org + user + app + source IP + UTC day.
pub fn alert_id(rule: Rule, org: &str, user: &str, app: &str, ip: &str, day: &str) -> String {
    id_of_preimage(&preimage(rule, org, user, app, ip, day))
}

/// The bytes an alert id hashes: each part followed by a unit separator.
fn preimage(rule: Rule, org: &str, user: &str, app: &str, ip: &str, day: &str) -> Vec<u8> {
    let parts = [rule.id(), org, user, app, ip, day];
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for part in parts {
        bytes.extend_from_slice(part.as_bytes());
        bytes.push(0x1f);
    }
    bytes
}

fn id_of_preimage(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(24);
    for b in &digest[..12] {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    id
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn privilege_detail(user: &str, grants: &[PermGrant]) -> String {
    let held: Vec<String> = grants.iter().map(|g| format!("{} via {}", g.label, g.via)).collect();
    format!("run-as user {user} holds {}", held.join("; "))
}

impl Scorer {
    pub fn new(cfg: ScoringConfig, default_org: Option<SfId>) -> Scorer {
        Scorer { cfg, default_org, ids: RefCell::new(HashMap::new()) }
    }

    pub fn severity(&self, score: f64) -> Severity {
        if score >= self.cfg.critical_from {
            Severity::Critical
        } else if score >= self.cfg.high_from {
            Severity::High
        } else if score >= self.cfg.medium_from {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    fn total(&self, factors: &[Factor]) -> f64 {
        round2((self.cfg.base_score + factors.iter().map(|f| f.weight).sum::<f64>()).clamp(0.0, 10.0))
    }

    pub fn score(&self, obs: &Observation) -> Alert {
        match obs {
            Observation::Grant(g) => self.grant(g),
            Observation::Enablement(e) => self.enablement(e),
            Observation::Access(a) => self.access(a, Vec::new()),
        }
    }

    fn activity_weight(&self, f: ActivityFactor) -> f64 {
        let w = &self.cfg.weights;
        match f {
            ActivityFactor::ReconQueryPattern => w.recon_query_pattern,
            ActivityFactor::SensitiveObjects => w.sensitive_objects,
            ActivityFactor::BulkExport => w.bulk_export,
            ActivityFactor::BulkJobDeletedQuickly => w.bulk_job_deleted_quickly,
            ActivityFactor::HighRowVolume => w.high_row_volume,
            ActivityFactor::IocUserAgent => w.ioc_user_agent,
            ActivityFactor::AnonymizingSourceIp => w.anonymizing_source_ip,
            ActivityFactor::NewAsn => w.new_asn,
            ActivityFactor::ActivityIpDiffers => w.activity_ip_differs,
            ActivityFactor::ShieldAnomaly => w.shield_anomaly,
        }
    }

    /// The data-access alert's id: rule + org + user + app + UTC day of the activity.
    pub fn access_alert_id(&self, a: &AccessObservation) -> String {
        let org = a.org_id.or(self.default_org);
        alert_id(
            Rule::ClientCredentialsDataAccess,
            org.as_ref().map_or("", SfId::as_str),
            user_key(a.user_id.as_ref(), a.username.as_deref()).as_deref().unwrap_or(""),
            &key(a.app.as_deref().unwrap_or("")),
            "",
            &a.time.day_string(),
        )
    }

    /// The data-access alert: the attributed grant's factors (`grant`, as
    /// its alert carries them) and the day's activity factors, each id once.
    pub fn access(&self, a: &AccessObservation, grant: Vec<Factor>) -> Alert {
        let mut factors = grant;
        for (f, detail) in &a.factors {
            if !factors.iter().any(|x| x.id == f.id()) {
                factors.push(Factor { id: f.id(), weight: self.activity_weight(*f), detail: detail.clone() });
            }
        }
        let score = self.total(&factors);
        let user_label =
            a.username.clone().or_else(|| a.user_id.map(|i| i.to_string())).unwrap_or_else(|| "unknown user".into());
        let shown: Vec<&str> = a.factors.iter().filter(|(f, _)| f.triggers()).map(|(f, _)| f.id()).collect();
        let title = format!(
            "Client credentials token of run-as user {user_label} via app '{}' accessed data: {}",
            a.app.as_deref().unwrap_or("unknown"),
            shown.join(", "),
        );
        Alert {
            alert_id: self.access_alert_id(a),
            rule: Rule::ClientCredentialsDataAccess,
            severity: self.severity(score),
            score,
            title,
            org_id: a.org_id.or(self.default_org).map(|o| o.to_string()),
            user_id: a.user_id.map(|i| i.to_string()),
            username: a.username.clone(),
            app: a.app.clone(),
            source_ip: a.source_ip.clone(),
            first_seen: a.first_time.to_string(),
            last_seen: a.time.to_string(),
            count: a.count,
            factors,
            evidence: a.evidence.clone(),
            activity: Some(Box::new(a.summary.clone())),
            mitre: ACCESS_MITRE.to_vec(),
            remediation: REMEDIATION,
            first_time: a.first_time,
            last_time: a.time,
        }
    }

    /// The factors that apply to one grant, in the documented order.
    pub fn grant_factors(&self, g: &GrantObservation) -> Vec<Factor> {
        self.grant_factors_with(g, true)
    }

    /// The factors, with their one-line details only when `details` is set:
    /// a repeat of an open alert needs the weights alone.
    fn grant_factors_with(&self, g: &GrantObservation, details: bool) -> Vec<Factor> {
        let w = &self.cfg.weights;
        let user = match details {
            true => g.username.clone().or(g.user_id.map(|i| i.to_string())).unwrap_or_else(|| "unknown".into()),
            false => String::new(),
        };
        let app = g.login.app.as_deref().unwrap_or("unknown app");
        let ip = g.login.source_ip.as_deref().unwrap_or("no IP");
        let mut f = Vec::new();
        // Each detail is a closure, run only when details are wanted.
        let mut add = |id: &'static str, weight: f64, detail: &dyn Fn() -> String| {
            f.push(Factor { id, weight, detail: if details { detail() } else { String::new() } })
        };
        if !g.privileges.is_empty() {
            add("privileged_run_as_user", w.privileged_run_as_user, &|| privilege_detail(&user, &g.privileges));
        }
        if let Some(e) = &g.escalation {
            add("recent_privilege_escalation", w.recent_privilege_escalation, &|| {
                format!("run-as user {user} {}", e.via)
            });
        }
        match &g.ip {
            IpVerdict::Outside { ranges } => add("ip_outside_allowed_ranges", w.ip_outside_allowed_ranges, &|| {
                format!("source IP {ip} is outside every allowed range: {ranges}")
            }),
            IpVerdict::NoRestriction { scope } => {
                add("no_ip_restriction", w.no_ip_restriction, &|| format!("no allowed IP range is known for {scope}"))
            }
            IpVerdict::Inside { range } => add("ip_within_allowed_ranges", w.ip_within_allowed_ranges, &|| {
                format!("source IP {ip} is inside allowed range {range}")
            }),
            IpVerdict::NoIp => {}
        }
        if let Some(known) = g.new_ip {
            add("new_source_ip", w.new_source_ip, &|| {
                format!(
                    "source IP {ip} not seen before for user {user} and app '{app}' ({known} other IP(s) in history)"
                )
            });
        }
        if let Some(c) = &g.flow_change {
            add("flow_recently_enabled", w.flow_recently_enabled, &|| c.what.clone());
        }
        if let Some(a) = &g.anonymizing {
            add("anonymizing_source_ip", w.anonymizing_source_ip, &|| a.clone());
        }
        if let Some(n) = &g.new_asn {
            add("new_asn", w.new_asn, &|| n.clone());
        }
        if let Some(b) = &g.failed_burst {
            add("failed_grant_burst", w.failed_grant_burst, &|| {
                format!(
                    "{} failed client-credentials grants for user {user} between {} and {}",
                    b.count, b.first, b.last
                )
            });
        }
        f
    }

    /// A grant's alert id and score, without building the alert: enough for
    /// the aggregator to fold a repeat that does not raise the score.
    pub fn grant_id_and_score(&self, g: &GrantObservation) -> (String, f64) {
        (self.grant_alert_id(g), self.total(&self.grant_factors_with(g, false)))
    }

    /// The user part of a grant's alert id (`event::user_key`).
    fn grant_user_key(g: &GrantObservation) -> Option<Cow<'_, str>> {
        user_key(g.user_id.as_ref(), g.username.as_deref())
    }

    fn grant_alert_id(&self, g: &GrantObservation) -> String {
        let l = &g.login;
        // The same parts as `alert_id`, borrowed where they can be: this runs
        // for every grant.
        let org = l.org_id.or(self.default_org);
        let key = preimage(
            Rule::ClientCredentialsGrant,
            org.as_ref().map_or("", SfId::as_str),
            Self::grant_user_key(g).as_deref().unwrap_or(""),
            &key(l.app.as_deref().unwrap_or("")),
            l.source_ip.as_deref().unwrap_or(""),
            &l.time.day_string(),
        );
        let mut ids = self.ids.borrow_mut();
        if let Some(id) = ids.get(&key) {
            return id.clone();
        }
        if ids.len() >= ID_MEMO {
            ids.clear();
        }
        let id = id_of_preimage(&key);
        ids.insert(key, id.clone());
        id
    }

    fn grant(&self, g: &GrantObservation) -> Alert {
        self.grant_alert(g, self.grant_alert_id(g))
    }

    /// The full alert for a grant whose id is already computed.
    pub fn grant_alert(&self, g: &GrantObservation, alert_id: String) -> Alert {
        let l = &g.login;
        let factors = self.grant_factors(g);
        let score = self.total(&factors);
        let org = l.org_id.or(self.default_org).map(|o| o.to_string());
        let user_key = Self::grant_user_key(g);
        let user_label =
            g.username.clone().or_else(|| user_key.map(Cow::into_owned)).unwrap_or_else(|| "unknown user".into());
        let privileged = if g.privileges.is_empty() { "" } else { "privileged " };
        let title = format!(
            "Client credentials token grant as {privileged}run-as user {user_label} via app '{}' from {}",
            l.app.as_deref().unwrap_or("unknown"),
            l.source_ip.as_deref().unwrap_or("unknown IP"),
        );
        Alert {
            alert_id,
            rule: Rule::ClientCredentialsGrant,
            severity: self.severity(score),
            score,
            title,
            org_id: org,
            user_id: g.user_id.map(|i| i.to_string()),
            username: g.username.clone(),
            app: l.app.as_deref().map(str::to_string),
            source_ip: l.source_ip.as_deref().map(str::to_string),
            first_seen: l.time.to_string(),
            last_seen: l.time.to_string(),
            count: 1,
            factors,
            evidence: l.event_id.as_deref().map(|e| vec![e.to_string()]).unwrap_or_default(),
            activity: None,
            mitre: GRANT_MITRE.to_vec(),
            remediation: REMEDIATION,
            first_time: l.time,
            last_time: l.time,
        }
    }

    fn enablement(&self, e: &EnablementObservation) -> Alert {
        let w = &self.cfg.weights;
        let a = &e.audit;
        let user_id = e.run_as.as_ref().and_then(|u| u.id);
        let username =
            e.run_as_username.clone().or_else(|| e.run_as.as_ref().and_then(|u| u.name.as_deref().map(str::to_string)));
        let user_label = username.clone().or(user_id.map(|i| i.to_string())).unwrap_or_else(|| "unknown".into());
        let mut factors = Vec::new();
        if !e.privileges.is_empty() {
            factors.push(Factor {
                id: "privileged_run_as_user",
                weight: w.privileged_run_as_user,
                detail: privilege_detail(&user_label, &e.privileges),
            });
        }
        if let Some(esc) = &e.escalation {
            factors.push(Factor {
                id: "recent_privilege_escalation",
                weight: w.recent_privilege_escalation,
                detail: format!("run-as user {user_label} {}", esc.via),
            });
        }
        // A setup change that opens the flow is at least high, whatever the factors.
        let score = self.total(&factors).max(self.cfg.high_from);
        let severity = self.severity(score).max(Severity::High);
        let app = e.app.as_deref().unwrap_or("unnamed app");
        let title = match &e.run_as {
            Some(_) => {
                format!("Run-as user {user_label} assigned to client credentials app '{app}' by {}", a.actor_label())
            }
            None => format!("Client credentials flow enabled for app '{app}' by {}", a.actor_label()),
        };
        let org = self.default_org.map(|o| o.to_string());
        let time: EventTime = a.time;
        Alert {
            alert_id: alert_id(
                Rule::ClientCredentialsEnabled,
                org.as_deref().unwrap_or(""),
                user_key(user_id.as_ref(), username.as_deref()).as_deref().unwrap_or(""),
                &key(e.app.as_deref().unwrap_or("")),
                "",
                &time.day_string(),
            ),
            rule: Rule::ClientCredentialsEnabled,
            severity,
            score,
            title,
            org_id: org,
            user_id: user_id.map(|i| i.to_string()),
            username,
            app: e.app.clone(),
            source_ip: None,
            first_seen: time.to_string(),
            last_seen: time.to_string(),
            count: 1,
            factors,
            evidence: a.id.as_deref().map(|i| vec![i.to_string()]).unwrap_or_default(),
            activity: None,
            mitre: ENABLE_MITRE.to_vec(),
            remediation: REMEDIATION,
            first_time: time,
            last_time: time,
        }
    }
}

#[cfg(test)]
mod tests;
