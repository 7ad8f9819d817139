//! The access database: users (password hashes, tags, limits), vhosts (description, tags,
//! limits), permissions and topic permissions — everything RabbitMQ keeps in its internal
//! auth backend and vhost table. It lives in `access.json` in the data dir, sealed with a
//! CRC line and replaced atomically (write temporary file, fsync, rename, fsync dir), as
//! `definitions.toml` is.
//!
//! Every change is validated before anything moves: a change that fails (a pattern that
//! does not compile, a hash that is not base64, a permission for a vhost that does not
//! exist) leaves the database as it was. Compiled permissions (`Grants`) are rebuilt for
//! the (user, vhost) pairs a change touches.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::definitions::{seal, unseal, write_rendered};
use super::grants::{self, Grants};
use super::password::{HashAlgorithm, PasswordHash};

const FILE: &str = "access.json";

/// Tags RabbitMQ gives meaning to; others are kept but mean nothing.
pub const KNOWN_TAGS: &[&str] = &[
    "administrator",
    "monitoring",
    "policymaker",
    "management",
    "impersonator",
];

/// A limit as RabbitMQ stores it: absent or negative means none.
pub type Limit = Option<i64>;

/// The limit's value when it limits anything.
pub fn limit_value(l: Limit) -> Option<u64> {
    l.filter(|v| *v >= 0).map(|v| v as u64)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Limit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channels: Limit,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VHostLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Limit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queues: Limit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDef {
    pub name: String,
    /// Base64 of salt ++ digest; "" for a user without a password.
    pub password_hash: String,
    pub hashing_algorithm: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub limits: UserLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VHostDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub limits: VHostLimits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermissionDef {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// A policy as RabbitMQ defines it (policy.rs applies them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDef {
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to")]
    pub apply_to: String,
    pub definition: serde_json::Map<String, serde_json::Value>,
    pub priority: i64,
}

/// A runtime parameter (other than vhost limits, which live in the vhost's record):
/// kept and exported as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterDef {
    pub vhost: String,
    pub component: String,
    pub name: String,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalParameterDef {
    pub name: String,
    pub value: serde_json::Value,
}

/// What `access.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessData {
    #[serde(default)]
    pub users: Vec<UserDef>,
    #[serde(default)]
    pub vhosts: Vec<VHostDef>,
    #[serde(default)]
    pub permissions: Vec<PermissionDef>,
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermissionDef>,
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    #[serde(default)]
    pub operator_policies: Vec<PolicyDef>,
    #[serde(default)]
    pub parameters: Vec<ParameterDef>,
    #[serde(default)]
    pub global_parameters: Vec<GlobalParameterDef>,
}

/// A user as the database holds it in memory.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub def: UserDef,
    pub hash: PasswordHash,
}

/// The database in memory: definitions by name, and compiled grants per (user, vhost).
#[derive(Debug, Default, Clone)]
pub struct AccessDb {
    users: BTreeMap<String, UserEntry>,
    vhosts: BTreeMap<String, VHostDef>,
    permissions: BTreeMap<(String, String), PermissionDef>,
    topic_permissions: BTreeMap<(String, String, String), TopicPermissionDef>,
    grants: HashMap<(String, String), Arc<Grants>>,
    /// Policies, operator policies and parameters, kept as given (validated on import).
    pub policies: Vec<PolicyDef>,
    pub operator_policies: Vec<PolicyDef>,
    pub parameters: Vec<ParameterDef>,
    pub global_parameters: Vec<GlobalParameterDef>,
}

/// A user from its definition, its hash checked.
fn user_entry(def: UserDef) -> Result<UserEntry, String> {
    let algorithm = if def.hashing_algorithm.is_empty() {
        HashAlgorithm::Sha256
    } else {
        HashAlgorithm::from_rabbit_name(&def.hashing_algorithm).ok_or_else(|| {
            format!(
                "user '{}': unknown hashing_algorithm '{}'",
                def.name, def.hashing_algorithm
            )
        })?
    };
    let hash = PasswordHash::from_base64(algorithm, &def.password_hash)
        .map_err(|e| format!("user '{}': {e}", def.name))?;
    Ok(UserEntry { def, hash })
}

impl AccessDb {
    /// Builds the database from its stored form; the error names what is wrong.
    pub fn from_data(data: AccessData) -> Result<AccessDb, String> {
        let mut db = AccessDb::default();
        for v in data.vhosts {
            db.vhosts.insert(v.name.clone(), v);
        }
        for u in data.users {
            db.users.insert(u.name.clone(), user_entry(u)?);
        }
        for p in data.permissions {
            db.check_pair(&p.user, &p.vhost)?;
            db.permissions.insert((p.user.clone(), p.vhost.clone()), p);
        }
        for t in data.topic_permissions {
            db.check_pair(&t.user, &t.vhost)?;
            db.topic_permissions
                .insert((t.user.clone(), t.vhost.clone(), t.exchange.clone()), t);
        }
        db.policies = data.policies;
        db.operator_policies = data.operator_policies;
        db.parameters = data.parameters;
        db.global_parameters = data.global_parameters;
        let pairs: Vec<(String, String)> = db.permissions.keys().cloned().collect();
        for (user, vhost) in pairs {
            db.rebuild_grants(&user, &vhost)?;
        }
        Ok(db)
    }

    /// The stored form.
    pub fn to_data(&self) -> AccessData {
        AccessData {
            users: self.users.values().map(|u| u.def.clone()).collect(),
            vhosts: self.vhosts.values().cloned().collect(),
            permissions: self.permissions.values().cloned().collect(),
            topic_permissions: self.topic_permissions.values().cloned().collect(),
            policies: self.policies.clone(),
            operator_policies: self.operator_policies.clone(),
            parameters: self.parameters.clone(),
            global_parameters: self.global_parameters.clone(),
        }
    }

    /// A first start's database: one administrator with full permissions on one vhost.
    pub fn first_start(user: &str, password: &str, vhost: &str) -> AccessDb {
        let mut db = AccessDb::default();
        db.put_vhost(VHostDef {
            name: vhost.into(),
            description: "Default virtual host".into(),
            tags: Vec::new(),
            limits: VHostLimits::default(),
        });
        db.put_user_password(user, password, vec!["administrator".into()]);
        db.set_permission(PermissionDef {
            user: user.into(),
            vhost: vhost.into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        })
        .expect("literal patterns, existing user and vhost");
        db
    }

    fn check_pair(&self, user: &str, vhost: &str) -> Result<(), String> {
        if !self.users.contains_key(user) {
            return Err(format!("no user '{user}'"));
        }
        if !self.vhosts.contains_key(vhost) {
            return Err(format!("no vhost '{vhost}'"));
        }
        Ok(())
    }

    /// Recompiles the grants of (user, vhost), or drops them without a permission.
    fn rebuild_grants(&mut self, user: &str, vhost: &str) -> Result<(), String> {
        let key = (user.to_owned(), vhost.to_owned());
        let Some(p) = self.permissions.get(&key) else {
            self.grants.remove(&key);
            return Ok(());
        };
        let topics: Vec<(&str, &str, &str)> = self
            .topic_permissions
            .values()
            .filter(|t| t.user == user && t.vhost == vhost)
            .map(|t| (t.exchange.as_str(), t.write.as_str(), t.read.as_str()))
            .collect();
        let g = Grants::new(user, vhost, (&p.configure, &p.write, &p.read), &topics)
            .map_err(|e| format!("permissions of user '{user}' in vhost '{vhost}': {e}"))?;
        self.grants.insert(key, Arc::new(g));
        Ok(())
    }

    pub fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    pub fn users(&self) -> impl Iterator<Item = &UserEntry> {
        self.users.values()
    }

    pub fn vhost(&self, name: &str) -> Option<&VHostDef> {
        self.vhosts.get(name)
    }

    pub fn vhosts(&self) -> impl Iterator<Item = &VHostDef> {
        self.vhosts.values()
    }

    pub fn permissions(&self) -> impl Iterator<Item = &PermissionDef> {
        self.permissions.values()
    }

    pub fn topic_permissions(&self) -> impl Iterator<Item = &TopicPermissionDef> {
        self.topic_permissions.values()
    }

    /// The compiled permissions of `user` in `vhost`, if it has any there.
    pub fn grants(&self, user: &str, vhost: &str) -> Option<Arc<Grants>> {
        self.grants
            .get(&(user.to_owned(), vhost.to_owned()))
            .cloned()
    }

    /// Adds or replaces a vhost's record (not its files: the broker opens those).
    pub fn put_vhost(&mut self, def: VHostDef) {
        self.vhosts.insert(def.name.clone(), def);
    }

    /// Removes a vhost and every permission on it.
    pub fn delete_vhost(&mut self, name: &str) -> bool {
        self.policies.retain(|p| p.vhost != name);
        self.operator_policies.retain(|p| p.vhost != name);
        self.parameters.retain(|p| p.vhost != name);
        self.permissions.retain(|(_, v), _| v != name);
        self.topic_permissions.retain(|(_, v, _), _| v != name);
        self.grants.retain(|(_, v), _| v != name);
        self.vhosts.remove(name).is_some()
    }

    /// Adds or replaces a user with a password hashed the default way (SHA-256).
    pub fn put_user_password(&mut self, name: &str, password: &str, tags: Vec<String>) {
        let hash = PasswordHash::hash_new(password, HashAlgorithm::Sha256);
        let limits = self
            .users
            .get(name)
            .map(|u| u.def.limits.clone())
            .unwrap_or_default();
        let def = UserDef {
            name: name.into(),
            password_hash: hash.to_base64(),
            hashing_algorithm: hash.algorithm.rabbit_name().into(),
            tags,
            limits,
        };
        self.users.insert(name.into(), UserEntry { def, hash });
    }

    /// Adds or replaces a user from its definition (an imported hash).
    pub fn put_user(&mut self, def: UserDef) -> Result<(), String> {
        let entry = user_entry(def)?;
        self.users.insert(entry.def.name.clone(), entry);
        Ok(())
    }

    /// Removes a user and its permissions.
    pub fn delete_user(&mut self, name: &str) -> bool {
        self.permissions.retain(|(u, _), _| u != name);
        self.topic_permissions.retain(|(u, _, _), _| u != name);
        self.grants.retain(|(u, _), _| u != name);
        self.users.remove(name).is_some()
    }

    /// Sets a user's permissions in a vhost (both must exist; patterns must compile).
    pub fn set_permission(&mut self, p: PermissionDef) -> Result<(), String> {
        self.check_pair(&p.user, &p.vhost)?;
        for pattern in [&p.configure, &p.write, &p.read] {
            grants::compile(pattern).map_err(|e| {
                format!(
                    "permissions of user '{}' in vhost '{}': {e}",
                    p.user, p.vhost
                )
            })?;
        }
        let (user, vhost) = (p.user.clone(), p.vhost.clone());
        self.permissions.insert((user.clone(), vhost.clone()), p);
        self.rebuild_grants(&user, &vhost)
    }

    pub fn clear_permission(&mut self, user: &str, vhost: &str) -> bool {
        let key = (user.to_owned(), vhost.to_owned());
        self.grants.remove(&key);
        self.permissions.remove(&key).is_some()
    }

    /// Sets a user's topic permission on one exchange of a vhost.
    pub fn set_topic_permission(&mut self, t: TopicPermissionDef) -> Result<(), String> {
        self.check_pair(&t.user, &t.vhost)?;
        for pattern in [&t.write, &t.read] {
            grants::compile(pattern).map_err(|e| {
                format!(
                    "topic permissions of user '{}' in vhost '{}': {e}",
                    t.user, t.vhost
                )
            })?;
        }
        let (user, vhost) = (t.user.clone(), t.vhost.clone());
        self.topic_permissions
            .insert((user.clone(), vhost.clone(), t.exchange.clone()), t);
        self.rebuild_grants(&user, &vhost)
    }

    /// Removes every topic permission of `user` in `vhost` (RabbitMQ's
    /// `clear_topic_permissions`); false if there was none.
    pub fn clear_topic_permissions(&mut self, user: &str, vhost: &str) -> Result<bool, String> {
        let before = self.topic_permissions.len();
        self.topic_permissions
            .retain(|(u, v, _), _| (u.as_str(), v.as_str()) != (user, vhost));
        if self.topic_permissions.len() == before {
            return Ok(false);
        }
        self.rebuild_grants(user, vhost)?;
        Ok(true)
    }

    /// Adds or replaces a policy (or, with `operator`, an operator policy) of a vhost.
    pub fn set_policy(&mut self, p: PolicyDef, operator: bool) -> Result<(), String> {
        if !self.vhosts.contains_key(&p.vhost) {
            return Err(format!("no vhost '{}'", p.vhost));
        }
        super::policy::validate(&p, operator)
            .map_err(|e| format!("policy '{}' in vhost '{}': {e}", p.name, p.vhost))?;
        let list = if operator {
            &mut self.operator_policies
        } else {
            &mut self.policies
        };
        list.retain(|q| (&q.vhost, &q.name) != (&p.vhost, &p.name));
        list.push(p);
        Ok(())
    }

    pub fn clear_policy(&mut self, vhost: &str, name: &str, operator: bool) -> bool {
        let list = if operator {
            &mut self.operator_policies
        } else {
            &mut self.policies
        };
        let before = list.len();
        list.retain(|q| (q.vhost.as_str(), q.name.as_str()) != (vhost, name));
        list.len() != before
    }

    /// The policies and operator policies of one vhost, compiled.
    pub fn policy_set(&self, vhost: &str) -> super::policy::PolicySet {
        super::policy::PolicySet::new(vhost, &self.policies, &self.operator_policies)
    }

    /// Do the policies of `vhost` differ between `self` and `other`?
    pub fn policies_differ(&self, other: &AccessDb, vhost: &str) -> bool {
        let of = |db: &AccessDb| -> Vec<PolicyDef> {
            db.policies
                .iter()
                .chain(db.operator_policies.iter())
                .filter(|p| p.vhost == vhost)
                .cloned()
                .collect()
        };
        of(self) != of(other)
    }

    pub fn set_user_limits(&mut self, user: &str, limits: UserLimits) -> Result<(), String> {
        let u = self
            .users
            .get_mut(user)
            .ok_or_else(|| format!("no user '{user}'"))?;
        u.def.limits = limits;
        Ok(())
    }

    pub fn set_vhost_limits(&mut self, vhost: &str, limits: VHostLimits) -> Result<(), String> {
        let v = self
            .vhosts
            .get_mut(vhost)
            .ok_or_else(|| format!("no vhost '{vhost}'"))?;
        v.limits = limits;
        Ok(())
    }

    /// The sealed text of `access.json`: CPU work only, so callers may render under a
    /// lock and write after.
    pub fn render(&self) -> io::Result<String> {
        let body = serde_json::to_string_pretty(&self.to_data()).map_err(io::Error::other)?;
        Ok(seal(&body))
    }
}

/// Loads `access.json` from the data dir; `None` when there is none (a first start).
pub fn load(dir: &Path) -> io::Result<Option<AccessDb>> {
    let text = match std::fs::read_to_string(dir.join(FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, format!("{FILE}: {e}"));
    let body = unseal(&text).map_err(invalid)?;
    let data: AccessData = serde_json::from_str(body).map_err(|e| invalid(e.to_string()))?;
    AccessDb::from_data(data).map(Some).map_err(invalid)
}

/// Writes `access.json` (text from `AccessDb::render`) atomically and durably.
pub fn store_rendered(dir: &Path, text: &str) -> io::Result<()> {
    write_rendered(dir, FILE, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_then_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = AccessDb::first_start("guest", "guest", "/");
        assert!(db.user("guest").unwrap().hash.verify("guest"));
        assert!(db.grants("guest", "/").is_some());
        db.put_vhost(VHostDef {
            name: "t".into(),
            description: String::new(),
            tags: vec![],
            limits: VHostLimits {
                max_connections: Some(2),
                max_queues: None,
            },
        });
        db.set_topic_permission(TopicPermissionDef {
            user: "guest".into(),
            vhost: "/".into(),
            exchange: "amq.topic".into(),
            write: "^a".into(),
            read: ".*".into(),
        })
        .unwrap();
        store_rendered(dir.path(), &db.render().unwrap()).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(back.to_data(), db.to_data());
        assert!(back.user("guest").unwrap().hash.verify("guest"));
        assert!(back
            .grants("guest", "/")
            .unwrap()
            .check_topic(grants::Perm::Write, "amq.topic", "b")
            .is_err());
    }

    #[test]
    fn bad_changes_change_nothing() {
        let mut db = AccessDb::first_start("admin", "pw", "/");
        let before = db.to_data();
        let bad = PermissionDef {
            user: "admin".into(),
            vhost: "/".into(),
            configure: "(".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        assert!(db.set_permission(bad.clone()).is_err());
        assert!(db
            .set_permission(PermissionDef {
                vhost: "nope".into(),
                configure: ".*".into(),
                ..bad
            })
            .is_err());
        assert!(db
            .put_user(UserDef {
                name: "x".into(),
                password_hash: "%%%".into(),
                hashing_algorithm: "rabbit_password_hashing_sha256".into(),
                tags: vec![],
                limits: UserLimits::default(),
            })
            .is_err());
        assert_eq!(db.to_data(), before);
    }
}
