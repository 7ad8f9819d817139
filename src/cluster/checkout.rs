//! Checkouts on the cluster port: a member of a quorum queue's group that does not lead it
//! asks the leader for messages for its own consumers (`broker/replica_checkout.rs` says
//! what each side does with them). The request names the asking node and its process (a
//! restarted node holds nothing), and how many messages its consumers have room for; the
//! answer is the group ids of the messages handed to it, or that the asked node does not
//! lead the queue. A node that is not a member of the group has no copy to deliver from:
//! it asks with `lend`, and the answer carries the messages themselves. Requests and
//! answers are MessagePack (`codec.rs`; lent bodies as bytes, where JSON spent up to
//! four characters on each byte).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::codec;
use super::node::ClusterNode;
use super::queue_groups::queue_group_name;
use super::wire::RpcKind;

/// How long a checkout may take before the asking node tries again.
const CHECKOUT_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    pub node: u64,
    /// When the asking node's process started (milliseconds since the epoch).
    pub incarnation: u64,
    /// How many messages its consumers have room for (0: it only keeps its lease).
    pub want: u32,
    /// The asking node holds no copy of the group: send the messages, not only their ids.
    #[serde(default)]
    pub lend: bool,
    /// On a single-active-consumer queue, the asking node's earliest consumer (`None`:
    /// it has none, or the queue serves all its consumers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_consumer: Option<crate::broker::replica_sac::FirstConsumer>,
    /// For a basic.get, not for consumers: whatever is ready, single active consumer or
    /// not (`first_consumer` is not looked at).
    #[serde(default)]
    pub get: bool,
    /// In the asking node's first request to a new leader (its claim): the group ids its
    /// consumers hold (delivered or granted, not settled), each with the returns counted
    /// of it when it went out to them, so that the new leader leaves them with them
    /// rather than handing them out again (`broker/replica_claims.rs`). `None` in every
    /// other request, and from earlier builds.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "h")]
    pub held: Option<Vec<(u64, u32)>>,
    /// The request is that claim and nothing more: the node has no consumers that want
    /// messages or keep a lease (the leader keeps no holding for it, and does not count
    /// the queue as used).
    #[serde(default, rename = "co")]
    pub claim_only: bool,
}

/// A message lent to a node that holds no copy of its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LentMessage {
    pub id: u64,
    /// The message as the group stores it.
    #[serde(with = "super::types::base64_bytes")]
    pub message: Vec<u8>,
    /// How often it has been returned (its `x-delivery-count`).
    pub returns: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckoutReply {
    /// The group ids of the messages handed to the asking node, and the last log index
    /// the leader's copy had applied when it chose them: the asking node delivers them
    /// once its own copy has applied that far (then it holds them, and counts the
    /// returns the leader had counted).
    /// With `lend` asked, `lent` holds the messages of `ids`.
    Granted {
        ids: Vec<u64>,
        through: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lent: Vec<LentMessage>,
        /// The returns the leader had counted of each of `ids` (same order) when it
        /// granted them: a return of such a delivery names that count, and the group
        /// ignores it once the message has been returned more often (the leader took the
        /// delivery back in between). Empty from earlier builds.
        #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "rs")]
        returns: Vec<u32>,
        /// Nothing handed out because the leader holds back: after a change of leader
        /// it waits for the members' claims (`broker/replica_claims.rs`). A basic.get
        /// asks again rather than answering get-empty. False from earlier builds.
        #[serde(default, skip_serializing_if = "std::ops::Not::not", rename = "hb")]
        held_back: bool,
    },
    /// The asked node does not lead the queue (any more).
    NotLeader,
}

/// What answers checkouts on this node (the bridge, which has the broker).
pub trait CheckoutHandler: Send + Sync {
    fn checkout(&self, group: u64, request: &CheckoutRequest) -> CheckoutReply;

    /// Node `node` is gone (`ClusterNode::beacon_link_closed`): what it held of the queues
    /// this node leads is returned now, not when its lease runs out.
    fn node_gone(&self, node: u64);
}

/// The group number in a queue group's name (`queue-N`).
pub fn group_number(name: &str) -> Option<u64> {
    name.strip_prefix("queue-")?.parse().ok()
}

impl ClusterNode {
    /// Sets what answers checkouts here (once, by the bridge).
    pub fn set_checkout_handler(&self, handler: Arc<dyn CheckoutHandler>) {
        let _ = self.checkout.set(handler);
    }

    /// The connection a peer's beacons came on ended (transport.rs), and no later one
    /// carries them: the peer's process stopped or died (its socket closed with it), or
    /// the link broke. RabbitMQ's quorum queue leader returns a node's checkouts when it
    /// hears the node is down (`noconnection`, at once on a kill:
    /// `tests/cluster_reference/rabbitmq_member_death_redelivery.md`); this is that news
    /// here. Without it (a link gone silent, a paused node) the lease
    /// (`broker/replica_checkout.rs`) ends the holdings. A node that is only cut off
    /// and comes back may deliver a returned message again: at least once.
    pub(super) fn beacon_link_closed(&self, conn: u64) {
        let Some(peer) = self.claims.link_closed(conn) else {
            return;
        };
        tracing::info!(
            peer,
            "cluster: node {peer}'s connection closed (it stopped, or the link broke); what its consumers held is returned"
        );
        if let Some(handler) = self.checkout.get() {
            handler.node_gone(peer);
        }
    }

    /// Answers a checkout another node sent here.
    pub(super) fn answer_checkout(&self, group: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let request: CheckoutRequest = codec::decode(body).map_err(|e| e.to_string())?;
        let group = group_number(group).ok_or_else(|| format!("no queue group '{group}'"))?;
        let reply = match self.checkout.get() {
            Some(handler) => handler.checkout(group, &request),
            None => CheckoutReply::NotLeader,
        };
        codec::encode(&reply).map_err(|e| e.to_string())
    }

    /// Whether this node is a member of queue group `group` (has it open).
    pub fn holds_queue_group(&self, group: u64) -> bool {
        self.queue_groups
            .read()
            .expect("queue groups")
            .contains_key(&group)
    }

    /// The leader of queue group `group` as this node's member of it last heard.
    pub fn queue_group_leader(&self, group: u64) -> Option<u64> {
        let groups = self.queue_groups.read().expect("queue groups");
        let leader = groups.get(&group)?.raft.metrics().borrow().current_leader;
        leader
    }

    /// Asks node `leader` for messages of queue group `group`.
    pub async fn checkout(
        &self,
        group: u64,
        leader: u64,
        request: &CheckoutRequest,
    ) -> Result<CheckoutReply, String> {
        let addresses = self.cluster_addresses().await;
        let addr = addresses
            .get(&leader)
            .ok_or_else(|| format!("node {leader} is not in the node table"))?;
        let body = codec::encode(request).map_err(|e| e.to_string())?;
        let peer = self.peers.peer(leader, addr);
        let name = queue_group_name(group);
        let answer = peer
            .call(RpcKind::Checkout, &name, &body, CHECKOUT_WAIT)
            .await
            .map_err(|e| format!("node {leader}: {e}"))?;
        codec::decode(&answer).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_bodies_travel_as_bytes() {
        let reply = CheckoutReply::Granted {
            ids: vec![1 << 16],
            through: 1,
            lent: vec![LentMessage {
                id: 1 << 16,
                message: vec![0xEE; 1024],
                returns: 2,
            }],
            returns: vec![2],
            held_back: false,
        };
        let body = codec::encode(&reply).unwrap();
        // As JSON the body was an array of numbers: 4 KB for these 1,024 bytes. (The rest
        // is field names: structs are maps.)
        assert!(body.len() < 1024 + 128, "{} bytes", body.len());
        assert_eq!(codec::decode::<CheckoutReply>(&body).unwrap(), reply);
        let held_back = CheckoutReply::Granted {
            ids: Vec::new(),
            through: 1,
            lent: Vec::new(),
            returns: Vec::new(),
            held_back: true,
        };
        let body = codec::encode(&held_back).unwrap();
        assert_eq!(codec::decode::<CheckoutReply>(&body).unwrap(), held_back);
        let request = CheckoutRequest {
            node: 2,
            incarnation: 7,
            want: 100,
            lend: true,
            first_consumer: Some(crate::broker::replica_sac::FirstConsumer {
                serial: 3,
                age_ms: 1500,
            }),
            get: false,
            held: Some(vec![(4, 0), (9, 2)]),
            claim_only: false,
        };
        let body = codec::encode(&request).unwrap();
        assert_eq!(codec::decode::<CheckoutRequest>(&body).unwrap(), request);
    }
}
