#!/usr/bin/env bash
# Side-by-side benchmark of RabbitMQ and Warren on this machine; writes BENCHMARKS.md's
# comparison table and docs/compare.svg. See tools/compare.py for the scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v rabbitmq-server >/dev/null; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server
fi
# The Debian package starts a node of its own where it can; ours uses its own port and dir.
# 1,000-connection scenarios need more descriptors than the usual 1024 (both sides).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --workspace --bins
exec python3 tools/compare.py "$@"
