#!/bin/sh
# run-fuzz.sh - run one libFuzzer target for a fixed time over its seed corpus (the ctest
# fuzz.NAME). New inputs go to a scratch directory that is removed afterwards, so the tree's
# corpus never changes; a crash, leak, sanitizer report or timeout leaves its input in
# ARTIFACTS/ and fails the test.
#   run-fuzz.sh BINARY SECONDS FUZZ_SRC_DIR ARTIFACTS_DIR
set -eu
bin=$1 secs=$2 src=$3 art=$4
name=$(basename "$bin")
# on tmpfs when there is one; the target's own temporary files go there too (TMPDIR)
tmp=${TMPDIR:-/tmp}
[ -w /dev/shm ] && tmp=/dev/shm
work=$(mktemp -d "$tmp/$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/tmp"
export TMPDIR="$work/tmp"
mkdir -p "$art"
set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$art/$name-"
[ -f "$src/dict/$name.dict" ] && set -- "$@" -dict="$src/dict/$name.dict"
"$bin" "$@" "$work/corpus" "$src/corpus/$name"
