#!/bin/sh
# fuzz.sh: runs every built libFuzzer target (build/fuzz/fuzz_*) for SECONDS each and reports TAP.
#
# Usage: scripts/fuzz.sh SECONDS   (build the targets first with `make fuzz-build`)
#
# Each target gets its dictionary tests/fuzz/<name>.dict and a scratch corpus
# build/fuzz/corpus-<name> seeded from tests/fuzz/seeds/<name>, where <name>
# is the target without its fuzz_ prefix. The corpus is kept between runs, so
# repeated runs start from what earlier ones found. Targets run one per core at a time
# (FUZZ_JOBS overrides). Crash inputs land in
# build/fuzz/ as crash-*, logs in build/fuzz/<target>.log. Exits non-zero if
# any target crashed (or failed to run).
set -u

if [ $# -ne 1 ] || ! [ "$1" -gt 0 ] 2>/dev/null; then
    echo "usage: $0 SECONDS" >&2
    exit 2
fi
seconds=$1
cd "$(dirname "$0")/.." || exit 2

targets=
for bin in build/fuzz/fuzz_*; do
    [ -f "$bin" ] && [ -x "$bin" ] && targets="$targets $bin"
done
if [ -z "$targets" ]; then
    echo "$0: no fuzz targets in build/fuzz; run 'make fuzz-build' first" >&2
    exit 2
fi

count=0
for bin in $targets; do
    count=$((count + 1))
done
echo "1..$count"

# run_target N BIN: fuzzes one target and writes its TAP lines to build/fuzz/BIN.tap.
run_target() {
    n=$1
    bin=$2
    target=$(basename "$bin")
    name=${target#fuzz_}
    corpus=build/fuzz/corpus-$name
    log=build/fuzz/$target.log
    tap=build/fuzz/$target.tap
    mkdir -p "$corpus"
    if [ -d "tests/fuzz/seeds/$name" ]; then
        cp -n tests/fuzz/seeds/"$name"/* "$corpus"/ 2>/dev/null
    fi
    dict=
    if [ -f "tests/fuzz/$name.dict" ]; then
        dict=-dict=tests/fuzz/$name.dict
    fi

    start=$(date +%s)
    # -timeout: one input taking this long is a finding too (a parser must be linear).
    "$bin" -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=30 -print_final_stats=1 \
        -artifact_prefix=build/fuzz/ $dict "$corpus" >"$log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)

    if [ "$rc" -eq 0 ]; then
        echo "ok $n - $target ($elapsed s, no crash)" >"$tap"
        echo "# $target: ${runs:-?} executions, corpus $(ls "$corpus" | wc -l) inputs" >>"$tap"
    else
        echo "not ok $n - $target ($elapsed s, exit $rc)" >"$tap"
        # The sanitizer report and the artifact name, as TAP diagnostics.
        grep -E 'ERROR|SUMMARY|artifact|Test unit written|==[0-9]+==' "$log" | head -n 20 |
            sed 's/^/# /' >>"$tap"
        echo "# full log: $log" >>"$tap"
    fi
}

# Targets run side by side, one per core (each libFuzzer process is single-threaded), so the
# time per target stays SECONDS while the whole run takes about SECONDS x targets / cores.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
rm -f build/fuzz/fuzz_*.tap
n=0
running=0
for bin in $targets; do
    n=$((n + 1))
    run_target "$n" "$bin" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
done
wait

failed=0
for bin in $targets; do
    tap=build/fuzz/$(basename "$bin").tap
    if [ -f "$tap" ]; then
        cat "$tap"
        grep -q '^not ok' "$tap" && failed=1
    else
        echo "not ok - $(basename "$bin") (no result)"
        failed=1
    fi
done
exit $failed
