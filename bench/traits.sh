#!/usr/bin/env bash
# bench/traits.sh: the cost of computed traits, on a throwaway cluster (bench/run.sh runs it
# after the core bench; it also runs alone).  The shop is bench/run.sh's own (bench/lib.sql,
# bench/data.sql, the same seed and scale knobs), loaded once through apply_changes into a
# base database and copied three times; bench/traits.sql defines the ten traits (five over
# events: 1, 7, 30, 90 days and all time, with count(*), count(DISTINCT), mode() and a last
# value; five over orders: count 90 days, sum 365 days, max, last status, avg with a filter).
#   1. Backfill of the ten traits over the whole profile, against a CREATE TABLE AS of the
#      same aggregates from the mirrors (target <= 2x): at once (c360.trait_backfill_chunk
#      above the profile's size, so each create_trait computes its trait in its own
#      transaction), and chunked (create_trait with the default chunk, then
#      CALL c360.backfill_traits(), one chunk per transaction).  The CREATE TABLE AS runs
#      three times, between the backfills; its median counts.
#   2. Events/s and order changes/s through c360.apply_changes, batches as bench/run.sh's
#      (the same 'events' and 'orders' batches), with the ten traits against without them
#      (target >= 0.7x): two copies of one database, chunk by chunk in alternation (which
#      goes first alternates too), so that other load on the machine hits both alike.  One
#      client drives a session in each database through dblink, so that each phase runs in
#      one session per database, as in bench/run.sh.
#   3. c360.tick() +1 s and +1 h with and without the traits; verify() in both databases,
#      which must be empty (the exit status says so).
# Prints the report and writes it to bench/out/traits.txt, the generated statements to
# bench/out/traits_statements.txt and, unless BENCH_EXPLAIN=0, the plans of one events and
# one orders batch with the traits (bench/explain.sql) to bench/out/traits_explain.txt.
# Knobs (environment): run.sh's BENCH_CUSTOMERS, BENCH_BASE_ORDERS, BENCH_BASE_EVENTS,
# BENCH_EVENTS, BENCH_ORDER_CHANGES, BENCH_BATCH, BENCH_EXPLAIN; TRAITS_BENCH_CHUNKS (10),
# TRAITS_BENCH_PORT (54334); TRAITS_BENCH_KEEP=1 leaves the cluster running (databases
# bench_plain and bench_traits) for a closer look.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
PORT=${TRAITS_BENCH_PORT:-54334}
. bench/scale.sh
CHUNKS=${TRAITS_BENCH_CHUNKS:-10}
KEEP=${TRAITS_BENCH_KEEP:-0}

make -s >/dev/null && make -s install >/dev/null

. test/servers.sh
. bench/cluster.sh

mkdir -p "$OUT"
# bench/run.sh's settings, but shared_buffers: two databases of run.sh's size share them.
bench_cluster traitsbench "$PORT" "$KEEP" bench_traits \
    "shared_buffers = 2GB" \
    "pg_stat_statements.track = all" \
    "pg_stat_statements.max = 1000"

q() { local db=$1; shift; pg_psql "$PORT" -d "$db" "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
DBS="bench_plain bench_traits"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "traits bench: cluster on port $PORT in $DIR; generating bench/run.sh's shop (untimed)"
q postgres -c "CREATE DATABASE bench_base" >/dev/null
q bench_base -c "CREATE EXTENSION customer360" -c "CREATE EXTENSION pg_stat_statements" \
    -c "CREATE EXTENSION pg_prewarm"
q bench_base -f bench/lib.sql
q bench_base -f bench/traits.sql
q bench_base -c "SELECT c360.tick(bench.t0())" >/dev/null
# the COPY baselines' files and the floor phase are bench/run.sh's business: one chunk, no floor
q bench_base -v customers="$CUSTOMERS" -v base_orders="$BASE_ORDERS" -v base_events="$BASE_EVENTS" \
    -v events="$EVENTS" -v order_changes="$ORDER_CHANGES" -v batch="$BATCH" \
    -v chunks=1 -v csv_prefix="$DIR/" -v floor_batches=0 -f bench/data.sql
rm -f "$DIR"/*.csv

say "loading the base through apply_changes (untimed); three copies of it"
q bench_base -c "CALL bench.apply_staged('customers')" \
    -c "CALL bench.apply_staged('base_orders')" \
    -c "CALL bench.apply_staged('base_events')" \
    -c "VACUUM ANALYZE"
for db in bench_once $DBS; do
    q postgres -c "CREATE DATABASE $db TEMPLATE bench_base STRATEGY FILE_COPY"
done
q postgres -c "DROP DATABASE bench_base" -c "CREATE EXTENSION dblink"

# --- 1. backfill -----------------------------------------------------------------------------
say "backfill of the ten traits: CREATE TABLE AS, at once, CREATE TABLE AS, chunked, CREATE TABLE AS"
q bench_once -c "CHECKPOINT" -c "CALL bench.ctas('ctas')"
q bench_once -c "SELECT pg_stat_statements_reset()" -c "SET c360.trait_backfill_chunk = 10000000" \
    -c "CALL bench.create_traits('at_once')" -c "SELECT bench.snapshot_statements('at_once')" >/dev/null
q bench_once -c "CALL bench.ctas('ctas')"
q bench_traits -c "CHECKPOINT" -c "CALL bench.create_traits('chunked_create')" \
    -c "SELECT pg_stat_statements_reset()" -c "CALL bench.backfill('chunked')" \
    -c "SELECT bench.snapshot_statements('chunked')" >/dev/null
q bench_traits -c "CALL bench.ctas('ctas')"
for db in bench_once bench_traits; do
    # the baseline computes what the backfill wrote, and every trait is ready
    bad=$(q "$db" -At -c "SELECT bench.ctas_differs() + (SELECT count(*) FROM c360.traits WHERE state <> 'ready')
                          + abs((SELECT count(*) FROM c360.traits) - 10)")
    [ "$bad" = 0 ] || { echo "$db: the backfill and the CREATE TABLE AS differ ($bad)" >&2; exit 1; }
    q "$db" -c "DROP TABLE bench.traits_ctas"
done
q bench_once -c "CALL bench.time_step('backfill', 'verify() after the backfill at once',
                                      'SELECT count(*) FROM c360.verify()')"
q bench_once -At -c "SELECT json_build_object('timings', (SELECT json_agg(t) FROM bench.timings t),
                      'statements', (SELECT json_agg(s) FROM bench.statements s))" >"$DIR/once.json"
q postgres -c "DROP DATABASE bench_once"
q bench_traits -At -c "SELECT input, purpose, statement FROM c360.trait_statements()" \
    -F $'\n' -R $'\n\n' >"$OUT/traits_statements.txt"

# --- 2. events and order changes, with and without the traits --------------------------------
prepare() {
    for db in $DBS; do q "$db" -c "VACUUM ANALYZE"; done
    q bench_plain -c "CHECKPOINT"
    for db in $DBS; do
        q "$db" -At -c "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'c360' AND c.relkind IN ('r', 'i')" >/dev/null
    done
    q bench_plain -c "SELECT pg_stat_statements_reset()" >/dev/null
}
measure() { # phase
    local phase=$1 nb c lo hi order db
    nb=$(q bench_plain -At -c "SELECT max(batch_no) FROM bench.batches WHERE phase = '$phase'")
    prepare
    say "$phase: $nb batches in $CHUNKS chunks, alternating between no trait and ten traits"
    # One session per database for the whole phase, as bench/run.sh applies a phase in one
    # session (its plans go generic alike); one client drives both through dblink.
    {
        for db in $DBS; do
            echo "SELECT dblink_connect('$db', 'host=127.0.0.1 port=$PORT user=postgres dbname=$db');"
        done
        for ((c = 0; c < CHUNKS; c++)); do
            lo=$((c * nb / CHUNKS + 1)) hi=$(((c + 1) * nb / CHUNKS))
            if ((c % 2 == 0)); then order="bench_plain bench_traits"; else order="bench_traits bench_plain"; fi
            for db in $order; do
                echo "SELECT dblink_exec('$db', \$\$CALL bench.apply_chunk('$phase', $lo, $hi)\$\$);"
            done
        done
    } | q postgres >/dev/null
    for db in $DBS; do q "$db" -c "SELECT bench.snapshot_statements('$phase')" >/dev/null; done
}
measure events
measure orders

# --- 3. tick and verify ----------------------------------------------------------------------
say "tick +1 s and +1 h, verify(), in both databases"
prepare
for db in $DBS; do
    q "$db" -c "CALL bench.time_step('tick', 'tick +1 s', \$\$SELECT c360.tick(bench.t0() + interval '1 second')\$\$)" \
        -c "CALL bench.time_step('tick', 'tick +1 h', \$\$SELECT c360.tick(bench.t0() + interval '1 hour')\$\$)" \
        -c "SELECT bench.snapshot_statements('tick')" >/dev/null
done
for db in $DBS; do
    q "$db" -c "CALL bench.time_step('verify', 'verify()', 'SELECT count(*) FROM c360.verify()')"
done

if [ "$EXPLAIN" = 1 ]; then
    say "plans of one more events batch, orders batch and day's tick with the traits (rolled back) -> bench/out/traits_explain.txt"
    q bench_traits -f bench/explain.sql 2>&1 | cut -c1-600 >"$OUT/traits_explain.txt" ||
        say "explain failed, see bench/out/traits_explain.txt"
fi

doc() { # db -> its measurements as one JSON object
    q "$1" -At -c "SELECT json_build_object(
        'profiles', (SELECT count(*) FROM c360.customer_360),
        'traits', (SELECT json_agg(json_build_object('name', name, 'input', input, 'aggregate', aggregate,
                                                     'filter', filter, 'lookback', lookback::text, 'type', type)
                                   ORDER BY created_at, name) FROM c360.traits),
        'chunks', (SELECT json_agg(c ORDER BY phase, first_batch) FROM bench.chunks c),
        'timings', (SELECT json_agg(t ORDER BY at) FROM bench.timings t),
        'statements', (SELECT json_agg(s ORDER BY phase, total_ms DESC) FROM bench.statements s))"
}
{
    printf '{"cores": %s, "batch": %s, "load_start": "%s", "load_end": "%s", "chunks": %s,\n' \
        "$(nproc)" "$BATCH" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "$CHUNKS"
    printf ' "server": "%s",\n' "$(q bench_plain -At -c "SHOW server_version")"
    printf ' "once": %s,\n "plain": %s,\n "traits": %s}\n' "$(cat "$DIR/once.json")" \
        "$(doc bench_plain)" "$(doc bench_traits)"
} | python3 bench/traits_report.py "$OUT/traits.txt"
