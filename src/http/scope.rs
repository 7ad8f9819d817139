//! What the object endpoints (queues, exchanges, bindings, connections...) share: which
//! vhosts a caller may list, the vhost of a path, the caller's AMQP permissions for a
//! change, and RabbitMQ's small formats (rate details, timestamps, arguments).

use std::sync::Arc;

use amq_protocol_types::FieldTable;
use axum::extract::Path;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::ApiState;
use crate::broker::admin::{VHostSnapshot, Want};
use crate::broker::grants::{Perm, Resource};
use crate::broker::{json_args, BrokerError, VHostHandle};

/// The vhosts a list shows the caller: all for monitoring users and administrators, the
/// ones they have permissions in for the others (rabbit_mgmt_util:list_visible_vhosts).
pub fn visible_vhosts(state: &ApiState, caller: &Caller) -> Vec<VHostHandle> {
    let mut names = state.broker.vhost_names();
    names.sort();
    names
        .iter()
        .filter(|v| caller.is_monitor() || caller.may_see_vhost(state, v))
        .filter_map(|v| state.broker.vhost(v))
        .collect()
}

/// The vhost named in a path: 404 if it does not exist, 401 if the caller may not see it.
pub fn path_vhost(state: &ApiState, caller: &Caller, name: &str) -> Result<VHostHandle, ApiError> {
    caller.vhost_access(state, name)?;
    state.broker.vhost(name).ok_or_else(ApiError::not_found)
}

/// The vhosts a list covers: the one in the path (`/api/queues/{vhost}`), or every vhost
/// the caller may list (`/api/queues`); `everywhere` lists all vhosts whatever the
/// caller's permissions (connections, which are filtered by user instead).
pub fn list_vhosts(
    state: &ApiState,
    caller: &Caller,
    path: Option<Path<String>>,
    everywhere: bool,
) -> Result<Vec<VHostHandle>, ApiError> {
    Ok(match path {
        Some(Path(vhost)) => vec![path_vhost(state, caller, &vhost)?],
        None if everywhere => state
            .broker
            .vhost_names()
            .iter()
            .filter_map(|v| state.broker.vhost(v))
            .collect(),
        None => visible_vhosts(state, caller),
    })
}

/// A model refusal of an API change: a missing object is 404, a storage failure 500,
/// anything else the channel error's text as a 400 (RabbitMQ's management answers
/// `bad_request` with the reason without its AMQP code).
pub fn model_error(e: BrokerError) -> ApiError {
    match e {
        BrokerError::NotFound(_) => ApiError::not_found(),
        BrokerError::Storage(t) => ApiError::internal(t),
        other => ApiError::bad_request(other.text()),
    }
}

/// Snapshots of `want` for every vhost in `vhosts`, each under its own lock in turn.
pub fn snapshots(vhosts: &[VHostHandle], want: Want) -> Vec<(Arc<str>, VHostSnapshot)> {
    vhosts
        .iter()
        .map(|vh| (Arc::from(vh.name()), vh.with(|m| m.snapshot(want))))
        .collect()
}

/// The caller's AMQP permission for a change made on their behalf (RabbitMQ's management
/// opens a channel as the user, so its checks apply).
pub fn permit(
    state: &ApiState,
    caller: &Caller,
    vhost: &str,
    perm: Perm,
    resource: Resource,
    name: &str,
) -> Result<(), ApiError> {
    state
        .broker
        .grants(&caller.name, vhost)
        .check(perm, resource, name)
        .map_err(|e| ApiError::not_authorised(e.text()))
}

/// `{"rate": r}`, RabbitMQ's `*_details`.
pub fn rate(r: f64) -> Value {
    json!(super::queue_view::Rate::of(r))
}

/// A field table as the API shows arguments.
pub fn arguments(t: &FieldTable) -> Value {
    Value::Object(json_args::to_json(t))
}

/// Milliseconds since the epoch as RabbitMQ formats `idle_since` and `connected_at`'s
/// neighbours: `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(super::timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(super::timestamp(1_796_083_385_000), "2026-12-01 00:03:05");
        assert_eq!(super::timestamp(951_782_400_000), "2000-02-29 00:00:00");
    }
}
