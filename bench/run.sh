#!/bin/bash
# run.sh - the benchmark's entry point: mtad vs a private Postfix, side by side,
# on loopback. Installs Debian's postfix package if missing (without letting a
# system MTA start) and what building mtad needs, makes mtad's accounts if missing
# (scripts/accounts.sh), builds mtad and mtactl, then runs bench/bench.py.
# Not for: CI (these are figures, not tests) or any non-loopback target.
#
# Usage (as root on Debian 12):
#   bench/run.sh [intake|relay|idle|tls|dkim|all] [bench.py options: -m 20000 -s 1,10,50 -l 4096]
# (dkim: DKIM signing in mtad, mtad + OpenDKIM milter, Postfix + OpenDKIM milter: content.py)
# Environment: MTAD=path (skip the build, use this daemon), BUILD_DIR (default
# build), BUILD_JOBS (default 1), BENCH_TMP (parent of the temp dir, default /var/tmp: must be a real
# disk, not tmpfs), BENCH_KEEP=1 (keep the temp dir for inspection).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
what=${1:-all}
[ $# -gt 0 ] && shift
case "$what" in
intake | relay | idle | tls | dkim | limit | all) ;;
*)
    echo "usage: $0 [intake|relay|idle|tls|dkim|limit|all] [-m N] [-s 1,10,50] [-l SIZE]" >&2
    exit 2
    ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "bench: must run as root (apt-get, Postfix's master)" >&2
    exit 1
fi
export PATH="$PATH:/usr/sbin:/sbin"

# install_postfix - Debian's postfix with "No configuration", and no system MTA
# started: a policy-rc.d that refuses every service start during the install
# (only if there is none already; ours is removed afterwards).
install_postfix() {
    # opendkim: the milter of the dkim runs (content.py), started by the bench on a free port
    [ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-sink ] &&
        [ -x /usr/sbin/opendkim ] && return 0
    local ours=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        ours=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix openssl opendkim; } || rc=$?
    [ -n "$ours" ] && rm -f /usr/sbin/policy-rc.d
    # no system OpenDKIM at the next boot either (the bench starts its own)
    command -v systemctl >/dev/null && systemctl disable -q opendkim 2>/dev/null || true
    return $rc
}

install_postfix
# what building mtad needs (compiler, CMake, the -dev libraries), and the accounts mtad
# drops to after start-up, as scripts/run.sh makes them: a fresh machine has neither
"$src/scripts/deps.sh" build
"$src/scripts/accounts.sh"

if [ -z "${MTAD:-}" ]; then
    build=${BUILD_DIR:-build}
    case "$build" in /*) ;; *) build="$src/$build" ;; esac
    cmake -S "$src" -B "$build" >/dev/null
    cmake --build "$build" -j"${BUILD_JOBS:-1}" --target mtad mtactl
    MTAD="$build/mtad"
fi
export MTAD

# bench.py cleans up after itself (Postfix instances, mtad, sinks, temp dir),
# also on SIGINT/SIGTERM; forward those signals and wait for it to finish.
child=
on_signal() {
    [ -n "$child" ] && kill -INT "$child" 2>/dev/null || true
    [ -n "$child" ] && wait "$child" 2>/dev/null || true
    exit 130
}
trap on_signal INT TERM HUP
python3 "$here/bench.py" "$what" "$@" &
child=$!
wait "$child"
