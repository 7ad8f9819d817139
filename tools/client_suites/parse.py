#!/usr/bin/env python3
"""Turn a test runner's output into `results.tsv` lines: NAME<TAB>passed|failed|skipped.

  parse.py junit FILE.xml        pytest --junitxml
  parse.py tap FILE              node --test-reporter=tap
  parse.py gojson FILE           go test -json (top-level tests only)
  parse.py libtest FILE          cargo test output ("Running ..." + "test X ... ok|FAILED|ignored")
  parse.py report ROOT LABEL [LABEL2]   table of ROOT/results/LABEL*/SUITE/run*/results.tsv

A test's outcome is written once per name; if a name occurs twice in one run (node's junit
reporter repeats nothing, but go's -json can repeat a name across packages) the worse outcome wins.
"""
import collections
import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

RANK = {"passed": 0, "skipped": 1, "failed": 2}


def emit(results):
    for name in sorted(results):
        print(f"{name}\t{results[name]}")


def put(results, name, status):
    name = re.sub(r"\s+", " ", name).strip()
    old = results.get(name)
    if old is None or RANK[status] > RANK[old]:
        results[name] = status


def junit(path):
    """pytest: testcase classname=module.Class; node: nested testsuite per describe(), classname="test"."""
    results = {}
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, FileNotFoundError) as e:
        print(f"# junit file unreadable: {e}", file=sys.stderr)
        return results

    def walk(el, prefix):
        for child in el:
            if child.tag not in ("testcase", "testsuites", "properties", "property", "failure", "error",
                                 "skipped", "system-out", "system-err"):
                # a suite; node 20's junit reporter writes some describe() blocks as <undefined name=..>
                name = child.get("name", "")
                walk(child, prefix + [name] if name and name != "pytest" else prefix)
            elif child.tag == "testsuites":
                walk(child, prefix)
            elif child.tag == "testcase":
                cls, name = child.get("classname", ""), child.get("name", "?")
                full = " > ".join(prefix + [name]) if cls in ("", "test") else f"{cls}::{name}"
                if child.find("failure") is not None or child.find("error") is not None or child.get("failure"):
                    status = "failed"
                elif child.find("skipped") is not None:
                    status = "skipped"
                else:
                    status = "passed"
                put(results, full, status)

    wrapper = ET.Element("testsuites")
    wrapper.append(root)
    walk(wrapper, [])
    return results


def tap(path):
    """node --test-reporter=tap: nested '# Subtest: NAME' / 'ok N - NAME' blocks; leaves are tests."""
    results = {}
    stack = []  # [indent, name, has_children]
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^( *)# Subtest: (.*)$", line)
            if m:
                ind = len(m.group(1))
                while stack and stack[-1][0] >= ind:
                    stack.pop()
                if stack:
                    stack[-1][2] = True
                stack.append([ind, m.group(2).strip(), False])
                continue
            m = re.match(r"^( *)(ok|not ok) \d+ - (.*?)(?: # (SKIP|TODO).*)?$", line)
            if m:
                ind = len(m.group(1))
                while stack and stack[-1][0] > ind:
                    stack.pop()
                if not stack or stack[-1][0] != ind:
                    continue
                _, name, has_children = stack.pop()
                if has_children:
                    continue
                full = " > ".join([e[1] for e in stack] + [name])
                status = "skipped" if m.group(4) else ("passed" if m.group(2) == "ok" else "failed")
                put(results, full, status)
    return results


def gojson(path):
    results = {}
    with open(path, errors="replace") as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            test, action = ev.get("Test"), ev.get("Action")
            if not test or "/" in test:
                continue
            if action in ("pass", "fail", "skip"):
                put(results, test, {"pass": "passed", "fail": "failed", "skip": "skipped"}[action])
    return results


def libtest(path):
    """cargo test: 'Running tests/x.rs (...)' then 'test NAME [- should panic] ... ok|FAILED|ignored'.
    Tests are named TARGET::NAME with TARGET the source path (src/lib.rs, tests/x.rs, examples/x.rs)."""
    results = {}
    target = "?"
    started = {}
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    with open(path, errors="replace") as f:
        for line in f:
            line = ansi.sub("", line)
            m = re.match(r"\s*Running (?:unittests )?(\S+)", line)
            if m:
                target = m.group(1)
                continue
            m = re.search(r"(?:^|\s)test (\S+)(?: - should panic)? \.\.\. (ok|FAILED|ignored)", line)
            if m:
                name = f"{target}::{m.group(1)}"
                put(results, name, {"ok": "passed", "FAILED": "failed", "ignored": "skipped"}[m.group(2)])
                started.pop(name, None)
                continue
            m = re.search(r"(?:^|\s)test (\S+) has been running for over", line)
            if m:
                started[f"{target}::{m.group(1)}"] = True
    for name in started:  # still running when the suite's time limit killed it
        if name not in results:
            put(results, name, "failed")
    return results


def load_runs(root, label, suite):
    runs = []
    for d in sorted(glob.glob(os.path.join(root, "results", label, suite, "run*")),
                    key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0)):
        f = os.path.join(d, "results.tsv")
        if not os.path.exists(f):
            continue
        res = {}
        with open(f) as fh:
            for line in fh:
                if "\t" in line:
                    name, status = line.rstrip("\n").rsplit("\t", 1)
                    res[name] = status
        runs.append(res)
    return runs


def summary(runs):
    names = set().union(*runs) if runs else set()
    per_run = [sum(1 for s in r.values() if s == "passed") for r in runs]
    failed = [sum(1 for s in r.values() if s == "failed") for r in runs]
    always = sum(1 for n in names if all(r.get(n) == "passed" for r in runs))
    skipped = sum(1 for n in names if all(r.get(n) == "skipped" for r in runs))
    return names, per_run, failed, always, skipped


def report(root, labels):
    suites = []
    versions = {}
    vfile = os.path.join(root, "versions.tsv")
    if os.path.exists(vfile):
        for line in open(vfile):
            s, v = line.rstrip("\n").split("\t")[:2]
            versions[s] = v
    for label in labels:
        for d in sorted(glob.glob(os.path.join(root, "results", label, "*"))):
            s = os.path.basename(d)
            if s not in suites:
                suites.append(s)
    order = ["pika", "py-amqp", "kombu", "amqp091-go", "amqplib", "lapin", "amqprs"]
    suites.sort(key=lambda s: (order.index(s) if s in order else 99, s))
    head = ["suite", "version", "tests (skipped everywhere)"]
    for l in labels:
        head += [f"{l}: passed in every run", f"{l}: passed / failed per run"]
    rows = []
    data = {}
    for s in suites:
        allnames, skipped_all = set(), None
        cells = []
        for l in labels:
            runs = load_runs(root, l, s)
            names, per_run, failed, always, _ = summary(runs)
            allnames |= names
            data[(l, s)] = runs
            sk = {n for n in names if all(r.get(n) == "skipped" for r in runs)}
            skipped_all = sk if skipped_all is None else skipped_all & sk
            cells += [str(always), ", ".join(f"{p}/{f}" for p, f in zip(per_run, failed)) or "no runs"]
        rows.append([s, versions.get(s, "?"), f"{len(allnames)} ({len(skipped_all or ())})"] + cells)
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(fmt(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(fmt(r))
    for l in labels:
        print(f"\nNot passed on {l} (in how many runs; per-run outcome):")
        any_ = False
        for s in suites:
            runs = data[(l, s)]
            for n in sorted(set().union(*runs) if runs else []):
                st = [r.get(n, "missing") for r in runs]
                bad = sum(1 for x in st if x in ("failed", "missing"))
                if bad:
                    any_ = True
                    print(f"  {s}: {n}  -- {bad}/{len(st)} ({', '.join(st)})")
        if not any_:
            print("  (none)")
    if len(labels) == 2:
        a, b = labels
        print(f"\nPassed on {a} in every run but not on {b} in at least one run:")
        any_ = False
        for s in suites:
            ra, rb = data[(a, s)], data[(b, s)]
            if not ra:
                continue
            for n in sorted(set().union(*ra)):
                if all(r.get(n) == "passed" for r in ra):
                    st = [r.get(n, "missing") for r in rb]
                    bad = sum(1 for x in st if x != "passed")
                    if bad:
                        any_ = True
                        print(f"  {s}: {n}  -- {bad}/{len(st)} {b} runs")
        if not any_:
            print("  (none)")


def main():
    kind = sys.argv[1]
    if kind == "report":
        report(sys.argv[2], sys.argv[3:])
        return
    emit({"tap": tap, "junit": junit, "gojson": gojson, "libtest": libtest}[kind](sys.argv[2]))


if __name__ == "__main__":
    main()
