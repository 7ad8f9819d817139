#!/usr/bin/env python3
"""Compares two directories of recorded outcomes (e.g. the goldens and a recording of
Warren made with record.py --url ... --out DIR), for humans.

The normalisation is in the spirit of tests/fidelity/README.md, not identical to the Rust
one (tests/fidelity/normalise.rs), which is what decides: heartbeats are dropped, a method
becomes "ch class.method" plus the fields that carry meaning (reply codes and the failing
class/method of a close, flags, counts), headers their class and body size, bodies their
size. The awaits are flattened, since timing may move a frame from one await to the next.

  tools/fidelity/diff.py tests/fidelity/golden /tmp/fidelity-warren [--only PATTERN] [-v]
"""
import argparse
import collections
import fnmatch
import glob
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pika.spec  # noqa: E402

import wire  # noqa: E402

NAMES = {10: "connection", 20: "channel", 30: "access", 40: "exchange", 50: "queue",
         60: "basic", 85: "confirm", 90: "tx"}

# For these methods, the fields compared besides the method itself.
FIELDS = {
    "Connection.Start": ("version_major", "version_minor", "mechanisms", "locales"),
    "Connection.Tune": ("channel_max", "frame_max", "heartbeat"),
    "Connection.Close": ("reply_code", "class_id", "method_id"),
    "Channel.Close": ("reply_code", "class_id", "method_id"),
    "Channel.Flow": ("active",), "Channel.FlowOk": ("active",),
    "Queue.DeclareOk": ("message_count", "consumer_count"),
    "Queue.PurgeOk": ("message_count",), "Queue.DeleteOk": ("message_count",),
    "Basic.Cancel": ("nowait",),
    "Basic.Deliver": ("delivery_tag", "redelivered"),
    "Basic.GetOk": ("delivery_tag", "redelivered", "message_count"),
    "Basic.Return": ("reply_code",),
    "Basic.Ack": ("delivery_tag", "multiple"), "Basic.Nack": ("delivery_tag", "multiple"),
}


def method_name(cls, meth):
    m = pika.spec.methods.get((cls << 16) | meth)
    if m is None:
        return f"{NAMES.get(cls, cls)}.{meth}", None
    kebab = re.sub(r"(?<!^)([A-Z])", r"-\1", m.NAME.split(".")[1]).lower()
    return f"{m.NAME.split('.')[0].lower()}.{kebab}", m


def describe(entry):
    """The normalised form of one recorded entry (None for a heartbeat)."""
    if entry.startswith("raw:"):
        return entry
    ftype, ch, payload = wire.parse_frame(bytes.fromhex(entry))
    if ftype == wire.HEARTBEAT:
        return None
    if ftype == wire.HEADER and len(payload) >= 12:
        cls, _, size = struct.unpack_from(">HHQ", payload)
        return f"{ch} header {cls} size={size}"
    if ftype == wire.BODY:
        return f"{ch} body {len(payload)}"
    if ftype != wire.METHOD or len(payload) < 4:
        return f"{ch} frame-type-{ftype} {len(payload)}"
    cls, meth = struct.unpack_from(">HH", payload)
    name, m = method_name(cls, meth)
    fields = FIELDS.get(m.NAME, ()) if m else ()
    if not fields:
        return f"{ch} {name}"
    try:
        obj = m()
        obj.decode(payload, 4)
    except Exception:  # noqa: BLE001 - an undecodable answer is itself the finding
        return f"{ch} {name} (undecodable)"
    vals = []
    for f in fields:
        v = getattr(obj, f)
        v = v.decode() if isinstance(v, bytes) else str(v)
        if f in ("mechanisms", "locales"):  # a set: the order carries no meaning
            v = ",".join(sorted(v.split()))
        vals.append(v)
    return f"{ch} {name} " + " ".join(vals)


def normalise(outcome):
    flat = [d for a in outcome["awaits"] for e in a if (d := describe(e)) is not None]
    probe = None if outcome["probe"] is None else \
        [d for e in outcome["probe"] if (d := describe(e)) is not None]
    return {"frames": flat, "closed": outcome["closed"], "probe": probe,
            "healthy": outcome["healthy"]}


def runs(frames):
    """Consecutive repeats folded ("0 connection.close 501 0 0 x812"), for printing."""
    if frames is None:
        return None
    out = []
    for f in frames:
        if out and out[-1][0] == f:
            out[-1][1] += 1
        else:
            out.append([f, 1])
    return [f if n == 1 else f"{f} x{n}" for f, n in out]


def show(n):
    return (f"frames={runs(n['frames'])} closed={n['closed']} probe={runs(n['probe'])} "
            f"healthy={n['healthy']}")


def load(d):
    out = {}
    for path in sorted(glob.glob(os.path.join(d, "*.json"))):
        with open(path) as f:
            out.update(json.load(f)["scenarios"])
    return out


CLOSE = re.compile(r"^\d+ (connection|channel)\.close ")


def category(a, b):
    """(kind, label) of the first difference. The label drops channel numbers so that many
    scenarios share it; the kind is a coarser reading of it for the summary."""
    strip = lambda s: re.sub(r"^\d+ ", "", s) if s else "(nothing)"
    if a["frames"] != b["frames"]:
        i = next((i for i, (x, y) in enumerate(zip(a["frames"], b["frames"])) if x != y),
                 min(len(a["frames"]), len(b["frames"])))
        x = a["frames"][i] if i < len(a["frames"]) else None
        y = b["frames"][i] if i < len(b["frames"]) else None
        label = f"frames: {strip(x)}  =>  {strip(y)}"
        xc, yc = bool(x and CLOSE.match(x)), bool(y and CLOSE.match(y))
        if xc and yc:
            kind = "both refuse, with another code / class / method / scope"
        elif xc:
            kind = ("RabbitMQ refuses, Warren stays silent" if y is None
                    else "RabbitMQ refuses, Warren answers as if fine")
        elif yc:
            kind = ("Warren refuses where RabbitMQ is silent" + (" (RabbitMQ drops the socket)"
                                                                 if a["closed"] else "")
                    if x is None else "Warren refuses where RabbitMQ answers")
        elif x is None or y is None:
            kind = "one side sends more frames (not closes)"
        else:
            kind = "different answer"
        return kind, label
    for k in ("closed", "probe", "healthy"):
        if a[k] != b[k]:
            return f"same frames, {k} differs", f"{k}: {a[k]} => {b[k]}"
    return "?", "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("-v", "--verbose", action="store_true", help="print both sides of each")
    a = ap.parse_args()
    exp, act = load(a.expected), load(a.actual)
    names = sorted(n for n in exp if not a.only or any(fnmatch.fnmatch(n, p) for p in a.only))
    per_group = collections.Counter()
    totals = collections.Counter()
    kinds = collections.defaultdict(lambda: collections.defaultdict(list))
    missing = []
    for n in names:
        group = n.split("/")[0]
        totals[group] += 1
        if n not in act:
            missing.append(n)
            continue
        x, y = normalise(exp[n]), normalise(act[n])
        if x != y:
            per_group[group] += 1
            kind, label = category(x, y)
            kinds[kind][label].append(n)
            if a.verbose:
                print(f"== {n}\n  expected: {show(x)}\n  actual:   {show(y)}")
    print(f"{sum(per_group.values())} of {len(names)} scenarios differ"
          + (f" ({len(missing)} missing from {a.actual})" if missing else ""))
    print("\nper group (differing / total):")
    for g in sorted(totals):
        print(f"  {g:16} {per_group[g]:4} / {totals[g]}")
    size = lambda labels: sum(len(v) for v in labels.values())
    ordered = sorted(kinds.items(), key=lambda kv: -size(kv[1]))
    print("\nby kind of first difference (expected => actual):")
    for kind, labels in ordered:
        print(f"\n{size(labels):4}  {kind}")
        for label, ns in sorted(labels.items(), key=lambda kv: -len(kv[1]))[:8]:
            print(f"      {len(ns):3}  {label}   e.g. {ns[0]}")
    print("\n\nevery differing scenario, by first difference:")
    for kind, labels in ordered:
        print(f"\n## {kind}")
        for label, ns in sorted(labels.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            print(f"\n[{len(ns)}] {label}")
            for n in ns:
                print(f"    {n}")


if __name__ == "__main__":
    main()
