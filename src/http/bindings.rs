//! `/api/bindings...`: every binding, a vhost's, those between one exchange and one
//! queue or exchange (list, create with POST answering `Location`), and one binding by
//! its `properties_key` (show, delete). The default exchange's implicit bindings are
//! listed as RabbitMQ lists them and cannot be changed.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Caller;
use super::body;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use super::queues::{table_arg, API_CONNECTION};
use super::scope::{self, arguments, permit};
use super::{blocking, ApiState};
use crate::broker::admin::{BindingSnapshot, Want};
use crate::broker::grants::{Perm, Resource};
use crate::broker::{BindSpec, BrokerError};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/bindings", get(list_all))
        .route("/api/bindings/{vhost}", get(list_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{dest}",
            get(list_between).post(create),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{dest}/{props}",
            get(show).delete(remove),
        )
}

/// The default sort of binding lists (rabbit_mgmt_wm_bindings).
pub const BINDING_SORT: &[&str] = &[
    "vhost",
    "source",
    "type",
    "destination",
    "routing_key",
    "properties_key",
];

/// The API's name for an exchange in a path: `amq.default` is the default exchange.
pub fn exchange_id(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

/// A binding as RabbitMQ's management shows it.
pub fn binding_json(vhost: &str, b: &BindingSnapshot) -> Value {
    json!({
        "source": b.source.as_ref(),
        "vhost": vhost,
        "destination": b.destination.as_ref(),
        "destination_type": b.destination_type,
        "routing_key": b.routing_key,
        "arguments": arguments(&b.arguments),
        "properties_key": properties_key(b),
    })
}

/// RabbitMQ's `pack_binding_props`: the routing key URL-quoted (`~` as `%7E`), `~` alone
/// for an empty key without arguments, and with arguments `KEY~HASH`. RabbitMQ's hash is
/// Erlang's `phash2` of the argument term; Warren's is a hash of the encoded table, just
/// as opaque to clients, which take the key from a listing.
pub fn properties_key(b: &BindingSnapshot) -> String {
    let quoted = quote_plus(&b.routing_key);
    if b.arguments.inner().is_empty() {
        return if b.routing_key.is_empty() {
            "~".into()
        } else {
            quoted
        };
    }
    let encoded = crate::broker::encode_table(&b.arguments);
    let hash = crc32fast::hash(&encoded).to_be_bytes();
    let hash = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, hash);
    format!("{quoted}~{}", quote_plus(&hash))
}

/// Does the `props` segment of a path name binding `b`? The segment arrives decoded once
/// and clients quote the key once more (rabbitmqadmin) or not (curl users), so both the
/// key and its unquoted form are accepted, as RabbitMQ's unquoting of each part does.
fn same_props(props: &str, b: &BindingSnapshot) -> bool {
    let key = properties_key(b);
    props == key || unquote(props) == unquote(&key)
}

/// Undoes `quote_plus` (`+` is a space, `%XX` a byte).
fn unquote(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// mochiweb's `quote_plus` with `~` escaped, as RabbitMQ quotes binding keys.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => out.push(c as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

fn all_bindings(vhosts: &[crate::broker::VHostHandle]) -> Vec<Value> {
    let want = Want {
        bindings: true,
        ..Want::default()
    };
    scope::snapshots(vhosts, want)
        .iter()
        .flat_map(|(vhost, snap)| snap.bindings.iter().map(|b| binding_json(vhost, b)))
        .collect()
}

async fn list_all(
    State(state): State<ApiState>,
    caller: Caller,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vhosts = scope::visible_vhosts(&state, &caller);
    query.answer(all_bindings(&vhosts), BINDING_SORT)
}

async fn list_vhost(
    State(state): State<ApiState>,
    caller: Caller,
    Path(vhost): Path<String>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    query.answer(all_bindings(&[vh]), BINDING_SORT)
}

/// `q` or `e` in a path.
fn dest_type(kind: &str) -> Result<&'static str, ApiError> {
    match kind {
        "q" => Ok("queue"),
        "e" => Ok("exchange"),
        _ => Err(ApiError::not_found()),
    }
}

/// The bindings from `source` to `dest`, after checking both exist (404 otherwise).
fn between(
    state: &ApiState,
    caller: &Caller,
    (vhost, source, kind, dest): (&str, &str, &str, &str),
) -> Result<Vec<BindingSnapshot>, ApiError> {
    let dtype = dest_type(kind)?;
    let vh = scope::path_vhost(state, caller, vhost)?;
    let source = exchange_id(source);
    let want = Want {
        bindings: true,
        ..Want::default()
    };
    let (ends, snap) = vh.with(|m| {
        let dest_exists = match dtype {
            "queue" => m.has_queue(dest),
            _ => m.has_exchange(exchange_id(dest)),
        };
        (m.has_exchange(source) && dest_exists, m.snapshot(want))
    });
    if !ends {
        return Err(ApiError::not_found());
    }
    let dest = if dtype == "exchange" {
        exchange_id(dest)
    } else {
        dest
    };
    Ok(snap
        .bindings
        .into_iter()
        .filter(|b| *b.source == *source && b.destination_type == dtype && *b.destination == *dest)
        .collect())
}

async fn list_between(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, source, kind, dest)): Path<(String, String, String, String)>,
    query: ListQuery,
) -> ApiResult<Json<Value>> {
    let found = between(&state, &caller, (&vhost, &source, &kind, &dest))?;
    let items = found.iter().map(|b| binding_json(&vhost, b)).collect();
    query.answer(items, BINDING_SORT)
}

async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let found = between(&state, &caller, (&vhost, &source, &kind, &dest))?;
    found
        .iter()
        .find(|b| same_props(&props, b))
        .map(|b| Json(binding_json(&vhost, b)))
        .ok_or_else(ApiError::not_found)
}

/// Binds or unbinds on the model as the caller (write on the destination, read on the
/// source, as queue.bind checks).
fn change(
    state: &ApiState,
    caller: &Caller,
    (vhost, source, dtype, dest): (&str, &str, &'static str, &str),
    routing_key: &str,
    args_raw: &[u8],
    bind: bool,
) -> Result<(), ApiError> {
    let vh = scope::path_vhost(state, caller, vhost)?;
    let dest_resource = if dtype == "queue" {
        Resource::Queue
    } else {
        Resource::Exchange
    };
    permit(state, caller, vhost, Perm::Write, dest_resource, dest)?;
    permit(state, caller, vhost, Perm::Read, Resource::Exchange, source)?;
    let spec = BindSpec {
        source,
        routing_key,
        args_raw,
        bind,
    };
    vh.try_with(|m| {
        if !m.has_exchange(source) {
            return Err(BrokerError::NotFound(String::new()));
        }
        if dtype == "queue" {
            m.queue_bind(API_CONNECTION, dest, &spec)
        } else {
            m.exchange_bind(API_CONNECTION, dest, &spec)
        }
    })
    .map_err(|e| match e {
        BrokerError::NotFound(_) => ApiError::not_found(),
        BrokerError::Storage(t) => ApiError::internal(t),
        other => ApiError::bad_request(other.text()),
    })
}

async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, source, kind, dest)): Path<(String, String, String, String)>,
    raw: Bytes,
) -> ApiResult {
    let dtype = dest_type(&kind)?;
    let b = body::object(&raw)?;
    let routing_key = body::string(&b, "routing_key")?.unwrap_or_default();
    let args = table_arg(&b, "arguments")?;
    let source = exchange_id(&source).to_owned();
    let dest = if dtype == "exchange" {
        exchange_id(&dest).to_owned()
    } else {
        dest
    };
    let (st, caller2, vhost2, src2, dest2, key2) = (
        state.clone(),
        caller.clone(),
        vhost.clone(),
        source.clone(),
        dest.clone(),
        routing_key.clone(),
    );
    let args2 = args.clone();
    blocking(&state, move |_| {
        let raw = crate::broker::encode_table(&args2);
        change(
            &st,
            &caller2,
            (&vhost2, &src2, dtype, &dest2),
            &key2,
            &raw,
            true,
        )
    })
    .await?;
    let made = BindingSnapshot {
        source: source.as_str().into(),
        destination: dest.as_str().into(),
        destination_type: dtype,
        routing_key,
        arguments: args,
    };
    // RabbitMQ answers a reference relative to the POST's URL: `DEST/PROPS`.
    let location = format!("{}/{}", path_segment(&dest), properties_key(&made));
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    let dtype = dest_type(&kind)?;
    let found = between(&state, &caller, (&vhost, &source, &kind, &dest))?;
    let b = found
        .into_iter()
        .find(|b| same_props(&props, b))
        .ok_or_else(ApiError::not_found)?;
    let st = state.clone();
    blocking(&state, move |_| {
        let raw = crate::broker::encode_table(&b.arguments);
        change(
            &st,
            &caller,
            (&vhost, &b.source, dtype, &b.destination),
            &b.routing_key,
            &raw,
            false,
        )
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A name as one path segment (`/` as `%2F`).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                out.push(c as char)
            }
            _ => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(key: &str, args: amq_protocol_types::FieldTable) -> BindingSnapshot {
        BindingSnapshot {
            source: "x".into(),
            destination: "q".into(),
            destination_type: "queue",
            routing_key: key.into(),
            arguments: args,
        }
    }

    #[test]
    fn properties_keys_as_rabbitmq_quotes_them() {
        assert_eq!(properties_key(&binding("", Default::default())), "~");
        assert_eq!(properties_key(&binding("a.#", Default::default())), "a.%23");
        assert_eq!(
            properties_key(&binding("a b~c", Default::default())),
            "a+b%7Ec"
        );
        let mut args = amq_protocol_types::FieldTable::default();
        args.insert(
            "x-match".into(),
            amq_protocol_types::AMQPValue::Boolean(true),
        );
        let k = properties_key(&binding("k", args));
        assert!(k.starts_with("k~") && k.len() > 3, "{k}");
    }
}
