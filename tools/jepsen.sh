#!/usr/bin/env bash
# The long Jepsen-style run (issue 16): tests/cluster_jepsen.rs with FAULTS faults (1,000
# by default) against three release `warren` processes, then tools/jepsen_check.py on the
# history, which is kept in OUT (default jepsen-<seed>.jsonl in the current directory).
#
#   tools/jepsen.sh [FAULTS] [SEED] [OUT]
#
# About 3 s a fault on a 2-core machine: 1,000 faults take about 50 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
faults=${1:-1000}
seed=${2:-$(date +%s%N)}
out=${3:-jepsen-$seed.jsonl}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
WARREN_JEPSEN_FAULTS=$faults WARREN_JEPSEN_SEED=$seed WARREN_JEPSEN_HISTORY=$out \
    cargo test --release --test cluster cluster_jepsen:: -- --nocapture
python3 tools/jepsen_check.py "$out"
