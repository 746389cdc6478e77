#!/usr/bin/env bash
# bench/index.sh: which index on c360.customer_360 serves the article's stage queries at the
# least cost to the events path, at 1,000,000 customers (issue 19).  Three copies of one
# database differ only in that index:
#   pair   (lifecycle_stage, sessions_last_30d), as versions 0.1 to 0.7 had;
#   stage  (lifecycle_stage) alone;
#   none   no index on the stage, as 0.8 has.
# Measured in one run: events/s through c360.apply_changes (the same batches of 1,000 in
# each copy, chunk by chunk in rotation, so that other load hits all three alike), the share
# of the events phase's profile updates that were HOT, and the article's two stage queries,
# engagement by stage (GROUP BY lifecycle_stage) and gold/platinum customers at risk or
# lapsing, each the median of seven runs.  verify() must be empty in every copy.
# The shop is bench/run.sh's (bench/data.sql, same seed), ten times larger by default, loaded
# through apply_changes in batches of BENCH_LOAD_BATCH (20,000) changes: the bulk path.
# Knobs (environment): BENCH_CUSTOMERS (1,000,000), BENCH_BASE_ORDERS (2,000,000),
# BENCH_BASE_EVENTS (3,000,000), BENCH_EVENTS (200,000), BENCH_BATCH, BENCH_LOAD_BATCH,
# INDEX_BENCH_CHUNKS (9), INDEX_BENCH_PORT (54339), INDEX_BENCH_KEEP=1.
# Takes about 15 minutes on 2 cores and 10 GB of disk; prints the report and writes it to
# bench/out/index.txt.  Not part of make bench: `make bench-index`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
PORT=${INDEX_BENCH_PORT:-54339}
export BENCH_CUSTOMERS=${BENCH_CUSTOMERS:-1000000} BENCH_BASE_ORDERS=${BENCH_BASE_ORDERS:-2000000} \
    BENCH_BASE_EVENTS=${BENCH_BASE_EVENTS:-3000000} BENCH_ORDER_CHANGES=${BENCH_ORDER_CHANGES:-1000}
. bench/scale.sh
LOAD_BATCH=${BENCH_LOAD_BATCH:-20000}
CHUNKS=${INDEX_BENCH_CHUNKS:-9}
KEEP=${INDEX_BENCH_KEEP:-0}
DBS="idx_pair idx_stage idx_none"

make -s >/dev/null && make -s install >/dev/null
. test/servers.sh
. bench/cluster.sh

mkdir -p "$OUT"
bench_cluster indexbench "$PORT" "$KEEP" idx_pair "shared_buffers = 1GB"

q() { local db=$1; shift; pg_psql "$PORT" -d "$db" "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }

say "index bench: cluster on port $PORT in $DIR; generating a shop of $CUSTOMERS customers (untimed)"
q postgres -c "CREATE DATABASE idx_base" >/dev/null
q idx_base -c "CREATE EXTENSION customer360" -c "CREATE EXTENSION pg_stat_statements" \
    -c "CREATE EXTENSION pg_prewarm" -f bench/lib.sql -f bench/traits.sql >/dev/null
q idx_base -c "SELECT c360.tick(bench.t0())" >/dev/null
q idx_base -v customers="$CUSTOMERS" -v base_orders="$BASE_ORDERS" -v base_events="$BASE_EVENTS" \
    -v events="$EVENTS" -v order_changes="$ORDER_CHANGES" -v batch="$BATCH" \
    -v load_batch="$LOAD_BATCH" -v chunks=1 -v csv_prefix="$DIR/" -v floor_batches=0 \
    -f bench/data.sql >/dev/null
rm -f "$DIR"/*.csv

say "loading it through apply_changes in batches of $LOAD_BATCH"
q idx_base -c "CALL bench.apply_staged('customers')" -c "CALL bench.apply_staged('base_orders')" \
    -c "CALL bench.apply_staged('base_events')" -c "VACUUM ANALYZE" >/dev/null
LOADED=$(q idx_base -At -c "SELECT string_agg(format('%s %s rows in %s s', phase, rows, round(seconds::numeric)),
                                                ', ' ORDER BY phase DESC)
                            FROM bench.results")
for db in $DBS; do
    q postgres -c "CREATE DATABASE $db TEMPLATE idx_base STRATEGY FILE_COPY" >/dev/null
done
q postgres -c "DROP DATABASE idx_base" -c "CREATE EXTENSION dblink" >/dev/null
q idx_pair -c "CREATE INDEX customer_360_stage_sessions_idx ON c360.customer_360 (lifecycle_stage, sessions_last_30d)" >/dev/null
q idx_stage -c "CREATE INDEX customer_360_stage_idx ON c360.customer_360 (lifecycle_stage)" >/dev/null
for db in $DBS; do
    q "$db" -c "VACUUM ANALYZE" -c "CHECKPOINT" \
        -c "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'c360' AND c.relkind IN ('r', 'i') AND c.relname LIKE 'customer_360%'" >/dev/null
    q "$db" -c "CREATE TABLE bench.hot0 AS SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
                WHERE relid = 'c360.customer_360'::regclass"
done

# --- events, the three copies in rotation, one session each (bench/traits.sh's way) ----------
nb=$(q idx_pair -At -c "SELECT max(batch_no) FROM bench.batches WHERE phase = 'events'")
((CHUNKS <= nb)) || CHUNKS=$nb
say "events: $nb batches of $BATCH in $CHUNKS chunks, rotating over $DBS"
set -- $DBS
{
    for db in $DBS; do
        echo "SELECT dblink_connect('$db', 'host=127.0.0.1 port=$PORT user=postgres dbname=$db');"
    done
    for ((c = 0; c < CHUNKS; c++)); do
        lo=$((c * nb / CHUNKS + 1)) hi=$(((c + 1) * nb / CHUNKS))
        case $((c % 3)) in 0) order="$1 $2 $3" ;; 1) order="$2 $3 $1" ;; *) order="$3 $1 $2" ;; esac
        for db in $order; do
            echo "SELECT dblink_exec('$db', \$\$CALL bench.apply_chunk('events', $lo, $hi)\$\$);"
        done
    done
    for db in $DBS; do echo "SELECT dblink_disconnect('$db');"; done
} | q postgres >/dev/null

# --- the stage queries and verify() ----------------------------------------------------------
say "the article's stage queries, seven runs each; verify()"
for db in $DBS; do
    q "$db" >/dev/null <<'SQL'
CREATE TABLE bench.query_runs (query text, ms float8);
DO $$
DECLARE
    qs text[] := ARRAY[
      'SELECT lifecycle_stage, count(*), avg(sessions_last_30d) FROM c360.customer_360 GROUP BY 1 ORDER BY 1',
      $q$SELECT customer_id, loyalty_tier, lifecycle_stage FROM c360.customer_360
         WHERE loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing') ORDER BY 1$q$];
    t0 timestamptz;
BEGIN
    FOR r IN 1..7 LOOP
        FOR i IN 1..2 LOOP
            t0 := clock_timestamp();
            EXECUTE 'SELECT count(*) FROM (' || qs[i] || ') x';
            INSERT INTO bench.query_runs VALUES (CASE i WHEN 1 THEN 'by stage' ELSE 'at risk' END,
                                                 extract(epoch FROM clock_timestamp() - t0) * 1000);
        END LOOP;
    END LOOP;
END $$;
CREATE TABLE bench.verified AS SELECT count(*) AS diffs FROM c360.verify();
SQL
done

# the statistics of the dblink sessions reach pg_stat_user_tables when they exit: poll
for db in $DBS; do
    for _ in $(seq 50); do
        n=$(q "$db" -At -c "SELECT t.n_tup_upd - h.n_tup_upd FROM pg_stat_user_tables t, bench.hot0 h
                            WHERE t.relid = 'c360.customer_360'::regclass")
        [ "$n" -gt 0 ] && break
        sleep 0.1
    done
done

report() {
    for db in $DBS; do
        q "$db" -At -F $'\t' -c "
        SELECT '$db', round((SELECT sum(applied) FROM bench.chunks WHERE phase = 'events')
                            / (sum(l.ms) / 1000))::bigint,
               round(bench.pct(array_agg(l.ms), 0.5)::numeric, 1),
               (SELECT round(100.0 * (t.n_tup_hot_upd - h.n_tup_hot_upd)
                             / nullif(t.n_tup_upd - h.n_tup_upd, 0), 1)
                FROM pg_stat_user_tables t, bench.hot0 h WHERE t.relid = 'c360.customer_360'::regclass),
               (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1)
                FROM bench.query_runs WHERE query = 'by stage'),
               (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1)
                FROM bench.query_runs WHERE query = 'at risk'),
               (SELECT diffs FROM bench.verified),
               pg_size_pretty(pg_relation_size('c360.customer_360')),
               (SELECT count(*) FROM c360.customer_360)
        FROM bench.chunks c
        CROSS JOIN LATERAL unnest(c.lat) l(ms)
        WHERE c.phase = 'events'"
    done
}
{
    printf 'customer360 index bench: %s profiles, events in batches of %s, PostgreSQL %s, %s cores\n' \
        "$(q idx_pair -At -c "SELECT to_char(count(*), 'FM999,999,999') FROM c360.customer_360")" \
        "$BATCH" "$(q idx_pair -At -c "SHOW server_version")" "$(nproc)"
    printf 'base loaded through apply_changes in batches of %s: %s\n\n' "$LOAD_BATCH" "$LOADED"
    printf '%-10s %10s %12s %9s %14s %13s %8s %s\n' index 'events/s' 'batch p50 ms' 'HOT %' \
        'by stage ms' 'at risk ms' verify 'profile heap'
    report | while IFS=$'\t' read -r db rate p50 hot q1 q2 diffs size _; do
        printf '%-10s %10s %12s %9s %14s %13s %8s %s\n' "${db#idx_}" "$rate" "$p50" "$hot" "$q1" "$q2" "$diffs" "$size"
    done
} | tee "$OUT/index.txt"
bad=$(for db in $DBS; do q "$db" -At -c "SELECT diffs FROM bench.verified"; done | awk '$1 != 0' | wc -l)
[ "$bad" = 0 ] || { echo "verify() is not empty in $bad copies" >&2; exit 1; }
