//! Wire codec and routing benchmarks: parse + encode of a publish (method, header, body)
//! and of a deliver; topic routing with 10, 1,000 and 100,000 bindings; headers routing.
//!
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;
use std::sync::Arc;

use amq_protocol_types::{AMQPValue, FieldTable};
use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use warren::broker::exchange::{Binding, Dest, Exchange, ExchangeKind};
use warren::protocol::frame::{self, FRAME_BODY, FRAME_HEADER};
use warren::protocol::method::{self, ids, server};
use warren::protocol::properties;

fn publish_frames(out: &mut BytesMut, body: &[u8]) {
    method::write(out, 1, ids::BASIC_PUBLISH, |w| {
        w.u16(0)
            .shortstr("amq.direct")
            .shortstr("orders.eu")
            .bit(false)
            .bit(false);
    });
    let mut header = BytesMut::new();
    header.put_u16(60);
    header.put_u16(0);
    header.put_u64(body.len() as u64);
    header.put_u16(1 << 12);
    header.put_u8(2);
    frame::write(out, FRAME_HEADER, 1, &header);
    frame::write(out, FRAME_BODY, 1, body);
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    let body = [7u8; 16];
    g.bench_function("publish-encode+parse-16B", |b| {
        let mut out = BytesMut::with_capacity(256);
        b.iter(|| {
            out.clear();
            publish_frames(&mut out, black_box(&body));
            let m = frame::parse(&mut out, 131072).unwrap().unwrap();
            let h = frame::parse(&mut out, 131072).unwrap().unwrap();
            let d = frame::parse(&mut out, 131072).unwrap().unwrap();
            let (_, method) = method::decode(&m.payload).unwrap();
            let header = properties::decode(&h.payload).unwrap();
            black_box((method, header.body_size, d.payload.len()));
        });
    });
    g.bench_function("deliver-encode-16B", |b| {
        let mut out = BytesMut::with_capacity(256);
        let header = [0u8, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0];
        let mut tag = 0u64;
        b.iter(|| {
            out.clear();
            tag += 1;
            server::deliver(
                &mut out,
                1,
                "amq.ctag-abcdefghijklmnopqrstuv",
                tag,
                false,
                "amq.direct",
                "orders.eu",
            );
            frame::write(&mut out, FRAME_HEADER, 1, &header);
            frame::write(&mut out, FRAME_BODY, 1, black_box(&body));
            black_box(out.len());
        });
    });
    g.finish();
}

fn binding(queue: &str, key: &str, args: FieldTable) -> Binding {
    Binding {
        dest: Dest::Queue(Arc::from(queue)),
        routing_key: key.to_owned(),
        args_raw: Vec::new(),
        args,
    }
}

fn topic(c: &mut Criterion) {
    let mut g = c.benchmark_group("route/topic");
    g.throughput(Throughput::Elements(1));
    for n in [10usize, 1_000, 100_000] {
        let mut ex = Exchange::new(
            "t",
            ExchangeKind::Topic,
            false,
            false,
            false,
            Vec::new(),
            FieldTable::default(),
        );
        for i in 0..n {
            let key = match i % 4 {
                0 => format!("stock.{i}.nyse"),
                1 => format!("stock.*.{i}"),
                2 => format!("news.{i}.#"),
                _ => format!("#.{i}"),
            };
            ex.bind(binding(&format!("q{i}"), &key, FieldTable::default()));
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut hits = 0;
                ex.route(black_box("stock.8.nyse"), None, |_| hits += 1);
                black_box(hits);
            });
        });
    }
    g.finish();
}

fn headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("route/headers");
    g.throughput(Throughput::Elements(1));
    let mut ex = Exchange::new(
        "h",
        ExchangeKind::Headers,
        false,
        false,
        false,
        Vec::new(),
        FieldTable::default(),
    );
    for i in 0..100 {
        let mut args = FieldTable::default();
        args.insert(
            "x-match".into(),
            AMQPValue::LongString(if i % 2 == 0 { "all" } else { "any" }.into()),
        );
        args.insert(
            "format".into(),
            AMQPValue::LongString(format!("f{}", i % 10).into()),
        );
        args.insert(
            "type".into(),
            AMQPValue::LongString(format!("t{}", i % 7).into()),
        );
        ex.bind(binding(&format!("q{i}"), "", args));
    }
    let mut msg = FieldTable::default();
    msg.insert("format".into(), AMQPValue::LongString("f3".into()));
    msg.insert("type".into(), AMQPValue::LongString("t3".into()));
    g.bench_function("100-bindings", |b| {
        b.iter(|| {
            let mut hits = 0;
            ex.route("", Some(black_box(&msg)), |_| hits += 1);
            black_box(hits);
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = codec, topic, headers
}
criterion_main!(benches);
