//! `/api/exchanges...`: list, show, declare (PUT), delete (`if-unused`), publish a
//! message (answering `routed`, after the message is as durable as a confirm would
//! make it), and an exchange's bindings as source or destination.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use super::auth::Caller;
use super::bindings::{binding_json, exchange_id, BINDING_SORT};
use super::body;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use super::queues::{table_arg, API_CONNECTION};
use super::scope::{self, arguments, permit};
use super::{blocking, put_answer, ApiState};
use crate::broker::admin::{ExchangeSnapshot, Want};
use crate::broker::grants::{Perm, Resource};
use crate::broker::{BrokerError, ExchangeSpec, PublishRequest, VHostHandle};
use crate::protocol::properties;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/exchanges", get(list_all))
        .route("/api/exchanges/{vhost}", get(list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(show).put(declare).delete(delete),
        )
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/{side}",
            get(bindings),
        )
}

fn exchange_json(vhost: &str, x: &ExchangeSnapshot) -> Value {
    json!({
        "name": x.name.as_ref(),
        "vhost": vhost,
        "type": x.kind,
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": arguments(&x.arguments),
        "policy": x.policy,
        "user_who_performed_action": "rmq-internal",
    })
}

fn exchanges(vhosts: &[VHostHandle]) -> Vec<Value> {
    let want = Want {
        exchanges: true,
        ..Want::default()
    };
    scope::snapshots(vhosts, want)
        .iter()
        .flat_map(|(vhost, snap)| snap.exchanges.iter().map(|x| exchange_json(vhost, x)))
        .collect()
}

async fn list_all(
    State(state): State<ApiState>,
    caller: Caller,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vhosts = scope::visible_vhosts(&state, &caller);
    query.answer(exchanges(&vhosts), &["vhost", "name"])
}

async fn list_vhost(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    query.answer(exchanges(&[vh]), &["vhost", "name"])
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let name = exchange_id(&name);
    let want = Want {
        exchanges: true,
        ..Want::default()
    };
    let snap = vh.with(|m| m.has_exchange(name).then(|| m.snapshot(want)));
    snap.and_then(|s| s.exchanges.into_iter().find(|x| *x.name == *name))
        .map(|x| Json(query.trim(exchange_json(&vhost, &x))))
        .ok_or_else(ApiError::not_found)
}

fn model_error(e: BrokerError) -> ApiError {
    match e {
        BrokerError::NotFound(_) => ApiError::not_found(),
        BrokerError::Storage(t) => ApiError::internal(t),
        other => ApiError::bad_request(other.text()),
    }
}

async fn declare(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let b = body::object(&raw)?;
    body::require(&b, &["type"])?;
    let kind = body::string(&b, "type")?.unwrap_or_default();
    let flag = |key: &str, default: bool| match b.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(v)) => Ok(*v),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a boolean"))),
    };
    let (durable, auto_delete, internal) = (
        flag("durable", true)?,
        flag("auto_delete", false)?,
        flag("internal", false)?,
    );
    let args = table_arg(&b, "arguments")?;
    permit(
        &state,
        &caller,
        &vhost,
        Perm::Configure,
        Resource::Exchange,
        &name,
    )?;
    blocking(&state, move |_| {
        let raw = crate::broker::encode_table(&args);
        let spec = ExchangeSpec {
            name: &name,
            kind: &kind,
            passive: false,
            durable,
            auto_delete,
            internal,
            args_raw: &raw,
        };
        vh.try_with(|m| {
            let existed = m.has_exchange(&name);
            m.exchange_declare(API_CONNECTION, &spec).map(|()| !existed)
        })
        .map(put_answer)
        .map_err(model_error)
    })
    .await
}

#[derive(serde::Deserialize)]
struct DeleteQuery {
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
    let name = exchange_id(&name).to_owned();
    permit(
        &state,
        &caller,
        &vhost,
        Perm::Configure,
        Resource::Exchange,
        &name,
    )?;
    let if_unused = q.if_unused.as_deref() == Some("true");
    blocking(&state, move |_| {
        vh.try_with(|m| {
            if !m.has_exchange(&name) {
                return Err(BrokerError::NotFound(String::new()));
            }
            m.exchange_delete(API_CONNECTION, &name, if_unused)
        })
        .map_err(model_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// Publishes one message as the caller, waits until it is as durable as a publisher
/// confirm would promise, and answers whether it was routed.
async fn publish(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let name = exchange_id(&name).to_owned();
    let b = body::object(&raw)?;
    body::require(
        &b,
        &["routing_key", "properties", "payload", "payload_encoding"],
    )?;
    let routing_key = body::string(&b, "routing_key")?.unwrap_or_default();
    if routing_key.len() > 255 {
        return Err(ApiError::bad_request(
            "routing_key is longer than 255 bytes",
        ));
    }
    let payload = body::string(&b, "payload")?.unwrap_or_default();
    let payload = match body::string(&b, "payload_encoding")?.as_deref() {
        Some("string") => payload.into_bytes(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(payload.as_bytes())
            .map_err(|_| ApiError::bad_request("payload is not valid base64"))?,
        _ => {
            return Err(ApiError::bad_request(
                "payload_encoding must be string or base64",
            ))
        }
    };
    let props = match &b["properties"] {
        Value::Object(p) => p.clone(),
        _ => return Err(ApiError::bad_request("properties must be an object")),
    };
    let header = super::props::encode(&props, payload.len() as u64)?;
    check_properties(&header, &caller)?;
    permit(
        &state,
        &caller,
        &vhost,
        Perm::Write,
        Resource::Exchange,
        &name,
    )?;
    let commit = state.broker.commit().clone();
    blocking(&state, move |_| {
        let h = properties::decode(&header).map_err(|e| ApiError::bad_request(e.text))?;
        let headers_table = h.headers;
        let body = [payload.as_slice()];
        let req = PublishRequest {
            exchange: &name,
            routing_key: &routing_key,
            header: &header,
            persistent: h.persistent(),
            headers_table,
            body: &body,
        };
        let published = vh.try_with(|m| m.publish(&req)).map_err(model_error)?;
        if published.failed {
            return Err(ApiError::internal("the message could not be stored"));
        }
        commit
            .wait(published.ticket)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Json(json!({ "routed": published.routed })))
    })
    .await
}

/// What basic.publish would refuse in the properties: a bad `expiration`, a `user_id`
/// that is not the caller's (unless they are an impersonator).
fn check_properties(header: &[u8], caller: &Caller) -> Result<(), ApiError> {
    let h = properties::decode(header).map_err(|e| ApiError::bad_request(e.text))?;
    if let Some(e) = h.expiration {
        properties::parse_expiration(e)
            .map_err(|why| ApiError::bad_request(format!("invalid expiration '{e}': {why}")))?;
    }
    let impersonator = caller.tags.iter().any(|t| t == "impersonator");
    match h.user_id {
        Some(claimed) if claimed != caller.name && !impersonator => {
            Err(ApiError::bad_request(format!(
                "user_id property set to '{claimed}' but authenticated user was '{}'",
                caller.name
            )))
        }
        _ => Ok(()),
    }
}

async fn bindings(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name, side)): Path<(String, String, String)>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let source_side = match side.as_str() {
        "source" => true,
        "destination" => false,
        _ => return Err(ApiError::not_found()),
    };
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let name = exchange_id(&name);
    let want = Want {
        bindings: true,
        ..Want::default()
    };
    let snap = vh
        .with(|m| m.has_exchange(name).then(|| m.snapshot(want)))
        .ok_or_else(ApiError::not_found)?;
    let items = snap
        .bindings
        .iter()
        .filter(|b| {
            if source_side {
                *b.source == *name
            } else {
                b.destination_type == "exchange" && *b.destination == *name
            }
        })
        .map(|b| binding_json(&vhost, b))
        .collect();
    query.answer(items, BINDING_SORT)
}
