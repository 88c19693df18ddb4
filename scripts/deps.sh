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
# the Postfix log tools over mta's maillog (test_log_tools.py): Debian 12's exporter (0.3.0)
# Depends on postfix and rsyslog, which come along installed but never started (the
# policy-rc.d below; nothing in the tests calls them); mtail ships examples/postfix.mtail
TEST_PKGS="$TEST_PKGS prometheus-postfix-exporter mtail"
# the libFuzzer targets in tests/fuzz (scripts/test.sh's fuzz stage)
TEST_PKGS="$TEST_PKGS clang libclang-rt-14-dev"

# mtad tells systemd when it is ready or stopping and pings its watchdog (etc/mtad.service,
# Type=notify) through libsystemd; systemd-analyze checks that unit in test_systemd.py
BUILD_PKGS="$BUILD_PKGS libsystemd-dev"
TEST_PKGS="$TEST_PKGS systemd"

want="$BUILD_PKGS"
[ "${1:-build}" = test ] && want="$BUILD_PKGS $TEST_PKGS"

missing=""
for p in $want; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages:$missing -- run as root to install them" >&2
    exit 1
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
