#!/usr/bin/env bash
# setup.sh: installs what parley needs on a Debian machine, and only what is missing.
#   scripts/setup.sh          packages to build and run parley
#   scripts/setup.sh --test   also the test tools: cmocka, clang's fuzzer runtime, Node.js and `npm ci`
#   scripts/setup.sh --bench  the test tools and the benchmark peers' tools (`make bench`)
set -euo pipefail
cd "$(dirname "$0")/.."

build_packages=(make gcc pkg-config libssl-dev libjansson-dev libsqlite3-dev libsodium-dev zlib1g-dev)
# sd_notify (readiness, reloading and stopping under systemd: src/process/notify.c).
build_packages+=(libsystemd-dev)
# Unicode NFC and case folding of search words and queries (src/store/search_text.c).
build_packages+=(libutf8proc-dev)
# The Redis broker between nodes (src/broker/broker_redis.c).
build_packages+=(libhiredis-dev)
# The PostgreSQL store backend's client library (--store postgres://..., src/store/store_pg.c).
build_packages+=(libpq-dev)
test_packages=(libcmocka-dev clang libclang-rt-14-dev sqlite3 chromium)
# A color emoji font, so reactions in the browser tests' screenshots are drawn (not as boxes).
test_packages+=(fonts-noto-color-emoji)
# The TLS suites make their certificates with the openssl command and talk to the server with s_client.
test_packages+=(openssl)
# systemd-socket-activate for the socket activation test (tests/upgrade).
test_packages+=(systemd)
# The broker's tests start a real Redis (tests/unit/test_broker_redis.c).
test_packages+=(redis-server)
# A real PostgreSQL server (initdb, pg_ctl) for the store tests and the chat suite on PostgreSQL.
test_packages+=(postgresql)
# A load balancer in front of several nodes (tests/cluster: docs/haproxy.cfg, tested).
test_packages+=(haproxy)

# Benchmarks (`make bench`, docs/benchmarks.md): Go and gorilla/websocket build the Go chat peer
# (bench/peers/gorilla_chat), perf profiles the hot path. Not needed by `make test`.
bench_packages=(golang-go golang-github-gorilla-websocket-dev linux-perf)

with_tests=false
with_bench=false
[ "${1:-}" = "--test" ] && with_tests=true
if [ "${1:-}" = "--bench" ]; then
    with_tests=true
    with_bench=true
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

wanted=("${build_packages[@]}")
$with_tests && wanted+=("${test_packages[@]}")
$with_bench && wanted+=("${bench_packages[@]}")
# Node.js may come from Debian or from another packaging of it; only a missing `node` is installed.
if $with_tests && ! command -v node >/dev/null 2>&1; then
    wanted+=(nodejs npm)
elif $with_tests && ! command -v npm >/dev/null 2>&1; then
    wanted+=(npm)
fi

missing=()
for p in "${wanted[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if $with_tests; then
    # npm ci only when the lock file changed since the last install.
    if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        echo "setup: npm ci"
        npm ci --no-audit --no-fund --loglevel=error
    fi
fi
