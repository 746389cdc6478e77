#!/usr/bin/env bash
# bench/kafka_formats.sh: the Kafka source's message formats against each other, in one run
# on a throwaway PostgreSQL 15 cluster and the test broker (test/kafka_broker): the same
# behavioural events, as each format's messages, through one worker into the profile;
# events/s from the first message produced to the last one committed, and each format's
# ratio to format json (goal for debezium: 0.9x or better).
#
# A format is a function messages_<name> IN OUT that writes the events of IN (lines
# "key:json" of test/kafka_events.py) as that format's messages to OUT, one a line
# "key<TAB>value", and sets OPTION to the source's "format" option.  Add one, and its name
# to BENCH_FORMATS (default "json debezium debezium_bare"), to measure another format.
#
# The formats run in rounds, each round in the opposite order of the one before (a machine
# that gets busier or idler drifts both ways), each run from an empty event mirror (the
# profile rebuilt): BENCH_FORMAT_ROUNDS rounds (default 3) of BENCH_FORMAT_EVENTS events
# (default 200,000) for BENCH_CUSTOMERS customers (default 100,000); c360.batch_size
# BENCH_KAFKA_BATCH (default 1000).  The mock broker keeps 5 MiB a partition, so events are
# produced in chunks while at most BENCH_FORMAT_BACKLOG (default 30,000) are ahead of the
# worker.  Every run is checked: every event in the mirror, changes_applied = events, no
# dead letter, verify() empty.  Prints the report and writes it to bench/out/kafka_formats.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
PORT=${BENCH_KAFKA_FORMATS_PORT:-54334}
EVENTS=${BENCH_FORMAT_EVENTS:-200000}
CUSTOMERS=${BENCH_CUSTOMERS:-100000}
BATCH=${BENCH_KAFKA_BATCH:-1000}
BACKLOG=${BENCH_FORMAT_BACKLOG:-30000}
ROUNDS=${BENCH_FORMAT_ROUNDS:-3}
FORMATS=(${BENCH_FORMATS:-json debezium debezium_bare})
CHUNK=10000

# ---- the formats ---------------------------------------------------------------------------
messages_json() {           # the events as they are
    sed 's/:/\t/' "$1" >"$2"
    OPTION=json
}
messages_debezium() {       # creates of a table, Kafka Connect's JSON converter with schemas
    python3 test/debezium_events.py events --schema <"$1" >"$2"
    OPTION=debezium
}
messages_debezium_bare() {  # ... without schemas (schemas.enable=false)
    python3 test/debezium_events.py events <"$1" >"$2"
    OPTION=debezium
}

make -s && make -s install && make -s test/kafka_broker

. test/servers.sh

DIR=$(mktemp -d /tmp/c360-bench-formats.XXXXXX)
BROKER_PID=
cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID"
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    pg_stop "$DIR"
    rm -rf "$DIR"
}
trap cleanup EXIT

say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }

mkdir -p "$OUT"
pg_start "$DIR" "$PORT" \
    "shared_preload_libraries = 'customer360'" \
    "c360.database = 'bench'" \
    "c360.tick_interval = 0" \
    "c360.batch_size = $BATCH" \
    "shared_buffers = 1GB" \
    "work_mem = 16MB" \
    "max_wal_size = 8GB" \
    "checkpoint_timeout = 30min" \
    "timezone = 'UTC'"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE bench"
psql_b() { pg_psql "$PORT" -d bench "$@"; }
q() { psql_b -At "$@"; }
psql_b -c "CREATE EXTENSION customer360"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "cluster on port $PORT in $DIR; $CUSTOMERS customers, $EVENTS events as ${FORMATS[*]} (untimed set-up)"
for ((first = 1; first <= CUSTOMERS; first += 10000)); do
    q -c "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert',
            'new', jsonb_build_object('customer_id', 'cust-' || i, 'email', 'u' || i || '@example.org',
                                      'signup_date', now() - i * interval '1 hour'))))
          FROM generate_series($first, least($first + 9999, $CUSTOMERS)) i" >/dev/null
done
python3 test/kafka_events.py events 1 "$EVENTS" --customers "$CUSTOMERS" --prefix ev --seed 12 >"$DIR/events.txt"
declare -A OPTIONS BYTES
topics=()
for f in "${FORMATS[@]}"; do
    "messages_$f" "$DIR/events.txt" "$DIR/$f.msgs"
    OPTIONS[$f]=$OPTION
    BYTES[$f]=$(($(wc -c <"$DIR/$f.msgs") / EVENTS))
    mkdir -p "$DIR/$f"
    split -l "$CHUNK" -d -a 4 "$DIR/$f.msgs" "$DIR/$f/chunk."
    rm "$DIR/$f.msgs"
    for r in $(seq "$ROUNDS"); do topics+=(--topic "bench_${f}_$r:3"); done
done
# the broker and the producer yield the CPU to the worker: on a small machine they share
# it, and what they spend on a format's bigger messages is not the source's cost
nice -n 10 test/kafka_broker "${topics[@]}" --bootstrap-file "$DIR/bootstrap" >/dev/null 2>"$DIR/broker.err" &
BROKER_PID=$!
for _ in $(seq 150); do [ -s "$DIR/bootstrap" ] && break; sleep 0.1; done
B=$(cat "$DIR/bootstrap")

committed() { q -c "SELECT COALESCE(sum(position::bigint), 0) FROM c360.source_positions WHERE source = '$1'"; }

# run FORMAT ROUND: one worker reads the format's topic of this round from an empty event
# mirror; prints events/s
run() {
    local f=$1 r=$2 name="b_${1}_$2" topic="bench_${1}_$2" produced=0 c t0 t1 deadline
    psql_b -q -c "TRUNCATE c360.behavioral_events" -c "SELECT c360.rebuild()" -c "VACUUM ANALYZE" \
        -c "CHECKPOINT" >/dev/null
    q -c "BEGIN;
          SELECT c360.create_source('$name', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"$topic\",
                                    \"startup\": \"earliest\", \"format\": \"${OPTIONS[$f]}\"}');
          SELECT c360.map_table('$name', '$topic', 'behavioral_events');
          COMMIT;" >/dev/null
    for _ in $(seq 300); do
        [ "$(q -c "SELECT state FROM c360.source_status WHERE name = '$name'")" = streaming ] && break
        sleep 0.1
    done
    pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 source' AND application_name = '$name'")
    cpu0=$(cpu_ticks "$pid")
    t0=$(now)
    for chunk in "$DIR/$f"/chunk.*; do
        while c=$(committed "$name") && [ $((produced - c)) -gt "$BACKLOG" ]; do sleep 0.1; done
        timeout 120 nice -n 10 kcat -P -b "$B" -t "$topic" -K $'\t' -z lz4 <"$chunk" 2>>"$DIR/kcat.err"
        produced=$((produced + $(wc -l <"$chunk")))
    done
    deadline=$(($(date +%s) + 1800))
    while c=$(committed "$name") && [ "$c" -lt "$EVENTS" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { say "$name did not catch up within 30 minutes"; exit 1; }
        sleep 0.1
    done
    t1=$(now)
    cpu1=$(cpu_ticks "$pid")
    read -r mirror applied dead err <<<"$(q -F' ' -c "SELECT (SELECT count(*) FROM c360.behavioral_events),
        changes_applied, dead_letters, last_error IS NOT NULL FROM c360.source_status WHERE name = '$name'")"
    diffs=$(q -c "SELECT count(*) FROM c360.verify()")
    q -c "SELECT c360.drop_source('$name')" >/dev/null
    if [ "$mirror" != "$EVENTS" ] || [ "$applied" != "$EVENTS" ] || [ "$dead" != 0 ] || [ "$diffs" != 0 ]; then
        say "$name: CHECK FAILED: mirror $mirror, changes_applied $applied, dead letters $dead, verify() $diffs rows, error recorded: $err"
        exit 1
    fi
    # events/s, and the worker's CPU microseconds per event
    awk -v n="$EVENTS" -v a="$t0" -v b="$t1" -v c="$((cpu1 - cpu0))" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f %.0f", n / (b - a), c / hz * 1e6 / n }'
}
# a process's user + system CPU time in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

declare -A RATES CPUS
order=("${FORMATS[@]}")
for r in $(seq "$ROUNDS"); do
    for f in "${order[@]}"; do
        read -r rate cpu <<<"$(run "$f" "$r")"
        RATES[$f]="${RATES[$f]:-} $rate"
        CPUS[$f]="${CPUS[$f]:-} $cpu"
        say "round $r: $f $rate events/s, worker CPU $cpu us/event"
    done
    mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
done

mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF }' <<<"$1"; }
{
    echo "Kafka source formats bench ($(date -u +%FT%TZ); $(nproc) cores; load $LOAD_START -> $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "  $EVENTS events over 3 partitions for $CUSTOMERS customers, c360.batch_size $BATCH, $ROUNDS rounds (order alternating)"
    json=$(mean "${RATES[json]:-0}")
    for f in "${FORMATS[@]}"; do
        m=$(mean "${RATES[$f]}")
        printf '  %-14s %5s bytes/message  events/s:%s  mean %s' "$f" "${BYTES[$f]}" "${RATES[$f]}" "$m"
        [ "$json" = 0 ] || awk -v m="$m" -v j="$json" 'BEGIN { printf " = %.3fx json", m / j }'
        echo "  (worker CPU us/event:${CPUS[$f]})"
    done
    echo "  every run: all events in the mirror, changes_applied = events, no dead letter, verify() empty"
} | tee "$OUT/kafka_formats.txt"
