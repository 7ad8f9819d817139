//! `/api/whoami` and `/api/overview`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::auth::Caller;
use super::scope::rate;
use super::ApiState;
use crate::broker::VHostTotals;

/// The RabbitMQ version whose API this one follows.
pub const RABBITMQ_VERSION: &str = "3.10.8";

pub async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({"name": caller.name, "tags": caller.tags}))
}

const EXCHANGE_TYPES: &[(&str, &str)] = &[
    (
        "direct",
        "AMQP direct exchange, as per the AMQP specification",
    ),
    (
        "fanout",
        "AMQP fanout exchange, as per the AMQP specification",
    ),
    (
        "headers",
        "AMQP headers exchange, as per the AMQP specification",
    ),
    (
        "topic",
        "AMQP topic exchange, as per the AMQP specification",
    ),
    ("x-delayed-message", "Delayed Message Exchange"),
    ("x-message-deduplication", "Message Deduplication Exchange"),
];

/// The exchange types the broker knows, as the overview and nodes list them.
pub fn exchange_types() -> Vec<Value> {
    EXCHANGE_TYPES
        .iter()
        .map(|(name, description)| json!({"name": name, "description": description, "enabled": true}))
        .collect()
}

/// The node, its listeners, and totals over the vhosts the caller may see (each counted
/// under its own vhost lock, one at a time; rendered after).
pub async fn overview(State(state): State<ApiState>, caller: Caller) -> Json<Value> {
    let mut names = state.broker.vhost_names();
    names.retain(|v| caller.is_monitor() || caller.may_see_vhost(&state, v));
    let mut t = VHostTotals::default();
    for name in &names {
        if let Some(vh) = state.broker.vhost(name) {
            let v = vh.with(|m| m.totals());
            t.exchanges += v.exchanges;
            t.queues += v.queues;
            t.connections += v.connections;
            t.channels += v.channels;
            t.consumers += v.consumers;
            t.messages_ready += v.messages_ready;
            t.messages_unacknowledged += v.messages_unacknowledged;
            t.counters.add(&v.counters);
        }
    }
    let stats = state.broker.stats();
    let node = &state.node.name;
    let listeners: Vec<Value> = state
        .node
        .listeners
        .iter()
        .map(|(protocol, addr)| {
            json!({"node": node, "protocol": protocol,
                   "ip_address": addr.ip().to_string(), "port": addr.port()})
        })
        .collect();
    let exchange_types = exchange_types();
    let rates = state.rates.global();
    let q = state.rates.vhost(None);
    let c = &t.counters;
    Json(json!({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "exchange_types": exchange_types,
        "product_version": env!("CARGO_PKG_VERSION"),
        "product_name": "Warren",
        "rabbitmq_version": RABBITMQ_VERSION,
        "cluster_name": node,
        "node": node,
        "disable_stats": false,
        "enable_queue_totals": false,
        "message_stats": {
            "publish": stats.published,
            "publish_details": rate(rates.publish),
            "deliver_get": stats.delivered,
            "deliver_get_details": rate(rates.deliver_get),
            "ack": stats.acked,
            "ack_details": rate(rates.ack),
            "confirm": stats.confirmed,
            "confirm_details": rate(rates.confirm),
            // Per-kind counts are the queues' (of the vhosts shown), summed.
            "deliver": c.deliver, "deliver_details": rate(q.deliver),
            "deliver_no_ack": c.deliver_no_ack, "deliver_no_ack_details": rate(q.deliver_no_ack),
            "get": c.get, "get_details": rate(q.get),
            "get_no_ack": c.get_no_ack, "get_no_ack_details": rate(q.get_no_ack),
            "get_empty": c.get_empty, "get_empty_details": rate(q.get_empty),
            "redeliver": c.redeliver, "redeliver_details": rate(q.redeliver),
        },
        "queue_totals": {
            "messages": t.messages_ready + t.messages_unacknowledged,
            "messages_details": rate(rates.messages),
            "messages_ready": t.messages_ready,
            "messages_ready_details": rate(rates.messages_ready),
            "messages_unacknowledged": t.messages_unacknowledged,
            "messages_unacknowledged_details": rate(rates.messages_unacknowledged),
        },
        "object_totals": {
            "channels": t.channels,
            "connections": t.connections,
            "consumers": t.consumers,
            "exchanges": t.exchanges,
            "queues": t.queues,
        },
        "statistics_db_event_queue": 0,
        "listeners": listeners,
        "contexts": super::nodes::contexts(&state),
    }))
}
