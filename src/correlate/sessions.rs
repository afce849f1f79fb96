//! Grant sessions: each successful client-credentials grant opens a session,
//! and every later API-activity record is attributed to one, in this order of
//! precedence (the reference's §3.4):
//!
//! 1. `LoginKey`, 2. `SessionKey`, 3. `LoginHistoryId` (first 15 characters,
//!    case-sensitive): attribution **key**, not limited in time, because a
//!    re-requested token may reuse an earlier grant's session;
//! 4. the ELF `REQUEST_ID` of a sibling row already attributed (ApiTotalUsage
//!    has no session keys, its RestApi/API sibling does): **request**;
//! 5. the same org (where both know it), user, app (where both know it) and
//!    source IP, within the token lifetime after the grant (and a minute
//!    before it, for clock skew): **tuple**. `Salesforce.com IP` never
//!    matches.
//!
//! Activity that matches nothing waits (bounded, in event time) for a grant
//! that may arrive later: a grant retries its user's waiting activity. What
//! is still unmatched a token lifetime later is dropped from the wait; when
//! its user is a client-credentials run-as user (one with a grant) it is
//! counted as **unattributed**: a blind spot of the detector, not noise.
//!
//! Memory is bounded: sessions (LRU, with their key indexes), remembered
//! request ids and waiting activity; every eviction is counted. Pure and
//! synchronous, driven by event time only.

use crate::event::ip::usable_ip;
use crate::event::{key, Activity, EventTime, GrantKeys, SfId};
use hashbrown::HashMap;
use lru::LruCache;
use std::collections::VecDeque;
use std::num::NonZeroUsize;

/// How an activity record was tied to its grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    Key,
    Request,
    Tuple,
}

/// A grant's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: u64,
    pub grant_time: EventTime,
    pub org: Option<SfId>,
    /// User key (`event::user_key`).
    pub user: Box<str>,
    /// App key (`event::key` of the name), when the grant named one.
    pub app: Option<Box<str>>,
    pub app_name: Option<Box<str>>,
    pub ip: Option<Box<str>>,
    /// Activity records attributed, by how: key, request, tuple.
    pub attributed: [u64; 3],
    /// The grant's alert id and score, once scored (`Sessions::tag`).
    pub grant_alert: Option<(Box<str>, f64)>,
    /// The grant's own event id (evidence for its data-access alert).
    pub grant_event: Option<Box<str>>,
    keys: GrantKeys,
}

/// Counters the summary and metrics read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub opened: u64,
    pub by_key: u64,
    pub by_request: u64,
    pub by_tuple: u64,
    /// Attributed when a grant arrived after its activity.
    pub late: u64,
    /// Records of client-credentials run-as users that matched no grant.
    pub unattributed: u64,
    pub evicted_sessions: u64,
    /// Waiting records pushed out by the bound before their time was up.
    pub evicted_waiting: u64,
}

/// Limits, in event time and entries.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub token_lifetime_ms: i64,
    pub max_sessions: usize,
    pub max_waiting: usize,
}

const SKEW_MS: i64 = 60_000;

struct Waiting {
    seq: u64,
    activity: Box<Activity>,
}

pub struct Sessions {
    limits: SessionLimits,
    next_id: u64,
    sessions: LruCache<u64, Session>,
    login_keys: HashMap<Box<str>, u64>,
    session_keys: HashMap<Box<str>, u64>,
    history_ids: HashMap<Box<str>, u64>,
    /// Request id of an attributed row → its session (sibling rows of one call).
    requests: LruCache<Box<str>, u64>,
    /// (user, ip) → sessions, for tuple matches.
    /// user → (ip, session), for tuple matches; keyed by user alone so a
    /// lookup borrows the record's strings instead of allocating a key.
    tuples: HashMap<Box<str>, Vec<(Box<str>, u64)>>,
    /// Users with a client-credentials grant.
    cc_users: LruCache<Box<str>, ()>,
    /// Unmatched activity by user, and the order it arrived in.
    waiting: HashMap<Box<str>, VecDeque<Waiting>>,
    order: VecDeque<(u64, EventTime, Box<str>)>,
    /// Records waiting (`order` also holds entries already attributed).
    live_waiting: usize,
    seq: u64,
    clock: EventTime,
    /// Waiting activity a grant just matched, for the caller to take.
    late: Vec<(Box<Activity>, u64, Attribution)>,
    pub stats: SessionStats,
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// `LoginHistoryId`s compare on their first 15 characters (ELF ids are 15,
/// RTEM ids 18).
fn id15(s: &str) -> &str {
    s.get(..15).unwrap_or(s)
}

/// A grant's keys as the indexes hold them: LoginKey, SessionKey,
/// LoginHistoryId (first 15 characters).
fn key_values(keys: &GrantKeys) -> [Option<&str>; 3] {
    [keys.login_key.as_deref(), keys.session_key.as_deref(), keys.login_history_id.as_deref().map(id15)]
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            next_id: 0,
            sessions: LruCache::new(cap(limits.max_sessions)),
            login_keys: HashMap::new(),
            session_keys: HashMap::new(),
            history_ids: HashMap::new(),
            requests: LruCache::new(cap(limits.max_sessions)),
            tuples: HashMap::new(),
            cc_users: LruCache::new(cap(limits.max_sessions)),
            waiting: HashMap::new(),
            order: VecDeque::new(),
            live_waiting: 0,
            seq: 0,
            clock: EventTime::BEGINNING,
            late: Vec::new(),
            stats: SessionStats::default(),
        }
    }

    pub fn open_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn waiting_count(&self) -> usize {
        self.live_waiting
    }

    pub fn get(&self, id: u64) -> Option<&Session> {
        self.sessions.peek(&id)
    }

    /// Records the alert the session's grant was scored into, and the
    /// grant's event id.
    pub fn tag(&mut self, id: u64, alert_id: &str, score: f64, event: Option<&str>) {
        if let Some(s) = self.sessions.peek_mut(&id) {
            s.grant_alert = Some((alert_id.into(), score));
            s.grant_event = event.map(Into::into);
        }
    }

    /// Waiting activity attributed when its grant arrived, since the last call.
    pub fn take_late(&mut self) -> Vec<(Box<Activity>, u64, Attribution)> {
        std::mem::take(&mut self.late)
    }

    /// A successful client-credentials grant opens a session; its user's
    /// waiting activity is tried again. Returns the new session's id.
    pub fn open(
        &mut self,
        time: EventTime,
        org: Option<SfId>,
        user: &str,
        app: Option<&str>,
        ip: Option<&str>,
        keys: &GrantKeys,
    ) -> u64 {
        self.tick(time);
        self.next_id += 1;
        let id = self.next_id;
        self.stats.opened += 1;
        if self.cc_users.get(user).is_none() {
            self.cc_users.put(user.into(), ());
        }
        let session = Session {
            id,
            grant_time: time,
            org,
            user: user.into(),
            app: app.map(|a| key(a).into()),
            app_name: app.map(Into::into),
            ip: usable_ip(ip).map(Into::into),
            attributed: [0; 3],
            grant_alert: None,
            grant_event: None,
            keys: keys.clone(),
        };
        for (map, k) in self.key_indexes().into_iter().zip(key_values(keys)) {
            if let Some(k) = k {
                map.insert(k.into(), id);
            }
        }
        if let Some(ip) = &session.ip {
            match self.tuples.get_mut(user) {
                Some(v) => v.push((ip.clone(), id)),
                None => {
                    self.tuples.insert(user.into(), vec![(ip.clone(), id)]);
                }
            }
        }
        if let Some((old, evicted)) = self.sessions.push(id, session) {
            if old != id {
                self.forget(&evicted);
                self.stats.evicted_sessions += 1;
            }
        }
        self.retry(user);
        id
    }

    /// The key indexes, in the order `key_values` lists a grant's keys.
    fn key_indexes(&mut self) -> [&mut HashMap<Box<str>, u64>; 3] {
        [&mut self.login_keys, &mut self.session_keys, &mut self.history_ids]
    }

    /// Removes an evicted session from the indexes that still point at it.
    fn forget(&mut self, s: &Session) {
        for (map, k) in self.key_indexes().into_iter().zip(key_values(&s.keys)) {
            if let Some(k) = k {
                if map.get(k) == Some(&s.id) {
                    map.remove(k);
                }
            }
        }
        if s.ip.is_some() {
            if let Some(ids) = self.tuples.get_mut(&s.user) {
                ids.retain(|(_, i)| *i != s.id);
                if ids.is_empty() {
                    self.tuples.remove(&s.user);
                }
            }
        }
    }

    /// Attributes one activity record, or keeps it waiting for its grant.
    /// `user` is its user key; `app` its app key when it names one.
    pub fn observe(&mut self, user: &str, a: &Activity) -> Option<(u64, Attribution)> {
        self.tick(a.time);
        let found = self.attribute(user, a);
        match found {
            Some((id, how)) => self.count(id, how, a, false),
            None => self.wait(user, a),
        }
        found
    }

    fn attribute(&mut self, user: &str, a: &Activity) -> Option<(u64, Attribution)> {
        let alive = |s: &Self, id: &u64| s.sessions.contains(id);
        let by_key = [
            a.login_key.as_deref().and_then(|k| self.login_keys.get(k)),
            a.session_key.as_deref().and_then(|k| self.session_keys.get(k)),
            a.login_history_id.as_ref().and_then(|k| self.history_ids.get(id15(k.as_str()))),
        ];
        if let Some(id) = by_key.into_iter().flatten().copied().find(|id| alive(self, id)) {
            return Some((id, Attribution::Key));
        }
        if let Some(id) = a.request_id.as_deref().and_then(|r| self.requests.get(r)).copied() {
            if alive(self, &id) {
                return Some((id, Attribution::Request));
            }
        }
        let ip = usable_ip(a.source_ip.as_deref())?;
        let ids = self.tuples.get(user)?;
        let app = a.app_name.as_deref().map(key);
        let t = a.time.0;
        let lifetime = self.limits.token_lifetime_ms;
        ids.iter()
            .filter(|(i, _)| **i == *ip)
            .filter_map(|(_, id)| self.sessions.peek(id))
            .filter(|s| t >= s.grant_time.0 - SKEW_MS && t <= s.grant_time.0 + lifetime)
            .filter(|s| match (&s.org, &a.org_id) {
                (Some(x), Some(y)) => x.as_str()[..15] == y.as_str()[..15],
                _ => true,
            })
            .filter(|s| match (&s.app, &app) {
                (Some(x), Some(y)) => **x == **y,
                _ => true,
            })
            .max_by_key(|s| s.grant_time)
            .map(|s| (s.id, Attribution::Tuple))
    }

    fn count(&mut self, id: u64, how: Attribution, a: &Activity, late: bool) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.attributed[how as usize] += 1;
        }
        match how {
            Attribution::Key => self.stats.by_key += 1,
            Attribution::Request => self.stats.by_request += 1,
            Attribution::Tuple => self.stats.by_tuple += 1,
        }
        if late {
            self.stats.late += 1;
        }
        if let (Some(r), Attribution::Key) = (&a.request_id, how) {
            self.requests.put(r.clone(), id);
        }
    }

    fn wait(&mut self, user: &str, a: &Activity) {
        self.seq += 1;
        let seq = self.seq;
        let w = Waiting { seq, activity: Box::new(a.clone()) };
        match self.waiting.get_mut(user) {
            Some(q) => q.push_back(w),
            None => {
                self.waiting.insert(user.into(), VecDeque::from([w]));
            }
        }
        self.order.push_back((seq, a.time, user.into()));
        self.live_waiting += 1;
        if self.live_waiting > self.limits.max_waiting {
            self.stats.evicted_waiting += 1;
            while self.live_waiting > self.limits.max_waiting && !self.order.is_empty() {
                self.expire_front();
            }
        }
    }

    /// Event time moves: waiting activity older than a token lifetime is
    /// given up on.
    fn tick(&mut self, t: EventTime) {
        if t > self.clock {
            self.clock = t;
        }
        let horizon = self.clock.0.saturating_sub(self.limits.token_lifetime_ms);
        while self.order.front().is_some_and(|(_, at, _)| at.0 < horizon) {
            self.expire_front();
        }
    }

    /// Drops the oldest waiting record; counted as unattributed when its
    /// user is a client-credentials run-as user.
    fn expire_front(&mut self) {
        let Some((seq, _, user)) = self.order.pop_front() else { return };
        let Some(q) = self.waiting.get_mut(&user) else { return };
        if q.front().is_some_and(|w| w.seq == seq) {
            q.pop_front();
            self.live_waiting -= 1;
            if self.cc_users.contains(&user) {
                self.stats.unattributed += 1;
            }
        }
        if q.is_empty() {
            self.waiting.remove(&user);
        }
    }

    /// A grant arrived for `user`: its waiting activity may match it now.
    fn retry(&mut self, user: &str) {
        let Some(q) = self.waiting.remove(user) else { return };
        let mut keep = VecDeque::new();
        for w in q {
            match self.attribute(user, &w.activity) {
                Some((id, how)) => {
                    self.live_waiting -= 1;
                    self.count(id, how, &w.activity, true);
                    self.late.push((w.activity, id, how));
                }
                None => keep.push_back(w),
            }
        }
        if !keep.is_empty() {
            self.waiting.insert(user.into(), keep);
        }
    }

    /// End of input: everything still waiting is given up on.
    pub fn finish(&mut self) {
        while !self.order.is_empty() {
            self.expire_front();
        }
    }

    /// Forgets every session and waiting record, keeping the cumulative
    /// counts: the traffic they came from will be read again.
    pub fn forget_all(&mut self) {
        let stats = self.stats;
        *self = Sessions::new(self.limits);
        self.stats = stats;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const USER: &str = "005J4000001AbCdIAK";

    fn sessions() -> Sessions {
        Sessions::new(SessionLimits { token_lifetime_ms: 120 * MIN, max_sessions: 100, max_waiting: 100 })
    }

    fn keys(login: &str) -> GrantKeys {
        GrantKeys { login_key: Some(login.into()), ..GrantKeys::default() }
    }

    fn act(minute: i64, ip: &str) -> Activity {
        Activity { time: EventTime(minute * MIN), source_ip: Some(ip.into()), ..Activity::default() }
    }

    #[test]
    fn keys_come_before_the_tuple_and_are_not_limited_in_time() {
        let mut s = sessions();
        let a = s.open(EventTime(0), None, USER, Some("Drift"), Some("44.215.108.109"), &keys("LA"));
        let b = s.open(EventTime(10 * MIN), None, USER, Some("Drift"), Some("208.68.36.90"), &keys("LB"));
        // From B's IP in B's window, but carrying A's LoginKey: A, by key.
        let e = Activity { login_key: Some("LA".into()), ..act(11, "208.68.36.90") };
        assert_eq!(s.observe(USER, &e), Some((a, Attribution::Key)));
        // Keys hold long after the token lifetime (a reused session).
        let late = Activity { login_key: Some("LB".into()), ..act(600, "1.1.1.1") };
        assert_eq!(s.observe(USER, &late), Some((b, Attribution::Key)));
        let hist = GrantKeys { login_history_id: Some("0Ya5j00003k2scQCAQ".into()), ..GrantKeys::default() };
        let c = s.open(EventTime(700 * MIN), None, USER, None, None, &hist);
        let e = Activity { login_history_id: SfId::parse("0Ya5j00003k2scQ"), ..act(701, "9.9.9.9") };
        assert_eq!(s.observe(USER, &e), Some((c, Attribution::Key)), "15 and 18 characters compare");
        assert_eq!(s.get(a).unwrap().attributed, [1, 0, 0]);
        assert_eq!(s.stats.by_key, 3);
    }

    #[test]
    fn a_sibling_row_of_the_same_request_follows_the_keyed_one() {
        let mut s = sessions();
        let a = s.open(EventTime(0), None, USER, None, Some("208.68.36.90"), &keys("LA"));
        let rest =
            Activity { login_key: Some("LA".into()), request_id: Some("TID:1".into()), ..act(5, "208.68.36.90") };
        assert_eq!(s.observe(USER, &rest), Some((a, Attribution::Key)));
        // ApiTotalUsage has no session keys, only the request id, and a
        // different IP here so the tuple cannot match.
        let usage = Activity { request_id: Some("TID:1".into()), ..act(5, "10.0.0.1") };
        assert_eq!(s.observe(USER, &usage), Some((a, Attribution::Request)));
    }

    #[test]
    fn the_tuple_matches_within_the_token_lifetime_and_app_only() {
        let mut s = sessions();
        let a = s.open(EventTime(0), None, USER, Some("Drift"), Some("208.68.36.90"), &GrantKeys::default());
        assert_eq!(s.observe(USER, &act(119, "208.68.36.90")), Some((a, Attribution::Tuple)));
        let other_app = Activity { app_name: Some("Other".into()), ..act(30, "208.68.36.90") };
        assert_eq!(s.observe(USER, &other_app), None, "both name an app, and they differ");
        assert_eq!(s.observe(USER, &act(121, "208.68.36.90")), None, "past the token lifetime");
        assert_eq!(s.observe(USER, &act(1, "Salesforce.com IP")), None, "never a tuple");
        assert_eq!(s.observe(USER, &act(2, "10.9.9.9")), None, "another IP");
        // A token lifetime later the unmatched records are given up on; the
        // user has a client-credentials grant, so each is a blind spot.
        s.observe("someone-else", &act(500, "1.2.3.4"));
        assert_eq!(s.stats.unattributed, 4);
        assert_eq!(s.waiting_count(), 1);
    }

    #[test]
    fn activity_before_its_grant_is_attributed_when_the_grant_arrives() {
        let mut s = sessions();
        let early = Activity { login_key: Some("LC".into()), ..act(10, "208.68.36.90") };
        assert_eq!(s.observe(USER, &early), None);
        assert_eq!(s.waiting_count(), 1);
        let c = s.open(EventTime(9 * MIN), None, USER, None, None, &keys("LC"));
        assert_eq!((s.stats.late, s.stats.by_key, s.waiting_count()), (1, 1, 0));
        assert_eq!(s.get(c).unwrap().attributed[0], 1);
        s.finish();
        assert_eq!(s.stats.unattributed, 0);
    }

    #[test]
    fn activity_of_users_without_a_grant_is_not_a_blind_spot() {
        let mut s = sessions();
        s.observe("human@acme.example", &act(0, "10.0.0.1"));
        s.finish();
        assert_eq!((s.stats.unattributed, s.waiting_count()), (0, 0));
    }

    #[test]
    fn sessions_and_waiting_records_are_bounded_and_evictions_counted() {
        let mut s = Sessions::new(SessionLimits { token_lifetime_ms: 120 * MIN, max_sessions: 2, max_waiting: 2 });
        s.open(EventTime(0), None, USER, None, None, &keys("L1"));
        s.open(EventTime(MIN), None, USER, None, None, &keys("L2"));
        s.open(EventTime(2 * MIN), None, USER, None, None, &keys("L3"));
        assert_eq!((s.stats.evicted_sessions, s.open_count()), (1, 2));
        assert!(!s.login_keys.contains_key("L1"), "the evicted session's keys go with it");
        let e = Activity { login_key: Some("L1".into()), ..act(3, "1.1.1.1") };
        assert_eq!(s.observe(USER, &e), None);
        for m in 4..6 {
            s.observe(USER, &act(m, "1.1.1.1"));
        }
        assert_eq!((s.waiting_count(), s.stats.evicted_waiting, s.stats.unattributed), (2, 1, 1));
    }
}
