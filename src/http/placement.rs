//! Where the quorum queues of a cluster live, as the management API shows it: a queue's
//! `leader`, `members` and `online` nodes, by RabbitMQ-style node name. Without a cluster
//! there is nothing to look up (a quorum queue on one node is led by it; `QueueView`
//! says so itself).

use std::collections::HashMap;

use super::{node_name, ApiState};

/// One quorum queue's nodes, by name.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Its group's leader as this node last heard; `None` during an election or without
    /// a quorum.
    pub leader: Option<String>,
    /// The nodes holding it.
    pub members: Vec<String>,
    /// The members that answer now.
    pub online: Vec<String>,
}

/// The placements of every quorum queue of the cluster, by (vhost, name).
#[derive(Debug, Default)]
pub struct Placements(HashMap<(String, String), Placement>);

impl Placements {
    /// Asks this node's cluster (and, for `online`, every node: at most one probe
    /// timeout); empty without a cluster.
    pub async fn of(state: &ApiState) -> Placements {
        let Some(cluster) = &state.cluster else {
            return Placements::default();
        };
        if !cluster.has_quorum_queues().await {
            return Placements::default();
        }
        let answers = cluster.ask_nodes().await;
        let queues = cluster.queue_placements(&answers).await;
        let nodes = cluster.answered(answers);
        let name_of = |id: u64| -> String {
            nodes
                .iter()
                .find(|(info, _)| info.id == id && !info.name.is_empty())
                .map_or_else(|| node_name(Some(id)), |(info, _)| info.name.clone())
        };
        let answers = |id: u64| nodes.iter().any(|(info, up)| info.id == id && *up);
        let placements = queues
            .into_iter()
            .map(|q| {
                let placement = Placement {
                    leader: q.leader.map(name_of),
                    members: q.members.iter().map(|&id| name_of(id)).collect(),
                    online: q
                        .members
                        .iter()
                        .filter(|&&id| answers(id))
                        .map(|&id| name_of(id))
                        .collect(),
                };
                ((q.vhost, q.name), placement)
            })
            .collect();
        Placements(placements)
    }

    /// Every queue's ((vhost, name), placement), sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &Placement)> {
        let mut all: Vec<_> = self.0.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    pub fn get(&self, vhost: &str, name: &str) -> Option<&Placement> {
        self.0.get(&(vhost.to_owned(), name.to_owned()))
    }
}
