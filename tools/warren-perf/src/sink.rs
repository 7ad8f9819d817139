//! A sink: accepts AMQP connections, answers just enough of the handshake and declares
//! for a producer to start, then reads and discards everything. It measures how many
//! publishes one warren-perf can drive when the broker is not the limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::client::{method, parse_frame, put_shortstr};

pub async fn run(listen: &str) {
    let listener = TcpListener::bind(listen).await.expect("bind sink");
    eprintln!("warren-perf sink: listening on {listen}");
    let publishes = Arc::new(AtomicU64::new(0));
    let p = publishes.clone();
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = p.load(Ordering::Relaxed);
            eprintln!("warren-perf sink: {} publishes/s", now - last);
            last = now;
        }
    });
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let publishes = publishes.clone();
        tokio::spawn(async move {
            let mut header = [0u8; 8];
            if s.read_exact(&mut header).await.is_err() {
                return;
            }
            let mut out = BytesMut::new();
            method(&mut out, 0, 10, 10, |b| {
                b.put_u8(0);
                b.put_u8(9);
                b.put_u32(0);
                b.put_u32(5);
                b.put_slice(b"PLAIN");
                b.put_u32(5);
                b.put_slice(b"en_US");
            });
            let _ = s.write_all(&out).await;
            let mut buf = BytesMut::with_capacity(1 << 20);
            loop {
                match s.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                out.clear();
                let mut n = 0;
                while let Ok(Some(f)) = parse_frame(&mut buf) {
                    if f.kind != 1 {
                        continue;
                    }
                    match f.ids() {
                        (10, 11) => method(&mut out, 0, 10, 30, |b| {
                            b.put_u16(2047);
                            b.put_u32(131072);
                            b.put_u16(0);
                        }),
                        (10, 40) => method(&mut out, 0, 10, 41, |b| put_shortstr(b, "")),
                        (20, 10) => method(&mut out, f.channel, 20, 11, |b| b.put_u32(0)),
                        (50, 10) => method(&mut out, f.channel, 50, 11, |b| {
                            let len = f.payload[6] as usize;
                            put_shortstr(
                                b,
                                std::str::from_utf8(&f.payload[7..7 + len]).unwrap_or(""),
                            );
                            b.put_u32(0);
                            b.put_u32(0);
                        }),
                        (50, 30) => method(&mut out, f.channel, 50, 31, |b| b.put_u32(0)),
                        (50, 40) => method(&mut out, f.channel, 50, 41, |b| b.put_u32(0)),
                        (85, 10) => method(&mut out, f.channel, 85, 11, |_| {}),
                        (60, 40) => n += 1,
                        _ => {}
                    }
                }
                publishes.fetch_add(n, Ordering::Relaxed);
                if !out.is_empty() && s.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}
