#!/usr/bin/env bash
# test/t_workers.sh: the background workers on a server that preloads customer360 with
# c360.database = 'c360_workers' and the ticker on (test/run.sh's cluster): launcher and ticker
# run, the clock advances, a killed ticker comes back, and DROP EXTENSION stops the ticker.
set -euo pipefail

DB=c360_workers
: "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
export PGHOST PGPORT PGUSER

q() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
die() { echo "FAIL: $*" >&2; exit 1; }

# poll DESC CMD...: run CMD until it succeeds, every 0.2 s, for at most ~30 s.
poll() {
    local desc=$1; shift
    local i
    for ((i = 0; i < 150; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "gave up after 30 s waiting for: $desc"
}

# The pid of the worker whose backend_type and application_name are both NAME ('' if none).
worker_pid() {
    q -c "SELECT pid FROM pg_stat_activity
          WHERE backend_type = '$1' AND application_name = '$1' AND datname = '$DB'" 2>/dev/null |
        head -n 1
}
worker_running() { [ -n "$(worker_pid "$1")" ]; }
worker_gone() { [ -z "$(worker_pid "$1")" ] && q -c "SELECT 1" >/dev/null; }
worker_replaced() { local p; p=$(worker_pid "$1"); [ -n "$p" ] && [ "$p" != "$2" ]; }
clock_past() { [ "$(q -c "SELECT c360.as_of() > '$1'::timestamptz")" = t ]; }
server_up() { q -c "SELECT 1" >/dev/null; }

# run.sh creates the database with the cluster; create it here too so the test also runs
# against any server configured the same way.
if [ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" = 0 ]; then
    psql -X -q -d postgres -c "CREATE DATABASE $DB"
fi
q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" 2>/dev/null
q -c "CREATE EXTENSION customer360"

echo "launcher and ticker appear in pg_stat_activity"
poll "the c360 launcher in $DB" worker_running "c360 launcher"
poll "the c360 ticker in $DB" worker_running "c360 ticker"
launcher=$(worker_pid "c360 launcher")
ticker=$(worker_pid "c360 ticker")
echo "  launcher pid $launcher, ticker pid $ticker"

echo "the ticker advances the clock"
t0=$(q -c "SELECT c360.as_of()")
poll "c360.as_of() to move past $t0" clock_past "$t0"
echo "  as_of $t0 -> $(q -c "SELECT c360.as_of()")"

echo "apply_change with the ticker running; verify() is empty"
q <<'SQL'
SELECT c360.apply_change('customers', 'insert', NULL,
    '{"customer_id":"w1","email":"w1@example.com","first_name":"Wanda","last_name":"Worker",
      "loyalty_tier":"gold","acquisition_channel":"web","signup_date":"2024-01-02T03:04:05Z"}');
SELECT c360.apply_change('orders', 'insert', NULL,
    json_build_object('order_id', 'wo1', 'customer_id', 'w1', 'order_status', 'shipped',
                      'total_amount', 42.50, 'item_count', 2, 'channel', 'web',
                      'created_at', c360.as_of() - interval '10 days')::jsonb);
SQL
row=$(q -c "SELECT total_orders, lifetime_value, lifecycle_stage FROM c360.customer_360 WHERE customer_id = 'w1'")
[ "$row" = "1|42.50|active" ] || die "profile of w1 is '$row', expected '1|42.50|active'"
n=$(q -c "SELECT count(*) FROM c360.verify()")
[ "$n" = 0 ] || { q -c "SELECT * FROM c360.verify() LIMIT 20"; die "verify() returned $n rows"; }

echo "a terminated ticker is restarted by the launcher"
q -c "SELECT pg_terminate_backend($ticker)" >/dev/null
poll "a new ticker after pg_terminate_backend($ticker)" worker_replaced "c360 ticker" "$ticker"
[ "$(worker_pid "c360 launcher")" = "$launcher" ] || die "the launcher changed while only the ticker died"
ticker=$(worker_pid "c360 ticker")
echo "  new ticker pid $ticker"

echo "kill -9 of the ticker: the postmaster resets, the launcher starts a new ticker"
# SIGKILL of a backend with shared memory makes the postmaster restart every process
# (crash recovery), so the launcher itself comes back and starts the ticker anew.
kill -9 "$ticker"
poll "the server back after kill -9" server_up
poll "a new ticker after kill -9 of $ticker" worker_replaced "c360 ticker" "$ticker"
ticker=$(worker_pid "c360 ticker")
echo "  new ticker pid $ticker"
t1=$(q -c "SELECT c360.as_of()")
poll "c360.as_of() to move past $t1 after the restart" clock_past "$t1"
n=$(q -c "SELECT count(*) FROM c360.verify()")
[ "$n" = 0 ] || die "verify() returned $n rows after the restart"

echo "DROP EXTENSION stops the ticker; the launcher stays"
q -c "DROP EXTENSION customer360"
poll "the ticker to stop after DROP EXTENSION" worker_gone "c360 ticker"
worker_running "c360 launcher" || die "the launcher is gone after DROP EXTENSION"
echo "ok"
