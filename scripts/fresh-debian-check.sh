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
#   FRESH_DEB=1 adds the package stage: a .deb built here from the clean clone (cpack,
#   prefix /usr; FRESH_DEB=FILE takes that .deb instead) is installed in the root with
#   apt-get, its mtad serves one message over SMTP and two through its sendmail (as root
#   and as nobody), then `dpkg -r` and `dpkg --purge` keep the queue.
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
if [ -n "${FRESH_DEB:-}" ]; then
    deb="$FRESH_DEB"
    if [ "$deb" = 1 ]; then
        echo "=== FRESH_DEB: building the .deb (cpack -G DEB) ==="
        nice -n 10 cmake -S "$CHROOT/work/main" -B "$WORK/deb" -DCMAKE_INSTALL_PREFIX=/usr \
            -DBUILD_TESTING=OFF >/dev/null
        nice -n 10 cmake --build "$WORK/deb" -j2 >/dev/null
        (cd "$WORK/deb" && nice -n 10 cpack -G DEB >/dev/null)
        deb=$(ls "$WORK"/deb/mta_*.deb)
    fi
    cp "$deb" "$CHROOT/mta.deb"
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
if [ -n "${FRESH_DEB:-}" ]; then
    echo "=== FRESH_DEB: apt-get install ./mta.deb ==="
    fail() { echo "FAIL: .deb: $*"; tail -20 /tmp/deb-mtad.log 2>/dev/null; exit 1; }
    # run.sh created mta and mtadrop for its own run: the package must create them
    userdel mta 2>/dev/null || true
    groupdel mtadrop 2>/dev/null || true
    cd / && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        ./mta.deb >/tmp/deb-install.log 2>&1 || { cat /tmp/deb-install.log; fail "apt-get"; }
    getent passwd mta | grep -q ':/var/spool/mta:/usr/sbin/nologin$' ||
        fail "postinst did not create the account mta: $(getent passwd mta)"
    getent passwd mta
    ls -ld /var/spool/mta /var/log/mta /var/log/mta/maillog /etc/mta/mtad.conf
    [ "$(stat -c %U:%G:%a /var/spool/mta)" = mta:mtadrop:710 ] ||
        fail "/var/spool/mta not mta:mtadrop 0710"
    [ "$(stat -c %U:%G:%a /var/spool/mta/maildrop)" = mta:mtadrop:1730 ] ||
        fail "/var/spool/mta/maildrop not mta:mtadrop 1730"
    for prog in postdrop postqueue; do
        [ "$(stat -c %U:%G:%a /usr/sbin/$prog)" = root:mtadrop:2755 ] ||
            fail "/usr/sbin/$prog not setgid mtadrop: $(ls -l /usr/sbin/$prog)"
    done
    [ "$(readlink /usr/bin/mailq)" = ../sbin/sendmail ] || fail "/usr/bin/mailq"
    dpkg-query -W -f='${Depends}\n' mta
    # the installed configuration; only the ports moved off 25 and 8025 (shared network)
    ports=$(python3 -c 'import socket
for _ in (1, 2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    sp=$(echo "$ports" | sed -n 1p); up=$(echo "$ports" | sed -n 2p)
    /usr/sbin/mtad -c /etc/mta/mtad.conf -o smtp_port="$sp" -o ui_port="$up" \
        >/tmp/deb-mtad.log 2>&1 &
    mpid=$!
    sent=0
    for _ in $(seq 1 50); do
        if python3 - "$sp" 2>/dev/null <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
s.sendmail("deb@fresh.example", ["someone@example.com"], b"Subject: deb\r\n\r\nhello\r\n")
s.quit()
PY
        then sent=1; break; fi
        sleep 0.2
    done
    # one mail through the package's sendmail as PHP's mail() runs it, as root and as
    # nobody (who can read neither the configuration nor the maildrop: postdrop can)
    printf 'To: someone@example.com\nSubject: deb sendmail\n\nhello\n' |
        /usr/sbin/sendmail -t -i || fail "sendmail -t -i as root exited $?"
    printf 'Subject: deb sendmail nobody\n\nhello\n' |
        setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/sbin/sendmail -i \
            someone@example.com || fail "sendmail as nobody exited $?"
    picked=0
    for _ in $(seq 1 50); do
        if grep -q 'pickup\[[0-9]*\]: [0-9A-F]*: uid=65534 from=<nobody>' /var/log/mta/maillog &&
            grep -q 'pickup\[[0-9]*\]: [0-9A-F]*: uid=0 from=<root>' /var/log/mta/maillog; then
            picked=1; break
        fi
        sleep 0.2
    done
    newaliases || fail "newaliases exited $?"
    kill -TERM $mpid; wait $mpid; mrc=$?
    [ $picked = 1 ] || fail "pickup did not log the sendmail messages"
    grep -E 'pickup\[' /var/log/mta/maillog
    [ $sent = 1 ] || fail "the installed mtad did not accept a message"
    [ $mrc = 0 ] || fail "mtad exited $mrc on SIGTERM"
    grep -E 'running as mta|from=<deb@fresh.example>' /var/log/mta/maillog || fail "maillog"
    dpkg -r mta >/tmp/deb-remove.log 2>&1 || { cat /tmp/deb-remove.log; fail "dpkg -r"; }
    [ ! -e /usr/sbin/mtad ] || fail "dpkg -r left /usr/sbin/mtad"
    [ -d /var/spool/mta ] || fail "dpkg -r removed /var/spool/mta"
    dpkg --purge mta 2>&1 | tail -3
    [ -d /var/spool/mta ] || fail "dpkg --purge removed /var/spool/mta"
    echo "after dpkg -r and --purge: $(ls -ld /var/spool/mta)"
    echo "PASS: the .deb installed, created mta, served a message over SMTP and through"\
        "sendmail, and left the queue on removal"
    cd /work/main
fi
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
exec chroot "$R" env -i FRESH_SKIP_TESTS="${2:-}" FRESH_DEB="${3:-}" /inside.sh
' fresh "$CHROOT" "${FRESH_SKIP_TESTS:-}" "${FRESH_DEB:-}" || rc=$?
echo "=== fresh-debian-check: exit $rc after $(($(date +%s) - start)) s ==="
exit $rc
