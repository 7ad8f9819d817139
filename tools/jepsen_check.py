#!/usr/bin/env python3
"""Checks the history of a Jepsen-style run against a Warren cluster (tests/cluster_jepsen.rs).

The history is one JSON object a line (tests/cluster_support/jepsen.rs says what each
holds): publishes with their fate (ok = confirmed, fail = nacked, info = unknown),
deliveries, and the nemesis's faults. What must hold:

- lost = 0: every confirmed message was delivered at least once (the run drains every
  queue before it ends, so a confirmed message never delivered is gone);
- invented = 0: every delivered message was published (a value no publish recorded);
- reordered = 0: RabbitMQ keeps the order of one channel's publishes to a queue, so the
  messages of one publisher connection, as one consumer receives them for the first
  time, come in the order they were published. Redeliveries (of a message that was
  delivered before) are left out: a requeued message goes back ahead of newer ones.

Also counted, as the run's figures: published, confirmed, nacked, unknown (and how many
of those two were delivered anyway), delivered, duplicated (delivered more than once),
and per fault the seconds until a publish made after the fault began was confirmed on
every queue (unavailability).

Usage: jepsen_check.py HISTORY [--json]. Exit status 1 when something above does not
hold, 2 when the history cannot be read.
"""

import json
import sys
from collections import defaultdict


def read(path):
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError as e:
                print(f"{path}:{n}: unreadable record: {e}", file=sys.stderr)
                sys.exit(2)
    return records


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(round(p * (len(sorted_values) - 1))))
    return sorted_values[i]


def order_key(value):
    """(publisher connection, sequence) of a value "P-S-N", or None if malformed."""
    parts = value.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return (parts[0] + "-" + parts[1], int(parts[2]))


def unavailability(records, queues):
    """Per fault: seconds from its start until, on every queue, a publish invoked after
    that start was confirmed. None for a fault no such confirm followed."""
    starts = [r["t"] for r in records if r.get("f") == "fault" and r.get("type") == "start"]
    oks = defaultdict(list)  # queue -> [(invoked, t)]
    for r in records:
        if r.get("f") == "publish" and r.get("type") == "ok":
            oks[r["queue"]].append((r["invoked"], r["t"]))
    for q in oks:
        oks[q].sort()
    out = []
    for start in starts:
        worst = 0.0
        for q in queues:
            after = [t for invoked, t in oks.get(q, []) if invoked >= start]
            if not after:
                worst = None
                break
            worst = max(worst, (min(after) - start) / 1000.0)
        out.append(worst)
    return out


def check(records):
    fate = {}
    queue_of = {}
    for r in records:
        if r.get("f") == "publish":
            fate[r["value"]] = r["type"]
            queue_of[r["value"]] = r["queue"]
    deliveries = defaultdict(int)
    invented = []
    reordered = []
    seen = set()
    last = {}  # (consumer, queue, publisher connection) -> last sequence first-delivered
    for r in records:
        if r.get("f") != "deliver":
            continue
        v = r["value"]
        if v not in fate or queue_of[v] != r["queue"]:
            invented.append(v)
            continue
        deliveries[v] += 1
        if v in seen:
            continue
        seen.add(v)
        key = order_key(v)
        if key is None:
            invented.append(v)
            continue
        stream = (r["consumer"], r["queue"], key[0])
        if stream in last and key[1] < last[stream]:
            reordered.append({"value": v, "after": f"{key[0]}-{last[stream]}", "consumer": r["consumer"]})
        last[stream] = max(key[1], last.get(stream, key[1]))
    confirmed = [v for v, f in fate.items() if f == "ok"]
    lost = sorted(v for v in confirmed if v not in deliveries)
    queues = sorted({r["queue"] for r in records if r.get("f") == "publish"})
    unavailable = unavailability(records, queues)
    measured = sorted(u for u in unavailable if u is not None)
    faults = [r for r in records if r.get("f") == "fault" and r.get("type") == "start"]
    kinds = defaultdict(int)
    for f in faults:
        kinds[f["fault"]] += 1
    summary = {
        "published": len(fate),
        "confirmed": len(confirmed),
        "nacked": sum(1 for f in fate.values() if f == "fail"),
        "unknown": sum(1 for f in fate.values() if f == "info"),
        "nacked_delivered": sum(1 for v, f in fate.items() if f == "fail" and v in deliveries),
        "unknown_delivered": sum(1 for v, f in fate.items() if f == "info" and v in deliveries),
        "delivered": sum(deliveries.values()),
        "delivered_distinct": len(deliveries),
        "duplicated": sum(1 for n in deliveries.values() if n > 1),
        "lost": len(lost),
        "invented": len(invented),
        "reordered": len(reordered),
        "faults": len(faults),
        "faults_by_kind": dict(sorted(kinds.items())),
        "unavailable_s": {
            "mean": round(sum(measured) / len(measured), 3) if measured else None,
            "p50": percentile(measured, 0.5),
            "p95": percentile(measured, 0.95),
            "max": measured[-1] if measured else None,
            "never_recovered": sum(1 for u in unavailable if u is None),
        },
        "lost_values": lost[:20],
        "invented_values": invented[:20],
        "reordered_values": reordered[:20],
    }
    valid = not lost and not invented and not reordered
    return valid, summary


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print("usage: jepsen_check.py HISTORY [--json]", file=sys.stderr)
        sys.exit(2)
    valid, summary = check(read(args[0]))
    if "--json" in sys.argv:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:>20}: {v}")
        print("valid" if valid else "INVALID")
    sys.exit(0 if valid else 1)


if __name__ == "__main__":
    main()
