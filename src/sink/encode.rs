//! Alert → one line of JSON, in the native shape, OCSF or ECS.
//!
//! All three carry the same content, and each tells a raised, an updated and
//! a closed line apart (native `action`, OCSF `activity_id`, ECS
//! `event.action`). OCSF is a Detection Finding (class 2004) of schema 1.5.0
//! with the `cloud` profile declared: the source IP sits in
//! `evidences[].src_endpoint` and `observables`, ATT&CK is split into
//! technique, sub-technique and tactic, and no attribute is null. ECS uses
//! only ECS 8.11 fields and puts the rest under `ccwatch.*`, never null either.
//! Key order is fixed (serde_json `preserve_order`), so output is
//! byte-identical per input.

use crate::event::{Alert, EmitKind, Format, Rule, Severity};
use serde_json::{json, Map, Value};

/// The OCSF schema version the Detection Finding conforms to (validated
/// against the official schema in tests/tools.rs).
pub const OCSF_VERSION: &str = "1.5.0";
/// The ECS version every ECS field belongs to (checked against Elastic's
/// field list in tests/tools.rs); the rest sits under `ccwatch.*`.
pub const ECS_VERSION: &str = "8.11.0";

fn ocsf_severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// One ATT&CK entry, split the way OCSF and ECS want it: technique,
/// sub-technique (when the id has one) and the tactic it serves here.
struct Attack {
    technique: (&'static str, &'static str),
    sub_technique: Option<(&'static str, &'static str)>,
    tactic: (&'static str, &'static str),
}

fn attack(id: &str) -> Option<Attack> {
    let (technique, sub_technique, tactic) = match id {
        "T1078.004" => {
            (("T1078", "Valid Accounts"), Some(("T1078.004", "Cloud Accounts")), ("TA0001", "Initial Access"))
        }
        "T1528" => (("T1528", "Steal Application Access Token"), None, ("TA0006", "Credential Access")),
        "T1550.001" => (
            ("T1550", "Use Alternate Authentication Material"),
            Some(("T1550.001", "Application Access Token")),
            ("TA0005", "Defense Evasion"),
        ),
        "T1098.001" => (
            ("T1098", "Account Manipulation"),
            Some(("T1098.001", "Additional Cloud Credentials")),
            ("TA0003", "Persistence"),
        ),
        "T1213" => (("T1213", "Data from Information Repositories"), None, ("TA0009", "Collection")),
        "T1567" => (("T1567", "Exfiltration Over Web Service"), None, ("TA0010", "Exfiltration")),
        _ => return None,
    };
    Some(Attack { technique, sub_technique, tactic })
}

/// The line's place in its alert's life, as every format names it.
fn action(kind: EmitKind) -> &'static str {
    match kind {
        EmitKind::Raised => "raised",
        EmitKind::ScoreRose => "updated",
        EmitKind::Closed => "closed",
    }
}

/// Inserts `key: value` when there is a value: OCSF and ECS never carry nulls.
fn put(m: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        m.insert(key.into(), v.into());
    }
}

fn object(m: Map<String, Value>) -> Option<Value> {
    (!m.is_empty()).then_some(Value::Object(m))
}

/// An OCSF 1.5.0 Detection Finding (class 2004) with the `cloud` profile.
fn ocsf(a: &Alert, kind: EmitKind) -> Value {
    let (sev_id, sev) = ocsf_severity(a.severity);
    let (activity_id, activity) = match kind {
        EmitKind::Raised => (1, "Create"),
        EmitKind::ScoreRose => (2, "Update"),
        EmitKind::Closed => (3, "Close"),
    };
    let attacks: Vec<Value> = a
        .mitre
        .iter()
        .filter_map(|id| attack(id))
        .map(|t| {
            let mut m = Map::new();
            m.insert("technique".into(), json!({"uid": t.technique.0, "name": t.technique.1}));
            if let Some((uid, name)) = t.sub_technique {
                m.insert("sub_technique".into(), json!({"uid": uid, "name": name}));
            }
            m.insert("tactic".into(), json!({"uid": t.tactic.0, "name": t.tactic.1}));
            m.insert("version".into(), "16.1".into());
            Value::Object(m)
        })
        .collect();

    // Who and where, as evidence: the run-as user, the app, the source IP.
    let mut user = Map::new();
    put(&mut user, "uid", a.user_id.clone());
    put(&mut user, "name", a.username.clone());
    let mut actor = Map::new();
    put(&mut actor, "user", object(user.clone()));
    put(&mut actor, "app_name", a.app.clone());
    let mut evidence = Map::new();
    put(&mut evidence, "actor", object(actor));
    put(&mut evidence, "user", object(user));
    put(&mut evidence, "src_endpoint", a.source_ip.as_ref().map(|ip| json!({"ip": ip})));

    let mut observables = Vec::new();
    if let Some(ip) = &a.source_ip {
        observables
            .push(json!({"name": "evidences[].src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": ip}));
    }
    if let Some(name) = &a.username {
        observables.push(json!({"name": "evidences[].user.name", "type_id": 4, "type": "User Name", "value": name}));
    }

    let mut finding = Map::new();
    finding.insert("uid".into(), a.alert_id.clone().into());
    finding.insert("title".into(), a.title.clone().into());
    if !a.factors.is_empty() {
        let desc = a.factors.iter().map(|f| format!("{} ({:+}): {}", f.id, f.weight, f.detail)).collect::<Vec<_>>();
        finding.insert("desc".into(), desc.join("\n").into());
    }
    finding.insert("types".into(), json!([a.rule.id()]));
    finding.insert("first_seen_time".into(), a.first_time.0.into());
    finding.insert("last_seen_time".into(), a.last_time.0.into());
    finding.insert("analytic".into(), json!({"name": a.rule.id(), "uid": a.rule.id(), "type_id": 1, "type": "Rule"}));
    if !attacks.is_empty() {
        finding.insert("attacks".into(), attacks.into());
    }
    if !a.evidence.is_empty() {
        finding
            .insert("related_events".into(), a.evidence.iter().map(|e| json!({"uid": e})).collect::<Vec<_>>().into());
    }

    let mut cloud = Map::new();
    cloud.insert("provider".into(), "Salesforce".into());
    // The Salesforce org is the cloud organization (an org id, not an account).
    put(&mut cloud, "org", a.org_id.as_ref().map(|o| json!({"uid": o})));

    let mut unmapped = Map::new();
    unmapped.insert("score".into(), a.score.into());
    unmapped.insert("factors".into(), json!(a.factors));
    unmapped.insert("action".into(), action(kind).into());
    if let Some(activity) = &a.activity {
        unmapped.insert("activity".into(), json!(activity));
    }

    let mut v = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": 200400 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "time": a.last_time.0,
        "start_time": a.first_time.0,
        "end_time": a.last_time.0,
        "severity_id": sev_id,
        "severity": sev,
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "count": a.count,
        "risk_score": (a.score * 10.0).round() as i64,
        "message": a.title,
        "finding_info": finding,
        "cloud": cloud,
        "remediation": {"desc": a.remediation},
        "metadata": {
            "version": OCSF_VERSION,
            "profiles": ["cloud"],
            "product": {"name": "ccwatch", "vendor_name": "ccwatch", "version": env!("CARGO_PKG_VERSION")},
            "event_code": a.rule.id(),
        },
        "unmapped": unmapped,
    });
    if let Some(e) = object(evidence) {
        v["evidences"] = json!([e]);
    }
    if !observables.is_empty() {
        v["observables"] = observables.into();
    }
    v
}

/// An ECS 8.11 document: ECS fields where ECS has them, the rest under `ccwatch.*`.
fn ecs(a: &Alert, kind: EmitKind) -> Value {
    let attacks: Vec<Attack> = a.mitre.iter().filter_map(|id| attack(id)).collect();
    let unique = |f: &dyn Fn(&Attack) -> Option<(&'static str, &'static str)>| {
        let mut v: Vec<(&'static str, &'static str)> = attacks.iter().filter_map(f).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let techniques = unique(&|t| Some(t.technique));
    let subs = unique(&|t| t.sub_technique);
    let tactics = unique(&|t| Some(t.tactic));
    let ids = |v: &[(&'static str, &'static str)]| v.iter().map(|x| x.0).collect::<Vec<&'static str>>();
    let names = |v: &[(&'static str, &'static str)]| v.iter().map(|x| x.1).collect::<Vec<&'static str>>();
    let mut technique = json!({"id": ids(&techniques), "name": names(&techniques)});
    if !subs.is_empty() {
        technique["subtechnique"] = json!({"id": ids(&subs), "name": names(&subs)});
    }

    let category = match a.rule {
        Rule::ClientCredentialsGrant => json!(["authentication", "iam"]),
        Rule::ClientCredentialsEnabled => json!(["configuration", "iam"]),
        Rule::ClientCredentialsDataAccess => json!(["api", "database"]),
    };
    let mut user = Map::new();
    put(&mut user, "id", a.user_id.clone());
    put(&mut user, "name", a.username.clone());
    let mut related = Map::new();
    put(&mut related, "ip", a.source_ip.as_ref().map(|ip| json!([ip])));
    let users: Vec<&String> = a.user_id.iter().chain(a.username.iter()).collect();
    put(&mut related, "user", (!users.is_empty()).then(|| json!(users)));

    let mut ccwatch = Map::new();
    ccwatch.insert("severity".into(), json!(a.severity));
    ccwatch.insert("score".into(), a.score.into());
    ccwatch.insert("count".into(), a.count.into());
    put(&mut ccwatch, "app", a.app.clone());
    ccwatch.insert("factors".into(), json!(a.factors));
    ccwatch.insert("evidence".into(), json!(a.evidence));
    ccwatch.insert("remediation".into(), a.remediation.into());
    if let Some(activity) = &a.activity {
        ccwatch.insert("activity".into(), json!(activity));
    }

    let mut v = json!({
        "@timestamp": a.last_seen,
        "ecs": {"version": ECS_VERSION},
        "message": a.title,
        "event": {
            "kind": "alert",
            "category": category,
            "type": ["info"],
            "action": action(kind),
            "id": a.alert_id,
            "start": a.first_seen,
            "end": a.last_seen,
            "severity": ocsf_severity(a.severity).0,
            "risk_score": a.score * 10.0,
            "provider": "salesforce",
            "dataset": "ccwatch.alerts",
            "module": "ccwatch",
        },
        "rule": {"id": a.rule.id(), "name": a.rule.id(), "ruleset": "ccwatch", "description": a.title},
        "threat": {
            "framework": "MITRE ATT&CK",
            "technique": technique,
            "tactic": {"id": ids(&tactics), "name": names(&tactics)},
        },
        "ccwatch": ccwatch,
    });
    if let Some(org) = &a.org_id {
        v["organization"] = json!({"id": org});
    }
    if let Some(u) = object(user) {
        v["user"] = u;
    }
    if let Some(ip) = &a.source_ip {
        v["source"] = json!({"ip": ip});
    }
    if let Some(r) = object(related) {
        v["related"] = r;
    }
    v
}

/// Appends one JSON line for `a` to `out`.
pub fn encode(format: Format, a: &Alert, kind: EmitKind, out: &mut Vec<u8>) {
    let result = match format {
        Format::Native => serde_json::to_writer(&mut *out, a).map(|()| {
            // The line's kind, added last so the native shape only grows.
            out.pop();
            out.extend_from_slice(b",\"action\":\"");
            out.extend_from_slice(action(kind).as_bytes());
            out.extend_from_slice(b"\"}");
        }),
        Format::Ocsf => serde_json::to_writer(&mut *out, &ocsf(a, kind)),
        Format::Ecs => serde_json::to_writer(&mut *out, &ecs(a, kind)),
    };
    // Serialising plain data into a Vec cannot fail.
    debug_assert!(result.is_ok());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventTime, Factor};

    fn alert(known: bool) -> Alert {
        Alert {
            alert_id: "abc".into(),
            rule: Rule::ClientCredentialsGrant,
            severity: Severity::Critical,
            score: 9.5,
            title: "t".into(),
            org_id: known.then(|| "00D000000000001AAA".into()),
            user_id: known.then(|| "005000000000001AAA".into()),
            username: known.then(|| "svc@acme.example".into()),
            app: known.then(|| "Acme ETL".into()),
            source_ip: known.then(|| "203.0.113.9".into()),
            first_seen: "2024-07-10T08:00:00.000Z".into(),
            last_seen: "2024-07-10T08:05:00.000Z".into(),
            count: 2,
            factors: vec![Factor { id: "new_ip", weight: 1.0, detail: "d".into() }],
            evidence: vec!["e1".into()],
            activity: None,
            mitre: vec!["T1078.004", "T1528"],
            remediation: "r",
            first_time: EventTime(1_720_598_400_000),
            last_time: EventTime(1_720_598_700_000),
        }
    }

    fn line(format: Format, a: &Alert, kind: EmitKind) -> Value {
        let mut out = Vec::new();
        encode(format, a, kind, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice(&out).unwrap()
    }

    fn has_null(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.iter().any(has_null),
            Value::Object(m) => m.values().any(has_null),
            _ => false,
        }
    }

    #[test]
    fn every_format_tells_raised_updated_and_closed_lines_apart() {
        let a = alert(true);
        let kinds = [
            (EmitKind::Raised, "raised", 1, "Create"),
            (EmitKind::ScoreRose, "updated", 2, "Update"),
            (EmitKind::Closed, "closed", 3, "Close"),
        ];
        for (kind, name, id, activity) in kinds {
            assert_eq!(line(Format::Native, &a, kind)["action"], name);
            assert_eq!(line(Format::Ecs, &a, kind)["event"]["action"], name);
            let o = line(Format::Ocsf, &a, kind);
            assert_eq!((o["activity_id"].as_i64(), o["activity_name"].as_str()), (Some(id), Some(activity)));
            assert_eq!(o["type_uid"], 200400 + id);
        }
        // The native shape only grows: every field it had is still there, in order.
        let n = line(Format::Native, &a, EmitKind::Raised);
        let keys: Vec<&String> = n.as_object().unwrap().keys().collect();
        assert_eq!(keys.first().map(|k| k.as_str()), Some("alert_id"));
        assert_eq!(keys.last().map(|k| k.as_str()), Some("action"));
    }

    #[test]
    fn ocsf_and_ecs_never_write_null_and_put_the_source_ip_where_the_standards_do() {
        for known in [true, false] {
            let a = alert(known);
            let o = line(Format::Ocsf, &a, EmitKind::Raised);
            let e = line(Format::Ecs, &a, EmitKind::Raised);
            assert!(!has_null(&o) && !has_null(&e), "{o}\n{e}");
            assert!(o.get("src_endpoint").is_none() && o.get("actor").is_none(), "{o}");
            assert_eq!(o["metadata"]["profiles"], json!(["cloud"]));
            if known {
                assert_eq!(o["evidences"][0]["src_endpoint"]["ip"], "203.0.113.9");
                assert_eq!(
                    o["observables"][0],
                    json!({"name": "evidences[].src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": "203.0.113.9"})
                );
                assert_eq!(e["related"]["ip"], json!(["203.0.113.9"]));
                assert_eq!(e["related"]["user"], json!(["005000000000001AAA", "svc@acme.example"]));
                assert_eq!(e["source"]["ip"], "203.0.113.9");
            } else {
                assert!(o.get("evidences").is_none() && e.get("source").is_none() && e.get("related").is_none());
            }
        }
    }

    #[test]
    fn attack_ids_are_split_into_technique_sub_technique_and_tactic() {
        let a = alert(true);
        let o = line(Format::Ocsf, &a, EmitKind::Raised);
        let first = &o["finding_info"]["attacks"][0];
        assert_eq!(first["technique"]["uid"], "T1078");
        assert_eq!(first["sub_technique"]["uid"], "T1078.004");
        assert_eq!(first["tactic"]["uid"], "TA0001");
        let second = &o["finding_info"]["attacks"][1];
        assert_eq!(second["technique"]["uid"], "T1528");
        assert!(second.get("sub_technique").is_none());
        let e = line(Format::Ecs, &a, EmitKind::Raised);
        assert_eq!(e["ecs"]["version"], ECS_VERSION);
        assert_eq!(e["threat"]["technique"]["id"], json!(["T1078", "T1528"]));
        assert_eq!(e["threat"]["technique"]["subtechnique"]["id"], json!(["T1078.004"]));
        assert_eq!(e["threat"]["tactic"]["id"], json!(["TA0001", "TA0006"]));
    }
}
