#!/usr/bin/env bash
# test.sh: builds parley, runs every test suite, and ends with one line "N passed, N failed".
# Suites: the layer check of src/'s includes (scripts/check_layers.sh, one test), cmocka unit
# tests and the black-box suites (the real binary on loopback: tests/blackbox for HTTP and
# WebSocket, tests/chat for the chat protocol over WebSocket and telnet, tests/upgrade for
# upgrades to a new process, socket activation and sd_notify), each once on the release build and
# once under ASan + UBSan (tests/web and tests/cluster on the release build only), tests/chat
# once more on PostgreSQL and Redis (release), tests/nodes (several nodes on one PostgreSQL and
# one Redis, release), then every libFuzzer target for FUZZ_SECONDS.
set -u
cd "$(dirname "$0")/.."

jobs=$(nproc 2>/dev/null || echo 2)
fuzz_seconds=${FUZZ_SECONDS:-20}
log_dir=build/test-logs
mkdir -p "$log_dir"
passed=0
failed=0

# count_tap FILE: adds the file's top-level TAP results to the totals.
count_tap() {
    local ok notok
    ok=$(grep -cE '^ok ' "$1")
    notok=$(grep -cE '^not ok ' "$1")
    passed=$((passed + ok))
    failed=$((failed + notok))
    echo "  $ok passed, $notok failed"
}

# count_node FILE: node's TAP reporter ends with "# pass N" and "# fail N".
count_node() {
    local ok notok
    ok=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$1" | tail -n 1)
    notok=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$1" | tail -n 1)
    [ -n "$ok" ] || ok=0
    [ -n "$notok" ] || notok=1 # no summary: the runner itself failed
    passed=$((passed + ok))
    failed=$((failed + notok))
    echo "  $ok passed, $notok failed"
}

# show_failures FILE: each failed node test with the start of its diagnostics (the error and
# where it was thrown), so a failure on a CI machine can be understood from its output alone.
show_failures() {
    awk '
        /^[ ]*not ok / { shown++; lines = 0; inside = 1; if (shown <= 10) print "  " $0; next }
        inside && /^[ ]*\.\.\.$/ { inside = 0; next }
        inside && /^[ ]*(---|duration_ms:|type:|failureType:)/ { next }
        inside && shown <= 10 && lines < 16 { lines++; print "    " $0 }
    ' "$1"
}

# build NAME ARGS...: a build failure counts as one failed test.
build() {
    local name=$1
    shift
    echo "== build: $name"
    if ! make --no-print-directory -j"$jobs" "$@" >"$log_dir/build-$name.log" 2>&1; then
        tail -n 30 "$log_dir/build-$name.log"
        echo "not ok - build $name"
        failed=$((failed + 1))
        return 1
    fi
}

run_units() {
    local dir=$1 name=$2
    for t in "$dir"/tests/test_*; do
        [ -x "$t" ] || continue
        local out="$log_dir/$name-$(basename "$t").tap"
        echo "== unit ($name): $(basename "$t")"
        CMOCKA_MESSAGE_OUTPUT=TAP timeout 120 "$t" >"$out" 2>&1
        local rc=$?
        if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$out"; then
            echo "not ok - $(basename "$t") exited with $rc" >>"$out" # a crash before any result
        fi
        grep -E '^not ok ' "$out" | sed 's/^/  /'
        count_tap "$out"
    done
}

run_blackbox() {
    local bin=$1 name=$2
    local out="$log_dir/blackbox-$name.tap"
    local suites=(tests/blackbox/ tests/chat/ tests/upgrade/)
    # The web client in a real browser (Debian's chromium), and several nodes on one PostgreSQL
    # behind HAProxy (tests/cluster, docs/haproxy.cfg), once, on the release build.
    [ "$name" = release ] && suites+=(tests/web/ tests/cluster/)
    echo "== black-box ($name): $bin"
    # A guard against a hang, not a speed limit: on a quiet 2-core machine the release phase
    # takes about six minutes (the whole make test about thirteen).
    PARLEY_BIN="$bin" timeout 900 node --test --test-reporter=tap --test-concurrency="$jobs" \
        "${suites[@]}" >"$out" 2>&1
    show_failures "$out"
    count_node "$out"
}

# The chat suite once more, on PostgreSQL (--store) with the Redis broker (--broker): one node
# of several, alone (tests/tools/with_pg.sh and with_redis.sh start throwaway servers for the
# run and remove them after), on the release build only.
run_chat_on_postgres() {
    local out="$log_dir/chat-postgres.tap"
    echo "== chat on PostgreSQL + Redis (release)"
    PARLEY_BIN=build/release/parley timeout 900 tests/tools/with_pg.sh tests/tools/with_redis.sh \
        node --test --test-reporter=tap --test-concurrency="$jobs" tests/chat/ >"$out" 2>&1
    show_failures "$out"
    count_node "$out"
}

# Several nodes on one PostgreSQL and one Redis (tests/nodes: each test starts both, and three
# nodes), on the release build only, one test at a time: each loads the machine with 3 nodes and
# up to 300 clients. About a minute in all.
run_nodes() {
    local out="$log_dir/nodes.tap"
    echo "== several nodes (release)"
    PARLEY_BIN=build/release/parley timeout 300 node --test --test-reporter=tap \
        --test-concurrency=1 tests/nodes/ >"$out" 2>&1
    show_failures "$out"
    count_node "$out"
}

# The include rule between src/'s layer folders (docs/architecture.md, "Layout"): one test.
echo "== layers"
scripts/check_layers.sh >"$log_dir/layers.tap" 2>&1
sed 's/^/  /' "$log_dir/layers.tap"
count_tap "$log_dir/layers.tap"

if build release all unit; then
    run_units build/release release
    run_blackbox build/release/parley release
    run_chat_on_postgres
    run_nodes
fi
if build asan BUILD=asan all unit; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export UBSAN_OPTIONS=print_stacktrace=1
    run_units build/asan asan
    run_blackbox build/asan/parley asan
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi
if build fuzz fuzz-build; then
    echo "== fuzz: ${fuzz_seconds}s per target"
    out="$log_dir/fuzz.tap"
    scripts/fuzz.sh "$fuzz_seconds" >"$out" 2>&1
    grep -E '^(not )?ok ' "$out" | sed 's/^/  /'
    count_tap "$out"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
