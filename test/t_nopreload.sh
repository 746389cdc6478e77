#!/usr/bin/env bash
# test/t_nopreload.sh: customer360 on a server that does NOT preload it: CREATE EXTENSION
# succeeds with a NOTICE (or WARNING) naming shared_preload_libraries, the SQL API works,
# no workers run.
# Starts and stops its own throwaway cluster on the first free port from 54320.
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh

PORT=
BASE=$(mktemp -d /tmp/c360-nopreload.XXXXXX)
chmod a+rx "$BASE"
DIR=$BASE/pg
cleanup() { pg_stop "$DIR"; rm -rf "$BASE"; }
trap cleanup EXIT
trap 'exit 1' INT TERM

die() {
    echo "FAIL: $*" >&2
    tail -n 30 "$DIR/server.log" >&2 2>/dev/null || true
    exit 1
}
q() { pg_psql "$PORT" -At -d c360_nopreload "$@"; }

# from 54320, on another port if the one that looked free is taken before the server binds it
pg_start_free "$DIR" 54320 || die "the server did not start"
PORT=$PG_PORT
pg_psql "$PORT" -d postgres -c "CREATE DATABASE c360_nopreload"

echo "CREATE EXTENSION without shared_preload_libraries"
out=$(q -c "CREATE EXTENSION customer360" 2>&1) || die "CREATE EXTENSION failed: $out"
echo "  $out"
# A NOTICE raised inside an extension script is hidden (CREATE EXTENSION runs it with
# client_min_messages at least WARNING), so a WARNING is as good: the user must see it.
grep -Eq "(NOTICE|WARNING):.*shared_preload_libraries" <<<"$out" ||
    die "CREATE EXTENSION printed no NOTICE or WARNING mentioning shared_preload_libraries: '$out'"

echo "no customer360 workers run"
n=$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'c360%'")
[ "$n" = 0 ] || die "$n c360 workers run on a server that does not preload the library"

echo "apply_change, apply_changes, tick and verify work"
q >/dev/null <<'SQL'
SELECT c360.apply_change('customers', 'insert', NULL,
    '{"customer_id":"n1","email":"n1@example.com","first_name":"Nora","loyalty_tier":"silver",
      "signup_date":"2023-05-06T07:08:09Z"}');
SELECT c360.apply_changes(jsonb_build_array(
    jsonb_build_object('input', 'orders', 'op', 'insert', 'old', NULL, 'new',
        jsonb_build_object('order_id', 'no1', 'customer_id', 'n1', 'order_status', 'delivered',
                           'total_amount', 19.99, 'item_count', 1, 'channel', 'app',
                           'created_at', c360.as_of() - interval '20 days')),
    jsonb_build_object('input', 'support_tickets', 'op', 'insert', 'old', NULL, 'new',
        jsonb_build_object('ticket_id', 'nt1', 'customer_id', 'n1', 'status', 'open',
                           'category', 'billing', 'created_at', c360.as_of() - interval '1 day')),
    jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'old', NULL, 'new',
        jsonb_build_object('event_id', 'ne1', 'customer_id', 'n1', 'session_id', 's1',
                           'event_type', 'product_view', 'product_id', 'p1',
                           'event_time', c360.as_of() - interval '2 days'))));
SQL
row=$(q -c "SELECT total_orders, lifetime_value, lifecycle_stage, has_open_support_issue,
                   product_views_last_30d
            FROM c360.customer_360 WHERE customer_id = 'n1'")
[ "$row" = "1|19.99|active|t|1" ] || die "profile of n1 is '$row', expected '1|19.99|active|t|1'"
n=$(q -c "SELECT count(*) FROM c360.verify()")
[ "$n" = 0 ] || die "verify() returned $n rows after apply"

# Without a ticker the clock only moves when told to.
q -c "SELECT c360.tick(c360.as_of() + interval '30 days')" >/dev/null
stage=$(q -c "SELECT lifecycle_stage || '|' || product_views_last_30d FROM c360.customer_360 WHERE customer_id = 'n1'")
[ "$stage" = "at_risk|0" ] || die "after a 30-day tick n1 is '$stage', expected 'at_risk|0'"
n=$(q -c "SELECT count(*) FROM c360.verify()")
[ "$n" = 0 ] || die "verify() returned $n rows after tick"
echo "ok"
