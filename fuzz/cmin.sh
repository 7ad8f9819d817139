#!/usr/bin/env bash
# Minimises fuzz/corpus/TARGET in place: keeps the smallest set of inputs that reaches the
# same coverage (libFuzzer's -merge=1, which `cargo fuzz cmin` runs), so the corpus in the
# repository stays small and each run starts where the last one ended.
#
#   fuzz/cmin.sh TARGET
#
# Runs the binary `cargo fuzz build -O` left (no build here); with FUZZ_SANITIZER=none,
# the build without AddressSanitizer that `run.sh` runs then (merged by that build's coverage).
set -euo pipefail
cd "$(dirname "$0")"
target=$1
case ${FUZZ_SANITIZER:-address} in
    none) bin=target/nosan/x86_64-unknown-linux-gnu/release/$target ;;
    *) bin=target/x86_64-unknown-linux-gnu/release/$target ;;
esac
[ -x "$bin" ] || { echo "no $bin: build it as run.sh says" >&2; exit 2; }
before=$(ls "corpus/$target" | wc -l)
kept=$(mktemp -d)
# Seeds with names (recorded sessions, which tests look up by name) always stay; the
# fuzzer's finds (named by their SHA-1) stay only if they add coverage to them.
find "corpus/$target" -maxdepth 1 -type f -regextype posix-extended ! -regex '.*/[0-9a-f]{40}' -exec cp {} "$kept/" \;
TMPDIR=${TMPDIR:-/dev/shm} "$bin" -merge=1 "$kept" "corpus/$target" > "$kept.log" 2>&1 \
    || { tail -20 "$kept.log"; exit 1; }
rm -rf "corpus/$target"
mv "$kept" "corpus/$target"
chmod 755 "corpus/$target"
rm -f "$kept.log"
echo "$target: $before inputs -> $(ls "corpus/$target" | wc -l)"
