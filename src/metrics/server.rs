//! The `--prometheus` listener: axum (as the management API) serving `/metrics` and
//! `/metrics/per-object`, without authentication, as RabbitMQ's plugin. A scrape runs on
//! the blocking pool: it takes each vhost's lock in turn and walks the data dir.

use std::io;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use tokio::net::TcpListener;

use super::MetricsState;

/// Binds the metrics listener (a failure names the flag).
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("--prometheus {addr}: {e}")))
}

/// Serves the metrics on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    state: MetricsState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!("prometheus metrics: {e}");
    }
}

async fn aggregated(State(state): State<MetricsState>) -> Response {
    scrape(state, false).await
}

async fn per_object(State(state): State<MetricsState>) -> Response {
    scrape(state, true).await
}

async fn scrape(state: MetricsState, per_object: bool) -> Response {
    match tokio::task::spawn_blocking(move || super::render(&state, per_object)).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
