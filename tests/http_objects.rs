//! The management API's object endpoints (issue 13, second slice): queues, exchanges,
//! bindings, connections, channels, consumers, nodes, health checks, lists with pages,
//! columns and sorting.
//!
//! 1. `tools/http_golden.py check` builds a scenario with pika and HTTP on a real broker
//!    and compares every answer with RabbitMQ 3.10.8's, recorded in tests/http_golden/
//!    (field names, JSON types, and the values the scenario fixes: message counts,
//!    `routed`, list order, the Location of a new binding, what a client sees when its
//!    connection is closed through the API). RabbitMQ-only Erlang internals are listed in
//!    `not_given.json`, what Warren does not give yet in `warren_gaps.json`, each with why.
//! 2. Debian's `rabbitmqadmin` declares, publishes, gets, purges, lists and deletes.

use crate::common;

use std::process::Command;

fn tool(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_rabbitmq_3_10_recordings() {
    let b = common::start().await;
    let (amqp, http) = (b.addr.port(), b.http_addr.expect("API").port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(tool("tools/http_golden.py"))
            .args(["check", "--amqp-port", &amqp.to_string()])
            .args(["--http-port", &http.to_string()])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the API differs from RabbitMQ's");
    assert!(text.contains(" cases, 0 differences"), "{text}");
}

/// Runs rabbitmqadmin as guest against the broker's API; returns stdout.
async fn admin(port: u16, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("rabbitmqadmin")
            .args(["-H", "127.0.0.1", "-P", &port.to_string()])
            .args(["-u", "guest", "-p", "guest"])
            .args(&args)
            .output()
            .expect("rabbitmqadmin runs (installed by .ci/run with rabbitmq-server)")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rabbitmqadmin {shown}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmqadmin_runs_queues_exchanges_and_messages() {
    let b = common::start().await;
    let port = b.http_addr.expect("API").port();
    admin(port, &["declare", "queue", "name=adm.q", "durable=true"]).await;
    admin(port, &["declare", "exchange", "name=adm.x", "type=topic"]).await;
    admin(
        port,
        &[
            "declare",
            "binding",
            "source=adm.x",
            "destination=adm.q",
            "routing_key=a.*",
        ],
    )
    .await;
    let routed = admin(
        port,
        &[
            "publish",
            "exchange=adm.x",
            "routing_key=a.b",
            "payload=hello",
        ],
    )
    .await;
    assert!(
        routed.contains("Message published") && !routed.contains("NOT"),
        "{routed}"
    );
    let unrouted = admin(
        port,
        &["publish", "exchange=adm.x", "routing_key=z", "payload=lost"],
    )
    .await;
    assert!(unrouted.contains("NOT routed"), "{unrouted}");
    admin(port, &["publish", "routing_key=adm.q", "payload=second"]).await;
    let listed = admin(port, &["-f", "tsv", "list", "queues", "name", "messages"]).await;
    assert!(listed.contains("adm.q\t2"), "{listed}");
    let bindings = admin(
        port,
        &["-f", "tsv", "list", "bindings", "source", "routing_key"],
    )
    .await;
    assert!(bindings.contains("adm.x\ta.*"), "{bindings}");
    // get with requeue leaves the message; the payload comes back.
    let got = admin(
        port,
        &[
            "-f",
            "tsv",
            "get",
            "queue=adm.q",
            "ackmode=ack_requeue_true",
        ],
    )
    .await;
    assert!(got.contains("hello"), "{got}");
    let listed = admin(port, &["-f", "tsv", "list", "queues", "name", "messages"]).await;
    assert!(listed.contains("adm.q\t2"), "{listed}");
    admin(port, &["purge", "queue", "name=adm.q"]).await;
    let listed = admin(port, &["-f", "tsv", "list", "queues", "name", "messages"]).await;
    assert!(listed.contains("adm.q\t0"), "{listed}");
    admin(port, &["delete", "exchange", "name=adm.x"]).await;
    admin(port, &["delete", "queue", "name=adm.q"]).await;
    let listed = admin(port, &["-f", "tsv", "list", "queues", "name"]).await;
    assert!(!listed.contains("adm.q"), "{listed}");
    let nodes = admin(port, &["-f", "tsv", "list", "nodes", "name", "running"]).await;
    assert!(
        nodes.contains("warren@") && nodes.contains("True"),
        "{nodes}"
    );
}
