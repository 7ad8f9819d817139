//! `/api/connections`, `/api/channels`, `/api/consumers` (and their per-vhost and
//! per-connection forms): what is attached to the broker, and closing a connection
//! (DELETE: connection.close 320 with the `X-Reason` header's text). Users without the
//! `monitoring` tag see their own connections only, as in RabbitMQ.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use super::scope::{self, arguments, rate};
use super::ApiState;
use crate::broker::admin::{ChannelSnapshot, ConnectionInfo, ConsumerSnapshot, Want};
use crate::broker::{json_args, ChannelMode, VHostHandle};
use crate::protocol::table;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/connections", get(connections))
        .route("/api/vhosts/{vhost}/connections", get(connections))
        .route("/api/connections/{name}", get(connection).delete(close))
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/channels", get(channels))
        .route("/api/vhosts/{vhost}/channels", get(channels))
        .route("/api/channels/{name}", get(channel))
        .route("/api/consumers", get(consumers))
        .route("/api/consumers/{vhost}", get(consumers))
}

/// What one pass over some vhosts found: connections with their channels and consumers.
#[derive(Default)]
struct Attached {
    connections: Vec<Arc<ConnectionInfo>>,
    channels: Vec<(Arc<ConnectionInfo>, ChannelSnapshot)>,
    consumers: Vec<(Arc<ConnectionInfo>, ConsumerSnapshot)>,
}

fn attached(caller: &Caller, vhosts: &[VHostHandle]) -> Attached {
    let mut out = Attached::default();
    for (_, snap) in scope::snapshots(vhosts, Want::ATTACHED) {
        let by_id: HashMap<u64, Arc<ConnectionInfo>> = snap
            .connections
            .iter()
            .filter(|c| caller.is_monitor() || *c.user == *caller.name)
            .map(|c| (c.id, c.clone()))
            .collect();
        out.connections.extend(by_id.values().cloned());
        for ch in snap.channels {
            if let Some(c) = by_id.get(&ch.conn) {
                out.channels.push((c.clone(), ch));
            }
        }
        for cs in snap.consumers {
            if let Some(c) = by_id.get(&cs.conn) {
                out.consumers.push((c.clone(), cs));
            }
        }
    }
    out
}

fn connection_json(state: &ApiState, c: &ConnectionInfo, channels: usize) -> Value {
    let props = table::decode(&c.client_properties)
        .map(|t| Value::Object(json_args::to_json(&t)))
        .unwrap_or_else(|_| json!({}));
    let user_provided_name = props.get("connection_name").cloned();
    let (recv_rate, send_rate) = state.rates.connection(c.id);
    let (protocol, cipher) = match &c.tls {
        Some((p, ci)) => (p.as_str(), ci.as_str()),
        None => ("", ""),
    };
    let mut v = json!({
        "name": c.name(),
        "node": state.node.name,
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "state": c.state(),
        "vhost": c.vhost.as_ref(),
        "user": c.user.as_ref(),
        "user_who_performed_action": c.user.as_ref(),
        "auth_mechanism": c.auth_mechanism,
        "host": c.local.ip().to_string(),
        "port": c.local.port(),
        "peer_host": c.peer.ip().to_string(),
        "peer_port": c.peer.port(),
        "ssl": c.tls.is_some(),
        "ssl_protocol": protocol,
        "ssl_cipher": cipher,
        "ssl_hash": "",
        "ssl_key_exchange": "",
        "peer_cert_subject": "",
        "peer_cert_issuer": "",
        "peer_cert_validity": "",
        "connected_at": c.connected_at,
        "timeout": c.heartbeat,
        "frame_max": c.frame_max,
        "channel_max": c.channel_max,
        "channels": channels,
        "client_properties": props,
        "recv_oct_details": rate(recv_rate),
        "send_oct_details": rate(send_rate),
        "recv_oct": c.recv_oct.load(Relaxed),
        "recv_cnt": c.recv_cnt.load(Relaxed),
        "send_oct": c.send_oct.load(Relaxed),
        "send_cnt": c.send_cnt.load(Relaxed),
        "send_pend": 0,
    });
    if let Some(name) = user_provided_name {
        v["user_provided_name"] = name;
    }
    v
}

fn connection_list(state: &ApiState, found: &Attached) -> Vec<Value> {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for (c, _) in &found.channels {
        *counts.entry(c.id).or_default() += 1;
    }
    found
        .connections
        .iter()
        .map(|c| connection_json(state, c, counts.get(&c.id).copied().unwrap_or(0)))
        .collect()
}

fn channel_name(c: &ConnectionInfo, number: u16) -> String {
    format!("{} ({number})", c.name())
}

fn channel_list(state: &ApiState, found: &Attached) -> Vec<Value> {
    found
        .channels
        .iter()
        .map(|(c, ch)| channel_json(state, c, ch))
        .collect()
}

fn channel_json(state: &ApiState, c: &ConnectionInfo, ch: &ChannelSnapshot) -> Value {
    json!({
        "name": channel_name(c, ch.number),
        "node": state.node.name,
        "number": ch.number,
        "vhost": c.vhost.as_ref(),
        "user": c.user.as_ref(),
        "user_who_performed_action": c.user.as_ref(),
        "connection_details": {
            "name": c.name(),
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
        },
        "state": "running",
        "confirm": ch.mode == ChannelMode::Confirm,
        "transactional": ch.mode == ChannelMode::Tx,
        "consumer_count": ch.consumers,
        "messages_unacknowledged": ch.unacked,
        "prefetch_count": ch.prefetch,
        "global_prefetch_count": ch.global_prefetch,
        // Raft commands belong to quorum queues, which Warren does not have yet.
        "pending_raft_commands": 0,
    })
}

fn consumer_json(
    state: &ApiState,
    vhost: &str,
    c: &ConnectionInfo,
    cs: &ConsumerSnapshot,
) -> Value {
    let mut args = amq_protocol_types::FieldTable::default();
    if cs.priority != 0 {
        args.insert(
            "x-priority".into(),
            amq_protocol_types::AMQPValue::LongInt(cs.priority),
        );
    }
    json!({
        "consumer_tag": cs.tag.as_ref(),
        "queue": {"name": cs.queue.as_ref(), "vhost": vhost},
        "channel_details": {
            "name": channel_name(c, cs.channel),
            "number": cs.channel,
            "node": state.node.name,
            "connection_name": c.name(),
            "peer_host": c.peer.ip().to_string(),
            "peer_port": c.peer.port(),
            "user": c.user.as_ref(),
        },
        "ack_required": cs.ack_required,
        "exclusive": cs.exclusive,
        "prefetch_count": cs.prefetch,
        "active": cs.active,
        "activity_status": if cs.active { "up" } else { "waiting" },
        "arguments": arguments(&args),
    })
}

/// `/api/connections` and `/api/vhosts/{vhost}/connections`.
async fn connections(
    State(state): State<ApiState>,
    caller: Caller,
    vhost: Option<Path<String>>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let found = attached(&caller, &scope::list_vhosts(&state, &caller, vhost, true)?);
    query.answer(connection_list(&state, &found), &["vhost", "name"])
}

/// The connection named `name` (with what it has attached), if the caller may see it.
fn find_connection(state: &ApiState, caller: &Caller, name: &str) -> Result<Attached, ApiError> {
    let found = attached(caller, &scope::list_vhosts(state, caller, None, true)?);
    let Some(conn) = found
        .connections
        .iter()
        .find(|c| c.name() == *name)
        .cloned()
    else {
        return Err(ApiError::not_found());
    };
    Ok(Attached {
        channels: found
            .channels
            .into_iter()
            .filter(|(c, _)| c.id == conn.id)
            .collect(),
        consumers: Vec::new(),
        connections: vec![conn],
    })
}

async fn connection(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let found = find_connection(&state, &caller, &name)?;
    let mut v = connection_list(&state, &found);
    Ok(Json(query.trim(v.remove(0))))
}

async fn connection_channels(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let found = find_connection(&state, &caller, &name)?;
    query.answer(channel_list(&state, &found), &["vhost", "name"])
}

/// Closes a connection with 320 and the `X-Reason` text (RabbitMQ's default otherwise).
async fn close(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let found = find_connection(&state, &caller, &name)?;
    let conn = &found.connections[0];
    if !caller.is_admin() && *conn.user != *caller.name {
        return Err(ApiError::not_authorised(
            "User not authorised to access object",
        ));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
        .to_owned();
    let closed = state
        .broker
        .vhost(&conn.vhost)
        .is_some_and(|vh| vh.with(|m| m.close_connection_forced(conn.id, &reason)));
    if !closed {
        return Err(ApiError::not_found());
    }
    tracing::info!(conn = conn.id, name = %conn.name(), user = %caller.name, %reason, "connection closed via the management API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `/api/channels` and `/api/vhosts/{vhost}/channels`.
async fn channels(
    State(state): State<ApiState>,
    caller: Caller,
    vhost: Option<Path<String>>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let found = attached(&caller, &scope::list_vhosts(&state, &caller, vhost, true)?);
    query.answer(channel_list(&state, &found), &["vhost", "name"])
}

async fn channel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let found = attached(&caller, &scope::list_vhosts(&state, &caller, None, true)?);
    found
        .channels
        .iter()
        .find(|(c, ch)| channel_name(c, ch.number) == name)
        .map(|(c, ch)| Json(query.trim(channel_json(&state, c, ch))))
        .ok_or_else(ApiError::not_found)
}

/// `/api/consumers` and `/api/consumers/{vhost}`.
async fn consumers(
    State(state): State<ApiState>,
    caller: Caller,
    vhost: Option<Path<String>>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let found = attached(&caller, &scope::list_vhosts(&state, &caller, vhost, true)?);
    let items = found
        .consumers
        .iter()
        .map(|(c, cs)| consumer_json(&state, &c.vhost, c, cs))
        .collect();
    query.answer(items, &[])
}
