//! Prometheus metrics (issue 13): a real broker on `--fsync always` with queues, messages,
//! a consumer holding unacked deliveries and publisher confirms (lapin), scraped on its
//! `--prometheus` port; the text is parsed by the Prometheus project's Python parser
//! (`prometheus_client.parser.text_string_to_metric_families`, installed by `.ci/run`: a
//! text it rejects fails the test) and the values checked. The families Warren names
//! `rabbitmq_*` are checked against RabbitMQ 3.10.8's own output (recorded by
//! `tools/prometheus_reference.py` into `tests/prometheus/`): each must exist there with
//! the same type and help text.

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Parses exposition text with the Python client's parser; prints each family as JSON:
/// {name: {type, help, samples: [[name, labels, value]]}} (NaN and infinities as strings).
const PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
num = lambda v: v if math.isfinite(v) else str(v)
for f in text_string_to_metric_families(sys.stdin.read()):
    if f.name in out:
        sys.exit("family %s appears twice" % f.name)
    out[f.name] = {"type": f.type, "help": f.documentation,
                   "samples": [[s.name, s.labels, num(s.value)] for s in f.samples]}
print(json.dumps(out))
"#;

/// Families by name, as the Prometheus parser read them (counters lose `_total`).
struct Families(BTreeMap<String, Value>);

impl Families {
    fn parse(text: &str) -> Families {
        let mut child = Command::new("python3")
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the Prometheus parser rejected the text: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        Families(serde_json::from_slice(&out.stdout).unwrap())
    }

    fn family(&self, name: &str) -> &Value {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    /// The value of the sample `sample` whose labels include `labels`.
    fn value(&self, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
        let samples = self.family(family)["samples"].as_array().unwrap();
        let found: Vec<f64> = samples
            .iter()
            .filter(|s| s[0] == sample)
            .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
            .map(|s| s[2].as_f64().unwrap())
            .collect();
        assert_eq!(found.len(), 1, "{sample}{labels:?} in {samples:?}");
        found[0]
    }

    /// The value of a family with one unlabelled sample of the same name.
    fn single(&self, name: &str) -> f64 {
        self.value(name, name, &[])
    }
}

/// GET `path`; returns the body after checking the status and content type.
async fn scrape(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("metrics within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    body.to_owned()
}

/// Scrapes until `ready` holds for the parsed families (the model counts deliveries and
/// acks as it processes them, a moment after the client has sent or seen them).
async fn scrape_until(addr: SocketAddr, path: &str, ready: impl Fn(&Families) -> bool) -> Families {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let f = Families::parse(&scrape(addr, path).await);
        if ready(&f) || Instant::now() > deadline {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two queues with messages, a consumer holding two unacked deliveries, confirms: every
/// family shows it, aggregated and per queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_queues_consumers_and_publishes() {
    let b = common::start_with(|c| c.fsync = warren_storage::FsyncPolicy::Always).await;
    let addr = b.prometheus_addr.expect("metrics listener");
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "orders".into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "events".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..5u8 {
        let c = common::publish_confirmed(&ch, "", "orders", &[i], true).await;
        assert!(c.is_ack());
    }
    for i in 0..3u8 {
        common::publish_confirmed(&ch, "", "events", &[i], false).await;
    }
    let consumer_ch = conn.create_channel().await.unwrap();
    consumer_ch
        .basic_qos(2, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_ch
        .basic_consume(
            "events".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut tags = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("a delivery")
            .unwrap()
            .unwrap();
        tags.push(d.delivery_tag);
    }

    let m = scrape_until(addr, "/metrics", |f| {
        f.single("rabbitmq_queue_messages_unacked") == 2.0
    })
    .await;
    assert_eq!(m.single("rabbitmq_queue_messages_ready"), 6.0);
    assert_eq!(m.single("rabbitmq_queue_messages_unacked"), 2.0);
    assert_eq!(m.single("rabbitmq_queue_messages"), 8.0);
    assert_eq!(m.single("rabbitmq_queue_consumers"), 1.0);
    assert_eq!(m.single("rabbitmq_queues"), 2.0);
    assert_eq!(m.single("rabbitmq_connections"), 1.0);
    assert_eq!(m.single("rabbitmq_channels"), 2.0);
    assert_eq!(m.single("rabbitmq_consumers"), 1.0);
    let total = |f: &Families, name: &str| f.value(name, &format!("{name}_total"), &[]);
    assert_eq!(total(&m, "rabbitmq_connections_opened"), 1.0);
    assert_eq!(total(&m, "rabbitmq_connections_closed"), 0.0);
    assert_eq!(total(&m, "rabbitmq_channels_opened"), 2.0);
    let amqp = [("protocol", "amqp091")];
    let global = |f: &Families, name: &str| {
        f.value(
            &format!("rabbitmq_global_messages_{name}"),
            &format!("rabbitmq_global_messages_{name}_total"),
            &amqp,
        )
    };
    assert_eq!(global(&m, "received"), 8.0);
    assert_eq!(global(&m, "confirmed"), 8.0);
    assert_eq!(global(&m, "delivered"), 2.0);
    assert_eq!(global(&m, "acknowledged"), 0.0);
    assert_eq!(
        m.value(
            "rabbitmq_global_consumers",
            "rabbitmq_global_consumers",
            &amqp
        ),
        1.0
    );
    // Node: memory and disk as measured, limits as configured, no alarm.
    assert!(m.single("rabbitmq_process_resident_memory_bytes") > 1e6);
    assert!(m.single("rabbitmq_disk_space_available_bytes") > 0.0);
    assert_eq!(
        m.single("rabbitmq_disk_space_available_limit_bytes"),
        warren::config::defaults::DISK_FREE_LIMIT as f64
    );
    assert!(m.single("rabbitmq_resident_memory_limit_bytes") > 0.0);
    assert_eq!(m.single("rabbitmq_alarms_memory_used_watermark"), 0.0);
    assert_eq!(m.single("rabbitmq_alarms_free_disk_space_watermark"), 0.0);
    assert!(m.single("rabbitmq_process_open_fds") > 0.0);
    // Storage: every persistent publish waited for a sync round.
    let fsyncs = m.value("warren_fsync_seconds", "warren_fsync_seconds_count", &[]);
    assert!(fsyncs >= 1.0, "{fsyncs} sync rounds");
    assert_eq!(
        m.value(
            "warren_fsync_seconds",
            "warren_fsync_seconds_bucket",
            &[("le", "+Inf")]
        ),
        fsyncs
    );
    assert_eq!(
        m.value(
            "warren_group_commit_batch_size",
            "warren_group_commit_batch_size_count",
            &[]
        ),
        fsyncs
    );
    assert!(
        m.single("warren_segment_files") >= 2.0,
        "a segment per queue"
    );
    assert!(m.single("warren_segment_bytes") >= 2.0 * 4096.0);
    assert!(m.single("warren_recovery_seconds") >= 0.0);
    assert_eq!(m.family("warren_fsync_seconds")["type"], "histogram");

    // Per object: the same numbers, one series per queue labelled as RabbitMQ labels them.
    let p = Families::parse(&scrape(addr, "/metrics/per-object").await);
    let q = |f: &str, queue: &str| p.value(f, f, &[("vhost", "/"), ("queue", queue)]);
    assert_eq!(q("rabbitmq_queue_messages_ready", "orders"), 5.0);
    assert_eq!(q("rabbitmq_queue_messages_ready", "events"), 1.0);
    assert_eq!(q("rabbitmq_queue_messages_unacked", "events"), 2.0);
    assert_eq!(q("rabbitmq_queue_messages_unacked", "orders"), 0.0);
    assert_eq!(q("rabbitmq_queue_messages", "events"), 3.0);
    assert_eq!(q("rabbitmq_queue_consumers", "events"), 1.0);
    assert_eq!(q("rabbitmq_queue_consumers", "orders"), 0.0);
    for s in p.family("rabbitmq_queue_messages_ready")["samples"]
        .as_array()
        .unwrap()
    {
        let labels: Vec<&String> = s[1].as_object().unwrap().keys().collect();
        assert_eq!(labels, ["queue", "vhost"], "{s}");
    }
    assert_eq!(p.single("rabbitmq_queues"), 2.0);

    // Acks are counted; a closed connection too.
    for tag in tags {
        consumer_ch
            .basic_ack(tag, BasicAckOptions::default())
            .await
            .unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();
    let m = scrape_until(addr, "/metrics", |f| {
        total(f, "rabbitmq_connections_closed") == 1.0
    })
    .await;
    assert_eq!(global(&m, "acknowledged"), 2.0);
    assert_eq!(total(&m, "rabbitmq_connections_closed"), 1.0);
    assert_eq!(m.single("rabbitmq_connections"), 0.0);
    assert_eq!(m.single("rabbitmq_queue_messages_unacked"), 0.0);
    // The two deliveries were acked before the close: 5 in orders, 1 in events.
    assert_eq!(m.single("rabbitmq_queue_messages_ready"), 6.0);
}

fn recording(name: &str) -> Families {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/prometheus")
        .join(format!("rabbitmq-3.10.8-{name}.txt"));
    Families::parse(&std::fs::read_to_string(&path).unwrap())
}

/// Every `rabbitmq_*` family Warren serves exists in RabbitMQ 3.10.8's output on the same
/// endpoint, with the same type and help text, and its samples carry RabbitMQ's label
/// names (label values such as versions and node names are the node's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_families_are_rabbitmq_3_10s() {
    let b = common::start().await;
    let addr = b.prometheus_addr.expect("metrics listener");
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        "q".into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    for (path, name) in [
        ("/metrics", "metrics"),
        ("/metrics/per-object", "per-object"),
    ] {
        let reference = recording(name);
        let warren = Families::parse(&scrape(addr, path).await);
        let mut checked = 0;
        for (family, f) in &warren.0 {
            if !family.starts_with("rabbitmq_") {
                assert!(family.starts_with("warren_"), "{family}: not Warren's own");
                continue;
            }
            let Some(r) = reference.0.get(family) else {
                panic!("{path}: {family} is not in RabbitMQ 3.10.8's output");
            };
            assert_eq!(f["type"], r["type"], "{path}: type of {family}");
            assert_eq!(f["help"], r["help"], "{path}: help of {family}");
            let label_names = |v: &Value| -> Vec<Vec<String>> {
                let mut names: Vec<Vec<String>> = v["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s[1].as_object().unwrap().keys().cloned().collect())
                    .collect();
                names.sort();
                names.dedup();
                names
            };
            match family.as_str() {
                // Warren's own version labels.
                "rabbitmq_build_info" => {}
                // No rabbitmq_cluster_permanent_id: Warren has no cluster.
                "rabbitmq_identity_info" => {
                    let (w, r) = (&label_names(f)[0], &label_names(r)[0]);
                    assert!(w.iter().all(|l| r.contains(l)), "{path}: {w:?} vs {r:?}");
                }
                _ => assert_eq!(label_names(f), label_names(r), "{path}: labels of {family}"),
            }
            checked += 1;
        }
        assert!(checked >= 25, "{path}: only {checked} rabbitmq_* families");
    }
}
