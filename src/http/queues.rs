//! `/api/queues...`: list, show, declare (PUT), delete (`if-empty`, `if-unused`), purge
//! (`.../contents`), get messages (`.../get`) and a queue's bindings.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use super::auth::Caller;
use super::bindings::{binding_json, BINDING_SORT};
use super::body;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use super::placement::Placements;
use super::queue_view::QueueView;
use super::scope::{self, permit};
use super::{blocking, put_answer, ApiState};
use crate::broker::admin::{QueueSnapshot, Want};
use crate::broker::grants::{Perm, Resource};
use crate::broker::{message, BrokerError, QueueSpec};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/queues", get(list))
        .route("/api/queues/{vhost}", get(list))
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
pub fn queue_json(
    state: &ApiState,
    vhost: &str,
    q: &QueueSnapshot,
    placements: &Placements,
) -> Value {
    let rates = state.rates.queue(vhost, &q.name);
    let placement = placements.get(vhost, &q.name);
    serde_json::to_value(QueueView::new(&state.node.name, vhost, q, rates, placement))
        .expect("a queue view serializes")
}

/// `/api/queues` and `/api/queues/{vhost}`.
async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    vhost: Option<Path<String>>,
    query: ListQuery,
) -> ApiResult {
    let vhosts = scope::list_vhosts(&state, &caller, vhost, false)?;
    let snaps = scope::snapshots(&vhosts, Want::QUEUES);
    let placements = Placements::of(&state).await;
    if query.is_plain() {
        // The plain list (what tools poll): sorted by vhost and name, written from typed
        // views without a `Value` per queue.
        let mut queues: Vec<(&str, &QueueSnapshot)> = snaps
            .iter()
            .flat_map(|(v, s)| s.queues.iter().map(move |q| (v.as_ref(), q)))
            .collect();
        queues.sort_by(|a, b| {
            (a.0.as_bytes(), a.1.name.as_bytes()).cmp(&(b.0.as_bytes(), b.1.name.as_bytes()))
        });
        let views: Vec<QueueView<'_>> = queues
            .iter()
            .map(|(v, q)| {
                let rates = state.rates.queue(v, &q.name);
                QueueView::new(&state.node.name, v, q, rates, placements.get(v, &q.name))
            })
            .collect();
        return Ok(Json(views).into_response());
    }
    let mut items = Vec::new();
    for (vhost, snap) in &snaps {
        items.extend(
            snap.queues
                .iter()
                .map(|q| queue_json(&state, vhost, q, &placements)),
        );
    }
    query
        .answer(items, QUEUE_SORT)
        .map(IntoResponse::into_response)
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
    let placements = Placements::of(&state).await;
    Ok(Json(query.trim(queue_json(
        &state,
        &vhost,
        &q,
        &placements,
    ))))
}

async fn declare(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let b = body::object(&raw)?;
    let durable = body::flag(&b, "durable", true)?;
    let auto_delete = body::flag(&b, "auto_delete", false)?;
    let args = body::table(&b, "arguments")?;
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
        created.map(put_answer).map_err(scope::model_error)
    })
    .await
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
        on_queue(&vh, &name, |m| {
            m.queue_delete(API_CONNECTION, &name, if_unused, if_empty)
        })?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// Runs `f` on the model if queue `name` exists (404 otherwise), with the model's
/// refusals answered as `scope::model_error` does.
fn on_queue<T>(
    vh: &crate::broker::VHostHandle,
    name: &str,
    f: impl FnOnce(&mut crate::broker::VHost) -> Result<T, BrokerError>,
) -> Result<T, ApiError> {
    vh.try_with(|m| {
        if !m.has_queue(name) {
            return Err(BrokerError::NotFound(String::new()));
        }
        f(m)
    })
    .map_err(scope::model_error)
}

async fn purge(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    permit(&state, &caller, &vhost, Perm::Read, Resource::Queue, &name)?;
    blocking(&state, move |_| {
        on_queue(&vh, &name, |m| m.queue_purge(API_CONNECTION, &name))?;
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
        on_queue(&vh, &name, |m| {
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
    let (exists, snap) = vh.with(|m| (m.has_queue(&name), m.snapshot(Want::BINDINGS)));
    if !exists {
        return Err(ApiError::not_found());
    }
    let items = snap
        .bindings
        .iter()
        .filter(|b| b.destination_type == "queue" && *b.destination == *name)
        .map(|b| binding_json(&vhost, b))
        .collect();
    query.answer(items, BINDING_SORT)
}
