#!/usr/bin/env python3
"""Power-loss crash campaign for Warren (issue 8, "Power loss").

    python3 tools/power_loss.py --broker target/release/warren --fsync always --cycles 100 \\
        [--seed S] [--work DIR] [--json OUT] [--meta ext4|strict] [--port 35601]
        [--load-seconds 3] [--queues 4] [--segment-size BYTES] [--writeback P]

Each cycle: mount tools/powercut_fs.py over a backing directory on the real disk (which
holds exactly what was fsynced) -> start the broker with --data-dir inside the mount ->
(after the first cycle) verify every queue against the ledger -> run the workload of
tools/crash/workload.py (publishers with confirms, consumers acking part of what they
get, 40 B .. 5 MB bodies, persistent and transient) -> at a random moment SIGSTOP the
broker, `crash` the file system (every unsynced write and name operation is dropped, and
everything the kernel or the process still sends is discarded), SIGKILL the broker and
the load, unmount, mount afresh. After the last cycle the broker is started once more and
verified.

Expectations (the exit status follows them):
  always, interval:MS  no confirmed persistent message lost, none corrupted (a confirm is
                       sent only after the covering fdatasync);
  never                losses are expected - they show that the simulation bites - and
                       are reported, not failed on; a run with *no* loss fails (the
                       simulation did not bite). Corruption fails under every policy.
Under every policy a broker that does not come back up (or a verify that errors) fails,
and so do duplicates within one read of a queue and transient messages that survive.

The ledger (what was published, confirmed, acked) is written to WORK/ledger on the real
disk, outside the mount. The broker binary is copied to WORK/warren first, so a rebuild
during the run does not change what is tested. Needs root, /dev/fuse, llfuse and pika
(.ci/powercut-install.sh). Logs: WORK/logs/ (broker-NNNN.log per start, fs-NNNN.log per
mount), WORK/summary.json.
"""

import argparse
import collections
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "crash"))

import powercut_fs  # noqa: E402

READY = "accepting AMQP connections"
FAILING = ("lost", "corrupted", "dup_in_pass", "transient_survived", "verify_errors")


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def _load_child(port, ledger_dir, seconds, seed, queues, ready_fd):
    import workload

    def ready():
        os.write(ready_fd, b"r")

    try:
        workload.run_load(port, ledger_dir, seconds, seed, queues=queues, ready=ready)
    finally:
        os._exit(0)


class Broker:
    def __init__(self, binary, port, data_dir, fsync, log_path, extra):
        self.binary = binary
        self.port = port
        self.data_dir = data_dir
        self.fsync = fsync
        self.log_path = log_path
        self.extra = extra
        self.proc = None

    def start(self, timeout=120.0):
        args = [self.binary, "--listen", "127.0.0.1:%d" % self.port, "--http", "127.0.0.1:0", "--prometheus", "127.0.0.1:0", "--data-dir", self.data_dir,
                "--fsync", self.fsync] + self.extra
        with open(self.log_path, "ab") as out:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                if READY.encode() in f.read():
                    return time.monotonic() - t0
            if self.proc.poll() is not None:
                raise RuntimeError("broker exited with status %s during start (log %s)"
                                   % (self.proc.returncode, self.log_path))
            time.sleep(0.01)
        raise RuntimeError("broker not ready after %.0f s (log %s)" % (timeout, self.log_path))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(60)

    def stop_clean(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _norm(line):
    """Groups log lines that differ only in numbers, paths' digits and offsets."""
    return re.sub(r"\d+", "N", line)


def broker_warnings(path):
    """Lines of one broker log other than the two normal start-up lines."""
    out = []
    with open(path, "rb") as f:
        for raw in f.read().decode("utf-8", "replace").splitlines():
            line = raw.strip()
            if not line or READY in line or re.match(r"warren: recovered \d+ durable queues", line):
                continue
            out.append(line)
    return out


def durable_state(backing_data):
    """What the power cut left on disk: counts of files by kind, zero-length segments."""
    s = collections.Counter()
    for root, _dirs, files in os.walk(backing_data):
        for name in files:
            st = os.stat(os.path.join(root, name))
            kind = name.rsplit(".", 1)[-1] if "." in name else name
            s["files." + kind] += 1
            if name.endswith(".seg") and st.st_size == 0:
                s["zero_length_seg"] += 1
    return dict(s)


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", required=True, help="the warren binary (copied before use)")
    ap.add_argument("--fsync", required=True, help="always | interval:MS | never")
    ap.add_argument("--cycles", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", help="work dir on a real disk (default /tmp/powercut/run-POLICY-SEED)")
    ap.add_argument("--json", help="write the summary here too")
    ap.add_argument("--meta", choices=("strict", "ext4"), default="ext4",
                    help="name-operation model of the file system (tools/powercut_fs.py): ext4 "
                         "(default; any fsync commits all pending creates/renames/unlinks, as "
                         "jbd2 does) or strict (POSIX-minimal: a name is durable only after an "
                         "fsync of its directory)")
    ap.add_argument("--port", type=int, default=35601)
    ap.add_argument("--queues", type=int, default=4)
    ap.add_argument("--load-seconds", type=float, default=3.0,
                    help="the crash comes at a uniform moment in 0.05 .. this after the load is ready")
    ap.add_argument("--segment-size", type=int, help="passed to the broker")
    ap.add_argument("--dump", help="warren-dump binary: run --verify on the durable state after "
                                   "each crash (default: next to --broker, if present)")
    ap.add_argument("--writeback", type=float, default=0.0, metavar="P",
                    help="at each power cut, every unsynced page of a durably named file reaches "
                         "the disk with probability P (background writeback before the cut: "
                         "torn, partly persisted unconfirmed data); default 0 (all unsynced "
                         "data lost)")
    ap.add_argument("--no-backing-sync", action="store_true",
                    help="do not fsync the backing files (faster; does not change the simulation)")
    args = ap.parse_args()

    if not (args.fsync in ("always", "never") or re.fullmatch(r"interval:\d+", args.fsync)):
        ap.error("--fsync must be always, interval:MS or never")
    if os.geteuid() != 0:
        ap.error("needs root (FUSE mount)")
    policy = args.fsync
    expect_losses = policy == "never"
    work = os.path.abspath(args.work or "/tmp/powercut/run-%s-%d" % (policy.replace(":", ""), args.seed))
    if os.path.exists(work):
        shutil.rmtree(work)
    backing = os.path.join(work, "backing")
    mnt = os.path.join(work, "mnt")
    ledger_dir = os.path.join(work, "ledger")
    logs = os.path.join(work, "logs")
    for d in (backing, mnt, ledger_dir, logs):
        os.makedirs(d)
    fs_script = os.path.join(work, "powercut_fs.py")  # pinned: edits during a run do not apply
    shutil.copy2(powercut_fs.__file__, fs_script)
    shutil.copy2(os.path.join(HERE, "powercut_store.py"), os.path.join(work, "powercut_store.py"))
    binary = os.path.join(work, "warren")
    shutil.copy2(args.broker, binary)
    dump = args.dump or os.path.join(os.path.dirname(os.path.abspath(args.broker)), "warren-dump")
    if dump and os.path.exists(dump):
        shutil.copy2(dump, os.path.join(work, "warren-dump"))
        dump = os.path.join(work, "warren-dump")
    else:
        dump = None
    # The data dir exists before the broker's first start and is durable (an operator's
    # mkdir long ago): the broker is not asked to make its own data dir's name durable.
    os.makedirs(os.path.join(backing, "data"))
    data_dir = os.path.join(mnt, "data")
    extra = []
    if args.segment_size:
        extra += ["--segment-size", str(args.segment_size)]

    import workload

    rng = random.Random("power-loss/%s/%d" % (policy, args.seed))
    led = workload.Ledger(ledger_dir)
    totals = collections.Counter()
    recovery_s = []
    warnings = collections.Counter()
    warning_samples = {}
    cycles = []
    failure = None
    fs_proc = None
    broker = None
    t_start = time.time()
    rec = {}
    log("power_loss: %s, %d cycles, seed %d, meta=%s, work %s"
        % (policy, args.cycles, args.seed, args.meta, work))

    def mount(n):
        return powercut_fs.start_mount(
            backing, mnt, meta=args.meta, log_path=os.path.join(logs, "fs-%04d.log" % n),
            stats_path=os.path.join(logs, "fs-%04d.json" % n), backing_sync=not args.no_backing_sync,
            script=fs_script, crash_writeback=args.writeback, crash_seed=args.seed * 1000003 + n)

    def start_broker(n):
        nonlocal broker
        path = os.path.join(logs, "broker-%04d.log" % n)
        broker = Broker(binary, args.port, data_dir, policy, path, extra)
        took = broker.start()
        recovery_s.append(took)
        for line in broker_warnings(path):
            key = _norm(line)
            warnings[key] += 1
            warning_samples.setdefault(key, line)
        return took, path

    def do_verify(n):
        v = workload.verify(args.port, ledger_dir, seed=args.seed, ledger=led)
        for k, val in v.items():
            if isinstance(val, int):
                totals[k] += val
        return v

    try:
        fs_proc = mount(0)
        for n in range(args.cycles + 1):
            rec = {"cycle": n}
            took, blog = start_broker(n)
            rec["start_s"] = round(took, 3)
            if n > 0:
                v = do_verify(n)
                rec["verify"] = {k: val for k, val in v.items() if val and k != "details"}
                bad = [k for k in FAILING if v.get(k) and not (k == "lost" and expect_losses)]
                if v.get("lost") or v.get("corrupted") or bad:
                    rec["details"] = v["details"]
                    log("cycle %d: %s%s" % (n, json.dumps(rec["verify"], sort_keys=True),
                                           "  (expected under never)" if expect_losses and not bad else ""))
                if bad and failure is None:
                    failure = "cycle %d: %s" % (n, ", ".join("%s=%d" % (k, v[k]) for k in bad))
            if n == args.cycles:
                cycles.append(rec)
                break
            # Load, then the power cut at a random moment.
            before = len(led.refresh().confirmed)
            rfd, wfd = os.pipe()
            ctx = multiprocessing.get_context("fork")
            load = ctx.Process(target=_load_child, args=(
                args.port, ledger_dir, args.load_seconds + 5.0, args.seed * 1000003 + n,
                args.queues, wfd), daemon=True)
            load.start()
            os.close(wfd)
            os.set_blocking(rfd, False)
            deadline = time.monotonic() + 30
            ready = False
            while time.monotonic() < deadline and load.is_alive():
                try:
                    if os.read(rfd, 1):
                        ready = True
                        break
                except BlockingIOError:
                    pass
                time.sleep(0.01)
            os.close(rfd)
            delay = rng.uniform(0.05, args.load_seconds)
            rec["cut_after_s"] = round(delay, 3)
            if not ready:
                rec["load_not_ready"] = True
            time.sleep(delay)
            os.kill(broker.proc.pid, signal.SIGSTOP)
            powercut_fs.control(mnt, "crash")
            broker.kill()
            if load.is_alive():
                os.kill(load.pid, signal.SIGKILL)
            load.join(10)
            if not powercut_fs.unmount(mnt, fs_proc.pid):
                rec["fs_forced_unmount"] = True
            fs_proc.wait(10)
            with open(os.path.join(logs, "fs-%04d.json" % n)) as f:
                fst = json.load(f)
            rec["fs"] = {k: fst.get(k, 0) for k in (
                "dropped_pending_bytes", "dropped_pending_files", "dropped_pending_names",
                "discarded_writes", "fsyncs", "fsyncdirs", "internal_errors", "writeback_pages")}
            if rec["fs"]["internal_errors"] and failure is None:
                failure = "cycle %d: powercut_fs internal error (see %s)" % (
                    n, os.path.join(logs, "fs-%04d.log" % n))
            for k, val in rec["fs"].items():
                totals["fs_" + k] += val
            rec["confirmed"] = len(led.refresh().confirmed) - before
            rec["durable"] = durable_state(os.path.join(backing, "data"))
            totals["zero_length_seg"] += rec["durable"].get("zero_length_seg", 0)
            if dump:
                d = subprocess.run([dump, os.path.join(backing, "data"), "--verify"],
                                   capture_output=True, text=True, timeout=300)
                rec["dump_verify_status"] = d.returncode
                if d.returncode != 0:
                    totals["dump_verify_nonzero"] += 1
                    with open(os.path.join(logs, "dump-%04d.txt" % n), "w") as f:
                        f.write(d.stdout + d.stderr)
            cycles.append(rec)
            if n % 10 == 0 or n < 3:
                log("cycle %d: cut after %.2f s, %d newly confirmed, dropped %d pending bytes / %d names"
                    % (n, delay, rec["confirmed"], rec["fs"]["dropped_pending_bytes"],
                       rec["fs"]["dropped_pending_names"]))
            fs_proc = mount(n + 1)
    except Exception as e:  # noqa: BLE001
        import traceback

        err = "%s: %s" % (type(e).__name__, e)
        rec["error"] = err
        rec["traceback"] = traceback.format_exc()
        if not cycles or cycles[-1] is not rec:
            cycles.append(rec)
        failure = failure or err
        log("ERROR in cycle %s: %s\n%s" % (rec.get("cycle"), err, rec["traceback"]))
    finally:
        # Leave the durable state as a power cut would (not the clean unmount's flush).
        if broker and broker.proc and broker.proc.poll() is None:
            try:
                os.kill(broker.proc.pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        if fs_proc and fs_proc.poll() is None:
            try:
                powercut_fs.control(mnt, "crash")
            except OSError:
                pass
        if broker:
            broker.kill()
        if fs_proc and fs_proc.poll() is None:
            powercut_fs.unmount(mnt, fs_proc.pid)

    led.refresh()
    persistent_confirmed = sum(1 for m in led.confirmed if led.meta.get(m, (0, False))[1])
    summary = {
        "policy": policy,
        "meta": args.meta,
        "writeback": args.writeback,
        "seed": args.seed,
        "cycles_requested": args.cycles,
        "cycles_done": sum(1 for c in cycles if "fs" in c),
        "confirmed": len(led.confirmed),
        "confirmed_persistent": persistent_confirmed,
        "lost": totals["lost"],
        "corrupted": totals["corrupted"],
        "duplicated": totals["duplicated"],
        "dup_in_pass": totals["dup_in_pass"],
        "transient_survived": totals["transient_survived"],
        "unconfirmed_present": totals["unconfirmed_present"],
        "redelivered": totals["redelivered"],
        "redelivered_missing": totals["redelivered_missing"],
        "count_mismatch": totals["count_mismatch"],
        "verify_errors": totals["verify_errors"],
        "zero_length_segments_after_cut": totals["zero_length_seg"],
        "dump_verify_nonzero": totals["dump_verify_nonzero"],
        "fs_dropped_pending_bytes": totals["fs_dropped_pending_bytes"],
        "fs_dropped_pending_names": totals["fs_dropped_pending_names"],
        "fs_internal_errors": totals["fs_internal_errors"],
        "fs_writeback_pages": totals["fs_writeback_pages"],
        "recovery_s_p50": percentile(recovery_s, 50),
        "recovery_s_max": max(recovery_s) if recovery_s else None,
        "broker_log_lines": [{"count": c, "example": warning_samples[k]}
                             for k, c in warnings.most_common()],
        "elapsed_s": round(time.time() - t_start, 1),
        "failure": failure,
        "work": work,
        "cycles": cycles,
    }
    if expect_losses and failure is None and summary["cycles_done"] and summary["lost"] == 0:
        failure = "no confirmed message lost under --fsync never: the simulation did not bite"
        summary["failure"] = failure
    summary["passed"] = failure is None
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    short = {k: summary[k] for k in (
        "policy", "meta", "writeback", "cycles_done", "confirmed", "confirmed_persistent", "lost", "corrupted",
        "duplicated", "dup_in_pass", "transient_survived", "verify_errors",
        "zero_length_segments_after_cut", "dump_verify_nonzero", "recovery_s_p50",
        "recovery_s_max", "elapsed_s")}
    log("power_loss: " + json.dumps(short))
    for w in summary["broker_log_lines"][:20]:
        log("  broker log x%d: %s" % (w["count"], w["example"]))
    if failure:
        log("power_loss: FAILED: %s" % failure)
        return 1
    log("power_loss: passed (%s)" % ("losses seen, as expected under never" if expect_losses
                                      else "nothing confirmed lost or corrupted"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
