//! The web console (issue 13) in a real browser: a broker with data in it — 1,003 queues
//! (one with 25 messages, one with a consumer holding 3 unacked of 10, one empty, 1,000
//! more), a topic exchange bound to the first, a connection to be closed — and
//! `tests/console/drive.js` driving Debian's headless Chromium through every page with
//! playwright-core: it checks that the pages show the broker's numbers, publishes through
//! an exchange and from a queue's page, gets and purges, closes the connection, adds a
//! vhost, a policy and a user (then logs in as that management-only user), downloads the
//! definitions and uploads a file. Afterwards this test checks those
//! actions' effects over the API and AMQP. Needs `node`, `chromium` and the script's
//! `node_modules` (`.ci/run` installs all three). Screenshots go to `$CONSOLE_SHOTS`
//! (default: a temporary directory).
//!
//! A second test, without a browser, checks what the console's server side answers: the
//! page and assets with their types, 404s, the storage endpoints, and 401s without the
//! browser-dialog challenge for the console's script; a third, that compaction shows in a
//! queue's storage answer.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ConnectionProperties};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ORDERS: &str = "console.orders";
const WORK: &str = "console.work";
const EMPTY: &str = "console.empty";
const EXCHANGE: &str = "console.topic";
const BULK: usize = 1000;

/// One HTTP/1.1 request as guest (or with `auth`), answered as (status, lower-cased
/// head, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    extra: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = auth.unwrap_or("guest:guest");
    let token = base64::engine::general_purpose::STANDARD.encode(auth);
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Basic {token}\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the API answers")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, head, body) = http(addr, "GET", path, None, "").await;
    assert_eq!(status, 200, "GET {path}: {head}\n{body}");
    assert!(!head.contains("chunked"), "{head}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `path` until `ready` holds (the model counts a delivery a moment after the
/// client saw it).
async fn until(addr: SocketAddr, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get_json(addr, path).await;
        if ready(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the browser script; panics with its output unless every check passed.
fn drive(url: &str, expect: &Value, shots: &Path) {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("node")
        .arg(format!("{root}/tests/console/drive.js"))
        .env("WARREN_URL", url)
        .env("WARREN_EXPECT", expect.to_string())
        .env("SHOTS", shots)
        .output()
        .expect("node is needed to drive the console (.ci/run installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the console failed in the browser (screenshot: {}/failure.png):\n{text}",
        shots.display()
    );
    eprintln!("console: {}", text.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_broker_and_its_actions_work() {
    let b = common::start_with(|c| c.fsync = warren_storage::FsyncPolicy::Always).await;
    let http_addr = b.http_addr.expect("the test broker serves the API");
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for q in [ORDERS, WORK, EMPTY] {
        ch.queue_declare(q.into(), durable, FieldTable::default())
            .await
            .unwrap();
    }
    for i in 0..BULK {
        let name = format!("console.bulk.{i:04}");
        ch.queue_declare(name.as_str().into(), durable, FieldTable::default())
            .await
            .unwrap();
    }
    ch.exchange_declare(
        EXCHANGE.into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        ORDERS.into(),
        EXCHANGE.into(),
        "orders.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for (queue, n) in [(ORDERS, 25), (WORK, 10)] {
        for i in 0..n {
            let body = format!("{queue} message {i}");
            ch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                persistent.clone(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    }
    // A consumer holding 3 unacked deliveries of the 10.
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let _consumer = cch
        .basic_consume(
            WORK.into(),
            "console-consumer".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // The connection the console closes.
    let victim = lapin::Connection::connect(
        &b.url(),
        ConnectionProperties::default().with_connection_name("console-victim".into()),
    )
    .await
    .unwrap();
    let closed = common::watch_close(&victim);

    let work_path = format!("/api/queues/%2F/{WORK}");
    let work = until(http_addr, &work_path, |q| q["messages_unacknowledged"] == 3).await;
    assert_eq!(
        (
            work["messages_ready"].as_u64(),
            work["messages_unacknowledged"].as_u64()
        ),
        (Some(7), Some(3))
    );
    let storage = get_json(
        http_addr,
        &format!("/api/warren/queues/%2F/{ORDERS}/storage"),
    )
    .await;
    assert_eq!(storage["live_records"], 25, "{storage}");
    assert!(storage["segments"].as_u64() >= Some(1), "{storage}");

    let expect = json!({
        "user": "guest", "pass": "guest", "vhost": "/", "fsync": "always",
        "queues": BULK + 3, "ready": 25 + 7, "unacked": 3, "consumers": 1, "connections": 2,
        "fullest": ORDERS,
        "orders": {"name": ORDERS, "messages": 25, "segments": storage["segments"],
                   "first": format!("{ORDERS} message 0")},
        "work": {"name": WORK, "ready": 7, "unacked": 3},
        "empty": EMPTY,
        "exchange": EXCHANGE, "routedKey": "orders.eu",
        "consolePayload": "published from the console",
        "victim": "console-victim",
        "newVhost": "console-vh",
        "uploadVhost": "console-uploaded",
        "viewer": {"name": "console-viewer", "pass": "viewer-pw"},
    });
    let shots = match std::env::var_os("CONSOLE_SHOTS") {
        Some(dir) => (std::path::PathBuf::from(dir), None),
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    };
    let url = format!("http://{http_addr}");
    let dir = shots.0.clone();
    tokio::task::spawn_blocking(move || drive(&url, &expect, &dir))
        .await
        .unwrap();

    // What the console did, seen through the API and AMQP.
    let orders = get_json(http_addr, &format!("/api/queues/%2F/{ORDERS}")).await;
    assert_eq!(orders["messages_ready"], 0, "purged from the console");
    let empty = get_json(http_addr, &format!("/api/queues/%2F/{EMPTY}")).await;
    assert_eq!(empty["messages"], 1, "published from the console");
    let got = ch
        .basic_get(EMPTY.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the console's message");
    assert_eq!(got.delivery.data, b"published from the console");
    let (code, text) = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the victim connection is closed")
        .unwrap();
    assert_eq!(code, 320, "{text}");
    assert!(text.contains("Closed via the Warren console"), "{text}");
    for vhost in ["console-vh", "console-uploaded"] {
        let (status, _, _) =
            http(http_addr, "GET", &format!("/api/vhosts/{vhost}"), None, "").await;
        assert_eq!(status, 200, "{vhost}: added from the console");
    }
    let policy = get_json(http_addr, "/api/policies/%2F/console-limit").await;
    assert_eq!(policy["definition"]["max-length"], 1000);
    let viewer = get_json(http_addr, "/api/users/console-viewer").await;
    assert_eq!(
        viewer["tags"],
        json!(["management"]),
        "the user added from the console"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_and_the_storage_endpoints_answer() {
    let b = common::start().await;
    let addr = b.http_addr.expect("the test broker serves the API");

    // The page and its assets need no credentials (the API calls they make do).
    let (status, head, body) = http(addr, "GET", "/", Some("nobody:x"), "").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(body.contains("/console/app.js"));
    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("style.css", "text/css"),
        ("queues.js", "text/javascript"),
    ] {
        let (status, head, body) = http(addr, "GET", &format!("/console/{file}"), None, "").await;
        assert_eq!(status, 200, "{file}");
        assert!(head.contains(&format!("content-type: {kind}")), "{head}");
        assert!(head.contains("cache-control: public, max-age="), "{head}");
        assert!(!body.is_empty());
    }
    for path in [
        "/console/missing.js",
        "/console/..%2Fmod.rs",
        "/console/",
        "/index.html",
    ] {
        let (status, _, _) = http(addr, "GET", path, None, "").await;
        assert_eq!(status, 404, "{path}");
    }

    // Wrong credentials: RabbitMQ's challenge for tools, none for the console's script.
    let (status, head, _) = http(addr, "GET", "/api/whoami", Some("guest:wrong"), "").await;
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: basic"), "{head}");
    let scripted = "X-Requested-With: XMLHttpRequest\r\n";
    let (status, head, _) = http(addr, "GET", "/api/whoami", Some("guest:wrong"), scripted).await;
    assert_eq!(status, 401);
    assert!(!head.contains("www-authenticate"), "{head}");

    // Storage: the node's fsync histogram and one queue's segments.
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "st".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for _ in 0..4 {
        ch.basic_publish(
            "".into(),
            "st".into(),
            BasicPublishOptions::default(),
            &[1u8; 300],
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let st = until(addr, "/api/warren/queues/%2F/st/storage", |s| {
        s["records"] == 4
    })
    .await;
    assert_eq!(
        (st["records"].as_u64(), st["live_records"].as_u64()),
        (Some(4), Some(4)),
        "{st}"
    );
    assert_eq!(
        (st["segments"].as_u64(), st["logs"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
    assert!(st["written_bytes"].as_u64() > Some(1200), "{st}");
    assert!(
        st["file_bytes"].as_u64() >= st["written_bytes"].as_u64(),
        "{st}"
    );
    assert_eq!(st["live_ratio"], 1.0);
    assert!(st["compaction"].is_null());
    let node = get_json(addr, "/api/warren/storage").await;
    assert_eq!(node["fsync_policy"], "never");
    let buckets = node["fsync_seconds"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 16, "{node}");
    assert!(buckets.last().unwrap()[0].is_null(), "+Inf is null");
    for path in [
        "/api/warren/queues/%2F/missing/storage",
        "/api/warren/queues/nope/st/storage",
    ] {
        let (status, _, _) = http(addr, "GET", path, None, "").await;
        assert_eq!(status, 404, "{path}");
    }
}

/// A queue's storage after compaction: 300 records of ~1 KiB over 64 KiB segments; of the
/// first 124, three in four acked (the rest held unacked, so still live): the first sealed
/// segments fall to about 25 % live and compaction rewrites them, which the queue's
/// storage answer and the node's totals show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_shows_in_a_queues_storage() {
    let b = common::start_with(|c| c.segment_size = 64 * 1024).await;
    let addr = b.http_addr.expect("the test broker serves the API");
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "cp".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..300u32 {
        ch.basic_publish(
            "".into(),
            "cp".into(),
            BasicPublishOptions::default(),
            &[i as u8; 1000],
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let path = "/api/warren/queues/%2F/cp/storage";
    let before = until(addr, path, |s| s["records"] == 300).await;
    assert!(before["segments"].as_u64() > Some(4), "{before}");
    for i in 0..124u32 {
        let got = ch
            .basic_get("cp".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .expect("a message");
        if i % 4 != 3 {
            ch.basic_ack(got.delivery.delivery_tag, BasicAckOptions::default())
                .await
                .unwrap();
        }
    }
    let acked = until(addr, path, |s| s["live_records"] == 300 - 93).await;
    assert_eq!(acked["live_records"], 300 - 93, "{acked}");
    assert!(acked["live_ratio"].as_f64() < Some(0.8), "{acked}");
    assert!(acked["compaction"].is_null(), "{acked}");

    let problems = b.ctx.broker.compact();
    assert!(problems.is_empty(), "{problems:?}");
    let after = get_json(addr, path).await;
    let c = &after["compaction"];
    assert!(c["count"].as_u64() >= Some(1), "{after}");
    assert!(c["last_reclaimed_bytes"].as_u64() > Some(0), "{after}");
    assert_eq!(c["last_at"].as_str().map(str::len), Some(19), "{after}");
    assert!(
        after["records"].as_u64() < acked["records"].as_u64(),
        "{after}"
    );
    assert_eq!(after["live_records"], acked["live_records"], "{after}");
    let node = get_json(addr, "/api/warren/storage").await;
    assert!(node["compactions"].as_u64() >= Some(1), "{node}");
    assert!(
        node["compaction_reclaimed_bytes"].as_u64() > Some(0),
        "{node}"
    );
}
