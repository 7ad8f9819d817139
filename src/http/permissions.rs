//! `/api/permissions…` and `/api/topic-permissions…`: a user's permissions in a vhost
//! (configure / write / read patterns) and its topic permissions (write / read patterns on
//! routing keys, per topic exchange). All for administrators.

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
use crate::broker::access_db::{AccessDb, PermissionDef, TopicPermissionDef};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/permissions", get(list))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(show).put(put).delete(delete),
        )
        .route("/api/vhosts/{vhost}/permissions", get(of_vhost))
        .route("/api/users/{user}/permissions", get(of_user))
        .route("/api/topic-permissions", get(topic_list))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(topic_show).put(topic_put).delete(topic_delete),
        )
        .route("/api/vhosts/{vhost}/topic-permissions", get(topic_of_vhost))
        .route("/api/users/{user}/topic-permissions", get(topic_of_user))
}

fn to_json<T: serde::Serialize>(items: Vec<T>) -> Json<Value> {
    Json(serde_json::to_value(items).unwrap_or_default())
}

/// The permissions `keep` selects, or 404 when `exists` says the vhost or user is missing.
fn select<T: Clone + serde::Serialize>(
    state: &ApiState,
    caller: &Caller,
    exists: impl FnOnce(&AccessDb) -> bool,
    all: impl FnOnce(&AccessDb) -> Vec<T>,
) -> ApiResult<Json<Value>> {
    caller.admin()?;
    state
        .broker
        .read_access(|db| exists(db).then(|| all(db)))
        .map(to_json)
        .ok_or_else(ApiError::not_found)
}

async fn list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    select(
        &state,
        &caller,
        |_| true,
        |db| db.permissions().cloned().collect(),
    )
}

async fn of_vhost(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    select(
        &state,
        &caller,
        |db| db.vhost(&vhost).is_some(),
        |db| {
            db.permissions()
                .filter(|p| p.vhost == vhost)
                .cloned()
                .collect()
        },
    )
}

async fn of_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    select(
        &state,
        &caller,
        |db| db.user(&user).is_some(),
        |db| {
            db.permissions()
                .filter(|p| p.user == user)
                .cloned()
                .collect()
        },
    )
}

fn find(db: &AccessDb, vhost: &str, user: &str) -> Option<PermissionDef> {
    db.permissions()
        .find(|p| p.vhost == vhost && p.user == user)
        .cloned()
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let p = state
        .broker
        .read_access(|db| find(db, &vhost, &user))
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(serde_json::to_value(p).unwrap_or_default()))
}

/// The string values of `keys`, all required.
fn patterns<const N: usize>(bytes: &[u8], keys: [&str; N]) -> Result<[String; N], ApiError> {
    let b = body::object(bytes)?;
    body::require(&b, &keys)?;
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, key) in out.iter_mut().zip(keys) {
        *slot = body::string(&b, key)?.unwrap_or_default();
    }
    Ok(out)
}

/// Both must exist, or RabbitMQ answers 400 `vhost_or_user_not_found`.
fn check_pair(db: &AccessDb, vhost: &str, user: &str) -> Result<(), ApiError> {
    if db.vhost(vhost).is_none() || db.user(user).is_none() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    Ok(())
}

async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    let [configure, write, read] = patterns(&bytes, ["configure", "write", "read"])?;
    state
        .broker
        .read_access(|db| check_pair(db, &vhost, &user))?;
    let created = blocking(&state, move |broker| {
        Ok(broker.update_access(|db| {
            let created = find(db, &vhost, &user).is_none();
            db.set_permission(PermissionDef {
                user,
                vhost,
                configure,
                write,
                read,
            })?;
            Ok(created)
        })?)
    })
    .await?;
    Ok(put_answer(created))
}

async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.admin()?;
    blocking(&state, move |broker| {
        if broker.read_access(|db| find(db, &vhost, &user)).is_none() {
            return Err(ApiError::not_found());
        }
        broker.update_access(|db| Ok(db.clear_permission(&user, &vhost)))?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn topic_of(db: &AccessDb, vhost: &str, user: &str) -> Vec<TopicPermissionDef> {
    db.topic_permissions()
        .filter(|t| t.vhost == vhost && t.user == user)
        .cloned()
        .collect()
}

async fn topic_list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    select(
        &state,
        &caller,
        |_| true,
        |db| db.topic_permissions().cloned().collect(),
    )
}

async fn topic_of_vhost(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    select(
        &state,
        &caller,
        |db| db.vhost(&vhost).is_some(),
        |db| {
            db.topic_permissions()
                .filter(|t| t.vhost == vhost)
                .cloned()
                .collect()
        },
    )
}

async fn topic_of_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    select(
        &state,
        &caller,
        |db| db.user(&user).is_some(),
        |db| {
            db.topic_permissions()
                .filter(|t| t.user == user)
                .cloned()
                .collect()
        },
    )
}

/// The user's topic permissions in the vhost (a list: one per exchange); 404 if none.
async fn topic_show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let list = state.broker.read_access(|db| topic_of(db, &vhost, &user));
    if list.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(to_json(list))
}

/// Sets the topic permission on one exchange; 201 when the user had none in the vhost.
async fn topic_put(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    let [exchange, write, read] = patterns(&bytes, ["exchange", "write", "read"])?;
    state
        .broker
        .read_access(|db| check_pair(db, &vhost, &user))?;
    let created = blocking(&state, move |broker| {
        Ok(broker.update_access(|db| {
            let created = topic_of(db, &vhost, &user).is_empty();
            db.set_topic_permission(TopicPermissionDef {
                user,
                vhost,
                exchange,
                write,
                read,
            })?;
            Ok(created)
        })?)
    })
    .await?;
    Ok(put_answer(created))
}

/// Removes all the user's topic permissions in the vhost.
async fn topic_delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.admin()?;
    blocking(&state, move |broker| {
        if broker
            .read_access(|db| topic_of(db, &vhost, &user))
            .is_empty()
        {
            return Err(ApiError::not_found());
        }
        broker.update_access(|db| db.clear_topic_permissions(&user, &vhost))?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
