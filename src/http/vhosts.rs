//! `/api/vhosts` and `/api/vhosts/{vhost}`: list, show, create or update, delete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{blocking, body, put_answer, ApiState};
use crate::broker::access_db::{PermissionDef, VHostDef};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/vhosts", get(list))
        .route("/api/vhosts/{vhost}", get(show).put(put).delete(delete))
}

/// A vhost as RabbitMQ 3.10 shows it (without message statistics).
fn render(def: &VHostDef, node: &str) -> Value {
    json!({
        "name": def.name,
        "description": def.description,
        "tags": def.tags,
        "default_queue_type": "undefined",
        "metadata": {"description": def.description, "tags": def.tags},
        "tracing": false,
        "cluster_state": {node: "running"},
    })
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
        defs.iter().map(|d| render(d, &state.node.name)).collect(),
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
    Ok(Json(render(&def, &state.node.name)))
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
