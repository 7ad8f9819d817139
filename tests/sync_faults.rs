//! Storage faults injected with libfiu (Debian's fiu-utils): with every fdatasync failing,
//! a persistent publish is never confirmed as durable (it is nacked), and the broker keeps
//! serving other queues. The broker binary runs under `fiu-run`.
//!
//! Needs `fiu-run` (`apt-get install fiu-utils`; `.ci/run` installs it); without it the test
//! says so and passes vacuously. (A round syncing several files at once goes through
//! io_uring, which libfiu's libc interposition cannot see; here one file is dirty at a
//! time, so the fdatasync call is the libc one.)

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fdatasync_means_nack_and_other_queues_keep_working() {
    if Command::new("fiu-run").arg("-h").output().is_err() {
        eprintln!("sync_faults: fiu-run not installed (apt-get install fiu-utils); nothing tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("fiu-run")
        .args([
            "-x",
            "-c",
            "enable name=posix/io/sync/fdatasync",
            env!("CARGO_BIN_EXE_warren"),
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--fsync",
            "always",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = Connection::connect(&url, ConnectionProperties::default()).await {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conn = conn.expect("broker under fiu-run came up");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "durable".into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "transient".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..5u32 {
        let c = ch
            .basic_publish(
                "".into(),
                "durable".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            c.is_nack(),
            "publish {i}: a failed fdatasync must not be confirmed as durable"
        );
    }
    let c = ch
        .basic_publish(
            "".into(),
            "transient".into(),
            BasicPublishOptions::default(),
            b"still here",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(c.is_ack(), "a queue that needs no sync keeps working");
    let m = ch
        .basic_get("transient".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("message");
    assert_eq!(m.delivery.data, b"still here");
    child.kill().unwrap();
    child.wait().unwrap();
}
