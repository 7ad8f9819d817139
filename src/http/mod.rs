//! The management HTTP API: RabbitMQ 3.10's `/api/...` (rabbitmq_management) for what
//! operators and tools use, served with axum on the broker's tokio runtime on `--http`.
//!
//! Every handler authenticates the caller (`auth.rs`: basic auth against Warren's users,
//! tags deciding as in RabbitMQ), then reads or changes the broker only through its
//! public API (`BrokerHandle`, the access database, definitions import/export). Changes
//! run on the blocking pool (they write `access.json` or vhost directories); reads copy
//! what they need out of the model and render after the lock is released.
//!
//! One file per area: `vhosts.rs`, `users.rs`, `permissions.rs` (and topic permissions),
//! `policies.rs` (and operator policies), `limits.rs` (vhost and user limits),
//! `parameters.rs` (runtime and global parameters),
//! `definitions.rs`, `overview.rs` (whoami, overview), `queues.rs`, `exchanges.rs`,
//! `bindings.rs`, `connections.rs` (and channels, consumers), `nodes.rs` (nodes, health
//! checks, aliveness test); Warren's own: `storage.rs` (`/api/warren/...`: segments,
//! compaction, fsync latency) and `console.rs` (the web console at `/`, assets in
//! `console/`). Shared: `listing.rs` (sort, pages, columns of lists),
//! `scope.rs` (visible vhosts, permissions, formats), `rates.rs` (the rate sampler),
//! `props.rs` (message properties), `error.rs` and `body.rs` (RabbitMQ's error bodies
//! and request decoding).

mod auth;
mod bindings;
mod body;
mod connections;
mod console;
mod definitions;
mod error;
mod exchanges;
pub mod fuzz;
pub mod https;
mod limits;
mod listing;
mod nodes;
mod overview;
mod parameters;
mod permissions;
mod placement;
mod policies;
mod props;
mod queue_view;
mod queues;
pub mod rates;
mod scope;
mod storage;
mod users;
mod vhosts;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::broker::BrokerHandle;
pub use error::{ApiError, ApiResult};

/// Largest request body read (a definitions file: the importer's own limit).
const MAX_BODY: usize = crate::broker::definitions_import::MAX_FILE_BYTES;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub broker: BrokerHandle,
    pub node: Arc<NodeInfo>,
    /// Message rates, sampled by `rates::run`.
    pub rates: Arc<rates::Rates>,
    pub alarms: Arc<crate::alarms::Alarms>,
    pub started: std::time::Instant,
    /// This node's cluster, with `--node-id`: `/api/nodes` lists its node table.
    pub cluster: Option<Arc<crate::cluster::node::ClusterNode>>,
}

/// The node as the overview describes it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// RabbitMQ-style node name, `warren@HOST`.
    pub name: String,
    /// (protocol, address) of every listener: `amqp`, `amqp/ssl`, `http`.
    pub listeners: Vec<(&'static str, SocketAddr)>,
}

impl NodeInfo {
    pub fn new(listeners: Vec<(&'static str, SocketAddr)>) -> NodeInfo {
        NodeInfo {
            name: node_name(None),
            listeners,
        }
    }
}

/// The node's RabbitMQ-style name: `warren@HOST`, or `warren-ID@HOST` in a cluster (several
/// nodes may share a host).
pub fn node_name(cluster_id: Option<u64>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    match cluster_id {
        Some(id) => format!("warren-{id}@{host}"),
        None => format!("warren@{host}"),
    }
}

/// Every route of the API.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/whoami", get(overview::whoami))
        .route("/api/overview", get(overview::overview))
        .merge(vhosts::routes())
        .merge(users::routes())
        .merge(permissions::routes())
        .merge(policies::routes())
        .merge(limits::routes())
        .merge(parameters::routes())
        .merge(definitions::routes())
        .merge(queues::routes())
        .merge(exchanges::routes())
        .merge(bindings::routes())
        .merge(connections::routes())
        .merge(nodes::routes())
        .merge(storage::routes())
        .merge(console::routes())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Binds the API's listener (a failure names the flag, as for the AMQP listener).
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("--http {addr}: {e}")))
}

/// Serves the API on `listener` (TCP, or `https::HttpsListener`) until `stop` resolves.
pub async fn serve<L>(
    listener: L,
    state: ApiState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use axum::serve::ListenerExt;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // Tapped (with nothing to do) so that the peer address reaches the handlers for any
    // listener type, not only axum's own TcpListener.
    if let Err(e) = axum::serve(listener.tap_io(|_| {}), app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("management API: {e}");
    }
}

/// 201 when the PUT created the object, 204 when it changed one (as RabbitMQ answers).
fn put_answer(created: bool) -> Response {
    if created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Runs a change on the blocking pool: changes write `access.json` (fsync) or create and
/// remove vhost directories.
async fn blocking<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&BrokerHandle) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let broker = state.broker.clone();
    tokio::task::spawn_blocking(move || f(&broker))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}
