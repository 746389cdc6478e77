#!/usr/bin/env bash
# bench/kafka_formats.sh [FORMAT...]: the Kafka source's message formats (the source option
# "format") against the plain json format on the same events, in one run on a throwaway
# PostgreSQL 15 cluster and the test broker.  Default formats: json segment debezium
# debezium_bare; json, the baseline, always runs.
#
# Each format has a producer function, produce_<format> FIRST COUNT, that writes the same
# COUNT events (ids, customers, sessions, products, times: one seed, one instant) as kcat
# lines "key:value" in that format (DELIM[format] when the key holds a colon; OPTION[format]
# when the source option "format" is not the function's name: debezium_bare is format
# debezium without Kafka Connect's schemas).  Each run starts from the same state (a fresh
# extension, the same customers, vacuumed, checkpointed: untimed), then one worker reads a
# 3-partition topic of that format: events/s from the first message produced to the last
# one committed (chunks produced while it reads, the backlog kept under the mock broker's
# retention, as bench/kafka.sh does), and the worker's CPU time per event (user + system,
# from /proc: what the other work on a shared machine does not change).  Formats take turns,
# BENCH_FORMATS_ROUNDS rounds, so that the machine's other work weighs on each alike; the
# report gives each run, each format's medians and their ratios to json's.
# Knobs (environment): BENCH_FORMATS_EVENTS (default 300,000), BENCH_FORMATS_ROUNDS (3),
# BENCH_FORMATS_CUSTOMERS (20,000), BENCH_KAFKA_BATCH (c360.batch_size), BENCH_FORMATS_BACKLOG,
# BENCH_FORMATS_PORT.  Prints the report and writes it to bench/out/kafka_formats.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
PORT=${BENCH_FORMATS_PORT:-54333}
EVENTS=${BENCH_FORMATS_EVENTS:-300000}
ROUNDS=${BENCH_FORMATS_ROUNDS:-3}
CUSTOMERS=${BENCH_FORMATS_CUSTOMERS:-20000}
BATCH=${BENCH_KAFKA_BATCH:-1000}
BACKLOG=${BENCH_FORMATS_BACKLOG:-40000}
CHUNK=20000
NOW_MS=$(($(date +%s) * 1000))

FORMATS=(json)
[ $# -gt 0 ] || set -- segment debezium debezium_bare
for f in "$@"; do [ "$f" = json ] || FORMATS+=("$f"); done

# produce_<format> FIRST COUNT: the events as that format's messages (test/kafka_events.py).
produce_json() {
    python3 test/kafka_events.py events "$1" "$2" --customers "$CUSTOMERS" --prefix ev --seed 11 --now "$NOW_MS"
}
produce_segment() {
    python3 test/kafka_events.py events "$1" "$2" --customers "$CUSTOMERS" --prefix ev --seed 11 --now "$NOW_MS" \
        --format segment
}
declare -A DELIM OPTION
# creates of a table, Kafka Connect's JSON converter with schemas; lines "key<TAB>value"
produce_debezium() { produce_json "$@" | python3 test/debezium_events.py events --schema; }
DELIM[debezium]=$'\t'
# ... without schemas (schemas.enable=false)
produce_debezium_bare() { produce_json "$@" | python3 test/debezium_events.py events; }
DELIM[debezium_bare]=$'\t'
OPTION[debezium_bare]=debezium

for f in "${FORMATS[@]}"; do
    declare -F "produce_$f" >/dev/null || { echo "no producer for format \"$f\" (produce_$f)" >&2; exit 2; }
done

make -s && make -s install && make -s test/kafka_broker

. test/servers.sh
. bench/kafka_lib.sh

DIR=$(mktemp -d /tmp/c360-bench-formats.XXXXXX)
BROKER_PID=
trap kafka_bench_cleanup EXIT

mkdir -p "$OUT"
kafka_bench_cluster "$BATCH"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "cluster on port $PORT in $DIR; $EVENTS events for $CUSTOMERS customers in formats ${FORMATS[*]}, $ROUNDS rounds (untimed set-up)"
topics=()
for f in "${FORMATS[@]}"; do
    "produce_$f" 1 "$EVENTS" >"$DIR/$f.txt"
    split -l "$CHUNK" -d -a 4 "$DIR/$f.txt" "$DIR/$f.chunk."
    say "  $f: $(wc -c <"$DIR/$f.txt" | awk -v n="$EVENTS" '{ printf "%.0f", $1 / n }') bytes a message"
    for r in $(seq "$ROUNDS"); do topics+=("${f}_$r:3"); done
done
kafka_bench_broker "${topics[@]}"

# the CPU seconds (user + system) process PID has used
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# one format's run from the same state as every other: the extension anew, the customers
run_format() {
    local f=$1 r=$2 name=bench_$1 t0 t1 check pid c0 c1 us
    q -c "SELECT c360.drop_source(name) FROM c360.sources" >/dev/null
    psql_b -c "DROP EXTENSION customer360 CASCADE" -c "CREATE EXTENSION customer360" >/dev/null
    kafka_bench_customers "$CUSTOMERS"
    psql_b -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    kafka_bench_source "$name" "${f}_$r" "\"format\": \"${OPTION[$f]:-$f}\"" || return 1
    pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 source' AND application_name = '$name'")
    c0=$(cpu_of "$pid")
    t0=$(now)
    KAFKA_BENCH_DELIM=${DELIM[$f]:-:} kafka_bench_feed "$name" "${f}_$r" "$EVENTS" "$BACKLOG" : "$DIR/$f".chunk.* ||
        return 1
    t1=$(now)
    c1=$(cpu_of "$pid") || { say "the worker of $name restarted during the run"; return 1; }
    us=$(awk -v a="$c0" -v b="$c1" -v n="$EVENTS" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')
    check=$(q -F' ' -c "SELECT (SELECT count(*) FROM c360.behavioral_events), changes_applied, dead_letters,
                               (SELECT count(*) FROM c360.verify()) FROM c360.source_status WHERE name = '$name'")
    RATES[$f]+=" $(rate "$EVENTS" "$t0" "$t1")"
    CPU[$f]+=" $us"
    CHECKS+=("$f round $r: $(rate "$EVENTS" "$t0" "$t1") events/s in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, worker CPU $us us/event; mirror, changes_applied, dead letters, verify() rows: $check")
    [ "$check" = "$EVENTS $EVENTS 0 0" ] || { say "format $f round $r: $check, want $EVENTS $EVENTS 0 0"; return 1; }
    say "  ${CHECKS[-1]}"
}

declare -A RATES CPU
CHECKS=()
status=0
for r in $(seq "$ROUNDS"); do
    for f in "${FORMATS[@]}"; do
        run_format "$f" "$r" || status=1
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
base=$(echo "${RATES[json]}" | median)
base_cpu=$(echo "${CPU[json]}" | median)
{
    echo "Kafka source formats bench ($(date -u +%FT%TZ); $(nproc) cores; load $LOAD_START -> $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "  the same $EVENTS events over 3 partitions for $CUSTOMERS customers; c360.batch_size $BATCH; $ROUNDS rounds, formats taking turns"
    for c in "${CHECKS[@]}"; do echo "  $c"; done
    for f in "${FORMATS[@]}"; do
        m=$(echo "${RATES[$f]}" | median)
        c=$(echo "${CPU[$f]}" | median)
        echo "  $f: median $m events/s (runs:${RATES[$f]}), ratio to json $(awk -v a="$m" -v b="$base" 'BEGIN { printf "%.3f", a / b }');" \
            "worker CPU median $c us/event (runs:${CPU[$f]}), json's over this $(awk -v a="$c" -v b="$base_cpu" 'BEGIN { printf "%.3f", b / a }')"
    done
} | tee "$OUT/kafka_formats.txt"
exit "$status"
