//! The kill -9 crash campaign (tools/crash_loop.py, issue 8), shortened: 20 cycles of
//! publishers with confirms and consumers acking part of what they get (bodies from 40 B to
//! 5 MB, four durable queues, persistent and transient) → kill -9 at a random moment →
//! warren-dump --verify → restart → every confirmed persistent message that was not acked is
//! back and byte-identical, no transient message survived, nothing read twice. Then a
//! graceful stop, restart and the same check. About a minute.
//!
//! Needs `python3` with `pika` (`pip install pika`; `.ci/run` installs it). The seed comes
//! from the clock and is printed; `WARREN_CRASH_SEED` and `WARREN_CRASH_CYCLES` override.

use std::process::Command;

fn require_pika() {
    let ok = Command::new("python3")
        .args(["-c", "import pika"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 with pika is required: pip install pika");
}

#[test]
fn kill9_crash_loop_loses_no_confirmed_message() {
    require_pika();
    let root = env!("CARGO_MANIFEST_DIR");
    let work = tempfile::tempdir().unwrap();
    let summary = work.path().join("summary.json");
    let cycles = std::env::var("WARREN_CRASH_CYCLES").unwrap_or_else(|_| "20".into());
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{root}/tools/crash_loop.py"))
        .args(["--broker", env!("CARGO_BIN_EXE_warren")])
        .args([
            "--cycles",
            cycles.as_str(),
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
    let out = cmd.output().expect("python3 runs tools/crash_loop.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The totals line (and any FAILURE lines) for the test log.
    for line in stdout.lines() {
        if line.starts_with("crash_loop:") || line.contains("FAILURE") || line.starts_with("final")
        {
            println!("{line}");
        }
    }
    assert!(
        out.status.success(),
        "crash loop failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
