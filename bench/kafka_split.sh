#!/usr/bin/env bash
# bench/kafka_split.sh: one Kafka topic of 2 partitions applied by one source against the
# same topic split over two sources of the same database (the partitions option, one
# worker each: README, "More workers for one topic").  Each run gets events of its own
# (the same customers, times and shape; new ids) on a topic of its own, produced in chunks
# while the workers consume, and is timed from the first message produced to the last one
# committed.  Messages are keyed by customer (test/kafka_events.py), so the broker's default
# partitioner gives each customer one partition, as a keyed production topic does: the two
# workers' batches share no customer.  The two setups alternate, BENCH_SPLIT_ROUNDS times,
# on one cluster whose mirror grows by each run's events.  Issue 19's target: two workers
# at least 1.5x one.
# Knobs (environment): BENCH_SPLIT_EVENTS (200,000 a run), BENCH_SPLIT_ROUNDS (3),
# BENCH_CUSTOMERS (100,000), BENCH_KAFKA_BATCH, BENCH_SPLIT_PORT.
# Prints the report and writes it to bench/out/kafka_split.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
PORT=${BENCH_SPLIT_PORT:-54336}
EVENTS=${BENCH_SPLIT_EVENTS:-200000}
ROUNDS=${BENCH_SPLIT_ROUNDS:-3}
CUSTOMERS=${BENCH_CUSTOMERS:-100000}
BATCH=${BENCH_KAFKA_BATCH:-1000}
BACKLOG=60000
CHUNK=50000

make -s && make -s install && make -s test/kafka_broker

. test/servers.sh
. bench/kafka_lib.sh

DIR=$(mktemp -d /tmp/c360-bench-split.XXXXXX)
BROKER_PID=
trap kafka_bench_cleanup EXIT

mkdir -p "$OUT"
kafka_bench_cluster "$BATCH"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "cluster on port $PORT in $DIR; $CUSTOMERS customers; $ROUNDS rounds of one and two workers, $EVENTS events each"
kafka_bench_customers "$CUSTOMERS"
topics=()
for r in $(seq "$ROUNDS"); do topics+=("one_$r:2" "two_$r:2"); done
kafka_bench_broker "${topics[@]}"

# run SETUP ROUND: the events of this run, its source(s), the time until all are committed
run() {
    local setup=$1 r=$2 topic="$1_$2" a b
    python3 test/kafka_events.py events 1 "$EVENTS" --customers "$CUSTOMERS" --prefix "$topic" \
        --seed 19 >"$DIR/$topic.txt"
    split -l "$CHUNK" -d -a 3 "$DIR/$topic.txt" "$DIR/$topic.chunk."
    psql_b -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    if [ "$setup" = one ]; then
        kafka_bench_source "${topic}_s" "$topic" || exit 1
    else
        kafka_bench_source "${topic}_s0" "$topic" '"partitions": [0]' || exit 1
        kafka_bench_source "${topic}_s1" "$topic" '"partitions": [1]' || exit 1
    fi
    a=$(now)
    kafka_bench_feed "${topic}_s%" "$topic" "$EVENTS" "$BACKLOG" : "$DIR/$topic".chunk.* || exit 1
    b=$(now)
    rm -f "$DIR/$topic".*
    RATE=$(rate "$EVENTS" "$a" "$b")
    say "  $setup worker(s), round $r: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", b - a }') s, $RATE events/s"
}

one=()
two=()
for r in $(seq "$ROUNDS"); do
    # alternate which goes first, so that neither always meets the smaller mirror
    if [ $((r % 2)) = 1 ]; then
        run one "$r"; one+=("$RATE"); run two "$r"; two+=("$RATE")
    else
        run two "$r"; two+=("$RATE"); run one "$r"; one+=("$RATE")
    fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
m1=$(median "${one[@]}")
m2=$(median "${two[@]}")
diffs=$(q -c "SELECT count(*) FROM c360.verify()")
dead=$(q -c "SELECT count(*) FROM c360.dead_letters")
{
    echo "Kafka topic split over sources ($(date -u +%FT%TZ); $(nproc) cores; load $LOAD_START -> $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "  $EVENTS events a run over 2 partitions for $CUSTOMERS customers; c360.batch_size $BATCH"
    echo "  one worker (both partitions): ${one[*]} events/s -> median $m1"
    echo "  two workers (a partition each): ${two[*]} events/s -> median $m2"
    echo "  ratio two / one: $(awk -v a="$m2" -v b="$m1" 'BEGIN { printf "%.3f", a / b }')  (target >= 1.5)"
    echo "  check: verify() $diffs rows, dead letters $dead"
} | tee "$OUT/kafka_split.txt"
[ "$diffs" = 0 ] && [ "$dead" = 0 ]
