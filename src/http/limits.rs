//! `/api/vhost-limits…` (`max-connections`, `max-queues`) and `/api/user-limits…`
//! (`max-connections`, `max-channels`): list, set one with `{"value": N}`, clear one. A
//! negative value means no limit, as in RabbitMQ. PUT and DELETE answer 204.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::users::limits_json;
use super::{blocking, body, ApiState};
use crate::broker::access_db::{Limit, VHostDef, VHostLimits};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/vhost-limits", get(vhost_list))
        .route("/api/vhost-limits/{vhost}", get(vhost_show))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            put(vhost_put).delete(vhost_delete),
        )
        .route("/api/user-limits", get(user_list))
        .route("/api/user-limits/{user}", get(user_show))
        .route(
            "/api/user-limits/{user}/{name}",
            put(user_put).delete(user_delete),
        )
}

pub(super) fn vhost_limits_json(l: &VHostLimits) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(n) = l.max_connections {
        m.insert("max-connections".into(), n.into());
    }
    if let Some(n) = l.max_queues {
        m.insert("max-queues".into(), n.into());
    }
    m
}

/// `[{"vhost": …, "value": {…}}]` for the vhosts (the one, or all the caller may see)
/// that have a limit.
fn vhost_entries(state: &ApiState, caller: &Caller, only: Option<&str>) -> Vec<Value> {
    let defs: Vec<VHostDef> = state.broker.read_access(|db| {
        db.vhosts()
            .filter(|v| only.is_none_or(|o| o == v.name))
            .cloned()
            .collect()
    });
    defs.iter()
        .filter(|v| caller.may_see_vhost(state, &v.name))
        .map(|v| (v, vhost_limits_json(&v.limits)))
        .filter(|(_, m)| !m.is_empty())
        .map(|(v, m)| json!({"vhost": v.name, "value": m}))
        .collect()
}

async fn vhost_list(State(state): State<ApiState>, caller: Caller) -> Json<Value> {
    Json(Value::Array(vhost_entries(&state, &caller, None)))
}

async fn vhost_show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.vhost_access(&state, &vhost)?;
    if state.broker.read_access(|db| db.vhost(&vhost).is_none()) {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(vhost_entries(
        &state,
        &caller,
        Some(&vhost),
    ))))
}

/// The `value` of a limit PUT: an integer. `prefix` is RabbitMQ's wording around the
/// reason ("Validation failed" for vhost limits, none for user limits).
fn limit_value(bytes: &[u8], name: &str, validation: bool) -> Result<i64, ApiError> {
    let b = body::object(bytes)?;
    body::require(&b, &["value"])?;
    let v = &b["value"];
    let refuse = |reason: String| {
        if validation {
            ApiError::validation_failed(&reason)
        } else {
            ApiError::bad_request(reason)
        }
    };
    v.as_i64().ok_or_else(|| {
        refuse(format!(
            "{name} should be a number, actually was {}",
            body::erlang_term(v)
        ))
    })
}

/// The limit `name` among `known`, or RabbitMQ's "Unrecognised terms" refusal.
fn check_name(name: &str, known: &[&str], value: &Value, what: &str) -> Result<(), ApiError> {
    if known.contains(&name) {
        return Ok(());
    }
    let reason = format!(
        "Unrecognised terms [{{<<\"{name}\">>,{}}}] in {what}",
        body::erlang_term(value)
    );
    Err(if what == "limits" {
        ApiError::validation_failed(&reason)
    } else {
        ApiError::bad_request(reason)
    })
}

/// The limit slot `name` names in a vhost's limits.
fn vhost_slot<'a>(l: &'a mut VHostLimits, name: &str) -> &'a mut Limit {
    if name == "max-connections" {
        &mut l.max_connections
    } else {
        &mut l.max_queues
    }
}

async fn vhost_put(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.admin()?;
    if state.broker.read_access(|db| db.vhost(&vhost).is_none()) {
        return Err(ApiError::not_found_because("vhost_not_found"));
    }
    let raw = body::object(&bytes)?.remove("value").unwrap_or(Value::Null);
    check_name(&name, &["max-connections", "max-queues"], &raw, "limits")?;
    let value = limit_value(&bytes, &name, true)?;
    set_vhost_limit(&state, vhost, name, Some(value)).await
}

async fn vhost_delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.admin()?;
    if state.broker.read_access(|db| db.vhost(&vhost).is_none()) {
        return Err(ApiError::not_found());
    }
    if !matches!(name.as_str(), "max-connections" | "max-queues") {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    set_vhost_limit(&state, vhost, name, None).await
}

async fn set_vhost_limit(
    state: &ApiState,
    vhost: String,
    name: String,
    value: Limit,
) -> ApiResult<Response> {
    blocking(state, move |broker| {
        broker.update_access(|db| {
            let mut limits = db
                .vhost(&vhost)
                .map(|v| v.limits.clone())
                .ok_or_else(|| format!("no vhost '{vhost}'"))?;
            *vhost_slot(&mut limits, &name) = value;
            db.set_vhost_limits(&vhost, limits)
        })?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn user_entries(state: &ApiState, only: Option<&str>) -> Vec<Value> {
    state.broker.read_access(|db| {
        db.users()
            .filter(|u| only.is_none_or(|o| o == u.def.name))
            .map(|u| (u, limits_json(&u.def.limits)))
            .filter(|(_, m)| !m.is_empty())
            .map(|(u, m)| json!({"user": u.def.name, "value": m}))
            .collect()
    })
}

async fn user_list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.admin()?;
    Ok(Json(Value::Array(user_entries(&state, None))))
}

async fn user_show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.admin()?;
    if state.broker.read_access(|db| db.user(&user).is_none()) {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(user_entries(&state, Some(&user)))))
}

async fn user_put(
    State(state): State<ApiState>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.admin()?;
    let raw = body::object(&bytes)?.remove("value").unwrap_or(Value::Null);
    check_name(
        &name,
        &["max-connections", "max-channels"],
        &raw,
        "user-limits",
    )?;
    let value = limit_value(&bytes, &name, false)?;
    if state.broker.read_access(|db| db.user(&user).is_none()) {
        return Err(ApiError::bad_request_term(json!(["no_such_user", user])));
    }
    set_user_limit(&state, user, name, Some(value)).await
}

async fn user_delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.admin()?;
    if state.broker.read_access(|db| db.user(&user).is_none()) {
        return Err(ApiError::not_found());
    }
    if !matches!(name.as_str(), "max-connections" | "max-channels") {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    set_user_limit(&state, user, name, None).await
}

async fn set_user_limit(
    state: &ApiState,
    user: String,
    name: String,
    value: Limit,
) -> ApiResult<Response> {
    blocking(state, move |broker| {
        broker.update_access(|db| {
            let mut limits = db
                .user(&user)
                .map(|u| u.def.limits.clone())
                .ok_or_else(|| format!("no user '{user}'"))?;
            if name == "max-connections" {
                limits.max_connections = value;
            } else {
                limits.max_channels = value;
            }
            db.set_user_limits(&user, limits)
        })?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
