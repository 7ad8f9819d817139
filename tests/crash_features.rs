//! The kill -9 crash campaign for the queue features (tools/crash_features.py), shortened:
//! 10 cycles of publishers with confirms into a TTL queue, a queue whose consumer rejects,
//! a length-limited queue (drop-head) — each dead-lettering into its own DLQ — and a
//! priority queue, with consumers on all of them → kill -9 at a random moment →
//! warren-dump --verify → restart → every queue drained and checked: no confirmed message
//! lost (duplicates from a dead letter redone are counted, not failed), nothing read from
//! the TTL queue after it expired, dead-lettered copies carry the right x-death, the
//! priority queue comes back in priority order and FIFO within a priority. Then a graceful
//! stop, restart and the same checks. Delayed messages are included when the broker takes
//! `x-delayed-message` exchanges. About 40 s.
//!
//! Needs `python3` with `pika` (`.ci/run` installs it). The seed comes from the clock and
//! is printed; `WARREN_CRASH_SEED` and `WARREN_CRASH_CYCLES` override.

use std::process::Command;

fn require_pika() {
    let ok = Command::new("python3")
        .args(["-c", "import pika"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 with pika is required: pip install pika");
}

#[test]
fn kill9_crash_loop_keeps_queue_feature_promises() {
    require_pika();
    let root = env!("CARGO_MANIFEST_DIR");
    let work = tempfile::tempdir().unwrap();
    let summary = work.path().join("summary.json");
    let cycles = std::env::var("WARREN_CRASH_CYCLES").unwrap_or_else(|_| "10".into());
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{root}/tools/crash_features.py"))
        .args(["--broker", env!("CARGO_BIN_EXE_warren")])
        .args([
            "--cycles",
            cycles.as_str(),
            "--kill-min",
            "0.3",
            "--kill-max",
            "1.5",
            "--port",
            "0",
        ])
        .arg("--work")
        .arg(work.path().join("run"))
        .arg("--json")
        .arg(&summary);
    if let Ok(seed) = std::env::var("WARREN_CRASH_SEED") {
        cmd.args(["--seed", seed.as_str()]);
    }
    // warren-dump (built by `cargo test --workspace`) is found next to the broker binary;
    // without it the driver skips the dump check and says so.
    let out = cmd.output().expect("python3 runs tools/crash_features.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The totals line (and any FAILURE lines) for the test log.
    for line in stdout.lines() {
        if (line.starts_with("crash_features:") && !line.starts_with("crash_features: totals"))
            || line.contains("FAILURE")
        {
            println!("{line}");
        }
    }
    assert!(
        out.status.success(),
        "crash_features failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
