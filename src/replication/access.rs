//! The access database (users, vhosts, permissions, policies, parameters) in a cluster.
//!
//! A change made through any node is written to the metadata group as data
//! (`MetaCommand::Access`), and nothing is changed before the group applies it: then every
//! node, the one the change came through included, makes its database what the group's
//! holds (`BrokerHandle::mirror_access`, which also opens vhosts added and deletes vhosts
//! removed). The node that took the change answers its client once it has made it
//! itself, so a client that reads back through the same node sees what it wrote. A node
//! in a minority cannot change anything (its write finds no leader and fails).
//!
//! A node's own database before it joined is merged in when it first comes into the
//! cluster (`MetaCommand::AccessMerge`: what the cluster has of the same key wins), and a
//! cluster that has no access database yet takes the first node's.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::access_change::{self, AccessChange};
use crate::broker::access_db::AccessData;
use crate::broker::error::BrokerError;
use crate::broker::AccessReplication;
use crate::cluster::meta_machine::{MetaCommand, MetaResponse, MetaState, NO_ACCESS_DATABASE_YET};

use super::Replication;

/// How long a node waits to make a change the group applied (its tap may be behind).
const MIRROR_WAIT: Duration = Duration::from_secs(10);

impl AccessReplication for Replication {
    fn replicate(&self, changes: Vec<AccessChange>) -> Result<(), BrokerError> {
        let node = self.node.clone();
        let mut mirrored = self.access_mirrored.subscribe();
        let write = async move {
            let deadline = tokio::time::Instant::now() + MIRROR_WAIT;
            let index = loop {
                let command = MetaCommand::Access(changes.clone());
                match node.meta_write(command).await {
                    Ok(MetaResponse::Applied(index)) => break index,
                    // A change made right after the cluster formed can come before the
                    // first node's database is merged in (that merge is written in the
                    // background at start, `join_access`). The merge, once applied, marks
                    // this node's mirror: the change is sent again then.
                    Ok(MetaResponse::Refused(why)) if why == NO_ACCESS_DATABASE_YET => {
                        tracing::info!("cluster: an access change waits for the first node's database to be merged in");
                        let merged = tokio::time::timeout_at(deadline, mirrored.changed()).await;
                        if !matches!(merged, Ok(Ok(()))) {
                            return Err(BrokerError::Storage(format!(
                                "{why} (nothing merged within {MIRROR_WAIT:?})"
                            )));
                        }
                    }
                    Ok(MetaResponse::Refused(why)) => {
                        return Err(BrokerError::PreconditionFailed(why))
                    }
                    Ok(other) => {
                        return Err(BrokerError::Storage(format!(
                            "the cluster answered {other:?} to an access change"
                        )))
                    }
                    Err(e) => {
                        return Err(BrokerError::Storage(format!(
                            "the cluster did not take the change: {e}"
                        )))
                    }
                }
            };
            match tokio::time::timeout(MIRROR_WAIT, mirrored.wait_for(|i| *i >= index)).await {
                Ok(Ok(_)) => Ok(()),
                _ => Err(BrokerError::Storage(format!(
                    "the cluster took the change (entry {index}); this node has not made it yet"
                ))),
            }
        };
        // Called from a blocking thread (the management API's) or a runtime worker.
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(write)),
            Err(_) => self.runtime.block_on(write),
        }
    }
}

impl Replication {
    /// At start: makes this node's database the cluster's (with what it brings, if it is
    /// new to the cluster), has the cluster merge what it brings, and from then on sends
    /// every access change through the cluster.
    pub(super) async fn join_access(self: &Arc<Self>, state: &MetaState, new_here: bool) {
        let local = self.broker.read_access(|db| db.to_data());
        if let Some(cluster) = &state.access {
            let mut wanted = cluster.clone();
            if new_here {
                access_change::merge(&mut wanted, &local);
            }
            self.mirror(wanted).await;
        }
        if new_here || state.access.is_none() {
            let _ = self.meta_writes.send(MetaCommand::AccessMerge(local));
        }
        self.broker.replicate_access(self.clone());
    }

    /// The group applied access entry `index`: this node makes its database the group's.
    pub(super) async fn access_applied(&self, index: u64) {
        if let Some(data) = self.node.meta_access().await {
            self.mirror(data).await;
        }
        self.mark_mirrored(index);
    }

    /// A snapshot after entry `index` was installed.
    pub(super) async fn access_reset(&self, index: u64, state: &MetaState) {
        if let Some(data) = &state.access {
            self.mirror(data.clone()).await;
        }
        self.mark_mirrored(index);
    }

    fn mark_mirrored(&self, index: u64) {
        self.access_mirrored.send_if_modified(|i| {
            let newer = index > *i;
            *i = (*i).max(index);
            newer
        });
    }

    async fn mirror(&self, data: AccessData) {
        let broker = self.broker.clone();
        match tokio::task::spawn_blocking(move || broker.mirror_access(data)).await {
            Ok(Ok(true)) => tracing::debug!("cluster: access database updated"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::error!("cluster: the cluster's access database not made here: {e}")
            }
            Err(e) => tracing::error!("cluster: making the access database: {e}"),
        }
    }
}
