//! The management HTTP API (issue 13, first slice): users, vhosts, permissions, topic
//! permissions, policies, limits and definitions changed over HTTP on a running broker,
//! with the effect checked over AMQP (lapin), and the status codes and error bodies
//! RabbitMQ 3.10's management plugin gives (recorded with `tools/http_api_compare.py`).
//!
//! The broker is loaded with `tests/python/access/definitions.json` (a RabbitMQ 3.10.8
//! export: `admin`/`admin-pw` is an administrator, `alice`/`alice-pw` has no tags). The
//! HTTP client is a few lines over a TCP socket (one request per connection).

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: (&str, &str) = ("admin", "admin-pw");

async fn start() -> common::TestBroker {
    let defs =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/access/definitions.json");
    common::start_with(|c| c.load_definitions = Some(defs)).await
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    user: Option<(&str, &str)>,
    body: Option<&str>,
) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some((u, p)) = user {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the API answers")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (headers, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let status = headers[9..12].parse().unwrap();
    let headers = headers.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

struct Api {
    addr: SocketAddr,
}

impl Api {
    fn of(b: &common::TestBroker) -> Api {
        Api {
            addr: b.http_addr.expect("the test broker serves the API"),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        request(self.addr, "GET", path, Some(ADMIN), None).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        request(self.addr, "PUT", path, Some(ADMIN), Some(&body.to_string())).await
    }

    async fn delete(&self, path: &str) -> Answer {
        request(self.addr, "DELETE", path, Some(ADMIN), None).await
    }
}

async fn connect(
    b: &common::TestBroker,
    user: &str,
    pw: &str,
    vhost: &str,
) -> lapin::Result<Connection> {
    let vhost = vhost.replace('/', "%2f");
    let url = format!("amqp://{user}:{pw}@{}/{vhost}", b.addr);
    Connection::connect(&url, ConnectionProperties::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_user_and_permissions_made_over_http_work_over_amqp() {
    let b = start().await;
    let api = Api::of(&b);
    assert_eq!(
        api.put("/api/vhosts/shop", json!({"description": "d"}))
            .await
            .status,
        201
    );
    assert_eq!(
        api.put("/api/vhosts/shop", json!({"description": "e"}))
            .await
            .status,
        204
    );
    let v = api.get("/api/vhosts/shop").await.json();
    assert_eq!(
        (v["name"].as_str(), v["description"].as_str()),
        (Some("shop"), Some("e"))
    );
    let created = api
        .put("/api/users/bob", json!({"password": "bob-pw", "tags": ""}))
        .await;
    assert_eq!(created.status, 201);
    let u = api.get("/api/users/bob").await.json();
    assert_eq!(u["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert_eq!(u["tags"], json!([]));

    // No permissions yet: connection.open is refused.
    assert!(connect(&b, "bob", "bob-pw", "shop").await.is_err());
    let perms = json!({"configure": "^bob-", "write": ".*", "read": ".*"});
    assert_eq!(
        api.put("/api/permissions/shop/bob", perms.clone())
            .await
            .status,
        201
    );
    assert_eq!(
        api.put("/api/permissions/shop/bob", perms).await.status,
        204
    );
    assert_eq!(
        api.get("/api/permissions/shop/bob").await.json()["configure"],
        "^bob-"
    );
    let conn = connect(&b, "bob", "bob-pw", "shop").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "bob-q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // The creator of a vhost gets full permissions there, as in RabbitMQ.
    let listed = api.get("/api/vhosts/shop/permissions").await.json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // Deleting the user closes its connection with 320.
    let closed = common::watch_close(&conn);
    assert_eq!(api.delete("/api/users/bob").await.status, 204);
    let (code, text) = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the connection is closed")
        .unwrap();
    assert_eq!(
        (code, text.contains("user 'bob' is deleted")),
        (320, true),
        "{text}"
    );
    assert_eq!(api.delete("/api/users/bob").await.status, 404);
    assert_eq!(api.get("/api/permissions/shop/bob").await.status, 404);
    assert!(connect(&b, "bob", "bob-pw", "shop").await.is_err());

    // Deleting the vhost closes its connections too.
    let admin = connect(&b, "admin", "admin-pw", "shop").await.unwrap();
    let closed = common::watch_close(&admin);
    assert_eq!(api.delete("/api/vhosts/shop").await.status, 204);
    let (code, _) = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 320);
    assert_eq!(api.get("/api/vhosts/shop").await.status, 404);
}

async fn depth(ch: &lapin::Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

async fn publish(ch: &lapin::Channel, queue: &str, n: usize) {
    for _ in 0..n {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_put_changed_and_deleted_over_http_reaches_the_queue() {
    let b = start().await;
    let api = Api::of(&b);
    let policy = |n: u32| json!({"pattern": "^pol\\.", "definition": {"max-length": n}, "apply-to": "queues"});
    assert_eq!(
        api.put("/api/policies/%2F/cap", policy(2)).await.status,
        201
    );
    let conn = connect(&b, "admin", "admin-pw", "/").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "pol.q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "pol.q", 5).await;
    assert_eq!(depth(&ch, "pol.q").await, 2);

    assert_eq!(
        api.put("/api/policies/%2F/cap", policy(4)).await.status,
        204
    );
    let shown = api.get("/api/policies/%2F/cap").await.json();
    assert_eq!(shown["definition"]["max-length"], 4);
    assert_eq!(shown["apply-to"], "queues");
    publish(&ch, "pol.q", 5).await;
    assert_eq!(depth(&ch, "pol.q").await, 4);

    assert_eq!(api.delete("/api/policies/%2F/cap").await.status, 204);
    assert_eq!(api.delete("/api/policies/%2F/cap").await.status, 404);
    publish(&ch, "pol.q", 5).await;
    assert_eq!(depth(&ch, "pol.q").await, 9);

    // An operator policy caps it again, and the list endpoints show it.
    let op = json!({"pattern": ".*", "definition": {"max-length": 3}, "apply-to": "queues"});
    assert_eq!(
        api.put("/api/operator-policies/%2F/ops", op).await.status,
        201
    );
    assert_eq!(depth(&ch, "pol.q").await, 3);
    let all = api.get("/api/operator-policies").await.json();
    assert_eq!(all[0]["name"], "ops");
    assert_eq!(
        api.delete("/api/operator-policies/%2F/ops").await.status,
        204
    );

    // An invalid policy is refused and changes nothing.
    let bad = api
        .put(
            "/api/policies/%2F/bad",
            json!({"pattern": ".*", "definition": {"max-length": "two"}}),
        )
        .await;
    assert_eq!(bad.status, 400);
    let reason = bad.json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("Validation failed\n\n"), "{reason}");
    assert_eq!(api.get("/api/policies/%2F").await.json(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_topic_permissions_over_http() {
    let b = start().await;
    let api = Api::of(&b);
    assert_eq!(api.put("/api/vhosts/lim", json!({})).await.status, 201);
    let put = api
        .put("/api/vhost-limits/lim/max-queues", json!({"value": 1}))
        .await;
    assert_eq!(put.status, 204);
    assert_eq!(
        api.get("/api/vhost-limits/lim").await.json(),
        json!([{"vhost": "lim", "value": {"max-queues": 1}}])
    );
    let conn = connect(&b, "admin", "admin-pw", "lim").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = |name: &'static str| {
        let ch = ch.clone();
        async move {
            ch.queue_declare(
                name.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
        }
    };
    q("one").await.unwrap();
    let e = q("two").await.unwrap_err();
    assert_eq!(common::lapin_code(&e), Some(406));
    assert_eq!(
        api.delete("/api/vhost-limits/lim/max-queues").await.status,
        204
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "two".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let bad = api
        .put("/api/vhost-limits/lim/max-nothing", json!({"value": 3}))
        .await;
    assert_eq!(
        (bad.status, bad.json()["reason"].as_str().unwrap()),
        (
            400,
            "Validation failed\n\nUnrecognised terms [{<<\"max-nothing\">>,3}] in limits\n"
        )
    );
    assert_eq!(
        api.put("/api/user-limits/alice/max-channels", json!({"value": 1}))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get("/api/user-limits/alice").await.json(),
        json!([{"user": "alice", "value": {"max-channels": 1}}])
    );
    let alice = connect(&b, "alice", "alice-pw", "/").await.unwrap();
    // Held: lapin closes a channel whose last handle is dropped, and on a loaded machine
    // that close reached the broker before the second open (1 run in 8 failed).
    let _first = alice.create_channel().await.unwrap();
    assert!(
        alice.create_channel().await.is_err(),
        "a second channel passes the limit"
    );
    let missing = api
        .put(
            "/api/user-limits/nobody-here/max-channels",
            json!({"value": 1}),
        )
        .await;
    assert_eq!(
        missing.json()["reason"],
        json!(["no_such_user", "nobody-here"])
    );

    let tp = json!({"exchange": "amq.topic", "write": "^a\\.", "read": ".*"});
    assert_eq!(
        api.put("/api/topic-permissions/%2F/alice", tp.clone())
            .await
            .status,
        201
    );
    assert_eq!(
        api.put("/api/topic-permissions/%2F/alice", tp).await.status,
        204
    );
    let listed = api.get("/api/topic-permissions/%2F/alice").await.json();
    assert_eq!(listed[0]["write"], "^a\\.");
    assert_eq!(
        api.delete("/api/topic-permissions/%2F/alice").await.status,
        204
    );
    assert_eq!(
        api.get("/api/topic-permissions/%2F/alice").await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_tags_and_errors_answer_as_rabbitmq() {
    let b = start().await;
    let api = Api::of(&b);
    let addr = api.addr;
    let none = request(addr, "GET", "/api/whoami", None, None).await;
    assert_eq!((none.status, none.body.as_str()), (401, ""));
    assert!(none
        .headers
        .contains("www-authenticate: basic realm=\"rabbitmq management\""));
    let wrong = request(addr, "GET", "/api/whoami", Some(("admin", "nope")), None).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.json(),
        json!({"error": "not_authorized", "reason": "Login failed"})
    );
    let who = api.get("/api/whoami").await.json();
    assert_eq!(who, json!({"name": "admin", "tags": ["administrator"]}));

    // alice has no tags: not a management user at all.
    let alice = request(
        addr,
        "GET",
        "/api/whoami",
        Some(("alice", "alice-pw")),
        None,
    )
    .await;
    assert_eq!(
        (alice.status, alice.json()),
        (
            401,
            json!({"error": "not_authorised", "reason": "Not management user"})
        )
    );
    // Tagged monitoring: may log in, may not administer.
    let tags = json!({"password": "mon-pw", "tags": ["monitoring"]});
    assert_eq!(api.put("/api/users/mon", tags).await.status, 201);
    let mon = Some(("mon", "mon-pw"));
    assert_eq!(
        request(addr, "GET", "/api/whoami", mon, None).await.status,
        200
    );
    let users = request(addr, "GET", "/api/users", mon, None).await;
    assert_eq!(
        (users.status, users.json()),
        (
            401,
            json!({"error": "not_authorised", "reason": "Not administrator user"})
        )
    );
    let policy = r#"{"pattern": ".*", "definition": {"max-length": 1}}"#;
    let p = request(addr, "PUT", "/api/policies/%2F/p", mon, Some(policy)).await;
    assert_eq!(p.json()["reason"], "User not authorised to access object");

    let not_found = json!({"error": "Object Not Found", "reason": "Not Found"});
    for path in [
        "/api/vhosts/nope",
        "/api/users/nope",
        "/api/policies/%2F/nope",
        "/api/nothing",
    ] {
        let a = api.get(path).await;
        assert_eq!((a.status, a.json()), (404, not_found.clone()), "{path}");
    }
    let no_vhost = api
        .put(
            "/api/policies/nope/p",
            json!({"pattern": ".*", "definition": {}}),
        )
        .await;
    assert_eq!(
        no_vhost.json(),
        json!({"error": "not_found", "reason": "vhost_not_found"})
    );
    let bad = request(addr, "PUT", "/api/vhosts/x", Some(ADMIN), Some("{nope")).await;
    assert_eq!(
        bad.json(),
        json!({"error": "bad_request", "reason": "not_json"})
    );
    let missing = api
        .put("/api/permissions/%2F/alice", json!({"configure": ".*"}))
        .await;
    assert_eq!(
        missing.json()["reason"],
        "[{key_missing,write},{key_missing,read}]"
    );
    let pair = api
        .put(
            "/api/permissions/nope/alice",
            json!({"configure": "", "write": "", "read": ""}),
        )
        .await;
    assert_eq!(pair.json()["reason"], "vhost_or_user_not_found");
    let no_tags = api.put("/api/users/x", json!({"password": "x"})).await;
    assert_eq!(no_tags.json()["reason"], "tags_not_present");
    let method = request(addr, "POST", "/api/users/x", Some(ADMIN), Some("{}")).await;
    assert_eq!(method.status, 405);
    let alive = api.get("/api/aliveness-test/%2F").await;
    assert_eq!(alive.json(), json!({"status": "ok"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_export_and_import_over_http() {
    let b = start().await;
    let api = Api::of(&b);
    let all = api.get("/api/definitions").await.json();
    assert!(all["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == "alice"));
    let import = json!({
        "vhosts": [{"name": "imported"}],
        "permissions": [{"user": "admin", "vhost": "imported",
                         "configure": ".*", "write": ".*", "read": ".*"}],
        "queues": [{"name": "iq", "vhost": "imported", "durable": true,
                    "auto_delete": false, "arguments": {}}],
    });
    let r = request(
        api.addr,
        "POST",
        "/api/definitions",
        Some(ADMIN),
        Some(&import.to_string()),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let conn = connect(&b, "admin", "admin-pw", "imported").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(depth(&ch, "iq").await, 0);
    let one = api.get("/api/definitions/imported").await.json();
    assert_eq!(
        one["queues"],
        json!([{"name": "iq", "durable": true, "auto_delete": false,
                                       "arguments": {}, "type": "classic"}])
    );
    let bad = request(
        api.addr,
        "POST",
        "/api/definitions",
        Some(ADMIN),
        Some("{nope"),
    )
    .await;
    assert_eq!(bad.json()["reason"], "failed_to_parse_json");
    let wrong = json!({"users": [{"name": "z", "password_hash": "%%%", "tags": ""}]});
    let r = request(
        api.addr,
        "POST",
        "/api/definitions",
        Some(ADMIN),
        Some(&wrong.to_string()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(api.get("/api/users/z").await.status, 404);
}

/// Debian's `rabbitmqadmin` (shipped with rabbitmq-server) against Warren: list users and
/// vhosts, declare and delete a vhost, a user, permissions and a policy, export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmqadmin_works_against_warren() {
    if Command::new("rabbitmqadmin")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("rabbitmqadmin is not installed: skipped");
        return;
    }
    let b = start().await;
    let port = b.http_addr.unwrap().port().to_string();
    let export = b.dir.path().join("export.json");
    let export_arg = export.display().to_string();
    let steps: Vec<Vec<&str>> = vec![
        vec!["declare", "vhost", "name=adm"],
        vec![
            "declare",
            "user",
            "name=u2",
            "password=u2-pw",
            "tags=management",
        ],
        vec![
            "declare",
            "permission",
            "vhost=adm",
            "user=u2",
            "configure=.*",
            "write=.*",
            "read=.*",
        ],
        vec![
            "-V",
            "adm",
            "declare",
            "policy",
            "name=p1",
            "pattern=^pol\\.",
            "definition={\"max-length\":2}",
            "apply-to=queues",
        ],
        vec!["-f", "tsv", "list", "users", "name"],
        vec!["-f", "tsv", "list", "vhosts", "name"],
        vec!["-f", "tsv", "list", "policies", "name"],
        vec!["export", &export_arg],
        vec!["-V", "adm", "delete", "policy", "name=p1"],
        vec!["delete", "user", "name=u2"],
        vec!["delete", "vhost", "name=adm"],
    ];
    let mut listed = String::new();
    for step in steps {
        let port = port.clone();
        let args: Vec<String> = step.iter().map(|s| s.to_string()).collect();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("rabbitmqadmin")
                .args([
                    "-H",
                    "127.0.0.1",
                    "-P",
                    &port,
                    "-u",
                    "admin",
                    "-p",
                    "admin-pw",
                ])
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "rabbitmqadmin {step:?}: {text}");
        listed.push_str(&text);
    }
    for name in ["u2", "alice", "adm", "tenant-a", "p1"] {
        assert!(
            listed.lines().any(|l| l.trim() == name),
            "{name} not listed:\n{listed}"
        );
    }
    let exported: Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    assert!(exported["policies"][0]["name"] == "p1", "{exported}");
    let api = Api::of(&b);
    assert_eq!(api.get("/api/vhosts/adm").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_off_serves_no_api() {
    let b = common::start_with(|c| c.http = None).await;
    assert!(b.http_addr.is_none());
}

/// `/api/parameters…` and `/api/global-parameters…`, with the answers a RabbitMQ 3.10.8
/// node gave to the same requests (recorded by hand against a private node): a vhost's
/// limits are the `vhost-limits` parameter `limits`, an unknown component is 400
/// "component … not found", a missing parameter 404.
#[tokio::test]
async fn runtime_and_global_parameters_answer_as_rabbitmq() {
    let b = start().await;
    let api = Api::of(&b);
    let limited = json!({"value": {"max-connections": 2, "max-queues": 3}, "vhost": "limited",
                         "component": "vhost-limits", "name": "limits"});
    assert_eq!(api.get("/api/parameters").await.json(), json!([limited]));
    assert_eq!(
        api.get("/api/parameters/vhost-limits").await.json(),
        json!([limited])
    );
    assert_eq!(
        api.get("/api/parameters/federation-upstream").await.json(),
        json!([])
    );
    assert_eq!(
        api.get("/api/parameters/nosuch/%2F").await.json(),
        json!([])
    );
    assert_eq!(api.get("/api/parameters/x/nosuchvhost").await.status, 404);
    assert_eq!(
        api.get("/api/parameters/vhost-limits/limited/limits")
            .await
            .json(),
        limited
    );
    let missing = api.get("/api/parameters/nosuch/%2F/p1").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json(),
        json!({"error": "Object Not Found", "reason": "Not Found"})
    );
    assert_eq!(
        api.delete("/api/parameters/nosuch/%2F/p1").await.status,
        404
    );
    let refused = api
        .put("/api/parameters/nosuch/%2F/p1", json!({"value": {"a": 1}}))
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json(),
        json!({"error": "bad_request",
               "reason": "Validation failed\n\ncomponent nosuch not found\n"})
    );

    // Setting the limits through their parameter is setting the vhost's limits.
    let put = api
        .put(
            "/api/parameters/vhost-limits/%2F/limits",
            json!({"value": {"max-queues": 7}}),
        )
        .await;
    assert_eq!(put.status, 201);
    assert_eq!(
        api.get("/api/vhost-limits/%2F").await.json(),
        json!([{"vhost": "/", "value": {"max-queues": 7}}])
    );
    assert_eq!(
        api.delete("/api/parameters/vhost-limits/%2F/limits")
            .await
            .status,
        204
    );
    assert_eq!(api.get("/api/vhost-limits/%2F").await.json(), json!([]));

    // Global parameters: created 201, replaced 204, shown, deleted, then 404.
    assert_eq!(api.get("/api/global-parameters").await.json(), json!([]));
    let g = "/api/global-parameters/g1";
    assert_eq!(api.put(g, json!({"value": "x"})).await.status, 201);
    assert_eq!(api.put(g, json!({"value": {"k": 2}})).await.status, 204);
    assert_eq!(
        api.get(g).await.json(),
        json!({"value": {"k": 2}, "name": "g1"})
    );
    assert_eq!(
        api.get("/api/global-parameters").await.json(),
        json!([{"name": "g1", "value": {"k": 2}}])
    );
    assert_eq!(api.delete(g).await.status, 204);
    assert_eq!(api.get(g).await.status, 404);
    // Only administrators see global parameters.
    let alice = request(
        api.addr,
        "GET",
        "/api/global-parameters",
        Some(("alice", "alice-pw")),
        None,
    )
    .await;
    assert_eq!(alice.status, 401);
}
