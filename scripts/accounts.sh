#!/usr/bin/env bash
# accounts.sh - make the accounts mtad needs when it is started as root, only those that
# are missing: the user mail_owner (default mta), to which mtad drops after start-up, and
# the group setgid_group (default mtadrop) of the setgid postdrop and postqueue programs
# (docs/security.md). As any other user it does nothing: mtad then stays that user.
# Used by scripts/run.sh, scripts/test.sh and bench/run.sh.
set -euo pipefail
[ "$(id -u)" = 0 ] || exit 0
export PATH="$PATH:/usr/sbin:/sbin"
if ! getent passwd mta >/dev/null; then
    useradd --system --no-create-home --shell /usr/sbin/nologin mta
fi
if ! getent group mtadrop >/dev/null; then
    groupadd --system mtadrop
fi
