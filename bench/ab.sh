#!/usr/bin/env bash
# bench/ab.sh: the events and order-change hot paths of two library builds, compared on
# identical data.
#
# Single `make bench` runs differ by 15-25% on a small shared machine, more than most changes
# to the hot path.  Here every run starts from the same bytes: the base that bench/run.sh
# loads with revision A (100,000 profiles), saved once; each run restores it, loads one
# build's library, prewarms the c360 relations (pg_prewarm), applies a few warm-up batches,
# then times AB_BATCHES batches of 1,000 new events spread over all customers, one
# transaction each, and AB_BATCHES batches of 1,000 order changes (half new orders, half
# status/amount updates of distinct existing orders, shuffled, as bench/run.sh draws them),
# each after a few warm-up batches.  The builds alternate, AB_ROUNDS times; each run prints
# its median and 90th percentile ms per batch and its rate, and the end prints the medians
# over the rounds.  The machine still varies: on the 2-core development VM, one build
# against itself gave 85/83, 103/72 and 105/98 ms in three rounds.  Trust a difference only
# when it is larger than that and every round agrees.
#
# Usage: bash bench/ab.sh REV_A REV_B     a git revision, or . for the working tree as it is
# REV_A's bench must have bench.draw_events (bench/lib.sql, from 2026-11-30 on).
# If B's extension version is newer than A's, B's runs update the restored database first
# (ALTER EXTENSION customer360 UPDATE), so B's update script is measured too.
# Knobs: AB_ROUNDS (3), AB_BATCHES (100), AB_PORT (54337).  Needs the space of two copies of
# the bench cluster (about 4 GB) under /tmp.  The working tree's build is installed again at
# the end.  PG_CONFIG (the Makefile's default otherwise) says where the builds install, and
# PG_BIN (test/servers.sh) which server runs them: a private copy of the PostgreSQL tree
# keeps the runs off the system's installation.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
[ $# = 2 ] || { echo "usage: bash bench/ab.sh REV_A REV_B" >&2; exit 2; }
REV_A=$1
REV_B=$2
ROUNDS=${AB_ROUNDS:-3}
BATCHES=${AB_BATCHES:-100}
PORT=${AB_PORT:-54337}
WARM=8
# make reads PG_CONFIG from the environment (the Makefile's PG_CONFIG ?=): every build, A's
# bench/run.sh included, installs where this one says.
PG_CONFIG=${PG_CONFIG:-$(test -x /usr/lib/postgresql/15/bin/pg_config &&
    echo /usr/lib/postgresql/15/bin/pg_config || echo pg_config)}
export PG_CONFIG

. test/servers.sh
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }

TMP=$(mktemp -d /tmp/c360-ab.XXXXXX)
chmod a+rx "$TMP"
BASE=
cleanup() {
    pg_stop "$TMP/run"
    [ -z "$BASE" ] || pg_discard "$BASE"
    for t in "$TMP"/tree_*; do [ -d "$t" ] && git -C "$ROOT" worktree remove --force "$t"; done
    rm -rf "$TMP"
    make -s -C "$ROOT" install >/dev/null
}
trap cleanup EXIT

# A build: its source tree (a worktree of the revision, or this one), built.
tree_of() {
    local label=$1 rev=$2
    if [ "$rev" = . ]; then
        echo "$ROOT"
    else
        git -C "$ROOT" worktree add -q --detach "$TMP/tree_$label" "$rev" >&2
        echo "$TMP/tree_$label"
    fi
}
TREE_A=$(tree_of a "$REV_A")
TREE_B=$(tree_of b "$REV_B")
for t in "$TREE_A" "$TREE_B"; do make -s -C "$t" >/dev/null; done
cp "$TREE_A/customer360.so" "$TMP/a.so"
cp "$TREE_B/customer360.so" "$TMP/b.so"
version_of() { sed -n "s/^default_version = '\(.*\)'/\1/p" "$1/customer360.control"; }

say "base: bench/run.sh of A ($REV_A), kept; its report is in $TMP/base.txt"
BENCH_KEEP=1 BENCH_EXTRAS=0 BENCH_EXPLAIN=0 BENCH_PORT=$PORT bash "$TREE_A/bench/run.sh" \
    >"$TMP/base.txt" 2>&1 || { tail -20 "$TMP/base.txt"; exit 1; }
BASE=$(sed -n 's/.*pg_stop \([^ ]*\) .*/\1/p' "$TMP/base.txt")
[ -d "$BASE/data" ] || { echo "no kept cluster in $TMP/base.txt" >&2; exit 1; }
pg_psql "$PORT" -d postgres -v n=$(((WARM + BATCHES) * 1000)) <<'SQL'
-- the measured events, drawn like bench/run.sh's own (A's bench.draw_events)
INSERT INTO bench.batches
SELECT 'ab', (seq - 1) / 1000 + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert',
                                    'new', to_jsonb(e) - 'seq') ORDER BY seq)::text
FROM bench.draw_events('ab', :n, (SELECT count(*) FROM c360.customers)) e GROUP BY 2;
-- the measured order changes, drawn like bench/data.sql's: half new orders within 30 days
-- of t0, half status/amount updates of distinct existing orders, shuffled
INSERT INTO bench.batches
SELECT 'ab_orders', (seq - 1) / 1000 + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'orders', 'op', op,
                                    'old', CASE WHEN op = 'update' THEN jsonb_build_object('order_id', order_id) END,
                                    'new', to_jsonb(o) - 'seq' - 'op') ORDER BY seq)::text
FROM (
    WITH ins AS (
        SELECT 'insert' AS op, 'ab' || lpad(s::text, 8, '0') AS order_id,
               bench.customer(1 + floor(random() * (SELECT count(*) FROM c360.customers))::bigint) AS customer_id,
               (ARRAY['pending','shipped','delivered'])[1 + floor(random() * 3)::int] AS order_status,
               round((5 + random() * 295)::numeric, 2) AS total_amount,
               1 + floor(random() * 6)::int AS item_count,
               (ARRAY['web','mobile','store','marketplace'])[1 + floor(random() * 4)::int] AS channel,
               bench.t0() - random() * (interval '30 days' - interval '3 hours') AS created_at
        FROM generate_series(1, :n / 2) s),
    upd AS (
        SELECT 'update' AS op, order_id, customer_id,
               (ARRAY['shipped','delivered','cancelled','returned'])[1 + floor(random() * 4)::int] AS order_status,
               round(total_amount * (0.5 + random())::numeric, 2) AS total_amount,
               item_count, channel, created_at
        FROM (SELECT * FROM c360.orders ORDER BY random() LIMIT :n - :n / 2) b)
    SELECT row_number() OVER (ORDER BY random()) AS seq, a.*,
           bench.t0() - random() * interval '1 hour' AS updated_at
    FROM (SELECT * FROM ins UNION ALL SELECT * FROM upd) a) o
GROUP BY 2;
-- both builds start from a vacuumed base (B's runs vacuum after their update anyway)
VACUUM ANALYZE;
SQL
pg_stop "$BASE"
mv "$BASE/data" "$TMP/base"
rm -rf "$BASE"
BASE=
make -s -C "$TREE_B" install >/dev/null   # B's scripts and control; the libraries swap below

run() {
    local label=$1 round=$2 dir=$TMP/run lib
    lib=$("$PG_CONFIG" --pkglibdir)/customer360.so
    pg_stop "$dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp -a "$TMP/base" "$dir/data"
    sync   # the copy's dirty pages are written now, not during the timed batches
    chown -R postgres "$dir"
    sed -i "s|^unix_socket_directories = .*|unix_socket_directories = '$dir'|" "$dir/data/postgresql.conf"
    cp "$TMP/$label.so" "$lib"
    pg_start "$dir" "$PORT"
    if [ "$label" = b ] && [ "$(version_of "$TREE_B")" != "$(version_of "$TREE_A")" ]; then
        pg_psql "$PORT" -d postgres -c "ALTER EXTENSION customer360 UPDATE" -c "VACUUM ANALYZE"
    fi
    pg_psql "$PORT" -d postgres -At >"$dir/result" <<SQL
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
SELECT sum(pg_prewarm(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'c360' AND c.relkind IN ('r', 'i') \\g /dev/null
CALL bench.apply_range('ab', 1, $WARM, '{}', 0) \\g /dev/null
CHECKPOINT;
CALL bench.apply_range('ab', $((WARM + 1)), $((WARM + BATCHES)), '{}', 0) \\gset
SELECT round(bench.pct(:'lat', 0.5)::numeric, 1), round(bench.pct(:'lat', 0.9)::numeric, 1),
       round(:applied / (SELECT sum(x) FROM unnest(:'lat'::float8[]) x) * 1000) \\g $dir/events
CALL bench.apply_range('ab_orders', 1, $WARM, '{}', 0) \\g /dev/null
CHECKPOINT;
CALL bench.apply_range('ab_orders', $((WARM + 1)), $((WARM + BATCHES)), '{}', 0) \\gset
SELECT round(bench.pct(:'lat', 0.5)::numeric, 1), round(bench.pct(:'lat', 0.9)::numeric, 1),
       round(:applied / (SELECT sum(x) FROM unnest(:'lat'::float8[]) x) * 1000) \\g $dir/orders
SELECT count(*) FROM c360.verify();
SQL
    local rev what p50 p90 rate diffs
    rev=$([ "$label" = a ] && echo "$REV_A" || echo "$REV_B")
    diffs=$(cat "$dir/result")
    for what in events orders; do
        IFS='|' read -r p50 p90 rate <"$dir/$what"
        printf '%s round %s  %-12s  %-6s  p50 %6s ms  p90 %6s ms  %7s/s  per batch of 1,000  (verify: %s rows)\n' \
            "$label" "$round" "$rev" "$what" "$p50" "$p90" "$rate" "$diffs"
        echo "$label $what $p50 $p90 $rate" >>"$TMP/all"
    done
    pg_stop "$dir"
}

say "$ROUNDS rounds of A ($REV_A) and B ($REV_B), $BATCHES batches each after $WARM warm-up batches"
for round in $(seq "$ROUNDS"); do
    run a "$round"
    run b "$round"
done
echo "medians over $ROUNDS rounds (p50 ms, p90 ms, rate/s per round; B/A of the rate):"
python3 - "$TMP/all" "$REV_A" "$REV_B" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for label in "ab":
    for what in ("events", "orders"):
        r = [list(map(float, x[2:])) for x in rows if x[0] == label and x[1] == what]
        med[label, what] = [statistics.median(c) for c in zip(*r)]
        print(f"  {label} {sys.argv[2] if label == 'a' else sys.argv[3]:<12} {what:<6} p50 {med[label, what][0]:6.1f} ms"
              f"  p90 {med[label, what][1]:6.1f} ms  {med[label, what][2]:7.0f}/s")
for what in ("events", "orders"):
    print(f"  B/A {what}: rate {med['b', what][2] / med['a', what][2]:.3f}, "
          f"p50 {med['a', what][0] / med['b', what][0]:.3f} (above 1: B faster)")
PY
