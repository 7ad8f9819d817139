//! Storage faults injected with libfiu (Debian's fiu-utils): with every fdatasync failing,
//! a persistent publish is never confirmed as durable (it is nacked), and the broker keeps
//! serving other queues. The broker binary runs under `fiu-run`.
//!
//! Needs `fiu-run` (`apt-get install fiu-utils`; `.ci/run` installs it); without it the test
//! says so and passes vacuously. (A round syncing several files at once goes through
//! io_uring, which libfiu's libc interposition cannot see; here one file is dirty at a
//! time, so the fdatasync call is the libc one.)

use crate::common;

use std::process::{Command, Stdio};

use lapin::options::*;
use lapin::types::FieldTable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fdatasync_means_nack_and_other_queues_keep_working() {
    if Command::new("fiu-run").arg("-h").output().is_err() {
        eprintln!("sync_faults: fiu-run not installed (apt-get install fiu-utils); nothing tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
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
            "--http",
            "127.0.0.1:0",
            "--prometheus",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let conn = common::lapin_connect_port(port).await;
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
        let c = common::publish_confirmed(&ch, "", "durable", &i.to_be_bytes(), true).await;
        assert!(
            c.is_nack(),
            "publish {i}: a failed fdatasync must not be confirmed as durable"
        );
    }
    let c = common::publish_confirmed(&ch, "", "transient", b"still here", false).await;
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
