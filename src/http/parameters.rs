//! `/api/parameters…` (runtime parameters by component, vhost and name) and
//! `/api/global-parameters…`, answered as RabbitMQ 3.10's management plugin does.
//!
//! Warren acts on one component, `vhost-limits` (a vhost's limits, shown as the parameter
//! `limits`, as RabbitMQ lists them); parameters of other components (federation,
//! shovels…) come only from imported definitions, are kept and exported as given, and
//! can be shown and deleted. Setting one of those over the API is refused with RabbitMQ's
//! answer for a component it does not know (400, "component … not found"). Global
//! parameters are free-form values by name, kept in the access database.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::limits::vhost_limits_json;
use super::{blocking, body, put_answer, ApiState};
use crate::broker::access_db::{AccessDb, GlobalParameterDef, VHostLimits};

/// The component whose parameter holds a vhost's limits, and that parameter's name.
const VHOST_LIMITS: (&str, &str) = ("vhost-limits", "limits");

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/parameters", get(list))
        .route("/api/parameters/{component}", get(of_component))
        .route("/api/parameters/{component}/{vhost}", get(of_vhost))
        .route(
            "/api/parameters/{component}/{vhost}/{name}",
            get(show).put(put).delete(delete),
        )
        .route("/api/global-parameters", get(global_list))
        .route(
            "/api/global-parameters/{name}",
            get(global_show).put(global_put).delete(global_delete),
        )
}

/// Every runtime parameter: each vhost's limits (when it has any), then the kept ones.
fn all(db: &AccessDb) -> Vec<Value> {
    let limits = db.vhosts().filter_map(|v| {
        let value = vhost_limits_json(&v.limits);
        (!value.is_empty()).then(|| {
            json!({"value": value, "vhost": v.name,
                   "component": VHOST_LIMITS.0, "name": VHOST_LIMITS.1})
        })
    });
    let kept = db.parameters.iter().map(
        |p| json!({"value": p.value, "vhost": p.vhost, "component": p.component, "name": p.name}),
    );
    limits.chain(kept).collect()
}

fn field<'a>(p: &'a Value, key: &str) -> &'a str {
    p[key].as_str().unwrap_or_default()
}

/// The parameters matching `component` and `vhost` (each if given) in vhosts the caller
/// may see.
fn matching(
    state: &ApiState,
    caller: &Caller,
    component: Option<&str>,
    vhost: Option<&str>,
) -> Vec<Value> {
    state
        .broker
        .read_access(all)
        .into_iter()
        .filter(|p| component.is_none_or(|c| field(p, "component") == c))
        .filter(|p| vhost.is_none_or(|v| field(p, "vhost") == v))
        .filter(|p| caller.may_see_vhost(state, field(p, "vhost")))
        .collect()
}

/// `is_authorized_policies` for the lists: administrators and policymakers (each sees the
/// vhosts it may see).
fn policymaker(caller: &Caller) -> ApiResult<()> {
    if caller.is_admin() || caller.is_policymaker() {
        Ok(())
    } else {
        Err(ApiError::not_authorised(
            "User not authorised to access object",
        ))
    }
}

async fn list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    policymaker(&caller)?;
    Ok(Json(matching(&state, &caller, None, None).into()))
}

async fn of_component(
    State(state): State<ApiState>,
    caller: Caller,
    Path(component): Path<String>,
) -> ApiResult<Json<Value>> {
    policymaker(&caller)?;
    Ok(Json(
        matching(&state, &caller, Some(&component), None).into(),
    ))
}

async fn of_vhost(
    State(state): State<ApiState>,
    caller: Caller,
    Path((component, vhost)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.policies(&state, &vhost)?;
    if state.broker.read_access(|db| db.vhost(&vhost).is_none()) {
        return Err(ApiError::not_found());
    }
    Ok(Json(
        matching(&state, &caller, Some(&component), Some(&vhost)).into(),
    ))
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    caller.policies(&state, &vhost)?;
    matching(&state, &caller, Some(&component), Some(&vhost))
        .into_iter()
        .find(|p| field(p, "name") == name)
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// A vhost's limits from a `vhost-limits` parameter value (`{"max-connections": N, …}`;
/// a negative number means no limit, as for `/api/vhost-limits`).
fn limits_of(value: &Value) -> Result<VHostLimits, ApiError> {
    let m = value
        .as_object()
        .ok_or_else(|| ApiError::validation_failed("value must be a dictionary"))?;
    let limit = |key: &str| -> Result<Option<i64>, ApiError> {
        match m.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::validation_failed(&format!("{key} should be a number"))),
        }
    };
    if let Some(unknown) = m
        .keys()
        .find(|k| !matches!(k.as_str(), "max-connections" | "max-queues"))
    {
        return Err(ApiError::validation_failed(&format!(
            "Unrecognised terms [{unknown}] in limits"
        )));
    }
    Ok(VHostLimits {
        max_connections: limit("max-connections")?,
        max_queues: limit("max-queues")?,
    })
}

async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
    bytes: Bytes,
) -> ApiResult {
    caller.policies(&state, &vhost)?;
    if state.broker.read_access(|db| db.vhost(&vhost).is_none()) {
        return Err(ApiError::not_found_because("vhost_not_found"));
    }
    let b = body::object(&bytes)?;
    body::require(&b, &["value"])?;
    if (component.as_str(), name.as_str()) != VHOST_LIMITS {
        // The only component Warren acts on; RabbitMQ refuses one it has no handler for.
        return Err(ApiError::validation_failed(&format!(
            "component {component} not found"
        )));
    }
    let limits = limits_of(&b["value"])?;
    let created = blocking(&state, move |broker| {
        broker
            .update_access(|db| {
                let created = db
                    .vhost(&vhost)
                    .is_some_and(|v| vhost_limits_json(&v.limits).is_empty());
                db.set_vhost_limits(&vhost, limits)?;
                Ok(created)
            })
            .map_err(ApiError::from)
    })
    .await?;
    Ok(put_answer(created))
}

async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    caller.policies(&state, &vhost)?;
    blocking(&state, move |broker| {
        let found = broker.update_access(|db| {
            if (component.as_str(), name.as_str()) == VHOST_LIMITS {
                let had = db
                    .vhost(&vhost)
                    .is_some_and(|v| !vhost_limits_json(&v.limits).is_empty());
                if had {
                    db.set_vhost_limits(&vhost, VHostLimits::default())?;
                }
                return Ok(had);
            }
            let before = db.parameters.len();
            db.parameters
                .retain(|p| (&p.component, &p.vhost, &p.name) != (&component, &vhost, &name));
            Ok(db.parameters.len() != before)
        })?;
        found.then_some(()).ok_or_else(ApiError::not_found)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn global_list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let all = state.broker.read_access(|db| db.global_parameters.clone());
    Ok(Json(serde_json::to_value(all).unwrap_or_default()))
}

async fn global_show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let found = state.broker.read_access(|db| {
        db.global_parameters
            .iter()
            .find(|g| g.name == name)
            .cloned()
    });
    found
        .map(|g| Json(json!({"value": g.value, "name": g.name})))
        .ok_or_else(ApiError::not_found)
}

async fn global_put(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    let b = body::object(&bytes)?;
    body::require(&b, &["value"])?;
    let value = b["value"].clone();
    let created = blocking(&state, move |broker| {
        broker
            .update_access(|db| {
                let created = !db.global_parameters.iter().any(|g| g.name == name);
                db.global_parameters.retain(|g| g.name != name);
                db.global_parameters
                    .push(GlobalParameterDef { name, value });
                Ok(created)
            })
            .map_err(ApiError::from)
    })
    .await?;
    Ok(put_answer(created))
}

async fn global_delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    blocking(&state, move |broker| {
        let found = broker.update_access(|db| {
            let before = db.global_parameters.len();
            db.global_parameters.retain(|g| g.name != name);
            Ok(db.global_parameters.len() != before)
        })?;
        found.then_some(()).ok_or_else(ApiError::not_found)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
