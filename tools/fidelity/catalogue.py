#!/usr/bin/env python3
"""Generates the scenario catalogue: tests/fidelity/scenarios/<group>.json.

  tools/fidelity/catalogue.py            # rewrite every group file
  tools/fidelity/catalogue.py --check    # fail if the files are not what would be written

The scenarios themselves are built in groups_*.py (one module per family of groups);
this file only checks them (unique names, group prefix, steps well-formed) and writes them,
one scenario per line so a regenerated catalogue diffs readably. The goldens are keyed by
scenario name: after changing a scenario, re-record it (record.py --only NAME).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import groups_arguments  # noqa: E402
import groups_channel  # noqa: E402
import groups_messages  # noqa: E402
import groups_quorum  # noqa: E402
import groups_tables  # noqa: E402
import groups_wire  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests/fidelity/scenarios")

GROUPS = {
    "frame": groups_wire.frame_group,
    "handshake": groups_wire.handshake_group,
    "channel0": groups_wire.channel0_group,
    "channel-state": groups_channel.channel_state_group,
    "server-methods": groups_channel.server_methods_group,
    "tables": groups_tables.tables_group,
    "arguments": groups_arguments.arguments_group,
    "content": groups_messages.content_group,
    "basic": groups_messages.basic_group,
    "quorum": groups_quorum.quorum_group,
}


def build():
    """{group: [scenario json]}, checked."""
    seen = set()
    out = {}
    for group, make in GROUPS.items():
        scenarios = [s.json() for s in make()]
        for s in scenarios:
            name = s["name"]
            assert name.split("/")[0] == group, f"{name} is not in group {group}"
            assert name not in seen, f"duplicate scenario name {name}"
            assert s["doc"], name
            assert s["steps"] and "await" in s["steps"][-1], f"{name} must end with an await"
            seen.add(name)
        out[group] = scenarios
    return out


def render(scenarios):
    return "[\n" + ",\n".join(json.dumps(s) for s in scenarios) + "\n]\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk")
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    groups = build()
    stale = []
    os.makedirs(a.out, exist_ok=True)
    for group, scenarios in groups.items():
        path = os.path.join(a.out, f"{group}.json")
        text = render(scenarios)
        if a.check:
            if not os.path.exists(path) or open(path).read() != text:
                stale.append(path)
            continue
        with open(path, "w") as f:
            f.write(text)
    for group, scenarios in groups.items():
        print(f"{group:16} {len(scenarios):4}")
    print(f"{'total':16} {sum(len(s) for s in groups.values()):4}")
    if stale:
        sys.exit("out of date (re-run tools/fidelity/catalogue.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
