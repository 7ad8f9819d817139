#!/usr/bin/env python3
"""Runs the feature test modules (test_*.py in this directory) against the broker on
$WARREN_PORT (default 5672) and prints a summary line per feature: `feature: passed/total`.

Usage: run_all.py [-v] [--port N] [--timeout S] [feature ...]
  feature: ttl | test_ttl | test_ttl.py  (default: all of them)
  -v: print every module's unittest output (otherwise only that of failing modules)
Exit status: 0 if every test passed, 1 otherwise.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def module_names(wanted):
    all_mods = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "test_*.py")))
    if not wanted:
        return all_mods
    out = []
    for w in wanted:
        w = os.path.basename(w)
        if w.endswith(".py"):
            w = w[:-3]
        if not w.startswith("test_"):
            w = "test_" + w
        if w not in all_mods:
            sys.exit("unknown feature %r (have: %s)" % (w, ", ".join(m[5:] for m in all_mods)))
        out.append(w)
    return out


def run_module(mod, env, timeout):
    """Returns (passed, total, output, seconds)."""
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, "-m", "unittest", "-v", mod], cwd=HERE, env=env,
                              capture_output=True, text=True, timeout=timeout)
        out = proc.stdout + proc.stderr
        rc = proc.returncode
    except subprocess.TimeoutExpired as e:
        out = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")) + \
              ((e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")) + \
              "\n*** TIMEOUT after %ss ***\n" % timeout
        rc = -1
    secs = time.time() - t0
    m = re.search(r"^Ran (\d+) tests? in", out, re.M)
    total = int(m.group(1)) if m else 0
    # Count the per-test verdict lines of `unittest -v`.
    bad = len(re.findall(r"\.\.\. (?:FAIL|ERROR|unexpected success)\s*$", out, re.M))
    # A test that errored in setUp/tearDown or a crashed module: fall back on the summary.
    fm = re.search(r"^FAILED \((.*)\)", out, re.M)
    if fm:
        n = sum(int(x) for k, x in re.findall(r"(failures|errors|unexpected successes)=(\d+)", fm.group(1)))
        bad = max(bad, n)
    if rc != 0 and bad == 0:
        bad = max(1, total)  # e.g. import error or timeout
        total = max(total, bad)
    return total - bad, total, out, secs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("features", nargs="*")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--port", type=int, help="overrides $WARREN_PORT")
    ap.add_argument("--timeout", type=float, default=180, help="per-module timeout in seconds")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.port:
        env["WARREN_PORT"] = str(args.port)
    port = env.get("WARREN_PORT", "5672")
    mods = module_names(args.features)
    print("feature tests against 127.0.0.1:%s" % port)
    results = []
    for mod in mods:
        passed, total, out, secs = run_module(mod, env, args.timeout)
        results.append((mod, passed, total))
        if args.verbose or passed != total:
            print(out)
        print("%s: %d/%d  (%.1fs)" % (mod[5:], passed, total, secs), flush=True)
    tp = sum(r[1] for r in results)
    tt = sum(r[2] for r in results)
    print("TOTAL: %d/%d" % (tp, tt))
    failing = [r[0][5:] for r in results if r[1] != r[2]]
    if failing:
        print("FAILING: " + ", ".join(failing))
    return 0 if (tp == tt and tt > 0) else 1


if __name__ == "__main__":
    sys.exit(main())
