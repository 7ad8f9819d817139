#!/usr/bin/env python3
"""What a fuzz target's corpus reaches of the code it is aimed at, in source lines.

    python3 fuzz/coverage.py TARGET            # the target's own scope (SCOPES below)
    python3 fuzz/coverage.py TARGET PATH...    # or these files / directories

Runs `cargo fuzz coverage -O TARGET fuzz/corpus/TARGET` (a build with
-Cinstrument-coverage, then every corpus input once), then `llvm-cov report` over the
scope: lines and functions covered, and the functions never executed, as fuzz/README.md
lists them. Needs the toolchain's llvm-tools (`rustup component add llvm-tools`) and
llvm-cxxfilt (Debian: llvm) to demangle. Run from the repository root; the coverage
build goes to target/x86_64-unknown-linux-gnu/coverage/.
"""
import glob
import os
import re
import subprocess
import sys

# The code each target is aimed at (repository paths; a directory means every file in it).
SCOPES = {
    "frame": ["src/protocol/frame.rs"],
    "method": ["src/protocol/method/mod.rs", "src/protocol/wire.rs"],
    "field_table": ["src/protocol/table.rs"],
    "content_header": ["src/protocol/properties.rs"],
    "connection": ["src/connection/"],
    "connection_model": ["src/connection/", "src/broker/dispatch.rs", "src/broker/declare.rs",
                         "src/broker/publish.rs", "src/broker/channel.rs"],
    "record": ["crates/warren-storage/src/record.rs", "crates/warren-storage/src/segment.rs"],
    "recovery": ["crates/warren-storage/src/recovery.rs", "crates/warren-storage/src/log.rs",
                 "crates/warren-storage/src/acks.rs"],
    "definitions": ["src/broker/definitions.rs"],
    "definitions_json": ["src/broker/definitions_import.rs", "src/broker/json_args.rs"],
    "policy": ["src/broker/policy.rs"],
    "password_hash": ["src/broker/password.rs"],
    "http_request": ["src/http/"],
    "stream_frame": ["src/stream_protocol/frame.rs", "src/stream_protocol/command.rs",
                     "src/stream_protocol/decode.rs", "src/stream_protocol/chunk.rs"],
    "stream_session": ["src/stream_protocol/session/"],
}

TRIPLE = "x86_64-unknown-linux-gnu"


def llvm_cov():
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True,
                             text=True, check=True).stdout.strip()
    found = glob.glob(os.path.join(sysroot, "lib/rustlib/*/bin/llvm-cov"))
    if not found:
        sys.exit("no llvm-cov in the toolchain: rustup component add llvm-tools")
    return found[0]


def files_in(scopes):
    out = []
    for s in scopes:
        if s.endswith("/"):
            out += sorted(glob.glob(os.path.join(s, "**", "*.rs"), recursive=True))
        else:
            out.append(s)
    return [os.path.abspath(f) for f in out if os.path.exists(f)]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    target = sys.argv[1]
    scopes = sys.argv[2:] or SCOPES.get(target) or sys.exit(f"no scope for {target}")
    env = dict(os.environ, RUSTC_BOOTSTRAP="1", TMPDIR=os.environ.get("TMPDIR", "/dev/shm"))
    run = subprocess.run(["cargo", "fuzz", "coverage", "-O", target, f"fuzz/corpus/{target}"],
                         env=env, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"cargo fuzz coverage failed:\n{run.stderr[-3000:]}")
    binary = f"target/{TRIPLE}/coverage/{TRIPLE}/release/{target}"
    profile = f"fuzz/coverage/{target}/coverage.profdata"
    # The fuzz drivers themselves (fuzz.rs, fuzz_model/) are not what a target is aimed at.
    files = [f for f in files_in(scopes) if "fuzz" not in os.path.relpath(f)]
    cov = [llvm_cov(), "report", "-Xdemangler=llvm-cxxfilt", binary, f"-instr-profile={profile}"]
    summary = subprocess.run([*cov, *files], capture_output=True, text=True, check=True).stdout
    # TOTAL, then Regions Miss Cover, Functions Miss Executed, Lines Miss Cover, Branches...
    total = next(line.split() for line in summary.splitlines() if line.startswith("TOTAL"))
    lines_total, lines_missed = int(total[7]), int(total[8])
    report = subprocess.run([*cov, "--show-functions", *files], capture_output=True, text=True,
                            check=True).stdout
    executed = {}
    current = None
    for line in report.splitlines():
        if line.startswith("File '"):
            current = os.path.relpath(line[6:line.rindex("'")])
            continue
        # Name, then Regions Miss Cover, Lines Miss Cover, Branches Miss Cover.
        parts = line.split()
        if current is None or len(parts) < 10 or not parts[-6].isdigit() or parts[0] == "TOTAL":
            continue
        lines, missed = int(parts[-6]), int(parts[-5])
        # Generic functions are listed once per instantiation: one run of any counts.
        key = (current, short(" ".join(parts[:-9])))
        was = executed.get(key, (False, 0))
        executed[key] = (was[0] or missed < lines, max(was[1], lines))
    unreached = sorted(((n, path, name) for (path, name), (ran, n) in executed.items() if not ran),
                       reverse=True)
    covered = lines_total - lines_missed
    print(f"{target}: {covered}/{lines_total} lines ({100 * covered / max(lines_total, 1):.0f} %), "
          f"{len(executed) - len(unreached)}/{len(executed)} functions executed, "
          f"in {' '.join(scopes)}")
    for lines, path, name in unreached[:12]:
        print(f"  never executed ({lines} lines): {name}  ({path})")


def short(name):
    """A demangled Rust path without generic arguments and the crate prefix."""
    while True:
        shorter = re.sub(r"<[^<>]*>", "", name)
        if shorter == name:
            break
        name = shorter
    return name.replace("warren_storage::", "").replace("warren::", "").lstrip(":")


if __name__ == "__main__":
    main()
