//! Data access: what a client-credentials token did after its grant, per
//! (run-as user, app) and UTC day, as facts for the
//! `client_credentials_data_access` rule.
//!
//! Every attributed activity record (see `sessions`) is folded into its
//! pair's day: rows read, entities, bulk jobs, report exports, user agents,
//! IPs, attribution. The activity factors are facts of the day, each found
//! once with the record that showed it: reconnaissance (`SELECT COUNT()` on
//! distinct objects, or a global `sobjects` list with a `COUNT()`, within a
//! window), sensitive objects, a bulk export by a pair that did none in the
//! previous days of its history, a Bulk API 2.0 job deleted soon after it
//! completed, a day's rows far above the pair's median, an IOC user agent,
//! activity from another IP than the grant's, a Shield anomaly score.
//!
//! Nothing is reported until a *trigger* factor applies (not
//! `sensitive_objects` or `activity_ip_differs`: an app that reads Account
//! every day is not news). The first report carries everything the day
//! gathered so far; each later record reports its own contribution, so the
//! aggregated alert's counts and `activity` object are complete and do not
//! depend on when it was raised.
//!
//! Rows read: ApiEvent `RowsReturned` summed over pages, or `RowsProcessed`
//! of a query's first page without it; ELF `API`/`RestApi` `ROWS_PROCESSED`;
//! `BulkApi2` `RECORDS_PROCESSED` of the `JobComplete` row; ReportEvent
//! `RowsProcessed` once per `ExecutionIdentifier`; `COUNT()` queries 0.
//! History is calendar UTC days since the pair's first activity; the median
//! covers the previous 7–30 days, days without activity counting as 0.
//!
//! A pair's records are folded in the order they arrive, which is event time
//! within a user (as for IP history). Memory is bounded: pairs in an LRU of
//! `activity.max_pairs` (evictions counted), and per pair at most 31 days of
//! row totals, 64 completed bulk jobs and 1,024 report executions. The
//! evidence lists the event ids of the records and of (up to 5) grants whose
//! tokens made them.

use crate::config::ActivityConfig;
use crate::event::ip::usable_ip;
use crate::event::time::MS_PER_MINUTE;
use crate::event::{
    add_item, contains_ci, AccessObservation, Activity, ActivityFactor, ActivitySummary, EventTime, RecordKind, SfId,
};
use hashbrown::HashSet;
use lru::LruCache;
use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroUsize;

use super::sessions::{Attribution, Session};

const MAX_JOBS: usize = 64;
const MAX_EXECUTIONS: usize = 1024;
const MAX_EVIDENCE: usize = 20;
/// Grants whose event ids one day's alert lists.
const MAX_GRANT_EVENTS: usize = 5;
/// Days of row totals kept per pair (the median looks back 30).
const ROW_DAYS: i64 = 31;

/// The Salesforce type name an activity record came from.
pub fn source_name(kind: Option<RecordKind>) -> &'static str {
    match kind {
        Some(RecordKind::ApiEvent | RecordKind::ApiEventStream) => "ApiEvent",
        Some(RecordKind::BulkApiResultEvent) => "BulkApiResultEvent",
        Some(RecordKind::ReportEvent) => "ReportEvent",
        Some(RecordKind::ApiAnomalyEvent) => "ApiAnomalyEventStore",
        Some(RecordKind::ElfApi) => "API",
        Some(RecordKind::ElfRestApi) => "RestApi",
        Some(RecordKind::ElfApiTotalUsage) => "ApiTotalUsage",
        Some(RecordKind::ElfBulkApi2) => "BulkApi2",
        Some(RecordKind::ElfBulkApiRequest) => "BulkApiRequest",
        Some(RecordKind::ElfReportExport) => "ReportExport",
        Some(RecordKind::ElfUniqueQuery) => "UniqueQuery",
        _ => "unknown",
    }
}

/// The object of a `SELECT COUNT() FROM X` query, if it is one.
pub fn count_query_object(query: &str) -> Option<String> {
    // Cheap refusal first: this runs for every query.
    let head = query.trim_start().as_bytes();
    if head.len() < 6 || !head[..6].eq_ignore_ascii_case(b"select") || !contains_ci(query, "count(") {
        return None;
    }
    let q: String = query.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    let rest = q.strip_prefix("select count() from ").or_else(|| q.strip_prefix("select count( ) from "))?;
    let obj: String = query
        .split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("from"))
        .nth(1)?
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!rest.is_empty() && !obj.is_empty()).then_some(obj)
}

/// A global object list call: REST `…/sobjects` (not one object's) or SOAP `describeGlobal`.
fn is_sobjects_list(a: &Activity) -> bool {
    let path = |p: &str| {
        let p = p.split('?').next().unwrap_or(p).trim_end_matches('/');
        p.ends_with("/sobjects")
    };
    a.resource.as_deref().is_some_and(path)
        || a.operation.as_deref().is_some_and(|o| o.eq_ignore_ascii_case("describeGlobal"))
}

/// One pair's activity in one UTC day.
#[derive(Default)]
struct Day {
    day: i64,
    raised: bool,
    /// Gathered and not yet reported (until the day's first trigger).
    pending: ActivitySummary,
    pending_count: u64,
    pending_first: Option<EventTime>,
    pending_evidence: Vec<String>,
    factors: Vec<(ActivityFactor, String)>,
    rows: u64,
    /// Rows at or above this raise `high_row_volume` (set when the day opens).
    row_threshold: u64,
    baseline: String,
    recon: VecDeque<(EventTime, String)>,
    sobjects_at: Option<EventTime>,
    executions: HashSet<Box<str>>,
    best_grant: Option<(String, f64)>,
    /// Event ids of the grants whose tokens acted this day (bounded).
    grant_events: Vec<Box<str>>,
}

#[derive(Default)]
struct Pair {
    first_day: i64,
    /// UTC day → rows read, for the last `ROW_DAYS` days before the current one.
    rows: BTreeMap<i64, u64>,
    /// Days with a bulk export, most recent last (bounded).
    bulk_days: VecDeque<i64>,
    /// Bulk job (first 15 characters) → when it completed.
    completed: VecDeque<(Box<str>, EventTime)>,
    day: Option<Day>,
}

/// The grant session an activity record was attributed to, as `observe` needs it.
pub struct Grant<'a> {
    pub session: &'a Session,
    pub how: Attribution,
    pub user_id: Option<SfId>,
    pub username: Option<&'a str>,
    pub app_name: Option<&'a str>,
    /// Factors the reference data found for this record (`enrich`).
    pub found: Vec<(ActivityFactor, String)>,
    /// The record's ASN, as the summary lists it.
    pub asn: Option<String>,
}

pub struct Access {
    cfg: ActivityConfig,
    sensitive: Vec<String>,
    /// (lowercased, as configured).
    ioc_agents: Vec<(String, String)>,
    /// (user key, U+001F, app key) → the pair's activity.
    pairs: LruCache<Box<str>, Pair>,
    key: String,
    pub evictions: u64,
}

impl Access {
    pub fn new(cfg: &ActivityConfig) -> Access {
        Access {
            sensitive: cfg.sensitive_objects.iter().map(|s| s.to_ascii_lowercase()).collect(),
            ioc_agents: cfg
                .ioc_user_agents
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_ascii_lowercase(), s.clone()))
                .collect(),
            pairs: LruCache::new(NonZeroUsize::new(cfg.max_pairs).unwrap_or(NonZeroUsize::MIN)),
            cfg: cfg.clone(),
            key: String::new(),
            evictions: 0,
        }
    }

    pub fn forget(&mut self) {
        self.pairs.clear();
    }

    /// Folds one attributed record in; reports once the day has a trigger.
    pub fn observe(&mut self, a: &Activity, g: Grant<'_>) -> Option<AccessObservation> {
        let s = g.session;
        let today = a.time.utc_day();
        // The pair's key is looked up through a reused buffer: this runs for
        // every attributed record.
        let key = &mut self.key;
        key.clear();
        key.push_str(&s.user);
        key.push('\u{1f}');
        key.push_str(s.app.as_deref().unwrap_or_default());
        if !self.pairs.contains(key.as_str()) {
            if self.pairs.len() == self.pairs.cap().get() {
                self.evictions += 1;
            }
            self.pairs.put(key.as_str().into(), Pair { first_day: today, ..Pair::default() });
        }
        let cfg = &self.cfg;
        let pair = self.pairs.get_mut(key.as_str()).expect("just put");
        roll_day(pair, today, cfg);
        let day = pair.day.as_mut().expect("rolled");

        // What this record adds goes straight into the day's gathered summary
        // until the day is raised (most records: no allocation when the
        // items are already listed), then into a summary of its own.
        let mut own = ActivitySummary::default();
        let raised = day.raised;
        let d = if raised { &mut own } else { &mut day.pending };
        add_item(&mut d.sources, source_name(a.kind));
        match g.how {
            Attribution::Key => d.attribution.key += 1,
            Attribution::Request => d.attribution.request += 1,
            Attribution::Tuple => d.attribution.tuple += 1,
        }
        let kind = a.kind;
        let count_obj = a.query.as_deref().and_then(count_query_object);
        let op = a.operation.as_deref().unwrap_or("");
        let query_more = op.eq_ignore_ascii_case("querymore");
        let is_query = matches!(
            kind,
            Some(RecordKind::ApiEvent | RecordKind::ApiEventStream | RecordKind::ElfApi | RecordKind::ElfRestApi)
        ) && (a.query.is_some() || op.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("query")));
        if is_query && !query_more {
            d.queries += 1;
        }
        let status = a.job_status.as_deref().map(str::to_ascii_lowercase).unwrap_or_default();
        let rows = |x: Option<f64>| x.filter(|r| r.is_finite() && *r > 0.0).map_or(0, |r| r as u64);
        let rows_now = match kind {
            _ if count_obj.is_some() => 0,
            Some(RecordKind::ApiEvent | RecordKind::ApiEventStream) => match a.rows_returned {
                Some(r) => rows(Some(r)),
                None if !query_more => rows(a.rows_processed),
                None => 0,
            },
            Some(RecordKind::ElfApi | RecordKind::ElfRestApi) => rows(a.rows_processed),
            Some(RecordKind::ElfBulkApi2) if status.contains("complete") => rows(a.rows_processed),
            Some(RecordKind::ReportEvent) => match &a.execution_id {
                Some(x) if day.executions.contains(x) => 0,
                Some(x) => {
                    if day.executions.len() < MAX_EXECUTIONS {
                        day.executions.insert(x.clone());
                    }
                    rows(a.rows_processed)
                }
                None => rows(a.rows_processed),
            },
            _ => 0,
        };
        d.rows += rows_now;
        let mut sensitive_now = false;
        for e in &a.entities {
            add_item(&mut d.entities, e);
            if self.sensitive.iter().any(|s| e.eq_ignore_ascii_case(s)) {
                add_item(&mut d.sensitive_entities, e);
                sensitive_now = true;
            }
        }
        let bulk = matches!(kind, Some(RecordKind::ElfBulkApi2 | RecordKind::ElfBulkApiRequest));
        let bulk_query = bulk && !["insert", "update", "delete"].iter().any(|w| contains_ci(op, w));
        // `JobComplete` (not `UploadComplete`, the step before processing).
        let completed = bulk && bulk_query && status.contains("complete") && !status.contains("upload");
        let deleted = bulk && status.contains("delet");
        let downloaded = kind == Some(RecordKind::BulkApiResultEvent);
        d.bulk_jobs_completed += u64::from(completed);
        d.bulk_jobs_deleted += u64::from(deleted);
        d.bulk_results_downloaded += u64::from(downloaded);
        let report_export = kind == Some(RecordKind::ElfReportExport)
            || (kind == Some(RecordKind::ReportEvent) && contains_ci(op, "export"));
        d.report_exports += u64::from(report_export);
        if let Some(ua) = a.user_agent.as_deref() {
            add_item(&mut d.user_agents, ua);
        }
        let ip = usable_ip(a.source_ip.as_deref());
        if let Some(ip) = ip {
            add_item(&mut d.source_ips, ip);
        }

        if let Some(asn) = &g.asn {
            add_item(&mut d.asns, asn);
        }
        // The day's facts. Each is found once: the detail of a factor the day
        // already has is not written again.
        let known = day.factors.iter().fold(0u16, |m, (f, _)| m | 1 << *f as u16);
        let new = |f: ActivityFactor| known & (1 << f as u16) == 0;
        let mut found: Vec<(ActivityFactor, String)> = g.found;
        let window = i64::from(cfg.recon_window_minutes) * MS_PER_MINUTE;
        if let Some(obj) = &count_obj {
            day.recon.push_back((a.time, obj.clone()));
        }
        if is_sobjects_list(a) {
            day.sobjects_at = Some(a.time);
        }
        while day.recon.front().is_some_and(|(t, _)| t.0 < a.time.0 - window) {
            day.recon.pop_front();
        }
        if new(ActivityFactor::ReconQueryPattern) {
            if let Some(f) = recon(&day.recon, day.sobjects_at.filter(|t| t.0 >= a.time.0 - window), cfg) {
                found.push((ActivityFactor::ReconQueryPattern, f));
            }
        }
        if sensitive_now && new(ActivityFactor::SensitiveObjects) {
            let read = if raised { &own.sensitive_entities } else { &day.pending.sensitive_entities };
            found.push((ActivityFactor::SensitiveObjects, format!("read {}", read.join(", "))));
        }
        if completed || downloaded {
            let history = today - pair.first_day;
            let quiet = i64::from(cfg.bulk_quiet_days);
            let recent = pair.bulk_days.iter().any(|&b| b < today && b >= today - quiet);
            if (history < quiet || !recent) && new(ActivityFactor::BulkExport) {
                let what = if completed { "Bulk API query job completed" } else { "Bulk API results downloaded" };
                let why = if history < quiet {
                    format!("the pair has {history} day(s) of history")
                } else {
                    format!("no bulk export in the previous {quiet} days")
                };
                found.push((
                    ActivityFactor::BulkExport,
                    format!("{what} ({}; {why})", a.job_id.as_deref().unwrap_or("job")),
                ));
            }
            if pair.bulk_days.back() != Some(&today) {
                pair.bulk_days.push_back(today);
                while pair.bulk_days.len() > 32 {
                    pair.bulk_days.pop_front();
                }
            }
        }
        let job = a.job_id.as_deref().map(|j| &j[..j.len().min(15)]);
        if let (true, Some(job)) = (completed, job) {
            pair.completed.retain(|(j, _)| &**j != job);
            pair.completed.push_back((job.into(), a.time));
            if pair.completed.len() > MAX_JOBS {
                pair.completed.pop_front();
            }
        }
        if let (true, Some(job), true) = (deleted, job, new(ActivityFactor::BulkJobDeletedQuickly)) {
            let within = i64::from(cfg.bulk_delete_within_seconds) * 1000;
            if let Some((_, at)) = pair.completed.iter().find(|(j, _)| &**j == job) {
                let after = a.time.0 - at.0;
                if (0..=within).contains(&after) {
                    found.push((
                        ActivityFactor::BulkJobDeletedQuickly,
                        format!("Bulk API job {job} deleted {} s after it completed", after / 1000),
                    ));
                }
            }
        }
        day.rows += rows_now;
        if day.rows >= day.row_threshold && rows_now > 0 && new(ActivityFactor::HighRowVolume) {
            found.push((
                ActivityFactor::HighRowVolume,
                format!("{} rows read in the UTC day ({})", day.rows, day.baseline),
            ));
        }
        if let (Some(ua), true) = (a.user_agent.as_deref(), new(ActivityFactor::IocUserAgent)) {
            if let Some((_, ioc)) = self.ioc_agents.iter().find(|(l, _)| contains_ci(ua, l)) {
                found.push((ActivityFactor::IocUserAgent, format!("user agent '{ua}' matches IOC '{ioc}'")));
            }
        }
        if let (Some(ip), Some(grant_ip), true) = (ip, s.ip.as_deref(), new(ActivityFactor::ActivityIpDiffers)) {
            if ip != grant_ip {
                found.push((
                    ActivityFactor::ActivityIpDiffers,
                    format!("activity from {ip}, the grant from {grant_ip}"),
                ));
            }
        }
        if kind == Some(RecordKind::ApiAnomalyEvent) && new(ActivityFactor::ShieldAnomaly) {
            if let Some(score) = a.score.filter(|x| *x >= cfg.anomaly_score) {
                found.push((
                    ActivityFactor::ShieldAnomaly,
                    format!(
                        "API anomaly score {score:.2}{}",
                        a.summary.as_deref().map(|x| format!(": {x}")).unwrap_or_default()
                    ),
                ));
            }
        }
        for (f, detail) in found {
            if !day.factors.iter().any(|(x, _)| *x == f) {
                day.factors.push((f, detail));
            }
        }
        day.factors.sort_by_key(|(f, _)| *f);
        if let Some((id, score)) = &s.grant_alert {
            if day.best_grant.as_ref().is_none_or(|(_, best)| score > best) {
                day.best_grant = Some((id.to_string(), *score));
            }
        }

        // The grant's event id is evidence too, once per grant.
        if let Some(ev) = &s.grant_event {
            if day.grant_events.len() < MAX_GRANT_EVENTS && !day.grant_events.contains(ev) {
                day.grant_events.push(ev.clone());
                if day.pending_evidence.len() < MAX_EVIDENCE {
                    day.pending_evidence.push(ev.to_string());
                }
            }
        }
        // Report, or gather until the day's first trigger.
        if raised {
            day.pending = own;
        }
        day.pending_count += 1;
        let first = *day.pending_first.get_or_insert(a.time);
        if let Some(e) = &a.event_id {
            if day.pending_evidence.len() < MAX_EVIDENCE {
                day.pending_evidence.push(e.to_string());
            }
        }
        if !day.raised && !day.factors.iter().any(|(f, _)| f.triggers()) {
            return None;
        }
        day.raised = true;
        let obs = AccessObservation {
            time: a.time,
            org_id: a.org_id.or(s.org),
            user_id: g.user_id,
            username: g.username.map(str::to_string),
            app: g.app_name.map(str::to_string),
            source_ip: s.ip.as_deref().map(str::to_string),
            grant: day.best_grant.clone(),
            factors: day.factors.clone(),
            summary: std::mem::take(&mut day.pending),
            count: std::mem::take(&mut day.pending_count),
            first_time: first,
            evidence: std::mem::take(&mut day.pending_evidence),
        };
        day.pending_first = None;
        Some(obs)
    }
}

/// The detail of `recon_query_pattern` when the COUNT() queries of the
/// window (`counts`) and a global object list within it (`listed`) show it.
fn recon(counts: &VecDeque<(EventTime, String)>, listed: Option<EventTime>, cfg: &ActivityConfig) -> Option<String> {
    let mut objects: Vec<&str> = counts.iter().map(|(_, o)| o.as_str()).collect();
    objects.sort_unstable_by_key(|o| o.to_ascii_lowercase());
    objects.dedup_by(|x, y| x.eq_ignore_ascii_case(y));
    let minutes = cfg.recon_window_minutes;
    if objects.len() >= cfg.recon_min_objects {
        let n = objects.len();
        Some(format!("{n} SELECT COUNT() queries on distinct objects within {minutes} min: {}", objects.join(", ")))
    } else if listed.is_some() && !objects.is_empty() {
        Some(format!("global sobjects list and SELECT COUNT() on {} within {minutes} min", objects.join(", ")))
    } else {
        None
    }
}

/// Moves a pair to `today`: the previous day's rows go into its history, and
/// today's `high_row_volume` threshold is set from that history.
fn roll_day(pair: &mut Pair, today: i64, cfg: &ActivityConfig) {
    // A record of an earlier day than the pair's current one (rare: a
    // user's records arrive in event time) is folded into the current day.
    if pair.day.as_ref().is_some_and(|d| d.day >= today) {
        return;
    }
    if let Some(old) = pair.day.take() {
        *pair.rows.entry(old.day).or_default() += old.rows;
    }
    while pair.rows.first_key_value().is_some_and(|(d, _)| *d < today - ROW_DAYS) {
        pair.rows.pop_first();
    }
    let history = today - pair.first_day;
    let (threshold, baseline) = if history >= i64::from(cfg.baseline_days) {
        let from = pair.first_day.max(today - 30);
        let mut days: Vec<u64> = (from..today).map(|d| pair.rows.get(&d).copied().unwrap_or(0)).collect();
        days.sort_unstable();
        let median = if days.is_empty() {
            0
        } else if days.len() % 2 == 1 {
            days[days.len() / 2]
        } else {
            (days[days.len() / 2 - 1] + days[days.len() / 2]) / 2
        };
        let t = ((median as f64 * cfg.median_factor) as u64).max(cfg.min_rows);
        (
            t,
            format!(
                "threshold {t}: {}× the median {median} over {} day(s), at least {}",
                cfg.median_factor,
                days.len(),
                cfg.min_rows
            ),
        )
    } else {
        let t = cfg.absolute_rows;
        (t, format!("threshold {t}: the pair has {history} day(s) of history"))
    };
    pair.day = Some(Day { day: today, row_threshold: threshold, baseline, ..Day::default() });
}
