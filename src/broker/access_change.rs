//! Changes to the access database as data, so that a cluster can agree on them: what a
//! change did (`diff` of the database before and after), applied in the metadata group's
//! order on every node (`apply`), and what a node brings into a cluster (`merge`).
//!
//! Every record of the database has a key (a user's name, a permission's user and vhost,
//! a policy's vhost and name...). A change puts a record under its key or removes the
//! key. Applied to another state than the one it was taken from (a change made on another
//! node came first), a change still does what it says for its keys and leaves the rest
//! alone; `checked` then says whether the result holds together (a permission for a vhost
//! deleted meanwhile does not), and a change that leaves it broken is refused whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::access_db::{
    AccessData, AccessDb, GlobalParameterDef, ParameterDef, PermissionDef, PolicyDef,
    TopicPermissionDef, UserDef, VHostDef,
};

/// One record of the access database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessRecord {
    User(UserDef),
    VHost(VHostDef),
    Permission(PermissionDef),
    TopicPermission(TopicPermissionDef),
    Policy(PolicyDef),
    OperatorPolicy(PolicyDef),
    Parameter(ParameterDef),
    GlobalParameter(GlobalParameterDef),
}

/// What names a record: two records with the same key are versions of one thing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AccessKey {
    User(String),
    VHost(String),
    Permission {
        user: String,
        vhost: String,
    },
    TopicPermission {
        user: String,
        vhost: String,
        exchange: String,
    },
    Policy {
        vhost: String,
        name: String,
    },
    OperatorPolicy {
        vhost: String,
        name: String,
    },
    Parameter {
        vhost: String,
        component: String,
        name: String,
    },
    GlobalParameter(String),
}

/// One change: a record put under its key, or a key removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessChange {
    Put(AccessRecord),
    Remove(AccessKey),
}

// Each kind's key.
fn user_key(u: &UserDef) -> AccessKey {
    AccessKey::User(u.name.clone())
}
fn vhost_key(v: &VHostDef) -> AccessKey {
    AccessKey::VHost(v.name.clone())
}
fn permission_key(p: &PermissionDef) -> AccessKey {
    AccessKey::Permission {
        user: p.user.clone(),
        vhost: p.vhost.clone(),
    }
}
fn topic_permission_key(t: &TopicPermissionDef) -> AccessKey {
    AccessKey::TopicPermission {
        user: t.user.clone(),
        vhost: t.vhost.clone(),
        exchange: t.exchange.clone(),
    }
}
fn policy_key(p: &PolicyDef) -> AccessKey {
    AccessKey::Policy {
        vhost: p.vhost.clone(),
        name: p.name.clone(),
    }
}
fn operator_policy_key(p: &PolicyDef) -> AccessKey {
    AccessKey::OperatorPolicy {
        vhost: p.vhost.clone(),
        name: p.name.clone(),
    }
}
fn parameter_key(p: &ParameterDef) -> AccessKey {
    AccessKey::Parameter {
        vhost: p.vhost.clone(),
        component: p.component.clone(),
        name: p.name.clone(),
    }
}
fn global_parameter_key(g: &GlobalParameterDef) -> AccessKey {
    AccessKey::GlobalParameter(g.name.clone())
}

impl AccessRecord {
    pub fn key(&self) -> AccessKey {
        match self {
            AccessRecord::User(u) => user_key(u),
            AccessRecord::VHost(v) => vhost_key(v),
            AccessRecord::Permission(p) => permission_key(p),
            AccessRecord::TopicPermission(t) => topic_permission_key(t),
            AccessRecord::Policy(p) => policy_key(p),
            AccessRecord::OperatorPolicy(p) => operator_policy_key(p),
            AccessRecord::Parameter(p) => parameter_key(p),
            AccessRecord::GlobalParameter(g) => global_parameter_key(g),
        }
    }
}

/// Every record of `data` by key.
fn records(data: &AccessData) -> BTreeMap<AccessKey, AccessRecord> {
    let all = (data.users.iter().cloned().map(AccessRecord::User))
        .chain(data.vhosts.iter().cloned().map(AccessRecord::VHost))
        .chain(
            data.permissions
                .iter()
                .cloned()
                .map(AccessRecord::Permission),
        )
        .chain((data.topic_permissions.iter().cloned()).map(AccessRecord::TopicPermission))
        .chain(data.policies.iter().cloned().map(AccessRecord::Policy))
        .chain((data.operator_policies.iter().cloned()).map(AccessRecord::OperatorPolicy))
        .chain(data.parameters.iter().cloned().map(AccessRecord::Parameter))
        .chain((data.global_parameters.iter().cloned()).map(AccessRecord::GlobalParameter));
    all.map(|r| (r.key(), r)).collect()
}

/// The changes that turn `old` into `new`: removals first, then what `new` puts.
pub fn diff(old: &AccessData, new: &AccessData) -> Vec<AccessChange> {
    let (old, new) = (records(old), records(new));
    let removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .map(AccessChange::Remove);
    let put = new
        .iter()
        .filter(|(k, r)| old.get(*k) != Some(*r))
        .map(|(_, r)| AccessChange::Put(r.clone()));
    removed.chain(put).collect()
}

/// Puts `item` in `list` in place of the one with its key (at the end, as
/// `AccessDb::set_policy` does).
fn upsert<T>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> AccessKey) {
    let k = key(&item);
    list.retain(|x| key(x) != k);
    list.push(item);
}

/// Applies `changes` to `data` in order (no check: see `checked`).
pub fn apply(data: &mut AccessData, changes: &[AccessChange]) {
    for change in changes {
        match change.clone() {
            AccessChange::Put(record) => put(data, record),
            AccessChange::Remove(key) => remove(data, &key),
        }
    }
}

fn put(data: &mut AccessData, record: AccessRecord) {
    match record {
        AccessRecord::User(u) => upsert(&mut data.users, u, user_key),
        AccessRecord::VHost(v) => upsert(&mut data.vhosts, v, vhost_key),
        AccessRecord::Permission(p) => upsert(&mut data.permissions, p, permission_key),
        AccessRecord::TopicPermission(t) => {
            upsert(&mut data.topic_permissions, t, topic_permission_key)
        }
        AccessRecord::Policy(p) => upsert(&mut data.policies, p, policy_key),
        AccessRecord::OperatorPolicy(p) => {
            upsert(&mut data.operator_policies, p, operator_policy_key)
        }
        AccessRecord::Parameter(p) => upsert(&mut data.parameters, p, parameter_key),
        AccessRecord::GlobalParameter(g) => {
            upsert(&mut data.global_parameters, g, global_parameter_key)
        }
    }
}

/// Removes the record of `key` (no kind's key equals another kind's).
fn remove(data: &mut AccessData, key: &AccessKey) {
    data.users.retain(|x| user_key(x) != *key);
    data.vhosts.retain(|x| vhost_key(x) != *key);
    data.permissions.retain(|x| permission_key(x) != *key);
    data.topic_permissions
        .retain(|x| topic_permission_key(x) != *key);
    data.policies.retain(|x| policy_key(x) != *key);
    data.operator_policies
        .retain(|x| operator_policy_key(x) != *key);
    data.parameters.retain(|x| parameter_key(x) != *key);
    data.global_parameters
        .retain(|x| global_parameter_key(x) != *key);
}

/// Adds to `into` every record of `from` whose key `into` does not have (a node joining a
/// cluster keeps what it brings unless the cluster has its own version).
pub fn merge(into: &mut AccessData, from: &AccessData) {
    let have = records(into);
    for (key, record) in records(from) {
        if !have.contains_key(&key) {
            put(into, record);
        }
    }
}

/// The database `data` makes, if it holds together: users' hashes readable, permissions
/// for users and vhosts that exist with patterns that compile, policies and parameters
/// in vhosts that exist.
pub fn checked(data: AccessData) -> Result<AccessDb, String> {
    let orphan = (data.policies.iter().chain(&data.operator_policies))
        .map(|p| (&p.vhost, format!("policy '{}'", p.name)))
        .chain((data.parameters.iter()).map(|p| (&p.vhost, format!("parameter '{}'", p.name))))
        .find(|(vhost, _)| !data.vhosts.iter().any(|v| &v.name == *vhost));
    if let Some((vhost, what)) = orphan {
        return Err(format!("{what}: no vhost '{vhost}'"));
    }
    AccessDb::from_data(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> AccessData {
        AccessDb::first_start("guest", "guest", "/").to_data()
    }

    fn vhost(name: &str) -> VHostDef {
        VHostDef {
            name: name.into(),
            description: String::new(),
            tags: Vec::new(),
            limits: Default::default(),
        }
    }

    fn permission(user: &str, vhost: &str) -> PermissionDef {
        PermissionDef {
            user: user.into(),
            vhost: vhost.into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: "^amq\\.".into(),
        }
    }

    #[test]
    fn applying_the_diff_turns_old_into_new() {
        let old = base();
        let mut db = AccessDb::from_data(old.clone()).unwrap();
        db.put_vhost(vhost("v"));
        db.put_user_password("alice", "pw", vec!["monitoring".into()]);
        db.set_permission(permission("alice", "v")).unwrap();
        db.delete_user("guest");
        let new = db.to_data();
        let changes = diff(&old, &new);
        assert!(changes.contains(&AccessChange::Remove(AccessKey::User("guest".into()))));
        let mut applied = old.clone();
        apply(&mut applied, &changes);
        assert_eq!(records(&applied), records(&new));
        assert!(checked(applied).is_ok());
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn a_change_applied_to_another_state_keeps_the_others_changes() {
        // Two nodes change different users of the same state; both changes apply.
        let start = base();
        let mut a = AccessDb::from_data(start.clone()).unwrap();
        a.put_user_password("a", "pw", vec![]);
        let mut b = AccessDb::from_data(start.clone()).unwrap();
        b.put_user_password("b", "pw", vec![]);
        let mut cluster = start.clone();
        apply(&mut cluster, &diff(&start, &a.to_data()));
        apply(&mut cluster, &diff(&start, &b.to_data()));
        let names: Vec<&str> = cluster.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["guest", "a", "b"]);
    }

    #[test]
    fn a_permission_for_a_vhost_deleted_meanwhile_does_not_hold_together() {
        let mut start = base();
        start.vhosts.push(vhost("v"));
        let mut granted = start.clone();
        granted.permissions.push(permission("guest", "v"));
        let grant = diff(&start, &granted);
        let mut cluster = start.clone();
        apply(
            &mut cluster,
            &[AccessChange::Remove(AccessKey::VHost("v".into()))],
        );
        apply(&mut cluster, &grant);
        assert_eq!(checked(cluster).unwrap_err(), "no vhost 'v'");
        // A policy too.
        let mut lone = base();
        lone.policies.push(PolicyDef {
            vhost: "gone".into(),
            name: "p".into(),
            pattern: ".*".into(),
            apply_to: "queues".into(),
            definition: Default::default(),
            priority: 0,
        });
        assert_eq!(checked(lone).unwrap_err(), "policy 'p': no vhost 'gone'");
    }

    #[test]
    fn merge_keeps_the_clusters_version_and_adds_what_it_lacks() {
        let mut cluster = base();
        let mut joining = AccessDb::first_start("guest", "other", "/");
        joining.put_vhost(vhost("mine"));
        joining.put_user_password("me", "pw", vec![]);
        let guest_hash = cluster.users[0].password_hash.clone();
        merge(&mut cluster, &joining.to_data());
        assert_eq!(cluster.users.len(), 2);
        assert_eq!(cluster.users[0].password_hash, guest_hash);
        assert!(cluster.vhosts.iter().any(|v| v.name == "mine"));
        assert!(checked(cluster).is_ok());
    }
}
