//! The web console: a single page of plain HTML, CSS and JavaScript, embedded in the
//! binary and served at `/` (where RabbitMQ serves its UI), beside the API it calls.
//!
//! The pages hold no secrets and need no login to load: the browser script asks for the
//! user's credentials and sends them with every `/api/...` request, which is where access
//! is decided. Assets are named in one table, so an unknown path is a plain 404 and no
//! request can reach the file system.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::ApiState;

/// (file name under `/console/`, content type, bytes).
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", CSS, include_str!("console/style.css")),
    ("app.js", JS, include_str!("console/app.js")),
    ("chart.js", JS, include_str!("console/chart.js")),
    ("overview.js", JS, include_str!("console/overview.js")),
    ("queues.js", JS, include_str!("console/queues.js")),
    ("exchanges.js", JS, include_str!("console/exchanges.js")),
    ("connections.js", JS, include_str!("console/connections.js")),
    ("admin.js", JS, include_str!("console/admin.js")),
];

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("console/index.html");

/// The page is re-fetched on every load (it names the assets); assets may be cached for a
/// few minutes, so an upgraded broker's console is current soon after a reload.
const INDEX_CACHE: &str = "no-cache";
const ASSET_CACHE: &str = "public, max-age=300";

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/console/{file}", get(asset))
}

async fn index() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, INDEX_CACHE),
        ],
        INDEX,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => {
            ([(CONTENT_TYPE, *kind), (CACHE_CONTROL, ASSET_CACHE)], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_asset_and_only_those() {
        for (name, _, body) in ASSETS {
            assert!(INDEX.contains(&format!("/console/{name}")), "{name} unused");
            assert!(!body.is_empty());
        }
        let named = INDEX.matches("/console/").count();
        assert_eq!(named, ASSETS.len(), "index.html names an asset not served");
    }
}
