//! A queue as RabbitMQ's management shows it, as a typed view that serializes straight to
//! JSON: the plain `/api/queues` list (no `columns`, `sort` or page) is written from these
//! views without building a `serde_json::Value` per queue, and every other answer about a
//! queue is this same view turned into a `Value` — one shape, two speeds.

use serde::Serialize;
use serde_json::{Map, Value};

use super::placement::Placement;
use super::rates::QueueRates;
use super::scope::{self, arguments};
use crate::broker::admin::{QueueCounters, QueueSnapshot};

/// RabbitMQ's `*_details`: the per-second rate, to one decimal.
#[derive(Serialize)]
pub struct Rate {
    rate: f64,
}

impl Rate {
    pub fn of(r: f64) -> Rate {
        Rate {
            rate: (r * 10.0).round() / 10.0,
        }
    }
}

#[derive(Serialize)]
pub struct MessageStats {
    publish: u64,
    publish_details: Rate,
    deliver: u64,
    deliver_details: Rate,
    deliver_no_ack: u64,
    deliver_no_ack_details: Rate,
    get: u64,
    get_details: Rate,
    get_no_ack: u64,
    get_no_ack_details: Rate,
    deliver_get: u64,
    deliver_get_details: Rate,
    redeliver: u64,
    redeliver_details: Rate,
    ack: u64,
    ack_details: Rate,
    get_empty: u64,
    get_empty_details: Rate,
}

impl MessageStats {
    fn of(c: &QueueCounters, r: &QueueRates) -> MessageStats {
        MessageStats {
            publish: c.publish,
            publish_details: Rate::of(r.publish),
            deliver: c.deliver,
            deliver_details: Rate::of(r.deliver),
            deliver_no_ack: c.deliver_no_ack,
            deliver_no_ack_details: Rate::of(r.deliver_no_ack),
            get: c.get,
            get_details: Rate::of(r.get),
            get_no_ack: c.get_no_ack,
            get_no_ack_details: Rate::of(r.get_no_ack),
            deliver_get: c.deliver_get(),
            deliver_get_details: Rate::of(r.deliver_get),
            redeliver: c.redeliver,
            redeliver_details: Rate::of(r.redeliver),
            ack: c.ack,
            ack_details: Rate::of(r.ack),
            get_empty: c.get_empty,
            get_empty_details: Rate::of(r.get_empty),
        }
    }
}

#[derive(Serialize)]
pub struct QueueView<'a> {
    name: &'a str,
    vhost: &'a str,
    durable: bool,
    auto_delete: bool,
    exclusive: bool,
    arguments: Value,
    #[serde(rename = "type")]
    queue_type: &'static str,
    node: &'a str,
    state: &'static str,
    policy: Option<&'a str>,
    operator_policy: Option<&'a str>,
    effective_policy_definition: &'a Map<String, Value>,
    /// Mirrors of a classic queue: none (null), as RabbitMQ shows an unmirrored queue.
    recoverable_slaves: Option<()>,
    /// A quorum queue's Raft members as RabbitMQ lists them: on one node, this node leads
    /// and is the only member, online; in a cluster, its group's (`Placement`): a
    /// leader of `null` while there is none, as RabbitMQ shows it then.
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    online: Option<Vec<&'a str>>,
    consumers: usize,
    exclusive_consumer_tag: Option<&'a str>,
    single_active_consumer_tag: Option<&'a str>,
    messages: u64,
    messages_details: Rate,
    /// A quorum queue's dead letters still in it (RabbitMQ counts them in `messages`).
    #[serde(skip_serializing_if = "Option::is_none")]
    messages_dlx: Option<u64>,
    messages_ready: u64,
    messages_ready_details: Rate,
    messages_unacknowledged: u64,
    messages_unacknowledged_details: Rate,
    /// As RabbitMQ: absent until a message has gone through the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    message_stats: Option<MessageStats>,
    /// Present while nothing went in or out over the last sampling interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_since: Option<String>,
}

impl<'a> QueueView<'a> {
    /// `placement`: where a quorum queue of a cluster lives (`None` on a single node).
    pub fn new(
        node: &'a str,
        vhost: &'a str,
        q: &'a QueueSnapshot,
        r: QueueRates,
        placement: Option<&'a Placement>,
    ) -> Self {
        let c = &q.counters;
        let idle = r.publish == 0.0 && r.deliver_get == 0.0 && r.ack == 0.0;
        let quorum = q.queue_type == "quorum";
        let (leader, members, online) = match placement.filter(|_| quorum) {
            // RabbitMQ names a quorum queue's leader as its node.
            Some(p) => (
                Some(p.leader.as_deref()),
                Some(p.members.iter().map(String::as_str).collect()),
                Some(p.online.iter().map(String::as_str).collect()),
            ),
            None => (
                quorum.then_some(Some(node)),
                quorum.then(|| vec![node]),
                quorum.then(|| vec![node]),
            ),
        };
        QueueView {
            name: &q.name,
            vhost,
            durable: q.durable,
            auto_delete: q.auto_delete,
            exclusive: q.owner.is_some(),
            arguments: arguments(&q.arguments),
            queue_type: q.queue_type,
            node: leader.flatten().unwrap_or(node),
            state: "running",
            policy: q.policy.as_deref(),
            operator_policy: q.operator_policy.as_deref(),
            effective_policy_definition: &q.effective_policy,
            recoverable_slaves: None,
            leader,
            members,
            online,
            consumers: q.consumers,
            exclusive_consumer_tag: q.exclusive_consumer_tag.as_deref(),
            single_active_consumer_tag: q.single_active_consumer_tag.as_deref(),
            messages: q.ready + q.unacked + if quorum { q.dead_lettered } else { 0 },
            messages_details: Rate::of(r.messages),
            messages_dlx: quorum.then_some(q.dead_lettered),
            messages_ready: q.ready,
            messages_ready_details: Rate::of(r.messages_ready),
            messages_unacknowledged: q.unacked,
            messages_unacknowledged_details: Rate::of(r.messages_unacknowledged),
            message_stats: (!c.is_idle()).then(|| MessageStats::of(c, &r)),
            idle_since: idle.then(|| scope::timestamp(q.last_used)),
        }
    }
}
