//! Queue features across kill -9: the broker runs as a child process under `--fsync
//! always`; `tests/python/features/restart_check.py setup` declares and publishes (with
//! confirms), the broker is killed with SIGKILL and started again on the same data dir,
//! then `restart_check.py verify` checks delayed messages, priority order, deduplication
//! state, TTL expiry into a dead-letter queue and x-expires after the restart; and
//! `held_dead_letters.py` checks that a quorum queue's kept (at-least-once) dead letter is
//! still kept, never delivered, and published once it routes. Needs `python3` with `pika`
//! (`.ci/run` installs it).

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "broker did not come up on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn phase(phase: &str, port: u16, state: &std::path::Path) {
    run_script("restart_check.py", &[phase, &state.to_string_lossy()], port);
}

/// Runs `tests/python/features/SCRIPT ARGS` against the broker on `port`; it must pass.
fn run_script(script: &str, args: &[&str], port: u16) {
    let script = format!(
        "{}/tests/python/features/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let phase = args.first().copied().unwrap_or_default();
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .env("WARREN_PORT", port.to_string())
        .output()
        .expect("python3 with pika is needed");
    assert!(
        out.status.success(),
        "{phase} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn queue_features_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let data = dir.path().join("data");
    let port = common::free_port();
    let mut broker = common::spawn_warren(&data, port, &[], Stdio::null());
    wait_port(port);
    phase("setup", port, &state);
    broker.kill().unwrap();
    broker.wait().unwrap();
    let mut broker = common::spawn_warren(&data, port, &[], Stdio::null());
    wait_port(port);
    phase("verify", port, &state);
    broker.kill().unwrap();
    broker.wait().unwrap();
}

#[test]
fn a_kept_dead_letter_of_a_quorum_queue_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = common::free_port();
    let mut broker = common::spawn_warren(&data, port, &[], Stdio::null());
    wait_port(port);
    run_script("held_dead_letters.py", &["setup"], port);
    broker.kill().unwrap();
    broker.wait().unwrap();
    let mut broker = common::spawn_warren(&data, port, &[], Stdio::null());
    wait_port(port);
    run_script("held_dead_letters.py", &["verify"], port);
    broker.kill().unwrap();
    broker.wait().unwrap();
}
