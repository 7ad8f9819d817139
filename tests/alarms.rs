//! Resource alarms: when the disk free limit (or memory watermark) is crossed, publishing
//! connections get connection.blocked and are not read; consumers keep flowing; when the
//! alarm clears they get connection.unblocked and their publishes go through.

use crate::common;

use std::time::Duration;

use common::{frame, method, shortstr, start, RawClient};

/// client-properties: capabilities = { connection.blocked: true }
fn blocked_capable() -> Vec<u8> {
    let mut caps = shortstr("connection.blocked");
    caps.extend_from_slice(&[b't', 1]);
    let mut props = shortstr("capabilities");
    props.push(b'F');
    props.extend_from_slice(&(caps.len() as u32).to_be_bytes());
    props.extend_from_slice(&caps);
    props
}

fn publish(queue: &str, body: &[u8]) -> Vec<u8> {
    let mut args = vec![0, 0];
    args.extend(shortstr(""));
    args.extend(shortstr(queue));
    args.push(0);
    let mut out = frame(1, 1, &method(60, 40, &args));
    let mut header = vec![0, 60, 0, 0];
    header.extend_from_slice(&(body.len() as u64).to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    out.extend(frame(2, 1, &header));
    out.extend(frame(3, 1, body));
    out
}

async fn ready_count(queue: &str, b: &common::TestBroker) -> u64 {
    let vhost = b.ctx.broker.vhost("/").unwrap();
    vhost.with(|m| m.queue_stats(queue)).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_alarm_blocks_publishers_and_lets_consumers_flow() {
    let b = start().await;
    let mut publisher = RawClient::handshake_with_properties(b.addr, &blocked_capable()).await;
    publisher.open_channel(1).await;
    let mut declare = vec![0, 0];
    declare.extend(shortstr("alarmed"));
    declare.push(0);
    declare.extend_from_slice(&[0, 0, 0, 0]);
    publisher
        .send(&frame(1, 1, &method(50, 10, &declare)))
        .await;
    publisher.expect_method((50, 11)).await;
    publisher.send(&publish("alarmed", b"before")).await;
    for _ in 0..50 {
        if ready_count("alarmed", &b).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready_count("alarmed", &b).await, 1);

    // Raise the disk free limit above any disk: the alarm goes off.
    b.ctx.alarms.set_disk_free_limit(u64::MAX);
    let blocked = publisher.expect_method((10, 60)).await;
    assert!(String::from_utf8_lossy(&blocked.payload).contains("low on disk space"));
    publisher.send(&publish("alarmed", b"during")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ready_count("alarmed", &b).await,
        1,
        "a blocked publisher is not read"
    );

    // A consumer (a connection that never published) still gets messages.
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(
            "alarmed".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("consumers keep flowing during an alarm");
    assert_eq!(got.delivery.data, b"before");

    // Clear the alarm: unblocked, and the held publish goes through.
    b.ctx.alarms.set_disk_free_limit(0);
    publisher.expect_method((10, 61)).await;
    for _ in 0..50 {
        if ready_count("alarmed", &b).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = ch
        .basic_get(
            "alarmed".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the publish held during the alarm");
    assert_eq!(got.delivery.data, b"during");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_publishers() {
    let b = start().await;
    let mut publisher = RawClient::handshake_with_properties(b.addr, &blocked_capable()).await;
    publisher.open_channel(1).await;
    publisher.send(&publish("nowhere", b"x")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.ctx.alarms.set_memory_limit(1);
    let blocked = publisher.expect_method((10, 60)).await;
    assert!(String::from_utf8_lossy(&blocked.payload).contains("low on memory"));
    b.ctx.alarms.set_memory_limit(u64::MAX);
    publisher.expect_method((10, 61)).await;
}
