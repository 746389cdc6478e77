#!/usr/bin/env bash
# test/t_map_late.sh: create_source and map_table as separate statements (issue 15, part 2).
#
# Users type c360.create_source(...), then one c360.map_table(...) per table, each its own
# statement (psql autocommit), while the source's worker already runs.  Whatever the timing,
# nothing may be lost and nothing may be refused:
#   - a source with nothing mapped yet waits quietly: state 'unmapped', last_error NULL
#     (never 'error');
#   - a table mapped while the first snapshot runs is copied on its own right after it;
#   - a table mapped after the snapshot completed (postgres-cdc, mysql-cdc) is snapshotted
#     alone and streamed from there: map_table never fails here;
#   - a Kafka source created in one statement and mapped in another, startup 'earliest',
#     loses no event produced before, between or after.
# Remote servers started here (free ports, temp dirs): a PostgreSQL 15 cluster with
# wal_level = logical (test/pg_source_setup.sql plus $CUSTOMERS extra customers), a MariaDB
# (test/mysql_crm.sql, data and changes from test/mysql_changes.py) and the test Kafka broker.
# Runs against the cluster of test/run.sh (PGHOST/PGPORT/PGUSER, database c360_workers,
# customer360 preloaded).  Rounds, each with a fresh source (crm_r<N> / shop_r<N>) and a fresh
# extension (empty mirrors: drop_source keeps mirror rows), while a writer changes both
# remote tables:
#     create_source; map_table customers (at once in the same session, after a random pause of
#     0-1.5 s, or once the worker waits 'unmapped'); map_table support_tickets (as the worker
#     starts, after a random 0-1 s, just as the first snapshot runs, or after it completed);
#     writer stopped; then a bounded poll until both mirrors equal the remote tables row for
#     row (every mapped column) and c360.verify() is empty.  Each round prints its timing and
#     the state the source was in when the second map_table came (the race it met).
#   mysql-cdc: a control round (create_source and both map_table in one transaction: must pass
#   on any build, else the comparison itself is wrong), then $MY_ROUNDS (default 6) rounds;
#   postgres-cdc: the same with $PG_ROUNDS (default 4).  The first round of each kind also
#   checks that the worker runs in state 'unmapped', last_error NULL, before any map_table.
#   Then the Kafka part.  Every wait is a bounded poll; the random pauses are the scenario
#   (seed printed; MAP_LATE_SEED=N repeats a run's choices).  Exit 0 only if every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/servers.sh

DB=c360_workers
: "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
# one rendering of timestamps on both PostgreSQL sides
export PGHOST PGPORT PGUSER PGTZ=UTC PGDATESTYLE=ISO
MY_ROUNDS=${MY_ROUNDS:-6}
PG_ROUNDS=${PG_ROUNDS:-4}
CUSTOMERS=${CUSTOMERS:-40000}   # big enough that the customers snapshot takes a while
TICKETS=${TICKETS:-10000}
SEED=${MAP_LATE_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$SEED

T0=$(date +%s.%N)
TMP=$(mktemp -d /tmp/c360-maplate.XXXXXX)
MYDIR=$TMP/mysql
SRC_DIR=$(mktemp -d /tmp/c360-maplate-src.XXXXXX)   # its own: the postgres OS user owns it
KIND=
SRC_PORT=
MY_PORT=
BROKER_PID=
failures=()
writer=
LOCAL_LOG=

. test/lib.sh   # the cwd is the repository root (the cd above)
. test/crm_compare.sh
s() { psql -X -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d shop "$@"; }
my() { mysql_cli "$MY_PORT" -N -B "$@"; }
feed() { mysql_cli "$MY_PORT" --batch >/dev/null; }

stop_writer() {
    [ -n "$writer" ] || return 0
    touch "$TMP/stop"
    [ -n "$SRC_PORT" ] && s -c "UPDATE ctl SET stop = true" >/dev/null 2>&1 || true
    wait "$writer" 2>/dev/null || true
    writer=
}

cleanup() {
    local rc=$?
    set +e
    stop_writer
    drop_c360
    for o in $(q -c "SELECT roname FROM pg_replication_origin WHERE roname LIKE 'c360_shop_r%'" 2>/dev/null); do
        q -c "SELECT pg_replication_origin_drop('$o')" >/dev/null 2>&1
    done
    broker_stop
    mysql_stop "$MYDIR"
    pg_discard "$SRC_DIR" "$([ "$rc" -ne 0 ] && echo "$TMP/source-cluster.log")"
    if [ "$rc" -eq 0 ]; then
        rm -rf "$TMP"
    else
        echo "files kept in $TMP (MariaDB, source cluster and broker logs there)"
    fi
    exit "$rc"
}
trap cleanup EXIT

die() {
    echo "FAIL: $*"
    failures+=("$*")
    exit 1
}

# a random pause of 0 .. MAX_MS milliseconds, exactly 0 one time in four
rand_pause() {
    local max=$1 ms
    if [ $((RANDOM % 4)) = 0 ]; then ms=0; else ms=$((RANDOM % (max + 1))); fi
    printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

state_of() { q -c "SELECT state FROM c360.source_status WHERE name = '$1'" 2>/dev/null || true; }
status_of() {
    q -c "SELECT state || COALESCE(' ' || snapshot_rows_done || '/' || snapshot_rows_total, '')
          FROM c360.source_status WHERE name = '$1'" 2>/dev/null || true
}
last_error_of() { q -c "SELECT last_error FROM c360.source_status WHERE name = '$1'" 2>/dev/null || true; }
worker_pid() {
    q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 source'
          AND application_name = '$1' AND datname = '$DB'" 2>/dev/null | head -n 1
}
worker_up_or_error() { [ -n "$(worker_pid "$1")" ] || state_is "$1" error; }
no_source_workers() {
    [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'c360 source' AND datname = '$DB'")" = 0 ]
}
log_tail() {
    [ -n "$LOCAL_LOG" ] || return 0
    echo "---- local server log (c360 lines since the round began, last 25)"
    tail -c +"$((${1:-0} + 1))" "$LOCAL_LOG" | grep -a 'c360' | tail -n 25
}

# A fresh extension: empty mirrors, no source (drop_source keeps the mirror rows).
fresh_extension() {
    q -c "SET statement_timeout = '20s'; SELECT c360.drop_source(name) FROM c360.sources" >/dev/null 2>&1 || true
    poll 30 "no c360 source worker left" no_source_workers || die "source workers still run after drop_source"
    q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" 2>/dev/null
    q -c "CREATE EXTENSION customer360"
}

# ---------------------------------------------------------------------------------------------
# Comparing the mirrors with the remote tables: every mapped column, rendered alike.

PG_CUST_COLS="customer_id, email, first_name, last_name, phone, acquisition_channel, signup_date, loyalty_tier, last_updated"
PG_TICK_COLS="ticket_id, customer_id, status, category, created_at, resolved_at"

# mysql-cdc: the remote tables and the mirrors as the same sorted text (t_mysql_source.sh)
dump_mysql() { crm_dump_remote crm_db "$TMP/customers.remote" "$TMP/tickets.remote"; }
dump_mirror_mysql() { crm_dump_mirror "$TMP/customers.mirror" "$TMP/tickets.mirror"; }
# postgres-cdc: ROW(columns)::text, sorted by key, on both sides (as t_pg_source.sh fp_sql)
dump_pg() { # dump_pg PSQLFN SCHEMA SUFFIX
    "$1" -c "COPY (SELECT ROW($PG_CUST_COLS)::text FROM $2.customers ORDER BY customer_id COLLATE \"C\") TO STDOUT" >"$TMP/customers.$3"
    "$1" -c "COPY (SELECT ROW($PG_TICK_COLS)::text FROM $2.support_tickets ORDER BY ticket_id COLLATE \"C\") TO STDOUT" >"$TMP/tickets.$3"
}
dump_remote() { if [ "$KIND" = mysql-cdc ]; then dump_mysql; else dump_pg s public remote; fi; }
dump_mirror() { if [ "$KIND" = mysql-cdc ]; then dump_mirror_mysql; else dump_pg q c360 mirror; fi; }
mirror_sum() { cat "$TMP/customers.mirror" "$TMP/tickets.mirror" | md5sum | cut -c1-32; }
mirror_equal() {
    dump_mirror
    cmp -s "$TMP/customers.remote" "$TMP/customers.mirror" && cmp -s "$TMP/tickets.remote" "$TMP/tickets.mirror"
}
mirror_counts() {
    echo "customers: remote $(wc -l <"$TMP/customers.remote"), mirror $(wc -l <"$TMP/customers.mirror");" \
         "support_tickets: remote $(wc -l <"$TMP/tickets.remote"), mirror $(wc -l <"$TMP/tickets.mirror")"
}

diagnostics() { # diagnostics NAME LOG_MARK
    set +e
    echo "---- diagnostics ($1)"
    q -c "SELECT name, kind, state, position, snapshot_rows_done, snapshot_rows_total, changes_applied, dead_letters, last_error FROM c360.source_status" 2>&1
    q -c "SELECT source, remote, input FROM c360.source_tables ORDER BY 1, 2" 2>&1
    dump_remote
    dump_mirror
    echo "$(mirror_counts)"
    local t
    for t in customers tickets; do
        echo "$t: $(diff "$TMP/$t.remote" "$TMP/$t.mirror" | grep -c '^[<>]') differing lines (< remote, > mirror), first ones:"
        diff "$TMP/$t.remote" "$TMP/$t.mirror" | grep '^[<>]' | head -n 6 | cut -c1-160
    done
    echo "verify(): $(q -c "SELECT count(*) FROM c360.verify()" 2>&1) rows"
    q -c "SELECT source, position, left(payload, 120), error FROM c360.dead_letters ORDER BY id LIMIT 5" 2>&1
    log_tail "$2"
    echo "----"
    set -e
}

# ---------------------------------------------------------------------------------------------
# The servers.

[ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" = 1 ] ||
    psql -X -q -d postgres -c "CREATE DATABASE $DB"
q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" 2>/dev/null
q -c "CREATE EXTENSION customer360"
[ "$(q -c "SELECT c360._preloaded()")" = t ] || die "customer360 is not preloaded on $PGHOST:$PGPORT"
LOCAL_DATA=$(q -c "SHOW data_directory")
LOCAL_LOG=$(dirname "$LOCAL_DATA")/server.log
[ -r "$LOCAL_LOG" ] || LOCAL_LOG=
log_mark() { if [ -n "$LOCAL_LOG" ]; then stat -c %s "$LOCAL_LOG"; else echo 0; fi; }

# Other runs share the machine and may take a free port between our look and our bind: a
# start that fails is tried again (fresh directory) on another port.
started=0
for attempt in 1 2 3; do
    MY_PORT=$(free_port $((33410 + RANDOM % 80))) || die "no free port for MariaDB"
    rm -rf "$MYDIR"
    if mysql_start "$MYDIR" "$MY_PORT"; then started=1; break; fi
done
[ "$started" = 1 ] || die "MariaDB did not start"
mysql_cli "$MY_PORT" <test/mysql_crm.sql
python3 test/mysql_changes.py load "$CUSTOMERS" "$TICKETS" | feed

started=0
for attempt in 1 2 3; do
    SRC_PORT=$(free_port $((54440 + RANDOM % 80))) || die "no free port for the source cluster"
    pg_stop "$SRC_DIR"
    rm -rf "${SRC_DIR:?}"/*
    if pg_start "$SRC_DIR" "$SRC_PORT" "wal_level = logical" "max_replication_slots = 20" \
        "max_wal_senders = 20" "log_min_messages = warning" >/dev/null; then started=1; break; fi
done
[ "$started" = 1 ] || die "the source cluster did not start"
psql -X -q -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d postgres -c "CREATE DATABASE shop"
s -f test/pg_source_setup.sql >/dev/null
s -c "INSERT INTO customers (customer_id, email, first_name, last_name, phone, acquisition_channel,
                             signup_date, loyalty_tier, last_updated, crm_score)
      SELECT 'k' || lpad(g::text, 6, '0'), 'k' || g || '@example.com', 'First' || g % 997, 'Last' || g % 1009,
             '+1-555-' || lpad(g::text, 7, '0'), pick('{web,mobile,store,referral}'),
             now() - g * interval '37 minutes', pick('{bronze,silver,gold,platinum}'), now(), g % 97
      FROM generate_series(1, $CUSTOMERS - 2000) g" >/dev/null
s -c "SELECT add_tickets($TICKETS - 5000)" >/dev/null
say "seed $SEED; local server :$PGPORT ($LOCAL_DATA); MariaDB :$MY_PORT and source cluster :$SRC_PORT" \
    "with $CUSTOMERS customers and $TICKETS tickets each"

# ---------------------------------------------------------------------------------------------
# The writer: changes to both remote tables until stop_writer.

start_writer() { # start_writer ROUND
    rm -f "$TMP/stop"
    if [ "$KIND" = mysql-cdc ]; then
        (
            set +e
            i=0
            while [ ! -e "$TMP/stop" ]; do
                i=$((i + 1))
                python3 test/mysql_changes.py changes 60 $(($1 * 1000 + i)) "$CUSTOMERS" "$TICKETS" | feed
                sleep 0.05
            done
        ) >/dev/null 2>"$TMP/writer.err" &
    else
        s -c "UPDATE ctl SET stop = false" >/dev/null
        s -c "CALL churn(0, 0.003, true)" >/dev/null 2>"$TMP/writer.err" &
    fi
    writer=$!
}

# ---------------------------------------------------------------------------------------------
# One round.

create_sql() { # create_sql NAME ROUND
    if [ "$KIND" = mysql-cdc ]; then
        echo "SELECT c360.create_source('$1', 'mysql-cdc', '{\"host\": \"127.0.0.1\", \"port\": $MY_PORT,
              \"user\": \"c360\", \"password\": \"c360pw\", \"server_id\": $((4300 + $2))}')"
    else
        echo "SELECT c360.create_source('$1', 'postgres-cdc',
              '{\"conninfo\": \"host=127.0.0.1 port=$SRC_PORT user=postgres dbname=shop\"}')"
    fi
}
remote_of() { if [ "$KIND" = mysql-cdc ]; then echo "crm_db.$1"; else echo "public.$1"; fi; }
# map_it NAME TABLE INPUT: one autocommit statement; its error (SQLSTATE too) on stdout
map_it() { q -v VERBOSITY=verbose -c "SELECT c360.map_table('$1', '$(remote_of "$2")', '$3')" 2>&1 >/dev/null; }

# the first round of a kind: the worker runs, the state is 'unmapped' with no error, and stays so
check_unmapped() { # check_unmapped NAME
    local name=$1 row st err i seen=0 deadline
    deadline=$(($(date +%s) + 20))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        row=$(q -c "SELECT state || '|' || COALESCE(last_error, '') FROM c360.source_status WHERE name = '$name'" 2>/dev/null || true)
        st=${row%%|*} err=${row#*|}
        if [ "$st" = error ]; then
            fail "$name: nothing mapped yet, the source went to state error (last_error: $err); it must wait in state 'unmapped'"
            return 1
        fi
        if [ "$st" = unmapped ] && [ -z "$err" ] && [ -n "$(worker_pid "$name")" ]; then
            seen=1
            break
        fi
        sleep 0.1
    done
    if [ "$seen" = 0 ]; then
        fail "$name: nothing mapped yet, no worker in state 'unmapped' with last_error NULL within 20 s (state '$st', last_error '${err}', worker pid '$(worker_pid "$name")')"
        return 1
    fi
    say "  $name: worker $(worker_pid "$name") runs, state unmapped, last_error NULL after $(elapsed "$t_create")s"
    # it stays so (a second and a half; not an error a moment later)
    for ((i = 0; i < 15; i++)); do
        row=$(q -c "SELECT state || '|' || COALESCE(last_error, '') FROM c360.source_status WHERE name = '$name'" 2>/dev/null || true)
        if [ "${row%%|*}" != unmapped ] || [ -n "${row#*|}" ]; then
            fail "$name: left state unmapped with nothing mapped: state '${row%%|*}', last_error '${row#*|}'"
            return 1
        fi
        sleep 0.1
    done
    return 0
}

# how the second mapping met the source, from its state just before map_table
race_of() {
    case $1 in
        unmapped* | stopped* | "") echo "before the first snapshot began" ;;
        snapshot*) echo "DURING the first snapshot" ;;
        streaming*) echo "AFTER the snapshot completed" ;;
        *) echo "source in state '$1'" ;;
    esac
}

# sync NAME MARK: the writer has stopped; poll until both mirrors equal the remote tables and
# verify() is empty.  Gives up at once on state error, after 20 s of a streaming source whose
# mirrors no longer change (the rows will never come), or after 120 s.
sync_round() {
    local name=$1 mark=$2 t st last= same_since now
    t=$(date +%s.%N)
    dump_remote
    same_since=$(date +%s)
    while :; do
        if mirror_equal; then
            if poll 15 "verify() empty ($name)" verify_empty; then
                say "  $name: in sync after $(elapsed "$t")s ($(mirror_counts)), verify() empty"
                return 0
            fi
            fail "$name: the mirrors equal the remote tables but c360.verify() is not empty"
            diagnostics "$name" "$mark"
            return 1
        fi
        st=$(state_of "$name")
        if [ "$st" = error ]; then
            fail "$name: state error while catching up: $(last_error_of "$name")"
            diagnostics "$name" "$mark"
            return 1
        fi
        now=$(date +%s)
        if [ "$(mirror_sum)" != "$last" ] || [ "$st" != streaming ]; then
            last=$(mirror_sum)
            same_since=$now
        elif [ $((now - same_since)) -ge 20 ]; then
            fail "$name: streaming, mirrors unchanged for 20 s, and still not equal to the remote tables ($(mirror_counts)): rows lost"
            diagnostics "$name" "$mark"
            return 1
        fi
        if [ "$(elapsed "$t" | cut -d. -f1)" -ge 120 ]; then
            fail "$name: the mirrors did not equal the remote tables within 120 s (state $st; $(mirror_counts))"
            diagnostics "$name" "$mark"
            return 1
        fi
        sleep 0.2
    done
}

# wait_state NAME REGEX SECS [NOT_REGEX]: a tight bounded poll (0.02 s) until the state
# matches REGEX (and not NOT_REGEX); prints the last state read
wait_state() {
    local name=$1 re=$2 not=${4:-^$} st deadline=$(($(date +%s%N) + $3 * 1000000000))
    while :; do
        st=$(state_of "$name")
        [[ $st =~ $re ]] && ! [[ $st =~ $not ]] && break
        [ "$(date +%s%N)" -lt "$deadline" ] || break
        sleep 0.02
    done
    echo "$st"
}

# round KIND N FIRST MODE
#   FIRST: unmapped  wait for the worker in state 'unmapped' (and check it), then map
#          now       map_table customers in the same psql session right after create_source
#          random    a random pause of 0 .. 1.5 s, then map
#   MODE (when the second map_table comes):
#          start     as soon as the worker shows in pg_stat_activity (its snapshot about to begin)
#          early     a random pause of 0 .. 1 s after the first mapping, whatever the state
#          during    once the first snapshot is seen running: at once, or 0.1 .. 0.3 s later
#          after     once the first snapshot is over (streaming), then 0 .. 0.5 s more
SUMMARY=()
round() {
    KIND=$1
    local r=$2 first=$3 mode=$4 name p1 p2 st1 st2 t_m1 t_m2 err mark tw
    local ok=1 errored=0 rfail0=${#failures[@]}
    if [ "$KIND" = mysql-cdc ]; then name=crm_r$r; else name=shop_r$r; fi
    fresh_extension
    mark=$(log_mark)
    start_writer "$r"
    sleep 0.$((RANDOM % 5))   # the writer under way
    t_create=$(date +%s.%N)
    if [ "$first" = together ]; then
        # the control: all in one transaction, as the README advises; it must pass on any
        # build, or the comparison itself is broken
        q >/dev/null <<SQL || die "$name: create_source and map_table in one transaction failed"
BEGIN;
$(create_sql "$name" "$r");
SELECT c360.map_table('$name', '$(remote_of customers)', 'customers');
SELECT c360.map_table('$name', '$(remote_of support_tickets)', 'support_tickets');
COMMIT;
SQL
        say "  $name: create_source and both map_table in one transaction (control)"
        sleep 0.$((RANDOM % 8 + 2))
        stop_writer
        sync_round "$name" "$mark" || ok=0
        if [ "$ok" = 1 ] && [ "${#failures[@]}" = "$rfail0" ]; then
            SUMMARY+=("ok    $name  (one transaction: the control)")
        else
            SUMMARY+=("FAIL  $name  (one transaction: the control)")
        fi
        return 0
    fi
    if [ "$first" = now ]; then
        # two autocommit statements back to back, as a script would send them
        if err=$(q -v VERBOSITY=verbose -c "$(create_sql "$name" "$r")" \
                   -c "SELECT c360.map_table('$name', '$(remote_of customers)', 'customers')" 2>&1 >/dev/null); then :; else
            [ -n "$(q -c "SELECT 1 FROM c360.sources WHERE name = '$name'")" ] || die "$name: create_source failed: $err"
            fail "$name: map_table customers, right after create_source, failed: $(echo "$err" | head -n 1)"
            ok=0
        fi
        t_m1=$(elapsed "$t_create")
        p1="0 s (same session)"
        st1="-"
    else
        q -c "$(create_sql "$name" "$r")" >/dev/null || die "$name: create_source failed"
        if [ "$first" = unmapped ]; then
            check_unmapped "$name" || { ok=0; errored=1; }
            p1="until unmapped"
        else
            p1=$(rand_pause 1500)
            sleep "$p1"
            p1=${p1}s
        fi
        st1=$(status_of "$name")
        if [ "${st1%% *}" = error ] && [ "$errored" = 0 ]; then
            fail "$name: nothing mapped yet, the source is in state error: $(last_error_of "$name")"
            ok=0 errored=1
        fi
        t_m1=$(elapsed "$t_create")
        tw=$(date +%s.%N)
        if err=$(map_it "$name" customers customers); then :; else
            fail "$name: map_table customers (state '$st1') failed after $(elapsed "$tw")s: $(echo "$err" | head -n 1)"
            ok=0
        fi
        t_m1="$t_m1 (took $(elapsed "$tw")s)"
    fi
    tw=$(date +%s.%N)
    case $mode in
        start)
            # the moment the worker shows up: it reads the mapping and starts its snapshot now
            poll 30 "the $name worker running (or in error)" worker_up_or_error "$name" ||
                { fail "$name: no worker within 30 s of map_table customers: $(status_of "$name")"; ok=0; }
            p2="worker up ($(elapsed "$tw")s)" ;;
        early)
            p2=$(rand_pause 1000)
            sleep "$p2"
            p2="${p2}s" ;;
        during)
            # whatever the state after the waiting ones is called: snapshot on these builds
            st2=$(wait_state "$name" '^[a-z]+$' 60 '^(unmapped|stopped)$')
            # at once half the time: the snapshot's first moments are when its mapping was read
            if [ $((RANDOM % 2)) = 0 ]; then p2=0; else p2=0.$((RANDOM % 3 + 1)); fi
            sleep "$p2"
            p2="snapshot seen ($(elapsed "$tw")s, '$st2') + ${p2}s" ;;
        after)
            st2=$(wait_state "$name" '^(streaming|error)$' 90)
            [[ $st2 =~ ^(streaming|error)$ ]] || { fail "$name: not streaming 90 s after map_table customers: $(status_of "$name")"; ok=0; }
            p2=$(rand_pause 500)
            sleep "$p2"
            p2="snapshot over ($(elapsed "$tw")s) + ${p2}s" ;;
    esac
    st2=$(status_of "$name")
    if [ "${st2%% *}" = error ] && [ "$errored" = 0 ]; then
        fail "$name: state error before the second map_table: $(last_error_of "$name")"
        ok=0 errored=1
    fi
    t_m2=$(elapsed "$t_create")
    tw=$(date +%s.%N)
    if err=$(map_it "$name" support_tickets support_tickets); then :; else
        fail "$name: map_table support_tickets (state '$st2') failed after $(elapsed "$tw")s: $(echo "$err" | head -n 1)"
        ok=0
    fi
    t_m2="$t_m2 (took $(elapsed "$tw")s)"
    say "  $name: create_source; $p1 -> map customers at +${t_m1} (state '${st1:-none}');" \
        "$p2 -> map support_tickets at +${t_m2} (state '${st2:-none}': $(race_of "$st2"))"
    # the writer goes on a little after the last mapping, then stops
    sleep 0.$((RANDOM % 8 + 2))
    stop_writer
    if [ "$ok" = 1 ]; then
        sync_round "$name" "$mark" || ok=0
    else
        diagnostics "$name" "$mark"
        say "  $name: mirrors not compared (a step above failed)"
    fi
    if [ "$ok" = 1 ] && [ "${#failures[@]}" = "$rfail0" ]; then
        SUMMARY+=("ok    $name  ($first, $mode) 2nd mapping $(race_of "$st2")")
    else
        SUMMARY+=("FAIL  $name  ($first, $mode) 2nd mapping $(race_of "$st2")")
    fi
}

# ---------------------------------------------------------------------------------------------
# The schedules: every way the first mapping can meet the worker (waiting unmapped, not started
# yet, anywhere in between) and every moment of the second one (before, during, after the
# first snapshot), with random pauses within each.
my_plan=("unmapped during" "now during" "random after" "now start" "random early" "now after"
         "random during" "now start")
pg_plan=("unmapped during" "now after" "random start" "now early" "random during" "now during")

say "mysql-cdc: a control round, then $MY_ROUNDS rounds"
say "round crm_r0 (create_source and map_table in one transaction)"
round mysql-cdc 0 together -
for ((r = 1; r <= MY_ROUNDS; r++)); do
    plan=${my_plan[$(((r - 1) % ${#my_plan[@]}))]}
    say "round crm_r$r (first mapping: ${plan% *}; second: ${plan#* })"
    round mysql-cdc "$r" $plan
done

say "postgres-cdc: a control round, then $PG_ROUNDS rounds"
say "round shop_r0 (create_source and map_table in one transaction)"
round postgres-cdc 0 together -
for ((r = 1; r <= PG_ROUNDS; r++)); do
    plan=${pg_plan[$(((r - 1) % ${#pg_plan[@]}))]}
    say "round shop_r$r (first mapping: ${plan% *}; second: ${plan#* })"
    round postgres-cdc "$r" $plan
done

# ---------------------------------------------------------------------------------------------
say "kafka: create_source (startup earliest), then map_table in its own statement"
fresh_extension
mark=$(log_mark)
broker_start "$TMP" late_map:2 || die "the test Kafka broker did not start"
q -c "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert',
        'new', jsonb_build_object('customer_id', 'cust-' || i, 'email', 'u' || i || '@example.org',
                                  'signup_date', now() - i * interval '1 hour'))))
      FROM generate_series(1, 500) i" >/dev/null
produce() { # produce FILE
    timeout 60 kcat -P -b "$BROKER_ADDR" -t late_map -K: -z lz4 <"$1" 2>>"$TMP/kcat.err" ||
        die "kcat could not produce $1: $(tail -n 3 "$TMP/kcat.err")"
}
: >"$TMP/kafka_ids"
k=0
for part in a b c; do
    k=$((k + 1))
    python3 test/kafka_events.py events 1 400 --customers 500 --prefix "late$part" --dups 0.02 \
        --seed $((SEED + k)) --ids "$TMP/ids_$part" >"$TMP/events_$part.txt"
    cat "$TMP/ids_$part" >>"$TMP/kafka_ids"
done
produce "$TMP/events_a.txt"   # before the source exists
t_create=$(date +%s.%N)
q -c "SELECT c360.create_source('klate_map', 'kafka',
      '{\"bootstrap.servers\": \"$BROKER_ADDR\", \"topic\": \"late_map\", \"startup\": \"earliest\"}')" >/dev/null
kafka_ok=1
check_unmapped klate_map || kafka_ok=0
produce "$TMP/events_b.txt"   # while the worker runs unmapped
if err=$(q -v VERBOSITY=verbose -c "SELECT c360.map_table('klate_map', 'late_map', 'behavioral_events')" 2>&1 >/dev/null); then :; else
    fail "klate_map: map_table of its topic failed: $(echo "$err" | head -n 1)"
    kafka_ok=0
fi
produce "$TMP/events_c.txt"   # after the mapping
want=$(sort -u "$TMP/kafka_ids" | wc -l)
sort -u "$TMP/kafka_ids" >"$TMP/kafka_ids.u"
events_in() {
    [ "$(q -c "SELECT count(DISTINCT event_id) FROM c360.behavioral_events WHERE event_id LIKE 'late%'")" = "$want" ]
}
if [ "$kafka_ok" = 1 ]; then
    if poll 60 "all $want events in the mirror" events_in; then
        missing=$(q -c "CREATE TEMP TABLE want (id text)" -c "\\copy want FROM '$TMP/kafka_ids.u'" \
                    -c "SELECT count(*) FROM want w WHERE NOT EXISTS (SELECT 1 FROM c360.behavioral_events e WHERE e.event_id = w.id)")
        [ "$missing" = 0 ] || fail "klate_map: $missing of the produced event ids missing from the mirror"
        tick_once() { q -c "SELECT c360.tick(greatest(clock_timestamp(), c360.as_of()))" >/dev/null; }
        tick_verify_empty() { { tick_once 2>/dev/null || tick_once 2>/dev/null || tick_once; } && verify_empty; }
        poll 15 "verify() empty (kafka)" tick_verify_empty || fail "klate_map: c360.verify() is not empty"
        state_is klate_map streaming || fail "klate_map: state $(state_of klate_map) after all events arrived"
        say "  klate_map: $want distinct events (before create_source, while unmapped, after map_table) all in the mirror"
        SUMMARY+=("$([ "$missing" = 0 ] && echo 'ok  ' || echo 'FAIL')  klate_map  events before, while unmapped, after the mapping")
    else
        fail "klate_map: $(q -c "SELECT count(DISTINCT event_id) FROM c360.behavioral_events WHERE event_id LIKE 'late%'") of $want events in the mirror after 60 s (a: $(q -c "SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE 'latea%'"), b: $(q -c "SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE 'lateb%'"), c: $(q -c "SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE 'latec%'"))"
        q -c "SELECT name, state, position, lag_messages, changes_applied, dead_letters, last_error FROM c360.source_status" || true
        log_tail "$mark"
        SUMMARY+=("FAIL  klate_map  events lost")
    fi
else
    q -c "SELECT name, state, position, lag_messages, changes_applied, dead_letters, last_error FROM c360.source_status" || true
    log_tail "$mark"
    SUMMARY+=("FAIL  klate_map")
fi

# ---------------------------------------------------------------------------------------------
echo
echo "rounds (seed $SEED):"
printf '  %s\n' "${SUMMARY[@]}"
if [ "${#failures[@]}" -gt 0 ]; then
    echo "${#failures[@]} check(s) failed:"
    printf '  - %s\n' "${failures[@]}"
    echo "total $(elapsed "$T0")s"
    exit 1
fi
echo "ok: every round in sync, every map_table accepted, in $(elapsed "$T0")s"
