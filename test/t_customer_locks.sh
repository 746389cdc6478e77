#!/usr/bin/env bash
# test/t_customer_locks.sh: the customer locks' two levels (src/core/maintain.c,
# c360_maintain_lock).  One session holds a batch open (through dblink) while another applies:
#   - a small batch of other customers goes through at once, whatever the hashes: two
#     sources whose partitions are keyed by customer run side by side (with 1,024 stripes, a
#     batch of 1,000 customers blocked nearly every other batch);
#   - a small batch that shares one customer waits (lock_timeout: 55P03);
#   - a batch of more than 1,024 customers waits for any open batch and blocks every batch
#     (it takes the all-customers lock exclusively), of other customers too.
# Two batches that update the same orders at once, each its own column, both land (the
# second writes over the rows' new versions by their ctids).
# Then every committed batch's rows are in the mirror and none of a timed-out one's, and
# verify() is empty.  Starts and stops its own throwaway cluster on the first free port
# from 54340 (no preload needed: apply_changes runs in the session).
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh

PORT=
BASE=$(mktemp -d /tmp/c360-locks.XXXXXX)
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
q() { pg_psql "$PORT" -At -d c360_locks "$@"; }

pg_start_free "$DIR" 54340 || die "the server did not start"
PORT=$PG_PORT
pg_psql "$PORT" -d postgres -c "CREATE DATABASE c360_locks" >/dev/null
q -c "SET client_min_messages = warning" -c "CREATE EXTENSION customer360" \
    -c "CREATE EXTENSION dblink" >/dev/null 2>&1 || die "CREATE EXTENSION failed"

# new customers p<first>..p<last> as one batch, as SQL text
q >/dev/null <<'SQL'
CREATE FUNCTION batch(prefix text, first int, last int) RETURNS text LANGUAGE sql AS $$
    SELECT format('SELECT c360.apply_changes(%L::jsonb)',
                  jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert', 'new',
                      jsonb_build_object('customer_id', prefix || i, 'email', prefix || i || '@example.com',
                                         'signup_date', '2029-01-01')) ORDER BY i))
    FROM generate_series(first, last) i $$;
-- apply a batch in this session: 'applied' or, when it waited longer than lock_timeout, 'waited'
CREATE FUNCTION try_batch(prefix text, first int, last int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE batch(prefix, first, last);
    RETURN 'applied';
EXCEPTION WHEN lock_not_available THEN
    RETURN 'waited';
END $$;
SQL

# hold BATCH open in the dblink session, run the checks (lines "label|expected|got"), end it
held() { # prefix first last -- then the checks as SQL lines of "SELECT label, expected, got"
    local prefix=$1 first=$2 last=$3
    shift 3
    q <<SQL
SELECT dblink_connect('holder', 'host=127.0.0.1 port=$PORT user=postgres dbname=c360_locks') \\g /dev/null
SELECT dblink_exec('holder', 'BEGIN') \\g /dev/null
SELECT * FROM dblink('holder', batch('$prefix', $first, $last)) AS t(n bigint) \\g /dev/null
SET lock_timeout = '1s';
$*
SELECT dblink_exec('holder', 'COMMIT') \\g /dev/null
SELECT dblink_disconnect('holder') \\g /dev/null
SQL
}
check() { # output of held: every line's expected equals got
    local line bad=0
    while IFS='|' read -r label expected got; do
        if [ "$expected" = "$got" ]; then echo "  ok: $label ($got)"; else echo "  $label: expected $expected, got $got"; bad=1; fi
    done <<<"$1"
    [ "$bad" = 0 ] || die "customer locks"
}

echo "a batch of 1,000 customers held open"
check "$(held a 1 1000 \
    "SELECT 'a batch of 20 other customers', 'applied', try_batch('b', 1, 20);" \
    "SELECT 'a batch of 1,000 other customers', 'applied', try_batch('b', 21, 1020);" \
    "SELECT 'a batch sharing one customer', 'waited', try_batch('a', 1000, 1010);" \
    "SELECT 'a batch of 1,500 other customers', 'waited', try_batch('c', 1, 1500);")"

echo "a batch of 1,500 customers held open"
check "$(held d 1 1500 \
    "SELECT 'a batch of one other customer', 'waited', try_batch('e', 1, 1);" \
    "SELECT 'a batch of 2,000 other customers', 'waited', try_batch('e', 2, 2001);")"

# two batches at once: FIRST held open in one session while SECOND (whose text contains
# MARK) waits for it in another; then FIRST commits.  Prints SECOND's outcome: 'applied', or
# its error message.
at_once() { # first second mark
    q <<SQL
SELECT dblink_connect('first', 'host=127.0.0.1 port=$PORT user=postgres dbname=c360_locks') \g /dev/null
SELECT dblink_connect('second', 'host=127.0.0.1 port=$PORT user=postgres dbname=c360_locks') \g /dev/null
SELECT dblink_exec('first', 'BEGIN') \g /dev/null
SELECT * FROM dblink('first', \$q\$$1\$q\$) AS t(n bigint) \g /dev/null
SELECT dblink_send_query('second', \$q\$$2\$q\$) \g /dev/null
-- the second waits on the first's rows (a bounded poll: 10 s)
DO \$\$BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                          AND query LIKE '%$3%');
        PERFORM pg_sleep(0.1);
    END LOOP;
END\$\$;
SELECT dblink_exec('first', 'COMMIT') \g /dev/null
SELECT count(*) FROM dblink_get_result('second', false) AS t(n bigint) \g /dev/null
SELECT COALESCE(NULLIF(dblink_error_message('second'), 'OK'), 'applied');
SELECT dblink_disconnect('first'), dblink_disconnect('second') \g /dev/null
SQL
}

echo "two batches insert the same new order for different customers at once"
# The second one's upsert waits for the first's row; when the first commits, the second
# would move the order to its customer without refreshing the first's: it fails with 40001
# instead, and applied again it sees the row and refreshes both.
order() { # customer -> a batch inserting order race-1 for it
    echo "SELECT c360.apply_changes('[{\"input\": \"orders\", \"op\": \"insert\", \"new\": {\"order_id\": \"race-1\", \"customer_id\": \"$1\", \"total_amount\": 10, \"created_at\": \"2029-06-01\"}}]')"
}
got=$(at_once "$(order a1)" "$(order a2)" race-1)
[[ "$got" == *"a concurrent batch"* ]] || die "the second batch: expected 40001 (a concurrent batch ...), got '$got'"
echo "  ok: the second batch failed with 40001"
q -c "$(order a2)" >/dev/null
got=$(q -c "SELECT string_agg(customer_id || '=' || total_orders, ' ' ORDER BY customer_id)
            FROM c360.customer_360 WHERE customer_id IN ('a1', 'a2')")
[ "$got" = "a1=0 a2=1" ] || die "after the retry the profiles hold $got, expected a1=0 a2=1"
echo "  ok: applied again, the order is a2's and a1's profile says so"

echo "two batches update the same orders at once, each its own column"
# The second one's lock of the stored rows waits for the first's; when the first commits,
# it locks the rows' new versions and writes over them by their ctids (src/core/apply.c,
# write_updates): both updates stay, and the second batch is not refused.
q -c "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'orders', 'op', 'insert',
        'new', jsonb_build_object('order_id', 'same-' || i, 'customer_id', 'a' || (100 + i), 'total_amount', 1,
                                  'order_status', 'pending', 'created_at', '2029-06-01'))))
      FROM generate_series(1, 20) i" >/dev/null
updates() { # column value -> a batch setting that column of same-1..same-20
    echo "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'orders', 'op', 'update',
        'old', jsonb_build_object('order_id', 'same-' || i),
        'new', jsonb_build_object('order_id', 'same-' || i, '$1', $2)))) FROM generate_series(1, 20) i"
}
got=$(at_once "$(updates total_amount 7)" "$(updates order_status "'shipped'")" shipped)
[ "$got" = applied ] || die "the second batch: expected it applied, got '$got'"
got=$(q -c "SELECT count(*) FILTER (WHERE total_amount = 7 AND order_status = 'shipped') || '/' || count(*)
            FROM c360.orders WHERE order_id LIKE 'same-%'")
[ "$got" = "20/20" ] || die "orders with both updates: $got, expected 20/20"
got=$(q -c "SELECT count(*) FROM c360.customer_360 WHERE customer_id ~ '^a1([01][0-9]|20)$'
            AND customer_id <> 'a100' AND lifetime_value = 7 AND total_orders = 1")
[ "$got" = 20 ] || die "profiles with the updated amount: $got, expected 20"
echo "  ok: both batches' columns are in all 20 orders and their profiles"

echo "every committed batch is in the mirror, nothing of a batch that waited; verify() empty"
got=$(q -c "SELECT string_agg(left(customer_id, 1) || '=' || n, ' ' ORDER BY 1)
            FROM (SELECT left(customer_id, 1) AS customer_id, count(*) AS n FROM c360.customers GROUP BY 1) x")
[ "$got" = "a=1000 b=1020 d=1500" ] || die "the mirror holds $got, expected a=1000 b=1020 d=1500"
got=$(q -c "SELECT count(*) FROM c360.customer_360")
[ "$got" = 3520 ] || die "$got profiles, expected 3520"
[ "$(q -c "SELECT count(*) FROM c360.verify()")" = 0 ] || die "verify() is not empty"
if grep -q "deadlock detected" "$DIR/server.log"; then die "a deadlock in the server log"; fi
echo "t_customer_locks: all checks passed"
