#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages mta needs, only those that are missing.
#   scripts/deps.sh build   compiler, CMake and the -dev libraries
#   scripts/deps.sh test    build + the real clients and servers the test suite runs
# Never starts a system service: while packages are installed, a policy-rc.d that
# forbids service starts is put in place if the machine has none (test-servers.md).
set -euo pipefail

BUILD_PKGS="gcc make cmake pkg-config libevent-dev libssl-dev libsasl2-dev libc-ares-dev \
libsmbclient-dev libnfs-dev libcmocka-dev python3"
TEST_PKGS="python3 swaks openssl curl samba smbclient nfs-ganesha nfs-ganesha-vfs libnfs-utils \
dnsmasq sasl2-bin libsasl2-modules pflogsumm chromium prometheus dpkg-dev"
# test_package.py: the installed logrotate file and man pages, with the real tools
TEST_PKGS="$TEST_PKGS logrotate man-db"
# cpack -G DEB runs dpkg-shlibdeps, and CPackDeb refuses to without file(1) (test_package.py)
TEST_PKGS="$TEST_PKGS file"
# swaks's TLS and AUTH need these Perl modules, which --no-install-recommends leaves out
# (without them every TLS/AUTH swaks test exits 10 on a fresh machine)
TEST_PKGS="$TEST_PKGS libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl \
libdigest-hmac-perl"
# JavaMail on the JRE: the appliance's first user is a Tomcat web application (test_javamail.py)
TEST_PKGS="$TEST_PKGS libmail-java default-jre-headless"
# PHP's own mail() through build/sendmail (test_sendmail.py): the most common local submitter
TEST_PKGS="$TEST_PKGS php-cli"
# The Postfix log tools over mta's maillog (test_log_tools.py): Debian 12's
# prometheus-postfix-exporter (0.3.0) and mtail (its examples/postfix.mtail). They are
# unpacked, not installed: the exporter's package Depends on postfix and rsyslog, and
# installing postfix puts a system MTA on the machine (and would conflict with mta's own
# .deb); mtail's would add a service. Both programs are static Go binaries that need nothing
# else. Unpacked below $MTA_TEST_TOOLS (default /var/lib/mta-test-tools)/PACKAGE/.
TOOL_PKGS="prometheus-postfix-exporter mtail"
TOOLS_DIR="${MTA_TEST_TOOLS:-/var/lib/mta-test-tools}"
# scripts/check-tree.py, test.sh's first stage: Debian 12's clang-format (14) and cppcheck
TEST_PKGS="$TEST_PKGS clang-format cppcheck"
# the libFuzzer targets in tests/fuzz (scripts/test.sh's fuzz stage)
TEST_PKGS="$TEST_PKGS clang libclang-rt-14-dev"

# the built-in DKIM signer links libopendkim (src/core/dkim.c); test_dkim_sign.py verifies its
# signatures with an independent verifier, dkimpy (python3-dkim, with dnspython)
BUILD_PKGS="$BUILD_PKGS libopendkim-dev"
TEST_PKGS="$TEST_PKGS python3-dkim"

# HAProxy in TCP mode with send-proxy(-v2) in front of two mtad instances (test_haproxy.py,
# docs/scale-out.md); the test starts its own on free loopback ports: never a system service
TEST_PKGS="$TEST_PKGS haproxy"
DAEMON_PKGS="haproxy"

# mtad tells systemd when it is ready or stopping and pings its watchdog (etc/mtad.service,
# Type=notify) through libsystemd; systemd-analyze checks that unit in test_systemd.py
BUILD_PKGS="$BUILD_PKGS libsystemd-dev"
TEST_PKGS="$TEST_PKGS systemd"

# real mail filters for smtpd_milters (test_milter_filters.py): OpenDKIM in sign mode
# (opendkim-genkey is in opendkim-tools) and rspamd's proxy worker in milter mode; the test
# starts each on a free loopback port with its own config: never as system services
TEST_PKGS="$TEST_PKGS opendkim opendkim-tools rspamd"
DAEMON_PKGS="$DAEMON_PKGS opendkim rspamd"

# unpack_tools - apt-get download each of $unpack and unpack it (dpkg-deb -x: no
# maintainer scripts, no dependencies) into $TOOLS_DIR/PACKAGE.
unpack_tools() {
    local p tmp
    [ -z "$unpack" ] && return 0
    echo "deps.sh: unpacking:$unpack into $TOOLS_DIR" >&2
    tmp=$(mktemp -d)
    chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt when it may
    [ -n "$missing" ] || apt-get -o DPkg::Lock::Timeout=600 update -qq
    for p in $unpack; do
        (cd "$tmp" && apt-get -o DPkg::Lock::Timeout=600 download -qq "$p")
        rm -rf "${TOOLS_DIR:?}/$p"
        mkdir -p "$TOOLS_DIR/$p"
        dpkg-deb -x "$tmp/${p}"_*.deb "$TOOLS_DIR/$p"
        touch "$TOOLS_DIR/$p/.unpacked"
    done
    rm -rf "$tmp"
}

want="$BUILD_PKGS"
[ "${1:-build}" = test ] && want="$BUILD_PKGS $TEST_PKGS"

missing=""
for p in $want; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing="$missing $p"
done
unpack=""
if [ "${1:-build}" = test ]; then
    for p in $TOOL_PKGS; do
        [ -e "$TOOLS_DIR/$p/.unpacked" ] || unpack="$unpack $p"
    done
fi
[ -z "$missing" ] && [ -z "$unpack" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages:$missing$unpack -- run as root to install them" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -z "$missing" ]; then
    unpack_tools
    exit 0
fi
echo "deps.sh: installing:$missing" >&2
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
fi
trap '[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing
# the daemons the tests start themselves stay off as system services (policy-rc.d kept them
# from starting now; this keeps them from starting at the next boot)
if command -v systemctl >/dev/null 2>&1; then
    for p in $DAEMON_PKGS; do systemctl disable -q "$p" 2>/dev/null || true; done
fi
unpack_tools
