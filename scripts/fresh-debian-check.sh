#!/usr/bin/env bash
# fresh-debian-check.sh - prove the README's two commands on a fresh, minimal Debian 12.
#
# Builds a minbase Debian 12 (bookworm) root with mmdebstrap, puts a clean clone of this
# checkout's HEAD in it (as CI does: commit first), and runs there, as root:
#   1. bash scripts/run.sh   - must install what it needs, build, and serve SMTP on
#                              127.0.0.1:2525: a message sent with Python's smtplib gets 250;
#   2. bash scripts/test.sh  - must install what it needs and pass the whole suite.
# CI's machine already has every package, so only this shows a missing install step.
#
# The chroot runs inside `unshare -m` with its root bind-mounted onto itself, so that
# /proc/mounts makes sense to nfs-ganesha (a plain chroot breaks ganesha's export).
# Needs root and Debian's package mirror. Not part of .ci/run: it takes ~20-30 minutes.
#
#   scripts/fresh-debian-check.sh [WORKDIR]    (default: a new directory under /var/tmp)
#   FRESH_KEEP=1 keeps WORKDIR afterwards; FRESH_SKIP_TESTS=1 runs only the run.sh check.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" = 0 ] || { echo "fresh-debian-check: run as root" >&2; exit 1; }

if ! command -v mmdebstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends mmdebstrap
fi

WORK="${1:-$(mktemp -d /var/tmp/mta-fresh.XXXXXX)}"
CHROOT="$WORK/root"
mkdir -p "$WORK"
cleanup() {
    status=$?
    if [ "${FRESH_KEEP:-}" != 1 ]; then
        # nothing is mounted outside the unshare'd namespace, so plain removal is safe
        rm -rf --one-file-system "$WORK"
    else
        echo "fresh-debian-check: kept $WORK" >&2
    fi
    exit $status
}
trap cleanup EXIT

echo "=== fresh-debian-check: building a minimal Debian 12 root in $CHROOT ==="
start=$(date +%s)
# minbase: essential packages + apt only; git and ca-certificates are what a user has to fetch
# the project; everything else must come from the project's own scripts.
mmdebstrap --variant=minbase --include=ca-certificates,git,procps bookworm "$CHROOT" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
# the project beside shared/ as on a developer's machine and in CI
git clone -q --no-local "$ROOT" "$CHROOT/work/main"
if [ -d "$ROOT/../shared" ]; then
    mkdir -p "$CHROOT/work/shared"
    cp -a "$ROOT/../shared/." "$CHROOT/work/shared/"
fi
echo "=== root ready after $(($(date +%s) - start)) s: $(git -C "$ROOT" log --oneline -1) ==="

# inside.sh runs in the chroot: the two README commands, exactly as written there
cat >"$CHROOT/inside.sh" <<'EOF'
#!/bin/bash
set -uo pipefail
cd /work/main
export HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
echo "=== README command 1: bash scripts/run.sh ==="
bash scripts/run.sh >/tmp/run.log 2>&1 &
pid=$!
ok=0
for _ in $(seq 1 900); do # deps install + build: up to 15 minutes
    if python3 - 2>/dev/null <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", 2525, timeout=10)
s.ehlo("fresh.example")
code, _ = s.docmd("MAIL FROM:<check@fresh.example>")
assert code == 250
code, _ = s.docmd("RCPT TO:<someone@example.com>")
assert code == 250
code, msg = s.data(b"Subject: fresh\r\n\r\nhello\r\n")
print(code, msg.decode())
sys.exit(0 if code == 250 else 1)
PY
    then ok=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 1
done
kill -INT $pid 2>/dev/null; wait $pid
tail -5 /tmp/run.log
if [ $ok != 1 ]; then echo "FAIL: scripts/run.sh did not accept a message"; cat /tmp/run.log; exit 1; fi
echo "PASS: scripts/run.sh installed, built, and accepted a message"
[ "${FRESH_SKIP_TESTS:-}" = 1 ] && exit 0
echo "=== README command 2: bash scripts/test.sh ==="
bash scripts/test.sh
rc=$?
[ $rc = 0 ] && echo "PASS: scripts/test.sh" || echo "FAIL: scripts/test.sh exited $rc"
exit $rc
EOF
chmod 755 "$CHROOT/inside.sh"

rc=0
unshare -m --propagation private bash -c '
set -e
R="$1"
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/tmp"
mount -t tmpfs tmpfs "$R/run"
exec chroot "$R" env -i FRESH_SKIP_TESTS="${2:-}" /inside.sh
' fresh "$CHROOT" "${FRESH_SKIP_TESTS:-}" || rc=$?
echo "=== fresh-debian-check: exit $rc after $(($(date +%s) - start)) s ==="
exit $rc
