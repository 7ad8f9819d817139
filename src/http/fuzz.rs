//! The `http_request` fuzz target's driver: one request, from arbitrary bytes, through
//! the whole API router against a real broker on a temporary data dir, reused across
//! inputs and reset between them (holding a vhost, a queue, an exchange and a binding, so
//! that handlers get past their lookups). Nothing may panic: not a handler, not a change run on the blocking pool
//! (whose panic would otherwise surface as a 500).
//!
//! Input: `METHOD TARGET` on the first line, header lines (`Name: value`) up to an empty
//! line, then the body. Without an `Authorization` header the request is sent as guest.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::{router, ApiState, NodeInfo};
use crate::broker::{definitions_import, fuzz_broker, BrokerHandle};

/// What the broker holds before the request.
const SEED: &str = r#"{
  "vhosts": [{"name": "/"}, {"name": "v2"}],
  "queues": [{"name": "q", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}],
  "exchanges": [{"name": "x", "vhost": "/", "type": "topic", "durable": true, "auto_delete": false,
                 "internal": false, "arguments": {}}],
  "bindings": [{"source": "x", "vhost": "/", "destination": "q", "destination_type": "queue",
                "routing_key": "a.#", "arguments": {}}]
}"#;

/// Splits the input into a request; `None` if it is not one axum could receive.
fn request(input: &[u8]) -> Option<Request<Body>> {
    let head_end = input
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(input.len(), |p| p + 2);
    let (head, body) = input.split_at(head_end);
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder().method(method).uri(target);
    let mut authorized = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        authorized |= name.eq_ignore_ascii_case("authorization");
        builder = builder.header(name, value.trim());
    }
    if !authorized {
        // guest:guest
        builder = builder.header("authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=");
    }
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("literal");
    let mut req = builder.body(Body::from(body.to_vec())).ok()?;
    req.extensions_mut().insert(ConnectInfo(peer));
    Some(req)
}

#[doc(hidden)]
pub fn fuzz_request(input: &[u8]) {
    if let Some((status, body)) = answer(input) {
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // A 500 is RabbitMQ's answer in a few places (a bad `ackmode`); a panic on
            // the blocking pool is a bug.
            let text = String::from_utf8_lossy(&body);
            assert!(!text.contains("panic"), "a handler panicked: {text}");
        }
    }
}

/// The status and body the API answers `input` with, on a seeded broker (reused across
/// inputs and reset between them: `broker::fuzz_broker`).
fn answer(input: &[u8]) -> Option<(StatusCode, Vec<u8>)> {
    let req = request(input)?;
    fuzz_broker::with_broker_and("http", seed, serve, |_, _, served| drive(served, req))
}

/// Puts the seed's vhosts, queue, exchange and binding in a broker (again, after a reset).
fn seed(broker: &BrokerHandle) {
    definitions_import::import_json(broker, SEED.as_bytes()).expect("the seed imports");
}

/// The API over one broker, and a runtime to answer on: built once per broker (building
/// the router was a quarter of every input's time).
struct Served {
    router: axum::Router,
    runtime: tokio::runtime::Runtime,
}

fn serve(broker: &BrokerHandle, dir: &std::path::Path) -> Served {
    let state = ApiState {
        broker: broker.clone(),
        node: Arc::new(NodeInfo::new(vec![(
            "amqp",
            "127.0.0.1:5672".parse().expect("literal"),
        )])),
        rates: Arc::default(),
        alarms: Arc::new(crate::alarms::Alarms::new(dir, u64::MAX, 0)),
        started: std::time::Instant::now(),
        cluster: None,
    };
    Served {
        router: router(state),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
    }
}

fn drive(served: &Served, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    served.runtime.block_on(async {
        let answer = served
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("infallible");
        let status = answer.status();
        let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .expect("an answer body");
        (status, body.to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed holds what the requests need: they reach the model, not a 404.
    #[test]
    fn requests_reach_the_seeded_broker() {
        let cases: [(&[u8], u16, &str); 8] = [
            (b"GET /api/queues/%2F/q", 200, "\"name\":\"q\""),
            (
                b"PUT /api/queues/%2F/new\n\n{\"durable\":true,\"arguments\":{\"x-max-length\":3}}",
                201,
                "",
            ),
            (
                b"POST /api/exchanges/%2F/x/publish\n\n{\"properties\":{},\"routing_key\":\"a.b\",\"payload\":\"hi\",\"payload_encoding\":\"string\"}",
                200,
                "\"routed\":true",
            ),
            (
                b"POST /api/queues/%2F/q/get\n\n{\"count\":2,\"ackmode\":\"ack_requeue_false\",\"encoding\":\"auto\"}",
                200,
                "[]",
            ),
            (b"GET /api/bindings/%2F/e/x/q/q/a.%23", 200, "\"routing_key\":\"a.#\""),
            (b"GET /api/queues?page=1&page_size=1&columns=name", 200, "\"items\":[{\"name\":\"q\"}]"),
            (b"DELETE /api/connections/nope", 404, ""),
            (b"GET /api/whoami\nAuthorization: Basic bm9wZTpub3Bl\n\n", 401, ""),
        ];
        for (input, status, needle) in cases {
            let (got, body) = answer(input).expect("a request");
            let body = String::from_utf8_lossy(&body);
            assert_eq!(
                got.as_u16(),
                status,
                "{}: {body}",
                String::from_utf8_lossy(input)
            );
            assert!(
                body.contains(needle),
                "{}: {body}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(answer(b"\xff\xfe").is_none());
    }
}
