#!/usr/bin/env bash
# test/t_kafka_source.sh: the Kafka source end to end (issue 5, "Tests").
#
# The test broker (test/kafka_broker, librdkafka's mock cluster) serves the topics; kcat
# produces.  Sources stream into database c360_workers of the server under test
# (PGHOST/PGPORT, the one test/run.sh starts: customer360 preloaded, c360.database =
# 'c360_workers').  Steps:
#   0  the decoder alone (test/kafka_decode_test.c, no server)
#   1  200,000 events (1% producer re-sends) for 10,000 customers over 3 partitions,
#      produced in 20 chunks while the worker consumes; meanwhile kill -9 of the worker 5
#      times, the broker down for 10 s and back, an immediate-mode restart of the local
#      server, and tick + verify() at several instants.  Then: every unique event exactly
#      once in the mirror, changes_applied = messages produced (a message applied twice
#      would count twice), positions = the partitions' ends, no dead letters, verify() empty
#   2  identity: anonymous cookie events, then links on an identity topic re-attribute them
#      (30-day counts grow by exactly the cookie's events), a link moved to another
#      customer, a link deleted by a tombstone
#   3  1,000 malformed messages of every kind interleaved with 3,500 good ones: each in
#      dead letters with its reason and position, every good one applied
#   4  startup = latest: history skipped on the first start, nothing skipped after a restart
#   5  a stored offset past the partition's end: said in last_error and the log, never silent
# Every wait is a bounded poll.  Exit 0 only if every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. test/servers.sh

. test/lib.sh
. test/kafka_lib.sh
kafka_test_start t_kafka_source kafka_test

# ---------------------------------------------------------------------------------------------
say "step 0: the decoder alone"
run_decode_test "$TMP" || fail "the decoder test failed"

# ---------------------------------------------------------------------------------------------
# The broker and the local database.
broker_start "$TMP" customer_events:3 web_events:2 identities:2 bad_events:2 late_events:2 || die "the test broker did not start"
B=$BROKER_ADDR

kafka_test_db 10000
say "broker $B (pid $BROKER_PID), local server :$PGPORT ($LOCAL_DATA), 10,000 customers loaded"

# ---------------------------------------------------------------------------------------------
say "step 1: 200,000 events over 3 partitions while the worker consumes; kill -9 x5, broker down 10 s, local immediate restart"
t1=$(date +%s.%N)
python3 test/kafka_events.py events 1 200000 --customers 10000 --prefix ev --dups 0.01 --seed 1 \
    --ids "$TMP/ev_ids" >"$TMP/ev.txt"
split -l 10000 -d -a 2 "$TMP/ev.txt" "$TMP/ev_chunk."
unique=$(wc -l <"$TMP/ev_ids")
create_source kev customer_events behavioral_events '"startup": "earliest"'
row=$(q -c "SELECT backend_type || '|' || application_name FROM pg_stat_activity WHERE pid = $(worker_pid kev)")
[ "$row" = "c360 source|kev" ] || fail "the worker shows in pg_stat_activity as '$row', want 'c360 source|kev'"

kills=0
verified=()
# lag_messages as source_status shows it, sampled while the stream runs
( set +e; while :; do lag_of kev; sleep 0.3; done ) >"$TMP/lags" 2>/dev/null &
SAMPLER=$!
bg_pids+=($SAMPLER)
for chunk in "$TMP"/ev_chunk.*; do
    i=$((10#${chunk##*.} + 1))
    case $i in
        2 | 4 | 6 | 8 | 10)
            produce customer_events "$chunk" &
            bg_pids+=($!)
            sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + (r % 120) / 100 }')"
            consumed=$(positions_of kev)
            if kill_worker kev; then
                kills=$((kills + 1))
                say "  chunk $i: kill -9 of the worker (pid $KILLED) with $consumed messages committed while messages $(((i - 1) * 10000 + 1))-$((i * 10000)) were being produced"
            fi
            wait "${bg_pids[-1]}" || die "producing chunk $i failed"
            unset "bg_pids[-1]"
            ;;
        12)
            produce customer_events "$chunk"
            kill -USR1 "$BROKER_PID"
            say "  chunk $i: broker down with $(positions_of kev) messages committed"
            if poll 10 "state retrying while the broker is down" state_is kev retrying; then
                err=$(q -c "SELECT last_error FROM c360.source_status WHERE name = 'kev'")
                say "  source_status while down: retrying, last_error '${err:0:100}...'"
            else
                fail "the source did not show state 'retrying' while the broker was down (state $(state_of kev))"
            fi
            sleep 6
            kill -USR2 "$BROKER_PID"
            say "  broker up again after 10 s"
            poll 30 "state streaming after the broker came back" state_is kev streaming ||
                fail "the source did not go back to 'streaming' after the broker came back"
            ;;
        15)
            produce customer_events "$chunk"
            sleep 0.5
            say "  chunk $i: immediate-mode restart of the local server with $(positions_of kev) messages committed"
            as_pg "$PG_BIN/pg_ctl" -D "$LOCAL_DATA" -m immediate -w -t 60 stop >/dev/null ||
                die "pg_ctl -m immediate stop of the local server failed"
            as_pg "$PG_BIN/pg_ctl" -D "$LOCAL_DATA" ${LOCAL_LOG:+-l "$LOCAL_LOG"} -w -t 60 start >/dev/null ||
                die "the local server did not start again after the immediate stop"
            poll 60 "the worker back after the restart" worker_running kev || die "no worker after the local restart"
            ;;
        *)
            produce customer_events "$chunk"
            ;;
    esac
    case $i in
        3 | 9 | 14 | 18)
            if tick_verify_empty; then
                verified+=("$(positions_of kev)")
            else
                fail "verify() not empty after a tick mid-stream (chunk $i, $(positions_of kev) messages committed): $(q -c "SELECT count(*) FROM c360.verify()") rows"
            fi
            ;;
    esac
done
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
max_lag=$(grep -E '^[0-9]+$' "$TMP/lags" | sort -n | tail -n 1 || true)
say "  produced 200,000 messages ($unique unique events); $kills kills; verify() empty after ticks at ${verified[*]} committed messages; largest lag_messages seen ${max_lag:-none}"
[ "$kills" -ge 5 ] || fail "only $kills kill -9 rounds happened, want 5"
[ "${max_lag:-0}" -gt 0 ] || fail "lag_messages never showed a backlog"
poll 240 "all 200,000 messages committed" positions_are kev 200000 ||
    die "the worker did not catch up: $(positions_of kev) of 200,000 messages committed"
lag_zero() { [ "$(lag_of kev)" = 0 ]; }
poll 10 "lag 0" lag_zero || fail "lag_messages is $(lag_of kev) after catching up, want 0"
got=$(ids_match "$TMP/ev_ids" ev-)
[ "$got" = "$unique $unique 0 0" ] ||
    fail "mirror vs produced events (want, have, missing, extra): $got; want '$unique $unique 0 0'"
n=$(applied_of kev)
[ "$n" = 200000 ] || fail "changes_applied is $n, want 200000 (each message applied exactly once)"
[ "$(dead_of kev)" = 0 ] || fail "$(dead_of kev) dead letters from good events"
poll 30 "verify() empty after a tick" tick_verify_empty || fail "verify() is not empty at the end of step 1"
pos=$(q -c "SELECT position FROM c360.source_status WHERE name = 'kev'")
say "  exactly once: $unique unique events in the mirror, changes_applied $n, positions $pos, verify() empty"
say "step 1 done in $(elapsed "$t1")s"

# ---------------------------------------------------------------------------------------------
say "step 2: cookie events, then identity links re-attribute them; a link moved; a link deleted by tombstone"
t2=$(date +%s.%N)
create_source kweb web_events behavioral_events '"startup": "earliest"'
create_source kid identities identity_graph '"startup": "earliest"'
python3 test/kafka_events.py cookies 2000 --cookies 50 --prefix ck-ev --seed 2 >"$TMP/cookies.txt"
produce web_events "$TMP/cookies.txt"
poll 60 "2,000 cookie events committed" positions_are kweb 2000 || die "cookie events not applied"
poll 30 "verify() empty" verify_empty || fail "verify() not empty after the cookie events"
q -c "CREATE TABLE kafka_test.before AS SELECT customer_id, events_last_30d FROM c360.customer_360
      WHERE customer_id IN (SELECT 'cust-' || i FROM generate_series(1, 50) i)"
q -c "CREATE TABLE kafka_test.cookie_events AS SELECT customer_id AS cookie, count(*) AS n
      FROM c360.behavioral_events WHERE customer_id LIKE 'ck-%' GROUP BY 1"
# counts_match COOKIES: every one of cust-1..cust-50 counts its events before the links plus
# the events of the cookies COOKIES (an SQL text[] expression over b.customer_id) gives it
counts_match() {
    [ "$(q -c "SELECT count(*) FROM kafka_test.before b
               JOIN c360.customer_360 p USING (customer_id)
               WHERE p.events_last_30d <> b.events_last_30d + COALESCE((SELECT sum(n) FROM kafka_test.cookie_events c
                                                                       WHERE c.cookie = ANY ($1)), 0)")" = 0 ]
}
for n in $(seq 1 50); do
    echo "id-$n:{\"customer_id\":\"cust-$n\",\"identity_type\":\"cookie\",\"identity_value\":\"ck-$n\",\"created_at\":$(($(date +%s) * 1000))}"
done >"$TMP/links.txt"
produce identities "$TMP/links.txt"
poll 60 "50 links committed" positions_are kid 50 || die "identity links not applied"
[ "$(q -c "SELECT count(*) FROM c360.identity_graph WHERE identity_id LIKE 'id-%'")" = 50 ] ||
    fail "the identity mirror does not hold the 50 links"
# each cust-N now also counts the events of ck-N
COOKIES_OF="ARRAY['ck-' || substr(b.customer_id, 6)]"
poll 30 "customers' 30-day counts include their cookies' events" counts_match "$COOKIES_OF" ||
    fail "after the links, a customer's events_last_30d is not its own plus its cookie's events"
verify_empty || fail "verify() not empty after the links"
say "  50 links: each customer's events_last_30d grew by exactly its cookie's events; verify() empty"

# move ck-1 from cust-1 to cust-2; delete the link of ck-2 (a tombstone keyed id-2)
echo "id-1:{\"customer_id\":\"cust-2\",\"identity_type\":\"cookie\",\"identity_value\":\"ck-1\",\"created_at\":$(($(date +%s) * 1000))}" >"$TMP/move.txt"
produce identities "$TMP/move.txt"
link_moved() { [ "$(q -c "SELECT customer_id FROM c360.identity_graph WHERE identity_id = 'id-1'")" = cust-2 ]; }
poll 30 "the moved link" link_moved ||
    fail "link id-1 did not move to cust-2"
MOVED="CASE b.customer_id WHEN 'cust-1' THEN ARRAY[]::text[] WHEN 'cust-2' THEN ARRAY['ck-1', 'ck-2']
       ELSE ARRAY['ck-' || substr(b.customer_id, 6)] END"
poll 30 "cust-1 without ck-1, cust-2 with ck-1 and ck-2" counts_match "$MOVED" ||
    fail "after moving ck-1 to cust-2 the 30-day counts are wrong"
verify_empty || fail "verify() not empty after moving a link"
echo "id-2:" >"$TMP/tombstone.txt"
produce identities "$TMP/tombstone.txt" -Z
link_deleted() { [ "$(q -c "SELECT count(*) FROM c360.identity_graph WHERE identity_id = 'id-2'")" = 0 ]; }
poll 30 "link id-2 deleted" link_deleted ||
    fail "the tombstone did not delete link id-2"
DELETED="CASE b.customer_id WHEN 'cust-1' THEN ARRAY[]::text[] WHEN 'cust-2' THEN ARRAY['ck-1']
         ELSE ARRAY['ck-' || substr(b.customer_id, 6)] END"
poll 30 "cust-2 without ck-2" counts_match "$DELETED" || fail "after the tombstone the 30-day counts are wrong"
verify_empty || fail "verify() not empty after the tombstone"
[ "$(dead_of kid)" = 0 ] && [ "$(dead_of kweb)" = 0 ] || fail "dead letters in step 2"
say "  link moved (cust-1 -> cust-2) and link deleted by tombstone: counts follow, verify() empty"
say "step 2 done in $(elapsed "$t2")s"

# ---------------------------------------------------------------------------------------------
say "step 3: 1,000 malformed messages of every kind interleaved with 3,500 good ones"
t3=$(date +%s.%N)
create_source kbad bad_events behavioral_events '"startup": "earliest", "max_message_bytes": 65536'
python3 test/kafka_events.py bad 80 --good 3000 --prefix okb --seed 3 --ids "$TMP/okb_ids" \
    --kinds "$TMP/bad_kinds" >"$TMP/bad.txt"
python3 test/kafka_events.py bad 0 --good 500 --tombstones 40 --prefix okt --seed 4 --ids "$TMP/okt_ids" \
    --kinds "$TMP/tomb_kinds" >"$TMP/tomb.txt"
produce bad_events "$TMP/bad.txt"
produce bad_events "$TMP/tomb.txt" -Z
total=$(($(wc -l <"$TMP/bad.txt") + $(wc -l <"$TMP/tomb.txt")))
poll 90 "$total messages committed" positions_are kbad "$total" ||
    die "the malformed messages stopped the stream: $(positions_of kbad) of $total committed"
dl=$(dead_of kbad)
[ "$dl" = 1000 ] || fail "$dl dead letters, want 1000"
[ "$(q -c "SELECT count(*) FROM c360.dead_letters WHERE source = 'kbad' AND (error IS NULL OR error = ''
           OR position !~ '^bad_events\[[01]\]@[0-9]+$')")" = 0 ] ||
    fail "dead letters without a reason or a topic[partition]@offset position"
# each kind's reason
reason_counts=$(q -F' ' -c "SELECT CASE
        WHEN error LIKE 'bad JSON%' THEN 'bad_json'
        WHEN error LIKE '%not an object%' THEN 'bad_json'
        WHEN error LIKE '%\"customer_id\" is missing' THEN 'no_customer'
        WHEN error LIKE '%\"customer_id\" is null' THEN 'null_customer'
        WHEN error LIKE '%\"event_id\" is missing' THEN 'no_event_id'
        WHEN error LIKE '%is a JSON object%' THEN 'object_value'
        WHEN error LIKE '%is a JSON array%' THEN 'array_value'
        WHEN error LIKE '%invalid value for column \"event_time\"%' THEN 'bad_time'
        WHEN error LIKE '%out of range for epoch milliseconds%' THEN 'time_range'
        WHEN error LIKE '%more than the 65536 allowed%' THEN 'oversized'
        WHEN error LIKE '%tombstone%append-only%' THEN 'tombstone'
        ELSE 'other: ' || error END AS kind, count(*)
    FROM c360.dead_letters WHERE source = 'kbad' GROUP BY 1 ORDER BY 1")
want_counts=$(cat "$TMP/bad_kinds" "$TMP/tomb_kinds" | grep -v '^good$' |
    sed -E 's/^(empty|not_object|bad_utf8)$/bad_json/' | sort | uniq -c | awk '{ print $2, $1 }' | LC_ALL=C sort)
[ "$(echo "$reason_counts" | LC_ALL=C sort)" = "$want_counts" ] ||
    fail "dead letters by reason differ from what was sent:$(echo; paste <(echo "$want_counts") <(echo "$reason_counts" | LC_ALL=C sort))"
[ "$(q -c "SELECT count(*) FROM c360.dead_letters WHERE source = 'kbad' AND error LIKE 'bad JSON%' AND left(payload, 2) = '\x'")" = 80 ] ||
    fail "invalid UTF-8 payloads are not kept as hex"
[ "$(q -c "SELECT count(*) FROM c360.dead_letters WHERE source = 'kbad' AND payload LIKE '%bytes in all)' AND length(payload) < 2000")" = 80 ] ||
    fail "oversized payloads are not kept cut short"
cat "$TMP/okb_ids" "$TMP/okt_ids" >"$TMP/ok_ids"
got=$(ids_match "$TMP/ok_ids" ok)
[ "$got" = "3500 3500 0 0" ] || fail "good events among the bad (want, have, missing, extra): $got"
[ "$(applied_of kbad)" = 3500 ] || fail "changes_applied of kbad is $(applied_of kbad), want 3500"
[ "$(q -c "SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE 'bad-%'")" = 0 ] ||
    fail "a malformed event reached the mirror"
poll 30 "verify() empty" verify_empty || fail "verify() not empty after the malformed messages"
say "  1,000 dead letters, each with its reason and position:" $(echo "$reason_counts" | tr '\n' ',')
say "  all 3,500 good events applied; verify() empty"
say "step 3 done in $(elapsed "$t3")s"

# ---------------------------------------------------------------------------------------------
say "step 4: startup = latest skips history on the first start, never after a restart"
t4=$(date +%s.%N)
python3 test/kafka_events.py events 1 500 --prefix lh --seed 5 >"$TMP/history.txt"
produce late_events "$TMP/history.txt"
create_source klate late_events behavioral_events '"startup": "latest"'
poll 30 "the first start storing the partitions' ends" positions_are klate 500 ||
    fail "the first start with latest did not store the ends of the partitions (positions sum $(positions_of klate), want 500)"
python3 test/kafka_events.py events 1 300 --prefix ln1 --seed 6 --ids "$TMP/ln1_ids" >"$TMP/new1.txt"
produce late_events "$TMP/new1.txt"
poll 60 "300 new events committed" positions_are klate 800 || die "new events after a latest start not applied"
got=$(ids_match "$TMP/ln1_ids" ln1-)
[ "$got" = "300 300 0 0" ] || fail "events produced after the first start: $got"
[ "$(q -c "SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE 'lh-%'")" = 0 ] ||
    fail "startup = latest applied history"
# stopped: what is produced meanwhile must come on the next start
q -c "SELECT c360.pause_source('klate')" >/dev/null
poll 30 "the klate worker gone" bash -c "! psql -X -qAt -d $DB -c \"SELECT 1 FROM pg_stat_activity WHERE application_name = 'klate' AND backend_type = 'c360 source'\" | grep -q 1" ||
    fail "pause_source did not stop the worker"
python3 test/kafka_events.py events 1 200 --prefix ln2 --seed 7 --ids "$TMP/ln2_ids" >"$TMP/new2.txt"
produce late_events "$TMP/new2.txt"
q -c "SELECT c360.resume_source('klate')" >/dev/null
poll 60 "200 events produced while stopped committed" positions_are klate 1000 ||
    fail "events produced while the source was stopped were not all applied ($(positions_of klate) of 1000)"
got=$(ids_match "$TMP/ln2_ids" ln2-)
[ "$got" = "200 200 0 0" ] || fail "events produced while stopped: $got"
[ "$(q -c "SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE 'lh-%'")" = 0 ] ||
    fail "the restart applied history"
[ "$(applied_of klate)" = 500 ] || fail "changes_applied of klate is $(applied_of klate), want 500"
verify_empty || fail "verify() not empty in step 4"
say "  500 history messages skipped; 300 after the first start and 200 produced while stopped all applied"
say "step 4 done in $(elapsed "$t4")s"

# ---------------------------------------------------------------------------------------------
say "step 5: a stored offset past the partition's end is reported, not silently reset"
q -c "SELECT c360.pause_source('klate')" >/dev/null
poll 30 "the klate worker gone" bash -c "! psql -X -qAt -d $DB -c \"SELECT 1 FROM pg_stat_activity WHERE application_name = 'klate' AND backend_type = 'c360 source'\" | grep -q 1" ||
    fail "pause_source did not stop the worker"
q -c "UPDATE c360.source_positions SET position = '999999' WHERE source = 'klate' AND part = '0'"
q -c "SELECT c360.resume_source('klate')" >/dev/null
err_is_past_end() { q -c "SELECT last_error FROM c360.source_status WHERE name = 'klate'" | grep -q "offset 999999 of partition 0 of topic \"late_events\" is past its end"; }
if poll 30 "last_error about the offset" err_is_past_end; then
    say "  last_error: $(q -c "SELECT last_error FROM c360.source_status WHERE name = 'klate'" | cut -c1-150)"
else
    fail "an out-of-range offset did not show in source_status.last_error (it says: $(q -c "SELECT last_error FROM c360.source_status WHERE name = 'klate'"))"
fi
if [ -n "$LOCAL_LOG" ] && ! grep -aq 'offset 999999 of partition 0 of topic "late_events" is past its end' "$LOCAL_LOG"; then
    fail "the out-of-range offset is not in the server log"
fi
# partition 0 is read again from its start: its history arrives, nothing breaks
reread() { [ "$(q -c "SELECT count(*) FROM c360.source_positions WHERE source = 'klate' AND part = '0'
                      AND position::bigint < 999999 AND position::bigint > 0")" = 1 ]; }
poll 60 "partition 0 read again to its end" reread ||
    fail "partition 0 was not read again after the reset"
state_is klate streaming || poll 30 "klate streaming" state_is klate streaming || fail "klate is $(state_of klate) after the reset"
poll 30 "verify() empty" tick_verify_empty || fail "verify() not empty after the reset"

# ---------------------------------------------------------------------------------------------
q -c "SELECT c360.drop_source(name) FROM c360.sources" >/dev/null
poll 30 "no source workers left" bash -c "! psql -X -qAt -d $DB -c \"SELECT 1 FROM pg_stat_activity WHERE backend_type = 'c360 source'\" | grep -q 1" ||
    fail "source workers still running after drop_source"
if [ ${#failures[@]} -gt 0 ]; then
    diagnostics
    echo "${#failures[@]} check(s) failed in $(elapsed "$T0")s"
    exit 1
fi
echo "ok - t_kafka_source ($(elapsed "$T0")s)"
