//! Python's pika, the most common RabbitMQ client, runs the RabbitMQ tutorials against
//! Warren unchanged but for the port: hello world, and a work queue with two workers,
//! prefetch 1 and manual acks. Needs `python3` with `pika` (`pip install pika`; `.ci/run`
//! installs it).

use crate::common;

use std::process::{Command, Output, Stdio};

fn python(script: &str, port: u16, args: &[&str]) -> std::process::Child {
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    Command::new("python3")
        .arg(path)
        .args(args)
        .env("WARREN_PORT", port.to_string())
        .env("WORKER_IDLE", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the pika tests")
}

fn finish(child: std::process::Child) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "python failed: {out}\n{}",
        String::from_utf8_lossy(&stderr)
    );
    out
}

fn require_pika() {
    let ok = Command::new("python3")
        .args(["-c", "import pika"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 with pika is required: pip install pika");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_hello_world() {
    require_pika();
    let b = common::start().await;
    let port = b.addr.port();
    let out = tokio::task::spawn_blocking(move || finish(python("send.py", port, &[])))
        .await
        .unwrap();
    assert!(out.contains("[x] Sent 'Hello, RabbitMQ!'"), "{out}");
    let out = tokio::task::spawn_blocking(move || finish(python("receive.py", port, &[])))
        .await
        .unwrap();
    assert!(out.contains("[x] Received Hello, RabbitMQ!"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_work_queue_with_two_workers() {
    require_pika();
    let b = common::start().await;
    let port = b.addr.port();
    let tasks: Vec<String> = (0..10)
        .map(|i| format!("task{i}{}", ".".repeat(1 + i % 3)))
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        let w1 = python("worker.py", port, &[]);
        let w2 = python("worker.py", port, &[]);
        std::thread::sleep(std::time::Duration::from_millis(800));
        let args: Vec<&str> = tasks.iter().map(String::as_str).collect();
        finish(python("new_task.py", port, &args));
        (finish(w1), finish(w2), tasks)
    })
    .await
    .unwrap();
    let (out1, out2, tasks) = outputs;
    let done = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("[x] Done ").map(str::to_owned))
            .collect()
    };
    let (d1, d2) = (done(&out1), done(&out2));
    assert!(
        !d1.is_empty() && !d2.is_empty(),
        "both workers got work:\n{out1}\n{out2}"
    );
    let mut all: Vec<String> = d1.into_iter().chain(d2).collect();
    all.sort();
    let mut expected = tasks;
    expected.sort();
    assert_eq!(all, expected, "every task done exactly once");
}
