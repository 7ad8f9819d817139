//! Warren's own storage endpoints, beside RabbitMQ's API (no RabbitMQ tool asks for them,
//! and no RabbitMQ answer changes): what the web console's storage views show.
//!
//! - `GET /api/warren/storage`: the node's engine measurements — the fsync policy, the
//!   sync-round latency histogram (the one Prometheus renders as `warren_fsync_seconds`),
//!   the group-commit batch histogram and compaction totals. Monitoring users.
//! - `GET /api/warren/queues/{vhost}/{name}/storage`: one queue's segments, bytes reserved
//!   and written, live records against records written, and its last compaction. Anyone
//!   who may see the vhost. O(the queue's segments), under the vhost lock for one pass.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use warren_storage::HistogramSnapshot;

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::scope;
use super::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/warren/storage", get(node_storage))
        .route(
            "/api/warren/queues/{vhost}/{name}/storage",
            get(queue_storage),
        )
}

/// A histogram as `{"buckets": [[upper bound, count in that bucket], ...], "sum", "count"}`;
/// the last bound is `null` (+Inf). `scale` divides bounds and sum (ns -> s).
fn histogram(h: &HistogramSnapshot, scale: f64) -> Value {
    let buckets: Vec<Value> = h
        .buckets
        .iter()
        .map(|&(le, n)| {
            let le = (le != u64::MAX).then(|| le as f64 / scale);
            json!([le, n])
        })
        .collect();
    json!({"buckets": buckets, "sum": h.sum as f64 / scale, "count": h.count})
}

async fn node_storage(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.monitor()?;
    let commit = state.broker.commit();
    let m = commit.metrics().snapshot();
    Ok(Json(json!({
        "fsync_policy": commit.policy().to_string(),
        "fsync_seconds": histogram(&m.fsync_ns, 1e9),
        "group_commit_batch": histogram(&m.batch, 1.0),
        "compactions": m.compactions,
        "compaction_reclaimed_bytes": m.reclaimed_bytes,
    })))
}

async fn queue_storage(
    State(state): State<ApiState>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let vh = scope::path_vhost(&state, &caller, &vhost)?;
    let s = vh
        .with(|m| m.queue_storage_of(&name))
        .ok_or_else(ApiError::not_found)?;
    let l = &s.logs;
    // Live ratio: of the records still in the files, the share not yet acked (acked ones
    // wait for their segment to empty or be compacted). 1 for an empty log.
    let live_ratio = if l.records == 0 {
        1.0
    } else {
        l.live_records as f64 / l.records as f64
    };
    let compaction = s.compaction.map(|c| {
        json!({
            "last_at": scope::timestamp(c.last_at),
            "last_reclaimed_bytes": c.last_reclaimed,
            "count": c.count,
            "reclaimed_bytes": c.reclaimed,
        })
    });
    Ok(Json(json!({
        "vhost": vhost,
        "name": name,
        "logs": s.levels,
        "segments": l.segments,
        "file_bytes": l.file_bytes,
        "written_bytes": l.written_bytes,
        "records": l.records,
        "live_records": l.live_records,
        "live_ratio": live_ratio,
        "compaction": compaction,
    })))
}
