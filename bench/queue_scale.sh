#!/bin/sh
# queue_scale.sh - the queue-size table of bench/README.md: builds mtad, mtactl,
# postqueue and queue_fill in BUILD_DIR (default build) and runs bench/queue_scale.py
# at a low priority. Arguments go to queue_scale.py (-n 10000,100000,1000000 ...).
# BENCH_TMP (default /var/tmp) must be a real disk with room: about 12 KB per message
# (the 4 KB message in its 8 KB file, plus the directories; before af77681 also a status
# file per deferred message).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$here/build}
cmake -S "$here" -B "$build" >/dev/null
cmake --build "$build" -j"${BUILD_JOBS:-1}" --target mtad mtactl postqueue queue_fill >/dev/null
exec nice -n 19 python3 "$here/bench/queue_scale.py" --build "$build" "$@"
