//! The domain contract between stages: what decode produces, what correlate
//! observes and hands to score, and the alert that sinks write.
//!
//! No stage imports another stage; they all import this module. Nothing here
//! does I/O. `NormalizedEvent` is the one event type every source produces,
//! whatever Salesforce shape it was decoded from.

pub mod ip;
pub mod keys;
pub mod sfid;
pub mod time;

use serde::Serialize;
use std::fmt;

pub use ip::IpRange;
pub use keys::{contains_ci, key, lowercase, profile_key, user_key};
pub use sfid::SfId;
pub use time::EventTime;

/// The Salesforce record shape a record was decoded from; the summary counts by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    LoginEvent,
    LoginEventStream,
    LoginHistory,
    /// EventLogFile `Login` rows, from CSV or forwarded as JSON objects.
    ElfLogin,
    /// The queryable `LoginEventLog` object (ELF columns in CamelCase).
    LoginEventLog,
    SetupAuditTrail,
    User,
    PermissionSetAssignment,
    /// Real-Time Event Monitoring: `ApiEvent` (stored) and `ApiEventStream`.
    ApiEvent,
    ApiEventStream,
    /// `BulkApiResultEvent` (stream) and `BulkApiResultEventStore`.
    BulkApiResultEvent,
    /// `ReportEvent` (stored) and `ReportEventStream`.
    ReportEvent,
    /// `ApiAnomalyEventStore` (and its `ApiAnomalyEvent` channel).
    ApiAnomalyEvent,
    /// EventLogFile activity types, from CSV or forwarded as JSON objects.
    ElfApi,
    ElfRestApi,
    ElfApiTotalUsage,
    ElfBulkApi2,
    ElfBulkApiRequest,
    ElfReportExport,
    ElfUniqueQuery,
}

impl RecordKind {
    pub fn label(self) -> &'static str {
        match self {
            RecordKind::LoginEvent => "login_event",
            RecordKind::LoginEventStream => "login_event_stream",
            RecordKind::LoginHistory => "login_history",
            RecordKind::ElfLogin => "elf_login",
            RecordKind::LoginEventLog => "login_event_log",
            RecordKind::SetupAuditTrail => "setup_audit_trail",
            RecordKind::User => "user",
            RecordKind::PermissionSetAssignment => "permission_set_assignment",
            RecordKind::ApiEvent => "api_event",
            RecordKind::ApiEventStream => "api_event_stream",
            RecordKind::BulkApiResultEvent => "bulk_api_result_event",
            RecordKind::ReportEvent => "report_event",
            RecordKind::ApiAnomalyEvent => "api_anomaly_event",
            RecordKind::ElfApi => "elf_api",
            RecordKind::ElfRestApi => "elf_rest_api",
            RecordKind::ElfApiTotalUsage => "elf_api_total_usage",
            RecordKind::ElfBulkApi2 => "elf_bulk_api2",
            RecordKind::ElfBulkApiRequest => "elf_bulk_api_request",
            RecordKind::ElfReportExport => "elf_report_export",
            RecordKind::ElfUniqueQuery => "elf_unique_query",
        }
    }

    /// Whether records of this kind are post-grant API activity.
    pub fn is_activity(self) -> bool {
        matches!(
            self,
            RecordKind::ApiEvent
                | RecordKind::ApiEventStream
                | RecordKind::BulkApiResultEvent
                | RecordKind::ReportEvent
                | RecordKind::ApiAnomalyEvent
                | RecordKind::ElfApi
                | RecordKind::ElfRestApi
                | RecordKind::ElfApiTotalUsage
                | RecordKind::ElfBulkApi2
                | RecordKind::ElfBulkApiRequest
                | RecordKind::ElfReportExport
                | RecordKind::ElfUniqueQuery
        )
    }
}

/// How a login record classifies against the client-credentials rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantClass {
    /// `Remote Access 2.0` (ELF `i`) with sub-type `oauthclientcredential(s)`.
    ClientCredentials,
    /// `Remote Access 2.0` with a blank or missing sub-type: it may be a
    /// client-credentials grant, but the record cannot say.
    Unclassified,
    /// Any other login.
    Other,
}

impl GrantClass {
    pub const ALL: [GrantClass; 3] = [GrantClass::ClientCredentials, GrantClass::Unclassified, GrantClass::Other];

    pub fn label(self) -> &'static str {
        match self {
            GrantClass::ClientCredentials => "client_credentials",
            GrantClass::Unclassified => "unclassified",
            GrantClass::Other => "not_client_credentials",
        }
    }
}

/// A token grant (or any login that reaches the correlator).
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub time: EventTime,
    pub kind: RecordKind,
    /// `EventIdentifier`, `LoginHistory.Id` or ELF `REQUEST_ID`; used as evidence.
    pub event_id: Option<Box<str>>,
    /// ELF carries `ORGANIZATION_ID`; other shapes fall back to the configured org.
    pub org_id: Option<SfId>,
    pub user_id: Option<SfId>,
    pub username: Option<Box<str>>,
    /// The connected app / external client app *name* (`Application`); ELF Login
    /// rows have no app column.
    pub app: Option<Box<str>>,
    pub source_ip: Option<Box<str>>,
    pub success: bool,
    pub status: Box<str>,
    pub grant: GrantClass,
    /// What ties the token's later activity back to this grant.
    pub keys: GrantKeys,
}

/// A grant's session keys, as far as its record carries them: `LoginKey`,
/// `SessionKey` (often null), `LoginHistoryId` (`0Ya…`; LoginHistory's own
/// `Id`), and the ELF `REQUEST_ID` of the token request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrantKeys {
    pub login_key: Option<Box<str>>,
    pub session_key: Option<Box<str>>,
    pub login_history_id: Option<Box<str>>,
    pub request_id: Option<Box<str>>,
}

/// A user as a SetupAuditTrail `Display` names them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRef {
    pub id: Option<SfId>,
    /// Full name or username, as printed.
    pub name: Option<Box<str>>,
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, &self.id) {
            (Some(n), Some(id)) => write!(f, "{n} ({id})"),
            (Some(n), None) => f.write_str(n),
            (None, Some(id)) => write!(f, "{id}"),
            (None, None) => f.write_str("unknown user"),
        }
    }
}

/// The privileged permissions ccwatch tracks, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Perms(pub u8);

impl Perms {
    pub const MODIFY_ALL_DATA: Perms = Perms(1);
    pub const VIEW_ALL_DATA: Perms = Perms(2);
    pub const MANAGE_USERS: Perms = Perms(4);
    pub const CUSTOMIZE_APPLICATION: Perms = Perms(8);
    pub const AUTHOR_APEX: Perms = Perms(16);
    pub const API_ENABLED: Perms = Perms(32);
    /// The permissions that make a user "privileged".
    pub const PRIVILEGED: Perms = Perms(1 | 2 | 4 | 8 | 16);

    /// Label as Salesforce prints it, and the inventory field name.
    pub const ALL: [(Perms, &'static str, &'static str); 6] = [
        (Perms::MODIFY_ALL_DATA, "Modify All Data", "PermissionsModifyAllData"),
        (Perms::VIEW_ALL_DATA, "View All Data", "PermissionsViewAllData"),
        (Perms::MANAGE_USERS, "Manage Users", "PermissionsManageUsers"),
        (Perms::CUSTOMIZE_APPLICATION, "Customize Application", "PermissionsCustomizeApplication"),
        (Perms::AUTHOR_APEX, "Author Apex", "PermissionsAuthorApex"),
        (Perms::API_ENABLED, "API Enabled", "PermissionsApiEnabled"),
    ];

    pub fn empty() -> Perms {
        Perms(0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }

    pub fn minus(self, other: Perms) -> Perms {
        Perms(self.0 & !other.0)
    }

    /// The permission a label names (case-insensitive), if it is one ccwatch tracks.
    pub fn from_label(label: &str) -> Perms {
        let label = label.trim();
        Perms::ALL.iter().find(|(_, l, _)| l.eq_ignore_ascii_case(label)).map(|(p, _, _)| *p).unwrap_or_default()
    }

    pub fn labels(self) -> impl Iterator<Item = &'static str> {
        Perms::ALL.into_iter().filter(move |(p, _, _)| self.contains(*p)).map(|(_, l, _)| l)
    }
}

/// What one SetupAuditTrail record changes, parsed from its `Action` and `Display`.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditChange {
    /// `PermSetAssign` / `PermSetUnassign` and the group and expiring variants.
    PermSetAssignment { perm_set: Box<str>, user: UserRef, assigned: bool, group: bool },
    /// `PermSetEnableUserPerm` / `PermSetDisableUserPerm`.
    PermSetPermission { perm_set: Box<str>, perm: Perms, label: Box<str>, enabled: bool },
    /// `profilePermChangedCustom` / `profilePermChangedStandard`.
    ProfilePermission { profile: Box<str>, perm: Perms, label: Box<str>, enabled: bool },
    /// `PermissionSetGroupComponentAdd` / `…Remove`.
    GroupComponent { group: Box<str>, perm_set: Box<str>, added: bool },
    /// `changedprofileforuser` and its `custtostd` / `stdtocust` / `stdtostd` variants.
    UserProfile { user: UserRef, from: Box<str>, to: Box<str> },
    /// `loginIpRange` / `deletedLoginIpRange_withProfile`.
    LoginIpRange { profile: Box<str>, range: IpRange, added: bool },
    /// `changeApplicationClientCredentialEnabled`; the app is rarely named.
    ClientCredentialsEnabled { app: Option<Box<str>>, enabled: bool },
    /// `addOauthClientCredentialUser`: a run-as user assigned to an app.
    ClientCredentialsUser { user: UserRef, app: Box<str>, app_id: Option<SfId> },
    /// `changeIpRelaxationPolicy`.
    IpRelaxation { app: Box<str>, relaxed: bool, setting: Box<str> },
    /// An action ccwatch does not use; counted, not applied.
    Ignored,
    /// An action ccwatch uses whose `Display` did not match any known pattern.
    Unparsed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    pub time: EventTime,
    pub id: Option<Box<str>>,
    pub action: Box<str>,
    pub section: Option<Box<str>>,
    pub display: Box<str>,
    pub actor_id: Option<SfId>,
    pub actor: Option<Box<str>>,
    pub delegate: Option<Box<str>>,
    pub change: AuditChange,
}

impl Audit {
    /// Who made the change, for explanations.
    pub fn actor_label(&self) -> String {
        match (&self.actor, &self.actor_id) {
            (Some(a), _) => a.to_string(),
            (None, Some(id)) => id.to_string(),
            _ => "unknown admin".into(),
        }
    }
}

/// Baseline facts from `--inventory` exports; they carry no event time.
#[derive(Debug, Clone, PartialEq)]
pub enum Inventory {
    User {
        id: SfId,
        username: Option<Box<str>>,
        name: Option<Box<str>>,
        active: Option<bool>,
        profile: Option<Box<str>>,
    },
    PermissionSetAssignment {
        user_id: SfId,
        username: Option<Box<str>>,
        perm_set: Box<str>,
        /// True for the permission set that stands for the user's profile.
        owned_by_profile: bool,
        profile: Option<Box<str>>,
        perms: Perms,
        /// Which of `Perms::ALL` the row actually carried (absent columns are unknown).
        known: Perms,
    },
}

/// One record of what a token did after its grant: an API query, a Bulk API
/// job step or result download, a report run or export, an anomaly score.
/// Every source shape is read into these fields; what a shape lacks is `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Activity {
    pub time: EventTime,
    pub kind: Option<RecordKind>,
    /// `EventIdentifier`, else ELF `REQUEST_ID`; used as evidence.
    pub event_id: Option<Box<str>>,
    pub org_id: Option<SfId>,
    pub user_id: Option<SfId>,
    pub username: Option<Box<str>>,
    /// `SourceIp` / `CLIENT_IP`, as written (may be `Salesforce.com IP`).
    pub source_ip: Option<Box<str>>,
    /// A raw user agent (RTEM `UserAgent`); ELF `RestApi.USER_AGENT` is a
    /// numeric client code and is kept in `client` instead.
    pub user_agent: Option<Box<str>>,
    /// `Client`, `CLIENT_NAME` or RestApi's numeric `USER_AGENT`.
    pub client: Option<Box<str>>,
    // Join keys.
    pub login_key: Option<Box<str>>,
    pub session_key: Option<Box<str>>,
    pub login_history_id: Option<SfId>,
    /// `RequestIdentifier` / `REQUEST_ID`: rows of one call across ELF types.
    pub request_id: Option<Box<str>>,
    pub app_id: Option<SfId>,
    pub app_name: Option<Box<str>>,
    // What was done.
    /// `Operation`, `METHOD_NAME`, `OPERATION_TYPE` or `QUERY_TYPE`.
    pub operation: Option<Box<str>>,
    /// SOQL text (`Query`, ELF `QUERY`, UniqueQuery `QUERY_IDENTIFIER`).
    pub query: Option<Box<str>>,
    /// `QueriedEntities` / `ENTITY_NAME` / `ENTITY_TYPE`, split on commas.
    pub entities: Vec<Box<str>>,
    /// `RowsProcessed` / `ROWS_PROCESSED` / `RECORDS_PROCESSED`.
    pub rows_processed: Option<f64>,
    /// ApiEvent `RowsReturned` (rows in this batch).
    pub rows_returned: Option<f64>,
    /// REST path or resource: `URI`, `API_RESOURCE`, `Uri`.
    pub resource: Option<Box<str>>,
    pub http_method: Option<Box<str>>,
    pub status_code: Option<Box<str>>,
    /// Bulk job id (ELF, 15 characters) and its status string.
    pub job_id: Option<Box<str>>,
    pub job_status: Option<Box<str>>,
    /// ReportEvent `ExecutionIdentifier` (chunks of one run share it) and `ReportId`.
    pub execution_id: Option<Box<str>>,
    pub report_id: Option<Box<str>>,
    /// ApiAnomalyEventStore `Score`, 0–1.
    pub score: Option<f64>,
    pub summary: Option<Box<str>>,
}

/// The one event type every source produces.
#[derive(Debug, Clone, PartialEq)]
pub enum NormalizedEvent {
    Login(Login),
    Audit(Audit),
    Inventory(Inventory),
    Activity(Box<Activity>),
}

impl NormalizedEvent {
    pub fn time(&self) -> EventTime {
        match self {
            NormalizedEvent::Login(l) => l.time,
            NormalizedEvent::Audit(a) => a.time,
            NormalizedEvent::Inventory(_) => EventTime::BEGINNING,
            NormalizedEvent::Activity(a) => a.time,
        }
    }

    /// The record shape it was decoded from.
    pub fn kind(&self) -> RecordKind {
        match self {
            NormalizedEvent::Login(l) => l.kind,
            NormalizedEvent::Audit(_) => RecordKind::SetupAuditTrail,
            NormalizedEvent::Inventory(Inventory::User { .. }) => RecordKind::User,
            NormalizedEvent::Inventory(Inventory::PermissionSetAssignment { .. }) => {
                RecordKind::PermissionSetAssignment
            }
            NormalizedEvent::Activity(a) => a.kind.unwrap_or(RecordKind::ApiEvent),
        }
    }

    /// Order at equal times: inventory, then audit, then logins, then
    /// activity, so a change made in the same millisecond as a grant is
    /// already in effect and a grant precedes what its token did.
    pub fn rank(&self) -> u8 {
        match self {
            NormalizedEvent::Inventory(_) => 0,
            NormalizedEvent::Audit(_) => 1,
            NormalizedEvent::Login(_) => 2,
            NormalizedEvent::Activity(_) => 3,
        }
    }
}

/// One privileged permission a user holds, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermGrant {
    pub label: &'static str,
    /// e.g. `profile 'System Administrator'` or `permission set 'Data Admin'`.
    pub via: String,
}

/// When and how a user last became privileged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub at: EventTime,
    pub via: String,
}

/// The source IP checked against every allowed range ccwatch knows for the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpVerdict {
    /// The record carried no parseable IP.
    NoIp,
    /// No range is known for the user's profile, the app or the user.
    NoRestriction {
        scope: String,
    },
    Inside {
        range: String,
    },
    Outside {
        ranges: String,
    },
}

/// The enablement or run-as assignment that most recently preceded a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowChange {
    pub at: EventTime,
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBurst {
    pub count: usize,
    pub first: EventTime,
    pub last: EventTime,
}

/// A client-credentials grant with everything correlation knew at its event time.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantObservation {
    pub login: Login,
    /// Username when known (from the record or the inventory).
    pub username: Option<String>,
    pub user_id: Option<SfId>,
    /// Privileged permissions held at grant time; empty when none or unknown.
    pub privileges: Vec<PermGrant>,
    /// Whether the user's privileges are known at all (inventory or audit).
    pub privileges_known: bool,
    /// Set when the user became privileged within the escalation window.
    pub escalation: Option<Escalation>,
    pub ip: IpVerdict,
    /// `Some(known)` when the IP is new for a (user, app) pair that has history.
    pub new_ip: Option<usize>,
    pub flow_change: Option<FlowChange>,
    pub failed_burst: Option<FailedBurst>,
    /// The grant session it opened (`correlate::sessions`).
    pub session: Option<u64>,
    /// Why the source IP is anonymizing or a known IOC (`enrich`).
    pub anonymizing: Option<String>,
    /// The source IP's ASN, when it is new for a (user, app) pair that has
    /// ASN history: the detail.
    pub new_asn: Option<String>,
}

/// A setup change that turns the flow on or assigns a run-as user.
#[derive(Debug, Clone, PartialEq)]
pub struct EnablementObservation {
    pub audit: Audit,
    pub app: Option<String>,
    pub run_as: Option<UserRef>,
    pub run_as_username: Option<String>,
    pub privileges: Vec<PermGrant>,
    pub escalation: Option<Escalation>,
}

/// What correlate hands to score.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Grant(Box<GrantObservation>),
    Enablement(Box<EnablementObservation>),
    Access(Box<AccessObservation>),
}

/// Records attributed to a grant, by how (`correlate::sessions`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AttributionCounts {
    pub key: u64,
    pub request: u64,
    pub tuple: u64,
}

/// Items kept per list of an `ActivitySummary`.
pub const SUMMARY_ITEMS: usize = 16;

/// What a client-credentials token did in one UTC day: the data-access
/// alert's `activity` object. Additive: two summaries of disjoint records
/// `absorb` into the summary of both (lists are sorted sets of at most
/// `SUMMARY_ITEMS`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActivitySummary {
    pub queries: u64,
    pub rows: u64,
    pub entities: Vec<String>,
    pub sensitive_entities: Vec<String>,
    pub bulk_jobs_completed: u64,
    pub bulk_results_downloaded: u64,
    pub bulk_jobs_deleted: u64,
    pub report_exports: u64,
    pub user_agents: Vec<String>,
    pub source_ips: Vec<String>,
    pub asns: Vec<String>,
    pub attribution: AttributionCounts,
    pub sources: Vec<String>,
}

/// Adds `item` to a sorted set of at most `SUMMARY_ITEMS`.
pub fn add_item(set: &mut Vec<String>, item: &str) {
    if let Err(at) = set.binary_search_by(|x| x.as_str().cmp(item)) {
        if set.len() < SUMMARY_ITEMS {
            set.insert(at, item.to_string());
        }
    }
}

impl ActivitySummary {
    pub fn absorb(&mut self, o: &ActivitySummary) {
        self.queries += o.queries;
        self.rows += o.rows;
        self.bulk_jobs_completed += o.bulk_jobs_completed;
        self.bulk_results_downloaded += o.bulk_results_downloaded;
        self.bulk_jobs_deleted += o.bulk_jobs_deleted;
        self.report_exports += o.report_exports;
        self.attribution.key += o.attribution.key;
        self.attribution.request += o.attribution.request;
        self.attribution.tuple += o.attribution.tuple;
        for (mine, theirs) in [
            (&mut self.entities, &o.entities),
            (&mut self.sensitive_entities, &o.sensitive_entities),
            (&mut self.user_agents, &o.user_agents),
            (&mut self.source_ips, &o.source_ips),
            (&mut self.asns, &o.asns),
            (&mut self.sources, &o.sources),
        ] {
            for item in theirs {
                add_item(mine, item);
            }
        }
    }
}

/// An activity factor: what the token's activity showed (`correlate::access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActivityFactor {
    ReconQueryPattern,
    SensitiveObjects,
    BulkExport,
    BulkJobDeletedQuickly,
    HighRowVolume,
    IocUserAgent,
    AnonymizingSourceIp,
    NewAsn,
    ActivityIpDiffers,
    ShieldAnomaly,
}

impl ActivityFactor {
    pub const ALL: [ActivityFactor; 10] = [
        ActivityFactor::ReconQueryPattern,
        ActivityFactor::SensitiveObjects,
        ActivityFactor::BulkExport,
        ActivityFactor::BulkJobDeletedQuickly,
        ActivityFactor::HighRowVolume,
        ActivityFactor::IocUserAgent,
        ActivityFactor::AnonymizingSourceIp,
        ActivityFactor::NewAsn,
        ActivityFactor::ActivityIpDiffers,
        ActivityFactor::ShieldAnomaly,
    ];

    pub fn id(self) -> &'static str {
        match self {
            ActivityFactor::ReconQueryPattern => "recon_query_pattern",
            ActivityFactor::SensitiveObjects => "sensitive_objects",
            ActivityFactor::BulkExport => "bulk_export",
            ActivityFactor::BulkJobDeletedQuickly => "bulk_job_deleted_quickly",
            ActivityFactor::HighRowVolume => "high_row_volume",
            ActivityFactor::IocUserAgent => "ioc_user_agent",
            ActivityFactor::AnonymizingSourceIp => "anonymizing_source_ip",
            ActivityFactor::NewAsn => "new_asn",
            ActivityFactor::ActivityIpDiffers => "activity_ip_differs",
            ActivityFactor::ShieldAnomaly => "shield_anomaly",
        }
    }

    /// Whether it raises a data-access alert on its own.
    pub fn triggers(self) -> bool {
        !matches!(self, ActivityFactor::SensitiveObjects | ActivityFactor::ActivityIpDiffers)
    }
}

/// One attributed activity record, as the data-access rule sees it: the
/// day's facts so far for its (user, app), and what this record adds.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessObservation {
    pub time: EventTime,
    pub org_id: Option<SfId>,
    pub user_id: Option<SfId>,
    pub username: Option<String>,
    /// The grant's app and source IP.
    pub app: Option<String>,
    pub source_ip: Option<String>,
    /// The highest-scoring grant alert attributed this day: its id and score.
    pub grant: Option<(String, f64)>,
    /// Every activity factor of the day so far, each once, with its detail.
    pub factors: Vec<(ActivityFactor, String)>,
    /// This record's contribution; on the day's first alert, everything so far.
    pub summary: ActivitySummary,
    /// Records `summary` covers.
    pub count: u64,
    pub first_time: EventTime,
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub const ALL: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    ClientCredentialsGrant,
    ClientCredentialsEnabled,
    ClientCredentialsDataAccess,
}

impl Rule {
    pub const ALL: [Rule; 3] =
        [Rule::ClientCredentialsGrant, Rule::ClientCredentialsEnabled, Rule::ClientCredentialsDataAccess];

    pub fn id(self) -> &'static str {
        match self {
            Rule::ClientCredentialsGrant => "client_credentials_grant",
            Rule::ClientCredentialsEnabled => "client_credentials_enabled",
            Rule::ClientCredentialsDataAccess => "client_credentials_data_access",
        }
    }
}

/// One scoring factor that applied, with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Factor {
    pub id: &'static str,
    pub weight: f64,
    pub detail: String,
}

/// An alert as every sink receives it. Field order is the native output order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule: Rule,
    pub severity: Severity,
    pub score: f64,
    pub title: String,
    pub org_id: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub app: Option<String>,
    pub source_ip: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub count: u64,
    pub factors: Vec<Factor>,
    pub evidence: Vec<String>,
    /// What the token did (`client_credentials_data_access` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Box<ActivitySummary>>,
    pub mitre: Vec<&'static str>,
    pub remediation: &'static str,
    /// Event-time bounds kept for aggregation; not serialised.
    #[serde(skip)]
    pub first_time: EventTime,
    #[serde(skip)]
    pub last_time: EventTime,
}

/// Why an alert line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitKind {
    Raised,
    ScoreRose,
    Closed,
}

/// One alert line to write: the alert's state and why it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub kind: EmitKind,
    pub alert: Alert,
}

/// The encodings an alert line can be written in (`sink::encode` writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Native,
    Ocsf,
    Ecs,
}
