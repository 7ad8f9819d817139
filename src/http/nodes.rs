//! `/api/nodes` (this node with memory, disk and alarm figures; in a cluster the others of the node table too), the health checks
//! RabbitMQ 3.10 has (`/api/health/checks/...`: 200 `{"status":"ok"}` or 503 with the
//! reason), `/api/aliveness-test/{vhost}` (declare, publish, get — for real, as RabbitMQ
//! does) and `/api/extensions`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use super::placement::Placements;
use super::queues::API_CONNECTION;
use super::{blocking, ApiState};
use crate::alarms;
use crate::broker::{BrokerError, PublishRequest, QueueSpec};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{name}", get(node))
        .route(
            "/api/extensions",
            get(|_: Caller| async { Json(json!([])) }),
        )
        .route("/api/rebalance/queues", post(rebalance_queues))
        .route("/api/health/checks/alarms", get(alarms_check))
        .route("/api/health/checks/local-alarms", get(alarms_check))
        .route("/api/health/checks/virtual-hosts", get(vhosts_check))
        .route("/api/health/checks/port-listener/{port}", get(port_check))
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(protocol_check),
        )
        .route(
            "/api/health/checks/node-is-quorum-critical",
            get(quorum_critical_check),
        )
        .route(
            "/api/health/checks/node-is-mirror-sync-critical",
            get(single_node_check),
        )
        .route("/api/aliveness-test/{vhost}", get(aliveness_test))
}

/// The web listeners, as RabbitMQ lists its management contexts.
pub fn contexts(state: &ApiState) -> Vec<Value> {
    state
        .node
        .listeners
        .iter()
        .filter(|(p, _)| p.starts_with("http"))
        .map(|(_, a)| {
            json!({"description": "RabbitMQ Management", "ip": a.ip().to_string(),
                   "path": "/", "port": a.port().to_string(), "node": state.node.name})
        })
        .collect()
}

fn node_json(state: &ApiState) -> Value {
    let a = &state.alarms;
    let alarm = a.state();
    let mem_used = alarms::resident_bytes().unwrap_or(0);
    let disk_free = alarms::free_bytes(a.data_dir()).unwrap_or(0);
    let processors = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stats = state.broker.stats();
    let contexts = contexts(state);
    json!({
        "name": state.node.name,
        "type": "disc",
        "running": true,
        "being_drained": false,
        "os_pid": std::process::id().to_string(),
        "uptime": state.started.elapsed().as_millis() as u64,
        "processors": processors,
        "rates_mode": "basic",
        "mem_used": mem_used,
        "mem_limit": a.memory_limit(),
        "mem_alarm": alarm.memory,
        "disk_free": disk_free,
        "disk_free_limit": a.disk_free_limit(),
        "disk_free_alarm": alarm.disk,
        "mem_calculation_strategy": "rss",
        "fd_used": open_files().unwrap_or(0),
        "fd_total": open_files_limit().unwrap_or(0),
        "connection_created": stats.connections_opened,
        "connection_closed": stats.connections_closed,
        "channel_created": stats.channels_opened,
        "channel_closed": stats.channels_closed,
        "contexts": contexts,
        "enabled_plugins": [],
        "log_files": ["<stderr>"],
        "partitions": [],
        // Links to other nodes are not reported (yet): the cluster's own view is in
        // `warren cluster status`.
        "cluster_links": [],
        "db_dir": a.data_dir().display().to_string(),
        "exchange_types": super::overview::exchange_types(),
        "auth_mechanisms": [
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
            {"name": "EXTERNAL", "description": "SASL EXTERNAL authentication mechanism (TLS client certificate)", "enabled": true},
        ],
    })
}

/// File descriptors in use by the process.
fn open_files() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The process's soft limit on open files (`Max open files` in /proc/self/limits).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn nodes(
    State(state): State<ApiState>,
    caller: Caller,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    caller.monitor()?;
    query.answer(all_nodes(&state).await, &["name"])
}

/// This node, and in a cluster every other node of the node table: its name, whether it
/// answers on its cluster port now, its addresses and uptime (the figures of its own
/// `/api/nodes` are on its own API).
async fn all_nodes(state: &ApiState) -> Vec<Value> {
    let Some(cluster) = &state.cluster else {
        return vec![node_json(state)];
    };
    let now = crate::broker::admin::now_millis();
    let mut out = Vec::new();
    for (info, running) in cluster.probe_nodes().await {
        if info.id == cluster.node_id() {
            out.push(node_json(state));
            continue;
        }
        out.push(json!({
            "name": info.name,
            "type": "disc",
            "running": running,
            "uptime": match running {
                true => now.saturating_sub(info.started_at),
                false => 0,
            },
            "warren": {
                "node_id": info.id,
                "cluster": info.cluster,
                "amqp": info.amqp,
                "http": info.http,
                "version": info.version,
            },
        }));
    }
    if out.is_empty() {
        // Not in the node table yet (no leader since it started).
        out.push(node_json(state));
    }
    out
}

async fn node(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    caller.monitor()?;
    let found = all_nodes(&state)
        .await
        .into_iter()
        .find(|n| n["name"] == name);
    match found {
        Some(n) => Ok(Json(query.trim(n))),
        None => Err(ApiError::not_found()),
    }
}

/// A failed check: 503 with RabbitMQ's body.
fn failed(body: Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

fn ok(extra: Value) -> Response {
    let mut body = json!({"status": "ok"});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    Json(body).into_response()
}

/// `POST /api/rebalance/queues`: as RabbitMQ, an administrator starts a rebalance of the
/// quorum queues' leaders and is answered 204 at once; the rebalance runs on (the same
/// as `warren cluster rebalance`, which waits for it and reports). Outside a cluster
/// there is nothing to move.
async fn rebalance_queues(State(state): State<ApiState>, caller: Caller) -> ApiResult {
    caller.admin()?;
    tracing::info!(user = %caller.name, "queue rebalance started through the management API");
    if let Some(node) = state.cluster.clone() {
        tokio::spawn(async move {
            let report = node.rebalance().await;
            if !report.failed.is_empty() {
                tracing::warn!(failed = ?report.failed, "queue rebalance: moves failed");
            }
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn alarms_check(State(state): State<ApiState>, _: Caller) -> ApiResult {
    let a = state.alarms.state();
    if !a.any() {
        return Ok(ok(json!({})));
    }
    let mut list = Vec::new();
    if a.memory {
        list.push(json!({"node": state.node.name, "resource": "memory"}));
    }
    if a.disk {
        list.push(json!({"node": state.node.name, "resource": "disk"}));
    }
    Ok(failed(json!({
        "status": "failed",
        "reason": "There are alarms in effect in the cluster",
        "alarms": list,
    })))
}

async fn vhosts_check(State(state): State<ApiState>, _: Caller) -> ApiResult {
    // A vhost in the database whose model is not open (it failed to recover) is down.
    let down: Vec<String> = state.broker.read_access(|db| {
        db.vhosts()
            .filter(|v| state.broker.vhost(&v.name).is_none())
            .map(|v| v.name.clone())
            .collect()
    });
    if down.is_empty() {
        return Ok(ok(json!({})));
    }
    Ok(failed(json!({
        "status": "failed",
        "reason": "Some virtual hosts are down",
        "virtual-hosts": down,
    })))
}

async fn port_check(
    State(state): State<ApiState>,
    _: Caller,
    Path(port): Path<String>,
) -> ApiResult {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid port"))?;
    let amqp: Vec<u16> = amqp_listeners(&state).map(|(_, p)| p).collect();
    if amqp.contains(&port) {
        return Ok(ok(json!({"port": port})));
    }
    Ok(failed(json!({
        "status": "failed",
        "reason": "No active listener",
        "missing": port,
        "ports": amqp,
    })))
}

/// The listeners RabbitMQ's `rabbit_networking` knows: AMQP and AMQPS (the HTTP ones
/// belong to the web dispatcher and are not among them).
fn amqp_listeners(state: &ApiState) -> impl Iterator<Item = (&'static str, u16)> + '_ {
    state
        .node
        .listeners
        .iter()
        .filter(|(p, _)| *p == "amqp" || *p == "amqp/ssl")
        .map(|(p, a)| (if *p == "amqp" { "amqp" } else { "amqp/ssl" }, a.port()))
}

async fn protocol_check(
    State(state): State<ApiState>,
    _: Caller,
    Path(protocol): Path<String>,
) -> ApiResult {
    // RabbitMQ's normalisation of the names people use.
    let wanted = match protocol.to_ascii_lowercase().as_str() {
        "amqp091" | "amqp0.9.1" | "amqp0-9-1" | "amqp" => "amqp".to_owned(),
        "amqps" | "amqp/ssl" => "amqp/ssl".to_owned(),
        other => other.to_owned(),
    };
    let protocols: Vec<&str> = amqp_listeners(&state).map(|(p, _)| p).collect();
    if protocols.contains(&wanted.as_str()) {
        return Ok(ok(json!({"protocol": wanted})));
    }
    Ok(failed(json!({
        "status": "failed",
        "reason": "No active listener",
        "missing": wanted,
        "protocols": protocols,
    })))
}

/// Warren has no mirrored classic queues (and one node has nothing to lose by its
/// shutdown).
async fn single_node_check(_: Caller) -> ApiResult {
    Ok(ok(json!({"reason": "single node cluster"})))
}

/// Fails (503) while some quorum queue with a member on this node has no more members
/// up than a bare majority, so that shutting this node down would cost it its quorum:
/// RabbitMQ's rule (`rabbit_quorum_queue:list_with_minimum_quorum`), counting the
/// members that answer now.
async fn quorum_critical_check(State(state): State<ApiState>, _: Caller) -> ApiResult {
    // One node in the table: nothing to ask the others (`Placements::of` asks them).
    let single = match &state.cluster {
        None => true,
        Some(c) => c.node_table().await.len() <= 1,
    };
    if single {
        return Ok(ok(json!({"reason": "single node cluster"})));
    }
    let placements = Placements::of(&state).await;
    let critical: Vec<Value> = placements
        .iter()
        .filter(|(_, p)| p.members.contains(&state.node.name))
        .filter(|(_, p)| p.online.len() <= p.members.len() / 2 + 1)
        .map(|((vhost, name), _)| {
            json!({
                "name": name,
                "readable_name": format!("queue '{name}' in vhost '{vhost}'"),
                "virtual_host": vhost,
                "type": "quorum",
            })
        })
        .collect();
    if critical.is_empty() {
        return Ok(ok(json!({})));
    }
    Ok(failed(json!({
        "status": "failed",
        "reason": "There are quorum queues that would lose their quorum if the target node is shut down",
        "queues": critical,
    })))
}

const ALIVENESS_QUEUE: &str = "aliveness-test";

/// Declares `aliveness-test`, publishes `test_message` to it and gets it back, as
/// RabbitMQ's check does (the queue stays, so a frequent check costs no declares).
async fn aliveness_test(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult {
    caller.vhost_access(&state, &vhost)?;
    let vh = state.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let outcome = blocking(&state, move |_| {
        vh.try_with(|m| {
            let spec = QueueSpec {
                name: ALIVENESS_QUEUE,
                passive: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                args_raw: &[0, 0, 0, 0],
            };
            m.queue_declare(API_CONNECTION, &spec)?;
            let header = super::props::encode(&Default::default(), 12)
                .map_err(|e| BrokerError::Storage(format!("{e:?}")))?;
            let body: [&[u8]; 1] = [b"test_message"];
            m.publish(&PublishRequest {
                exchange: "",
                routing_key: ALIVENESS_QUEUE,
                header: &header,
                persistent: false,
                headers_table: None,
                body: &body,
            })?;
            let key = (API_CONNECTION, 1);
            m.open_channel(key, crate::broker::outbox::Outbox::new(0));
            let got = m.get(key, ALIVENESS_QUEUE, true);
            m.close_channel(key);
            got
        })
        .map_err(|e| ApiError::internal(e.text().to_owned()))
    })
    .await?;
    Ok(match outcome {
        Some(_) => ok(json!({})),
        None => failed(json!({"status": "failed", "reason": "aliveness-test queue is empty"})),
    })
}
