#!/usr/bin/env bash
# test/t_kafka_split.sh: one topic split over two sources of one database (the partitions
# option), the way to use more cores (issue 19, item 3).
#
# The test broker serves a 2-partition topic; kcat produces every other event to each
# partition, so that the 500 customers' events arrive through both workers at once, in the
# same sessions.  The two workers apply concurrently; meanwhile kill -9 of one of them.
# Then: every unique event exactly once in the mirror, each source's positions only its own
# partition and together the partitions' ends, changes_applied summed = messages produced,
# no deadlock in the log, verify() empty after a tick (which checks every customer's counts
# and sessions against the reference).  Every wait is a bounded poll.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/servers.sh

. test/lib.sh
. test/kafka_lib.sh
kafka_test_start t_kafka_split kafka_split_test

broker_start "$TMP" split_events:2 || die "the test broker did not start"
B=$BROKER_ADDR
kafka_test_db 500
log_lines_before=0
[ -z "$LOCAL_LOG" ] || log_lines_before=$(wc -l <"$LOCAL_LOG")

# 60,000 events (1% producer re-sends) for 500 customers; odd lines to partition 0, even
# lines to partition 1, in 6 chunks each
python3 test/kafka_events.py events 1 60000 --customers 500 --prefix sp --dups 0.01 --seed 19 \
    --ids "$TMP/ids" >"$TMP/all.txt"
awk -v dir="$TMP" 'NR % 2 == 1 { print > (dir "/p0.txt") } NR % 2 == 0 { print > (dir "/p1.txt") }' "$TMP/all.txt"
split -l 5000 -d -a 2 "$TMP/p0.txt" "$TMP/p0_chunk."
split -l 5000 -d -a 2 "$TMP/p1.txt" "$TMP/p1_chunk."
produced=$(wc -l <"$TMP/all.txt")
unique=$(wc -l <"$TMP/ids")

say "two sources on split_events, partitions [0] and [1]; $produced messages ($unique unique events) for 500 customers"
create_source ksplit_a split_events behavioral_events '"startup": "earliest", "partitions": [0]'
create_source ksplit_b split_events behavioral_events '"startup": "earliest", "partitions": [1]'
both_running() { worker_running ksplit_a && worker_running ksplit_b; }
poll 30 "both workers running" both_running || die "the two sources' workers are not both running"

killed=0
for chunk in "$TMP"/p0_chunk.*; do
    n=${chunk##*.}
    produce split_events "$chunk" -p 0
    produce split_events "$TMP/p1_chunk.$n" -p 1
    if [ "$n" = 02 ]; then
        # mid-stream, with both workers busy: kill -9 of one (the server restarts both)
        kill_worker ksplit_b && killed=1
    fi
done
say "  produced; kill -9 of one worker mid-stream: $killed"

all_consumed() { [ "$(( $(positions_of ksplit_a) + $(positions_of ksplit_b) ))" = "$produced" ]; }
poll 180 "every message committed by the two sources" all_consumed ||
    die "the sources committed $(positions_of ksplit_a) + $(positions_of ksplit_b) of $produced messages"

got=$(ids_match "$TMP/ids" sp-)
[ "$got" = "$unique $unique 0 0" ] || fail "mirror vs produced events (want, have, missing, extra): $got; want '$unique $unique 0 0'"

parts=$(q -c "SELECT string_agg(source || ':' || part, ' ' ORDER BY source, part)
              FROM c360.source_positions WHERE source LIKE 'ksplit_%'")
[ "$parts" = "ksplit_a:0 ksplit_b:1" ] || fail "source positions are '$parts', want each source on its own partition"
applied=$(( $(applied_of ksplit_a) + $(applied_of ksplit_b) ))
[ "$applied" = "$produced" ] || fail "changes_applied sums to $applied, want $produced (one per message)"
[ "$(applied_of ksplit_a)" -gt 0 ] && [ "$(applied_of ksplit_b)" -gt 0 ] ||
    fail "a source applied nothing: $(applied_of ksplit_a) and $(applied_of ksplit_b)"
states=$(q -c "SELECT string_agg(state, ' ' ORDER BY name) FROM c360.source_status WHERE name LIKE 'ksplit_%'")
[ "$states" = "streaming streaming" ] || fail "source_status states '$states', want both streaming"
[ "$(dead_of ksplit_a)$(dead_of ksplit_b)" = 00 ] || fail "dead letters: $(dead_of ksplit_a) and $(dead_of ksplit_b)"
if [ -n "$LOCAL_LOG" ]; then
    deadlocks=$(tail -n +"$((log_lines_before + 1))" "$LOCAL_LOG" | grep -ac 'deadlock detected' || true)
    [ "$deadlocks" = 0 ] || fail "$deadlocks deadlocks in the server log"
fi
# the customers' events came through both workers: most customers have events of both
overlap=$(q -c "SELECT count(*) FROM (SELECT customer_id FROM c360.behavioral_events WHERE event_id LIKE 'sp-%'
                GROUP BY customer_id HAVING count(*) >= 2) c")
[ "$overlap" -ge 450 ] || fail "only $overlap customers have two or more events"
tick_verify_empty || fail "verify() is not empty after both sources applied"
say "  $unique events once each, positions and counters per partition, $overlap customers through both workers, verify() empty"

[ ${#failures[@]} = 0 ] || exit 1
echo "ok - t_kafka_split ($(elapsed "$T0")s)"
