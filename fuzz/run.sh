#!/usr/bin/env bash
# Runs one fuzz target for a while from its checked-in corpus and adds the run to
# fuzz/ledger.tsv, the running total of executions that fuzz/README.md reports.
#
#   fuzz/run.sh TARGET SECONDS [libFuzzer flags...]
#
# New inputs go to fuzz/corpus/TARGET (minimise with `fuzz/cmin.sh TARGET` before
# committing); crashes to fuzz/artifacts/TARGET/. Runs the binary `cargo fuzz build -O`
# left, so it never starts a build: build first. The broker targets keep their data dirs
# under TMPDIR, /dev/shm here (no disk flushes in the measurement of a parser).
#
# FUZZ_SANITIZER=none runs a build without AddressSanitizer (about ten times the
# executions a second for a parser: ASan's allocator and shadow memory are most of the cost).
# It is allowed only for the targets whose code under test has no `unsafe` of Warren's own
# (ASan finds nothing in safe Rust that the target's own assertions and Rust's bounds
# checks would not), and for `recovery`, whose only `unsafe` of Warren's own is the storage
# crate's access to mapped segment files (file.rs): every pointer into a mapping is checked
# against the mapping's length by an `assert!`, which holds in this build too, and ASan
# keeps no shadow state for file mappings, so it could not see an overrun there anyway.
# The ledger records which build ran.
set -euo pipefail
cd "$(dirname "$0")"
target=$1 seconds=$2
shift 2
sanitizer=${FUZZ_SANITIZER:-address}
without_asan=" frame method field_table content_header definitions policy password_hash stream_frame raft_rpc record recovery queue_machine "
case $sanitizer in
    address)
        bin=target/x86_64-unknown-linux-gnu/release/$target
        build="RUSTC_BOOTSTRAP=1 cargo fuzz build -O" ;;
    none)
        [[ $without_asan == *" $target "* ]] ||
            { echo "$target reaches unsafe code (storage, the broker): run it with ASan" >&2; exit 2; }
        bin=target/nosan/x86_64-unknown-linux-gnu/release/$target
        build="RUSTC_BOOTSTRAP=1 cargo fuzz build -O -s none --target-dir target/nosan $target" ;;
    *) echo "FUZZ_SANITIZER is address or none, not $sanitizer" >&2; exit 2 ;;
esac
[ -x "$bin" ] || { echo "no $bin: run $build" >&2; exit 2; }
mkdir -p "corpus/$target" "artifacts/$target"
log=$(mktemp)
status=0
TMPDIR=${TMPDIR:-/dev/shm} "$bin" "corpus/$target" -max_total_time="$seconds" \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" "$@" > "$log" 2>&1 || status=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
# The last status line carries the coverage: "#N ... cov: E ft: F corp: ..."
cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | awk '{print $2 "\t" $4}')
[ -n "$cov" ] || cov=$(printf '0\t0')
crashes=$([ "$status" -eq 0 ] && echo 0 || echo 1)
commit=$(git rev-parse --short HEAD)
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%F)" "$target" "${runs:-0}" "$seconds" \
    "$cov" "$crashes" "$commit" "$sanitizer" >> ledger.tsv
tail -3 "$log"
echo "$target ($sanitizer): ${runs:-0} executions in $seconds s, exit $status (ledger.tsv)"
rm -f "$log"
exit "$status"
