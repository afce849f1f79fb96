//! Correlate: the stateful, event-time stage. It keeps inventory baselines and
//! SetupAuditTrail changes on a timeline (`setup`) from which it can tell who
//! held which privileges, which IP ranges applied, and which apps had the flow
//! switched on at any moment; then, for each client-credentials grant, it
//! reports what the timeline says *as of the grant's event time* as an
//! `Observation`, whatever order setup records and grants arrived in.
//!
//! Per-pair state (IP history per user and app, failed-grant windows per
//! user) is not on the timeline: it is folded in the order logins reach it.
//! That order is event time within a user, because every source keeps one
//! user's records in order (replay sorts them; live keys records by user, so
//! one user's logins share a partition, and the merge orders partitions).
//! The watermark that closes alerts moves with logins only, so setup records
//! arriving ahead of them (a restarted instance reading the audit topic from
//! its start) close nothing early.
//!
//! Post-grant activity is attributed to a grant session (`sessions`), then
//! folded into its (user, app) day (`access`), which reports an
//! `Observation::Access` once the day has a trigger factor.
//!
//! Pure and synchronous: `observe(&NormalizedEvent) -> Option<Observation>`.
//! The pipeline calls it in two steps, `observe_facts` then, only for a grant
//! that will raise or change an alert, `describe_grant`, which writes the
//! evidence text; most grants repeat an open alert and never need it.
//! Time only comes from events, so replay and live agree. Memory is bounded:
//! per-(user, app) IP history and per-user failure windows live in LRU maps of
//! configured size, with evictions counted in `CorrelateStats`. The privilege
//! model itself is sized by the org (users, permission sets, profiles), not by
//! traffic.

mod access;
mod privileges;
mod sessions;
mod setup;

use crate::config::CorrelateConfig;
use crate::enrich::Enrichment;
use crate::event::ip::{parse_ip, usable_ip};
use crate::event::{
    key, profile_key, user_key, AccessObservation, Activity, ActivityFactor, EventTime, FailedBurst, GrantObservation,
    IpRange, IpVerdict, Login, NormalizedEvent, Observation, SfId, UserRef,
};
use access::{Access, Grant};
use lru::LruCache;
pub use sessions::{Attribution, SessionStats};
use sessions::{SessionLimits, Sessions};
use setup::{app_key, Timeline};
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Arc;

/// Who a grant is for: the run-as user's id, or their lowercased username when
/// no id is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Principal {
    Id(SfId),
    Name(Box<str>),
}

/// Counters describing state pressure; the summary and metrics read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorrelateStats {
    /// (user, app) pairs dropped from IP history by the LRU bound.
    pub pair_evictions: u64,
    /// IPs dropped from a pair's history by the per-pair bound.
    pub ip_evictions: u64,
    /// Users dropped from failed-grant tracking by the LRU bound.
    pub failure_evictions: u64,
    /// Audit changes naming a user ccwatch could not resolve to an id.
    pub unresolved_users: u64,
    /// Setup records (audit trail, inventory) kept on the timeline.
    pub setup_records: usize,
    /// Setup records folded into the timeline's base by its bound.
    pub setup_evictions: u64,
    /// Setup records that arrived after a later grant had been scored without them.
    pub late_setup_records: u64,
    /// Grant sessions and the attribution of activity to them.
    pub sessions: SessionStats,
    pub sessions_open: usize,
    pub activity_waiting: usize,
    /// (user, app) pairs dropped from activity history by the LRU bound.
    pub activity_evictions: u64,
}

#[derive(Debug, Default)]
struct PairState {
    /// Source IP → last seen, most recent last.
    ips: Vec<(Box<str>, EventTime)>,
}

pub struct Correlator {
    cfg: CorrelateConfig,
    setup: Timeline,
    sessions: Sessions,
    access: Access,
    enrichment: Arc<Enrichment>,
    /// (user key, app key) → ASNs seen from its grants and activity.
    asns: LruCache<(Box<str>, Box<str>), Vec<u32>>,
    pairs: LruCache<(Principal, String), PairState>,
    failures: LruCache<Principal, VecDeque<EventTime>>,
    watermark: EventTime,
    pub stats: CorrelateStats,
}

impl Correlator {
    pub fn new(cfg: CorrelateConfig) -> Correlator {
        let pairs = LruCache::new(NonZeroUsize::new(cfg.max_pairs).unwrap_or(NonZeroUsize::MIN));
        let failures = LruCache::new(NonZeroUsize::new(cfg.max_failure_users).unwrap_or(NonZeroUsize::MIN));
        let limits = SessionLimits {
            token_lifetime_ms: cfg.token_lifetime_ms,
            max_sessions: cfg.max_sessions,
            max_waiting: cfg.max_waiting_activity,
        };
        Correlator {
            setup: Timeline::new(&cfg),
            sessions: Sessions::new(limits),
            access: Access::new(&cfg.activity),
            enrichment: Arc::default(),
            asns: LruCache::new(NonZeroUsize::new(cfg.activity.max_pairs).unwrap_or(NonZeroUsize::MIN)),
            cfg,
            pairs,
            failures,
            watermark: EventTime::BEGINNING,
            stats: CorrelateStats::default(),
        }
    }

    /// End of input: activity still waiting for a grant is given up on.
    pub fn finish(&mut self) {
        self.sessions.finish();
    }

    /// Forgets everything learnt from logins and activity (IP history,
    /// failure windows, grant sessions, the watermark), keeping the setup
    /// timeline and the cumulative counts. For a live instance whose
    /// partitions were taken away: the traffic is read again from the
    /// committed offsets (with warm-up), so state built from it must not
    /// count it twice, and nothing learnt from a partition now read
    /// elsewhere may close or continue an alert here.
    pub fn forget_traffic(&mut self) {
        self.pairs.clear();
        self.failures.clear();
        self.sessions.forget_all();
        self.access.forget();
        self.asns.clear();
        self.watermark = EventTime::BEGINNING;
    }

    /// The reference data (Tor exits, IOCs, ASNs) answered from now on.
    pub fn set_enrichment(&mut self, e: Arc<Enrichment>) {
        self.enrichment = e;
    }

    /// Remembers the ASN of `ip` for (user, app) in `asns`; the detail of
    /// `new_asn` when the pair had ASN history and this ASN is not in it,
    /// and the ASN's label. `names` are the user and app as the detail shows
    /// them. A function of the two fields it uses, so a caller can hold a
    /// session borrowed meanwhile.
    fn note_asn(
        asns: &mut LruCache<(Box<str>, Box<str>), Vec<u32>>,
        enrichment: &Enrichment,
        (user, app): (&str, &str),
        ip: Option<&str>,
        names: (&str, &str),
    ) -> (Option<String>, Option<String>) {
        let Some(asn) = ip.and_then(|ip| enrichment.asn(ip)) else { return (None, None) };
        let label = format!("AS{} {}", asn.number, asn.org);
        let seen = asns.get_or_insert_mut((user.into(), app.into()), Vec::new);
        if seen.contains(&asn.number) {
            return (None, Some(label));
        }
        let new = (!seen.is_empty()).then(|| {
            format!(
                "source IP {} is in {label}, never seen before for user {} and app '{}'",
                ip.unwrap_or_default(),
                names.0,
                names.1
            )
        });
        if seen.len() >= 32 {
            seen.remove(0);
        }
        seen.push(asn.number);
        (new, Some(label))
    }

    /// The latest event time seen.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    pub fn users_tracked(&self) -> usize {
        self.setup.model().privileges.user_count()
    }

    /// State-pressure counters, the setup timeline's included.
    pub fn stats(&self) -> CorrelateStats {
        let setup = self.setup.stats();
        CorrelateStats {
            unresolved_users: self.setup.model().unresolved_users,
            setup_records: setup.records,
            setup_evictions: setup.evicted,
            late_setup_records: setup.late,
            sessions: self.sessions.stats,
            sessions_open: self.sessions.open_count(),
            activity_waiting: self.sessions.waiting_count(),
            activity_evictions: self.access.evictions,
            ..self.stats.clone()
        }
    }

    pub fn pairs_tracked(&self) -> usize {
        self.pairs.len()
    }

    pub fn ips_tracked(&self) -> usize {
        self.pairs.iter().map(|(_, p)| p.ips.len()).sum()
    }

    /// What correlation knows at the event's time, fully described: the
    /// tests' one-step form of `observe_facts` + `describe_grant`.
    #[cfg(test)]
    pub(crate) fn observe(&mut self, ev: &NormalizedEvent) -> Option<Observation> {
        let mut obs = self.observe_facts(ev)?;
        if let Observation::Grant(g) = &mut obs {
            self.describe_grant(g);
        }
        Some(obs)
    }

    /// `observe` without a grant's evidence written out: privilege sources
    /// (`PermGrant::via`) and the IP verdict's range text are left empty, so
    /// the grant can be scored. Most grants repeat an open alert and are
    /// folded on that score alone; `describe_grant` writes the text for the
    /// rest. It reads only state that a login leaves alone (privileges, IP
    /// ranges, app settings), so it must come before the next event, and then
    /// says what it would have said here.
    pub fn observe_facts(&mut self, ev: &NormalizedEvent) -> Option<Observation> {
        match ev {
            NormalizedEvent::Login(l) => {
                if l.time > self.watermark {
                    self.watermark = l.time;
                }
                self.setup.as_of(l.time);
                self.observe_login(l)
            }
            // Post-grant activity is attributed to its grant's session,
            // then folded into its (user, app) day for the data-access rule.
            NormalizedEvent::Activity(a) => {
                let user = user_key(a.user_id.as_ref(), a.username.as_deref())?;
                let (id, how) = self.sessions.observe(&user, a)?;
                self.access_of(a, id, how).map(|o| Observation::Access(Box::new(o)))
            }
            setup => self.setup.insert(setup),
        }
    }

    /// The grant that opened session `session` (event `event`) was scored
    /// into `alert_id`: its activity's data-access alert carries that
    /// alert's factors, and the grant's event id as evidence.
    pub fn tag_session(&mut self, session: u64, alert_id: &str, score: f64, event: Option<&str>) {
        self.sessions.tag(session, alert_id, score, event);
    }

    /// Activity that waited for a grant and was attributed when it arrived:
    /// its data-access observations, in arrival order. Called after the
    /// grant's own observation was scored and its session tagged.
    pub fn late_access(&mut self) -> Vec<Observation> {
        let late = self.sessions.take_late();
        late.into_iter()
            .filter_map(|(a, id, how)| self.access_of(&a, id, how))
            .map(|o| Observation::Access(Box::new(o)))
            .collect()
    }

    fn access_of(&mut self, a: &Activity, session: u64, how: Attribution) -> Option<AccessObservation> {
        let s = self.sessions.get(session)?;
        let model = self.setup.model();
        let user_id = a
            .user_id
            .or_else(|| model.privileges.resolve(&UserRef { id: None, name: a.username.as_deref().map(Into::into) }));
        let username =
            a.username.as_deref().map(str::to_string).or_else(|| user_id.and_then(|id| model.privileges.username(id)));
        // What the reference data says about this record.
        let mut found = Vec::new();
        let ip = usable_ip(a.source_ip.as_deref());
        if let Some(why) = ip.and_then(|ip| self.enrichment.anonymizing(ip, a.time)) {
            found.push((ActivityFactor::AnonymizingSourceIp, why));
        }
        if let Some(ua) = a.user_agent.as_deref() {
            if let Some(note) = self.enrichment.ioc_user_agent(ua, a.time) {
                found.push((ActivityFactor::IocUserAgent, format!("user agent '{ua}' matches IOC: {note}")));
            }
        }
        let pair = (&*s.user, s.app.as_deref().unwrap_or_default());
        let names = (username.as_deref().unwrap_or(&s.user), s.app_name.as_deref().unwrap_or("unknown"));
        let (new_asn, asn) = Self::note_asn(&mut self.asns, &self.enrichment, pair, ip, names);
        if let Some(n) = new_asn {
            found.push((ActivityFactor::NewAsn, n));
        }
        let grant = Grant {
            session: s,
            how,
            user_id,
            username: username.as_deref(),
            app_name: s.app_name.as_deref(),
            found,
            asn,
        };
        self.access.observe(a, grant)
    }

    fn principal(&self, l: &Login) -> Option<Principal> {
        if let Some(id) = l.user_id {
            return Some(Principal::Id(id));
        }
        let name = l.username.as_deref()?;
        Some(match self.setup.model().privileges.resolve(&UserRef { id: None, name: Some(name.into()) }) {
            Some(id) => Principal::Id(id),
            None => Principal::Name(name.trim().to_lowercase().into()),
        })
    }

    fn observe_login(&mut self, l: &Login) -> Option<Observation> {
        let principal = self.principal(l)?;
        let window = self.cfg.failed_burst_window_ms;
        if !l.success {
            let cap = self.cfg.failed_burst_threshold.saturating_mul(4).max(16);
            if !self.failures.contains(&principal) && self.failures.len() == self.failures.cap().get() {
                self.stats.failure_evictions += 1;
            }
            let q = self.failures.get_or_insert_mut(principal, VecDeque::new);
            q.push_back(l.time);
            while q.len() > cap || q.front().is_some_and(|t| t.0 < l.time.0 - window) {
                q.pop_front();
            }
            return None;
        }
        let user_id = match &principal {
            Principal::Id(id) => Some(*id),
            Principal::Name(_) => None,
        };
        let model = self.setup.model();
        let privileges = user_id.map(|id| model.privileges.held(id)).unwrap_or_default();
        let privileges_known = user_id.is_some_and(|id| model.privileges.knows(id));
        let escalation = user_id.and_then(|id| model.privileges.escalation(id, l.time, self.cfg.escalation_window_ms));
        let username =
            l.username.as_deref().map(str::to_string).or_else(|| user_id.and_then(|id| model.privileges.username(id)));
        let app = app_key(l.app.as_deref());
        let flow_change = model.flow_change(&app, l.time, self.cfg.flow_enabled_window_ms);
        let ip = self.ip_verdict(l, user_id, username.as_deref(), &app, false);
        let new_ip = self.remember_ip(&principal, &app, l);
        let anonymizing = l.source_ip.as_deref().and_then(|ip| self.enrichment.anonymizing(ip, l.time));
        let (new_asn, session) = match user_key(user_id.as_ref(), username.as_deref()) {
            Some(user) => {
                let names = (username.as_deref().unwrap_or(&user), l.app.as_deref().unwrap_or("unknown"));
                let (new_asn, _) =
                    Self::note_asn(&mut self.asns, &self.enrichment, (&user, &app), l.source_ip.as_deref(), names);
                let keys = &l.keys;
                (
                    new_asn,
                    Some(self.sessions.open(l.time, l.org_id, &user, l.app.as_deref(), l.source_ip.as_deref(), keys)),
                )
            }
            None => (None, None),
        };
        let failed_burst = self.failures.get_mut(&principal).and_then(|q| {
            while q.front().is_some_and(|t| t.0 < l.time.0 - window) {
                q.pop_front();
            }
            (q.len() >= self.cfg.failed_burst_threshold).then(|| FailedBurst {
                count: q.len(),
                first: *q.front().unwrap_or(&l.time),
                last: *q.back().unwrap_or(&l.time),
            })
        });
        Some(Observation::Grant(Box::new(GrantObservation {
            login: l.clone(),
            username,
            user_id,
            privileges,
            privileges_known,
            escalation,
            ip,
            new_ip,
            flow_change,
            failed_burst,
            session,
            anonymizing,
            new_asn,
        })))
    }

    /// Writes the evidence `observe_facts` left out (see there).
    pub fn describe_grant(&self, g: &mut GrantObservation) {
        if let (Some(id), false) = (g.user_id, g.privileges.is_empty()) {
            g.privileges = self.setup.model().privileges.grants(id);
        }
        let app = app_key(g.login.app.as_deref());
        g.ip = self.ip_verdict(&g.login, g.user_id, g.username.as_deref(), &app, true);
    }

    /// Which ranges apply and whether the IP is inside one; with `describe`,
    /// the ranges' text too.
    fn ip_verdict(
        &self,
        l: &Login,
        user_id: Option<SfId>,
        username: Option<&str>,
        app: &str,
        describe: bool,
    ) -> IpVerdict {
        let Some(ip) = l.source_ip.as_deref().and_then(parse_ip) else {
            return IpVerdict::NoIp;
        };
        let model = self.setup.model();
        let profile = user_id.and_then(|id| model.privileges.profile(id));
        let relaxed = model.apps.get(app).and_then(|a| a.relaxed.as_deref());
        // Every range that applies to this grant, with where it came from
        // (`None`: the profile's own range). Described only when reported.
        let mut known: Vec<(IpRange, Option<&str>)> = Vec::new();
        if let Some(p) = &profile {
            if relaxed.is_none() {
                known.extend(model.privileges.profile_ranges(p).iter().map(|r| (*r, None)));
            }
            let configured = self.cfg.ranges.by_profile.get(&*profile_key(p));
            known.extend(configured.into_iter().flatten().map(|r| (r.range, Some(r.source.as_str()))));
        }
        let name = username.map(key);
        let keyed = [
            (&self.cfg.ranges.by_app, Some(app)),
            (&self.cfg.ranges.by_user, user_id.as_ref().map(SfId::as_str)),
            (&self.cfg.ranges.by_user, name.as_deref()),
        ];
        for (map, key) in keyed {
            let ranges = key.and_then(|k| map.get(k)).into_iter().flatten();
            known.extend(ranges.map(|r| (r.range, Some(r.source.as_str()))));
        }
        let hit = known.iter().find(|(r, _)| r.contains(ip));
        if !describe {
            return match (hit, known.is_empty()) {
                (Some(_), _) => IpVerdict::Inside { range: String::new() },
                (None, true) => IpVerdict::NoRestriction { scope: String::new() },
                (None, false) => IpVerdict::Outside { ranges: String::new() },
            };
        }
        let describe = |(r, source): &(IpRange, Option<&str>)| match source {
            Some(s) => format!("{r} ({s})"),
            None => format!("{r} (profile '{}' login IP range)", profile.as_deref().unwrap_or_default()),
        };
        if let Some(hit) = hit {
            return IpVerdict::Inside { range: describe(hit) };
        }
        if known.is_empty() {
            let mut scope = format!(
                "profile {}, app {}, user {}",
                profile.as_deref().map(|p| format!("'{p}'")).unwrap_or_else(|| "unknown".into()),
                l.app.as_deref().map(|a| format!("'{a}'")).unwrap_or_else(|| "unknown".into()),
                username.or(user_id.as_ref().map(|i| i.as_str())).unwrap_or("unknown"),
            );
            if let Some(setting) = relaxed {
                scope.push_str(&format!("; profile ranges not enforced: app IP relaxation is '{setting}'"));
            }
            return IpVerdict::NoRestriction { scope };
        }
        let total = known.len();
        let mut ranges: Vec<String> = known.iter().take(4).map(describe).collect();
        if total > 4 {
            ranges.push(format!("and {} more", total - 4));
        }
        IpVerdict::Outside { ranges: ranges.join(", ") }
    }

    /// Records the grant's IP for its (user, app) pair; returns `Some(known)` when
    /// the IP is new and the pair already had history.
    fn remember_ip(&mut self, principal: &Principal, app: &str, l: &Login) -> Option<usize> {
        let ip = l.source_ip.as_deref()?;
        let key = (principal.clone(), app.to_string());
        if !self.pairs.contains(&key) && self.pairs.len() == self.pairs.cap().get() {
            self.stats.pair_evictions += 1;
        }
        let horizon = l.time.0.saturating_sub(self.cfg.ip_history_ms);
        let pair = self.pairs.get_or_insert_mut(key, PairState::default);
        pair.ips.retain(|(_, seen)| seen.0 >= horizon);
        let known = pair.ips.len();
        let verdict = match pair.ips.iter().position(|(i, _)| &**i == ip) {
            Some(pos) => {
                let (i, _) = pair.ips.remove(pos);
                pair.ips.push((i, l.time));
                None
            }
            None => {
                if pair.ips.len() >= self.cfg.max_ips_per_pair {
                    pair.ips.remove(0);
                    self.stats.ip_evictions += 1;
                }
                pair.ips.push((ip.into(), l.time));
                (known > 0).then_some(known)
            }
        };
        verdict
    }
}

#[cfg(test)]
mod tests;
