#!/usr/bin/env bash
# run.sh - set everything up and run mtad in the foreground on the embedded default:
# SMTP on 127.0.0.1:2525, the web UI on 127.0.0.1:8080, the queue in ./var/data.
# Extra arguments are passed to mtad (e.g. -o smart_relay=[127.0.0.1]:2526).
# Run as root, mtad drops to the account mail_owner (default mta) after start-up: it is
# created here when missing. Run as any other user, mtad stays that user.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/deps.sh" build
cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$ROOT/build" -j"$(nproc)" --target mtad mtactl
mkdir -p "$ROOT/var/data"
"$ROOT/scripts/accounts.sh"
exec "$ROOT/build/mtad" -c "$ROOT/etc/mtad-default.conf" \
    -o data_volume="$ROOT/var/data" -o maillog_file="$ROOT/var/maillog" "$@"
