//! Users, vhosts and permissions (issue 12), against a broker loaded with
//! `tests/python/access/definitions.json` — a real `rabbitmqctl export_definitions` from
//! RabbitMQ 3.10.8 (users with their RabbitMQ password hashes, three vhosts, permissions,
//! topic permissions, limits).
//!
//! - the pika suite `tests/python/access/` (98 cases: every permission check allowed and
//!   refused, connection.open, limits; each answer recorded from RabbitMQ 3.10.8), and the
//!   SHA-512 and MD5 users of `definitions-sha512-md5.json`;
//! - vhost isolation, vhost and user deletion at run time (connections closed with 320,
//!   files removed), permission changes reaching open channels, and the access database
//!   surviving a kill -9.
//!
//! Needs `python3` with `pika` (`.ci/run` installs it).

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use warren::broker::access_db::PermissionDef;

fn access_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/access")
}

async fn start() -> common::TestBroker {
    common::start_with(|c| {
        c.load_definitions = Some(access_dir().join("definitions.json"));
    })
    .await
}

fn url(b: &common::TestBroker, user: &str, vhost: &str) -> String {
    let vhost = vhost.replace('/', "%2f");
    format!("amqp://{user}:{user}-pw@{}/{vhost}", b.addr)
}

async fn connect(b: &common::TestBroker, user: &str, vhost: &str) -> lapin::Result<Connection> {
    Connection::connect(&url(b, user, vhost), ConnectionProperties::default()).await
}

/// Runs the pika suite (all of it, or `module` with `env`) against `b`.
async fn pika_suite(b: &common::TestBroker, env: &'static [(&'static str, &'static str)]) {
    let port = b.addr.port();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(access_dir().join("run_all.py"))
            .args(["--port", &port.to_string(), "--shuffle"])
            .envs(env.iter().copied())
            .output()
            .expect("python3 is needed for the access tests")
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "access suite failed:\n{text}");
    assert!(text.contains("access: "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_permission_check_answers_as_rabbitmq() {
    let b = start().await;
    pika_suite(&b, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha512_and_md5_hashes_from_rabbitmq_log_in() {
    let b = start().await;
    let file = std::fs::read(access_dir().join("definitions-sha512-md5.json")).unwrap();
    warren::broker::definitions_import::import_json(&b.ctx.broker, &file).unwrap();
    pika_suite(&b, &[("WARREN_ACCESS_HASHED", "1")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_queue_name_in_two_vhosts_is_two_queues() {
    let b = start().await;
    let a = connect(&b, "admin", "tenant-a").await.unwrap();
    let c = connect(&b, "admin", "tenant-b").await.unwrap();
    let (cha, chb) = (
        a.create_channel().await.unwrap(),
        c.create_channel().await.unwrap(),
    );
    for ch in [&cha, &chb] {
        ch.queue_declare(
            "same".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    for _ in 0..3 {
        cha.basic_publish(
            "".into(),
            "same".into(),
            BasicPublishOptions::default(),
            b"in a",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let qa = cha
        .queue_declare("same".into(), passive, FieldTable::default())
        .await
        .unwrap();
    let qb = chb
        .queue_declare("same".into(), passive, FieldTable::default())
        .await
        .unwrap();
    assert_eq!((qa.message_count(), qb.message_count()), (3, 0));
    // Each tenant's own durable queue is invisible in the other.
    let e = chb
        .queue_declare("a-orders-q".into(), passive, FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(common::lapin_code(&e), Some(404));
}

async fn closed_with(watch: tokio::task::JoinHandle<(u16, String)>) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the broker closes the connection")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_vhost_closes_its_connections_and_removes_its_files() {
    let b = start().await;
    let dir = warren::broker::vhost_dir(&b.dir.path().join(""), "tenant-a");
    assert!(dir.join("definitions.toml").exists(), "{}", dir.display());
    let conn = connect(&b, "admin", "tenant-a").await.unwrap();
    let closed = common::watch_close(&conn);
    let other = connect(&b, "admin", "tenant-b").await.unwrap();
    b.ctx.broker.delete_vhost("tenant-a").unwrap();
    let (code, text) = closed_with(closed).await;
    assert_eq!(code, 320);
    assert!(text.contains("vhost 'tenant-a' is deleted"), "{text}");
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(other.create_channel().await.is_ok(), "tenant-b unaffected");
    let e = connect(&b, "admin", "tenant-a").await.unwrap_err();
    assert!(format!("{e:?}").contains("not found"), "{e:?}");
    // Created again, it is empty.
    b.ctx
        .broker
        .put_vhost(warren::broker::access_db::VHostDef {
            name: "tenant-a".into(),
            description: String::new(),
            tags: vec![],
            limits: Default::default(),
        })
        .unwrap();
    assert!(b
        .ctx
        .broker
        .vhost("tenant-a")
        .unwrap()
        .with(|m| !m.has_queue("a-orders-q")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_closes_its_connections() {
    let b = start().await;
    let conn = connect(&b, "alice", "/").await.unwrap();
    let closed = common::watch_close(&conn);
    b.ctx.broker.delete_user("alice").unwrap();
    let (code, text) = closed_with(closed).await;
    assert_eq!(
        (code, text.contains("user 'alice' is deleted")),
        (320, true),
        "{text}"
    );
    assert!(connect(&b, "alice", "/").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_changes_reach_open_channels() {
    let b = start().await;
    let conn = connect(&b, "writer", "/").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    // In confirm mode a refused publish's confirm fails with the channel's close.
    let publish = |ch: lapin::Channel| async move {
        ch.basic_publish(
            "amq.direct".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await?
        .await
    };
    assert!(publish(ch.clone()).await.is_ok());
    b.ctx
        .broker
        .update_access(|db| {
            db.set_permission(PermissionDef {
                user: "writer".into(),
                vhost: "/".into(),
                configure: "".into(),
                write: "^nothing$".into(),
                read: "".into(),
            })
        })
        .unwrap();
    let e = publish(ch).await.unwrap_err();
    assert_eq!(common::lapin_code(&e), Some(403), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vhosts_and_permissions_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let defs = access_dir().join("definitions.json");
    let mut child = common::spawn_warren(
        dir.path(),
        port,
        &["--load-definitions", defs.to_str().unwrap()],
        std::process::Stdio::null(),
    );
    drop(common::lapin_connect_port(port).await);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut child = common::spawn_warren(dir.path(), port, &[], std::process::Stdio::null());
    drop(common::lapin_connect_port(port).await);
    let url = format!("amqp://alice:alice-pw@127.0.0.1:{port}/%2f");
    let conn = Connection::connect(&url, ConnectionProperties::default()).await;
    assert!(conn.is_ok(), "alice after kill -9: {:?}", conn.err());
    let url = format!("amqp://admin:admin-pw@127.0.0.1:{port}/tenant-a");
    let conn = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare("a-orders-q".into(), passive, FieldTable::default())
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `warren definitions export|import` with the broker running go through its management
/// API (the data dir is locked): the export is the running broker's, a bad file is
/// refused naming the place and changes nothing, a good one is applied at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_commands_reach_a_running_broker_through_its_api() {
    let dir = tempfile::tempdir().unwrap();
    let (port, http) = (common::free_port(), common::free_port());
    let http = format!("127.0.0.1:{http}");
    let defs = access_dir().join("definitions.json");
    let mut broker = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--http", &http])
        .args(["--prometheus", "127.0.0.1:0"])
        .args([
            "--fsync",
            "never",
            "--load-definitions",
            defs.to_str().unwrap(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(common::lapin_connect_port(port).await);
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--http", &http, "definitions"])
            .args(args)
            .args(["--api-user", "admin", "--api-pass", "admin-pw"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = cli(&["export", "-"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("a-orders-q") && text.contains("running broker"),
        "{text}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"vhosts":[{"name":"x"}],"users":[{"name":"u","password_hash":"%%"}]}"#,
    )
    .unwrap();
    let (code, text) = cli(&["import", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("users[0].password_hash"), "{text}");
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"vhosts":[{"name":"online"}]}"#).unwrap();
    let (code, text) = cli(&["import", good.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    let (_, text) = cli(&["export", "-"]);
    assert!(
        text.contains("\"online\"") && !text.contains("\"x\""),
        "{text}"
    );
    broker.kill().unwrap();
    broker.wait().unwrap();
}
