#!/usr/bin/env bash
# fuzz-long.sh - run every libFuzzer target of tests/fuzz long, one after another at the
# lowest CPU priority, each for RUNS executions or SECONDS seconds, whichever comes first.
# The corpus each target grows is kept outside the tree (OUT/corpus/NAME) and reused by the
# next run; crash, leak and timeout inputs land in OUT/artifacts/NAME/. A target that
# crashes is restarted for its remaining time (at most 5 times), so one finding does not end
# its run. Prints executions, seconds and findings per target; exits 1 when any target had one.
#   scripts/fuzz-long.sh [-r RUNS] [-t SECONDS] [-o OUT] [-b BUILD_DIR] [NAME...]
# Defaults: 10000000 runs, 600 s, OUT=/var/tmp/mta-fuzz, BUILD_DIR=build-fuzz (configured with
# CC=clang -DMTA_FUZZ=ON and built when it has no fuzz targets yet). NAME: fuzz_conf, ...
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
runs=10000000 secs=600 out=/var/tmp/mta-fuzz build="$ROOT/build-fuzz"
while getopts r:t:o:b: opt; do
    case $opt in
    r) runs=$OPTARG ;;
    t) secs=$OPTARG ;;
    o) out=$OPTARG ;;
    b) build=$OPTARG ;;
    *) sed -n '2,11p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))

if [ ! -d "$build/tests/fuzz" ]; then
    CC=clang cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMTA_FUZZ=ON >/dev/null
fi
mkdir -p "$out/logs"
if ! nice -n 19 cmake --build "$build" -j2 --target fuzz_targets >"$out/logs/build.log" 2>&1; then
    tail -20 "$out/logs/build.log" >&2
    exit 2
fi
if [ $# -eq 0 ]; then
    set -- $(cd "$ROOT/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
printf '%-22s %12s %8s %8s  %s\n' target executions seconds findings artifacts
total=0
for name in "$@"; do
    bin="$build/tests/fuzz/$name"
    [ -x "$bin" ] || { echo "fuzz-long.sh: no target $bin" >&2; exit 2; }
    corpus="$out/corpus/$name" art="$out/artifacts/$name" log="$out/logs/$name.log"
    mkdir -p "$corpus" "$art"
    dict=()
    [ -f "$ROOT/tests/fuzz/dict/$name.dict" ] && dict=(-dict="$ROOT/tests/fuzz/dict/$name.dict")
    : >"$log"
    # the target's temporary files (fuzz_smtpd_session's data volume), removed after it
    tmp=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/$name.XXXXXX")
    execs=0 left=$secs restarts=0 start=$SECONDS
    while [ "$left" -gt 0 ] && [ "$execs" -lt "$runs" ] && [ $restarts -le 5 ]; do
        rc=0
        TMPDIR="$tmp" nice -n 19 "$bin" -runs=$((runs - execs)) -max_total_time="$left" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" \
            "$corpus" "$ROOT/tests/fuzz/corpus/$name" >>"$log" 2>&1 || rc=$?
        n=$(grep 'stat::number_of_executed_units' "$log" | tail -1 | awk '{print $2}')
        # a crashed run prints no final stats: count its executions from the last status line
        [ $rc -ne 0 ] && n=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
        execs=$((execs + ${n:-0}))
        left=$((secs - (SECONDS - start)))
        [ $rc -eq 0 ] && break
        restarts=$((restarts + 1))
    done
    rm -rf "$tmp"
    found=$(find "$art" -type f | wc -l)
    total=$((total + found))
    printf '%-22s %12d %8d %8d  %s\n' "$name" "$execs" $((SECONDS - start)) "$found" "$art"
done
[ $total -eq 0 ]
