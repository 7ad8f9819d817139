//! Queue and exchange features (TTL, length limits, dead-lettering, priorities, single
//! active consumer, consumer priorities, transactions, alternate exchanges, direct
//! reply-to, auto-delete exchanges) through Python's pika, one test per feature file in
//! `tests/python/features/`. Every assertion there was first checked against RabbitMQ
//! 3.10.8 (the comment at each test says what RabbitMQ does); here the same files run
//! against Warren. Needs `python3` with `pika` (`.ci/run` installs it).

use crate::common;

use std::process::Command;

/// Runs one feature file against a fresh broker; fails with the file's unittest output.
async fn feature(name: &'static str) {
    let b = common::start().await;
    let port = b.addr.port();
    let out = tokio::task::spawn_blocking(move || {
        let dir = format!("{}/tests/python/features", env!("CARGO_MANIFEST_DIR"));
        Command::new("python3")
            .arg(format!("{dir}/run_all.py"))
            .arg("-v")
            .arg(name)
            .env("WARREN_PORT", port.to_string())
            .output()
            .expect("python3 is needed for the feature tests")
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "feature {name} failed:\n{text}");
}

macro_rules! features {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            feature(stringify!($name)).await;
        }
    )*};
}

features!(
    ttl,
    maxlen,
    dlx,
    delayed,
    dedup,
    priority,
    sac,
    tx,
    consumer_priority,
    alternate_exchange,
    direct_reply_to,
    exchange_autodelete,
    stream,
);
