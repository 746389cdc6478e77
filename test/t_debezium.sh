#!/usr/bin/env bash
# test/t_debezium.sh: Kafka sources in format debezium end to end (issue 18, item 3).
#
# The test broker (test/kafka_broker) serves the topics; kcat produces the messages that
# test/debezium_events.py generates from a model of each source table, together with the
# rows the table holds at the end (computed apart from the decoder).  Sources stream into
# database c360_workers of the server under test (PGHOST/PGPORT, as test/run.sh starts it).
#   0  the decoder alone (test/debezium_decode_test.c, no server): Debezium's documented
#      PostgreSQL and MySQL events, every op, every encoding, bad envelopes
#   1  option "format": an unknown one is refused by create_source, and by the worker
#   2  customers, one partition, a renamed column (email from "mail", the key from "id"):
#      snapshot reads, creates, updates with a full, key-only and null before, an unchanged
#      TOASTed value, deletes (one named by the message key alone) each followed by its
#      tombstone, a truncate with and one without schema, two bad messages.  The mirror
#      equals the expected rows, tombstones are skipped (consumed, not dead-lettered)
#   3  30,000 order events over 3 partitions (every encoding, with and without schemas, 1%
#      bad messages of every kind) produced while kill -9 of the worker happens 3 times:
#      0 lost, 0 duplicated (changes_applied = change messages), the mirror equals the
#      expected rows row for row, the dead letters are exactly the bad messages with their
#      reasons, verify() empty
# Every wait is a bounded poll.  Exit 0 only if every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/servers.sh

DB=c360_workers
: "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
export PGHOST PGPORT PGUSER PGTZ=UTC PGDATESTYLE=ISO

T0=$(date +%s.%N)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/t_debezium.XXXXXX")
BROKER_PID=
B=
failures=()
producer=

. test/lib.sh

die() { fail "$*"; diagnostics; exit 1; }

cleanup() {
    local rc=$?
    set +e
    [ -z "$producer" ] || { kill "$producer" 2>/dev/null; wait "$producer" 2>/dev/null; }
    drop_c360
    broker_stop
    if [ "$rc" -eq 0 ]; then rm -rf "$TMP"; else echo "files kept in $TMP"; fi
    exit "$rc"
}
trap cleanup EXIT

diagnostics() {
    set +e
    echo "---- diagnostics"
    q -c "SELECT name, state, position, lag_messages, changes_applied, dead_letters, last_error FROM c360.source_status" 2>&1
    q -c "SELECT source, position, left(payload, 80), error FROM c360.dead_letters ORDER BY id LIMIT 12" 2>&1
    q -c "SELECT * FROM c360.verify() LIMIT 5" 2>&1
    echo "----"
}

# produce TOPIC FILE: "key<TAB>value" lines; an empty key or value is null (-Z)
produce() {
    timeout 120 kcat -P -b "$B" -t "$1" -K $'\t' -Z -z lz4 <"$2" 2>>"$TMP/kcat.err" ||
        die "kcat could not produce $2 to $1: $(tail -n 3 "$TMP/kcat.err")"
}
stat_of() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
state_of() { q -c "SELECT state FROM c360.source_status WHERE name = '$1'" 2>/dev/null; }
state_is() { [ "$(state_of "$1")" = "$2" ]; }
consumed() { q -c "SELECT COALESCE(sum(position::bigint), 0) FROM c360.source_positions WHERE source = '$1'" 2>/dev/null; }
consumed_is() { [ "$(consumed "$1")" = "$2" ]; }
consumed_past() { local n; n=$(consumed "$1"); [ -n "$n" ] && [ "$n" -gt "$2" ]; }
applied_of() { q -c "SELECT changes_applied FROM c360.source_status WHERE name = '$1'"; }
dead_of() { q -c "SELECT count(*) FROM c360.dead_letters WHERE source = '$1'"; }
tick_verify_empty() {
    q -c "SELECT c360.tick(greatest(clock_timestamp(), c360.as_of()))" >/dev/null 2>&1 &&
        [ "$(q -c "SELECT count(*) FROM c360.verify()")" = 0 ]
}
worker_pid() {
    q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 source' AND application_name = '$1'
          AND datname = '$DB'" 2>/dev/null | head -n 1
}
worker_replaced() { local p; p=$(worker_pid "$1"); [ -n "$p" ] && [ "$p" != "$2" ]; }

# debezium_source NAME TOPIC INPUT COLUMNS: a debezium-format source reading TOPIC from
# its beginning into INPUT, columns renamed by COLUMNS (map_table's jsonb)
debezium_source() {
    q -c "BEGIN;
          SELECT c360.create_source('$1', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"$2\",
                                                     \"startup\": \"earliest\", \"format\": \"debezium\"}');
          SELECT c360.map_table('$1', '$2', '$3', '$4');
          COMMIT;" >/dev/null
    poll 30 "source $1 streaming" state_is "$1" streaming || die "source $1 is $(state_of "$1"), not streaming"
}

# rows_differ INPUT KEY_PREFIX CSV: the input's rows with keys KEY_PREFIX* that differ from
# the CSV's (the mirror's columns as text; timestamps compared as instants, numerics as
# text: their scale counts), missing or extra; prints the count, then up to 5 of them
rows_differ() {
    local input=$1 prefix=$2 file=$3 cols key
    cols=$(q -c "SELECT string_agg(quote_ident(attname) || ' text', ', ' ORDER BY attnum) FROM pg_attribute
                 WHERE attrelid = 'c360.$input'::regclass AND attnum > 0 AND NOT attisdropped")
    key=$(q -c "SELECT attname FROM pg_attribute WHERE attrelid = 'c360.$input'::regclass AND attnum = 1")
    q -c "CREATE TEMP TABLE want ($cols)" -c "\\copy want FROM '$file' (FORMAT csv)" -c "
        CREATE TEMP VIEW diff AS
        SELECT coalesce(w.$key, m.$key) AS key, w IS NULL AS extra, m IS NULL AS missing,
               row_to_json(w)::text AS want, row_to_json(m)::text AS have
        FROM want w FULL JOIN (SELECT * FROM c360.$input WHERE $key LIKE '$prefix%') m USING ($key)
        WHERE w.$key IS NULL OR m.$key IS NULL OR EXISTS (
            SELECT 1 FROM json_each_text(row_to_json(w)) wc JOIN json_each_text(row_to_json(m)) mc USING (key)
            WHERE CASE WHEN (SELECT atttypid FROM pg_attribute WHERE attrelid = 'c360.$input'::regclass
                             AND attname = wc.key) = 'timestamptz'::regtype
                       THEN wc.value::timestamptz IS DISTINCT FROM mc.value::timestamptz
                       ELSE wc.value IS DISTINCT FROM mc.value END);
        SELECT count(*) FROM diff;
        SELECT key, extra, missing, want, have FROM diff LIMIT 5"
}

# ---------------------------------------------------------------------------------------------
say "step 0: the decoder alone"
run_decode_test "$TMP" debezium_decode_test || fail "the decoder test failed"

broker_start "$TMP" dbz_customers:1 dbz_orders:3 dbz_other:1 || die "the test broker did not start"
B=$BROKER_ADDR
fresh_c360

# ---------------------------------------------------------------------------------------------
say "step 1: option format"
for bad in '"avro"' '"Debezium"' '7' 'null'; do
    err=$(q -c "SELECT c360.create_source('fmt', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"dbz_other\",
                                                           \"format\": $bad}')" 2>&1 || true)
    [[ $err == *"option \"format\" of kafka source \"fmt\" must be json, debezium or segment, not $bad"* ]] ||
        fail "create_source with format $bad: '$err'"
done
# the worker refuses it too (here past the check, which a restored catalog could be)
q -c "ALTER TABLE c360.sources DISABLE TRIGGER kafka_format_check" \
  -c "SELECT c360.create_source('fmt', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"dbz_other\", \"format\": \"avro\"}')" \
  -c "SELECT c360.map_table('fmt', 'dbz_other', 'orders')" \
  -c "ALTER TABLE c360.sources ENABLE TRIGGER kafka_format_check" >/dev/null
poll 30 "source fmt in state error" state_is fmt error || fail "a source with format avro is $(state_of fmt), not in error"
err=$(q -c "SELECT last_error FROM c360.source_status WHERE name = 'fmt'")
[[ $err == *'option "format" of kafka source "fmt" must be json, debezium or segment, not "avro"'* ]] ||
    fail "the worker's error for format avro: '$err'"
q -c "SELECT c360.drop_source('fmt')" >/dev/null
say "  unknown formats refused by create_source (22023) and by the worker: ${err:0:90}..."

# ---------------------------------------------------------------------------------------------
say "step 2: customers: every op, with and without schemas, renamed columns, tombstones, truncates"
python3 test/debezium_events.py customers "$TMP"
n=$(stat_of "$TMP/customers.stats" messages)
debezium_source dcust dbz_customers customers '{"customer_id": "id", "email": "mail"}'
produce dbz_customers "$TMP/customers.msgs"
poll 60 "$n customer messages consumed" consumed_is dcust "$n" || die "$(consumed dcust) of $n messages consumed"
got=$(rows_differ customers dc- "$TMP/customers.expected.csv")
[ "$(head -n 1 <<<"$got")" = 0 ] || fail "the customers mirror differs from the rows the messages describe: $got"
[ "$(applied_of dcust)" = "$(stat_of "$TMP/customers.stats" changes)" ] ||
    fail "changes_applied of dcust is $(applied_of dcust), want $(stat_of "$TMP/customers.stats" changes)"
reasons=$(q -c "SELECT string_agg(error, ' | ' ORDER BY id) FROM c360.dead_letters WHERE source = 'dcust'")
[[ $(dead_of dcust) = 2 && $reasons == 'unknown op '*' | a Debezium create or read event needs an after row'* ]] ||
    fail "dcust's dead letters: $(dead_of dcust): $reasons"
[ "$(q -c "SELECT count(*) FROM c360.dead_letters WHERE payload IS NULL")" = 0 ] || fail "a tombstone was dead-lettered"
[ "$(q -c "SELECT skipped_messages FROM c360.source_status WHERE name = 'dcust'")" = "$(stat_of "$TMP/customers.stats" tombstones)" ] ||
    fail "skipped_messages of dcust is not its $(stat_of "$TMP/customers.stats" tombstones) tombstones"
poll 30 "verify() empty" tick_verify_empty || fail "verify() not empty after the customers"
[ ${#failures[@]} -gt 0 ] || say "  $n messages ($(stat_of "$TMP/customers.stats" tombstones) tombstones skipped): the mirror holds exactly" \
    "the $(wc -l <"$TMP/customers.expected.csv") rows they leave; 2 dead letters with reasons; verify() empty"

# ---------------------------------------------------------------------------------------------
say "step 3: 30,000 order events over 3 partitions, kill -9 of the worker 3 times while they come"
q -c "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert',
        'new', jsonb_build_object('customer_id', 'cust-' || i, 'signup_date', now() - i * interval '1 hour'))))
      FROM generate_series(1, 1000) i" >/dev/null
python3 test/debezium_events.py orders 30000 "$TMP" --keys 3000 --customers 1000 --bad 0.01
n=$(stat_of "$TMP/orders.stats" messages)
split -l 5000 -d -a 1 "$TMP/orders.msgs" "$TMP/orders_chunk."
debezium_source dord dbz_orders orders '{"order_id": "id", "total_amount": "amount"}'
kills=0
at=0
for chunk in "$TMP"/orders_chunk.*; do
    i=${chunk##*.}
    if [ "$i" = 1 ] || [ "$i" = 2 ] || [ "$i" = 4 ]; then
        produce dbz_orders "$chunk" &
        producer=$!
        # each kill lands mid-stream, past where the last one did
        sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.2 + (r % 80) / 100 }')"
        poll 60 "messages consumed past $at" consumed_past dord "$at" || die "dord stopped at $(consumed dord)"
        pid=$(worker_pid dord)
        if [ -n "$pid" ]; then
            at=$(consumed dord)
            kill -9 "$pid"
            poll 60 "a new dord worker after kill -9 of $pid" worker_replaced dord "$pid" ||
                die "no new worker after kill -9 of $pid"
            kills=$((kills + 1))
            say "  chunk $i: kill -9 of the worker (pid $pid) with $at messages consumed"
        fi
        wait "$producer" || die "producing $chunk failed"
        producer=
    else
        produce dbz_orders "$chunk"
    fi
done
[ "$kills" = 3 ] || fail "$kills kills happened, want 3"
poll 180 "all $n order messages consumed" consumed_is dord "$n" || die "$(consumed dord) of $n messages consumed"
got=$(rows_differ orders o- "$TMP/orders.expected.csv")
[ "$(head -n 1 <<<"$got")" = 0 ] || fail "the orders mirror differs from the rows the messages describe: $got"
want=$(stat_of "$TMP/orders.stats" changes)
[ "$(applied_of dord)" = "$want" ] ||
    fail "changes_applied of dord is $(applied_of dord), want $want (a change applied twice counts twice)"
# the dead letters: exactly the bad messages, each with its reason
bad_check=$(q -c "CREATE TEMP TABLE bad (kind text, payload text)" \
    -c "\\copy bad FROM '$TMP/orders.bad.csv' (FORMAT csv)" -c "
    CREATE TEMP TABLE reason (kind text, pattern text);
    INSERT INTO reason VALUES
        ('bad_json', '^bad JSON'), ('not_object', '^bad JSON|not an object'), ('unknown_op', '^unknown op'),
        ('message_op', 'logical decoding message'), ('no_after', 'needs an after row'),
        ('precise_no_schema', 'whose scale is only in the message''s schema'),
        ('no_scale', 'has no integer parameters.scale'), ('null_customer', 'required field \"customer_id\" is null'),
        ('bad_time', 'holds milliseconds since 1970 but is a JSON string'),
        ('uncastable', 'invalid value for column \"item_count\" of input \"orders\": \"lots\"');
    CREATE TEMP TABLE dl AS SELECT * FROM c360.dead_letters WHERE source = 'dord';
    -- bad messages without exactly one dead letter of their payload (the apply path keeps
    -- the change, whose JSON holds the uncastable value) and reason
    CREATE TEMP VIEW unmatched AS SELECT b.* FROM bad b JOIN reason r USING (kind)
    WHERE (SELECT count(*) FROM dl WHERE dl.error ~ r.pattern
           AND dl.position ~ '^dbz_orders\[[0-2]\]@[0-9]+$'
           AND CASE b.kind WHEN 'uncastable'
                    THEN dl.payload LIKE '%\"order_id\": \"' || coalesce(b.payload::jsonb #>> '{payload,after,id}',
                                                                     b.payload::jsonb #>> '{after,id}') || '\"%'
                    ELSE dl.payload = b.payload END) <> 1;
    SELECT (SELECT count(*) FROM bad) || ' ' || (SELECT count(*) FROM dl) || ' ' ||
           (SELECT count(*) FROM unmatched);
    SELECT kind, left(payload, 60), (SELECT string_agg(error, ' | ') FROM dl WHERE dl.payload = u.payload)
    FROM unmatched u LIMIT 5")
[ "$(head -n 1 <<<"$bad_check")" = "$(stat_of "$TMP/orders.stats" bad) $(stat_of "$TMP/orders.stats" bad) 0" ] ||
    fail "dead letters (bad sent, dead letters, bad without their dead letter): $bad_check"
poll 30 "verify() empty" tick_verify_empty || fail "verify() not empty after the orders"
[ ${#failures[@]} -gt 0 ] || say "  $n messages, $kills kills: the mirror holds exactly the $(wc -l <"$TMP/orders.expected.csv") rows they" \
    "leave, changes_applied $want (no loss, no repeat), $(stat_of "$TMP/orders.stats" tombstones) tombstones" \
    "skipped, $(stat_of "$TMP/orders.stats" bad) dead letters = the bad messages with their reasons; verify() empty"

# ---------------------------------------------------------------------------------------------
# a worker that crashes is restarted and may still get there: the log must show none
if [ -n "${C360_SERVER_LOG:-}" ] && grep -a 'c360 source.*terminated by signal' "$C360_SERVER_LOG" | grep -qv 'signal 9'; then
    fail "a source worker crashed: $(grep -a 'terminated by signal' "$C360_SERVER_LOG" | grep -v 'signal 9' | head -n 1)"
fi
q -c "SELECT c360.drop_source(name) FROM c360.sources" >/dev/null
if [ ${#failures[@]} -gt 0 ]; then
    diagnostics
    echo "${#failures[@]} check(s) failed in $(elapsed "$T0")s"
    exit 1
fi
echo "ok - t_debezium ($(elapsed "$T0")s)"
