//! The privilege model: users, their profile, permission sets and groups, and
//! what each grants, plus per-profile login IP ranges.
//!
//! Baselines come from inventory rows; SetupAuditTrail changes then move it in
//! event-time order. A user's effective privileged permissions are recomputed
//! for exactly the users a change can affect, and any newly gained privileged
//! permission stamps an `Escalation` with the change's time and cause.
//! Permission sets whose permissions were never seen count as granting nothing
//! ("unknown" is never upgraded to "privileged").

use crate::event::{
    key, profile_key, AuditChange, Escalation, EventTime, Inventory, IpRange, PermGrant, Perms, SfId, UserRef,
};
use hashbrown::HashMap;
use std::collections::BTreeSet;

#[derive(Debug, Default, Clone)]
struct UserState {
    username: Option<String>,
    /// Profile display name as last reported.
    profile: Option<String>,
    /// Lowercased permission set names assigned directly.
    perm_sets: BTreeSet<String>,
    /// Lowercased permission set group names assigned.
    groups: BTreeSet<String>,
    /// Effective privileged permissions.
    privs: Perms,
    escalation: Option<Escalation>,
}

#[derive(Debug, Default, Clone)]
struct PermSet {
    name: String,
    perms: Perms,
}

#[derive(Debug, Default, Clone)]
struct Group {
    name: String,
    members: BTreeSet<String>,
}

#[derive(Debug, Default, Clone)]
struct Profile {
    perms: Perms,
    ranges: Vec<IpRange>,
}

#[derive(Debug, Default, Clone)]
pub struct Privileges {
    users: HashMap<SfId, UserState>,
    /// Lowercased username or full name → id; `None` when two users share it.
    names: HashMap<String, Option<SfId>>,
    perm_sets: HashMap<String, PermSet>,
    groups: HashMap<String, Group>,
    profiles: HashMap<String, Profile>,
    /// Inventory rows arrived since the last `settle`.
    dirty: bool,
}

impl Privileges {
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    fn index_name(&mut self, name: &str, id: SfId) {
        let entry = self.names.entry(key(name).into_owned()).or_insert(Some(id));
        if *entry != Some(id) {
            *entry = None;
        }
    }

    /// The id a `Display` user reference names, if it can be known.
    pub fn resolve(&self, user: &UserRef) -> Option<SfId> {
        user.id.or_else(|| self.names.get(&*key(user.name.as_deref()?)).copied().flatten())
    }

    /// Like `resolve`, and starts tracking a user first seen with an id.
    pub fn resolve_or_create(&mut self, user: &UserRef) -> Option<SfId> {
        let id = self.resolve(user)?;
        self.users.entry(id).or_default();
        if let (Some(name), Some(_)) = (&user.name, user.id) {
            if name.contains('@') {
                self.users.entry(id).or_default().username.get_or_insert_with(|| name.to_string());
            }
            self.index_name(name, id);
        }
        Some(id)
    }

    pub fn knows(&self, id: SfId) -> bool {
        self.users.get(&id).is_some_and(|u| u.profile.is_some() || !u.perm_sets.is_empty() || !u.groups.is_empty())
    }

    pub fn username(&self, id: SfId) -> Option<String> {
        self.users.get(&id)?.username.clone()
    }

    pub fn profile(&self, id: SfId) -> Option<String> {
        self.users.get(&id)?.profile.clone()
    }

    pub fn profile_ranges(&self, profile: &str) -> &[IpRange] {
        self.profiles.get(&*profile_key(profile)).map(|p| p.ranges.as_slice()).unwrap_or(&[])
    }

    /// The escalation, if it happened within `window_ms` before `t`.
    pub fn escalation(&self, id: SfId, t: EventTime, window_ms: i64) -> Option<Escalation> {
        let e = self.users.get(&id)?.escalation.as_ref()?;
        (e.at <= t && t.0 - e.at.0 <= window_ms).then(|| e.clone())
    }

    fn profile_perms(&self, u: &UserState) -> Perms {
        u.profile.as_deref().and_then(|p| self.profiles.get(&*profile_key(p))).map(|p| p.perms).unwrap_or_default()
    }

    fn set_perms(&self, ps: &str) -> Perms {
        self.perm_sets.get(ps).map(|p| p.perms).unwrap_or_default()
    }

    /// Where each privileged permission the user holds comes from.
    /// The privileged permissions `id` holds and some current source grants,
    /// labels only (`via` left empty): what scoring needs. `grants` starts
    /// from this list, so a grant scores the same before and after it is
    /// described.
    pub fn held(&self, id: SfId) -> Vec<PermGrant> {
        let Some(u) = self.users.get(&id) else { return Vec::new() };
        if u.privs.is_empty() {
            return Vec::new();
        }
        let sourced = Perms(u.privs.0 & self.effective(u).0);
        sourced.labels().map(|label| PermGrant { label, via: String::new() }).collect()
    }

    /// `held`, with each permission's sources named in `via`.
    pub fn grants(&self, id: SfId) -> Vec<PermGrant> {
        let mut held = self.held(id);
        // Nothing to explain (the usual case): skip naming every source.
        let Some(u) = self.users.get(&id).filter(|_| !held.is_empty()) else { return held };
        let mut sources: Vec<(Perms, String)> = Vec::new();
        if let Some(p) = &u.profile {
            sources.push((self.profile_perms(u), format!("profile '{p}'")));
        }
        for ps in &u.perm_sets {
            let name = self.perm_sets.get(ps).map_or(ps.as_str(), |p| p.name.as_str());
            sources.push((self.set_perms(ps), format!("permission set '{name}'")));
        }
        for g in &u.groups {
            if let Some(group) = self.groups.get(g) {
                for m in &group.members {
                    let name = self.perm_sets.get(m).map_or(m.as_str(), |p| p.name.as_str());
                    sources
                        .push((self.set_perms(m), format!("permission set group '{}' (member '{name}')", group.name)));
                }
            }
        }
        // `held` keeps only permissions some source grants, so no `via` is empty.
        for grant in &mut held {
            let perm = Perms::from_label(grant.label);
            let via: Vec<&str> = sources.iter().filter(|(p, _)| p.contains(perm)).map(|(_, s)| s.as_str()).collect();
            grant.via = via.join(", ");
        }
        held
    }

    fn effective(&self, u: &UserState) -> Perms {
        let mut p = self.profile_perms(u);
        for ps in &u.perm_sets {
            p = p.union(self.set_perms(ps));
        }
        for g in &u.groups {
            for m in self.groups.get(g).into_iter().flat_map(|g| &g.members) {
                p = p.union(self.set_perms(m));
            }
        }
        Perms(p.0 & Perms::PRIVILEGED.0)
    }

    /// Recomputes the listed users; a gain stamps an escalation when `cause` is given.
    fn recompute(&mut self, ids: &[SfId], cause: Option<(EventTime, &str)>) {
        for id in ids {
            let Some(u) = self.users.get(id) else { continue };
            let now = self.effective(u);
            let gained = now.minus(u.privs);
            let u = self.users.get_mut(id).expect("present above");
            u.privs = now;
            if now.is_empty() {
                u.escalation = None;
            } else if let (false, Some((at, why))) = (gained.is_empty(), cause) {
                let labels: Vec<&str> = gained.labels().collect();
                u.escalation = Some(Escalation { at, via: format!("gained {} at {at} via {why}", labels.join(", ")) });
            }
        }
    }

    fn users_where(&self, pred: impl Fn(&UserState) -> bool) -> Vec<SfId> {
        let mut ids: Vec<SfId> = self.users.iter().filter(|(_, u)| pred(u)).map(|(id, _)| *id).collect();
        ids.sort();
        ids
    }

    pub fn apply_inventory(&mut self, inv: &Inventory) {
        match inv {
            Inventory::User { id, username, name, profile, .. } => {
                let u = self.users.entry(*id).or_default();
                if let Some(n) = username {
                    u.username = Some(n.to_string());
                }
                if let Some(p) = profile {
                    u.profile = Some(p.to_string());
                    let pk = profile_key(p).into_owned();
                    self.profiles.entry(pk).or_default();
                }
                for n in [username, name].into_iter().flatten() {
                    self.index_name(n, *id);
                }
            }
            Inventory::PermissionSetAssignment {
                user_id,
                username,
                perm_set,
                owned_by_profile,
                profile,
                perms,
                known,
            } => {
                let merge = |old: Perms| old.minus(*known).union(*perms);
                let u = self.users.entry(*user_id).or_default();
                if let Some(n) = username {
                    u.username.get_or_insert_with(|| n.to_string());
                }
                if *owned_by_profile {
                    let pname = profile.as_deref().unwrap_or(perm_set).to_string();
                    u.profile.get_or_insert_with(|| pname.clone());
                    let p = self.profiles.entry(profile_key(&pname).into_owned()).or_default();
                    p.perms = merge(p.perms);
                } else {
                    u.perm_sets.insert(key(perm_set).into_owned());
                    let ps = self
                        .perm_sets
                        .entry(key(perm_set).into_owned())
                        .or_insert_with(|| PermSet { name: perm_set.to_string(), perms: Perms::empty() });
                    ps.perms = merge(ps.perms);
                }
                if let Some(n) = username {
                    self.index_name(n, *user_id);
                }
            }
        }
        // A row can change what other users' sets grant; recompute everyone once,
        // lazily, when the first non-inventory event needs the model (`settle`).
        self.dirty = true;
    }

    /// Brings cached effective permissions up to date after inventory rows.
    pub fn settle(&mut self) {
        if self.dirty {
            self.dirty = false;
            let all = self.users_where(|_| true);
            self.recompute(&all, None);
        }
    }

    /// Applies one privilege or IP-range change; `false` when it names a user
    /// that cannot be resolved.
    pub fn apply_audit(&mut self, change: &AuditChange, t: EventTime, via: &str) -> bool {
        match change {
            AuditChange::PermSetAssignment { perm_set, user, assigned, group } => {
                let Some(id) = self.resolve_or_create(user) else { return false };
                let k = key(perm_set).into_owned();
                let u = self.users.get_mut(&id).expect("created by resolve_or_create");
                let set = if *group { &mut u.groups } else { &mut u.perm_sets };
                if *assigned {
                    set.insert(k.clone());
                } else {
                    set.remove(&k);
                }
                if *group {
                    self.groups.entry(k).or_insert_with(|| Group { name: perm_set.to_string(), ..Group::default() });
                } else {
                    self.perm_sets
                        .entry(k)
                        .or_insert_with(|| PermSet { name: perm_set.to_string(), perms: Perms::empty() });
                }
                let kind = if *group { "permission set group" } else { "permission set" };
                let verb = if *assigned { "assigned" } else { "unassigned" };
                self.recompute(&[id], Some((t, &format!("{kind} '{perm_set}' {verb} {via}"))));
            }
            AuditChange::PermSetPermission { perm, .. } | AuditChange::ProfilePermission { perm, .. }
                if perm.is_empty() =>
            {
                // A permission ccwatch does not track changes nobody's privilege.
            }
            AuditChange::PermSetPermission { perm_set, perm, label, enabled } => {
                let k = key(perm_set).into_owned();
                let ps = self
                    .perm_sets
                    .entry(k.clone())
                    .or_insert_with(|| PermSet { name: perm_set.to_string(), perms: Perms::empty() });
                ps.perms = if *enabled { ps.perms.union(*perm) } else { ps.perms.minus(*perm) };
                let groups: BTreeSet<&String> =
                    self.groups.iter().filter(|(_, g)| g.members.contains(&k)).map(|(n, _)| n).collect();
                let groups: BTreeSet<String> = groups.into_iter().cloned().collect();
                let ids = self.users_where(|u| u.perm_sets.contains(&k) || u.groups.iter().any(|g| groups.contains(g)));
                let state = if *enabled { "enabled" } else { "disabled" };
                self.recompute(&ids, Some((t, &format!("{label} {state} on permission set '{perm_set}' {via}"))));
            }
            AuditChange::ProfilePermission { profile, perm, label, enabled } => {
                let k = profile_key(profile).into_owned();
                let p = self.profiles.entry(k.clone()).or_default();
                p.perms = if *enabled { p.perms.union(*perm) } else { p.perms.minus(*perm) };
                let ids = self.users_where(|u| u.profile.as_deref().is_some_and(|p| profile_key(p) == k));
                let state = if *enabled { "enabled" } else { "disabled" };
                self.recompute(&ids, Some((t, &format!("{label} {state} on profile '{profile}' {via}"))));
            }
            AuditChange::GroupComponent { group, perm_set, added } => {
                let gk = key(group).into_owned();
                let g = self
                    .groups
                    .entry(gk.clone())
                    .or_insert_with(|| Group { name: group.to_string(), ..Group::default() });
                if *added {
                    g.members.insert(key(perm_set).into_owned());
                } else {
                    g.members.remove(&*key(perm_set));
                }
                let ids = self.users_where(|u| u.groups.contains(&gk));
                let verb = if *added { "added to" } else { "removed from" };
                self.recompute(&ids, Some((t, &format!("permission set '{perm_set}' {verb} group '{group}' {via}"))));
            }
            AuditChange::UserProfile { user, from, to } => {
                let Some(id) = self.resolve_or_create(user) else { return false };
                self.users.get_mut(&id).expect("created").profile = Some(to.to_string());
                self.profiles.entry(profile_key(to).into_owned()).or_default();
                self.recompute(&[id], Some((t, &format!("profile changed from '{from}' to '{to}' {via}"))));
            }
            AuditChange::LoginIpRange { profile, range, added } => {
                let p = self.profiles.entry(profile_key(profile).into_owned()).or_default();
                if *added {
                    if !p.ranges.contains(range) {
                        p.ranges.push(*range);
                    }
                } else {
                    p.ranges.retain(|r| r != range);
                }
            }
            _ => {}
        }
        true
    }
}
