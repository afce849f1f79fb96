//! The pure core, composed: correlate → score → aggregate.
//!
//! Every source (replay files today, Kafka later) feeds `NormalizedEvent`s
//! here, so the same records give the same alerts whatever carried them. No
//! I/O, no clock, no async.

use crate::config::Config;
use crate::correlate::Correlator;
use crate::event::Emit;
use crate::event::{NormalizedEvent, Observation};
use crate::score::aggregate::Aggregator;
use crate::score::Scorer;

pub struct Pipeline {
    pub correlator: Correlator,
    scorer: Scorer,
    aggregator: Aggregator,
}

/// One emitted alert state and whether a line must be written for it (a
/// close whose aggregate did not change since its last line needs none).
pub type Output = (Emit, bool);

impl Pipeline {
    pub fn new(cfg: &Config) -> Pipeline {
        Pipeline {
            correlator: Correlator::new(cfg.correlation.clone()),
            scorer: Scorer::new(cfg.scoring.clone(), cfg.org_id),
            aggregator: Aggregator::new(cfg.alerts.max_evidence, cfg.alerts.max_open, cfg.alerts.max_closed),
        }
    }

    /// Processes one event in event-time order; appends what to emit.
    pub fn process(&mut self, ev: &NormalizedEvent, out: &mut Vec<Output>) {
        if let Some(obs) = self.correlator.observe_facts(ev) {
            let grant = matches!(obs, Observation::Grant(_));
            self.observe(obs, out);
            if grant {
                // Activity that waited for this grant is attributed now.
                for late in self.correlator.late_access() {
                    self.observe(late, out);
                }
            }
        }
        out.extend(self.aggregator.close_through(self.correlator.watermark()));
    }

    fn observe(&mut self, obs: Observation, out: &mut Vec<Output>) {
        let alert = match obs {
            // Most grants repeat an open alert without raising its score:
            // fold those by id and score, without describing the grant
            // or building the alert.
            Observation::Grant(mut g) => {
                let (id, score) = self.scorer.grant_id_and_score(&g);
                if let Some(s) = g.session {
                    self.correlator.tag_session(s, &id, score, g.login.event_id.as_deref());
                }
                let l = &g.login;
                if self.aggregator.fold_repeat(&id, score, l.time, l.event_id.as_deref()) {
                    None
                } else {
                    self.correlator.describe_grant(&mut g);
                    Some(self.scorer.grant_alert(&g, id))
                }
            }
            // A data-access alert carries its best grant's factors, as that
            // grant's alert has them.
            Observation::Access(a) => {
                let grant = a.grant.as_ref().and_then(|(id, _)| self.aggregator.factors_of(id)).unwrap_or_default();
                Some(self.scorer.access(&a, grant))
            }
            enablement => Some(self.scorer.score(&enablement)),
        };
        if let Some(a) = alert {
            self.aggregator.observe(a, out);
        }
    }

    /// Applies an event to correlation state without raising alerts: audit
    /// records before `--since` still build context.
    pub fn absorb(&mut self, ev: &NormalizedEvent) {
        let _ = self.correlator.observe_facts(ev);
    }

    /// Forgets all state built from logins and activity, and every alert
    /// aggregate, without writing a line; setup-audit state stays. A live
    /// instance calls it when its partitions are revoked: whoever reads them
    /// next (this instance included) rebuilds that state from the committed
    /// offsets and warm-up, exactly as after a restart, so no record is
    /// counted twice and no alert is closed from a partial view.
    pub fn forget_traffic(&mut self) {
        self.correlator.forget_traffic();
        self.aggregator.forget();
    }

    /// Alerts closed before their time by `alerts.max_open`.
    pub fn early_closes(&self) -> u64 {
        self.aggregator.early_closes
    }

    /// Alert aggregates not yet closed.
    pub fn open_alerts(&self) -> usize {
        self.aggregator.open_count()
    }

    /// End of input: closes every open aggregate.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.correlator.finish();
        out.extend(self.aggregator.finish());
    }
}

#[cfg(test)]
mod tests {
    //! The data-access rule through the whole pure core: a client-credentials
    //! grant, then what its token did. Each factor present and absent.
    use super::*;
    use crate::event::{Activity, Alert, EventTime, GrantClass, GrantKeys, Login, RecordKind, Rule, SfId};

    const USER: &str = "005J4000001AbCdIAK";
    const GRANT_IP: &str = "208.68.36.90";

    fn t(s: &str) -> EventTime {
        EventTime::from_rfc3339(s).unwrap()
    }

    fn grant(time: &str, key: &str) -> NormalizedEvent {
        NormalizedEvent::Login(Login {
            time: t(time),
            kind: RecordKind::LoginEvent,
            event_id: Some(format!("grant-{time}").into()),
            org_id: None,
            user_id: SfId::parse(USER),
            username: Some("drift-integration@acme.example".into()),
            app: Some("Drift".into()),
            source_ip: Some(GRANT_IP.into()),
            success: true,
            status: "Success".into(),
            grant: GrantClass::ClientCredentials,
            keys: GrantKeys { login_key: Some(key.into()), ..GrantKeys::default() },
        })
    }

    /// An activity record of `kind` under grant key `key`, from the grant's IP.
    fn act(time: &str, key: &str, kind: RecordKind) -> Activity {
        Activity {
            time: t(time),
            kind: Some(kind),
            event_id: Some(format!("act-{time}").into()),
            user_id: SfId::parse(USER),
            source_ip: Some(GRANT_IP.into()),
            login_key: Some(key.into()),
            ..Activity::default()
        }
    }

    fn query(time: &str, soql: &str, entity: &str, rows: f64) -> Activity {
        Activity {
            query: Some(soql.into()),
            operation: Some("Query".into()),
            entities: vec![entity.into()],
            rows_processed: Some(rows),
            ..act(time, "K1", RecordKind::ApiEvent)
        }
    }

    fn bulk(time: &str, job: &str, status: &str, rows: Option<f64>) -> Activity {
        Activity {
            job_id: Some(job.into()),
            job_status: Some(status.into()),
            operation: Some("query".into()),
            entities: vec!["Case".into()],
            rows_processed: rows,
            ..act(time, "K1", RecordKind::ElfBulkApi2)
        }
    }

    /// Runs a grant at 11:11:23 and `records` through a fresh pipeline; the
    /// data-access alert's last line, if any.
    fn run_with(cfg: &Config, records: Vec<Activity>) -> Option<Alert> {
        let mut p = Pipeline::new(cfg);
        let mut out = Vec::new();
        p.process(&grant("2025-08-17T11:11:23Z", "K1"), &mut out);
        for a in records {
            p.process(&NormalizedEvent::Activity(Box::new(a)), &mut out);
        }
        p.finish(&mut out);
        out.into_iter().map(|(e, _)| e.alert).rfind(|a| a.rule == Rule::ClientCredentialsDataAccess)
    }

    fn run(records: Vec<Activity>) -> Option<Alert> {
        run_with(&Config::default(), records)
    }

    fn factor_ids(a: &Alert) -> Vec<&str> {
        a.factors.iter().map(|f| f.id).collect()
    }

    fn counts(objects: &[&str], from_minute: u32, step: u32) -> Vec<Activity> {
        let mut v = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            let m = from_minute + step * i as u32;
            v.push(query(&format!("2025-08-17T11:{m:02}:00Z"), &format!("SELECT COUNT() FROM {o}"), o, 0.0));
        }
        v
    }

    #[test]
    fn recon_needs_three_distinct_count_queries_within_ten_minutes() {
        let a = run(counts(&["Account", "Contact", "User"], 12, 1)).expect("recon raises");
        assert!(factor_ids(&a).contains(&"recon_query_pattern"), "{:?}", factor_ids(&a));
        assert_eq!(a.activity.as_ref().unwrap().rows, 0, "COUNT() reads no rows");
        assert!(run(counts(&["Account", "Contact"], 12, 1)).is_none(), "two objects");
        assert!(run(counts(&["Account", "Account", "Account"], 12, 1)).is_none(), "one object thrice");
        assert!(run(counts(&["Account", "Contact", "User"], 12, 6)).is_none(), "spread over 12 minutes");
        let list = Activity {
            resource: Some("/services/data/v58.0/sobjects/".into()),
            ..act("2025-08-17T11:11:30Z", "K1", RecordKind::ElfRestApi)
        };
        let mut with_list = vec![list];
        with_list.extend(counts(&["Case"], 12, 1));
        let a = run(with_list).expect("sobjects list + one COUNT()");
        assert!(factor_ids(&a).contains(&"recon_query_pattern"));
    }

    #[test]
    fn sensitive_objects_and_a_different_ip_only_add_weight() {
        let mut other_ip = query("2025-08-17T11:20:00Z", "SELECT Id FROM Account", "Account", 50.0);
        other_ip.source_ip = Some("44.215.108.109".into());
        assert!(run(vec![other_ip.clone()]).is_none(), "no trigger, no alert");
        let mut records = vec![other_ip];
        records.extend(counts(&["Account", "Contact", "User"], 21, 1));
        let a = run(records).unwrap();
        let ids = factor_ids(&a);
        assert!(ids.contains(&"sensitive_objects") && ids.contains(&"activity_ip_differs"), "{ids:?}");
        let base = run(counts(&["Opportunity__x", "Foo__c", "Bar__c"], 21, 1)).unwrap();
        assert!(!factor_ids(&base).contains(&"sensitive_objects"), "{:?}", factor_ids(&base));
        assert!(!factor_ids(&base).contains(&"activity_ip_differs"));
        assert!(a.score > base.score);
    }

    #[test]
    fn a_bulk_job_deleted_soon_after_it_completed() {
        let job = "7505j00000AbCdE";
        let quick = vec![
            bulk("2025-08-17T11:11:56Z", job, "UploadComplete", None),
            bulk("2025-08-17T11:15:18Z", job, "JobComplete", Some(412_977.0)),
            bulk("2025-08-17T11:15:42Z", job, "Deleted", None),
        ];
        let a = run(quick).unwrap();
        let ids = factor_ids(&a);
        assert!(ids.contains(&"bulk_job_deleted_quickly") && ids.contains(&"bulk_export"), "{ids:?}");
        let act = a.activity.as_ref().unwrap();
        assert_eq!((act.bulk_jobs_completed, act.bulk_jobs_deleted, act.rows), (1, 1, 412_977));
        assert_eq!(a.count, 3, "every record of the day counts, the ones before the trigger too");
        assert_eq!(act.attribution.key, 3);
        assert_eq!(act.sources, ["BulkApi2"]);
        let slow = vec![
            bulk("2025-08-17T11:15:18Z", job, "JobComplete", Some(10.0)),
            bulk("2025-08-17T11:30:00Z", job, "Deleted", None),
        ];
        assert!(!factor_ids(&run(slow).unwrap()).contains(&"bulk_job_deleted_quickly"));
    }

    #[test]
    fn high_row_volume_against_the_absolute_threshold_without_history() {
        let big = query("2025-08-17T11:20:00Z", "SELECT Id FROM Case", "Case", 150_000.0);
        let a = run(vec![big]).unwrap();
        assert!(factor_ids(&a).contains(&"high_row_volume"));
        assert_eq!(a.activity.as_ref().unwrap().rows, 150_000);
        let small = query("2025-08-17T11:20:00Z", "SELECT Id FROM Case", "Case", 90_000.0);
        assert!(run(vec![small]).is_none());
    }

    #[test]
    fn an_ioc_user_agent_and_a_shield_anomaly() {
        let mut ua = query("2025-08-17T11:20:00Z", "SELECT Id FROM Foo__c", "Foo__c", 1.0);
        ua.user_agent = Some("Salesforce-Multi-Org-Fetcher/1.0".into());
        let a = run(vec![ua.clone()]).unwrap();
        assert!(factor_ids(&a).contains(&"ioc_user_agent"));
        ua.user_agent = Some("Acme-ETL/4.2".into());
        assert!(run(vec![ua]).is_none());
        let anomaly = |score: f64| Activity {
            score: Some(score),
            summary: Some("unusual volume".into()),
            ..act("2025-08-17T11:30:00Z", "K1", RecordKind::ApiAnomalyEvent)
        };
        assert!(factor_ids(&run(vec![anomaly(0.93)]).unwrap()).contains(&"shield_anomaly"));
        assert!(run(vec![anomaly(0.5)]).is_none());
    }

    #[test]
    fn the_alert_carries_its_grants_factors_and_is_scored_from_them() {
        let a = run(counts(&["Foo__c", "Bar__c", "Baz__c"], 12, 1)).unwrap();
        let ids = factor_ids(&a);
        // A first grant with no IP restriction known, then recon.
        assert_eq!(ids, ["no_ip_restriction", "recon_query_pattern"], "{ids:?}");
        assert_eq!(a.score, 7.0 + 0.5 + 1.0);
        assert_eq!(a.count, 3);
    }

    #[test]
    fn activity_before_its_grant_counts_once_the_grant_arrives() {
        let mut p = Pipeline::new(&Config::default());
        let mut out = Vec::new();
        let mut early = query("2025-08-17T11:11:00Z", "SELECT Id FROM Case", "Case", 200_000.0);
        early.login_key = Some("K9".into());
        p.process(&NormalizedEvent::Activity(Box::new(early)), &mut out);
        assert!(out.is_empty());
        p.process(&grant("2025-08-17T11:11:23Z", "K9"), &mut out);
        let access: Vec<_> = out.iter().filter(|(e, _)| e.alert.rule == Rule::ClientCredentialsDataAccess).collect();
        assert_eq!(access.len(), 1, "the waiting record raised its alert when its grant came");
        assert!(access[0].0.alert.factors.iter().any(|f| f.id == "high_row_volume"));
    }

    #[test]
    fn weights_are_configurable() {
        let mut cfg = Config::default();
        cfg.scoring.weights.recon_query_pattern = 2.0;
        let a = run_with(&cfg, counts(&["Foo__c", "Bar__c", "Baz__c"], 12, 1)).unwrap();
        assert_eq!(a.score, 7.0 + 0.5 + 2.0);
    }

    /// Eight days of a nightly ETL (day 1..=8 of August 2025, each with a
    /// grant keyed `K<day>`), then `last` on day 9; the last day's alert.
    fn nightly(rows: f64, bulk_nightly: bool, last: impl Fn(&str) -> Vec<Activity>) -> Option<Alert> {
        let mut p = Pipeline::new(&Config::default());
        let mut out = Vec::new();
        for d in 1..=9 {
            let key = format!("K{d}");
            let at = |hm: &str| format!("2025-08-{d:02}T{hm}:00Z");
            p.process(&grant(&at("02:00"), &key), &mut out);
            let mut records = if d == 9 {
                last(&key)
            } else {
                let mut q = query(&at("02:05"), "SELECT Id FROM Lead__x", "Lead__x", rows);
                q.login_key = Some(key.clone().into());
                vec![q]
            };
            if bulk_nightly && d < 9 {
                let mut b = bulk(&at("02:10"), &format!("7505j0000{d:06}"), "JobComplete", Some(1.0));
                b.login_key = Some(key.clone().into());
                records.push(b);
            }
            for a in records {
                p.process(&NormalizedEvent::Activity(Box::new(a)), &mut out);
            }
        }
        p.finish(&mut out);
        let day9 = |a: &Alert| a.first_seen.starts_with("2025-08-09");
        out.into_iter().map(|(e, _)| e.alert).rfind(|a| a.rule == Rule::ClientCredentialsDataAccess && day9(a))
    }

    #[test]
    fn high_row_volume_against_the_pairs_median_once_it_has_a_week() {
        let day9 = |rows: f64| {
            move |key: &str| {
                let mut q = query("2025-08-09T02:05:00Z", "SELECT Id FROM Lead__x", "Lead__x", rows);
                q.login_key = Some(key.into());
                vec![q]
            }
        };
        // Median 5,000 a day: the threshold is max(10 × 5,000, 10,000) = 50,000.
        let a = nightly(5_000.0, false, day9(60_000.0)).expect("60,000 rows is 12× the median");
        assert!(factor_ids(&a).contains(&"high_row_volume"), "{:?}", factor_ids(&a));
        assert!(nightly(5_000.0, false, day9(40_000.0)).is_none(), "8× the median");
        // Median 500: the floor of 10,000 applies.
        assert!(nightly(500.0, false, day9(9_000.0)).is_none());
        assert!(nightly(500.0, false, day9(12_000.0)).is_some());
    }

    #[test]
    fn bulk_export_only_when_the_pair_had_none_in_the_previous_week() {
        let day9 = |key: &str| {
            let mut b = bulk("2025-08-09T02:10:00Z", "7505j00000ZZZZZ", "JobComplete", Some(1.0));
            b.login_key = Some(key.into());
            vec![b]
        };
        let routine = nightly(10.0, true, day9);
        assert!(routine.is_none(), "a nightly bulk export is the pair's routine: {routine:?}");
        let a = nightly(10.0, false, day9).expect("the first bulk export in a week of history");
        assert!(factor_ids(&a).contains(&"bulk_export"));
    }

    /// A pipeline with the sample enrichment files (Tor list, IOCs, ASNs).
    fn enriched() -> Pipeline {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/enrichment/");
        let files = crate::enrich::EnrichmentConfig {
            tor_exit_list: Some(format!("{dir}tor-exits.txt").into()),
            ioc_file: Some(format!("{dir}iocs.toml").into()),
            asn_db: Some(format!("{dir}asn-sample.mmdb").into()),
            ..Default::default()
        };
        let mut p = Pipeline::new(&Config::default());
        p.correlator.set_enrichment(std::sync::Arc::new(crate::enrich::Enrichment::load(&files).unwrap()));
        p
    }

    fn grant_from(time: &str, key: &str, ip: &str) -> NormalizedEvent {
        let NormalizedEvent::Login(mut l) = grant(time, key) else { unreachable!() };
        l.source_ip = Some(ip.into());
        NormalizedEvent::Login(l)
    }

    fn lines(p: &mut Pipeline, events: Vec<NormalizedEvent>) -> Vec<Alert> {
        let mut out = Vec::new();
        for e in events {
            p.process(&e, &mut out);
        }
        p.finish(&mut out);
        out.into_iter().map(|(e, _)| e.alert).collect()
    }

    fn last_of(alerts: &[Alert], rule: Rule, ip: &str) -> Option<Alert> {
        alerts.iter().rev().find(|a| a.rule == rule && a.source_ip.as_deref() == Some(ip)).cloned()
    }

    #[test]
    fn anonymizing_source_ip_on_the_grant_or_the_activity() {
        let activity = |ip: &str| {
            let mut a = query("2025-08-17T11:20:00Z", "SELECT Id FROM Foo__c", "Foo__c", 1.0);
            a.source_ip = Some(ip.into());
            NormalizedEvent::Activity(Box::new(a))
        };
        // The activity from a Tor exit, the grant from an ordinary address.
        let mut p = enriched();
        let out =
            lines(&mut p, vec![grant_from("2025-08-17T11:11:23Z", "K1", "192.0.2.5"), activity("185.220.101.33")]);
        let a = last_of(&out, Rule::ClientCredentialsDataAccess, "192.0.2.5").expect("a Tor exit triggers");
        assert!(factor_ids(&a).contains(&"anonymizing_source_ip"), "{:?}", factor_ids(&a));
        let g = last_of(&out, Rule::ClientCredentialsGrant, "192.0.2.5").unwrap();
        assert!(!factor_ids(&g).contains(&"anonymizing_source_ip"));
        // The grant from an IOC address: its alert has the factor, and so has
        // the data-access alert of its token (through the grant's factors).
        let mut p = enriched();
        let out = lines(&mut p, vec![grant_from("2025-08-17T11:11:23Z", "K1", "208.68.36.90"), activity("192.0.2.9")]);
        let g = last_of(&out, Rule::ClientCredentialsGrant, "208.68.36.90").unwrap();
        assert!(g.factors.iter().any(|f| f.id == "anonymizing_source_ip" && f.detail.contains("UNC6395")));
        // Neither: no factor, and nothing else triggers.
        let mut p = enriched();
        let out = lines(&mut p, vec![grant_from("2025-08-17T11:11:23Z", "K1", "192.0.2.5"), activity("192.0.2.9")]);
        assert!(out.iter().all(|a| a.rule != Rule::ClientCredentialsDataAccess));
        assert!(!factor_ids(&last_of(&out, Rule::ClientCredentialsGrant, "192.0.2.5").unwrap())
            .contains(&"anonymizing_source_ip"));
    }

    #[test]
    fn new_asn_once_the_pair_has_asn_history() {
        let mut p = enriched();
        let out = lines(
            &mut p,
            vec![
                grant_from("2025-08-17T09:00:00Z", "K0", "203.0.113.50"),
                grant_from("2025-08-17T10:00:00Z", "K1", "203.0.113.51"),
                grant_from("2025-08-17T11:11:23Z", "K2", "208.68.36.90"),
            ],
        );
        let first = last_of(&out, Rule::ClientCredentialsGrant, "203.0.113.50").unwrap();
        assert!(!factor_ids(&first).contains(&"new_asn"), "no history yet");
        let same = last_of(&out, Rule::ClientCredentialsGrant, "203.0.113.51").unwrap();
        assert!(!factor_ids(&same).contains(&"new_asn"), "a new IP in a known ASN");
        let new = last_of(&out, Rule::ClientCredentialsGrant, "208.68.36.90").unwrap();
        let f = new.factors.iter().find(|f| f.id == "new_asn").expect("AS14061 is new for the pair");
        assert!(f.detail.contains("AS14061 DIGITALOCEAN-ASN"), "{}", f.detail);
        // Activity from yet another ASN is new too, and triggers on its own.
        let mut a = query("2025-08-17T11:20:00Z", "SELECT Id FROM Foo__c", "Foo__c", 1.0);
        a.login_key = Some("K2".into());
        a.source_ip = Some("44.215.108.109".into());
        let mut out = Vec::new();
        p.process(&grant_from("2025-08-17T11:11:23Z", "K2", "208.68.36.90"), &mut out);
        p.process(&NormalizedEvent::Activity(Box::new(a)), &mut out);
        let access = out.iter().map(|(e, _)| &e.alert).find(|a| a.rule == Rule::ClientCredentialsDataAccess);
        let access = access.expect("new_asn triggers");
        assert_eq!(access.activity.as_ref().unwrap().asns, ["AS14618 AMAZON-AES"]);
    }

    #[test]
    fn an_ioc_file_user_agent_matches_by_substring() {
        let mut p = enriched();
        let mut a = query("2025-08-17T11:20:00Z", "SELECT Id FROM Foo__c", "Foo__c", 1.0);
        a.user_agent = Some("Python-urllib/3.12".into());
        let out = lines(&mut p, vec![grant("2025-08-17T11:11:23Z", "K1"), NormalizedEvent::Activity(Box::new(a))]);
        let access =
            out.iter().rev().find(|a| a.rule == Rule::ClientCredentialsDataAccess).expect("the IOC file's agent");
        let f = access.factors.iter().find(|f| f.id == "ioc_user_agent").unwrap();
        assert!(f.detail.contains("loose tier"), "{}", f.detail);
    }
}
