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
//! The writer numbers the topology changes and the queue declarations and deletions as it
//! takes them (`WriteId`), so that the numbers go up in the order the writes are made
//! (clients of two vhosts change things at once, each under its own vhost's lock): a
//! write retried keeps its number, and the group takes a node's write in once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::group::WriteError;
use crate::cluster::meta_machine::{MetaCommand, MetaResponse, WriteId, ANY_GROUP};
use crate::cluster::node::ClusterNode;

use super::topology::OwnChanges;

/// Between two attempts while the group has no leader.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How many queues' groups the writer remembers (those of queues deleted on other nodes
/// stay until this node deletes the name again).
const DECLARED_KEPT: usize = 10_000;
/// How long a write waits before the log says so (and then every as long again).
const SAY_AFTER: Duration = Duration::from_secs(120);

/// Writes the bridge's metadata commands one after another, in order.
///
/// A queue deletion given up is sent to `deletions_given_up` (vhost, name): the bridge
/// then opens what waited for it (`Replication::open_deferred`).
pub(super) async fn write_meta(
    node: Arc<ClusterNode>,
    mut pending: tokio::sync::mpsc::UnboundedReceiver<MetaCommand>,
    own_changes: Arc<OwnChanges>,
    deletions_given_up: tokio::sync::mpsc::UnboundedSender<(String, String)>,
) {
    let mut last_seq = 0;
    // The group of each queue this node declared, as the group answered.
    let mut declared: HashMap<(String, String), u64> = HashMap::new();
    while let Some(mut cmd) = pending.recv().await {
        if let MetaCommand::DeclareQueue(decl) = &cmd {
            // Known again from its answer (none if it fails).
            declared.remove(&(decl.vhost.clone(), decl.name.clone()));
        }
        if let MetaCommand::DeleteQueue {
            vhost, name, group, ..
        } = &mut cmd
        {
            let known = declared.remove(&(vhost.clone(), name.clone()));
            if *group == ANY_GROUP {
                // The queue's group had not opened on this node: the one its declaration
                // from here was answered with, if any, rather than whichever the name has
                // when the deletion is applied (another node's, declared since).
                *group = known.unwrap_or(ANY_GROUP);
            }
        }
        let mut next_id = || {
            last_seq += 1;
            WriteId {
                started_at: node.started_at(),
                seq: last_seq,
            }
        };
        match &mut cmd {
            MetaCommand::Topology { write, .. } => *write = Some(next_id()),
            MetaCommand::DeclareQueue(decl) => decl.write = Some((node.node_id(), next_id())),
            MetaCommand::DeleteQueue { write, .. } => *write = Some((node.node_id(), next_id())),
            _ => {}
        }
        own_changes.numbered(&cmd);
        let mut say_at = Instant::now() + SAY_AFTER;
        loop {
            match node.meta_write(cmd.clone()).await {
                Ok(MetaResponse::Refused(why)) => {
                    tracing::warn!("cluster: refused by the cluster ({why}): {cmd:?}");
                    break;
                }
                Ok(MetaResponse::Queue(group)) => {
                    if let MetaCommand::DeclareQueue(decl) = &cmd {
                        if declared.len() >= DECLARED_KEPT {
                            declared.clear(); // Deletions fall back to ANY_GROUP.
                        }
                        declared.insert((decl.vhost.clone(), decl.name.clone()), group);
                    }
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
                    own_changes.given_up(&cmd);
                    if let MetaCommand::DeleteQueue { vhost, name, .. } = &cmd {
                        let _ = deletions_given_up.send((vhost.clone(), name.clone()));
                    }
                    break;
                }
            }
        }
    }
}
