//! Changing the access database (users, vhosts, permissions, policies, parameters), and
//! what a change does around it: a vhost added opens its model and directory, a vhost
//! removed shuts its connections and deletes its files, a user removed loses its
//! connections, and open connections, queue limits and policies see the change at once.
//!
//! On a node in a cluster the change is not made here first: it is taken as data
//! (`access_change::diff`), written to the metadata group through the cluster's hook, and
//! made on every node, this one included, when the group applies it (`mirror_access`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use super::super::access_change::{self, AccessChange};
use super::super::access_db::{self, AccessData, AccessDb, VHostDef};
use super::super::error::BrokerError;
use super::super::vhost::{SharedWithBroker, VHost};
use super::super::OpenReport;
use super::{vhost_dir, BrokerHandle, VHostHandle};

/// The cluster's part in access changes (set once by the server on a node in a cluster).
pub trait AccessReplication: Send + Sync {
    /// Writes `changes` to the cluster and waits until this node has made them (through
    /// `mirror_access`). An error if the cluster refused them (they no longer hold
    /// together with a change that came first) or did not answer in time.
    fn replicate(&self, changes: Vec<AccessChange>) -> Result<(), BrokerError>;
}

impl BrokerHandle {
    /// Changes the access database: `f` works on a copy; if it succeeds the copy is
    /// written to `access.json` and then replaces the database. If `f` or the write
    /// fails, nothing changes. In a cluster, the change goes through the cluster first.
    pub fn update_access<R>(
        &self,
        f: impl FnOnce(&mut AccessDb) -> Result<R, String>,
    ) -> Result<R, BrokerError> {
        if let Some(hook) = self.0.access_hook.get() {
            let (before, mut copy) = {
                let db = self.access();
                (db.to_data(), db.clone())
            };
            let r = f(&mut copy).map_err(BrokerError::PreconditionFailed)?;
            let changes = access_change::diff(&before, &copy.to_data());
            if !changes.is_empty() {
                hook.replicate(changes)?;
            }
            return Ok(r);
        }
        let writer = self.writer();
        let mut copy = self.access().clone();
        let r = f(&mut copy).map_err(BrokerError::PreconditionFailed)?;
        self.install_access(&writer, copy)?;
        Ok(r)
    }

    /// Puts access changes in the cluster's hands (set once, before clients connect).
    pub fn replicate_access(&self, hook: Arc<dyn AccessReplication>) -> bool {
        self.0.access_hook.set(hook).is_ok()
    }

    /// Makes the access database `data` (what the cluster agreed on), with what goes
    /// around it; false if it was that already.
    pub fn mirror_access(&self, data: AccessData) -> Result<bool, BrokerError> {
        let writer = self.writer();
        if access_change::diff(&self.access().to_data(), &data).is_empty() {
            return Ok(false);
        }
        let db = access_change::checked(data).map_err(BrokerError::PreconditionFailed)?;
        self.install_access(&writer, db)?;
        Ok(true)
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.0.access_writer.lock().expect("access writer")
    }

    /// Replaces the database with `new` under the writer lock: the vhosts it adds are
    /// opened first (if one cannot be, nothing changes), `new` is written to
    /// `access.json`, then it replaces the database, and then the vhosts and users it
    /// removes are shut down.
    fn install_access(
        &self,
        writer: &MutexGuard<'_, ()>,
        new: AccessDb,
    ) -> Result<(), BrokerError> {
        let (added, gone_vhosts, gone_users) = {
            let old = self.access();
            let added: Vec<String> = (new.vhosts())
                .filter(|v| old.vhost(&v.name).is_none())
                .map(|v| v.name.clone())
                .collect();
            let gone_vhosts: Vec<String> = (old.vhosts())
                .filter(|v| new.vhost(&v.name).is_none())
                .map(|v| v.name.clone())
                .collect();
            let gone_users: Vec<String> = (old.users())
                .filter(|u| new.user(&u.def.name).is_none())
                .map(|u| u.def.name.clone())
                .collect();
            (added, gone_vhosts, gone_users)
        };
        for name in &added {
            self.open_vhost_model(writer, name)?;
        }
        let text = new.render().map_err(BrokerError::storage)?;
        access_db::store_rendered(&self.0.config.data_dir, &text).map_err(BrokerError::storage)?;
        let old = {
            let mut db = self.0.access.write().expect("access lock");
            // Bumped while the write lock is held: a reader sees the epoch that goes with
            // the database it read (see `open_vhost`).
            self.0.access_epoch.fetch_add(1, Ordering::AcqRel);
            std::mem::replace(&mut *db, new)
        };
        // Open connections, queue limits and policies see the change at once.
        for vh in self.all_vhosts() {
            let db = self.access();
            let name = vh.name();
            let policies = db
                .policies_differ(&old, name)
                .then(|| Arc::new(db.policy_set(name)));
            let max_queues = db
                .vhost(name)
                .and_then(|v| access_db::limit_value(v.limits.max_queues));
            vh.with(|m| {
                m.refresh_grants(|user| db.grants(user, name));
                m.set_queue_limit(max_queues);
                if let Some(set) = policies {
                    m.set_policies(set);
                }
            });
        }
        for name in gone_vhosts {
            self.drop_vhost_model(writer, &name)?;
        }
        for name in gone_users {
            let text = format!("user '{name}' is deleted");
            let closed: usize = self
                .all_vhosts()
                .iter()
                .map(|vh| vh.with(|m| m.close_connections(Some(&name), &text)))
                .sum();
            tracing::info!(user = %name, connections = closed, "user deleted");
        }
        Ok(())
    }

    /// Deletes a user: its permissions go, its connections are closed (320).
    pub fn delete_user(&self, name: &str) -> Result<(), BrokerError> {
        let found = self.update_access(|db| Ok(db.delete_user(name)))?;
        if !found {
            return Err(BrokerError::NotFound(format!("no user '{name}'")));
        }
        Ok(())
    }

    /// Creates a vhost (its record, its directory and its built-in exchanges), or updates
    /// the record of one that exists.
    pub fn put_vhost(&self, def: VHostDef) -> Result<(), BrokerError> {
        let name = def.name.clone();
        if name.is_empty() || name.len() > 255 {
            return Err(BrokerError::PreconditionFailed(format!(
                "invalid vhost name '{name}'"
            )));
        }
        self.update_access(|db| {
            db.put_vhost(def);
            Ok(())
        })
    }

    /// Deletes a vhost: its record goes first (durably; if that fails nothing changed),
    /// then its connections are closed (320), its queues, exchanges and files removed. A
    /// crash before the files are gone leaves a directory without a record, which the
    /// next start removes (`sweep_deleted_vhosts`).
    pub fn delete_vhost(&self, name: &str) -> Result<(), BrokerError> {
        let found = self.update_access(|db| Ok(db.delete_vhost(name)))?;
        if !found {
            return Err(BrokerError::not_found("vhost", name, name));
        }
        Ok(())
    }

    /// Opens a vhost's model on its directory unless it is open; under the writer lock,
    /// so a deletion cannot interleave.
    fn open_vhost_model(
        &self,
        _writer: &MutexGuard<'_, ()>,
        name: &str,
    ) -> Result<(), BrokerError> {
        if self.vhost(name).is_some() {
            return Ok(());
        }
        let dir = vhost_dir(&self.0.config.data_dir, name);
        let mut report = OpenReport::default();
        let model = VHost::open(
            name,
            &dir,
            self.0.config.log.clone(),
            self.0.commit.clone(),
            SharedWithBroker {
                stats: self.0.stats.clone(),
                deadlines: self.0.deadlines.clone(),
                replication: self.0.replication.clone(),
            },
            &mut report,
        )
        .map_err(BrokerError::storage)?;
        for p in report.problems {
            tracing::warn!(vhost = %name, "opening vhost: {p}");
        }
        self.0
            .vhosts
            .write()
            .expect("vhosts lock")
            .insert(Arc::from(name), VHostHandle::new(name, &dir, model));
        tracing::info!(vhost = %name, "vhost created");
        Ok(())
    }

    /// Shuts a vhost whose record is gone: closes its connections (320), removes its
    /// queues, exchanges and files.
    fn drop_vhost_model(
        &self,
        _writer: &MutexGuard<'_, ()>,
        name: &str,
    ) -> Result<(), BrokerError> {
        let Some(vh) = self.0.vhosts.write().expect("vhosts lock").remove(name) else {
            return Ok(());
        };
        let closed = vh.with(|m| m.shut_down_deleted());
        vh.remove_files().map_err(BrokerError::storage)?;
        tracing::info!(vhost = %name, connections = closed, "vhost deleted");
        Ok(())
    }
}
