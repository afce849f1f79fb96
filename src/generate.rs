//! A deterministic synthetic archive for benchmarks: `LoginEvent` JSON lines
//! (~1 KB each, the field set of the reference's real samples), a
//! SetupAuditTrail JSON-lines file, and `User` / `PermissionSetAssignment`
//! inventory exports.
//!
//! The mix mirrors a real org: mostly human UI logins, some other OAuth flows
//! and blank sub-types, ~2% client-credentials grants from a few integration
//! apps (some failures, some from unusual IPs), and a trickle of audit changes
//! that enable flows, assign run-as users, grant Modify All Data and set IP
//! ranges. A seeded splitmix64 generator makes the archive reproducible.
//!
//! `generate_activity` writes the activity-heavy archive instead: many
//! integration users granting tokens all the time (about 40% of records,
//! each with its own `LoginKey`) and what those tokens did (60%): ApiEvent
//! queries carrying the grant's `LoginKey` (70%), ELF `RestApi` rows with no
//! session key from the grant's IP (tuple attribution, 20%), and rows from
//! elsewhere that match no grant (10%). Eight hours of it keep about 100,000
//! sessions open at once under the default two-hour token lifetime. Users
//! 0-49 read 100 times more rows than the rest (`high_row_volume`), so
//! data-access alerts are raised and updated.

use crate::event::time::MS_PER_DAY;
use crate::event::{EventTime, SfId};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

pub struct GenerateStats {
    pub logins: u64,
    pub grants: u64,
    pub audits: u64,
    pub bytes: u64,
}

impl fmt::Display for GenerateStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "generated {} login events ({} client-credentials grants), {} audit records, {} bytes of logins",
            self.logins, self.grants, self.audits, self.bytes
        )
    }
}

const HUMANS: u64 = 5_000;
const APPS: u64 = 20;
const START_MS: i64 = 1_719_792_000_000; // 2024-07-01T00:00:00Z

fn human_id(i: u64) -> String {
    SfId::parse(&format!("005Wy{i:010}")).map(|s| s.to_string()).unwrap_or_default()
}

fn integ_id(i: u64) -> String {
    SfId::parse(&format!("005Ix{i:010}")).map(|s| s.to_string()).unwrap_or_default()
}

fn sf_time(t: i64) -> String {
    EventTime(t).to_datetime().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

fn private_ip(r: &mut Rng) -> String {
    let v = r.next();
    format!("10.{}.{}.{}", v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff)
}

fn app_name(i: u64) -> String {
    format!("Integration App {i}")
}

fn app_ip(app: u64, k: u64) -> String {
    format!("198.51.{}.{}", 100 + app, 10 + k)
}

fn uuid(r: &mut Rng) -> String {
    let (a, b) = (r.next(), r.next());
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[allow(clippy::too_many_arguments)]
fn login_line(
    w: &mut impl Write,
    event_id: &str,
    t: i64,
    user_id: &str,
    username: &str,
    app: &str,
    login_type: &str,
    sub_type: Option<&str>,
    ip: &str,
    status: &str,
) -> std::io::Result<usize> {
    let sub = sub_type.map(|s| format!("\"LoginSubType\":\"{s}\",")).unwrap_or_default();
    let line = format!(
        concat!(
            "{{\"attributes\":{{\"type\":\"LoginEvent\",\"url\":\"/services/data/v58.0/sobjects/LoginEvent/000000000000000AAA\"}},",
            "\"AdditionalInfo\":\"{{}}\",\"ApiType\":\"N/A\",\"ApiVersion\":\"N/A\",\"Application\":\"{app}\",\"Browser\":\"Chrome 126\",",
            "\"CipherSuite\":\"ECDHE-RSA-AES256-GCM-SHA384\",\"City\":\"Mumbai\",\"ClientVersion\":\"N/A\",\"Country\":\"India\",",
            "\"CountryIso\":\"IN\",\"CreatedDate\":\"{created}\",\"EvaluationTime\":0,\"EventDate\":\"{date}\",",
            "\"EventIdentifier\":\"{uuid}\",\"HttpMethod\":\"POST\",\"Id\":\"000000000000000AAA\",\"LoginGeoId\":\"04F5j00003NvV1cEAF\",",
            "\"LoginHistoryId\":\"0Ya5j00003k2scQCAQ\",\"LoginKey\":\"pgOVoLbV96U9o08W\",\"LoginLatitude\":19.0748,",
            "\"LoginLongitude\":72.8856,\"LoginType\":\"{login_type}\",{sub}\"LoginUrl\":\"acme.my.salesforce.com\",\"Platform\":\"Mac OSX\",",
            "\"PostalCode\":\"400070\",\"SessionLevel\":\"STANDARD\",\"SourceIp\":\"{ip}\",\"Status\":\"{status}\",",
            "\"Subdivision\":\"Maharashtra\",\"TlsProtocol\":\"TLS 1.2\",\"UserId\":\"{user_id}\",\"UserType\":\"Standard\",",
            "\"Username\":\"{username}\"}}\n"
        ),
        app = app,
        created = sf_time(t + 3000),
        date = sf_time(t),
        uuid = event_id,
        login_type = login_type,
        sub = sub,
        ip = ip,
        status = status,
        user_id = user_id,
        username = username,
    );
    w.write_all(line.as_bytes())?;
    Ok(line.len())
}

fn audit_line(w: &mut impl Write, n: u64, t: i64, action: &str, section: &str, display: &str) -> std::io::Result<()> {
    let rec = serde_json::json!({
        "attributes": {"type": "SetupAuditTrail"},
        "Id": format!("0Ym{n:012}"),
        "CreatedDate": sf_time(t),
        "CreatedBy": {"Username": "admin@acme.example"},
        "CreatedById": "005Wy0000000001",
        "Action": action,
        "Section": section,
        "Display": display,
    });
    serde_json::to_writer(&mut *w, &rec)?;
    w.write_all(b"\n")
}

pub fn generate(dir: &Path, events: u64, seed: u64) -> anyhow::Result<GenerateStats> {
    std::fs::create_dir_all(dir)?;
    let mut r = Rng(seed);
    let days = 7i64;
    let span = days * MS_PER_DAY;

    // Inventory: humans, integration users, and who holds what.
    let mut users = Vec::new();
    for i in 0..HUMANS {
        let profile = if i < 10 { "System Administrator" } else { "Standard User" };
        users.push(serde_json::json!({"attributes": {"type": "User"}, "Id": human_id(i), "Username": format!("user{i}@acme.example"),
            "Name": format!("User {i}"), "IsActive": true, "Profile": {"Name": profile}}));
    }
    let mut psa = Vec::new();
    for a in 0..APPS {
        users.push(serde_json::json!({"attributes": {"type": "User"}, "Id": integ_id(a), "Username": format!("integration{a}@acme.example"),
            "Name": format!("Integration {a}"), "IsActive": true, "Profile": {"Name": "Integration Profile"}}));
        let admin = a % 5 == 0;
        psa.push(serde_json::json!({"AssigneeId": integ_id(a), "Assignee": {"Username": format!("integration{a}@acme.example")},
            "PermissionSet": {"Name": if admin { "Integration Admin" } else { "Integration API" }, "IsOwnedByProfile": false,
            "Profile": null, "PermissionsModifyAllData": admin, "PermissionsViewAllData": admin, "PermissionsManageUsers": false,
            "PermissionsCustomizeApplication": false, "PermissionsAuthorApex": false, "PermissionsApiEnabled": true}}));
    }
    for i in 0..10 {
        psa.push(serde_json::json!({"AssigneeId": human_id(i), "Assignee": {"Username": format!("user{i}@acme.example")},
            "PermissionSet": {"Name": "X00ex000000001", "IsOwnedByProfile": true, "Profile": {"Name": "System Administrator"},
            "PermissionsModifyAllData": true, "PermissionsViewAllData": true, "PermissionsManageUsers": true,
            "PermissionsCustomizeApplication": true, "PermissionsAuthorApex": true, "PermissionsApiEnabled": true}}));
    }
    let n_users = users.len();
    std::fs::write(
        dir.join("users.json"),
        serde_json::to_vec(&serde_json::json!({"totalSize": n_users, "done": true, "records": users}))?,
    )?;
    let n_psa = psa.len();
    std::fs::write(
        dir.join("psa.json"),
        serde_json::to_vec(
            &serde_json::json!({"status": 0, "result": {"totalSize": n_psa, "done": true, "records": psa}}),
        )?,
    )?;

    // Audit trail: set-up of each app, then a trickle of changes.
    let mut audit = BufWriter::new(File::create(dir.join("audit.jsonl"))?);
    let mut n_audit = 0u64;
    for a in 0..APPS {
        let t = START_MS - MS_PER_DAY + (a as i64) * 60_000;
        audit_line(
            &mut audit,
            n_audit,
            t,
            "loginIpRange",
            "Manage Users",
            &format!(
                "Added Login Ip Range to Custom: Integration Profile from 198.51.{}.0 to 198.51.{}.255",
                100 + a,
                100 + a
            ),
        )?;
        audit_line(&mut audit, n_audit + 1, t + 1000, "addOauthClientCredentialUser", "OAuth Client Credentials User",
            &format!("Assigned OAuth client credentials user integration{a}@acme.example (UserID: [{}]) to app {} (AppID: [0H4Wy00000{a:05}])",
                &integ_id(a)[..15], app_name(a)))?;
        n_audit += 2;
    }
    let trickle = (events / 2000).max(10);
    for k in 0..trickle {
        let t = START_MS + (k as i64) * (span / trickle as i64);
        let a = r.below(APPS);
        let (action, section, display) = match k % 6 {
            0 => ("PermSetAssign", "Manage Users", format!("Permission set Integration Admin: assigned to user Integration {a} (UserID: [{}])", &integ_id(a)[..15])),
            1 => ("changeApplicationClientCredentialEnabled", "Application", "Changed Enable Client Credentials Flow from false to true".to_string()),
            2 => ("changeIpRelaxationPolicy", "Application", format!("Changed connected app {} IP relaxation setting from Enforce IP restrictions to Relax IP restrictions", app_name(a))),
            3 => ("PermSetUnassign", "Manage Users", format!("Permission set Integration Admin: unassigned from user Integration {a} (UserID: [{}])", &integ_id(a)[..15])),
            4 => ("createduser", "Manage Users", format!("Created new user User {}", HUMANS + k)),
            _ => ("profilePermChangedCustom", "Manage Users", "Changed profile Standard User: general user permission Export Reports was changed from disabled to enabled".to_string()),
        };
        audit_line(&mut audit, n_audit, t, action, section, &display)?;
        n_audit += 1;
    }
    audit.flush()?;

    // Logins, in time order.
    let mut w = BufWriter::with_capacity(1 << 20, File::create(dir.join("logins.jsonl"))?);
    let (mut bytes, mut grants) = (0u64, 0u64);
    let step = (span / events.max(1) as i64).max(1);
    for n in 0..events {
        let t = START_MS + n as i64 * step + r.below(step as u64) as i64;
        let roll = r.below(1000);
        let id = uuid(&mut r);
        let ip = private_ip(&mut r);
        bytes += if roll < 20 {
            grants += 1;
            let a = r.below(APPS);
            let ip = if r.chance(30) { format!("203.0.113.{}", r.below(250)) } else { app_ip(a, r.below(3)) };
            let status = if r.chance(100) { "Failed: Invalid Client Credentials" } else { "Success" };
            login_line(
                &mut w,
                &id,
                t,
                &integ_id(a),
                &format!("integration{a}@acme.example"),
                &app_name(a),
                "Remote Access 2.0",
                Some("OAuth Client Credentials"),
                &ip,
                status,
            )?
        } else if roll < 45 {
            let u = r.below(HUMANS);
            login_line(
                &mut w,
                &id,
                t,
                &human_id(u),
                &format!("user{u}@acme.example"),
                "Salesforce for iOS",
                "Remote Access 2.0",
                Some("OAuth Refresh Token"),
                &ip,
                "Success",
            )?
        } else if roll < 50 {
            let u = r.below(HUMANS);
            login_line(
                &mut w,
                &id,
                t,
                &human_id(u),
                &format!("user{u}@acme.example"),
                "Data Loader",
                "Remote Access 2.0",
                None,
                &ip,
                "Success",
            )?
        } else {
            let u = r.below(HUMANS);
            let status = if r.chance(30) { "Invalid Password" } else { "Success" };
            login_line(
                &mut w,
                &id,
                t,
                &human_id(u),
                &format!("user{u}@acme.example"),
                "Browser",
                "Application",
                Some("UI Username-Password"),
                &ip,
                status,
            )?
        } as u64;
    }
    w.flush()?;
    Ok(GenerateStats { logins: events, grants, audits: n_audit, bytes })
}

/// The key of the `n`th grant of the activity archive.
fn login_key(n: u64) -> String {
    format!("LK{n:014x}")
}

/// Integration users of the activity archive, and apps they run as.
const ACT_USERS: u64 = 20_000;
const ACT_APPS: u64 = 50;

fn act_user(u: u64) -> String {
    SfId::parse(&format!("005Ac{u:010}")).map(|s| s.to_string()).unwrap_or_default()
}

fn act_ip(u: u64) -> String {
    format!("100.{}.{}.{}", 64 + (u >> 16) % 64, (u >> 8) & 0xff, u & 0xff)
}

const ENTITIES: [&str; 6] = ["Account", "Contact", "Opportunity", "Case", "Invoice__c", "Shipment__c"];

/// The activity-heavy archive (see the module doc): `logins.jsonl` (grants)
/// and `activity.jsonl`, plus the same inventory and audit files as
/// `generate`, for `make bench-activity`.
pub fn generate_activity(dir: &Path, events: u64, seed: u64) -> anyhow::Result<GenerateStats> {
    std::fs::create_dir_all(dir)?;
    let mut r = Rng(seed);
    let span: i64 = 8 * 3_600_000;
    let step = (span / events.max(1) as i64).max(1);
    let mut logins = BufWriter::with_capacity(1 << 20, File::create(dir.join("logins.jsonl"))?);
    let mut activity = BufWriter::with_capacity(1 << 20, File::create(dir.join("activity.jsonl"))?);
    // Recent grants (n, user) activity can come from: the last 60,000, about
    // 40 minutes of grants, well inside a token's lifetime.
    let mut recent: std::collections::VecDeque<(u64, u64)> = std::collections::VecDeque::new();
    let (mut n_grants, mut bytes) = (0u64, 0u64);
    for n in 0..events {
        let t = START_MS + n as i64 * step;
        let id = uuid(&mut r);
        if recent.is_empty() || r.below(100) < 40 {
            let u = r.below(ACT_USERS);
            let app = app_name(u % ACT_APPS);
            let line = format!(
                concat!(
                    "{{\"attributes\":{{\"type\":\"LoginEvent\"}},\"EventIdentifier\":\"{id}\",\"EventDate\":\"{date}\",",
                    "\"UserId\":\"{user}\",\"Username\":\"act{u}@acme.example\",\"Application\":\"{app}\",",
                    "\"LoginType\":\"Remote Access 2.0\",\"LoginSubType\":\"OAuth Client Credentials\",\"Status\":\"Success\",",
                    "\"SourceIp\":\"{ip}\",\"LoginKey\":\"{key}\",\"SessionKey\":null,\"Browser\":\"Unknown\",",
                    "\"Platform\":\"Unknown\",\"CountryIso\":\"US\",\"TlsProtocol\":\"TLS 1.3\",\"ApiType\":\"N/A\"}}\n"
                ),
                id = id,
                date = sf_time(t),
                user = act_user(u),
                u = u,
                app = app,
                ip = act_ip(u),
                key = login_key(n_grants),
            );
            logins.write_all(line.as_bytes())?;
            bytes += line.len() as u64;
            recent.push_back((n_grants, u));
            if recent.len() > 60_000 {
                recent.pop_front();
            }
            n_grants += 1;
            continue;
        }
        let (g, u) = recent[r.below(recent.len() as u64) as usize];
        let entity = ENTITIES[r.below(ENTITIES.len() as u64) as usize];
        // Users 0-99 run reconnaissance: COUNT() on several objects.
        let query = if u < 100 && r.chance(300) {
            format!("SELECT COUNT() FROM {entity}")
        } else {
            format!("SELECT Id, Name, LastModifiedDate FROM {entity} WHERE LastModifiedDate = TODAY LIMIT 200")
        };
        let roll = r.below(100);
        let line = if roll < 70 {
            format!(
                concat!(
                    "{{\"attributes\":{{\"type\":\"ApiEvent\"}},\"EventIdentifier\":\"{id}\",\"EventDate\":\"{date}\",",
                    "\"ApiType\":\"REST\",\"ApiVersion\":58.0,\"Application\":\"N/A\",\"ConnectedAppId\":null,",
                    "\"Operation\":\"Query\",\"Query\":\"{query}\",\"QueriedEntities\":\"{entity}\",",
                    "\"RowsProcessed\":{rows}.0,\"LoginKey\":\"{key}\",\"SessionKey\":null,\"SourceIp\":\"{ip}\",",
                    "\"UserAgent\":\"acme-sync/2.1\",\"UserId\":\"{user}\",\"Username\":\"act{u}@acme.example\",",
                    "\"RequestIdentifier\":\"TID:{n:016x}\",\"ElapsedTime\":{elapsed}}}\n"
                ),
                id = id,
                date = sf_time(t),
                query = query,
                entity = entity,
                rows = match (query.contains("COUNT()"), u < 50) {
                    (true, _) => 0,
                    (false, true) => 20_000,
                    (false, false) => 200,
                },
                key = login_key(g),
                ip = act_ip(u),
                user = act_user(u),
                u = u,
                n = n,
                elapsed = 20 + r.below(400),
            )
        } else {
            // ELF RestApi as JSON: no session key; the grant's IP (tuple) or another one.
            let ip = if roll < 90 { act_ip(u) } else { format!("192.0.2.{}", r.below(250)) };
            format!(
                concat!(
                    "{{\"EVENT_TYPE\":\"RestApi\",\"TIMESTAMP_DERIVED\":\"{date}\",\"REQUEST_ID\":\"TID:{n:016x}\",",
                    "\"ORGANIZATION_ID\":\"00D5j00000DgAYG\",\"USER_ID\":\"{user15}\",\"CLIENT_IP\":\"{ip}\",",
                    "\"URI\":\"/services/data/v58.0/query\",\"METHOD\":\"GET\",\"STATUS_CODE\":\"200\",",
                    "\"ENTITY_NAME\":\"{entity}\",\"ROWS_PROCESSED\":\"200\",\"CPU_TIME\":\"12\",\"RUN_TIME\":\"40\",",
                    "\"USER_AGENT\":\"5130\"}}\n"
                ),
                date = EventTime(t).to_datetime().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                n = n,
                user15 = &act_user(u)[..15],
                ip = ip,
                entity = entity,
            )
        };
        activity.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
    }
    logins.flush()?;
    activity.flush()?;
    // The run-as users are not in any inventory: privileges unknown.
    std::fs::write(dir.join("users.json"), br#"{"totalSize":0,"done":true,"records":[]}"#)?;
    std::fs::write(dir.join("psa.json"), br#"{"status":0,"result":{"totalSize":0,"done":true,"records":[]}}"#)?;
    std::fs::write(dir.join("audit.jsonl"), b"")?;
    Ok(GenerateStats { logins: events, grants: n_grants, audits: 0, bytes })
}
