//! Scorer unit tests: each factor's id, weight and detail; the cap; the bands;
//! configured weights; the enablement rule's floor; stable alert ids.

use super::*;
use crate::config::Config;
use crate::event::{
    Audit, AuditChange, Escalation, FailedBurst, FlowChange, GrantClass, Login, PermGrant, RecordKind, UserRef,
};

fn t(s: &str) -> EventTime {
    EventTime::from_rfc3339(s).unwrap()
}

fn base_obs() -> GrantObservation {
    GrantObservation {
        login: Login {
            time: t("2024-07-09T10:06:30Z"),
            kind: RecordKind::LoginEvent,
            event_id: Some("ev-1".into()),
            org_id: None,
            user_id: SfId::parse("0055j00000MktS1"),
            username: Some("marketing-sync@acme.example".into()),
            app: Some("Marketing Sync".into()),
            source_ip: Some("185.220.101.33".into()),
            success: true,
            status: "Success".into(),
            grant: GrantClass::ClientCredentials,
            keys: Default::default(),
        },
        username: Some("marketing-sync@acme.example".into()),
        user_id: SfId::parse("0055j00000MktS1"),
        privileges: vec![],
        privileges_known: true,
        escalation: None,
        ip: IpVerdict::NoIp,
        new_ip: None,
        flow_change: None,
        failed_burst: None,
        session: None,
        anonymizing: None,
        new_asn: None,
    }
}

fn scorer() -> Scorer {
    Scorer::new(Config::default().scoring, SfId::parse("00D5j00000DgAYG"))
}

fn only_factor(g: GrantObservation) -> (Factor, f64) {
    let a = scorer().score(&Observation::Grant(Box::new(g)));
    assert_eq!(a.factors.len(), 1, "{:?}", a.factors);
    (a.factors[0].clone(), a.score)
}

#[test]
fn no_factor_scores_the_base() {
    let a = scorer().score(&Observation::Grant(Box::new(base_obs())));
    assert!(a.factors.is_empty());
    assert_eq!((a.score, a.severity), (7.0, Severity::High));
    assert_eq!(a.rule, Rule::ClientCredentialsGrant);
    assert_eq!(a.org_id.as_deref(), Some("00D5j00000DgAYGEA3"));
    assert_eq!(a.mitre, ["T1078.004", "T1528", "T1550.001"]);
    assert_eq!(a.evidence, ["ev-1"]);
    assert_eq!(a.first_seen, "2024-07-09T10:06:30.000Z");
}

#[test]
fn privileged_run_as_user() {
    let mut g = base_obs();
    g.privileges = vec![PermGrant { label: "Modify All Data", via: "permission set 'Data Steward'".into() }];
    let (f, score) = only_factor(g);
    assert_eq!((f.id, f.weight, score), ("privileged_run_as_user", 2.0, 9.0));
    assert!(f.detail.contains("Modify All Data via permission set 'Data Steward'"), "{}", f.detail);
}

#[test]
fn recent_privilege_escalation() {
    let mut g = base_obs();
    g.escalation = Some(Escalation {
        at: t("2024-07-09T08:05:00Z"),
        via: "gained Modify All Data at … via PermSetAssign".into(),
    });
    let (f, score) = only_factor(g);
    assert_eq!((f.id, f.weight, score), ("recent_privilege_escalation", 1.0, 8.0));
    assert!(f.detail.contains("gained Modify All Data"));
}

#[test]
fn ip_outside_allowed_ranges() {
    let mut g = base_obs();
    g.ip = IpVerdict::Outside { ranges: "198.51.100.0-198.51.100.255 (profile 'Integration')".into() };
    let (f, score) = only_factor(g);
    assert_eq!((f.id, f.weight, score), ("ip_outside_allowed_ranges", 1.5, 8.5));
    assert!(f.detail.contains("185.220.101.33") && f.detail.contains("198.51.100.0"));
}

#[test]
fn no_ip_restriction() {
    let mut g = base_obs();
    g.ip = IpVerdict::NoRestriction { scope: "profile 'P', app 'A', user u".into() };
    let (f, score) = only_factor(g);
    assert_eq!((f.id, f.weight, score), ("no_ip_restriction", 0.5, 7.5));
}

#[test]
fn ip_within_allowed_ranges_is_the_low_risk_case() {
    let mut g = base_obs();
    g.ip = IpVerdict::Inside { range: "185.220.101.0-185.220.101.255 (app config)".into() };
    let (f, score) = only_factor(g);
    assert_eq!((f.id, f.weight, score), ("ip_within_allowed_ranges", -2.5, 4.5));
    assert_eq!(scorer().severity(score), Severity::Medium);
}

#[test]
fn new_source_ip() {
    let mut g = base_obs();
    g.new_ip = Some(3);
    let (f, score) = only_factor(g);
    assert_eq!((f.id, f.weight, score), ("new_source_ip", 1.0, 8.0));
    assert!(f.detail.contains("3 other IP(s)"));
}

#[test]
fn flow_recently_enabled() {
    let mut g = base_obs();
    g.flow_change =
        Some(FlowChange { at: t("2024-07-09T08:00:00Z"), what: "client credentials flow enabled for app 'X'".into() });
    let (f, score) = only_factor(g);
    assert_eq!((f.id, f.weight, score), ("flow_recently_enabled", 0.5, 7.5));
    assert!(f.detail.contains("enabled for app 'X'"));
}

#[test]
fn failed_grant_burst() {
    let mut g = base_obs();
    g.failed_burst = Some(FailedBurst { count: 6, first: t("2024-07-09T10:00:00Z"), last: t("2024-07-09T10:05:00Z") });
    let (f, score) = only_factor(g);
    assert_eq!((f.id, f.weight, score), ("failed_grant_burst", 1.0, 8.0));
    assert!(f.detail.starts_with("6 failed"));
}

#[test]
fn score_is_capped_and_banded() {
    let mut g = base_obs();
    g.privileges = vec![PermGrant { label: "Modify All Data", via: "x".into() }];
    g.escalation = Some(Escalation { at: t("2024-07-09T08:05:00Z"), via: "y".into() });
    g.ip = IpVerdict::Outside { ranges: "z".into() };
    g.new_ip = Some(1);
    let a = scorer().score(&Observation::Grant(Box::new(g)));
    assert_eq!(a.factors.len(), 4);
    assert_eq!((a.score, a.severity), (10.0, Severity::Critical));
    let s = scorer();
    assert_eq!(
        [
            s.severity(0.0),
            s.severity(3.99),
            s.severity(4.0),
            s.severity(6.99),
            s.severity(7.0),
            s.severity(8.99),
            s.severity(9.0)
        ],
        [
            Severity::Low,
            Severity::Low,
            Severity::Medium,
            Severity::Medium,
            Severity::High,
            Severity::High,
            Severity::Critical
        ]
    );
    let mut cfg = Config::default().scoring;
    cfg.base_score = 1.0;
    let low = Scorer::new(cfg, None).score(&Observation::Grant(Box::new({
        let mut g = base_obs();
        g.ip = IpVerdict::Inside { range: "r".into() };
        g
    })));
    assert_eq!(low.score, 0.0, "floored at 0");
}

#[test]
fn weights_come_from_config() {
    let cfg = Config::parse("[scoring.weights]\nnew_source_ip = 2.5\n[scoring]\nbase_score = 5.0\n", "t").unwrap();
    let mut g = base_obs();
    g.new_ip = Some(1);
    let a = Scorer::new(cfg.scoring, None).score(&Observation::Grant(Box::new(g)));
    assert_eq!((a.factors[0].weight, a.score), (2.5, 7.5));
}

#[test]
fn alert_id_is_stable_and_discriminating() {
    let a = scorer().score(&Observation::Grant(Box::new(base_obs())));
    let b = scorer().score(&Observation::Grant(Box::new({
        let mut g = base_obs();
        g.login.time = t("2024-07-09T23:59:59Z");
        g
    })));
    assert_eq!(a.alert_id, b.alert_id, "same rule/org/user/app/ip/day");
    let c = scorer().score(&Observation::Grant(Box::new({
        let mut g = base_obs();
        g.login.time = t("2024-07-10T00:00:00Z");
        g
    })));
    assert_ne!(a.alert_id, c.alert_id, "next UTC day");
    let d = scorer().score(&Observation::Grant(Box::new({
        let mut g = base_obs();
        g.login.source_ip = Some("185.220.101.34".into());
        g
    })));
    assert_ne!(a.alert_id, d.alert_id);
    assert_eq!(
        a.alert_id,
        alert_id(
            Rule::ClientCredentialsGrant,
            "00D5j00000DgAYGEA3",
            "0055j00000MktS1AAJ",
            "marketing sync",
            "185.220.101.33",
            "2024-07-09"
        )
    );
}

#[test]
fn enablement_is_at_least_high() {
    let audit = Audit {
        time: t("2024-07-09T08:01:00Z"),
        id: Some("0Ym1".into()),
        action: "addOauthClientCredentialUser".into(),
        section: None,
        display: "".into(),
        actor_id: None,
        actor: Some("admin@acme.example".into()),
        delegate: None,
        change: AuditChange::Ignored,
    };
    let mut cfg = Config::default().scoring;
    cfg.base_score = 2.0;
    let e = EnablementObservation {
        audit: audit.clone(),
        app: Some("Marketing Sync".into()),
        run_as: Some(UserRef { id: SfId::parse("0055j00000MktS1"), name: Some("m@x".into()) }),
        run_as_username: None,
        privileges: vec![],
        escalation: None,
    };
    let a = Scorer::new(cfg, None).score(&Observation::Enablement(Box::new(e.clone())));
    assert_eq!((a.rule, a.severity, a.score), (Rule::ClientCredentialsEnabled, Severity::High, 7.0));
    assert!(a.title.contains("Marketing Sync") && a.title.contains("admin@acme.example"));
    let mut e2 = e;
    e2.privileges = vec![PermGrant { label: "Modify All Data", via: "profile 'System Administrator'".into() }];
    let a = scorer().score(&Observation::Enablement(Box::new(e2)));
    assert_eq!((a.severity, a.score), (Severity::Critical, 9.0));
    assert_eq!(a.factors[0].id, "privileged_run_as_user");
}
