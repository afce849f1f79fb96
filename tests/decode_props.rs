//! Property tests: no input makes a decoder panic, and no record is lost
//! silently (every non-blank JSON unit yields at least one outcome).

use ccwatch::decode::csv::{decode_chunk, CsvHeader};
use ccwatch::decode::decode_json_unit;
use proptest::prelude::*;

fn samples() -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut lines = Vec::new();
    for f in [
        "samples/logins/login-events.jsonl",
        "samples/logins/login-event-stream.jsonl",
        "tests/fixtures/reference/s4_elf_login_as_json.jsonl",
        "tests/fixtures/reference/setup_audit_trail.jsonl",
    ] {
        let bytes = std::fs::read(format!("{root}/{f}")).unwrap();
        lines.extend(String::from_utf8_lossy(&bytes).lines().map(String::from));
    }
    for f in [
        "samples/logins/login-history.json",
        "samples/inventory/users.json",
        "tests/fixtures/reference/s1_login_event_rest.json",
    ] {
        lines.push(std::fs::read_to_string(format!("{root}/{f}")).unwrap());
    }
    lines
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut out = Vec::new();
        decode_json_unit(&bytes, &mut out);
        prop_assert!(!out.is_empty(), "every unit yields an event, a count or a reject");
    }

    #[test]
    fn mutated_real_records_never_panic(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(),
                                        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6)) {
        let all = samples();
        let mut bytes = all[pick.index(all.len())].clone().into_bytes();
        for (at, b) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(1));
        let mut out = Vec::new();
        decode_json_unit(&bytes, &mut out);
        prop_assert!(!out.is_empty());
    }

    #[test]
    fn field_values_of_any_type_never_panic(v in prop_oneof![
        Just("null".to_string()), Just("true".to_string()), Just("[1,{}]".to_string()), Just("{\"a\":1}".to_string()),
        "-?[0-9]{1,20}(\\.[0-9]{1,5})?".prop_map(|s| s), "\"\\PC{0,30}\"".prop_map(|s| s)],
        field in prop::sample::select(vec!["EventDate", "UserId", "LoginType", "LoginSubType", "Status", "SourceIp", "Application",
            "attributes", "records", "CreatedDate", "Action", "Display", "channel", "data", "message"])) {
        let base = r#"{"EventIdentifier":"e","EventDate":"2024-07-09T10:00:00Z","UserId":"0055j00000AT6I1","LoginType":"Remote Access 2.0","LoginSubType":"OAuth Client Credentials","Status":"Success","SourceIp":"1.2.3.4","Application":"A"}"#;
        let rec = base.replacen('{', &format!("{{\"{field}\":{v},"), 1);
        let mut out = Vec::new();
        decode_json_unit(rec.as_bytes(), &mut out);
        // An array under "records" may legitimately be empty.
        prop_assert!(!out.is_empty() || field == "records");
    }

    #[test]
    fn arbitrary_csv_never_panics(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let header = CsvHeader::parse(br#""EVENT_TYPE","TIMESTAMP","USER_ID","LOGIN_TYPE","LOGIN_SUB_TYPE","LOGIN_STATUS","SOURCE_IP""#).unwrap();
        let mut out = Vec::new();
        decode_chunk(&header, &body, 2, &mut out);
    }
}
