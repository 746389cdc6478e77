#!/usr/bin/env bash
# bench/run.sh: `make bench`.  Starts a throwaway PostgreSQL 15 cluster with customer360
# preloaded, loads a generated shop through c360.apply_changes, and measures in one run:
# events/s and order changes/s through apply_changes beside raw COPY of the same rows, the
# least an events batch can cost (bench.floor), the cost of c360.tick() with 1% of profiles
# due, and verify().  Prints the report and writes it to bench/out/report.txt (plus plans of
# the maintainer's statements in bench/out/explain.txt).
# Scale knobs (environment): BENCH_CUSTOMERS, BENCH_BASE_ORDERS, BENCH_BASE_EVENTS,
# BENCH_EVENTS, BENCH_ORDER_CHANGES, BENCH_BATCH, BENCH_CHUNKS, BENCH_FLOOR_BATCHES (per way),
# BENCH_PORT; BENCH_EXPLAIN=0 skips the plans;
# BENCH_KEEP=1 leaves the cluster running for a closer look (it prints how to stop it);
# BENCH_EXTRAS=0 skips the benchmarks that follow the core one (computed traits, orders at
# 1,000,000, sources, sinks); BENCH_EXTRAS="traits sink" (names of bench/<name>.sh) runs only those.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
PORT=${BENCH_PORT:-54330}
. bench/scale.sh
FLOOR_BATCHES=${BENCH_FLOOR_BATCHES:-30}
CHUNKS=${BENCH_CHUNKS:-4}
KEEP=${BENCH_KEEP:-0}

make -s && make -s install

. test/servers.sh
. bench/cluster.sh

mkdir -p "$OUT"
# Autovacuum stays on (a real deployment has it); the bench vacuums between phases so that it
# rarely has anything to do while a phase is timed.
bench_cluster bench "$PORT" "$KEEP" bench \
    "shared_buffers = 1GB" \
    "pg_stat_statements.track = all" \
    "pg_stat_statements.max = 1000"

CSV_PREFIX=$DIR/
csv_files() { # kind -> '{file1,file2,...}', the chunk files written by data.sql
    local files=() c
    for c in $(seq 1 "$CHUNKS"); do files+=("$CSV_PREFIX${1}_$c.csv"); done
    (IFS=,; echo "{${files[*]}}")
}

psql_b() { pg_psql "$PORT" -d postgres "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }

# Other work on the machine skews every rate; the report shows how busy it was.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "cluster on port $PORT in $DIR; generating data (untimed)"
psql_b -c "CREATE EXTENSION customer360" -c "CREATE EXTENSION pg_stat_statements"
psql_b -f bench/lib.sql
# Every profile is computed as of one fixed instant, whatever the day the bench runs.
psql_b -c "SELECT c360.tick(bench.t0())" >/dev/null
psql_b -v customers="$CUSTOMERS" -v base_orders="$BASE_ORDERS" -v base_events="$BASE_EVENTS" \
    -v events="$EVENTS" -v order_changes="$ORDER_CHANGES" -v batch="$BATCH" \
    -v chunks="$CHUNKS" -v csv_prefix="$CSV_PREFIX" -v floor_batches="$FLOOR_BATCHES" \
    -f bench/data.sql

say "loading the base through apply_changes: customers, orders, events"
psql_b -c "CALL bench.apply_staged('customers')" \
    -c "CALL bench.apply_staged('base_orders')" \
    -c "CALL bench.apply_staged('base_events')"

# Scratch copies with the mirrors' own indexes (LIKE ... INCLUDING ALL), pre-filled with the
# same base rows, so that the COPY baseline inserts into indexes of the same size; three of
# them, for three COPY runs of each chunk.  The order scratch copies lack the orders about to
# be updated: COPY cannot update, so it inserts their new images instead, ending in the
# mirror's rows.
say "events: raw COPY (3 runs) and apply_changes, interleaved in $CHUNKS chunks"
psql_b -v files="$(csv_files events)" <<'SQL'
SELECT format('CREATE TABLE bench.events_copy%s (LIKE c360.behavioral_events INCLUDING ALL)', i),
       format('INSERT INTO bench.events_copy%s SELECT * FROM c360.behavioral_events', i),
       format('VACUUM ANALYZE bench.events_copy%s', i)
FROM generate_series(1, 3) i \gexec
VACUUM ANALYZE;
CHECKPOINT;
CALL bench.measure('events', '{bench.events_copy1,bench.events_copy2,bench.events_copy3}',
                   :'files');
DROP TABLE bench.events_copy1, bench.events_copy2, bench.events_copy3;
SQL

say "floor: $FLOOR_BATCHES batches each of COPY, INSERT, INSERT + profile counters, apply_changes, visits (rolled back)"
psql_b -v csv_prefix="$CSV_PREFIX" <<'SQL'
VACUUM ANALYZE;
CHECKPOINT;
CALL bench.floor(:'csv_prefix');
SQL

say "orders: raw COPY (3 runs) and apply_changes, interleaved in $CHUNKS chunks"
psql_b -v files="$(csv_files orders)" <<'SQL'
SELECT format('CREATE TABLE bench.orders_copy%s (LIKE c360.orders INCLUDING ALL)', i),
       format('INSERT INTO bench.orders_copy%s SELECT * FROM c360.orders o
               WHERE NOT EXISTS (SELECT 1 FROM bench.order_changes c
                                 WHERE c.order_id = o.order_id)', i),
       format('VACUUM ANALYZE bench.orders_copy%s', i)
FROM generate_series(1, 3) i \gexec
VACUUM ANALYZE;
CHECKPOINT;
CALL bench.measure('orders', '{bench.orders_copy1,bench.orders_copy2,bench.orders_copy3}',
                   :'files');
DROP TABLE bench.orders_copy1, bench.orders_copy2, bench.orders_copy3;
SQL

say "tick: nothing due, then 1% due; full refresh of the reference query; verify"
psql_b <<'SQL'
VACUUM ANALYZE;
CHECKPOINT;
INSERT INTO bench.results (phase, rows, seconds)
SELECT 'due_before_tick', count(*) FILTER (WHERE next_change_at <= bench.t0() + interval '1 hour'), 0
FROM c360.customer_360;
INSERT INTO bench.results (phase, rows, seconds)
SELECT 'profiles', count(*), 0 FROM c360.customer_360;
INSERT INTO bench.results (phase, rows, seconds)
SELECT 'planted', count(*), 0 FROM bench.planted;
CALL bench.time_stmt('tick_idle', $$SELECT c360.tick(bench.t0() + interval '1 second')$$);
CALL bench.time_stmt('tick_due', $$SELECT c360.tick(bench.t0() + interval '1 hour')$$);
CREATE MATERIALIZED VIEW bench.reference AS
    SELECT * FROM c360.reference_profile(c360.as_of()) WITH NO DATA;
CALL bench.time_stmt('refresh_matview', 'REFRESH MATERIALIZED VIEW bench.reference', NULL,
                     'SELECT count(*) FROM bench.reference');
CALL bench.time_stmt('verify', 'SELECT count(*) FROM c360.verify()');
SQL

if [ "$EXPLAIN" = 1 ]; then
    say "plans of one more events batch, orders batch and day's tick (rolled back) -> bench/out/explain.txt"
    # The profile's row-comparison filter prints as one very long line.
    psql_b -f bench/explain.sql 2>&1 | cut -c1-600 >"$OUT/explain.txt" ||
        say "explain failed, see bench/out/explain.txt"
fi

{
    psql_b -At -c "SELECT json_build_object(
        'server', current_setting('server_version'),
        'cores', '$(nproc)',
        'load_start', '$LOAD_START',
        'load_end', '$(cut -d' ' -f1-3 /proc/loadavg)',
        'batch', $BATCH,
        'results', (SELECT json_object_agg(phase, r) FROM bench.results r),
        'statements', (SELECT json_agg(s ORDER BY phase, total_ms DESC) FROM bench.statements s))"
} | python3 bench/report.py "$OUT/report.txt"

# The traits', sources' and sinks' benchmarks start servers of their own; each prints its
# report.  The core cluster stops first, so that it takes no share of the machine from them.
[ "$KEEP" = 1 ] || pg_stop "$DIR"
status=0
EXTRAS=${BENCH_EXTRAS:-1}
for extra in bench/traits.sh bench/orders.sh bench/mirror_insert.sh bench/pg_source.sh bench/mysql.sh bench/kafka.sh bench/kafka_formats.sh bench/kafka_split.sh bench/sink.sh; do
    [ -f "$extra" ] && [ "$EXTRAS" != 0 ] || continue
    name=$(basename "$extra" .sh)
    [ "$EXTRAS" = 1 ] || [[ " $EXTRAS " == *" $name "* ]] || continue
    say "== $extra =="
    bash "$extra" || { say "$extra failed"; status=1; }
done
exit "$status"
