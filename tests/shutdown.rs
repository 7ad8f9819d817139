//! Graceful shutdown: on SIGTERM (and SIGINT) the broker stops accepting, sends
//! connection.close 320 (CONNECTION_FORCED) to its clients, finishes its syncs and ack
//! writes, logs what it did, and exits 0; the next start recovers everything, with nothing
//! reported as corrupt.

use crate::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{frame, method, RawClient};

fn spawn(dir: &std::path::Path, port: u16) -> std::process::Child {
    common::spawn_warren(dir, port, &[], Stdio::piped())
}

async fn wait_for_port(port: u16) -> std::net::SocketAddr {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("broker did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_320_and_exits_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let mut child = spawn(dir.path(), port);
        let addr = wait_for_port(port).await;
        // A durable queue with persistent messages, some delivered and acked.
        let conn = common::lapin_connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "kept".into(),
            lapin::options::QueueDeclareOptions::durable(),
            Default::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(Default::default()).await.unwrap();
        for i in 0..50u32 {
            let body = format!("m{i}");
            common::publish_confirmed(&ch, "", "kept", body.as_bytes(), true).await;
        }
        for _ in 0..10 {
            let m = ch
                .basic_get("kept".into(), Default::default())
                .await
                .unwrap()
                .unwrap();
            m.delivery.ack(Default::default()).await.unwrap();
        }
        let mut raw = RawClient::handshake(addr).await;
        let started = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(
            raw.expect_close().await,
            320,
            "connection.close CONNECTION_FORCED"
        );
        raw.send(&frame(1, 0, &method(10, 51, &[]))).await;
        assert!(raw.closed().await);
        let status = child.wait().unwrap();
        assert!(status.success(), "exit status {status:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let mut log = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
        assert!(log.contains("shutting down"), "{log}");
        assert!(log.contains("stopped"), "{log}");
        drop(conn);

        let mut child = spawn(dir.path(), port);
        let conn = common::lapin_connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                "kept".into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            q.message_count(),
            40,
            "acked ones stay acked after a clean stop"
        );
        child.kill().unwrap();
        let _ = child.wait();
        let mut log = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
        assert!(!log.contains("WARN"), "clean recovery: {log}");
    }
}
