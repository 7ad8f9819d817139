//! The `connection_model` fuzz target's model, checked against RabbitMQ 3.10 itself: the
//! same pseudo-random sessions the fuzzer starts from run over TCP against a private
//! RabbitMQ node (Debian's `rabbitmq-server`, which `.ci/run` installs; AMQP port 5704,
//! node `model@localhost`, distribution port 25704) and against Warren, and every answer
//! of both must be the model's. A model that disagreed with RabbitMQ would make the fuzz
//! target demand the wrong behaviour of Warren.

use crate::common;

use std::net::SocketAddr;
use std::process::{Child, Command};

const RABBIT_PORT: u16 = 5704;
const SESSIONS: usize = 30;

/// The inputs: every input that once made the fuzz target fail (where the model or
/// Warren was wrong, RabbitMQ settles which), then a fixed pseudo-random stream cut into
/// 512-byte sessions.
fn inputs() -> Vec<Vec<u8>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/connection_model");
    let mut found: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    found.extend((0..SESSIONS).map(|_| {
        (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }));
    found
}

struct Rabbit {
    child: Child,
    dir: tempfile::TempDir,
}

impl Rabbit {
    fn start() -> Rabbit {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["mnesia", "log"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("plugins"), "[].\n").unwrap();
        std::fs::write(d.join("rabbitmq.conf"), "").unwrap();
        // setsid: the node's Erlang processes form a group of their own, ended together.
        let child = Command::new("setsid")
            .arg("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("HOME", d)
            .env("RABBITMQ_NODE_PORT", RABBIT_PORT.to_string())
            .env("RABBITMQ_NODENAME", "model@localhost")
            .env("RABBITMQ_DIST_PORT", "25704")
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            // Its schedulers do not spin while idle: Warren answers the same sessions at
            // the same time on this machine's two cores.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "+sbwt none +sbwtdcpu none +sbwtdio none",
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Debian's rabbitmq-server (.ci/run installs it)");
        let rabbit = Rabbit { child, dir };
        rabbit.wait_open();
        rabbit
    }

    /// Boot takes seconds; the AMQP port opens last. (On a panic, `Drop` ends the node.)
    fn wait_open(&self) {
        for _ in 0..1200 {
            if std::net::TcpStream::connect(("127.0.0.1", RABBIT_PORT)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = self.dir.path().join("log");
        panic!("RabbitMQ did not open port {RABBIT_PORT}; logs in {log:?}");
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        // setsid made the node's pid its group's id.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn run_all(addr: SocketAddr) -> usize {
    inputs()
        .iter()
        .map(|input| warren::connection::fuzz_model::check_over_tcp(addr, input))
        .sum()
}

#[test]
fn rabbitmq_and_warren_answer_as_the_model_says() {
    // Both brokers run the sessions at the same time, each over its own connections, once
    // RabbitMQ has booted (its boot takes both cores for seconds): a step waits 40 ms for
    // answers that come late, so the two one after the other took two minutes of CI,
    // nearly all of it waiting.
    let rabbit = Rabbit::start();
    let data = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let _warren = common::ChildBroker::spawn(data.path(), port, &[]);
    let on_warren = std::thread::spawn(move || run_all(SocketAddr::from(([127, 0, 0, 1], port))));
    let sent = run_all(SocketAddr::from(([127, 0, 0, 1], RABBIT_PORT)));
    drop(rabbit);
    assert!(sent > SESSIONS * 20, "only {sent} operations");
    let on_warren = match on_warren.join() {
        Ok(sent) => sent,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("Warren did not answer as the model says: {why}");
        }
    };
    assert_eq!(on_warren, sent);
}
