//! `/api/queues...`: list, show, declare (PUT), delete (`if-empty`, `if-unused`), purge
//! (`.../contents`), get messages (`.../get`) and a queue's bindings.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Map, Value};

use super::auth::Caller;
use super::bindings::binding_json;
use super::body;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use super::scope::{self, arguments, permit, rate};
use super::{blocking, put_answer, ApiState};
use crate::broker::admin::{QueueSnapshot, Want};
use crate::broker::grants::{Perm, Resource};
use crate::broker::{message, BrokerError, QueueSpec};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/queues", get(list_all))
        .route("/api/queues/{vhost}", get(list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(show).put(declare).delete(delete),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            axum::routing::delete(purge),
        )
        .route("/api/queues/{vhost}/{name}/get", post(get_messages))
        .route("/api/queues/{vhost}/{name}/bindings", get(bindings))
}

/// Not a connection: API work on the model goes unchecked there and is checked here with
/// the caller's permissions (`scope::permit`). Connection ids start at 1.
pub const API_CONNECTION: u64 = 0;
/// The channel a `.../get` borrows for the time of one lock.
const API_CHANNEL: u16 = 1;

const QUEUE_SORT: &[&str] = &["vhost", "name"];

/// A queue as RabbitMQ's management shows it.
pub fn queue_json(state: &ApiState, vhost: &str, q: &QueueSnapshot) -> Value {
    let r = state.rates.queue(vhost, &q.name);
    let c = &q.counters;
    let messages = q.ready + q.unacked;
    // Idle as RabbitMQ's stats show it: nothing went in or out over the last interval.
    let idle = r.publish == 0.0 && r.deliver_get == 0.0 && r.ack == 0.0;
    let mut v = json!({
        "name": q.name.as_ref(),
        "vhost": vhost,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.owner.is_some(),
        "arguments": arguments(&q.arguments),
        "type": q.queue_type,
        "node": state.node.name,
        "state": "running",
        "policy": q.policy,
        "operator_policy": q.operator_policy,
        "effective_policy_definition": q.effective_policy,
        "recoverable_slaves": null,
        "consumers": q.consumers,
        "exclusive_consumer_tag": q.exclusive_consumer_tag.as_deref(),
        "single_active_consumer_tag": q.single_active_consumer_tag.as_deref(),
        "messages": messages,
        "messages_details": rate(r.messages),
        "messages_ready": q.ready,
        "messages_ready_details": rate(r.messages_ready),
        "messages_unacknowledged": q.unacked,
        "messages_unacknowledged_details": rate(r.messages_unacknowledged),
    });
    // As RabbitMQ: no `message_stats` until a message has gone through the queue.
    if !c.is_idle() {
        let message_stats = json!({
            "publish": c.publish, "publish_details": rate(r.publish),
            "deliver": c.deliver, "deliver_details": rate(r.deliver),
            "deliver_no_ack": c.deliver_no_ack, "deliver_no_ack_details": rate(r.deliver_no_ack),
            "get": c.get, "get_details": rate(r.get),
            "get_no_ack": c.get_no_ack, "get_no_ack_details": rate(r.get_no_ack),
            "deliver_get": c.deliver_get(), "deliver_get_details": rate(r.deliver_get),
            "redeliver": c.redeliver, "redeliver_details": rate(r.redeliver),
            "ack": c.ack, "ack_details": rate(r.ack),
            "get_empty": c.get_empty, "get_empty_details": rate(r.get_empty),
        });
        v["message_stats"] = message_stats;
    }
    if idle {
        v["idle_since"] = scope::timestamp(q.last_used).into();
    }
    v
}

async fn list_all(
    State(state): State<ApiState>,
    caller: Caller,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vhosts = scope::visible_vhosts(&state, &caller);
    list(&state, &vhosts, &query)
}

async fn list_vhost(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    list(&state, &[vh], &query)
}

fn list(
    state: &ApiState,
    vhosts: &[crate::broker::VHostHandle],
    query: &ListQuery,
) -> ApiResult<Json<Value>> {
    let want = Want {
        queues: true,
        ..Want::default()
    };
    let mut items = Vec::new();
    for (vhost, snap) in scope::snapshots(vhosts, want) {
        items.extend(snap.queues.iter().map(|q| queue_json(state, &vhost, q)));
    }
    query.answer(items, QUEUE_SORT)
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let q = vh
        .with(|m| m.queue_snapshot_of(&name))
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(query.trim(queue_json(&state, &vhost, &q))))
}

async fn declare(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let b = body::object(&raw)?;
    let flag = |key: &str, default: bool| match b.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(v)) => Ok(*v),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a boolean"))),
    };
    let (durable, auto_delete) = (flag("durable", true)?, flag("auto_delete", false)?);
    let args = table_arg(&b, "arguments")?;
    permit(
        &state,
        &caller,
        &vhost,
        Perm::Configure,
        Resource::Queue,
        &name,
    )?;
    blocking(&state, move |_| {
        let raw = crate::broker::encode_table(&args);
        let spec = QueueSpec {
            name: &name,
            passive: false,
            durable,
            exclusive: false,
            auto_delete,
            args_raw: &raw,
        };
        let created = vh.try_with(|m| {
            let existed = m.has_queue(&name);
            m.queue_declare(API_CONNECTION, &spec).map(|_| !existed)
        });
        created.map(put_answer).map_err(declare_error)
    })
    .await
}

/// An `arguments` object of a request body as an AMQP table.
pub fn table_arg(
    b: &Map<String, Value>,
    key: &str,
) -> Result<amq_protocol_types::FieldTable, ApiError> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(o)) => {
            crate::broker::json_args::to_field_table(o).map_err(ApiError::bad_request)
        }
        Some(Value::String(s)) if s.is_empty() => Ok(Default::default()),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be an object"))),
    }
}

/// A refused declare: RabbitMQ's management answers the channel error's text as a 400.
fn declare_error(e: BrokerError) -> ApiError {
    match e {
        BrokerError::Storage(t) => ApiError::internal(t),
        other => ApiError::bad_request(other.text()),
    }
}

#[derive(serde::Deserialize)]
struct DeleteQuery {
    #[serde(rename = "if-empty")]
    if_empty: Option<String>,
    #[serde(rename = "if-unused")]
    if_unused: Option<String>,
}

async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    permit(
        &state,
        &caller,
        &vhost,
        Perm::Configure,
        Resource::Queue,
        &name,
    )?;
    let (if_empty, if_unused) = (
        q.if_empty.as_deref() == Some("true"),
        q.if_unused.as_deref() == Some("true"),
    );
    blocking(&state, move |_| {
        vh.try_with(|m| {
            if !m.has_queue(&name) {
                return Err(BrokerError::NotFound(String::new()));
            }
            m.queue_delete(API_CONNECTION, &name, if_unused, if_empty)
        })
        .map_err(declare_error_or_missing)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

fn declare_error_or_missing(e: BrokerError) -> ApiError {
    match e {
        BrokerError::NotFound(_) => ApiError::not_found(),
        other => declare_error(other),
    }
}

async fn purge(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    permit(&state, &caller, &vhost, Perm::Read, Resource::Queue, &name)?;
    blocking(&state, move |_| {
        vh.try_with(|m| {
            if !m.has_queue(&name) {
                return Err(BrokerError::NotFound(String::new()));
            }
            m.queue_purge(API_CONNECTION, &name)
        })
        .map_err(declare_error_or_missing)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// How `.../get` settles what it took.
#[derive(Clone, Copy)]
struct AckMode {
    ack: bool,
    requeue: bool,
}

fn ack_mode(s: &str) -> Option<AckMode> {
    Some(match s {
        "ack_requeue_true" => AckMode {
            ack: false,
            requeue: true,
        },
        "ack_requeue_false" => AckMode {
            ack: true,
            requeue: false,
        },
        "reject_requeue_true" => AckMode {
            ack: false,
            requeue: true,
        },
        "reject_requeue_false" => AckMode {
            ack: false,
            requeue: false,
        },
        _ => return None,
    })
}

/// Takes up to `count` messages with basic.get on a channel borrowed for one lock, then
/// settles them as `ackmode` says (requeued ones keep their place and are marked
/// redelivered, as with RabbitMQ's get).
async fn get_messages(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let b = body::object(&raw)?;
    body::require(&b, &["count", "ackmode", "encoding"])?;
    let count = b["count"]
        .as_u64()
        .or_else(|| b["count"].as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| ApiError::bad_request("count must be a number"))?;
    // RabbitMQ 3.10's handler crashes on an unknown ackmode: a 500, which clients see.
    let mode = b["ackmode"]
        .as_str()
        .and_then(ack_mode)
        .ok_or_else(|| ApiError::internal(format!("unknown ackmode {}", b["ackmode"])))?;
    let base64 = match b["encoding"].as_str() {
        Some("auto") => false,
        Some("base64") => true,
        _ => {
            return Err(ApiError::bad_request(format!(
                "Unsupported encoding: {}",
                b["encoding"]
            )))
        }
    };
    let truncate = match b.get("truncate") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| ApiError::bad_request("truncate must be a number"))?
                as usize,
        ),
    };
    permit(&state, &caller, &vhost, Perm::Read, Resource::Queue, &name)?;
    let got = blocking(&state, move |_| {
        vh.try_with(|m| {
            if !m.has_queue(&name) {
                return Err(BrokerError::NotFound(String::new()));
            }
            let key = (API_CONNECTION, API_CHANNEL);
            m.open_channel(key, crate::broker::outbox::Outbox::new(0));
            let mut got = Vec::new();
            let taken = (|| {
                for _ in 0..count {
                    match m.get(key, &name, false)? {
                        Some(g) => got.push(g),
                        None => break,
                    }
                }
                if !got.is_empty() {
                    m.settle(key, 0, true, mode.ack, mode.requeue)?;
                }
                Ok(())
            })();
            m.close_channel(key);
            taken.map(|()| got)
        })
        .map_err(declare_error_or_missing)
    })
    .await?;
    let messages = got
        .iter()
        .map(|g| {
            let Some(v) = message::view(&g.payload) else {
                return json!({});
            };
            let body = match truncate {
                Some(n) if n < v.body.len() => &v.body[..n],
                _ => v.body,
            };
            let (payload, encoding) = match std::str::from_utf8(body) {
                Ok(text) if !base64 => (text.to_owned(), "string"),
                _ => (
                    base64::engine::general_purpose::STANDARD.encode(body),
                    "base64",
                ),
            };
            json!({
                "payload_bytes": v.body.len(),
                "redelivered": g.redelivered,
                "exchange": String::from_utf8_lossy(v.exchange),
                "routing_key": String::from_utf8_lossy(v.routing_key),
                "message_count": g.message_count,
                // RabbitMQ shows empty properties as an empty list (an Erlang `[]`).
                "properties": match super::props::decode(v.header) {
                    p if p.is_empty() => json!([]),
                    p => Value::Object(p),
                },
                "payload": payload,
                "payload_encoding": encoding,
            })
        })
        .collect();
    Ok(Json(Value::Array(messages)))
}

async fn bindings(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let want = Want {
        bindings: true,
        ..Want::default()
    };
    let (exists, snap) = vh.with(|m| (m.has_queue(&name), m.snapshot(want)));
    if !exists {
        return Err(ApiError::not_found());
    }
    let items = snap
        .bindings
        .iter()
        .filter(|b| b.destination_type == "queue" && *b.destination == *name)
        .map(|b| binding_json(&vhost, b))
        .collect();
    query.answer(items, &[])
}
