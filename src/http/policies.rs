//! `/api/policies…` and `/api/operator-policies…`: list (all, or one vhost's), show, set,
//! clear. A change reaches the vhost's existing queues and exchanges at once (the broker
//! re-applies the vhost's policies). The `OP` parameter picks operator policies.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{blocking, body, put_answer, ApiState};
use crate::broker::access_db::{AccessDb, PolicyDef};
use crate::broker::BrokerError;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/policies", get(list::<false>))
        .route("/api/policies/{vhost}", get(of_vhost::<false>))
        .route(
            "/api/policies/{vhost}/{name}",
            get(show::<false>).put(put::<false>).delete(delete::<false>),
        )
        .route("/api/operator-policies", get(list::<true>))
        .route("/api/operator-policies/{vhost}", get(of_vhost::<true>))
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(show::<true>).put(put::<true>).delete(delete::<true>),
        )
}

fn policies(db: &AccessDb, operator: bool) -> &[PolicyDef] {
    if operator {
        &db.operator_policies
    } else {
        &db.policies
    }
}

fn to_json(items: Vec<PolicyDef>) -> Json<Value> {
    Json(serde_json::to_value(items).unwrap_or_default())
}

/// Who may show or change one: any administrator; for (non-operator) policies also a
/// policymaker who may see the vhost.
fn may_change<const OP: bool>(state: &ApiState, caller: &Caller, vhost: &str) -> ApiResult<()> {
    if OP {
        caller.admin()
    } else {
        caller.policies(state, vhost)
    }
}

/// Every policy in a vhost the caller may see.
async fn list<const OP: bool>(State(state): State<ApiState>, caller: Caller) -> Json<Value> {
    let all: Vec<PolicyDef> = state.broker.read_access(|db| policies(db, OP).to_vec());
    to_json(
        all.into_iter()
            .filter(|p| caller.may_see_vhost(&state, &p.vhost))
            .collect(),
    )
}

async fn of_vhost<const OP: bool>(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.vhost_access(&state, &vhost)?;
    state
        .broker
        .read_access(|db| {
            db.vhost(&vhost).is_some().then(|| {
                policies(db, OP)
                    .iter()
                    .filter(|p| p.vhost == vhost)
                    .cloned()
                    .collect()
            })
        })
        .map(to_json)
        .ok_or_else(ApiError::not_found)
}

fn find(db: &AccessDb, operator: bool, vhost: &str, name: &str) -> Option<PolicyDef> {
    policies(db, operator)
        .iter()
        .find(|p| p.vhost == vhost && p.name == name)
        .cloned()
}

async fn show<const OP: bool>(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    may_change::<OP>(&state, &caller, &vhost)?;
    let p = state
        .broker
        .read_access(|db| find(db, OP, &vhost, &name))
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(serde_json::to_value(p).unwrap_or_default()))
}

/// The policy a PUT body describes (`pattern` and `definition` required; `apply-to`
/// defaults to `all`, `priority` to 0), as RabbitMQ reads it.
fn parse(vhost: String, name: String, bytes: &[u8]) -> Result<PolicyDef, ApiError> {
    let b = body::object(bytes)?;
    body::require(&b, &["pattern", "definition"])?;
    let pattern = body::string(&b, "pattern")?.unwrap_or_default();
    let definition = match b.get("definition") {
        Some(Value::Object(d)) => d.clone(),
        Some(other) => {
            return Err(ApiError::validation_failed(&format!(
                "definition must be a dictionary: {other}"
            )))
        }
        None => unreachable!("required above"),
    };
    let priority = match b.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                ApiError::validation_failed(&format!(
                    "priority should be a number, actually was {}",
                    body::erlang_term(v)
                ))
            })?,
    };
    let apply_to = body::string(&b, "apply-to")?.unwrap_or_else(|| "all".into());
    Ok(PolicyDef {
        vhost,
        name,
        pattern,
        apply_to,
        definition,
        priority,
    })
}

async fn put<const OP: bool>(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    may_change::<OP>(&state, &caller, &vhost)?;
    if state.broker.read_access(|db| db.vhost(&vhost).is_none()) {
        return Err(ApiError::not_found_because("vhost_not_found"));
    }
    let policy = parse(vhost, name, &bytes)?;
    let created = blocking(&state, move |broker| {
        broker
            .update_access(|db| {
                let created = find(db, OP, &policy.vhost, &policy.name).is_none();
                db.set_policy(policy, OP)?;
                Ok(created)
            })
            .map_err(|e| match e {
                BrokerError::PreconditionFailed(t) => ApiError::validation_failed(&t),
                other => other.into(),
            })
    })
    .await?;
    Ok(put_answer(created))
}

async fn delete<const OP: bool>(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    may_change::<OP>(&state, &caller, &vhost)?;
    blocking(&state, move |broker| {
        let found = broker.update_access(|db| Ok(db.clear_policy(&vhost, &name, OP)))?;
        found.then_some(()).ok_or_else(ApiError::not_found)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
