//! Post-grant API activity of every shape → `Activity`: Real-Time Event
//! Monitoring (`ApiEvent`/`ApiEventStream`, `BulkApiResultEvent`/`…Store`,
//! `ReportEvent`/`ReportEventStream`, `ApiAnomalyEventStore`) and the
//! EventLogFile types `API`, `RestApi`, `ApiTotalUsage`, `BulkApi2`,
//! `BulkApiRequest`, `ReportExport` and `UniqueQuery` (CSV columns by header
//! name, or the same rows as JSON objects).
//!
//! One table per family names where each field lives (`Schema`); one
//! function reads any shape through `Fields`, as `login` does. Required: an
//! event time and a user (id or name); a record missing one is rejected as
//! `missing_field`, an unparsable time as `bad_timestamp`, an unparsable
//! number is left out and the record kept (numbers are context, not keys).
//! ELF ids are 15 characters and RTEM ids 18; `SfId` accepts both.

use super::login::truncate;
use super::{first_text, Decoded, Fields, Reject, RejectReason};
use crate::event::time::parse_timestamp;
use crate::event::{Activity, NormalizedEvent, RecordKind, SfId};

/// Where each logical field lives in one family of shapes; first present name wins.
struct Schema {
    time: &'static [&'static str],
    id: &'static [&'static str],
    org: &'static [&'static str],
    user_id: &'static [&'static str],
    username: &'static [&'static str],
    ip: &'static [&'static str],
    user_agent: &'static [&'static str],
    client: &'static [&'static str],
    login_key: &'static [&'static str],
    session_key: &'static [&'static str],
    login_history_id: &'static [&'static str],
    request_id: &'static [&'static str],
    app_id: &'static [&'static str],
    app_name: &'static [&'static str],
    operation: &'static [&'static str],
    query: &'static [&'static str],
    entities: &'static [&'static str],
    rows_processed: &'static [&'static str],
    rows_returned: &'static [&'static str],
    resource: &'static [&'static str],
    http_method: &'static [&'static str],
    status_code: &'static [&'static str],
    job_id: &'static [&'static str],
    job_status: &'static [&'static str],
    execution_id: &'static [&'static str],
    report_id: &'static [&'static str],
    score: &'static [&'static str],
    summary: &'static [&'static str],
}

const NONE: &[&str] = &[];

/// Real-Time Event Monitoring objects and streams (CamelCase fields).
const RTEM: Schema = Schema {
    time: &["EventDate"],
    id: &["EventIdentifier", "EventUuid"],
    org: NONE,
    user_id: &["UserId"],
    username: &["Username"],
    ip: &["SourceIp"],
    user_agent: &["UserAgent"],
    client: &["Client"],
    login_key: &["LoginKey"],
    session_key: &["SessionKey"],
    login_history_id: &["LoginHistoryId"],
    request_id: &["RequestIdentifier"],
    app_id: &["ConnectedAppId"],
    app_name: NONE,
    operation: &["Operation"],
    query: &["Query"],
    entities: &["QueriedEntities"],
    rows_processed: &["RowsProcessed"],
    rows_returned: &["RowsReturned"],
    resource: &["Uri"],
    http_method: NONE,
    status_code: NONE,
    job_id: NONE,
    job_status: NONE,
    execution_id: &["ExecutionIdentifier"],
    report_id: &["ReportId"],
    score: &["Score"],
    summary: &["Summary"],
};

/// EventLogFile rows (UPPER_SNAKE columns).
const ELF: Schema = Schema {
    time: &["TIMESTAMP_DERIVED", "TIMESTAMP"],
    id: &["REQUEST_ID"],
    org: &["ORGANIZATION_ID"],
    user_id: &["USER_ID_DERIVED", "USER_ID"],
    username: &["USER_NAME"],
    ip: &["CLIENT_IP"],
    user_agent: NONE,
    client: &["CLIENT_NAME", "USER_AGENT", "CLIENT_INFO"],
    login_key: &["LOGIN_KEY"],
    session_key: &["SESSION_KEY"],
    login_history_id: NONE,
    request_id: &["REQUEST_ID"],
    app_id: &["CONNECTED_APP_ID"],
    app_name: &["CONNECTED_APP_NAME"],
    operation: &["METHOD_NAME", "OPERATION_TYPE", "QUERY_TYPE"],
    query: &["QUERY", "QUERY_IDENTIFIER"],
    entities: &["ENTITY_NAME", "ENTITY_TYPE"],
    rows_processed: &["ROWS_PROCESSED", "RECORDS_PROCESSED", "NUMBER_RECORDS_PROCESSED"],
    rows_returned: NONE,
    resource: &["API_RESOURCE", "URI", "REQUEST_PATH"],
    http_method: &["HTTP_METHOD", "METHOD"],
    status_code: &["STATUS_CODE"],
    job_id: &["JOB_ID"],
    job_status: &["JOB_STATUS"],
    execution_id: NONE,
    report_id: &["REPORT_ID_DERIVED", "REPORT_ID"],
    score: NONE,
    summary: NONE,
};

/// The `attributes.type` names (stored objects and streams) of activity.
pub fn kind_of_type(t: &str) -> Option<RecordKind> {
    Some(match t {
        "ApiEvent" => RecordKind::ApiEvent,
        "ApiEventStream" => RecordKind::ApiEventStream,
        "BulkApiResultEvent" | "BulkApiResultEventStore" => RecordKind::BulkApiResultEvent,
        "ReportEvent" | "ReportEventStream" => RecordKind::ReportEvent,
        "ApiAnomalyEvent" | "ApiAnomalyEventStore" => RecordKind::ApiAnomalyEvent,
        _ => return None,
    })
}

/// The EventLogFile `EVENT_TYPE` values of activity.
pub fn kind_of_elf(t: &str) -> Option<RecordKind> {
    Some(match t {
        "API" => RecordKind::ElfApi,
        "RestApi" => RecordKind::ElfRestApi,
        "ApiTotalUsage" => RecordKind::ElfApiTotalUsage,
        "BulkApi2" => RecordKind::ElfBulkApi2,
        "BulkApiRequest" => RecordKind::ElfBulkApiRequest,
        "ReportExport" => RecordKind::ElfReportExport,
        "UniqueQuery" => RecordKind::ElfUniqueQuery,
        _ => return None,
    })
}

/// Recognises an RTEM activity record without `attributes.type` by the
/// fields only its type carries; `None` when it is not activity.
pub fn detect<'a, F: Fields<'a>>(f: &F) -> Option<RecordKind> {
    if f.has("LoginType") || !f.has("EventDate") {
        return None;
    }
    let stream = f.has("ReplayId") || f.has("EventUuid");
    if f.has("Score") && (f.has("SecurityEventData") || f.has("Summary")) {
        return Some(RecordKind::ApiAnomalyEvent);
    }
    if f.has("ExecutionIdentifier") || f.has("ReportId") {
        return Some(RecordKind::ReportEvent);
    }
    if f.has("ApiType") || f.has("QueriedEntities") || f.has("RowsProcessed") || f.has("RowsReturned") {
        return Some(if stream { RecordKind::ApiEventStream } else { RecordKind::ApiEvent });
    }
    if f.has("Query") && f.has("EventIdentifier") {
        return Some(RecordKind::BulkApiResultEvent);
    }
    None
}

/// The CometD channel names of activity streams.
pub fn kind_of_channel(name: &str) -> Option<RecordKind> {
    Some(match name {
        "ApiEventStream" => RecordKind::ApiEventStream,
        "BulkApiResultEvent" => RecordKind::BulkApiResultEvent,
        "ReportEventStream" => RecordKind::ReportEvent,
        "ApiAnomalyEvent" => RecordKind::ApiAnomalyEvent,
        _ => return None,
    })
}

fn text<'a, F: Fields<'a>>(f: &F, keys: &[&str]) -> Option<Box<str>> {
    first_text(f, keys).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).map(String::into_boxed_str)
}

fn number<'a, F: Fields<'a>>(f: &F, keys: &[&str]) -> Option<f64> {
    first_text(f, keys).and_then(|s| s.trim().parse::<f64>().ok()).filter(|n| n.is_finite())
}

fn id<'a, F: Fields<'a>>(f: &F, keys: &[&str]) -> Option<SfId> {
    first_text(f, keys).and_then(|s| SfId::parse(s.trim()))
}

/// Decodes one activity record of `kind`. `fallback_id` is used when the
/// record has no id of its own (a CometD envelope's `EventUuid`/`replayId`).
pub fn decode<'a, F: Fields<'a>>(f: &F, kind: RecordKind, fallback_id: Option<&str>, index: Option<u32>) -> Decoded {
    let s = match kind {
        RecordKind::ApiEvent
        | RecordKind::ApiEventStream
        | RecordKind::BulkApiResultEvent
        | RecordKind::ReportEvent
        | RecordKind::ApiAnomalyEvent => &RTEM,
        _ => &ELF,
    };
    let reject = |reason, detail: String| Decoded::Rejected(Reject { reason, detail, index });
    let Some(time_text) = first_text(f, s.time) else {
        return reject(RejectReason::MissingField, format!("{} has no {}", kind.label(), s.time[0]));
    };
    let Some(time) = parse_timestamp(&time_text) else {
        return reject(
            RejectReason::BadTimestamp,
            format!("{} {:?} is not a timestamp", s.time[0], truncate(&time_text)),
        );
    };
    let user_id = id(f, s.user_id);
    let username = text(f, s.username);
    if user_id.is_none() && username.is_none() {
        let names = [s.user_id.first(), s.username.first()].into_iter().flatten().copied().collect::<Vec<_>>();
        return reject(RejectReason::MissingField, format!("{} has no {}", kind.label(), names.join(" or ")));
    }
    let entities = first_text(f, s.entities)
        .map(|e| e.split(',').map(str::trim).filter(|x| !x.is_empty()).map(Into::into).collect())
        .unwrap_or_default();
    // RestApi's USER_AGENT is a numeric client code, not a user agent.
    let client = text(f, s.client);
    let event_id = text(f, s.id).or_else(|| fallback_id.map(Into::into));
    Decoded::Event(NormalizedEvent::Activity(Box::new(Activity {
        time,
        kind: Some(kind),
        event_id,
        org_id: id(f, s.org),
        user_id,
        username,
        source_ip: text(f, s.ip),
        user_agent: text(f, s.user_agent),
        client,
        login_key: text(f, s.login_key),
        session_key: text(f, s.session_key),
        login_history_id: id(f, s.login_history_id),
        request_id: text(f, s.request_id),
        app_id: id(f, s.app_id),
        app_name: text(f, s.app_name),
        operation: text(f, s.operation),
        query: text(f, s.query),
        entities,
        rows_processed: number(f, s.rows_processed),
        rows_returned: number(f, s.rows_returned),
        resource: text(f, s.resource),
        http_method: text(f, s.http_method),
        status_code: text(f, s.status_code),
        job_id: text(f, s.job_id),
        job_status: text(f, s.job_status),
        execution_id: text(f, s.execution_id),
        report_id: text(f, s.report_id),
        score: number(f, s.score),
        summary: text(f, s.summary),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_json_unit;

    fn one(json: &str) -> Decoded {
        let mut out = Vec::new();
        decode_json_unit(json.as_bytes(), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        out.pop().unwrap()
    }

    fn activity(json: &str) -> Activity {
        match one(json) {
            Decoded::Event(NormalizedEvent::Activity(a)) => *a,
            other => panic!("expected activity, got {other:?}"),
        }
    }

    fn rejected(json: &str) -> Reject {
        match one(json) {
            Decoded::Rejected(r) => r,
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    /// The reference's ApiEventStream sample (AppOmni, abridged): a SOQL row
    /// inside a CometD envelope.
    #[test]
    fn api_event_stream_in_a_cometd_envelope() {
        let a = activity(
            r#"{"channel":"/event/ApiEventStream","data":{"event":{"replayId":""},"schema":"AppOmni","payload":{
 "ApiType":"REST","ApiVersion":50.0,"Application":"N/A","ConnectedAppId":null,"ElapsedTime":430,
 "EventDate":"2023-03-21T10:04:39.747+0000","LoginHistoryId":"000123000abc0004","LoginKey":"9870000000012300",
 "Operation":"QueryMore","QueriedEntities":"Customer_Account__c","Query":"Select name, … from Account where …",
 "RowsProcessed":1000364.0,"SessionKey":"9870000000012300","SourceIp":"198.51.100.1",
 "UserAgent":"python-requests/2.28.2","UserId":"000000000000123AbC","Username":"john@example.com",
 "attributes":{"type":"ApiEvent","url":"/services/data/v55.0/sobjects/ApiEvent/000000000000000AAA"}}}}"#,
        );
        assert_eq!(a.kind, Some(RecordKind::ApiEventStream));
        assert_eq!(a.time.to_string(), "2023-03-21T10:04:39.747Z");
        assert_eq!(a.operation.as_deref(), Some("QueryMore"));
        assert_eq!(a.entities, vec![Box::from("Customer_Account__c")]);
        assert_eq!(a.rows_processed, Some(1_000_364.0));
        assert_eq!(
            (a.login_key.as_deref(), a.session_key.as_deref()),
            (Some("9870000000012300"), Some("9870000000012300"))
        );
        assert_eq!(a.user_agent.as_deref(), Some("python-requests/2.28.2"));
        assert_eq!(a.app_id, None, "ConnectedAppId is null once a token is held");
        assert_eq!(a.username.as_deref(), Some("john@example.com"));
        assert_eq!(a.source_ip.as_deref(), Some("198.51.100.1"));
    }

    /// The reference's illustrative COUNT() reconnaissance, a flat record
    /// without `attributes`: told from a LoginEvent by its fields.
    #[test]
    fn count_recon_without_attributes_is_an_api_event() {
        let a = activity(
            r#"{"EventDate":"2025-08-14T00:17:47.120+0000","ApiType":"REST","Operation":"Query","Query":"SELECT COUNT() FROM Account",
"QueriedEntities":"Account","ConnectedAppId":null,"LoginKey":"Qv1P3iAGDrGQxSmN","SourceIp":"44.215.108.109",
"UserAgent":"Salesforce-Multi-Org-Fetcher/1.0","UserId":"005J4000001AbCdIAK"}"#,
        );
        assert_eq!(a.kind, Some(RecordKind::ApiEvent));
        assert_eq!(a.query.as_deref(), Some("SELECT COUNT() FROM Account"));
        assert_eq!(a.user_id.map(|u| u.to_string()).as_deref(), Some("005J4000001AbCdIAK"));
        assert_eq!(a.user_agent.as_deref(), Some("Salesforce-Multi-Org-Fetcher/1.0"));
    }

    #[test]
    fn bulk_results_reports_and_anomalies_in_a_rest_result() {
        let mut out = Vec::new();
        decode_json_unit(
            br#"{"totalSize":3,"done":true,"records":[
 {"attributes":{"type":"BulkApiResultEventStore"},"EventDate":"2025-08-17T11:15:20.000+0000","EventIdentifier":"b1",
  "LoginKey":"Qv1P3iAGDrGQxSmN","Query":"SELECT Id FROM Case","SourceIp":"208.68.36.90","UserId":"005J4000001AbCdIAK"},
 {"attributes":{"type":"ReportEvent"},"EventDate":"2025-08-17T12:00:00.000+0000","EventIdentifier":"r1",
  "Operation":"ReportExported","RowsProcessed":20680.0,"Sequence":51,"ExecutionIdentifier":"x-1","ReportId":"00O5j000000AbCd",
  "QueriedEntities":"Account, Contact","UserId":"005J4000001AbCdIAK"},
 {"attributes":{"type":"ApiAnomalyEventStore"},"EventDate":"2019-05-12T12:22:10.298+00:00","EventIdentifier":"n1",
  "Score":0.95851,"Summary":"Report was generated with an unusually high number of rows (111141)",
  "RequestIdentifier":"TID:000000000000c00fff","UserId":"005J4000001AbCdIAK","Username":"etl@acme.example"}]}"#,
            &mut out,
        );
        let acts: Vec<Activity> = out
            .into_iter()
            .map(|d| match d {
                Decoded::Event(NormalizedEvent::Activity(a)) => *a,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(acts[0].kind, Some(RecordKind::BulkApiResultEvent));
        assert_eq!(acts[0].query.as_deref(), Some("SELECT Id FROM Case"));
        assert_eq!(acts[1].kind, Some(RecordKind::ReportEvent));
        assert_eq!((acts[1].rows_processed, acts[1].execution_id.as_deref()), (Some(20680.0), Some("x-1")));
        assert_eq!(acts[1].entities, vec![Box::from("Account"), Box::from("Contact")]);
        assert_eq!(acts[2].kind, Some(RecordKind::ApiAnomalyEvent));
        assert_eq!(acts[2].score, Some(0.95851));
        assert_eq!(acts[2].request_id.as_deref(), Some("TID:000000000000c00fff"));
    }

    /// EventLogFile rows forwarded as JSON objects (values are strings, ids 15
    /// characters), one per activity type.
    #[test]
    fn elf_activity_rows_as_json() {
        let api = activity(
            r#"{"EVENT_TYPE":"API","API_TYPE":"P","CLIENT_NAME":"vendor/integration_app","METHOD_NAME":"query",
"ROWS_PROCESSED":"27","URI":"Api","TIMESTAMP":"20230320145933.958","USER_ID":"005J4000001AbCd",
"REQUEST_ID":"3nWgxWbDKWWDIk0FKfF5DV","LOGIN_KEY":"bY5Wfv8t/Ith7WVE","ENTITY_NAME":"Account","QUERY":"SELECT Id FROM Account"}"#,
        );
        assert_eq!(api.kind, Some(RecordKind::ElfApi));
        assert_eq!(api.rows_processed, Some(27.0));
        assert_eq!(api.operation.as_deref(), Some("query"));
        assert_eq!(api.client.as_deref(), Some("vendor/integration_app"));
        assert_eq!(api.user_id.map(|u| u.to_string()).as_deref(), Some("005J4000001AbCdIAK"), "15 → 18 characters");
        assert_eq!(api.time.to_string(), "2023-03-20T14:59:33.958Z");

        let usage = activity(
            r#"{"EVENT_TYPE":"ApiTotalUsage","TIMESTAMP":"20250817111542.118","REQUEST_ID":"TID:0000000000a1b2c3d6",
"ORGANIZATION_ID":"00D5j00000DgAYG","USER_ID":"005J4000001AbCd","API_FAMILY":"REST","API_VERSION":"58.0",
"API_RESOURCE":"/v58.0/jobs/query/7505j00000AbCdE","CLIENT_NAME":"","HTTP_METHOD":"DELETE","CLIENT_IP":"208.68.36.90",
"CONNECTED_APP_ID":"0H45j000000AbCd","ENTITY_NAME":"","STATUS_CODE":"204","CONNECTED_APP_NAME":"Drift",
"USER_NAME":"drift-int@example.com","TIMESTAMP_DERIVED":"2025-08-17T11:15:42.118Z"}"#,
        );
        assert_eq!(usage.kind, Some(RecordKind::ElfApiTotalUsage));
        assert_eq!((usage.http_method.as_deref(), usage.status_code.as_deref()), (Some("DELETE"), Some("204")));
        assert_eq!(usage.resource.as_deref(), Some("/v58.0/jobs/query/7505j00000AbCdE"));
        assert_eq!(usage.app_name.as_deref(), Some("Drift"));
        assert!(usage.app_id.is_some() && usage.org_id.is_some());
        assert_eq!((usage.login_key, usage.client), (None, None), "no keys in ApiTotalUsage; blank is absent");

        let job = activity(
            r#"{"EVENT_TYPE":"BulkApi2","TIMESTAMP_DERIVED":"2025-08-17T11:15:18.400Z","USER_ID":"005J4000001AbCd",
"JOB_ID":"7505j00000AbCdE","JOB_STATUS":"JobComplete","OPERATION_TYPE":"query","ENTITY_TYPE":"Case",
"RECORDS_PROCESSED":"412977","LOGIN_KEY":"Qv1P3iAGDrGQxSmN","CLIENT_IP":"208.68.36.90"}"#,
        );
        assert_eq!(job.kind, Some(RecordKind::ElfBulkApi2));
        assert_eq!((job.job_status.as_deref(), job.rows_processed), (Some("JobComplete"), Some(412_977.0)));
        assert_eq!(job.entities, vec![Box::from("Case")]);

        let uq = activity(
            r#"{"EVENT_TYPE":"UniqueQuery","REQUEST_ID":"TID:987654300009a12345","TIMESTAMP":"20250902101001.350",
"USER_ID":"005J4000001AbCd","QUERY_IDENTIFIER":"SELECT COUNT() FROM Contact","QUERY_TYPE":"soql","LOGIN_KEY":"k"}"#,
        );
        assert_eq!(uq.kind, Some(RecordKind::ElfUniqueQuery));
        assert_eq!(uq.query.as_deref(), Some("SELECT COUNT() FROM Contact"));
        for (t, k) in [
            ("RestApi", RecordKind::ElfRestApi),
            ("BulkApiRequest", RecordKind::ElfBulkApiRequest),
            ("ReportExport", RecordKind::ElfReportExport),
        ] {
            let a = activity(&format!(
                r#"{{"EVENT_TYPE":"{t}","TIMESTAMP":"20250817111156.004","USER_ID":"005J4000001AbCd"}}"#
            ));
            assert_eq!(a.kind, Some(k));
        }
    }

    #[test]
    fn bad_activity_is_rejected_with_its_reason() {
        let r = rejected(
            r#"{"attributes":{"type":"ApiEvent"},"Query":"SELECT Id FROM Account","UserId":"005J4000001AbCdIAK"}"#,
        );
        assert_eq!(r.reason, RejectReason::MissingField);
        let r = rejected(r#"{"EVENT_TYPE":"BulkApi2","TIMESTAMP":"yesterday","USER_ID":"005J4000001AbCd"}"#);
        assert_eq!(r.reason, RejectReason::BadTimestamp);
        let r =
            rejected(r#"{"attributes":{"type":"ReportEvent"},"EventDate":"2025-08-17T12:00:00Z","ReportId":"00O"}"#);
        assert!(r.reason == RejectReason::MissingField && r.detail.contains("UserId"), "{r:?}");
        // A non-number row count is dropped, the record kept.
        let a = activity(
            r#"{"EVENT_TYPE":"RestApi","TIMESTAMP":"20250817111156.004","USER_ID":"005J4000001AbCd","ROWS_PROCESSED":"n/a"}"#,
        );
        assert_eq!(a.rows_processed, None);
        // Still unsupported: other channels and types.
        let r = rejected(r#"{"channel":"/event/LightningUriEventStream","data":{"payload":{}}}"#);
        assert_eq!(r.reason, RejectReason::UnsupportedType);
    }
}
