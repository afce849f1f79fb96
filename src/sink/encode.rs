//! Alert → one line of JSON, in the native shape, OCSF or ECS.
//!
//! All three carry the same content. OCSF is a Detection Finding (class 2004,
//! schema 1.3); ECS puts ccwatch-specific fields under `ccwatch.*`. Key order is
//! fixed (serde_json `preserve_order`), so output is byte-identical per input.

use crate::event::{Alert, EmitKind, Format, Severity};
use serde_json::{json, Value};

fn epoch_ms(a: &Alert) -> (i64, i64) {
    (a.first_time.0, a.last_time.0)
}

fn ocsf_severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn technique_name(id: &str) -> &'static str {
    match id {
        "T1078.004" => "Valid Accounts: Cloud Accounts",
        "T1528" => "Steal Application Access Token",
        "T1550.001" => "Use Alternate Authentication Material: Application Access Token",
        "T1098.001" => "Account Manipulation: Additional Cloud Credentials",
        "T1213" => "Data from Information Repositories",
        "T1567" => "Exfiltration Over Web Service",
        _ => "",
    }
}

fn ocsf(a: &Alert, kind: EmitKind) -> Value {
    let (first, last) = epoch_ms(a);
    let (sev_id, sev) = ocsf_severity(a.severity);
    let (activity_id, activity) = match kind {
        EmitKind::Raised => (1, "Create"),
        EmitKind::ScoreRose | EmitKind::Closed => (2, "Update"),
    };
    let mut v = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": 200400 + activity_id,
        "time": last,
        "severity_id": sev_id,
        "severity": sev,
        "status_id": 1,
        "status": "New",
        "count": a.count,
        "risk_score": (a.score * 10.0).round() as i64,
        "message": a.title,
        "finding_info": {
            "uid": a.alert_id,
            "title": a.title,
            "desc": a.factors.iter().map(|f| format!("{} ({:+}): {}", f.id, f.weight, f.detail)).collect::<Vec<_>>().join("\n"),
            "types": [a.rule.id()],
            "first_seen_time": first,
            "last_seen_time": last,
            "analytic": {"name": a.rule.id(), "uid": a.rule.id(), "type_id": 1, "type": "Rule"},
            "attacks": a.mitre.iter().map(|t| json!({"technique": {"uid": t, "name": technique_name(t)}})).collect::<Vec<_>>(),
            "related_events": a.evidence.iter().map(|e| json!({"uid": e})).collect::<Vec<_>>(),
        },
        "actor": {
            "user": {"uid": a.user_id, "name": a.username},
            "app_name": a.app,
        },
        "src_endpoint": {"ip": a.source_ip},
        "cloud": {"provider": "Salesforce", "account": {"uid": a.org_id}},
        "remediation": {"desc": a.remediation},
        "metadata": {
            "version": "1.3.0",
            "product": {"name": "ccwatch", "vendor_name": "ccwatch", "version": env!("CARGO_PKG_VERSION")},
        },
        "unmapped": {"score": a.score, "factors": a.factors},
    });
    if let Some(activity) = &a.activity {
        v["unmapped"]["activity"] = json!(activity);
    }
    v
}

fn ecs(a: &Alert) -> Value {
    let mut v = json!({
        "@timestamp": a.last_seen,
        "message": a.title,
        "event": {
            "kind": "alert",
            "category": ["authentication", "iam"],
            "type": ["info"],
            "id": a.alert_id,
            "start": a.first_seen,
            "end": a.last_seen,
            "severity": ocsf_severity(a.severity).0,
            "risk_score": a.score * 10.0,
            "provider": "salesforce",
        },
        "rule": {"id": a.rule.id(), "name": a.rule.id(), "ruleset": "ccwatch"},
        "organization": {"id": a.org_id},
        "user": {"id": a.user_id, "name": a.username},
        "source": {"ip": a.source_ip},
        "threat": {
            "framework": "MITRE ATT&CK",
            "technique": a.mitre.iter().map(|t| json!({"id": t, "name": technique_name(t)})).collect::<Vec<_>>(),
        },
        "ccwatch": {
            "severity": a.severity,
            "score": a.score,
            "count": a.count,
            "app": a.app,
            "factors": a.factors,
            "evidence": a.evidence,
            "remediation": a.remediation,
        },
    });
    if let Some(activity) = &a.activity {
        v["ccwatch"]["activity"] = json!(activity);
    }
    v
}

/// Appends one JSON line for `a` to `out`.
pub fn encode(format: Format, a: &Alert, kind: EmitKind, out: &mut Vec<u8>) {
    let result = match format {
        Format::Native => serde_json::to_writer(&mut *out, a),
        Format::Ocsf => serde_json::to_writer(&mut *out, &ocsf(a, kind)),
        Format::Ecs => serde_json::to_writer(&mut *out, &ecs(a)),
    };
    // Serialising plain data into a Vec cannot fail.
    debug_assert!(result.is_ok());
    out.push(b'\n');
}
