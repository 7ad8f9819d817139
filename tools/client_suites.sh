#!/usr/bin/env bash
# Run AMQP client libraries' own integration/acceptance test suites against a broker.
#
#   tools/client_suites.sh fetch [SUITE...]
#       Download the pinned suites into $CS_ROOT (default /work/client-suites) and prepare them
#       (Python venv, npm dev deps, Go from Debian, cargo test builds).
#   tools/client_suites.sh run --port PORT --label LABEL [--host HOST] [--runs N]
#                              [--broker rabbitmq|warren] [SUITE...]
#       Run each suite N times (default 3) against amqp://guest:guest@HOST:PORT/ (HOST default
#       127.0.0.1); results go to $CS_ROOT/results/LABEL/SUITE/runK/{output.log,results.tsv}.
#       A previous LABEL/SUITE is replaced. With --broker, a fresh broker is started on PORT
#       for every single run and stopped after it (its log kept as runK/broker.log), so runs do
#       not see each other's queues; `warren` runs $WARREN_BIN (default /tmp/warren-suites).
#       Without --broker, the broker already listening on PORT is used as it is.
#   tools/client_suites.sh report LABEL [LABEL2]
#       Table: tests per suite, passed per run; with two labels, the tests that passed in every
#       LABEL run but not in some LABEL2 run (e.g. `report rabbitmq warren`).
#   tools/client_suites.sh list
#
# Suites (default: all, in this order; the cargo ones are last because they build):
#   pika py-amqp kombu amqp091-go amqplib lapin amqprs
#
# Brokers: tools/client_suites/rabbit.sh start|stop PORT (a private RabbitMQ node, started as
# tools/compare.py does) and tools/client_suites/warren.sh start|stop PORT [BINARY].
#
# Where the sources come from (versions pinned below):
#   pika        library from PyPI; its tests are not in the sdist -> GitHub pika/pika at tag
#               $PIKA_VERSION (bare mirror made by the session's `fetch` tool, github:pika/pika,
#               expected at $MIRRORS/pika+pika/repo; or set PIKA_GIT to any clone).
#   py-amqp     PyPI sdist (has t/integration).
#   kombu       PyPI sdist (has t/integration/test_py_amqp.py).
#   amqp091-go  Debian package golang-github-rabbitmq-amqp091-go-dev (ships the sources and
#               integration_test.go), built with Debian's golang-go in GOPATH mode, offline.
#   amqplib     npm package has no tests -> GitHub amqp-node/amqplib at tag v$AMQPLIB_VERSION
#               ($MIRRORS/amqp-node+amqplib/repo or AMQPLIB_GIT); dev dep `claire` from npm.
#   lapin       GitHub amqp-rs/lapin at tag v$LAPIN_VERSION ($MIRRORS/amqp-rs+lapin/repo or
#               LAPIN_GIT); dependencies from crates.io via cargo.
#   amqprs      GitHub gftea/amqprs at tag v$AMQPRS_VERSION ($MIRRORS/gftea+amqprs/repo or
#               AMQPRS_GIT); dependencies from crates.io via cargo.
# Cargo always runs as `flock /tmp/warren-cargo.lock cargo ...` with
# CARGO_TARGET_DIR=$CARGO_TARGET_DIR (default /work/client-suites-target).
#
# Local patches to the downloaded test trees (all only about where the broker is / who logs in):
#   pika     tests hard-code port 5672: made to read $AMQP_PORT.
#   amqplib  tests connect to amqp://localhost (port 5672) in several places: a --require
#            preload (client_suites/amqplib_port.js) maps connects to port 5672 onto $AMQP_PORT;
#            another (amqplib_timeout.js) sets per-test timeouts (see run_amqplib).
#   amqprs   tests log in as user/bitnami on localhost:5672 (their docker image's user): made
#            to use $AMQP_HOST/$AMQP_PORT and guest/guest (and user_id "guest").
#
# Expected to fail on any broker here (no TLS listener, no outside network/DNS): py-amqp's 15
# TLS/badssl.com tests, pika's 3 TestGetaddrinfoWWWGoogleDotComPort80 tests, and pika's
# TestInvalidExchangeTypeRaisesConnectionClosed (expects a newer RabbitMQ's answer).
# To see a broker's answers frame by frame: client_suites/probe.py --help.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AUX=$HERE/client_suites
CS_ROOT=${CS_ROOT:-/work/client-suites}
MIRRORS=${MIRRORS:-/work/.mirror}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/client-suites-target}
CARGO_LOCK=${CARGO_LOCK:-/tmp/warren-cargo.lock}
ALL_SUITES=(pika py-amqp kombu amqp091-go amqplib lapin amqprs)

PIKA_VERSION=1.4.4
PYAMQP_VERSION=5.4.2
KOMBU_VERSION=5.7.0
AMQP091_VERSION=1.5.0        # Debian bookworm's golang-github-rabbitmq-amqp091-go-dev 1.5.0-2
AMQPLIB_VERSION=2.0.1
LAPIN_VERSION=4.7.4
AMQPRS_VERSION=2.1.5

# Per-run time limits (seconds): a hung suite is killed and its unfinished tests count as failed.
SUITE_TIMEOUT=${SUITE_TIMEOUT:-1800}
PYTEST_TEST_TIMEOUT=${PYTEST_TEST_TIMEOUT:-120}

SRC=$CS_ROOT/src
VENV=$CS_ROOT/venv
PY=$VENV/bin/python

log() { echo "[client_suites] $*" >&2; }
die() { log "$*"; exit 1; }

version_of() {
  case $1 in
    pika) echo $PIKA_VERSION ;; py-amqp) echo $PYAMQP_VERSION ;; kombu) echo $KOMBU_VERSION ;;
    amqp091-go) echo $AMQP091_VERSION ;; amqplib) echo $AMQPLIB_VERSION ;;
    lapin) echo $LAPIN_VERSION ;; amqprs) echo $AMQPRS_VERSION ;; *) die "unknown suite $1" ;;
  esac
}

cargo_locked() { flock "$CARGO_LOCK" cargo "$@"; }

# git_tree REPO_VAR_DEFAULT TAG DEST: export a tag of a bare mirror/clone into DEST
git_tree() {
  local git=$1 tag=$2 dest=$3
  [ -d "$git" ] || die "no git repository at $git: fetch it first (the session tool \`fetch github:OWNER/NAME\` makes $MIRRORS/OWNER+NAME/repo), or point the *_GIT variable at a clone"
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  git --git-dir="$git" archive "$tag" | tar -x -C "$dest.tmp"
  rm -rf "$dest"; mv "$dest.tmp" "$dest"
}

ensure_venv() {
  if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q "pytest==8.0.0" "pytest-timeout==2.4.0" \
    "pika==$PIKA_VERSION" "amqp==$PYAMQP_VERSION" "kombu==$KOMBU_VERSION" tornado twisted gevent
}

# ---------------------------------------------------------------- fetch
fetch_pika() {
  ensure_venv
  local d=$SRC/pika-$PIKA_VERSION
  git_tree "${PIKA_GIT:-$MIRRORS/pika+pika/repo}" "$PIKA_VERSION" "$d"
  "$PY" - "$d" <<'EOF'
import re, sys
d = sys.argv[1]
port = "int(os.environ.get('AMQP_PORT', '5672'))"
for f, old, new in [
    ("tests/acceptance/blocking_adapter_test.py", "{'port': 5672}", "{'port': %s}" % port),
    ("tests/base/async_test_base.py", "port=5672)", "port=%s)" % port),
]:
    p = f"{d}/{f}"
    s = open(p).read()
    assert old in s, (f, old)
    s = s.replace(old, new)
    if not re.search(r"^import os$", s, re.M):
        s = "import os\n" + s
    open(p, "w").write(s)
EOF
}

fetch_py-amqp() {
  ensure_venv
  local tmp; tmp=$(mktemp -d)
  "$VENV/bin/pip" download -q --no-deps --no-binary :all: -d "$tmp" "amqp==$PYAMQP_VERSION"
  rm -rf "$SRC/py-amqp-$PYAMQP_VERSION"; mkdir -p "$SRC"
  tar -xzf "$tmp/amqp-$PYAMQP_VERSION.tar.gz" -C "$tmp"
  mv "$tmp/amqp-$PYAMQP_VERSION" "$SRC/py-amqp-$PYAMQP_VERSION"; rm -rf "$tmp"
}

fetch_kombu() {
  ensure_venv
  local tmp; tmp=$(mktemp -d)
  "$VENV/bin/pip" download -q --no-deps --no-binary :all: -d "$tmp" "kombu==$KOMBU_VERSION"
  rm -rf "$SRC/kombu-$KOMBU_VERSION"; mkdir -p "$SRC"
  tar -xzf "$tmp/kombu-$KOMBU_VERSION.tar.gz" -C "$tmp"
  mv "$tmp/kombu-$KOMBU_VERSION" "$SRC/kombu-$KOMBU_VERSION"; rm -rf "$tmp"
}

fetch_amqp091-go() {
  if ! dpkg -s golang-go golang-github-rabbitmq-amqp091-go-dev >/dev/null 2>&1; then
    apt-get install -y golang-go golang-github-rabbitmq-amqp091-go-dev >/dev/null \
      || { apt-get update >/dev/null && apt-get install -y golang-go golang-github-rabbitmq-amqp091-go-dev >/dev/null; }
  fi
  local v; v=$(dpkg-query -W -f='${Version}' golang-github-rabbitmq-amqp091-go-dev)
  case $v in $AMQP091_VERSION-*) ;; *) log "warning: Debian has amqp091-go $v, pinned $AMQP091_VERSION" ;; esac
  local d=$SRC/amqp091-go-$AMQP091_VERSION
  rm -rf "$d"; mkdir -p "$d/src/github.com/rabbitmq"
  cp -r /usr/share/gocode/src/github.com/rabbitmq/amqp091-go "$d/src/github.com/rabbitmq/"
  # compile the tests once now (also checks that goleak & co. are there)
  ( cd "$d/src/github.com/rabbitmq/amqp091-go" && GOPATH=$d:/usr/share/gocode GO111MODULE=off GOFLAGS= \
      go test -tags integration -c -o "$d/amqp091.test" . )
}

fetch_amqplib() {
  local d=$SRC/amqplib-$AMQPLIB_VERSION
  git_tree "${AMQPLIB_GIT:-$MIRRORS/amqp-node+amqplib/repo}" "v$AMQPLIB_VERSION" "$d"
  # Only the test dependency (claire); the rest of devDependencies are linters/typecheckers.
  local claire; claire=$(node -e "console.log(require('$d/package.json').devDependencies.claire)")
  ( cd "$d" && npm install --no-save --ignore-scripts --no-audit --no-fund "claire@$claire" >/dev/null )
}

fetch_lapin() {
  local d=$SRC/lapin-$LAPIN_VERSION
  git_tree "${LAPIN_GIT:-$MIRRORS/amqp-rs+lapin/repo}" "v$LAPIN_VERSION" "$d"
  ( cd "$d" && cargo_locked test "${LAPIN_CARGO_ARGS[@]}" --no-run )
}

fetch_amqprs() {
  local d=$SRC/amqprs-$AMQPRS_VERSION
  git_tree "${AMQPRS_GIT:-$MIRRORS/gftea+amqprs/repo}" "v$AMQPRS_VERSION" "$d"
  "$PY" - "$d" <<'EOF'
import sys
d = sys.argv[1]
p = f"{d}/amqprs/tests/common/mod.rs"
s = open(p).read()
old = 'OpenConnectionArguments::new("localhost", 5672, "user", "bitnami")'
assert old in s
s = s.replace(old, 'OpenConnectionArguments::new(&std::env::var("AMQP_HOST").unwrap_or("localhost".into()), '
              'std::env::var("AMQP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5672), "guest", "guest")')
open(p, "w").write(s)
p = f"{d}/amqprs/tests/test_consume.rs"
s = open(p).read()
s = s.replace('.with_user_id("user")', '.with_user_id("guest")')
open(p, "w").write(s)
EOF
  ( cd "$d" && cargo_locked test "${AMQPRS_CARGO_ARGS[@]}" --no-run )
}

# ---------------------------------------------------------------- run
# run_SUITE OUTDIR HOST PORT: run once, writing OUTDIR/output.log and OUTDIR/results.tsv
pytest_run() {  # OUTDIR DIR ARGS...
  local out=$1 dir=$2; shift 2
  ( cd "$dir" && timeout -k 10 "$SUITE_TIMEOUT" "$PY" -m pytest -p no:cacheprovider -rfE \
      --timeout "$PYTEST_TEST_TIMEOUT" --junitxml "$out/junit.xml" -o junit_family=xunit2 "$@" ) \
      > "$out/output.log" 2>&1 || true
  "$PY" "$AUX/parse.py" junit "$out/junit.xml" > "$out/results.tsv"
}

run_pika() {
  AMQP_PORT=$3 pytest_run "$1" "$SRC/pika-$PIKA_VERSION" tests/acceptance
}

run_py-amqp() {
  RABBITMQ_HOST=$2 RABBITMQ_5672_TCP=$3 pytest_run "$1" "$SRC/py-amqp-$PYAMQP_VERSION" t/integration
}

run_kombu() {
  RABBITMQ_HOST=$2 RABBITMQ_5672_TCP=$3 pytest_run "$1" "$SRC/kombu-$KOMBU_VERSION" t/integration/test_py_amqp.py
}

run_amqp091-go() {
  local d=$SRC/amqp091-go-$AMQP091_VERSION out=$1
  local src=$d/src/github.com/rabbitmq/amqp091-go t
  # Only the tests of integration_test.go (the package's unit tests need no broker), each in its
  # own process: a test that panics (e.g. on an unexpected nil error) would end the rest.
  : > "$out/output.json"
  for t in $(grep -oE '^func (Test[A-Za-z0-9_]+)\(' "$src/integration_test.go" | sed 's/^func //; s/($//'); do
    ( cd "$src" && AMQP_URL="amqp://guest:guest@$2:$3/" timeout -k 10 "$GO_TEST_TIMEOUT" \
        go tool test2json -t "$d/amqp091.test" -test.v -test.count=1 -test.run "^$t\$" ) >> "$out/output.json" 2>&1 \
      || echo "{\"Action\":\"fail\",\"Test\":\"$t\",\"Output\":\"(process exit: crashed or timed out)\"}" >> "$out/output.json"
  done
  "$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    try: e=json.loads(l)
    except ValueError: sys.stdout.write(l); continue
    if e.get("Action")=="output": sys.stdout.write(e.get("Output",""))' "$out/output.json" > "$out/output.log"
  "$PY" "$AUX/parse.py" gojson "$out/output.json" > "$out/results.tsv"
}
GO_TEST_TIMEOUT=${GO_TEST_TIMEOUT:-120}

run_amqplib() {
  local d=$SRC/amqplib-$AMQPLIB_VERSION out=$1
  # Only the test files that talk to a broker (the others use in-process fakes).
  # package.json's "test" script uses --test-timeout=1000, but node 20 applies that to each whole
  # test file too, so one hung test cancels the rest of its file; instead a preload gives each
  # test and hook its own timeout ($AMQPLIB_TEST_TIMEOUT ms) and ends a finished file's process.
  ( cd "$d" && AMQP_PORT=$3 URL="amqp://guest:guest@$2:$3" AMQPLIB_TEST_TIMEOUT=$AMQPLIB_TEST_TIMEOUT \
      timeout -k 10 "$SUITE_TIMEOUT" node --require "$AUX/amqplib_port.js" --require "$AUX/amqplib_timeout.js" \
      --test --test-reporter=tap $AMQPLIB_TESTS ) > "$out/output.log" 2>&1 || true
  "$PY" "$AUX/parse.py" tap "$out/output.log" > "$out/results.tsv"
}
AMQPLIB_TESTS=${AMQPLIB_TESTS:-"test/callback_api.test.js test/channel_api.test.js test/connect.test.js"}
AMQPLIB_TEST_TIMEOUT=${AMQPLIB_TEST_TIMEOUT:-5000}

run_lapin() {
  local d=$SRC/lapin-$LAPIN_VERSION out=$1
  # tests/ and the #[test]s of examples/ (tokio, smol, publisher_confirms, ...); no TLS features
  ( cd "$d" && AMQP_ADDR="amqp://guest:guest@$2:$3/%2f" timeout -k 10 "$SUITE_TIMEOUT" \
      flock "$CARGO_LOCK" cargo test "${LAPIN_CARGO_ARGS[@]}" --no-fail-fast ) > "$out/output.log" 2>&1 || true
  "$PY" "$AUX/parse.py" libtest "$out/output.log" > "$out/results.tsv"
}
LAPIN_CARGO_ARGS=(--no-default-features --features tokio,smol,async-global-executor --tests --examples)

# amqprs/tests/* only (the lib's own #[cfg(test)]s also log in as user/bitnami); all features but tls
AMQPRS_CARGO_ARGS=(-p amqprs --features traces,compliance_assert,urispec --test '*')
run_amqprs() {
  local d=$SRC/amqprs-$AMQPRS_VERSION out=$1
  ( cd "$d" && AMQP_HOST=$2 AMQP_PORT=$3 timeout -k 10 "$SUITE_TIMEOUT" \
      flock "$CARGO_LOCK" cargo test "${AMQPRS_CARGO_ARGS[@]}" --no-fail-fast ) \
      > "$out/output.log" 2>&1 || true
  "$PY" "$AUX/parse.py" libtest "$out/output.log" > "$out/results.tsv"
}

# ---------------------------------------------------------------- main
cmd=${1:-}; shift || true
case $cmd in
fetch)
  suites=("$@"); [ ${#suites[@]} -gt 0 ] || suites=("${ALL_SUITES[@]}")
  mkdir -p "$SRC"
  for s in "${suites[@]}"; do version_of "$s" >/dev/null; log "fetching $s $(version_of "$s")"; "fetch_$s"; done
  ;;
run)
  port= label= host=127.0.0.1 runs=3 broker=
  while [ $# -gt 0 ]; do
    case $1 in
      --port) port=$2; shift 2 ;; --label) label=$2; shift 2 ;;
      --host) host=$2; shift 2 ;; --runs) runs=$2; shift 2 ;; --broker) broker=$2; shift 2 ;;
      -*) die "unknown option $1" ;; *) break ;;
    esac
  done
  [ -n "$port" ] && [ -n "$label" ] || die "run needs --port and --label"
  case $broker in
    "") ;;
    rabbitmq) broker_start() { "$AUX/rabbit.sh" start "$port" >/dev/null; }; broker_stop() { "$AUX/rabbit.sh" stop "$port" "$1"; } ;;
    warren) broker_start() { "$AUX/warren.sh" start "$port" "${WARREN_BIN:-/tmp/warren-suites}" >/dev/null; }
            broker_stop() { "$AUX/warren.sh" stop "$port" "$1"; } ;;
    *) die "--broker must be rabbitmq or warren" ;;
  esac
  [ -z "$broker" ] || trap 'broker_stop /dev/null 2>/dev/null' EXIT
  suites=("$@"); [ ${#suites[@]} -gt 0 ] || suites=("${ALL_SUITES[@]}")
  for s in "${suites[@]}"; do
    v=$(version_of "$s")
    # keep versions.tsv up to date for the report
    touch "$CS_ROOT/versions.tsv"
    { grep -v "^$s	" "$CS_ROOT/versions.tsv" || true; printf '%s\t%s\n' "$s" "$v"; } > "$CS_ROOT/versions.tsv.new"
    mv "$CS_ROOT/versions.tsv.new" "$CS_ROOT/versions.tsv"
    rm -rf "$CS_ROOT/results/$label/$s"
    for i in $(seq "$runs"); do
      out=$CS_ROOT/results/$label/$s/run$i; mkdir -p "$out"
      log "$label: $s $v run $i/$runs"
      [ -z "$broker" ] || broker_start
      start=$(date +%s)
      "run_$s" "$out" "$host" "$port"
      [ -z "$broker" ] || broker_stop "$out/broker.log"
      p=$(grep -c "	passed$" "$out/results.tsv" || true); f=$(grep -c "	failed$" "$out/results.tsv" || true)
      log "$label: $s run $i: $p passed, $f failed ($(( $(date +%s) - start ))s)"
    done
  done
  ;;
report)
  [ $# -ge 1 ] || die "report LABEL [LABEL2]"
  python3 "$AUX/parse.py" report "$CS_ROOT" "$@"
  ;;
list)
  for s in "${ALL_SUITES[@]}"; do printf '%-11s %s\n' "$s" "$(version_of "$s")"; done ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
