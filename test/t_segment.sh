#!/usr/bin/env bash
# test/t_segment.sh: the Kafka source's format segment, Segment/RudderStack spec calls
# (issue 18, item 4), end to end on the test broker (test/kafka_broker) into database
# c360_workers of the server under test (test/run.sh's).  Steps:
#   0  the decoders alone (test/kafka_decode_test.c, no server)
#   1  identity resolution, the article's story: anonymous page and track calls, then
#      identify (userId + anonymousId): the earlier events count for the customer in
#      c360.customer_360 (events, product views, sessions, exact numbers); the same identify
#      again changes nothing; a later identify moves the anonymous id to another customer;
#      alias (previousId -> userId); a screen call; identify and events in one batch
#   2  map_table columns place session_id, product_id, category_id at other paths; ISO-8601
#      offsets; a mapping of another column, format segment on another
#      input: the source stops in 'error' with the reason
#   3  malformed calls of every kind to dead letters with their reasons, skipped calls
#      counted in source_status.skipped_messages, every good call applied
#   4  30,000 calls of every type over 3 partitions, kill -9 of the worker 3 times while it
#      reads them: the mirrors equal, row for row, what the calls describe (events and the
#      last link per identity), changes_applied, skipped_messages and dead letters exact
#      (nothing applied or counted twice), verify() empty
#   5  a database still at 0.5 (no skipped_messages): the source stops in 'error' naming the
#      update; after ALTER EXTENSION ... UPDATE and resume_source it reads the topic
# Every wait is a bounded poll.  Exit 0 only if every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/servers.sh

. test/lib.sh
. test/kafka_lib.sh
kafka_test_start t_segment seg_test

skipped_of() { q -c "SELECT skipped_messages FROM c360.source_status WHERE name = '$1'"; }
# events, product views, sessions in the last 30 days, as the profile has them
profile_of() {
    q -F' ' -c "SELECT events_last_30d, product_views_last_30d, sessions_last_30d
                FROM c360.customer_360 WHERE customer_id = '$1'"
}
profile_is() { [ "$(profile_of "$1")" = "$2" ]; }
expect_profile() { # CUSTOMER "EVENTS VIEWS SESSIONS" WHY
    profile_is "$1" "$2" || fail "$3: $1 has (events, product views, sessions) ($(profile_of "$1")), want ($2)"
}
link_of() { q -F' ' -c "SELECT customer_id, identity_type, identity_value FROM c360.identity_graph WHERE identity_id = '$1'"; }
# a Segment source: NAME TOPIC [map_table's columns]
segment_source() { create_source "$1" "$2" behavioral_events '"startup": "earliest", "format": "segment"' "${3:-}"; }
ago() { date -u -d "$1 ago" +%Y-%m-%dT%H:%M:%S.000Z; }
committed() { poll 60 "$2 messages of $1 committed" positions_are "$1" "$2" || die "$1 committed $(positions_of "$1") messages, want $2"; }

# ---------------------------------------------------------------------------------------------
say "step 0: the decoders alone"
run_decode_test "$TMP" || fail "the decoder test failed"

broker_start "$TMP" seg_story:1 seg_mapped:1 seg_bad:2 seg_stream:3 || die "the test broker did not start"
B=$BROKER_ADDR
kafka_test_db 500
say "broker $B (pid $BROKER_PID), local server :$PGPORT, 500 customers loaded"

# ---------------------------------------------------------------------------------------------
say "step 1: anonymous browsing, identify, a moved link, alias, screen, identify and events in one batch"
t1=$(date +%s.%N)
segment_source kstory seg_story
D3=$(ago '3 days') D2=$(ago '2 days') D1=$(ago '1 day') H1=$(ago '1 hour')
ctx() { echo "\"context\": {\"sessionId\": \"$1\"}"; }
cat >"$TMP/anonymous.txt" <<EOF
anon-1:{"type": "page", "messageId": "st-1", "anonymousId": "anon-1", "name": "Home", "timestamp": "$D3", $(ctx sA)}
anon-1:{"type": "page", "messageId": "st-2", "anonymousId": "anon-1", "name": "Shoes", "timestamp": "$D3", $(ctx sA)}
anon-1:{"type": "page", "messageId": "st-3", "anonymousId": "anon-1", "timestamp": "$D2", $(ctx sB)}
anon-1:{"type": "track", "messageId": "st-4", "anonymousId": "anon-1", "event": "product_view", "timestamp": "$D3", $(ctx sA), "properties": {"product_id": "p1", "category": "shoes"}}
anon-1:{"type": "track", "messageId": "st-5", "anonymousId": "anon-1", "event": "product_view", "timestamp": "$D2", $(ctx sB), "properties": {"product_id": "p2", "category": "shoes"}}
EOF
produce seg_story "$TMP/anonymous.txt"
committed kstory 5
got=$(q -c "SELECT string_agg(concat_ws('|', event_id, customer_id, session_id, event_type, product_id, category_id,
                                        event_time = CASE WHEN event_id IN ('st-3', 'st-5') THEN '$D2' ELSE '$D3' END::timestamptz),
                              ' ' ORDER BY event_id)
            FROM c360.behavioral_events WHERE event_id LIKE 'st-%'")
want="st-1|anon-1|sA|page_view|t st-2|anon-1|sA|page_view|t st-3|anon-1|sB|page_view|t st-4|anon-1|sA|product_view|p1|shoes|t st-5|anon-1|sB|product_view|p2|shoes|t"
[ "$got" = "$want" ] || fail "anonymous events in the mirror: got '$got', want '$want'"
expect_profile cust-1 "0 0 0" "before identify"

echo "anon-1:{\"type\": \"identify\", \"messageId\": \"st-6\", \"userId\": \"cust-1\", \"anonymousId\": \"anon-1\", \"timestamp\": \"$D1\", \"traits\": {\"email\": \"u1@example.org\"}}" >"$TMP/identify.txt"
produce seg_story "$TMP/identify.txt"
committed kstory 6
expect_profile cust-1 "5 2 2" "identify re-attributes the anonymous events"
[ "$(link_of segment:anonymous_id:anon-1)" = "cust-1 anonymous_id anon-1" ] ||
    fail "identify made link '$(link_of segment:anonymous_id:anon-1)'"
[ "$(q -c "SELECT created_at = '$D1' FROM c360.identity_graph WHERE identity_id = 'segment:anonymous_id:anon-1'")" = t ] ||
    fail "the link's created_at is not the identify's timestamp"
say "  5 anonymous events of anon-1 (3 pages, 2 product views, 2 sessions) now count for cust-1"

cat >"$TMP/after.txt" <<EOF
anon-1:{"type": "track", "messageId": "st-7", "userId": "cust-1", "anonymousId": "anon-1", "event": "add_to_cart", "timestamp": "$H1", $(ctx sC)}
anon-1:{"type": "identify", "messageId": "st-8", "userId": "cust-1", "anonymousId": "anon-1", "timestamp": "$H1"}
EOF
produce seg_story "$TMP/after.txt"
committed kstory 8
expect_profile cust-1 "6 2 3" "an event after login, the same identify again"
[ "$(q -c "SELECT count(*) FROM c360.identity_graph WHERE identity_value = 'anon-1'")" = 1 ] ||
    fail "the repeated identify added a link"

echo "anon-1:{\"type\": \"identify\", \"messageId\": \"st-9\", \"userId\": \"cust-2\", \"anonymousId\": \"anon-1\", \"timestamp\": \"$H1\"}" >"$TMP/move.txt"
produce seg_story "$TMP/move.txt"
committed kstory 9
expect_profile cust-1 "1 0 1" "after anon-1 moved to cust-2, cust-1 keeps its own event"
expect_profile cust-2 "5 2 2" "after anon-1 moved to cust-2"
[ "$(link_of segment:anonymous_id:anon-1)" = "cust-2 anonymous_id anon-1" ] || fail "the link did not move"
say "  the same identify again: one link, nothing changed; a later identify moved anon-1 to cust-2"

cat >"$TMP/alias.txt" <<EOF
legacy-9:{"type": "track", "messageId": "st-10", "userId": "legacy-9", "event": "product_view", "timestamp": "$D2", $(ctx sD), "properties": {"product_id": "p3"}}
legacy-9:{"type": "page", "messageId": "st-11", "userId": "legacy-9", "timestamp": "$D2", $(ctx sD)}
EOF
produce seg_story "$TMP/alias.txt"
committed kstory 11
expect_profile cust-3 "0 0 0" "before alias"
cat >"$TMP/alias2.txt" <<EOF
legacy-9:{"type": "alias", "messageId": "st-12", "userId": "cust-3", "previousId": "legacy-9", "timestamp": "$D1"}
cust-3:{"type": "screen", "messageId": "st-13", "userId": "cust-3", "name": "Cart", "timestamp": "$H1", $(ctx sE)}
EOF
produce seg_story "$TMP/alias2.txt"
committed kstory 13
expect_profile cust-3 "3 1 2" "alias legacy-9 -> cust-3, then a screen"
[ "$(link_of segment:alias:legacy-9)" = "cust-3 alias legacy-9" ] || fail "alias made link '$(link_of segment:alias:legacy-9)'"
[ "$(q -c "SELECT event_type FROM c360.behavioral_events WHERE event_id = 'st-13'")" = screen_view ] ||
    fail "a screen call is not a screen_view"
say "  alias: legacy-9's 2 events count for cust-3; a screen call is a screen_view"

# one batch: the worker is paused while events, an identify between them and a resent
# event are produced, and reads them all at once when resumed
q -c "SELECT c360.pause_source('kstory')" >/dev/null
poll 30 "the kstory worker gone" bash -c "[ -z \"\$(psql -X -qAt -d $DB -c \"SELECT 1 FROM pg_stat_activity WHERE application_name = 'kstory' AND backend_type = 'c360 source'\")\" ]" ||
    fail "pause_source did not stop the worker"
cat >"$TMP/batch.txt" <<EOF
anon-2:{"type": "page", "messageId": "st-14", "anonymousId": "anon-2", "timestamp": "$D2", $(ctx sF)}
anon-2:{"type": "identify", "messageId": "st-15", "userId": "cust-4", "anonymousId": "anon-2", "timestamp": "$D1"}
anon-2:{"type": "track", "messageId": "st-16", "anonymousId": "anon-2", "event": "product_view", "timestamp": "$H1", $(ctx sF), "properties": {"product_id": "p4"}}
$(sed -n 4p "$TMP/anonymous.txt")
EOF
produce seg_story "$TMP/batch.txt"
q -c "SELECT c360.resume_source('kstory')" >/dev/null
committed kstory 17
expect_profile cust-4 "2 1 1" "events before and after an identify in one batch"
expect_profile cust-2 "5 2 2" "a resent event (same messageId)"
[ "$(applied_of kstory)" = 17 ] || fail "changes_applied of kstory is $(applied_of kstory), want 17"
[ "$(dead_of kstory)" = 0 ] && [ "$(skipped_of kstory)" = 0 ] || fail "dead letters or skipped calls in step 1"
poll 30 "verify() empty" tick_verify_empty || fail "verify() not empty after step 1"
say "step 1 done in $(elapsed "$t1")s"

# ---------------------------------------------------------------------------------------------
say "step 2: columns at other paths; ISO-8601 offsets; bad options stop the source"
t2=$(date +%s.%N)
segment_source kmap seg_mapped '{"session_id": "context.session.id", "product_id": "properties.sku", "category_id": "properties.cat"}'
# one instant in three of the spec's forms
UTC=$(ago '5 hours') EPOCH=$(date -u -d "$UTC" +%s)
PLUS=$(TZ=Asia/Kolkata date -d "@$EPOCH" +%Y-%m-%dT%H:%M:%S.000+05:30)
MINUS=$(TZ=America/Los_Angeles date -d "@$EPOCH" +%Y-%m-%dT%H:%M:%S.000%z)
cat >"$TMP/mapped.txt" <<EOF
cust-5:{"type": "track", "messageId": "sm-1", "userId": "cust-5", "event": "product_view", "timestamp": "$UTC", "context": {"sessionId": "no", "session": {"id": "sm1"}}, "properties": {"product_id": "no", "category": "no", "sku": "k1", "cat": "c1"}}
cust-5:{"type": "page", "messageId": "sm-2", "userId": "cust-5", "timestamp": "$PLUS", "context": {"session": {"id": "sm1"}}, "properties": {"cat": "c2"}}
anon-5:{"type": "screen", "messageId": "sm-3", "anonymousId": "anon-5", "timestamp": "$MINUS", "context": {"session": {"id": "sm2"}}, "properties": {"sku": 77}}
EOF
produce seg_mapped "$TMP/mapped.txt"
committed kmap 3
got=$(q -c "SELECT string_agg(concat_ws('|', event_id, customer_id, session_id, event_type, COALESCE(product_id, '-'),
                                        COALESCE(category_id, '-'), event_time = '$UTC'), ' ' ORDER BY event_id)
            FROM c360.behavioral_events WHERE event_id LIKE 'sm-%'")
want="sm-1|cust-5|sm1|product_view|k1|c1|t sm-2|cust-5|sm1|page_view|-|c2|t sm-3|anon-5|sm2|screen_view|77|-|t"
[ "$got" = "$want" ] || fail "mapped calls in the mirror: got '$got', want '$want' (times $UTC, $PLUS, $MINUS)"
say "  mapped paths read; $UTC, $PLUS and $MINUS are one instant"

err_of() { q -c "SELECT last_error FROM c360.source_status WHERE name = '$1'"; }
stops_with() { # NAME OPTIONS INPUT COLUMNS REASON
    q -c "BEGIN;
          SELECT c360.create_source('$1', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"seg_mapped\", $2}');
          SELECT c360.map_table('$1', 'seg_mapped', '$3', ${4:-NULL});
          COMMIT;" >/dev/null
    if poll 30 "source $1 in state error" state_is "$1" error; then
        [[ $(err_of "$1") == *"$5"* ]] || fail "source $1: last_error '$(err_of "$1")', want '$5'"
    else
        fail "source $1 is $(state_of "$1"), want error ($5)"
    fi
    q -c "SELECT c360.drop_source('$1')" >/dev/null
}
stops_with ktime '"format": "segment"' behavioral_events "'{\"event_time\": \"receivedAt\"}'" \
    'format segment takes input column event_time from the call itself'
stops_with kord '"format": "segment"' orders '' \
    'format segment), which feed input behavioral_events, but topic "seg_mapped" is mapped to input "orders"'
say "  a mapped event_time, format segment into orders: each stops its source with the reason"
say "step 2 done in $(elapsed "$t2")s"

# ---------------------------------------------------------------------------------------------
say "step 3: malformed calls to dead letters, skipped calls counted"
t3=$(date +%s.%N)
segment_source kbad seg_bad
python3 test/segment_events.py bad 5 --good 300 --prefix sb --seed 4 --kinds "$TMP/bad_kinds" \
    --ids "$TMP/sb_ids" >"$TMP/bad.txt"
produce seg_bad "$TMP/bad.txt" -Z
committed kbad "$(wc -l <"$TMP/bad.txt")"
declare -A REASON=(
    [bad_json]='bad JSON%'
    [not_object]='the message value is a JSON array, not an object'
    [no_type]='no field "type"%'
    [no_message_id]='no field "messageId"%'
    [no_user]='neither userId nor anonymousId%'
    [object_user]='field "userId" is a JSON object%'
    [bad_time]='field "timestamp" is "yesterday", not an ISO-8601%'
    [no_offset]='field "timestamp" is "2024-05-01T10:00:00", not an ISO-8601%'
    [no_time]='no field "timestamp"%'
    [no_event]='a track call without an event name%'
    [alias_half]='an alias call needs both a previousId and a userId'
    [tombstone]='a message with a null value (a tombstone) is no Segment call'
)
for kind in "${!REASON[@]}"; do
    sent=$(grep -cx "$kind" "$TMP/bad_kinds" || true)
    got=$(q -c "SELECT count(*) FROM c360.dead_letters WHERE source = 'kbad' AND error LIKE '${REASON[$kind]}'")
    [ "$sent" = 5 ] && [ "$got" = 5 ] || fail "$kind: $got dead letters with reason '${REASON[$kind]}', $sent sent"
done
[ "$(dead_of kbad)" = 60 ] || fail "$(dead_of kbad) dead letters, want 60"
[ "$(q -c "SELECT count(*) FROM c360.dead_letters WHERE source = 'kbad' AND position !~ '^seg_bad\[[01]\]@[0-9]+$'")" = 0 ] ||
    fail "dead letters without a topic[partition]@offset position"
bad_json=$(grep -m1 '^k:{"type": "track", "messageId": "bad-[0-9]*", $' "$TMP/bad.txt" | cut -c3-)
[ "$(q -c "SELECT count(*) FROM c360.dead_letters WHERE source = 'kbad' AND payload = \$\$$bad_json\$\$")" = 1 ] ||
    fail "the dead letter does not keep the message as it came: $bad_json"
[ "$(skipped_of kbad)" = 15 ] || fail "skipped_messages of kbad is $(skipped_of kbad), want 15 (group, identify without one of the ids)"
got=$(ids_match "$TMP/sb_ids" sb-)
[ "$got" = "300 300 0 0" ] || fail "good calls among the bad (want, have, missing, extra): $got"
[ "$(applied_of kbad)" = 300 ] || fail "changes_applied of kbad is $(applied_of kbad), want 300"
[ "$(q -c "SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE 'bad-%'")" = 0 ] ||
    fail "a malformed or skipped call reached the mirror"
poll 30 "verify() empty" verify_empty || fail "verify() not empty after step 3"
say "  60 dead letters, 5 of each of 12 reasons; 15 calls skipped; 300 good calls applied"
say "step 3 done in $(elapsed "$t3")s"

# ---------------------------------------------------------------------------------------------
say "step 4: 30,000 calls over 3 partitions, kill -9 of the worker 3 times while it reads them"
t4=$(date +%s.%N)
python3 test/segment_events.py stream 30000 --customers 500 --prefix sx --seed 5 --expect "$TMP" >"$TMP/stream.txt"
# all of it on the broker first, so that each kill falls in the middle of a backlog
produce seg_stream "$TMP/stream.txt"
segment_source kcrash seg_stream
committed_over() { [ "$(positions_of kcrash)" -gt "$1" ]; }
kills=0
for at in 3000 12000 21000; do
    poll 120 "over $at calls committed" committed_over "$at" || die "the worker is stuck at $(positions_of kcrash) calls"
    now=$(positions_of kcrash)
    if kill_worker kcrash; then
        kills=$((kills + 1))
        say "  kill -9 of the worker (pid $KILLED) with $now of 30000 calls committed"
        [ "$now" -lt 30000 ] || fail "the worker had read everything before kill $kills: not mid-stream"
    fi
done
read -r _ messages <<<"$(grep '^messages' "$TMP/counts")"
read -r _ changes <<<"$(grep '^changes' "$TMP/counts")"
read -r _ skipped <<<"$(grep '^skipped' "$TMP/counts")"
read -r _ bad <<<"$(grep '^bad' "$TMP/counts")"
poll 300 "all $messages calls committed" positions_are kcrash "$messages" ||
    die "the worker did not catch up: $(positions_of kcrash) of $messages calls committed"
q -c "CREATE TABLE seg_test.want_events (LIKE c360.behavioral_events)" \
  -c "\\copy seg_test.want_events (event_id, customer_id, session_id, event_type, product_id, category_id, event_time) FROM '$TMP/events.csv' (FORMAT csv)" \
  -c "CREATE TABLE seg_test.want_links (LIKE c360.identity_graph)" \
  -c "\\copy seg_test.want_links (identity_id, customer_id, identity_type, identity_value, created_at) FROM '$TMP/links.csv' (FORMAT csv)"
got=$(q -F' ' -c "WITH have AS (SELECT * FROM c360.behavioral_events WHERE event_id LIKE 'sx-%')
                  SELECT (SELECT count(*) FROM seg_test.want_events), (SELECT count(*) FROM have),
                         (SELECT count(*) FROM (TABLE seg_test.want_events EXCEPT TABLE have) d),
                         (SELECT count(*) FROM (TABLE have EXCEPT TABLE seg_test.want_events) d)")
read -r want_n have_n missing extra <<<"$got"
[ "$want_n" = "$have_n" ] && [ "$missing" = 0 ] && [ "$extra" = 0 ] && [ "$want_n" -gt 15000 ] ||
    fail "events (want, have, missing, extra): $got"
got=$(q -F' ' -c "WITH have AS (SELECT * FROM c360.identity_graph WHERE identity_value LIKE 'sx-%')
                  SELECT (SELECT count(*) FROM seg_test.want_links), (SELECT count(*) FROM have),
                         (SELECT count(*) FROM (TABLE seg_test.want_links EXCEPT TABLE have) d),
                         (SELECT count(*) FROM (TABLE have EXCEPT TABLE seg_test.want_links) d)")
read -r want_l have_l missing extra <<<"$got"
[ "$want_l" = "$have_l" ] && [ "$missing" = 0 ] && [ "$extra" = 0 ] && [ "$want_l" -gt 1000 ] ||
    fail "identity links (want, have, missing, extra): $got"
[ "$(applied_of kcrash)" = "$changes" ] || fail "changes_applied is $(applied_of kcrash), want $changes (each call applied once)"
[ "$(skipped_of kcrash)" = "$skipped" ] || fail "skipped_messages is $(skipped_of kcrash), want $skipped (each skip counted once)"
[ "$(dead_of kcrash)" = "$bad" ] || fail "$(dead_of kcrash) dead letters, want $bad (each bad call once)"
poll 30 "verify() empty" tick_verify_empty || fail "verify() not empty at the end"
say "  $messages calls, $kills kills: $want_n events and $want_l links row for row; $changes changes applied, $skipped skipped, $bad dead letters, each once; verify() empty"
say "step 4 done in $(elapsed "$t4")s"

# ---------------------------------------------------------------------------------------------
say "step 5: a database still at 0.5 has no skipped_messages: the source waits in error for the update"
t5=$(date +%s.%N)
drop_c360
q -c "CREATE EXTENSION customer360 VERSION '0.5'"
q -c "BEGIN;
      SELECT c360.create_source('kold', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"seg_story\", \"startup\": \"earliest\", \"format\": \"segment\"}');
      SELECT c360.map_table('kold', 'seg_story', 'behavioral_events');
      COMMIT;" >/dev/null
poll 30 "source kold in state error" state_is kold error || fail "a segment source on 0.5 is $(state_of kold), want error"
[[ $(q -c "SELECT last_error FROM c360.source_status WHERE name = 'kold'") == *"needs customer360 0.6: run ALTER EXTENSION customer360 UPDATE"* ]] ||
    fail "kold's last_error: $(q -c "SELECT last_error FROM c360.source_status WHERE name = 'kold'")"
q -c "ALTER EXTENSION customer360 UPDATE" -c "SELECT c360.resume_source('kold')" >/dev/null
committed kold 17
got=$(q -F' ' -c "SELECT (SELECT count(*) FROM c360.behavioral_events WHERE event_id LIKE 'st-%'),
                         (SELECT string_agg(identity_id || '=' || customer_id, ' ' ORDER BY identity_id) FROM c360.identity_graph)")
[ "$got" = "11 segment:alias:legacy-9=cust-3 segment:anonymous_id:anon-1=cust-2 segment:anonymous_id:anon-2=cust-4" ] ||
    fail "after the update kold made of step 1's 17 calls: $got"
poll 30 "verify() empty" verify_empty || fail "verify() not empty after step 5"
say "step 5 done in $(elapsed "$t5")s"

# ---------------------------------------------------------------------------------------------
q -c "SELECT c360.drop_source(name) FROM c360.sources" >/dev/null
if [ ${#failures[@]} -gt 0 ]; then
    diagnostics
    echo "${#failures[@]} check(s) failed in $(elapsed "$T0")s"
    exit 1
fi
echo "ok - t_segment ($(elapsed "$T0")s)"
