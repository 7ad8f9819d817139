//! The bridge's writes to the metadata group: queue declarations and deletions, and the
//! exchange and binding changes this node's clients made, one after another in the order
//! they happened here (a queue deleted and declared again must not be declared first).
//!
//! A change was made here and answered before it is written, so while the group has no
//! leader this node can reach (an election, a partition that leaves it in a minority)
//! the write is retried until it goes through, however long that takes: given up, the
//! change would stay on this node alone and the nodes would never agree again. Only the
//! group's refusal, or an error other than the want of a leader, ends it.
//!
//! The writer numbers the topology changes as it takes them (`WriteId`), so that the
//! numbers go up in the order the writes are made (clients of two vhosts change things
//! at once, each under its own vhost's lock): a write retried keeps its number, and the
//! group takes a node's write in once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::group::WriteError;
use crate::cluster::meta_machine::{MetaCommand, MetaResponse, WriteId};
use crate::cluster::node::ClusterNode;

use super::topology::OwnChanges;

/// Between two attempts while the group has no leader.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How long a write waits before the log says so (and then every as long again).
const SAY_AFTER: Duration = Duration::from_secs(120);

/// Writes the bridge's metadata commands one after another, in order.
pub(super) async fn write_meta(
    node: Arc<ClusterNode>,
    mut pending: tokio::sync::mpsc::UnboundedReceiver<MetaCommand>,
    own_changes: Arc<OwnChanges>,
) {
    let mut last_seq = 0;
    while let Some(mut cmd) = pending.recv().await {
        if let MetaCommand::Topology { write, .. } = &mut cmd {
            last_seq += 1;
            *write = Some(WriteId {
                started_at: node.started_at(),
                seq: last_seq,
            });
        }
        let mut say_at = Instant::now() + SAY_AFTER;
        loop {
            match node.meta_write(cmd.clone()).await {
                Ok(MetaResponse::Refused(why)) => {
                    tracing::warn!("cluster: refused by the cluster ({why}): {cmd:?}");
                    break;
                }
                Ok(_) => break,
                Err(WriteError::NoLeader) => {
                    if Instant::now() >= say_at {
                        say_at = Instant::now() + SAY_AFTER;
                        tracing::warn!(
                            left = pending.len(),
                            "cluster: no leader of the metadata group within reach; changes made here wait for one"
                        );
                    }
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                Err(e) => {
                    tracing::warn!("cluster: not recorded in the cluster ({e}): {cmd:?}");
                    if let MetaCommand::Topology { vhost, change, .. } = &cmd {
                        own_changes.done(vhost, change);
                    }
                    break;
                }
            }
        }
    }
}
