#!/usr/bin/env bash
# test/deps.sh: make sure the Debian packages that build and test customer360 are present.
# As root it installs what is missing (apt-get update once, then install); otherwise it prints
# the exact install command and fails.  A machine that has everything does no apt work at all.
set -euo pipefail

# The later sources need MariaDB, librdkafka, kcat and jansson; install them now so a fresh
# machine is set up once.
PACKAGES=(postgresql-15 postgresql-server-dev-15 make gcc python3
          mariadb-server libmariadb-dev librdkafka-dev kcat libjansson-dev)

missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg-query fails for a package dpkg has never seen; that is "missing" too.
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages; run as root:" >&2
    echo "apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/c360-deps.XXXXXX)
# Package scripts must not start services nobody asked for (MariaDB, the packaged PostgreSQL
# cluster): the tests start their own servers on private ports.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
fi
cleanup() { [ "$made_policy" = 1 ] && rm -f "$policy"; rm -f "$log"; }
trap cleanup EXIT

if ! { apt-get update && apt-get install -y "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "deps.sh: package installation failed" >&2
    exit 1
fi
