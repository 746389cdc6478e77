# test/kafka_lib.sh: what the Kafka source tests share (source it after test/servers.sh and
# test/lib.sh, then call kafka_test_start; the test sets B, the broker's address, once
# broker_start gave it).
#   kafka_test_start NAME SCHEMA  the tests' common start: database c360_workers of the
#                             server under test (PGHOST/PGPORT, UTC), T0, a scratch TMP,
#                             TEST_SCHEMA, empty bg_pids and failures, the EXIT trap
#   kafka_cleanup             the EXIT trap: background jobs, sources, extension, schema, broker
#   die MSG                   fail with diagnostics and exit
#   kafka_test_db N           a fresh extension in $DB, TEST_SCHEMA, customers cust-1..N loaded;
#                             sets LOCAL_DATA and LOCAL_LOG (the server's log, if readable)
#   produce TOPIC FILE        kcat lines "key:value" to the topic
#   create_source ...         a Kafka source mapped to an input, streaming
#   kill_worker NAME          kill -9 of the source's worker, waiting for the server and a new one
#   positions_of NAME, applied_of, dead_of, state_of, worker_pid, verify_empty,
#   tick_verify_empty, ids_match ...: what the tests check

kafka_test_start() {
    DB=c360_workers
    : "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
    export PGHOST PGPORT PGUSER PGTZ=UTC PGDATESTYLE=ISO
    T0=$(date +%s.%N)
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    TEST_SCHEMA=$2
    BROKER_PID=
    B=
    failures=()
    bg_pids=()
    LOCAL_DATA=
    LOCAL_LOG=
    trap kafka_cleanup EXIT
}

die() {
    echo "FAIL: $*"
    failures+=("$*")
    diagnostics
    exit 1
}

kafka_cleanup() {
    local rc=$?
    set +e
    # never a bare wait: the broker is a child too
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    drop_c360
    q -c "DROP SCHEMA IF EXISTS $TEST_SCHEMA CASCADE" >/dev/null 2>&1
    broker_stop
    if [ "$rc" -eq 0 ]; then
        rm -rf "$TMP"
    else
        echo "files kept in $TMP (broker.err there)"
    fi
    exit "$rc"
}

diagnostics() {
    set +e
    echo "---- diagnostics"
    q -c "SELECT * FROM c360.source_status" 2>&1
    q -c "SELECT source, part, position FROM c360.source_positions ORDER BY 1, 2" 2>&1
    echo "verify(): $(q -c "SELECT count(*) FROM c360.verify()" 2>&1)"
    q -c "SELECT * FROM c360.verify() LIMIT 10" 2>&1
    q -c "SELECT source, position, left(payload, 100), error FROM c360.dead_letters ORDER BY id LIMIT 5" 2>&1
    if [ -n "$LOCAL_LOG" ]; then
        echo "---- local server log (c360 lines, last 30)"
        grep -a 'c360' "$LOCAL_LOG" | tail -n 30
    fi
    echo "---- broker log (last 10)"
    tail -n 10 "$TMP/broker.err" 2>/dev/null
    echo "----"
}

kafka_test_db() {
    local schema=$TEST_SCHEMA customers=$1
    if [ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" = 0 ]; then
        psql -X -q -d postgres -c "CREATE DATABASE $DB"
    fi
    q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" 2>/dev/null
    q -c "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null
    q -c "CREATE EXTENSION customer360"
    q -c "CREATE SCHEMA $schema"
    [ "$(q -c "SELECT c360._preloaded()")" = t ] || die "customer360 is not preloaded on $PGHOST:$PGPORT"
    LOCAL_DATA=$(q -c "SHOW data_directory")
    LOCAL_LOG=$(dirname "$LOCAL_DATA")/server.log
    [ -r "$LOCAL_LOG" ] || LOCAL_LOG=
    q -c "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert',
            'new', jsonb_build_object('customer_id', 'cust-' || i, 'email', 'u' || i || '@example.org',
                                      'signup_date', now() - i * interval '1 hour'))))
          FROM generate_series(1, $customers) i" >/dev/null
}

# kcat with a hard bound: a broker that misbehaves must fail the test, not hang it.
kc() { timeout 60 kcat "$@"; }
# produce TOPIC FILE [kcat args]: lines "key:value", lz4 batches (the mock broker keeps 5 MiB
# or 100,000 batches per partition; compressed batches stay far below either).
produce() {
    local topic=$1 file=$2; shift 2
    kc -P -b "$B" -t "$topic" -K: -z lz4 "$@" <"$file" 2>>"$TMP/kcat.err" ||
        die "kcat could not produce $file to $topic: $(tail -n 3 "$TMP/kcat.err")"
}

server_up() { q -c "SELECT 1" >/dev/null; }
applied_of() { q -c "SELECT changes_applied FROM c360.source_status WHERE name = '$1'"; }
dead_of() { q -c "SELECT count(*) FROM c360.dead_letters WHERE source = '$1'"; }
lag_of() { q -c "SELECT COALESCE(lag_messages, -1) FROM c360.source_status WHERE name = '$1'" 2>/dev/null; }
# the sum of the stored next offsets: the number of messages consumed and committed
positions_of() { q -c "SELECT COALESCE(sum(position::bigint), 0) FROM c360.source_positions WHERE source = '$1'" 2>/dev/null; }
positions_are() { [ "$(positions_of "$1")" = "$2" ]; }
# The ticker worker may move the clock between this statement's reading of c360.as_of() and
# its tick taking the clock lock: the tick is then refused as a move back.  Read the instant
# as late as possible and try again (a bounded three times) when that race is lost.
tick_once() { q -c "SELECT c360.tick(greatest(clock_timestamp(), c360.as_of()))" >/dev/null; }
tick_verify_empty() { { tick_once 2>/dev/null || tick_once 2>/dev/null || tick_once; } && verify_empty; }
worker_pid() {
    q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 source'
          AND application_name = '$1' AND datname = '$DB'" 2>/dev/null | head -n 1
}
worker_replaced() { local p; p=$(worker_pid "$1"); [ -n "$p" ] && [ "$p" != "$2" ]; }
worker_running() { [ -n "$(worker_pid "$1")" ]; }

# kill -9 of a source worker: the postmaster resets (crash recovery), the launcher comes back
# and starts the workers again from their committed positions
kill_worker() {
    local name=$1 pid
    pid=$(worker_pid "$name")
    [ -n "$pid" ] || { echo "  (no $name worker to kill right now)"; return 1; }
    kill -9 "$pid"
    KILLED=$pid
    poll 60 "the local server back after kill -9 of $pid" server_up || die "the local server did not come back after kill -9"
    poll 60 "a new $name worker after kill -9 of $pid" worker_replaced "$name" "$pid" ||
        die "no new $name worker after kill -9"
}

# create_source NAME TOPIC INPUT [extra options, as JSON members] [map_table's columns, JSON]
create_source() {
    local extra=${4:+, $4} columns=
    [ -z "${5:-}" ] || columns=", '$5'"
    q -c "BEGIN;
          SELECT c360.create_source('$1', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"$2\"$extra}');
          SELECT c360.map_table('$1', '$2', '$3'$columns);
          COMMIT;" >/dev/null
    poll 30 "source $1 streaming" state_is "$1" streaming || die "source $1 is not streaming: $(state_of "$1")"
}

# ids_match FILE PREFIX: "want have missing extra" for the mirror's event ids that start
# with PREFIX against the ids listed in FILE
ids_match() {
    local file=$1 prefix=$2
    q -c "CREATE TEMP TABLE want (id text)" -c "\\copy want FROM '$file'" \
      -c "SELECT (SELECT count(*) FROM want) || ' ' ||
                 (SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE '$prefix%') || ' ' ||
                 (SELECT count(*) FROM want w WHERE NOT EXISTS
                     (SELECT 1 FROM c360.behavioral_events e WHERE e.event_id = w.id)) || ' ' ||
                 (SELECT count(*) FROM c360.behavioral_events e WHERE e.event_id LIKE '$prefix%'
                     AND NOT EXISTS (SELECT 1 FROM want w WHERE w.id = e.event_id))"
}
