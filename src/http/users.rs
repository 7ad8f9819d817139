//! `/api/users` and `/api/users/{user}`: list, show, create or update (a password, or a
//! hash with its algorithm, and tags), delete (the user's connections are closed).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::{blocking, body, put_answer, ApiState};
use crate::broker::access_db::{UserDef, UserLimits};

/// The hashing algorithm of new hashes, and of imported hashes that name none.
const DEFAULT_HASHING: &str = "rabbit_password_hashing_sha256";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/users", get(list))
        .route("/api/users/{user}", get(show).put(put).delete(delete))
}

/// A user's limits as RabbitMQ shows them: only those that are set.
pub fn limits_json(l: &UserLimits) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(n) = l.max_connections {
        m.insert("max-connections".into(), n.into());
    }
    if let Some(n) = l.max_channels {
        m.insert("max-channels".into(), n.into());
    }
    m
}

fn render(u: &UserDef) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash,
        "hashing_algorithm": u.hashing_algorithm,
        "tags": u.tags,
        "limits": limits_json(&u.limits),
    })
}

async fn list(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.admin()?;
    let users: Vec<Value> = state
        .broker
        .read_access(|db| db.users().map(|u| render(&u.def)).collect());
    Ok(Json(Value::Array(users)))
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.admin()?;
    state
        .broker
        .read_access(|db| db.user(&user).map(|u| render(&u.def)))
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// What a PUT sets the user's credentials to.
enum Credentials {
    Password(String),
    Hash {
        hash: String,
        algorithm: String,
    },
    /// Neither: the user can only log in by certificate (an existing one loses its
    /// password), as in RabbitMQ.
    None,
}

/// RabbitMQ's `put_user`: `tags` is required (or the old `administrator` flag), and at
/// most one of `password` and `password_hash`.
async fn put(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    caller.admin()?;
    let b = body::object(&bytes)?;
    let tags = match (b.get("tags"), b.get("administrator")) {
        (None, None) => return Err(ApiError::bad_request("tags_not_present")),
        (None, Some(admin)) => {
            let yes = matches!(admin, Value::Bool(true)) || admin.as_str() == Some("true");
            if yes {
                vec!["administrator".to_owned()]
            } else {
                Vec::new()
            }
        }
        (Some(t), _) => body::tags(Some(t))?,
    };
    let credentials = match (
        body::string(&b, "password")?,
        body::string(&b, "password_hash")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "both_password_and_password_hash_are_provided",
            ))
        }
        (Some(p), None) => Credentials::Password(p),
        (None, Some(hash)) => Credentials::Hash {
            hash,
            algorithm: body::string(&b, "hashing_algorithm")?
                .unwrap_or_else(|| DEFAULT_HASHING.into()),
        },
        (None, None) => Credentials::None,
    };
    let limits = match b.get("limits") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(UserLimits {
            max_connections: limit(m, "max-connections")?,
            max_channels: limit(m, "max-channels")?,
        }),
        Some(other) => return Err(ApiError::bad_request(format!("invalid limits {other}"))),
    };
    let created = blocking(&state, move |broker| {
        Ok(broker.update_access(move |db| {
            let existing = db.user(&name).map(|u| u.def.clone());
            let created = existing.is_none();
            let limits = limits
                .or_else(|| existing.as_ref().map(|u| u.limits.clone()))
                .unwrap_or_default();
            match credentials {
                Credentials::Password(p) => {
                    db.put_user_password(&name, &p, tags);
                    db.set_user_limits(&name, limits)?;
                }
                Credentials::Hash { hash, algorithm } => db.put_user(UserDef {
                    name: name.clone(),
                    password_hash: hash,
                    hashing_algorithm: algorithm,
                    tags,
                    limits,
                })?,
                Credentials::None => db.put_user(UserDef {
                    name: name.clone(),
                    password_hash: String::new(),
                    hashing_algorithm: existing
                        .map(|u| u.hashing_algorithm)
                        .unwrap_or_else(|| DEFAULT_HASHING.into()),
                    tags,
                    limits,
                })?,
            }
            Ok(created)
        })?)
    })
    .await?;
    Ok(put_answer(created))
}

/// An integer limit from a `limits` object.
fn limit(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{key} should be a number, actually was {}",
                body::erlang_term(v)
            ))
        }),
    }
}

/// Deletes the user: its permissions go and its connections are closed (320).
async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    caller.admin()?;
    blocking(&state, move |broker| Ok(broker.delete_user(&user)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
