//! The setup timeline: everything the Setup Audit Trail and the inventory
//! teach (privileges and profiles, profile IP ranges, flow enablement, run-as
//! assignments, IP relaxation), kept by event time so that any question is
//! answered *as of* a given time, whatever order the records arrived in.
//!
//! Records are kept in a log sorted by event time (arrival order among equal
//! times). `SetupModel` is the fold of a prefix of that log; the timeline
//! keeps one model at a cursor and moves it: forward by applying records,
//! backward by restoring the nearest snapshot before the wanted position and
//! applying forward from there. Snapshots are taken every `SNAPSHOT_EVERY`
//! timed records (never among the untimed inventory rows, which no question
//! falls between) and at most `MAX_SNAPSHOTS` are kept; a rewind past the oldest
//! restarts from the base model. A record inserted behind the cursor (an audit
//! record that arrives after logins later than it) rewinds the model, so later
//! questions see it; it is counted as `late` when a login later than it had
//! already been answered without it.
//!
//! Audit records are small and few (a few per admin change), so the retained
//! log fits in memory; it is still bounded (`max_records`): past the bound the
//! oldest records are folded into the base model and counted as evicted, so a
//! question about a time before them is answered with them applied.

use super::privileges::Privileges;
use crate::config::CorrelateConfig;
use crate::event::{
    key, Audit, AuditChange, EnablementObservation, EventTime, FlowChange, NormalizedEvent, Observation, UserRef,
};
use hashbrown::HashMap;
use std::collections::VecDeque;

/// Records between two snapshots of the model.
const SNAPSHOT_EVERY: usize = 256;
/// Snapshots kept; the oldest is dropped past this.
const MAX_SNAPSHOTS: usize = 32;

#[derive(Debug, Default, Clone)]
pub(super) struct AppState {
    /// The "Relax…" IP relaxation setting, once the app has one.
    pub(super) relaxed: Option<String>,
    /// The latest enablement or run-as assignment.
    pub(super) last_change: Option<FlowChange>,
}

/// `changeApplicationClientCredentialEnabled` rows rarely name the app. The
/// reference's advice is to correlate by time and actor: a run-as assignment
/// by the same admin within `BIND_WINDOW_MS` binds the enablement to that app.
/// Unbound, it applies to every app (and says so in its detail).
#[derive(Debug, Clone)]
pub(super) struct UnnamedEnable {
    pub(super) change: FlowChange,
    actor: String,
    pub(super) bound_app: Option<String>,
}

const BIND_WINDOW_MS: i64 = 15 * 60_000;

/// The most recent run-as assignment: app key, actor, time.
#[derive(Debug, Default, Clone)]
struct LastAssignment {
    app: String,
    actor: String,
    at: Option<EventTime>,
}

/// What the setup records up to some point in event time say.
#[derive(Debug, Default, Clone)]
pub(super) struct SetupModel {
    pub(super) privileges: Privileges,
    pub(super) apps: HashMap<String, AppState>,
    /// An enablement whose audit record named no app (the usual case).
    pub(super) unnamed_enable: Option<UnnamedEnable>,
    last_assignment: LastAssignment,
    /// Audit changes naming a user that could not be resolved to an id.
    pub(super) unresolved_users: u64,
}

/// The app key as the timeline and the correlator index apps.
pub(super) fn app_key(app: Option<&str>) -> std::borrow::Cow<'_, str> {
    app.map(key).unwrap_or_default()
}

fn audit_ref(a: &Audit) -> String {
    match &a.id {
        Some(id) => format!("by {} (audit {id})", a.actor_label()),
        None => format!("by {}", a.actor_label()),
    }
}

impl SetupModel {
    /// Applies one setup record; an enablement or run-as assignment returns
    /// what it says.
    fn apply(&mut self, ev: &NormalizedEvent, escalation_window_ms: i64) -> Option<Observation> {
        match ev {
            NormalizedEvent::Inventory(inv) => {
                self.privileges.apply_inventory(inv);
                None
            }
            NormalizedEvent::Audit(a) => {
                self.privileges.settle();
                self.apply_audit(a, escalation_window_ms)
            }
            NormalizedEvent::Login(_) | NormalizedEvent::Activity(_) => None,
        }
    }

    fn apply_audit(&mut self, a: &Audit, escalation_window_ms: i64) -> Option<Observation> {
        let via = audit_ref(a);
        match &a.change {
            AuditChange::ClientCredentialsEnabled { app, enabled } => {
                let change = (*enabled).then(|| FlowChange {
                    at: a.time,
                    what: match app {
                        Some(name) => format!("client credentials flow enabled for app '{name}' at {} {via}", a.time),
                        None => format!(
                            "client credentials flow enabled (app not named in the audit record) at {} {via}",
                            a.time
                        ),
                    },
                });
                match app {
                    Some(name) => {
                        self.apps.entry(app_key(Some(name)).into_owned()).or_default().last_change = change.clone()
                    }
                    None => {
                        let actor = a.actor_label();
                        let last = &self.last_assignment;
                        let bound_app = (last.actor == actor
                            && last.at.is_some_and(|at| (a.time.0 - at.0).abs() <= BIND_WINDOW_MS))
                        .then(|| last.app.clone());
                        self.unnamed_enable = change.clone().map(|change| UnnamedEnable { change, actor, bound_app });
                    }
                }
                change.map(|_| {
                    Observation::Enablement(Box::new(EnablementObservation {
                        audit: a.clone(),
                        app: app.as_deref().map(str::to_string),
                        run_as: None,
                        run_as_username: None,
                        privileges: Vec::new(),
                        escalation: None,
                    }))
                })
            }
            AuditChange::ClientCredentialsUser { user, app, .. } => {
                let id = self.privileges.resolve_or_create(user);
                if id.is_none() {
                    self.unresolved_users += 1;
                }
                let app_k = app_key(Some(app)).into_owned();
                let actor = a.actor_label();
                if let Some(u) = self.unnamed_enable.as_mut() {
                    if u.bound_app.is_none() && u.actor == actor && (a.time.0 - u.change.at.0).abs() <= BIND_WINDOW_MS {
                        u.bound_app = Some(app_k.clone());
                    }
                }
                self.last_assignment = LastAssignment { app: app_k.clone(), actor, at: Some(a.time) };
                let state = self.apps.entry(app_k).or_default();
                state.last_change = Some(FlowChange {
                    at: a.time,
                    what: format!("run-as user {user} assigned to app '{app}' at {} {via}", a.time),
                });
                let (privileges, escalation, username) = match id {
                    Some(id) => (
                        self.privileges.grants(id),
                        self.privileges.escalation(id, a.time, escalation_window_ms),
                        self.privileges.username(id),
                    ),
                    None => (Vec::new(), None, None),
                };
                Some(Observation::Enablement(Box::new(EnablementObservation {
                    audit: a.clone(),
                    app: Some(app.to_string()),
                    run_as: Some(UserRef { id: id.or(user.id), name: user.name.clone() }),
                    run_as_username: username,
                    privileges,
                    escalation,
                })))
            }
            AuditChange::IpRelaxation { app, relaxed, setting } => {
                self.apps.entry(app_key(Some(app)).into_owned()).or_default().relaxed =
                    relaxed.then(|| setting.to_string());
                None
            }
            AuditChange::Ignored | AuditChange::Unparsed => None,
            other => {
                if !self.privileges.apply_audit(other, a.time, &via) {
                    self.unresolved_users += 1;
                }
                None
            }
        }
    }

    /// The enablement or run-as assignment that most recently preceded `t`
    /// within `window_ms`, for `app`.
    pub(super) fn flow_change(&self, app: &str, t: EventTime, window_ms: i64) -> Option<FlowChange> {
        let recent = |c: &&FlowChange| c.at <= t && t.0 - c.at.0 <= window_ms;
        let named = self.apps.get(app).and_then(|a| a.last_change.as_ref()).filter(recent);
        let unnamed = self
            .unnamed_enable
            .as_ref()
            .filter(|u| u.bound_app.as_deref().is_none_or(|b| b == app))
            .filter(|u| recent(&&u.change))
            .map(|u| match &u.bound_app {
                Some(b) => FlowChange {
                    at: u.change.at,
                    what: format!(
                        "{}; bound to app '{b}' by a run-as assignment from the same admin within 15 minutes",
                        u.change.what
                    ),
                },
                None => u.change.clone(),
            });
        match (named, unnamed) {
            (Some(a), Some(b)) => Some(if b.at > a.at { b } else { a.clone() }),
            (a, b) => a.cloned().or(b),
        }
    }
}

/// Counters of the timeline's own work; the summary and metrics read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimelineStats {
    /// Setup records kept.
    pub records: usize,
    /// Records folded into the base model by the `max_records` bound.
    pub evicted: u64,
    /// Records that arrived after a later login had been answered without them.
    pub late: u64,
    /// Times the model was moved back to answer an earlier question.
    pub rewinds: u64,
}

pub(super) struct Timeline {
    /// Setup records by event time; arrival order among equal times.
    log: VecDeque<(EventTime, NormalizedEvent)>,
    /// The model before `log[0]`: evicted records folded in.
    base: SetupModel,
    /// The model after `log[..applied]`.
    model: SetupModel,
    applied: usize,
    /// `(position, model after log[..position])`, positions increasing, all > 0.
    snapshots: VecDeque<(usize, SetupModel)>,
    /// The latest time a question was answered as of.
    answered: EventTime,
    max_records: usize,
    escalation_window_ms: i64,
    stats: TimelineStats,
}

impl Timeline {
    pub(super) fn new(cfg: &CorrelateConfig) -> Timeline {
        Timeline {
            log: VecDeque::new(),
            base: SetupModel::default(),
            model: SetupModel::default(),
            applied: 0,
            snapshots: VecDeque::new(),
            answered: EventTime::BEGINNING,
            max_records: cfg.max_setup_records.max(1),
            escalation_window_ms: cfg.escalation_window_ms,
            stats: TimelineStats::default(),
        }
    }

    pub(super) fn stats(&self) -> TimelineStats {
        TimelineStats { records: self.log.len(), ..self.stats }
    }

    /// The model as it stands at the cursor (after the last `as_of` or `insert`).
    pub(super) fn model(&self) -> &SetupModel {
        &self.model
    }

    /// Number of records with event time `<= t`.
    fn position(&self, t: EventTime) -> usize {
        match self.log.back() {
            None => 0,
            Some((last, _)) if *last <= t => self.log.len(),
            Some(_) => self.log.partition_point(|(at, _)| *at <= t),
        }
    }

    /// Moves the model to everything recorded up to `t` (inclusive) and
    /// returns it.
    pub(super) fn as_of(&mut self, t: EventTime) -> &mut SetupModel {
        let k = self.position(t);
        self.seek(k);
        if t > self.answered {
            self.answered = t;
        }
        self.model.privileges.settle();
        &mut self.model
    }

    /// Records one setup record at its event time; an enablement or run-as
    /// assignment returns what it says, as of its own time.
    pub(super) fn insert(&mut self, ev: &NormalizedEvent) -> Option<Observation> {
        let t = ev.time();
        let pos = self.position(t);
        if t < self.answered {
            self.stats.late += 1;
        }
        // Snapshots past `pos` describe a log without this record; the rest
        // stay true, and `seek` rewinds to one of them if it must.
        while self.snapshots.back().is_some_and(|(p, _)| *p > pos) {
            self.snapshots.pop_back();
        }
        self.seek(pos);
        self.log.insert(pos, (t, ev.clone()));
        let obs = self.model.apply(ev, self.escalation_window_ms);
        self.applied = pos + 1;
        self.maybe_snapshot();
        if self.log.len() > self.max_records {
            self.evict();
        }
        obs
    }

    /// Moves the model to `log[..k]`.
    fn seek(&mut self, k: usize) {
        if k < self.applied {
            self.stats.rewinds += 1;
            match self.snapshots.iter().rev().find(|(p, _)| *p <= k) {
                Some((p, snap)) => {
                    self.model = snap.clone();
                    self.applied = *p;
                }
                None => {
                    self.model = self.base.clone();
                    self.applied = 0;
                }
            }
        }
        while self.applied < k {
            let (_, ev) = &self.log[self.applied];
            let _ = self.model.apply(ev, self.escalation_window_ms);
            self.applied += 1;
            self.maybe_snapshot();
        }
    }

    fn maybe_snapshot(&mut self) {
        // Inventory rows carry no time (they sit at the beginning), so no
        // question is ever answered between two of them: no snapshot there.
        if self.applied == 0 || self.log[self.applied - 1].0 == EventTime::BEGINNING {
            return;
        }
        let due = self.snapshots.back().map_or(0, |(p, _)| *p) + SNAPSHOT_EVERY;
        if self.applied >= due {
            self.snapshots.push_back((self.applied, self.model.clone()));
            if self.snapshots.len() > MAX_SNAPSHOTS {
                self.snapshots.pop_front();
            }
        }
    }

    /// Folds the oldest eighth of the log into the base model.
    fn evict(&mut self) {
        let n = (self.max_records / 8).max(1).min(self.log.len());
        for (_, ev) in self.log.drain(..n) {
            let _ = self.base.apply(&ev, self.escalation_window_ms);
        }
        self.stats.evicted += n as u64;
        self.snapshots.retain(|(p, _)| *p > n);
        for (p, _) in &mut self.snapshots {
            *p -= n;
        }
        if self.applied >= n {
            self.applied -= n;
        } else {
            self.model = self.base.clone();
            self.applied = 0;
        }
    }
}
