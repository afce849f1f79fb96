//! Correlator unit tests: one scenario per observation the scorer relies on.

use super::*;
use crate::config::{Config, LabeledRange};
use crate::event::{Audit, AuditChange, GrantClass, Inventory, Perms, RecordKind};

const USER: &str = "0055j00000MktS1";
const ADMIN: &str = "admin@acme.example";

fn id(s: &str) -> SfId {
    SfId::parse(s).unwrap()
}

fn t(s: &str) -> EventTime {
    EventTime::from_rfc3339(s).unwrap()
}

fn correlator() -> Correlator {
    Correlator::new(Config::default().correlation)
}

fn grant(time: &str, ip: &str, success: bool) -> NormalizedEvent {
    NormalizedEvent::Login(Login {
        time: t(time),
        kind: RecordKind::LoginEvent,
        event_id: Some(format!("ev-{time}").into()),
        org_id: None,
        user_id: Some(id(USER)),
        username: Some("marketing-sync@acme.example".into()),
        app: Some("Marketing Sync".into()),
        source_ip: Some(ip.into()),
        success,
        status: if success { "Success".into() } else { "Failed: Invalid Client Credentials".into() },
        grant: GrantClass::ClientCredentials,
        keys: Default::default(),
    })
}

fn audit(time: &str, change: AuditChange) -> NormalizedEvent {
    NormalizedEvent::Audit(Audit {
        time: t(time),
        id: Some("0Ym000000000001".into()),
        action: "x".into(),
        section: None,
        display: "".into(),
        actor_id: None,
        actor: Some(ADMIN.into()),
        delegate: None,
        change,
    })
}

/// Modify All Data switched on or off on permission set Ops.
fn ops_modify_all_data(enabled: bool) -> AuditChange {
    AuditChange::PermSetPermission {
        perm_set: "Ops".into(),
        perm: Perms::MODIFY_ALL_DATA,
        label: "Modify All Data".into(),
        enabled,
    }
}

fn psa(perm_set: &str, perms: Perms) -> NormalizedEvent {
    NormalizedEvent::Inventory(Inventory::PermissionSetAssignment {
        user_id: id(USER),
        username: Some("marketing-sync@acme.example".into()),
        perm_set: perm_set.into(),
        owned_by_profile: false,
        profile: None,
        perms,
        known: Perms(63),
    })
}

fn profile_row(profile: &str, perms: Perms) -> NormalizedEvent {
    NormalizedEvent::Inventory(Inventory::PermissionSetAssignment {
        user_id: id(USER),
        username: None,
        perm_set: "X00e000000001".into(),
        owned_by_profile: true,
        profile: Some(profile.into()),
        perms,
        known: Perms(63),
    })
}

fn observe_grant(c: &mut Correlator, ev: NormalizedEvent) -> GrantObservation {
    match c.observe(&ev) {
        Some(Observation::Grant(g)) => *g,
        other => panic!("expected a grant observation, got {other:?}"),
    }
}

fn user_ref() -> UserRef {
    UserRef { id: Some(id(USER)), name: Some("Marketing Sync User".into()) }
}

#[test]
fn privileges_from_inventory_permission_set_and_profile() {
    let mut c = correlator();
    c.observe(&psa("Data Steward", Perms::MODIFY_ALL_DATA));
    c.observe(&profile_row("Integration", Perms::AUTHOR_APEX.union(Perms::API_ENABLED)));
    let g = observe_grant(&mut c, grant("2024-07-09T10:00:00Z", "1.2.3.4", true));
    assert!(g.privileges_known);
    let labels: Vec<&str> = g.privileges.iter().map(|p| p.label).collect();
    assert_eq!(labels, ["Modify All Data", "Author Apex"]);
    assert_eq!(g.privileges[0].via, "permission set 'Data Steward'");
    assert_eq!(g.privileges[1].via, "profile 'Integration'");
    assert!(g.escalation.is_none(), "inventory baselines are not escalations");
}

#[test]
fn api_enabled_alone_is_not_privileged() {
    let mut c = correlator();
    c.observe(&psa("API", Perms::API_ENABLED));
    let g = observe_grant(&mut c, grant("2024-07-09T10:00:00Z", "1.2.3.4", true));
    assert!(g.privileges.is_empty());
    assert!(g.privileges_known);
}

#[test]
fn assignment_escalates_within_window_only() {
    let mut c = correlator();
    c.observe(&NormalizedEvent::Inventory(Inventory::PermissionSetAssignment {
        user_id: id("0055j00000Stew1"),
        username: None,
        perm_set: "Data Steward".into(),
        owned_by_profile: false,
        profile: None,
        perms: Perms::MODIFY_ALL_DATA,
        known: Perms(63),
    }));
    c.observe(&audit(
        "2024-07-09T08:05:00Z",
        AuditChange::PermSetAssignment {
            perm_set: "Data Steward".into(),
            user: user_ref(),
            assigned: true,
            group: false,
        },
    ));
    let g = observe_grant(&mut c, grant("2024-07-09T10:00:00Z", "1.2.3.4", true));
    assert_eq!(g.privileges.len(), 1);
    let e = g.escalation.expect("escalated 2 h before");
    assert_eq!(e.at, t("2024-07-09T08:05:00Z"));
    assert!(e.via.contains("Modify All Data") && e.via.contains("Data Steward") && e.via.contains(ADMIN), "{}", e.via);
    let g = observe_grant(&mut c, grant("2024-07-10T08:06:00Z", "1.2.3.4", true));
    assert!(g.escalation.is_none(), "25 h later is outside the 24 h window");
    assert_eq!(g.privileges.len(), 1, "still privileged");
}

#[test]
fn unassign_and_permission_changes_move_privileges_in_time_order() {
    let mut c = correlator();
    c.observe(&psa("Ops", Perms::empty()));
    let g = observe_grant(&mut c, grant("2024-07-09T09:00:00Z", "1.2.3.4", true));
    assert!(g.privileges.is_empty());
    c.observe(&audit(
        "2024-07-09T09:30:00Z",
        AuditChange::PermSetPermission {
            perm_set: "Ops".into(),
            perm: Perms::MANAGE_USERS,
            label: "Manage Users".into(),
            enabled: true,
        },
    ));
    let g = observe_grant(&mut c, grant("2024-07-09T10:00:00Z", "1.2.3.4", true));
    assert_eq!(g.privileges[0].label, "Manage Users");
    assert!(g.escalation.unwrap().via.contains("Manage Users enabled on permission set 'Ops'"));
    c.observe(&audit(
        "2024-07-09T10:30:00Z",
        AuditChange::PermSetAssignment { perm_set: "Ops".into(), user: user_ref(), assigned: false, group: false },
    ));
    let g = observe_grant(&mut c, grant("2024-07-09T11:00:00Z", "1.2.3.4", true));
    assert!(g.privileges.is_empty() && g.escalation.is_none());
}

#[test]
fn profile_permission_and_profile_change() {
    let mut c = correlator();
    c.observe(&profile_row("Custom: Integration", Perms::API_ENABLED));
    c.observe(&audit(
        "2024-07-09T09:00:00Z",
        AuditChange::ProfilePermission {
            profile: "Integration".into(),
            perm: Perms::CUSTOMIZE_APPLICATION,
            label: "Customize Application".into(),
            enabled: true,
        },
    ));
    let g = observe_grant(&mut c, grant("2024-07-09T09:10:00Z", "1.2.3.4", true));
    assert_eq!(g.privileges[0].label, "Customize Application");
    c.observe(&audit(
        "2024-07-09T09:20:00Z",
        AuditChange::UserProfile { user: user_ref(), from: "Integration".into(), to: "Minimum Access".into() },
    ));
    let g = observe_grant(&mut c, grant("2024-07-09T09:30:00Z", "1.2.3.4", true));
    assert!(g.privileges.is_empty());
}

#[test]
fn group_membership_grants_through_components() {
    let mut c = correlator();
    c.observe(&NormalizedEvent::Inventory(Inventory::PermissionSetAssignment {
        user_id: id("0055j00000Stew1"),
        username: None,
        perm_set: "Apex Dev".into(),
        owned_by_profile: false,
        profile: None,
        perms: Perms::AUTHOR_APEX,
        known: Perms(63),
    }));
    c.observe(&audit(
        "2024-07-09T09:00:00Z",
        AuditChange::PermSetAssignment { perm_set: "Devs".into(), user: user_ref(), assigned: true, group: true },
    ));
    c.observe(&audit(
        "2024-07-09T09:01:00Z",
        AuditChange::GroupComponent { group: "Devs".into(), perm_set: "Apex Dev".into(), added: true },
    ));
    let g = observe_grant(&mut c, grant("2024-07-09T09:10:00Z", "1.2.3.4", true));
    assert_eq!(g.privileges[0].label, "Author Apex");
    assert!(g.privileges[0].via.contains("group 'Devs'"));
}

#[test]
fn ip_ranges_from_profile_audit_and_config() {
    let mut c = correlator();
    c.observe(&profile_row("Custom: Integration Profile", Perms::API_ENABLED));
    let g = observe_grant(&mut c, grant("2024-07-09T09:00:00Z", "198.51.100.7", true));
    assert!(matches!(g.ip, IpVerdict::NoRestriction { .. }));
    c.observe(&audit(
        "2024-07-09T09:05:00Z",
        AuditChange::LoginIpRange {
            profile: "Custom: Integration Profile".into(),
            range: IpRange::parse("198.51.100.0 to 198.51.100.255").unwrap(),
            added: true,
        },
    ));
    let g = observe_grant(&mut c, grant("2024-07-09T09:10:00Z", "198.51.100.7", true));
    assert!(
        matches!(&g.ip, IpVerdict::Inside { range } if range.contains("profile 'Custom: Integration Profile'")),
        "{:?}",
        g.ip
    );
    let g = observe_grant(&mut c, grant("2024-07-09T09:11:00Z", "203.0.113.9", true));
    assert!(
        matches!(&g.ip, IpVerdict::Outside { ranges } if ranges.contains("198.51.100.0-198.51.100.255")),
        "{:?}",
        g.ip
    );
    // Relaxing the app's IP policy stops profile ranges from applying.
    c.observe(&audit(
        "2024-07-09T09:12:00Z",
        AuditChange::IpRelaxation {
            app: "Marketing Sync".into(),
            relaxed: true,
            setting: "Relax IP restrictions".into(),
        },
    ));
    let g = observe_grant(&mut c, grant("2024-07-09T09:13:00Z", "203.0.113.9", true));
    assert!(
        matches!(&g.ip, IpVerdict::NoRestriction { scope } if scope.contains("Relax IP restrictions")),
        "{:?}",
        g.ip
    );
    // Deleting the range.
    let mut c2 = correlator();
    c2.observe(&profile_row("Integration Profile", Perms::API_ENABLED));
    for added in [true, false] {
        c2.observe(&audit(
            "2024-07-09T09:05:00Z",
            AuditChange::LoginIpRange {
                profile: "Integration Profile".into(),
                range: IpRange::parse("198.51.100.0/24").unwrap(),
                added,
            },
        ));
    }
    let g = observe_grant(&mut c2, grant("2024-07-09T09:10:00Z", "198.51.100.7", true));
    assert!(matches!(g.ip, IpVerdict::NoRestriction { .. }));
}

#[test]
fn config_ranges_per_app_and_user() {
    let mut cfg = Config::default().correlation;
    cfg.ranges.by_app.insert(
        "marketing sync".into(),
        vec![LabeledRange {
            range: IpRange::parse("203.0.113.0/24").unwrap(),
            source: "app 'Marketing Sync' (config)".into(),
        }],
    );
    let mut c = Correlator::new(cfg);
    let g = observe_grant(&mut c, grant("2024-07-09T09:00:00Z", "203.0.113.50", true));
    assert!(matches!(&g.ip, IpVerdict::Inside { range } if range.contains("(config)")));
    let g = observe_grant(&mut c, grant("2024-07-09T09:01:00Z", "192.0.2.1", true));
    assert!(matches!(g.ip, IpVerdict::Outside { .. }));
    let g = observe_grant(&mut c, grant("2024-07-09T09:02:00Z", "Salesforce.com IP", true));
    assert_eq!(g.ip, IpVerdict::NoIp);
}

#[test]
fn new_source_ip_needs_history_and_ages_out() {
    let mut c = correlator();
    let g = observe_grant(&mut c, grant("2024-07-01T09:00:00Z", "203.0.113.50", true));
    assert_eq!(g.new_ip, None, "first grant of a pair has no history");
    let g = observe_grant(&mut c, grant("2024-07-01T10:00:00Z", "203.0.113.50", true));
    assert_eq!(g.new_ip, None);
    let g = observe_grant(&mut c, grant("2024-07-01T11:00:00Z", "185.220.101.33", true));
    assert_eq!(g.new_ip, Some(1));
    let g = observe_grant(&mut c, grant("2024-07-01T12:00:00Z", "185.220.101.33", true));
    assert_eq!(g.new_ip, None, "seen now");
    // Failed grants do not teach the history.
    c.observe(&grant("2024-07-01T12:30:00Z", "192.0.2.1", false));
    let g = observe_grant(&mut c, grant("2024-07-01T13:00:00Z", "192.0.2.1", true));
    assert_eq!(g.new_ip, Some(2));
    // 31 days later everything aged out: no history, no factor.
    let g = observe_grant(&mut c, grant("2024-08-01T14:00:00Z", "198.18.0.1", true));
    assert_eq!(g.new_ip, None);
}

#[test]
fn ip_history_is_bounded_and_evictions_counted() {
    let mut cfg = Config::default().correlation;
    cfg.max_ips_per_pair = 2;
    cfg.max_pairs = 1;
    let mut c = Correlator::new(cfg);
    for (i, ip) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
        observe_grant(&mut c, grant(&format!("2024-07-01T09:0{i}:00Z"), ip, true));
    }
    assert_eq!(c.stats.ip_evictions, 1);
    assert_eq!(c.ips_tracked(), 2);
    let mut other = grant("2024-07-01T10:00:00Z", "10.0.0.9", true);
    if let NormalizedEvent::Login(l) = &mut other {
        l.app = Some("Other".into());
    }
    observe_grant(&mut c, other);
    assert_eq!(c.stats.pair_evictions, 1);
    assert_eq!(c.pairs_tracked(), 1);
}

#[test]
fn flow_enablement_named_unnamed_and_bound() {
    let mut c = correlator();
    let obs =
        c.observe(&audit("2024-07-09T08:00:00Z", AuditChange::ClientCredentialsEnabled { app: None, enabled: true }));
    assert!(matches!(obs, Some(Observation::Enablement(_))));
    // Unbound: applies to every app.
    let g = observe_grant(&mut c, grant("2024-07-09T08:00:30Z", "1.2.3.4", true));
    assert!(g.flow_change.unwrap().what.contains("app not named"));
    // A run-as assignment by the same admin binds it to that app.
    let obs = c.observe(&audit(
        "2024-07-09T08:01:00Z",
        AuditChange::ClientCredentialsUser { user: user_ref(), app: "Other App".into(), app_id: None },
    ));
    match obs {
        Some(Observation::Enablement(e)) => assert_eq!(e.app.as_deref(), Some("Other App")),
        other => panic!("{other:?}"),
    }
    let g = observe_grant(&mut c, grant("2024-07-09T09:00:00Z", "1.2.3.4", true));
    assert!(g.flow_change.is_none(), "bound to another app");
    // Named enablement, and the window.
    c.observe(&audit(
        "2024-07-09T09:30:00Z",
        AuditChange::ClientCredentialsEnabled { app: Some("Marketing Sync".into()), enabled: true },
    ));
    let g = observe_grant(&mut c, grant("2024-07-10T09:29:00Z", "1.2.3.4", true));
    assert!(g.flow_change.unwrap().what.contains("'Marketing Sync'"));
    let g = observe_grant(&mut c, grant("2024-07-10T09:31:00Z", "1.2.3.4", true));
    assert!(g.flow_change.is_none(), "older than 24 h");
    // Disabling produces no observation.
    assert!(c
        .observe(&audit("2024-07-10T10:00:00Z", AuditChange::ClientCredentialsEnabled { app: None, enabled: false }))
        .is_none());
}

#[test]
fn run_as_assignment_reports_user_privileges() {
    let mut c = correlator();
    c.observe(&psa("Data Steward", Perms::MODIFY_ALL_DATA));
    let obs = c.observe(&audit(
        "2024-07-09T08:01:00Z",
        AuditChange::ClientCredentialsUser { user: user_ref(), app: "Marketing Sync".into(), app_id: None },
    ));
    let Some(Observation::Enablement(e)) = obs else { panic!("{obs:?}") };
    assert_eq!(e.privileges[0].label, "Modify All Data");
    assert_eq!(e.run_as_username.as_deref(), Some("marketing-sync@acme.example"));
    let g = observe_grant(&mut c, grant("2024-07-09T09:00:00Z", "1.2.3.4", true));
    assert!(g.flow_change.unwrap().what.contains("run-as user"));
}

#[test]
fn failed_grant_burst_counts_failures_in_window() {
    let mut c = correlator();
    for m in 0..4 {
        c.observe(&grant(&format!("2024-07-09T10:0{m}:00Z"), "185.220.101.33", false));
    }
    let g = observe_grant(&mut c, grant("2024-07-09T10:05:00Z", "185.220.101.33", true));
    assert!(g.failed_burst.is_none(), "4 failures are below the threshold of 5");
    c.observe(&grant("2024-07-09T10:05:30Z", "185.220.101.33", false));
    let g = observe_grant(&mut c, grant("2024-07-09T10:06:00Z", "185.220.101.33", true));
    let b = g.failed_burst.expect("5 failures within 10 min");
    assert_eq!((b.count, b.first, b.last), (5, t("2024-07-09T10:00:00Z"), t("2024-07-09T10:05:30Z")));
    let g = observe_grant(&mut c, grant("2024-07-09T10:10:30Z", "185.220.101.33", true));
    assert!(g.failed_burst.is_none(), "the first failure left the 10 min window");
}

#[test]
fn username_only_grants_resolve_through_inventory() {
    let mut c = correlator();
    c.observe(&NormalizedEvent::Inventory(Inventory::User {
        id: id(USER),
        username: Some("marketing-sync@acme.example".into()),
        name: Some("Marketing Sync User".into()),
        active: Some(true),
        profile: Some("Integration".into()),
    }));
    c.observe(&psa("Data Steward", Perms::VIEW_ALL_DATA));
    let mut ev = grant("2024-07-09T10:00:00Z", "1.2.3.4", true);
    if let NormalizedEvent::Login(l) = &mut ev {
        l.user_id = None;
        l.username = Some("Marketing-Sync@acme.example".into());
    }
    let g = observe_grant(&mut c, ev);
    assert_eq!(g.user_id, Some(id(USER)));
    assert_eq!(g.privileges[0].label, "View All Data");
}

/// `observe_facts` leaves a grant's text out and `describe_grant` writes it;
/// neither may change what is scored: the same factors apply, so the fold
/// decision made on facts holds for the described alert.
#[test]
fn facts_score_as_the_described_grant_does() {
    let mut kinds = std::collections::BTreeSet::new();
    for user_range in [false, true] {
        let mut cfg = Config::default();
        if user_range {
            cfg.correlation.ranges.by_user.insert(
                "marketing-sync@acme.example".into(),
                vec![LabeledRange { range: IpRange::parse("192.0.2.0/28").unwrap(), source: "user (config)".into() }],
            );
        }
        let scorer = crate::score::Scorer::new(cfg.scoring.clone(), None);
        let mut c = Correlator::new(cfg.correlation);
        let range = |added| {
            audit(
                "2024-07-09T09:05:00Z",
                AuditChange::LoginIpRange {
                    profile: "Integration".into(),
                    range: IpRange::parse("198.51.100.0/24").unwrap(),
                    added,
                },
            )
        };
        let relax = audit(
            "2024-07-09T09:06:00Z",
            AuditChange::IpRelaxation {
                app: "Marketing Sync".into(),
                relaxed: true,
                setting: "Relax IP restrictions".into(),
            },
        );
        let setup = [
            None,
            Some(profile_row("Integration", Perms::AUTHOR_APEX)),
            Some(psa("Data Steward", Perms::MODIFY_ALL_DATA)),
            Some(range(true)),
            Some(relax),
            Some(range(false)),
        ];
        for (i, step) in setup.into_iter().enumerate() {
            if let Some(ev) = step {
                c.observe_facts(&ev);
            }
            for (j, ip) in ["198.51.100.7", "203.0.113.9", "192.0.2.3", "no IP"].into_iter().enumerate() {
                let time = format!("2024-07-09T10:{i:02}:{j:02}Z");
                let Some(Observation::Grant(facts)) = c.observe_facts(&grant(&time, ip, true)) else {
                    panic!("no grant")
                };
                let mut described = facts.clone();
                c.describe_grant(&mut described);
                assert!(facts.privileges.iter().all(|p| p.via.is_empty()), "facts carry no text");
                assert!(described.privileges.iter().all(|p| !p.via.is_empty()), "{described:?}");
                let labels = |g: &GrantObservation| g.privileges.iter().map(|p| p.label).collect::<Vec<_>>();
                assert_eq!(labels(&facts), labels(&described));
                assert_eq!(std::mem::discriminant(&facts.ip), std::mem::discriminant(&described.ip));
                assert_eq!(scorer.grant_id_and_score(&facts), scorer.grant_id_and_score(&described));
                kinds.insert(format!("{:?}", described.ip).split([' ', '{']).next().unwrap_or_default().to_string());
            }
        }
    }
    assert_eq!(kinds.len(), 4, "every IP verdict was exercised: {kinds:?}");
}

/// A day of setup changes and grants for one integration user: baseline
/// inventory, an escalation, a profile IP range, an enablement, an
/// unassignment, and grants before, between and after them.
fn day_of_changes() -> (Vec<NormalizedEvent>, Vec<NormalizedEvent>) {
    let setup = vec![
        psa("Ops", Perms::empty()),
        profile_row("Custom: Integration", Perms::API_ENABLED),
        audit("2024-07-09T09:30:00Z", ops_modify_all_data(true)),
        audit(
            "2024-07-09T10:15:00Z",
            AuditChange::LoginIpRange {
                profile: "Custom: Integration".into(),
                range: IpRange::parse("10.0.0.0/24").unwrap(),
                added: true,
            },
        ),
        audit("2024-07-09T11:00:00Z", AuditChange::ClientCredentialsEnabled { app: None, enabled: true }),
        audit(
            "2024-07-09T12:30:00Z",
            AuditChange::PermSetAssignment { perm_set: "Ops".into(), user: user_ref(), assigned: false, group: false },
        ),
    ];
    let grants = ["09:00", "09:30", "10:00", "10:30", "11:30", "12:00", "13:00", "23:00"]
        .iter()
        .enumerate()
        .map(|(i, hm)| grant(&format!("2024-07-09T{hm}:00Z"), if i % 2 == 0 { "10.0.0.7" } else { "8.8.8.8" }, true))
        .collect();
    (setup, grants)
}

/// Every grant's observation, with the records delivered in `order` (indices
/// into setup records first, then grants).
fn observe_in(order: &[usize], setup: &[NormalizedEvent], grants: &[NormalizedEvent]) -> Vec<GrantObservation> {
    let mut c = correlator();
    let mut out = Vec::new();
    for &i in order {
        match setup.get(i) {
            Some(ev) => {
                c.observe(ev);
            }
            None => out.push(observe_grant(&mut c, grants[i - setup.len()].clone())),
        }
    }
    out.sort_by_key(|g| g.login.time);
    out
}

#[test]
fn grants_are_scored_as_of_their_time_whatever_order_setup_records_arrive_in() {
    let (setup, grants) = day_of_changes();
    let n = setup.len() + grants.len();
    // Replay's order: everything by event time, setup first at equal times.
    let mut by_time: Vec<usize> = (0..n).collect();
    let time = |i: usize| setup.get(i).or_else(|| grants.get(i - setup.len())).unwrap().time();
    by_time.sort_by_key(|&i| (time(i), i >= setup.len()));
    let want = observe_in(&by_time, &setup, &grants);
    assert!(want[0].privileges.is_empty(), "09:00 is before the escalation");
    assert_eq!(want[1].privileges.len(), 1, "09:30 sees the change made that millisecond");
    assert!(want.last().unwrap().privileges.is_empty(), "23:00 is after the unassignment");

    // A restarted instance: every setup record (days ahead included) first,
    // in reverse, then the grants.
    let mut setup_first: Vec<usize> = (0..setup.len()).rev().collect();
    setup_first.extend(setup.len()..n);
    assert_eq!(observe_in(&setup_first, &setup, &grants), want);

    // Pseudo-random interleavings in which each setup record arrives before
    // the grants later than it, but in any order among themselves and
    // relative to earlier grants.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let mut order: Vec<usize> = (0..setup.len()).collect();
        for i in (1..order.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let mut delivered: Vec<usize> = Vec::new();
        let mut pending_setup = order.clone();
        for g in setup.len()..n {
            // Deliver every setup record this grant depends on, and, at random, some later ones.
            pending_setup.retain(|&s| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let now = time(s) <= time(g) || (seed >> 40).is_multiple_of(3);
                if now {
                    delivered.push(s);
                }
                !now
            });
            delivered.push(g);
        }
        delivered.extend(pending_setup);
        assert_eq!(observe_in(&delivered, &setup, &grants), want, "order {delivered:?}");
    }
}

#[test]
fn a_setup_record_behind_an_answered_grant_is_counted_late_and_applies_from_then_on() {
    let mut c = correlator();
    c.observe(&psa("Ops", Perms::empty()));
    let g = observe_grant(&mut c, grant("2024-07-09T10:00:00Z", "1.2.3.4", true));
    assert!(g.privileges.is_empty());
    c.observe(&audit("2024-07-09T09:30:00Z", ops_modify_all_data(true)));
    assert_eq!(c.stats().late_setup_records, 1);
    let g = observe_grant(&mut c, grant("2024-07-09T09:45:00Z", "1.2.3.4", true));
    assert_eq!(g.privileges.len(), 1, "an earlier grant arriving now sees it");
}

#[test]
fn the_timeline_rewinds_across_snapshots_and_its_bound_is_counted() {
    let mut cfg = Config::default().correlation;
    cfg.max_setup_records = 600;
    let mut c = Correlator::new(cfg);
    c.observe(&psa("Ops", Perms::empty()));
    // 1,000 toggles of Modify All Data, one a minute: privileged on odd minutes.
    for m in 0..1000i64 {
        let at = EventTime(t("2024-07-09T00:00:00Z").0 + m * 60_000);
        let mut ev = audit("2024-07-09T00:00:00Z", AuditChange::Ignored);
        if let NormalizedEvent::Audit(a) = &mut ev {
            a.time = at;
            a.change = ops_modify_all_data(m % 2 == 0);
        }
        c.observe(&ev);
    }
    let stats = c.stats();
    assert!(stats.setup_evictions > 0 && stats.setup_records <= 600, "{stats:?}");
    // Questions far back and forth within the retained records (the first
    // retained toggle is minute `evicted - 1`): each sees the toggle in force then.
    let first = stats.setup_evictions as i64;
    for m in [999i64, first + 10, 998, first, first + 1, 990, first + 200, first + 3] {
        let at = EventTime(t("2024-07-09T00:00:30Z").0 + m * 60_000).to_string();
        let g = observe_grant(&mut c, grant(&at, "1.2.3.4", true));
        assert_eq!(g.privileges.len(), usize::from(m % 2 == 0), "minute {m}");
    }
    // Before the retained records the answer includes the evicted ones: the
    // inventory row, then toggles 0..=evicted-2, the last of which enabled
    // the permission when its minute is even.
    let evicted = c.stats().setup_evictions as i64;
    let g = observe_grant(&mut c, grant("2024-07-09T00:00:30Z", "1.2.3.4", true));
    assert_eq!(g.privileges.len(), usize::from((evicted - 2) % 2 == 0), "evicted records applied");
}
