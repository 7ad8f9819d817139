#!/usr/bin/env python3
"""kill -9 crash campaign for Warren (issue 8).

Each cycle: (broker running) load in a child process -> kill -9 the broker at a random
moment -> warren-dump --verify on the data dir -> restart the broker, timing recovery (spawn
to the AMQP port accepting) -> verify every queue against the ledger (tools/crash/workload.py)
-> next cycle on the same broker. After the last cycle the broker is stopped gracefully
(SIGINT), restarted and verified once more, then stopped.

    python3 tools/crash_loop.py --broker target/release/warren --cycles 1000 \\
        [--seed S] [--fsync always] [--work DIR] [--port P] [--json OUT] \\
        [--kill-min 0.2] [--kill-max 3.0] [--queues 4] [--segment-size BYTES] [--dump PATH]

Exit status: 0 if nothing confirmed was lost or corrupted (and no transient message survived
a restart, no id was read twice in one pass, the broker always came back); 1 otherwise;
2 on a usage or setup error. warren-dump failures are counted and reported; they fail the
run only with --fail-on-dump.

Needs Python 3.9+ with pika. The work dir (default: a new temp dir) holds data/ (the
broker's), ledger/, broker.log (every broker run's stderr) and dump-*.txt for failed dumps.
"""

import argparse
import atexit
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "crash"))
import workload  # noqa: E402

MARKER = ".crash-loop-workdir"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, path, port, data_dir, fsync, segment_size, extra, log_path):
        self.path = path
        self.port = port
        self.data_dir = data_dir
        self.fsync = fsync
        self.segment_size = segment_size
        self.extra = extra
        self.log_path = log_path
        self.proc = None
        self.log_offset = 0
        self.spawned_at = 0.0
        self.starts = 0

    def start(self):
        assert self.proc is None
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start {self.starts} ===\n".encode())
            log.flush()  # before the child appends to the same file
            self.log_offset = log.tell()
            args = [self.path, "--listen", f"127.0.0.1:{self.port}", "--http", "127.0.0.1:0", "--prometheus", "127.0.0.1:0", "--data-dir", self.data_dir,
                    "--fsync", self.fsync]
            if self.segment_size:
                args += ["--segment-size", str(self.segment_size)]
            args += self.extra
            self.spawned_at = time.monotonic()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)

    def wait_ready(self, timeout=120.0):
        """Seconds from spawn until the port accepts; raises if the broker exits first."""
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return time.monotonic() - self.spawned_at
            except OSError:
                pass
            if time.monotonic() - self.spawned_at > timeout:
                raise RuntimeError(f"broker not accepting after {timeout} s")
            time.sleep(0.002)

    def output(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def signal(self, sig, wait=30.0):
        if self.proc is None:
            return None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            rc = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
        self.proc = None
        return rc

    def kill9(self):
        return self.signal(signal.SIGKILL)


def load_child(port, ledger_dir, seconds, seed, queues, max_size, ready):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        workload.run_load(port, ledger_dir, seconds, seed, queues=queues, ready=ready.set,
                          max_size=max_size)
    finally:
        ready.set()


def parse_recovery(text):
    recovered = None
    problems = []
    for line in text.splitlines():
        if "recovered" in line and "durable queues" in line:
            parts = line.split()
            try:
                i = parts.index("recovered")
                recovered = (int(parts[i + 1]), int(parts[i + 4].rstrip(",")))
            except (ValueError, IndexError):
                pass
        elif "recovery:" in line and (line.startswith("warren: recovery:") or _is_warning(line)):
            problems.append(line)
    return recovered, problems


NORMAL = ("recovered", "accepting AMQP connections", "shutting down")


def _is_warning(line):
    """A warning or error line of the broker (plain `warren: ...` or tracing format)."""
    if "NOT_FOUND - no queue 'crash.q" in line:
        return False  # verify's passive declare of a queue it deleted
    if " WARN " in line or " ERROR " in line:
        return True
    return line.startswith("warren:") and not any(n in line for n in NORMAL)


def broker_warnings(log_path):
    """Every warning/error line the broker printed over the run (recovery included)."""
    out = []
    with open(log_path, "rb") as f:
        for raw in f:
            line = raw.decode(errors="replace").rstrip("\n")
            if _is_warning(line):
                out.append(line)
    return out


def pct(values, p):
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser(description="kill -9 crash campaign for Warren",
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__)
    ap.add_argument("--broker", required=True, help="the warren binary")
    ap.add_argument("--cycles", type=int, required=True)
    ap.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    ap.add_argument("--fsync", default="always")
    ap.add_argument("--work", default=None, help="work dir (default: a new temp dir)")
    ap.add_argument("--port", type=int, default=0, help="0: pick a free port")
    ap.add_argument("--json", default=None, help="write per-cycle records and totals here")
    ap.add_argument("--kill-min", type=float, default=0.2, help="seconds after the load is up")
    ap.add_argument("--kill-max", type=float, default=3.0)
    ap.add_argument("--queues", type=int, default=4)
    ap.add_argument("--segment-size", type=int, default=1 << 20,
                    help="--segment-size for the broker (default 1 MiB: more segment churn; "
                         "0 = the broker's default)")
    ap.add_argument("--max-size", type=int, default=None,
                    help="cap message bodies at this many bytes (a control run; below 65,000 "
                         "it also turns off the oversized first messages)")
    ap.add_argument("--dump", default=None,
                    help="warren-dump binary (default: next to --broker; skipped if absent)")
    ap.add_argument("--broker-arg", action="append", default=[],
                    help="extra broker argument (repeatable)")
    ap.add_argument("--fail-on-dump", action="store_true")
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--no-final", action="store_true", help="skip the graceful-restart check")
    a = ap.parse_args()

    seed = a.seed if a.seed is not None else int(time.time()) % 1_000_000
    broker_path = os.path.abspath(a.broker)
    if not os.access(broker_path, os.X_OK):
        print(f"crash_loop: {broker_path} is not executable", file=sys.stderr)
        return 2
    dump = a.dump or os.path.join(os.path.dirname(broker_path), "warren-dump")
    if not os.access(dump, os.X_OK):
        print(f"crash_loop: no warren-dump at {dump}; dump checks skipped", file=sys.stderr)
        dump = None
    if a.work:
        work = os.path.abspath(a.work)
        os.makedirs(work, exist_ok=True)
        if os.listdir(work) and not os.path.exists(os.path.join(work, MARKER)):
            print(f"crash_loop: {work} is not empty and not a crash_loop work dir", file=sys.stderr)
            return 2
        for sub in ("data", "ledger"):
            shutil.rmtree(os.path.join(work, sub), ignore_errors=True)
        for f in os.listdir(work):
            if f.startswith("dump-") or f == "broker.log":
                os.unlink(os.path.join(work, f))
    else:
        work = tempfile.mkdtemp(prefix="crash-loop-")
    open(os.path.join(work, MARKER), "w").close()
    data_dir = os.path.join(work, "data")
    ledger_dir = os.path.join(work, "ledger")
    port = a.port or free_port()
    broker = Broker(broker_path, port, data_dir, a.fsync, a.segment_size, a.broker_arg,
                    os.path.join(work, "broker.log"))
    ledger = workload.Ledger(ledger_dir)
    ctx = multiprocessing.get_context("fork")
    child = {"p": None}

    def cleanup():
        p = child["p"]
        if p is not None and p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        broker.kill9()

    atexit.register(cleanup)

    def on_signal(signum, _frame):
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print(f"crash_loop: broker {broker_path}, port {port}, fsync {a.fsync}, segment-size "
          f"{a.segment_size or 'default'}, seed {seed}, work {work}, kill at "
          f"{a.kill_min}-{a.kill_max} s", flush=True)
    rng = random.Random(seed)
    totals = dict(cycles=0, published=0, confirmed=0, confirmed_persistent=0, nacked=0,
                  lost=0, corrupted=0, unknown=0, dup_in_pass=0, duplicated=0,
                  transient_survived=0, unconfirmed_present=0, redelivered=0,
                  redelivered_missing=0, count_mismatch=0, recovered_mismatch=0,
                  verify_errors=0, dump_failures=0, recovery_problems=0, load_not_ready=0,
                  broker_failures=0, deleted=0, drained=0, dup_acked_over_1s=0,
                  dup_ack_age_max_s=0.0)
    recovery_times = []
    records = []
    problem_samples = []
    failed = False

    broker.start()
    first = broker.wait_ready()
    print(f"crash_loop: broker up in {first * 1000:.0f} ms", flush=True)

    def restart_and_verify(label, cycle_no, rec):
        nonlocal failed
        broker.start()
        try:
            rt = broker.wait_ready()
        except RuntimeError as e:
            totals["broker_failures"] += 1
            rec["broker_failure"] = str(e)
            print(f"{label}: BROKER DID NOT COME BACK: {e}", flush=True)
            failed = True
            return None
        recovery_times.append(rt)
        rec["recovery_ms"] = round(rt * 1000, 1)
        recovered, problems = parse_recovery(broker.output())
        rec["recovered"] = recovered
        rec["recovery_problems"] = problems
        totals["recovery_problems"] += len(problems)
        for p in problems:
            if len(problem_samples) < 50:
                problem_samples.append(f"{label}: {p}")
        v = workload.verify(port, ledger_dir, seed=seed, ledger=ledger)
        rec["verify"] = v
        # How long before the kill were the acks that did not stick sent?
        times = [t for t in v["details"].pop("dup_ack_times") if t is not None]
        if times and rec.get("killed_at"):
            ages = sorted(rec["killed_at"] - t for t in times)
            rec["dup_ack_age_s"] = {"max": round(ages[-1], 3), "p50": round(pct(ages, 50), 3),
                                    "over_1s": sum(1 for x in ages if x > 1.0)}
            totals["dup_acked_over_1s"] += rec["dup_ack_age_s"]["over_1s"]
            totals["dup_ack_age_max_s"] = max(totals["dup_ack_age_max_s"], ages[-1])
        for k in ("lost", "corrupted", "unknown", "dup_in_pass", "duplicated",
                  "transient_survived", "unconfirmed_present", "redelivered",
                  "redelivered_missing", "count_mismatch", "verify_errors", "deleted", "drained"):
            totals[k] += v[k]
        if recovered and recovered[1] != v["present"]:
            totals["recovered_mismatch"] += 1
        bad = (v["lost"] or v["corrupted"] or v["dup_in_pass"] or v["transient_survived"]
               or v["verify_errors"])
        if bad:
            failed = True
            print(f"{label}: FAILURE {json.dumps(v['details'], sort_keys=True)}", flush=True)
        return v

    try:
        for cycle in range(1, a.cycles + 1):
            t_cycle = time.monotonic()
            rec = {"cycle": cycle}
            n_pub, n_conf = len(ledger.meta), len(ledger.confirmed)
            n_nack = len(ledger.nacked)
            kill_after = rng.uniform(a.kill_min, a.kill_max)
            ready = ctx.Event()
            p = ctx.Process(target=load_child,
                            args=(port, ledger_dir, a.kill_max + 10, seed, a.queues, a.max_size,
                                  ready),
                            daemon=True)
            child["p"] = p
            p.start()
            if not ready.wait(20):
                totals["load_not_ready"] += 1
                rec["load_not_ready"] = True
            t_ready = time.monotonic()
            time.sleep(kill_after)
            broker.kill9()
            t_kill = time.monotonic()
            rec["killed_at"] = time.time()
            # The load notices the broker is gone; it may still be writing its ledger.
            p.join(2)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join(5)
                rec["load_killed"] = True
            child["p"] = None
            t_joined = time.monotonic()
            rec["kill_after"] = round(kill_after, 3)
            if dump:
                d = subprocess.run([dump, data_dir, "--verify"], capture_output=True, timeout=300)
                rec["dump_rc"] = d.returncode
                if d.returncode != 0:
                    totals["dump_failures"] += 1
                    with open(os.path.join(work, f"dump-{cycle}.txt"), "wb") as f:
                        f.write(d.stdout + d.stderr)
            t_dumped = time.monotonic()
            ledger.refresh()
            pub = len(ledger.meta) - n_pub
            conf = len(ledger.confirmed) - n_conf
            rec.update(published=pub, confirmed=conf, nacked=len(ledger.nacked) - n_nack)
            totals["published"] += pub
            totals["confirmed"] += conf
            totals["nacked"] += rec["nacked"]
            v = restart_and_verify(f"cycle {cycle}", cycle, rec)
            t_end = time.monotonic()
            rec["phases"] = {"load_up": round(t_ready - t_cycle, 2),
                             "join": round(t_joined - t_kill, 2),
                             "dump": round(t_dumped - t_joined, 2),
                             "restart_verify": round(t_end - t_dumped, 2)}
            totals["cycles"] += 1
            rec["seconds"] = round(time.monotonic() - t_cycle, 2)
            records.append(rec)
            if v is None:
                break
            rp = rec.get("recovered") or (None, None)
            print(f"cycle {cycle}/{a.cycles} kill@{kill_after:.2f}s pub={pub} conf={conf}"
                  f" dump={rec.get('dump_rc', '-')} recovered={rp[1]} in {rec['recovery_ms']:.0f}ms"
                  f" problems={len(rec['recovery_problems'])} | present={v['present']}"
                  f" expected={v['expected']} lost={v['lost']} corrupt={v['corrupted']}"
                  f" dupacked={v['duplicated']} dup={v['dup_in_pass']}"
                  f" transient={v['transient_survived']} redeliv={v['redelivered']}"
                  f" unflagged={v['redelivered_missing']} | {rec['seconds']:.1f}s", flush=True)
            if failed and a.stop_on_failure:
                break
        if not a.no_final and not (failed and a.stop_on_failure) and broker.proc is not None:
            rec = {"cycle": "final-graceful"}
            rc = broker.signal(signal.SIGINT)
            rec["stop_rc"] = rc
            v = restart_and_verify("final (SIGINT stop, restart)", None, rec)
            records.append(rec)
            if v is not None:
                print(f"final: graceful stop rc={rc}, recovered={rec.get('recovered')} in "
                      f"{rec['recovery_ms']:.0f}ms | present={v['present']} expected={v['expected']}"
                      f" lost={v['lost']} corrupt={v['corrupted']}", flush=True)
        broker.signal(signal.SIGINT)
    finally:
        cleanup()

    # Confirmed persistent messages over the whole run.
    ledger.refresh()
    totals["confirmed_persistent"] = sum(
        1 for m in ledger.confirmed if ledger.meta.get(m, (0, False))[1])
    totals["ledger_bad_lines"] = ledger.bad_lines
    warnings = broker_warnings(broker.log_path)
    totals["broker_warnings"] = len(warnings)
    phased = [r["phases"] for r in records if "phases" in r]
    if phased:
        totals["phase_mean_s"] = {k: round(statistics.mean(p[k] for p in phased), 2)
                                  for k in phased[0]}
    totals["recovery_ms_p50"] = round(pct(recovery_times, 50) * 1000, 1)
    totals["recovery_ms_p99"] = round(pct(recovery_times, 99) * 1000, 1)
    totals["recovery_ms_max"] = round(max(recovery_times, default=0) * 1000, 1)
    if totals["dump_failures"] and a.fail_on_dump:
        failed = True
    if totals["lost"] or totals["corrupted"] or totals["broker_failures"]:
        failed = True
    print("crash_loop: totals " + json.dumps(totals, sort_keys=True))
    print(f"crash_loop: {totals['cycles']} cycles, {totals['confirmed']} confirmed "
          f"({totals['confirmed_persistent']} persistent), lost {totals['lost']}, corrupted "
          f"{totals['corrupted']}, duplicated {totals['duplicated']} (dup in one pass "
          f"{totals['dup_in_pass']}), redelivered {totals['redelivered']}, transient survived "
          f"{totals['transient_survived']}, dump failures {totals['dump_failures']}, recovery "
          f"p50 {totals['recovery_ms_p50']} ms max {totals['recovery_ms_max']} ms")
    for p in problem_samples[:10]:
        print(f"crash_loop: recovery said: {p}")
    for w in [w for w in warnings if "recovery:" not in w][:10]:
        print(f"crash_loop: broker warned: {w}")
    print(f"crash_loop: {'FAIL' if failed else 'PASS'} (work dir {work})", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": {"broker": broker_path, "cycles": a.cycles, "seed": seed,
                                  "fsync": a.fsync, "kill_min": a.kill_min,
                                  "kill_max": a.kill_max, "queues": a.queues,
                                  "max_size": a.max_size,
                                  "segment_size": a.segment_size, "port": port, "work": work},
                       "totals": totals, "recovery_problems": problem_samples,
                       "broker_warnings": warnings[:200],
                       "cycles": records, "pass": not failed}, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
