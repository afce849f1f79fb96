//! Decoders against the real public samples quoted in
//! `shared/reference/salesforce-formats.md` (kept verbatim in
//! `tests/fixtures/reference/`), plus the variations real exports show.

use ccwatch::decode::csv::{decode_chunk, CsvHeader};
use ccwatch::decode::{decode_json_unit, Decoded, RejectReason};
use ccwatch::event::{AuditChange, GrantClass, Inventory, Login, NormalizedEvent, RecordKind, SfId};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/reference/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn json(text: &str) -> Vec<Decoded> {
    let mut out = Vec::new();
    decode_json_unit(text.as_bytes(), &mut out);
    out
}

fn csv(text: &str) -> Vec<Decoded> {
    let (header, body) = text.split_once('\n').unwrap();
    let header = CsvHeader::parse(header.as_bytes()).unwrap();
    let mut out = Vec::new();
    decode_chunk(&header, body.as_bytes(), 2, &mut out);
    out.into_iter().map(|(_, d)| d).collect()
}

fn login(d: &Decoded) -> &Login {
    match d {
        Decoded::Event(NormalizedEvent::Login(l)) => l,
        other => panic!("expected a login event, got {other:?}"),
    }
}

fn id(s: &str) -> Option<SfId> {
    SfId::parse(s)
}

#[test]
fn s1_login_event_rest_result() {
    let text = fixture("s1_login_event_rest.json");
    // As published the record has no LoginSubType: a Remote Access 2.0 login
    // that cannot be classified.
    assert!(matches!(
        json(&text)[..],
        [Decoded::Counted { kind: RecordKind::LoginEvent, grant: GrantClass::Unclassified, success: true, .. }]
    ));
    let cc = text.replace(
        r#""LoginType": "Remote Access 2.0","#,
        r#""LoginType": "Remote Access 2.0", "LoginSubType": "OAuth Client Credentials","#,
    );
    let out = json(&cc);
    let l = login(&out[0]);
    assert_eq!(l.kind, RecordKind::LoginEvent);
    assert_eq!(l.time.to_string(), "2023-12-06T05:44:24.973Z");
    assert_eq!(l.user_id, id("0055j00000AT6I1AAL"));
    assert_eq!(l.username.as_deref(), Some("salesforceinstance@devtest.in"));
    assert_eq!(l.app.as_deref(), Some("salesforce_test"));
    assert_eq!(l.source_ip.as_deref(), Some("134.238.252.19"));
    assert_eq!(l.event_id.as_deref(), Some("00044326-ed4a-421a-a0a8-e62ea626f3af"));
    assert!(l.success);
    assert_eq!(l.grant, GrantClass::ClientCredentials);
}

#[test]
fn s2_failed_oauth_login_jsonl() {
    let text = fixture("s2_login_event_failed.jsonl");
    assert!(matches!(
        json(text.trim())[..],
        [Decoded::Counted { kind: RecordKind::LoginEvent, grant: GrantClass::Unclassified, success: false, .. }]
    ));
    let cc = text.replace(
        r#""LoginType": "Remote Access 2.0""#,
        r#""LoginType": "Remote Access 2.0", "LoginSubType": "OauthClientCredentials""#,
    );
    let out = json(cc.trim());
    let l = login(&out[0]);
    assert!(!l.success);
    assert_eq!(&*l.status, "Failed: Missing Consumer Key Parameter");
    assert_eq!(l.time.to_string(), "2024-07-08T07:26:18.239Z");
}

#[test]
fn s3_stream_payload_flat_and_in_cometd_envelope() {
    let flat = fixture("s3_login_event_stream_payload.json");
    assert!(matches!(json(&flat)[0], Decoded::Counted { grant: GrantClass::Unclassified, success: true, .. }));
    let env = fixture("s3_cometd_envelope.jsonl");
    assert!(matches!(
        json(env.trim())[..],
        [Decoded::Counted { kind: RecordKind::LoginEventStream, grant: GrantClass::Unclassified, success: true, .. }]
    ));
    let cc = env.replace(
        r#""LoginType": "Remote Access 2.0""#,
        r#""LoginType": "Remote Access 2.0", "LoginSubType": "OAuth Client Credentials""#,
    );
    let out = json(cc.trim());
    let l = login(&out[0]);
    assert_eq!(l.kind, RecordKind::LoginEventStream);
    assert_eq!(l.time.to_string(), "2022-12-28T11:47:22.000Z");
    assert_eq!(l.app.as_deref(), Some("elastic integration"));
    // Without EventIdentifier the envelope's EventUuid identifies the event.
    let no_id = cc.replace(r#""EventIdentifier": "06af6d92-1167-467d-a826-ee8583f7134d", "#, "");
    let out = json(no_id.trim());
    assert_eq!(login(&out[0]).event_id.as_deref(), Some("2ec0e371-1395-457f-9275-be1b527a72f7"));
}

#[test]
fn cometd_samples_from_the_docs_and_elastic() {
    let out = json(&fixture("cometd_documented.json"));
    assert!(
        matches!(&out[0], Decoded::Rejected(r) if r.reason == RejectReason::UnsupportedType && r.detail.contains("Low_Ink__e"))
    );
    let out = json(&fixture("cometd_elastic_batch.json"));
    assert!(
        matches!(&out[0], Decoded::Rejected(r) if r.reason == RejectReason::MissingField && r.detail.contains("EventDate"))
    );
}

#[test]
fn s4_elf_csv_2023_header() {
    let text = fixture("s4_elf_login_2023.csv");
    // Real row: LOGIN_TYPE i, blank LOGIN_SUB_TYPE → unclassified, not "not client credentials".
    assert!(matches!(
        csv(&text)[..],
        [Decoded::Counted { kind: RecordKind::ElfLogin, grant: GrantClass::Unclassified, success: true, .. }]
    ));
    let cc = text.replace(
        r#""ECDHE-RSA-AES256-GCM-SHA384","","","#,
        r#""ECDHE-RSA-AES256-GCM-SHA384","","oauthclientcredential","#,
    );
    let out = csv(&cc);
    let l = login(&out[0]);
    assert_eq!(l.time.to_string(), "2023-12-18T05:48:31.655Z");
    assert_eq!(l.user_id, id("0055j00000AT6I1"));
    assert_eq!(l.org_id, id("00D5j00000DgAYG"));
    assert_eq!(l.source_ip.as_deref(), Some("103.108.207.58"), "SOURCE_IP, not CLIENT_IP 'Salesforce.com IP'");
    assert_eq!(l.event_id.as_deref(), Some("4u6LyuMrDvb_G-l1cJIQk-"));
    assert!(l.success);
    assert_eq!(l.app, None, "ELF Login has no application column");
}

#[test]
fn elf_csv_columns_by_name_any_order_optional_missing() {
    let text = fixture("s4_elf_login_2023.csv").replace(
        r#""ECDHE-RSA-AES256-GCM-SHA384","","","#,
        r#""ECDHE-RSA-AES256-GCM-SHA384","","oauthclientcredentials","#,
    );
    let mut rows: Vec<Vec<String>> = text
        .lines()
        .map(|l| {
            let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(l.as_bytes());
            r.records().next().unwrap().unwrap().iter().map(String::from).collect()
        })
        .collect();
    // Reverse the column order and drop the derived columns: TIMESTAMP and the
    // 15-character USER_ID must do.
    let keep: Vec<usize> = (0..rows[0].len())
        .rev()
        .filter(|&i| !["TIMESTAMP_DERIVED", "USER_ID_DERIVED", "BROWSER_TYPE"].contains(&rows[0][i].as_str()))
        .collect();
    for r in &mut rows {
        *r = keep.iter().map(|&i| r[i].clone()).collect();
    }
    let rebuilt: String =
        rows.iter().map(|r| r.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(",") + "\n").collect();
    let out = csv(&rebuilt);
    let l = login(&out[0]);
    assert_eq!(l.time.to_string(), "2023-12-18T05:48:31.655Z");
    assert_eq!(l.user_id, id("0055j00000AT6I1AAL"), "15- and 18-character ids compare equal");
}

#[test]
fn s5_elf_csv_2021_header_without_login_type() {
    // Pre-2023 files have no LOGIN_TYPE column; the token endpoint URI marks an
    // OAuth grant of unknown flow.
    let out = csv(&fixture("s5_elf_login_2021.csv"));
    assert!(matches!(
        out[..],
        [Decoded::Counted { kind: RecordKind::ElfLogin, grant: GrantClass::Unclassified, success: true, .. }]
    ));
}

#[test]
fn elf_rows_as_json_objects() {
    let text = fixture("s4_elf_login_as_json.jsonl");
    assert!(matches!(
        json(text.trim())[0],
        Decoded::Counted { kind: RecordKind::ElfLogin, grant: GrantClass::Unclassified, .. }
    ));
    let cc = text.replace(r#""LOGIN_SUB_TYPE": """#, r#""LOGIN_SUB_TYPE": "oauthclientcredential""#);
    let out = json(cc.trim());
    let l = login(&out[0]);
    assert_eq!(l.kind, RecordKind::ElfLogin);
    assert_eq!(l.source_ip.as_deref(), Some("103.108.207.58"));
    // ELF codes are case-sensitive: "I" is Other Apex API.
    let other = cc.replace(r#""LOGIN_TYPE": "i""#, r#""LOGIN_TYPE": "I""#);
    assert!(matches!(json(other.trim())[0], Decoded::Counted { grant: GrantClass::Other, .. }));
}

#[test]
fn setup_audit_trail_rest_and_jsonl() {
    for out in [json(&fixture("setup_audit_trail_rest.json")), {
        let mut all = Vec::new();
        for line in fixture("setup_audit_trail.jsonl").lines() {
            all.extend(json(line));
        }
        all
    }] {
        assert_eq!(out.len(), 3);
        let audits: Vec<_> = out
            .iter()
            .map(|d| match d {
                Decoded::Event(NormalizedEvent::Audit(a)) => a,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(audits[0].time.to_string(), "2024-07-09T13:07:02.000Z");
        assert_eq!(audits[0].actor.as_deref(), Some("uat@pablogonzalez.io"));
        assert_eq!(audits[0].section.as_deref(), Some("Manage Users"));
        assert!(
            matches!(&audits[0].change, AuditChange::LoginIpRange { profile, added: true, .. } if &**profile == "Custom: Support Profile")
        );
        assert!(matches!(&audits[1].change, AuditChange::LoginIpRange { added: false, .. }));
        assert_eq!(audits[1].section, None, "Section null");
        assert!(
            matches!(&audits[2].change, AuditChange::ProfilePermission { enabled: true, perm, .. } if perm.is_empty())
        );
    }
}

#[test]
fn inventory_exports_rest_and_sf_cli() {
    let dir = format!("{}/samples/inventory", env!("CARGO_MANIFEST_DIR"));
    let users = json(&std::fs::read_to_string(format!("{dir}/users.json")).unwrap());
    assert_eq!(users.len(), 10);
    assert!(users
        .iter()
        .all(|d| matches!(d, Decoded::Event(NormalizedEvent::Inventory(Inventory::User { profile: Some(_), .. })))));
    let psa = json(&std::fs::read_to_string(format!("{dir}/permission-set-assignments.json")).unwrap());
    assert_eq!(psa.len(), 8);
    let steward = psa
        .iter()
        .find_map(|d| match d {
            Decoded::Event(NormalizedEvent::Inventory(Inventory::PermissionSetAssignment {
                perm_set,
                perms,
                known,
                ..
            })) if &**perm_set == "Data Steward" => Some((*perms, *known)),
            _ => None,
        })
        .unwrap();
    assert_eq!(steward.0.labels().collect::<Vec<_>>(), ["Modify All Data", "View All Data", "API Enabled"]);
    assert_eq!(steward.1.labels().count(), 6);
}

#[test]
fn timestamps_in_every_shape_decode() {
    for (shape, want) in [
        ("2024-07-08T07:26:18.239+0000", "2024-07-08T07:26:18.239Z"),
        ("2021-10-19T11:47:22Z", "2021-10-19T11:47:22.000Z"),
        ("2017-04-09T18:31:40.517Z", "2017-04-09T18:31:40.517Z"),
        ("1720423578239", "2024-07-08T07:26:18.239Z"),
    ] {
        let rec = format!(
            r#"{{"EventIdentifier":"e","EventDate":"{shape}","UserId":"0055j00000AT6I1","LoginType":"Remote Access 2.0","LoginSubType":"OAuth Client Credentials","Status":"Success"}}"#
        );
        assert_eq!(login(&json(&rec)[0]).time.to_string(), want, "{shape}");
    }
    // Pub/Sub epoch milliseconds as a JSON number.
    let rec = r#"{"EventIdentifier":"e","EventDate":1720423578239,"UserId":"0055j00000AT6I1","LoginType":"Remote Access 2.0","LoginSubType":"OAuth Client Credentials","Status":"Success"}"#;
    assert_eq!(login(&json(rec)[0]).time.to_string(), "2024-07-08T07:26:18.239Z");
}
