#!/usr/bin/env bash
# test/t_durability.sh: no source loses or repeats data across crashes of the local server,
# with synchronous_commit = off as with on (issue 15).
#
# With synchronous_commit = off a local commit may still sit in WAL buffers when it returns;
# a crash takes it back.  A source that tells its upstream "done" at that point (the
# PostgreSQL source's standby status update moves the slot's confirmed_flush_lsn) never gets
# those changes again: the mirror stays behind for good.  A sink that publishes outbox rows
# before they are durable may see them undone and their seq numbers handed out again.
#
# The test starts its own servers (it kills the local postmaster, so it never uses the
# cluster of test/run.sh):
#   local   PostgreSQL 15, customer360 preloaded, c360.database = 'c360_dur', fsync = on
#   source  PostgreSQL 15, wal_level = logical: orders (test/pg_source_setup.sql, one
#           database per round, rand_cust() made to name the CRM's customers c1..cN)
#   MariaDB the CRM (test/mysql_crm.sql as crm_off / crm_on; data and changes from
#           test/mysql_changes.py)
#   broker  test/kafka_broker: topics events_off/_on (events from test/kafka_events.py,
#           produced with kcat) and sink_off/_on
# Two rounds, synchronous_commit = off first, then on (ALTER SYSTEM + a restart of the local
# server).  Each round, on a fresh extension:
#   1. sources pg_<r> (postgres-cdc, orders), my_<r> (mysql-cdc, customers and
#      support_tickets), kf_<r> (kafka, behavioral_events); initial data in sync; then the
#      segment multi_<r> (total_orders >= 2) and the Kafka sink sk_<r> on it
#   2. writers on all three upstreams without pause (PG: CALL churn(); MariaDB: random
#      changes; Kafka: kcat producing more events), and meanwhile faults, each followed by a
#      bounded poll until the server and all four workers are back: kill -9 of the PG source
#      worker x3, of the MySQL and the Kafka source workers x2 each, of the sink worker x2
#      (every one a crash recovery of the whole local server), kill -9 of the postmaster and a
#      start, pg_ctl -m immediate stop and a start
#   3. writers stopped; a bounded poll (60 s) until every mirror equals its upstream row for
#      row (orders: count and hash over every mapped column; customers and tickets: sorted
#      text dumps of both sides; events: count and hash of the produced unique event ids) and
#      c360.verify() is empty
#   4. counts: the PG source's changes_applied grew by exactly the orders row changes the
#      source committed (change_log) since the initial sync; the MySQL source's by exactly
#      the row changes of the two tables in the binlog since then (test/mysql_decode.c
#      count); the Kafka source's changes_applied and its stored positions equal the
#      messages produced (1% producer re-sends included: each is a message)
#   5. the sink's topic read back with kcat: no seq carried by two different messages (the
#      snapshot's enters share the starting seq: there per customer), the header is the
#      value's seq, and each customer's message with the highest seq agrees with
#      c360.segment_members (enter/update: a member with that profile; exit: not a
#      member), every member has one, and the members are the predicate's customers.
#      Repeats of a message are allowed (at-least-once).
# Exit 0 only if every check of both rounds passed.  A failed run keeps its servers' logs
# (and their data directories with DUR_KEEP_DATA=1).  Sizes: DUR_CUSTOMERS, DUR_TICKETS,
# DUR_ORDERS, DUR_EVENTS; DUR_ROUNDS="off" runs one round.  About 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/servers.sh

DB=c360_dur
CUSTOMERS=${DUR_CUSTOMERS:-2000}
TICKETS=${DUR_TICKETS:-4000}
ORDERS=${DUR_ORDERS:-3000}
EVENTS=${DUR_EVENTS:-2000}
ROUNDS=${DUR_ROUNDS:-off on}
SYNC_SECS=${DUR_SYNC_SECS:-60}

T0=$(date +%s.%N)
failures=()
writers=()
LOCAL_DIR=
SRC_DIR=
TMP=$(mktemp -d /tmp/c360-dur.XXXXXX)
MY_DIR=$TMP/mysql
mkdir -p "$MY_DIR"
BROKER_PID=
MY_STARTED=
M=                  # the round: off | on

. test/lib.sh
. test/crm_compare.sh

# one rendering of timestamps on every side
export PGHOST=127.0.0.1 PGUSER=postgres PGTZ=UTC PGDATESTYLE=ISO

stop_writers() {
    [ -n "$M" ] && touch "$TMP/stop_$M"
    [ -n "$M" ] && [ -n "${SRC_PORT:-}" ] && s -c "UPDATE ctl SET stop = true" >/dev/null 2>&1
    local p
    for p in "${writers[@]}"; do wait "$p" 2>/dev/null || true; done
    writers=()
}

cleanup() {
    local rc=$?
    set +e
    if [ "${#writers[@]}" -gt 0 ]; then
        [ -n "$M" ] && touch "$TMP/stop_$M"
        [ -n "$M" ] && timeout 10 psql -X -qAt -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d "shop_$M" \
            -c "UPDATE ctl SET stop = true" >/dev/null 2>&1
        sleep 1
        for p in "${writers[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    fi
    [ -n "$LOCAL_DIR" ] && pg_stop "$LOCAL_DIR"
    [ -n "$SRC_DIR" ] && pg_stop "$SRC_DIR"
    [ -n "$MY_STARTED" ] && mysql_stop "$MY_DIR"
    broker_stop
    if [ "$rc" -eq 0 ]; then
        rm -rf "$TMP" "$LOCAL_DIR" "$SRC_DIR"
    else
        # the logs and the test's files stay; the data directories (some 300 MB) only with
        # DUR_KEEP_DATA=1
        [ -n "${DUR_KEEP_DATA:-}" ] || rm -rf "$LOCAL_DIR/data" "$SRC_DIR/data" "$MY_DIR/data"
        echo "logs kept: local server $LOCAL_DIR/server.log, source server $SRC_DIR/server.log,"
        echo "  MariaDB $MY_DIR/server.log, broker $TMP/broker.err, other files in $TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT

die() {
    echo "FAIL: $*"
    failures+=("$*")
    diagnostics
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Clients.  q (lib.sh): the local database.  s: the round's source database.  my: MariaDB.
s() { psql -X -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d "shop_$M" "$@"; }
my() { mysql_cli "$MY_PORT" -N -B "$@"; }
feed() { mysql_cli "$MY_PORT" --batch >/dev/null; }
crm_sql() { sed "s/crm_db/crm_$M/g"; }

server_up() { q -c "SELECT 1" >/dev/null 2>&1; }
local_start() {
    # (after a kill -9 of the postmaster pg_ctl says "another server might be running": noise)
    as_pg "$PG_BIN/pg_ctl" -D "$LOCAL_DIR/data" -l "$LOCAL_DIR/server.log" -w -t 60 start >/dev/null 2>"$TMP/pg_ctl.err" ||
        { cat "$TMP/pg_ctl.err"; tail -n 20 "$LOCAL_DIR/server.log"; return 1; }
}

# wpid source|sink NAME: the worker's pid, if it runs
wpid() {
    q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 $1'
          AND application_name = '$2' AND datname = '$DB'" 2>/dev/null | head -n 1
}
applied_of() { q -c "SELECT changes_applied FROM c360.source_status WHERE name = '$1'"; }
all_streaming() { state_is "pg_$M" streaming && state_is "my_$M" streaming && state_is "kf_$M" streaming; }
# the server answers and the three source workers and the sink worker run
all_back() {
    server_up && [ -n "$(wpid source "pg_$M")" ] && [ -n "$(wpid source "my_$M")" ] &&
        [ -n "$(wpid source "kf_$M")" ] && [ -n "$(wpid sink "sk_$M")" ]
}
sink_caught_up() {
    [ "$(q -c "SELECT state = 'streaming' AND backlog = 0 AND last_error IS NULL
               FROM c360.sink_status WHERE name = 'sk_$M'" 2>/dev/null)" = t ]
}

# ---------------------------------------------------------------------------------------------
# Comparisons.
ORDER_COLS="order_id, customer_id, order_status, total_amount, item_count, channel, created_at, updated_at"
# "rows:hashsum" of the orders' mapped columns as text (same SQL on both sides)
fp_orders() { echo "SELECT count(*) || ':' || COALESCE(sum(hashtextextended(ROW($ORDER_COLS)::text, 0)), 0) FROM $1.orders"; }
PG_SRC_FP=
pg_equal() { [ "$(q -c "$(fp_orders c360)")" = "$PG_SRC_FP" ]; }

# The CRM tables on MariaDB and their mirrors, as the same sorted text (t_mysql_source.sh).
dump_mysql() { crm_dump_remote "crm_$M" "$TMP/customers.my" "$TMP/tickets.my"; }
dump_pg() { crm_dump_mirror "$TMP/customers.pg" "$TMP/tickets.pg"; }
my_equal() {
    dump_mysql && dump_pg && cmp -s "$TMP/customers.my" "$TMP/customers.pg" && cmp -s "$TMP/tickets.my" "$TMP/tickets.pg"
}

# The produced unique event ids (dur.want_<r>) against the mirror: "count:hashsum" each.
kf_want() { q -c "SELECT count(*) || ':' || COALESCE(sum(hashtextextended(id, 0)), 0) FROM dur.want_$M"; }
kf_have() {
    q -c "SELECT count(*) || ':' || COALESCE(sum(hashtextextended(event_id, 0)), 0)
          FROM c360.behavioral_events WHERE event_id LIKE 'ev$M-%'"
}
kf_load_want() {
    q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS dur.want_$M" -c "CREATE TABLE dur.want_$M (id text PRIMARY KEY)" \
      -c "\\copy dur.want_$M FROM '$TMP/ids_$M'"
    KF_WANT=$(kf_want)
}
KF_WANT=
kf_equal() { [ "$(kf_have)" = "$KF_WANT" ]; }
everything_equal() { pg_equal && my_equal && kf_equal && verify_empty; }

# orders changes the source committed (statement triggers, same transaction as the change)
src_order_changes() { s -c "SELECT COALESCE(sum(n), 0) FROM change_log WHERE tbl = 'orders'"; }
master_pos() { my -e "SHOW MASTER STATUS" | awk '{print $1, $2}'; }
produced() { cat "$TMP/produced_$M" 2>/dev/null | wc -l; }
positions_of() { q -c "SELECT COALESCE(sum(position::bigint), 0) FROM c360.source_positions WHERE source = '$1'"; }

diagnostics() {
    set +e
    echo "---- diagnostics (round synchronous_commit = ${M:-?})"
    q -c "SELECT name, state, position, changes_applied, dead_letters, last_error FROM c360.source_status" 2>&1
    q -c "SELECT name, state, position, backlog, last_error FROM c360.sink_status" 2>&1
    if [ -n "$M" ] && server_up; then
        # the source's orders next to the mirror, by key
        q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS dur.src_orders" \
          -c "CREATE TABLE dur.src_orders (LIKE c360.orders INCLUDING DEFAULTS)" >/dev/null 2>&1
        s -c "COPY (SELECT $ORDER_COLS FROM orders) TO STDOUT" 2>/dev/null |
            q -c "COPY dur.src_orders ($ORDER_COLS) FROM STDIN" 2>&1
        echo "orders: source $(q -c "SELECT count(*) FROM dur.src_orders"), mirror $(q -c "SELECT count(*) FROM c360.orders"); by key (missing in the mirror | extra in the mirror | different values):"
        q -c "SELECT (SELECT count(*) FROM dur.src_orders s WHERE NOT EXISTS (SELECT 1 FROM c360.orders o WHERE o.order_id = s.order_id))
                     || ' | ' || (SELECT count(*) FROM c360.orders o WHERE NOT EXISTS (SELECT 1 FROM dur.src_orders s WHERE o.order_id = s.order_id))
                     || ' | ' || (SELECT count(*) FROM dur.src_orders s JOIN c360.orders o USING (order_id)
                                  WHERE ROW(s.customer_id, s.order_status, s.total_amount, s.item_count, s.channel, s.created_at, s.updated_at)
                                        IS DISTINCT FROM ROW(o.customer_id, o.order_status, o.total_amount, o.item_count, o.channel, o.created_at, o.updated_at))" 2>&1
        q -c "(SELECT 'source only: ' || ROW(s.*)::text FROM dur.src_orders s
               WHERE NOT EXISTS (SELECT 1 FROM c360.orders o WHERE o.order_id = s.order_id) ORDER BY s.order_id LIMIT 4)
              UNION ALL
              (SELECT 'mirror only: ' || ROW(o.order_id, o.customer_id, o.order_status, o.total_amount, o.item_count, o.channel, o.created_at, o.updated_at)::text
               FROM c360.orders o WHERE NOT EXISTS (SELECT 1 FROM dur.src_orders s WHERE o.order_id = s.order_id) ORDER BY 1 LIMIT 4)
              UNION ALL
              (SELECT 'source: ' || ROW(s.*)::text || E'\n    mirror: ' ||
                      ROW(o.order_id, o.customer_id, o.order_status, o.total_amount, o.item_count, o.channel, o.created_at, o.updated_at)::text
               FROM dur.src_orders s JOIN c360.orders o USING (order_id)
               WHERE ROW(s.customer_id, s.order_status, s.total_amount, s.item_count, s.channel, s.created_at, s.updated_at)
                     IS DISTINCT FROM ROW(o.customer_id, o.order_status, o.total_amount, o.item_count, o.channel, o.created_at, o.updated_at)
               ORDER BY 1 LIMIT 4)" 2>&1 | cut -c1-220
        dump_mysql; dump_pg
        for t in customers tickets; do
            echo "$t: MariaDB $(wc -l <"$TMP/$t.my") rows, mirror $(wc -l <"$TMP/$t.pg") rows, $(diff "$TMP/$t.my" "$TMP/$t.pg" | grep -c '^[<>]') differing lines (< MariaDB, > mirror):"
            diff "$TMP/$t.my" "$TMP/$t.pg" | grep '^[<>]' | head -n 6 | cut -c1-200
        done
        [ -n "$KF_WANT" ] && echo "events (count:hash): produced $KF_WANT, mirror $(kf_have); missing $(q -c "SELECT count(*) FROM dur.want_$M w WHERE NOT EXISTS (SELECT 1 FROM c360.behavioral_events e WHERE e.event_id = w.id)"), extra $(q -c "SELECT count(*) FROM c360.behavioral_events e WHERE e.event_id LIKE 'ev$M-%' AND NOT EXISTS (SELECT 1 FROM dur.want_$M w WHERE w.id = e.event_id)")"
        echo "verify(): $(q -c "SELECT count(*) FROM c360.verify()" 2>&1) rows"
        q -c "SELECT * FROM c360.verify() LIMIT 6" 2>&1
    fi
    echo "---- local server log (c360 and crash lines, last 25)"
    grep -aE 'c360|terminated by signal|database system was|redo' "$LOCAL_DIR/server.log" 2>/dev/null | tail -n 25 | cut -c1-250
    echo "----"
}

# ---------------------------------------------------------------------------------------------
# Faults.  Each ends with a bounded poll until the server and all four workers are back.
back_after() { # WHAT: poll, count a failure if not back
    poll 90 "the local server and all workers back after $1" all_back && return 0
    fail "round $M: the local server and its workers did not come back within 90 s after $1 (workers: $(q -c "SELECT string_agg(application_name, ',') FROM pg_stat_activity WHERE backend_type LIKE 'c360 %'" 2>/dev/null))"
    return 1
}
pause_random() { sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.6 + (r % 150) / 100 }')"; }

kill_worker() { # source|sink NAME
    local pid
    wrunning() { [ -n "$(wpid "$1" "$2")" ]; }
    poll 30 "a $2 worker to kill" wrunning "$1" "$2" || { fail "round $M: no $2 worker to kill within 30 s"; return 1; }
    pid=$(wpid "$1" "$2")
    kill -9 "$pid"
    back_after "kill -9 of the $2 worker (pid $pid)" || return 1
    say "  kill -9 of $2 (pid $pid): back as $(wpid "$1" "$2")"
}

none_alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
kill_postmaster() {
    local pm kids t
    pm=$(head -n 1 "$LOCAL_DIR/data/postmaster.pid")
    # its children: they exit once they see the postmaster gone
    mapfile -t kids < <(pgrep -P "$pm" || true)
    t=$(date +%s.%N)
    kill -9 "$pm"
    if ! poll 60 "the children of the killed postmaster $pm to exit" none_alive "$pm" "${kids[@]}"; then
        fail "round $M: processes of the killed postmaster still run 60 s later: $(ps -o pid=,args= -p "$(IFS=,; echo "${kids[*]}")" 2>/dev/null | tr '\n' ';')"
        kill -9 "${kids[@]}" 2>/dev/null || true
        sleep 1
    fi
    local_start || { fail "round $M: the local server did not start after kill -9 of the postmaster"; return 1; }
    back_after "kill -9 of the postmaster (pid $pm)" || return 1
    say "  kill -9 of the postmaster (pid $pm, ${#kids[@]} children): started again, back after $(elapsed "$t")s"
}
immediate_restart() {
    local t
    t=$(date +%s.%N)
    as_pg "$PG_BIN/pg_ctl" -D "$LOCAL_DIR/data" -m immediate -w -t 60 stop >/dev/null ||
        { fail "round $M: pg_ctl -m immediate stop failed"; return 1; }
    local_start || { fail "round $M: the local server did not start after the immediate stop"; return 1; }
    back_after "pg_ctl -m immediate stop and start" || return 1
    say "  pg_ctl -m immediate stop, then start: back after $(elapsed "$t")s"
}

# ---------------------------------------------------------------------------------------------
# Writers, each until $TMP/stop_<r> exists (PG: until ctl.stop).
mysql_writer() {
    local seed=1000
    while [ ! -e "$TMP/stop_$M" ]; do
        seed=$((seed + 1))
        python3 test/mysql_changes.py changes 200 "$seed" "$CUSTOMERS" "$TICKETS" | crm_sql | feed ||
            { echo "MariaDB writer: chunk $seed failed" >>"$TMP/writer_errors_$M"; return 1; }
        sleep 0.1
    done
}
kafka_writer() {
    local first=$((EVENTS + 1)) n=100
    while [ ! -e "$TMP/stop_$M" ]; do
        n=$((n + 1))
        python3 test/kafka_events.py events "$first" 200 --customers "$CUSTOMERS" --prefix "ev$M" \
            --dups 0.01 --seed "$n" --ids "$TMP/chunk_ids_$M" | sed 's/cust-/c/g' >"$TMP/chunk_$M"
        if timeout 60 kcat -P -b "$B" -t "events_$M" -K: -z lz4 <"$TMP/chunk_$M" 2>>"$TMP/kcat.err"; then
            cat "$TMP/chunk_$M" >>"$TMP/produced_$M"
            cat "$TMP/chunk_ids_$M" >>"$TMP/ids_$M"
        else
            echo "Kafka writer: kcat failed on chunk $n (events from $first)" >>"$TMP/writer_errors_$M"
            return 1
        fi
        first=$((first + 200))
        sleep 0.3
    done
}

# ---------------------------------------------------------------------------------------------
say "servers"
LOCAL_DIR=$(mktemp -d /tmp/c360-dur-local.XXXXXX)
pg_start_free "$LOCAL_DIR" 55410 \
    "fsync = on" \
    "shared_preload_libraries = 'customer360'" \
    "c360.database = '$DB'" \
    "c360.tick_interval = 200" \
    "max_worker_processes = 32" || die "the local server did not start"
LOCAL_PORT=$PG_PORT
export PGPORT=$LOCAL_PORT
psql -X -q -d postgres -c "CREATE DATABASE $DB"
q -c "CREATE EXTENSION customer360" -c "CREATE SCHEMA dur"
[ "$(q -c "SELECT c360._preloaded()")" = t ] || die "customer360 is not preloaded on the local server"
[ "$(q -c "SHOW fsync")" = on ] || die "fsync is $(q -c "SHOW fsync") on the local server"

SRC_DIR=$(mktemp -d /tmp/c360-dur-src.XXXXXX)
pg_start_free "$SRC_DIR" $((LOCAL_PORT + 1)) "wal_level = logical" "max_replication_slots = 10" \
    "max_wal_senders = 10" "log_min_messages = warning" || die "the source server did not start"
SRC_PORT=$PG_PORT

mysql_start_free "$MY_DIR" 33410 || die "MariaDB did not start"
MY_STARTED=1
TOOL=$TMP/mysql_decode
cc -O2 -Wall -o "$TOOL" test/mysql_decode.c src/decode/binlog_decode.c -Isrc -I/usr/include/mariadb -lmariadb ||
    die "could not build test/mysql_decode.c"

broker_start "$TMP" events_off:2 events_on:2 sink_off:1 sink_on:1 || die "the test broker did not start"
B=$BROKER_ADDR
say "local :$LOCAL_PORT ($LOCAL_DIR), source :$SRC_PORT ($SRC_DIR), MariaDB :$MY_PORT, broker $B"

# ---------------------------------------------------------------------------------------------
run_round() {
    M=$1
    local tr nfail0=${#failures[@]} t log0
    tr=$(date +%s.%N)
    log0=$(stat -c %s "$LOCAL_DIR/server.log")
    say "==== round synchronous_commit = $M"

    # a clean start: the previous round's sources and sink gone, the extension new
    if [ -n "$(q -c "SELECT 1 FROM c360.sources LIMIT 1")$(q -c "SELECT 1 FROM c360.sinks LIMIT 1")" ]; then
        q -c "SELECT c360.drop_sink(name) FROM c360.sinks" -c "SELECT c360.drop_source(name) FROM c360.sources" >/dev/null
        q -c "SET client_min_messages = warning" -c "DROP EXTENSION customer360 CASCADE" -c "CREATE EXTENSION customer360"
        say "  previous round's sources and sink dropped, extension dropped and created again"
    fi
    q -c "ALTER SYSTEM SET synchronous_commit = $M"
    pg_stop "$LOCAL_DIR"
    local_start || die "the local server did not restart"
    poll 30 "the local server up" server_up || die "the local server is not up after the restart"
    [ "$(q -c "SHOW synchronous_commit")" = "$M" ] || die "synchronous_commit is $(q -c "SHOW synchronous_commit"), want $M"
    say "  synchronous_commit = $M (ALTER SYSTEM SET, local server restarted; SHOW says $(q -c "SHOW synchronous_commit"))"

    # upstream data
    psql -X -q -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d postgres -c "CREATE DATABASE shop_$M"
    s -f test/pg_source_setup.sql >/dev/null
    # the orders name the CRM's customers c1..cN (and a few that do not exist)
    s -c "CREATE OR REPLACE FUNCTION rand_cust() RETURNS text LANGUAGE sql VOLATILE AS
          \$\$ SELECT 'c' || (1 + floor(random() * $((CUSTOMERS + 50))))::int \$\$" \
      -c "SELECT add_orders($ORDERS)" >/dev/null
    crm_sql <test/mysql_crm.sql | feed
    python3 test/mysql_changes.py load "$CUSTOMERS" "$TICKETS" | crm_sql | feed
    : >"$TMP/produced_$M"
    : >"$TMP/ids_$M"
    python3 test/kafka_events.py events 1 "$EVENTS" --customers "$CUSTOMERS" --prefix "ev$M" --dups 0.01 \
        --seed 1 --ids "$TMP/ids_$M" | sed 's/cust-/c/g' >"$TMP/produced_$M"
    timeout 60 kcat -P -b "$B" -t "events_$M" -K: -z lz4 <"$TMP/produced_$M" 2>>"$TMP/kcat.err" ||
        die "kcat could not produce the initial events: $(tail -n 3 "$TMP/kcat.err")"

    # the sources
    t=$(date +%s.%N)
    q >/dev/null <<SQL
BEGIN;
SELECT c360.create_source('pg_$M', 'postgres-cdc',
    '{"conninfo": "host=127.0.0.1 port=$SRC_PORT user=postgres dbname=shop_$M"}');
SELECT c360.map_table('pg_$M', 'public.orders', 'orders');
COMMIT;
BEGIN;
SELECT c360.create_source('my_$M', 'mysql-cdc', '{"host": "127.0.0.1", "port": $MY_PORT, "user": "c360",
    "password": "c360pw", "server_id": $([ "$M" = off ] && echo 4301 || echo 4302)}');
SELECT c360.map_table('my_$M', 'crm_$M.customers', 'customers');
SELECT c360.map_table('my_$M', 'crm_$M.support_tickets', 'support_tickets');
COMMIT;
BEGIN;
SELECT c360.create_source('kf_$M', 'kafka', '{"bootstrap.servers": "$B", "topic": "events_$M", "startup": "earliest"}');
SELECT c360.map_table('kf_$M', 'events_$M', 'behavioral_events');
COMMIT;
SQL
    poll 90 "the three sources streaming" all_streaming ||
        die "round $M: the sources are not streaming 90 s after their creation: pg $(state_of "pg_$M"), my $(state_of "my_$M"), kf $(state_of "kf_$M")"
    PG_SRC_FP=$(s -c "$(fp_orders public)")
    kf_load_want
    poll 90 "the initial data in sync" everything_equal ||
        die "round $M: the initial data is not in sync 90 s after the sources were created"
    say "  sources streaming, initial data in sync after $(elapsed "$t")s: $(q -c "SELECT (SELECT count(*) FROM c360.orders) || ' orders, ' || (SELECT count(*) FROM c360.customers) || ' customers, ' || (SELECT count(*) FROM c360.support_tickets) || ' tickets, ' || (SELECT count(*) FROM c360.behavioral_events) || ' events'")"

    # the segment and its sink
    members=$(q -c "SELECT c360.create_segment('multi_$M', 'total_orders >= 2', ARRAY['customer_id', 'total_orders'])")
    q -c "SELECT c360.create_sink('sk_$M', 'multi_$M', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"sink_$M\"}')" >/dev/null
    SINK_START=$(q -c "SELECT seq FROM c360.sink_positions WHERE sink = 'sk_$M'")
    poll 60 "the sink publishing its snapshot" sink_caught_up ||
        die "round $M: the sink did not publish its snapshot within 60 s: $(q -c "SELECT state || ' ' || backlog || ' ' || COALESCE(last_error, '') FROM c360.sink_status")"
    say "  segment multi_$M (total_orders >= 2): $members members; sink sk_$M published them (starting seq $SINK_START)"

    # marks for the exact counts
    local mark_pg_src mark_pg mark_my my_file my_pos
    mark_pg_src=$(src_order_changes)
    mark_pg=$(applied_of "pg_$M")
    read -r my_file my_pos < <(master_pos)
    mark_my=$(applied_of "my_$M")

    # ------------------------------------------------------------------ writers and faults
    rm -f "$TMP/stop_$M"
    s -c "UPDATE ctl SET stop = false" >/dev/null
    s -c "CALL churn(0, 0.003, true)" >/dev/null 2>"$TMP/pg_writer_$M.err" &
    writers+=($!)
    mysql_writer &
    writers+=($!)
    kafka_writer &
    writers+=($!)
    sleep 1.5
    t=$(date +%s.%N)
    say "  writers running; faults:"
    local i
    for i in 1 2 3; do
        pause_random
        kill_worker source "pg_$M" || true
    done
    for i in 1 2; do
        pause_random
        kill_worker source "my_$M" || true
        pause_random
        kill_worker source "kf_$M" || true
        pause_random
        kill_worker sink "sk_$M" || true
    done
    pause_random
    kill_postmaster || true
    pause_random
    immediate_restart || true
    pause_random
    stop_writers
    say "  faults done in $(elapsed "$t")s; writers stopped"
    [ -s "$TMP/writer_errors_$M" ] && fail "round $M: a writer failed: $(cat "$TMP/writer_errors_$M")"
    [ -s "$TMP/pg_writer_$M.err" ] && say "  (PG writer said: $(head -c 300 "$TMP/pg_writer_$M.err"))"

    # ------------------------------------------------------------------ the end state
    t=$(date +%s.%N)
    PG_SRC_FP=$(s -c "$(fp_orders public)")
    kf_load_want
    local n_events n
    n_events=$(produced)
    if poll "$SYNC_SECS" "every mirror equal to its upstream and verify() empty" everything_equal; then
        say "  every mirror equals its upstream and verify() is empty after $(elapsed "$t")s: orders $PG_SRC_FP, events $KF_WANT"
    else
        pg_equal || fail "round $M: the orders mirror differs from the source's orders $SYNC_SECS s after the writers stopped (source $PG_SRC_FP, mirror $(q -c "$(fp_orders c360)") as rows:hash)"
        my_equal || fail "round $M: the customers/support_tickets mirrors differ from MariaDB's crm_$M tables $SYNC_SECS s after the writers stopped"
        kf_equal || fail "round $M: the events mirror holds $(kf_have) (count:hash of ids), the produced unique events are $KF_WANT"
        verify_empty || fail "round $M: c360.verify() has $(q -c "SELECT count(*) FROM c360.verify()") rows"
        diagnostics
    fi

    # exact counts (a short bounded poll: the last batches may still be on their way)
    D_SRC=$(($(src_order_changes) - mark_pg_src))
    pg_count_ok() { D_PG=$(($(applied_of "pg_$M") - mark_pg)); [ "$D_PG" = "$D_SRC" ]; }
    if poll 10 "pg_$M changes_applied to grow by $D_SRC" pg_count_ok; then
        say "  pg_$M: changes_applied grew by $D_PG = the orders row changes the source committed"
    else
        fail "round $M: pg_$M changes_applied grew by $D_PG, the source committed $D_SRC orders row changes ($((D_SRC - D_PG)) never applied; fewer = lost, more = applied twice)"
    fi
    BINLOG=$("$TOOL" count 127.0.0.1 "$MY_PORT" root "$my_file" "$my_pos" "crm_$M.customers" "crm_$M.support_tickets") ||
        { fail "round $M: test/mysql_decode count failed: $BINLOG"; BINLOG=-1; }
    my_count_ok() { D_MY=$(($(applied_of "my_$M") - mark_my)); [ "$D_MY" = "$BINLOG" ]; }
    if poll 10 "my_$M changes_applied to grow by $BINLOG" my_count_ok; then
        say "  my_$M: changes_applied grew by $D_MY = the row changes of crm_$M in the binlog"
    else
        fail "round $M: my_$M changes_applied grew by $D_MY, the binlog holds $BINLOG row changes of crm_$M since the mark (fewer = lost, more = applied twice)"
    fi
    kf_count_ok() { [ "$(applied_of "kf_$M")" = "$n_events" ] && [ "$(positions_of "kf_$M")" = "$n_events" ]; }
    if poll 10 "kf_$M changes_applied and positions at $n_events" kf_count_ok; then
        say "  kf_$M: changes_applied = stored positions = $n_events messages produced ($(wc -l <"$TMP/ids_$M") unique events)"
    else
        fail "round $M: kf_$M changes_applied $(applied_of "kf_$M"), stored positions $(positions_of "kf_$M"), messages produced $n_events (each message applied exactly once)"
    fi
    n=$(q -c "SELECT count(*) FROM c360.dead_letters")
    [ "$n" = 0 ] || fail "round $M: $n dead letters: $(q -c "SELECT source || ': ' || error FROM c360.dead_letters LIMIT 3")"

    # ------------------------------------------------------------------ the sink's topic
    if poll 60 "the sink caught up" sink_caught_up; then
        check_sink
    else
        fail "round $M: the sink did not catch up within 60 s: $(q -c "SELECT state || ', backlog ' || backlog || ', ' || COALESCE(last_error, '') FROM c360.sink_status")"
    fi

    local crashed
    crashed=$(tail -c +"$((log0 + 1))" "$LOCAL_DIR/server.log" |
        { grep -a 'background worker "c360 [a-z]*" (PID [0-9]*) was terminated by signal' || true; } |
        { grep -av 'by signal 9:' || true; } | wc -l)
    [ "$crashed" = 0 ] || fail "round $M: c360 workers died of a signal other than the test's kill -9 $crashed time(s) (server log)"

    if [ "${#failures[@]}" -gt "$nfail0" ]; then
        say "==== round synchronous_commit = $M: $((${#failures[@]} - nfail0)) check(s) failed ($(elapsed "$tr")s)"
    else
        say "==== round synchronous_commit = $M: all checks passed ($(elapsed "$tr")s)"
    fi
}

# The topic against the membership: see the header, step 5.
check_sink() {
    local n problems
    timeout 60 kcat -C -b "$B" -t "sink_$M" -o beginning -e -q -f '%k\t%h\t%s\n' >"$TMP/sink_$M.txt" 2>>"$TMP/kcat.err" ||
        { fail "round $M: kcat could not read topic sink_$M"; return; }
    q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS dur.topic_$M" -c "CREATE TABLE dur.topic_$M (n bigserial, k text, h text, v text)" \
      -c "\\copy dur.topic_$M (k, h, v) FROM '$TMP/sink_$M.txt' WITH (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01')"
    n=$(q -c "SELECT count(*) FROM dur.topic_$M")
    problems=$(q <<SQL
CREATE TEMP VIEW m AS
    SELECT n, k, h, v, (v::jsonb->>'seq')::bigint AS seq, v::jsonb->>'customer_id' AS c,
           v::jsonb->>'change' AS ch, v::jsonb->'profile' AS p
    FROM dur.topic_$M;
CREATE TEMP VIEW lastm AS
    SELECT DISTINCT ON (c) c, seq, ch, p, v FROM m ORDER BY c, seq DESC, n DESC;
CREATE TEMP VIEW mem AS
    SELECT customer_id AS c, payload FROM c360.segment_members WHERE segment = 'multi_$M';
SELECT format('seq %s published as %s different messages (a seq handed out again after a crash), e.g. %s | %s',
              seq, count(DISTINCT v), left(min(v), 160), left(max(v), 160))
FROM m GROUP BY seq, CASE WHEN seq = $SINK_START THEN c END HAVING count(DISTINCT v) > 1
UNION ALL
SELECT format('%s messages whose header is not their seq, e.g. key %s header %s: %s', count(*), min(k), min(h), left(min(v), 160))
FROM m WHERE h IS DISTINCT FROM 'seq=' || seq OR k IS DISTINCT FROM c HAVING count(*) > 0
UNION ALL
SELECT format('%s customers whose last message (highest seq) is an %s but who are not members, e.g. %s', count(*), min(ch), min(v))
FROM lastm WHERE ch IN ('enter', 'update') AND c NOT IN (SELECT c FROM mem) HAVING count(*) > 0
UNION ALL
SELECT format('%s members whose last message is an exit, e.g. %s', count(*), min(v))
FROM lastm WHERE ch = 'exit' AND c IN (SELECT c FROM mem) HAVING count(*) > 0
UNION ALL
SELECT format('%s members without any message, e.g. %s', count(*), min(c))
FROM mem WHERE c NOT IN (SELECT c FROM m) HAVING count(*) > 0
UNION ALL
SELECT format('%s members whose last message carries another profile, e.g. %s: published %s, member %s',
              count(*), min(lastm.c), min(lastm.p::text), min(mem.payload::text))
FROM lastm JOIN mem USING (c) WHERE lastm.ch <> 'exit' AND lastm.p IS DISTINCT FROM mem.payload HAVING count(*) > 0
UNION ALL
SELECT format('membership differs from the predicate total_orders >= 2 in %s customers', count(*))
FROM ((SELECT customer_id FROM c360.customer_360 WHERE total_orders >= 2 EXCEPT SELECT c FROM mem)
      UNION ALL (SELECT c FROM mem EXCEPT SELECT customer_id FROM c360.customer_360 WHERE total_orders >= 2)) d
HAVING count(*) > 0;
SQL
)
    local members repeats
    members=$(q -c "SELECT count(*) FROM c360.segment_members WHERE segment = 'multi_$M'")
    repeats=$(q -c "SELECT count(*) - count(DISTINCT v) FROM dur.topic_$M")
    if [ -n "$problems" ]; then
        while IFS= read -r line; do fail "round $M: sink topic sink_$M: $line"; done <<<"$problems"
    else
        say "  sink_$M: $n messages ($repeats repeats of an earlier message), no seq reused; each customer's last message agrees with the $members members"
    fi
}

for r in $ROUNDS; do
    run_round "$r"
done

echo
if [ "${#failures[@]}" -gt 0 ]; then
    echo "${#failures[@]} check(s) failed:"
    printf '  - %s\n' "${failures[@]}"
    echo "total $(elapsed "$T0")s"
    exit 1
fi
echo "ok: t_durability, both rounds, in $(elapsed "$T0")s"
