//! `/api/definitions` (the whole broker) and `/api/definitions/{vhost}` (one vhost's
//! queues, exchanges, bindings, policies and parameters): export with GET, import with
//! POST, in RabbitMQ 3.10's format (`broker::definitions_import`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{Map, Value};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{blocking, ApiState};
use crate::broker::definitions_import::{export_json, import_json};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/definitions", get(export_all).post(import_all))
        .route(
            "/api/definitions/{vhost}",
            get(export_vhost).post(import_vhost),
        )
}

/// Kinds of items a vhost's definitions hold, and whether RabbitMQ drops their `vhost`
/// field in a vhost's export.
const VHOST_ITEMS: &[(&str, bool)] = &[
    ("parameters", false),
    ("policies", false),
    ("queues", true),
    ("exchanges", true),
    ("bindings", true),
];

fn json_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn export_all(State(state): State<ApiState>, caller: Caller) -> ApiResult<Response> {
    caller.admin()?;
    let text = blocking(&state, |broker| Ok(export_json(broker))).await?;
    Ok(json_response(text))
}

async fn import(state: &ApiState, bytes: Vec<u8>) -> ApiResult<Response> {
    blocking(state, move |broker| {
        import_json(broker, &bytes).map_err(ApiError::bad_request)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn import_all(
    State(state): State<ApiState>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.admin()?;
    if serde_json::from_slice::<Value>(&bytes).is_err() {
        return Err(ApiError::bad_request("failed_to_parse_json"));
    }
    import(&state, bytes.to_vec()).await
}

fn vhost_exists(state: &ApiState, vhost: &str) -> Result<(), ApiError> {
    if state.broker.read_access(|db| db.vhost(vhost).is_none()) {
        return Err(ApiError::bad_request("vhost_not_found"));
    }
    Ok(())
}

/// The whole export, narrowed to one vhost's items.
async fn export_vhost(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    vhost_exists(&state, &vhost)?;
    let text = blocking(&state, |broker| Ok(export_json(broker))).await?;
    let mut all: Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut out = Map::new();
    out.insert(
        "rabbit_version".into(),
        all.remove("rabbit_version").unwrap_or_default(),
    );
    for (key, strip) in VHOST_ITEMS {
        let items = match all.remove(*key) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let mine: Vec<Value> = items
            .into_iter()
            .filter(|i| i.get("vhost").and_then(Value::as_str) == Some(&vhost))
            .map(|mut i| {
                if *strip {
                    if let Some(o) = i.as_object_mut() {
                        o.remove("vhost");
                    }
                }
                i
            })
            .collect();
        out.insert((*key).into(), Value::Array(mine));
    }
    Ok(json_response(
        serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default(),
    ))
}

/// Imports one vhost's items: each is put in the vhost of the path; users, vhosts and
/// permissions in the body are ignored, as RabbitMQ does.
async fn import_vhost(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.admin()?;
    vhost_exists(&state, &vhost)?;
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(ApiError::bad_request("failed_to_parse_json"));
    };
    let mut doc = Map::new();
    for (key, _) in VHOST_ITEMS {
        let items = match body.remove(*key) {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(ApiError::bad_request(format!("{key}: expected a list"))),
            None => continue,
        };
        let placed: Vec<Value> = items
            .into_iter()
            .map(|mut i| {
                if let Some(o) = i.as_object_mut() {
                    o.insert("vhost".into(), Value::String(vhost.clone()));
                }
                i
            })
            .collect();
        doc.insert((*key).into(), Value::Array(placed));
    }
    let bytes = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
    import(&state, bytes).await
}
