#!/usr/bin/env python3
"""The running totals of fuzz/ledger.tsv as the Markdown table fuzz/README.md shows.

    python3 fuzz/totals.py

One row per target: executions over every recorded run, how many of them ran without
AddressSanitizer (`FUZZ_SANITIZER=none fuzz/run.sh`; rows without the column ran with it),
how many runs, wall seconds, the date of the last run, and the coverage (libFuzzer's edges /
features) its last run ended with. fuzz/run.sh appends a line per run; the CI smoke runs are
not recorded.
"""
import csv
import os

GOAL = 10**8


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ledger.tsv")
    rows = {}
    with open(path) as f:
        for r in csv.reader(f, delimiter="\t"):
            if not r or r[0].startswith("#"):
                continue
            date, target, execs, secs, edges, features, crashes, _commit = r[:8]
            sanitizer = r[8] if len(r) > 8 else "address"
            t = rows.setdefault(target, dict(execs=0, plain=0, runs=0, secs=0, crashes=0))
            t["execs"] += int(execs)
            if sanitizer == "none":
                t["plain"] += int(execs)
            t["runs"] += 1
            t["secs"] += int(secs)
            t["crashes"] += int(crashes)
            t["last"] = date
            if int(edges):
                t["cov"] = f"{int(edges):,} / {int(features):,}"
    print("| target | executions in total | of them without ASan | runs | seconds | last run | "
          "edges / features (last run) | 10^8 |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for target in sorted(rows):
        t = rows[target]
        print(f"| {target} | {human(t['execs'])} | {human(t['plain'])} | {t['runs']} | {t['secs']:,} | {t['last']} | "
              f"{t.get('cov', 'not recorded')} | {'reached' if t['execs'] >= GOAL else 'not yet'} |")


def human(n):
    if n >= 10**6:
        return f"{n / 10**6:,.1f} M"
    if n >= 10**3:
        return f"{n / 10**3:,.0f} k"
    return str(n)


if __name__ == "__main__":
    main()
