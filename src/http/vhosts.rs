//! `/api/vhosts` and `/api/vhosts/{vhost}`: list, show, create or update, delete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use std::sync::atomic::Ordering::Relaxed;

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::scope::rate;
use super::{blocking, body, put_answer, ApiState};
use crate::broker::access_db::{PermissionDef, VHostDef};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/vhosts", get(list))
        .route("/api/vhosts/{vhost}", get(show).put(put).delete(delete))
}

/// A vhost as RabbitMQ 3.10 shows it, with its message counts and traffic.
fn render(state: &ApiState, def: &VHostDef) -> Value {
    let node = state.node.name.as_str();
    let mut v = json!({
        "name": def.name,
        "description": def.description,
        "tags": def.tags,
        "default_queue_type": "undefined",
        "metadata": {"description": def.description, "tags": def.tags},
        "tracing": false,
        "cluster_state": {node: "running"},
    });
    if let Some(vh) = state.broker.vhost(&def.name) {
        let (t, conns) = vh.with(|m| (m.totals(), m.connection_infos()));
        let r = state.rates.vhost(Some(&def.name));
        let (mut recv, mut send, mut recv_rate, mut send_rate) = (0, 0, 0.0, 0.0);
        for c in &conns {
            recv += c.recv_oct.load(Relaxed);
            send += c.send_oct.load(Relaxed);
            let (rr, sr) = state.rates.connection(c.id);
            recv_rate += rr;
            send_rate += sr;
        }
        let stats = json!({
            "messages": t.messages_ready + t.messages_unacknowledged,
            "messages_details": rate(r.messages),
            "messages_ready": t.messages_ready,
            "messages_ready_details": rate(r.messages_ready),
            "messages_unacknowledged": t.messages_unacknowledged,
            "messages_unacknowledged_details": rate(r.messages_unacknowledged),
            "recv_oct": recv,
            "recv_oct_details": rate(recv_rate),
            "send_oct": send,
            "send_oct_details": rate(send_rate),
        });
        if let (Some(v), Value::Object(s)) = (v.as_object_mut(), stats) {
            v.extend(s);
        }
    }
    v
}

/// Every vhost the caller may see.
async fn list(State(state): State<ApiState>, caller: Caller) -> Json<Value> {
    let defs: Vec<VHostDef> = state.broker.read_access(|db| {
        db.vhosts()
            .filter(|v| caller.is_admin() || db.grants(&caller.name, &v.name).is_some())
            .cloned()
            .collect()
    });
    Json(Value::Array(
        defs.iter().map(|d| render(&state, d)).collect(),
    ))
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let def = state
        .broker
        .read_access(|db| db.vhost(&vhost).cloned())
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(render(&state, &def)))
}

/// Creates the vhost (and, as RabbitMQ does, gives its creator full permissions there),
/// or replaces an existing one's description and tags (its limits stay).
async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    let b = body::object(&bytes)?;
    let description = body::string(&b, "description")?.unwrap_or_default();
    let tags = body::tags(b.get("tags"))?;
    let created = blocking(&state, move |broker| {
        let existing = broker.read_access(|db| db.vhost(&vhost).cloned());
        let created = existing.is_none();
        let limits = existing.map(|v| v.limits).unwrap_or_default();
        broker.put_vhost(VHostDef {
            name: vhost.clone(),
            description,
            tags,
            limits,
        })?;
        if created {
            broker.update_access(|db| {
                if db.user(&caller.name).is_none() {
                    return Ok(());
                }
                db.set_permission(PermissionDef {
                    user: caller.name.clone(),
                    vhost: vhost.clone(),
                    configure: ".*".into(),
                    write: ".*".into(),
                    read: ".*".into(),
                })
            })?;
        }
        Ok(created)
    })
    .await?;
    Ok(put_answer(created))
}

/// Deletes the vhost: its connections are closed (320), its queues and files removed.
async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    blocking(&state, move |broker| Ok(broker.delete_vhost(&vhost)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
