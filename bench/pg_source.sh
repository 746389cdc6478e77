#!/usr/bin/env bash
# bench/pg_source.sh: the postgres-cdc source on two throwaway PostgreSQL clusters: the local
# one (customer360 preloaded, database c360_workers) and a source (wal_level = logical) holding
# the article's public.orders.  CUSTOMERS customers go in through c360.apply_changes (untimed);
# ORDERS orders on the source, mapped onto the orders input.
#   1. snapshot rows/s: create_source + map_table (one transaction) to state 'streaming',
#      beside raw COPY of the same rows (COPY TO a file on the source side, COPY FROM it
#      into a scratch copy of c360.orders, indexes included); each the median of 3 runs,
#      interleaved so that both see the same machine
#   2. streaming changes/s: CHANGES order updates in transactions of 1,000 written while the
#      source is paused, then applied from the slot as fast as it goes (changes_applied grows
#      by exactly that many)
#   3. freshness at RATE changes/s for SECONDS s: small transactions of TX_ROWS order updates
#      (total_amount + 1, so each changes its customer's lifetime_value), each order updated
#      once.  Source commit (track_commit_timestamp on the source) to the local commit that
#      wrote the mirror row and, in the same transaction, the profile row (per change); and,
#      per customer, its last change's source commit to the commit of its profile row's xmin.
#      p50/p99/max, target p99 < 200 ms
# Ends with c360.verify() (exit 1 unless it is empty).  Prints the report and writes it to
# bench/out/pg_source.txt.
# Knobs (environment): PG_BENCH_CUSTOMERS (20000), PG_BENCH_ORDERS (200000),
# PG_BENCH_CHANGES (100000), PG_BENCH_RATE (5000), PG_BENCH_SECONDS (20), PG_BENCH_TX_ROWS (5),
# PG_BENCH_PORT (54390), PG_BENCH_SRC_PORT (54391); PG_BENCH_KEEP=1 leaves both running.
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh
PORT=${PG_BENCH_PORT:-54390}
SRC_PORT=${PG_BENCH_SRC_PORT:-54391}
CUSTOMERS=${PG_BENCH_CUSTOMERS:-20000}
ORDERS=${PG_BENCH_ORDERS:-200000}
CHANGES=${PG_BENCH_CHANGES:-100000}
RATE=${PG_BENCH_RATE:-5000}
SECONDS_AT_RATE=${PG_BENCH_SECONDS:-20}
TX_ROWS=${PG_BENCH_TX_ROWS:-5}
KEEP=${PG_BENCH_KEEP:-0}
DB=c360_workers
SRC_DB=shop
OUT=bench/out
export PGTZ=UTC

make -s >/dev/null && make -s install >/dev/null

DIR=$(mktemp -d /tmp/c360-pgbench.XXXXXX)
chmod 755 "$DIR"   # the clusters inside run as the postgres user
cleanup() {
    if [ "$KEEP" = 1 ]; then
        echo "left running: psql -h 127.0.0.1 -p $PORT -U postgres -d $DB; psql -h 127.0.0.1 -p $SRC_PORT -U postgres -d $SRC_DB;" \
            "stop: . test/servers.sh && pg_stop $DIR/pg && pg_stop $DIR/src && rm -rf $DIR" >&2
        return
    fi
    pg_stop "$DIR/pg"
    pg_stop "$DIR/src"
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

q() { pg_psql "$PORT" -d "$DB" -qAt "$@"; }
s() { pg_psql "$SRC_PORT" -d "$SRC_DB" -qAt "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
state() { q -c "SELECT state FROM c360.source_status WHERE name = 'shop'"; }
has_order() { [ "$(q -c "SELECT count(*) FROM c360.orders WHERE order_id = '$1'")" = 1 ]; }
applied() { q -c "SELECT changes_applied FROM c360.source_status WHERE name = 'shop'"; }
wait_for() { # SECONDS CMD...: poll every 50 ms
    local limit=$1; shift
    local end
    end=$(awk -v n="$(now)" -v l="$limit" 'BEGIN { printf "%.0f", n + l }')
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || {
            echo "gave up waiting for: $*" >&2
            q -c "SELECT * FROM c360.source_status" >&2 || true
            exit 1
        }
        sleep 0.05
    done
}
streaming() { [ "$(state)" = streaming ]; }
worker_gone() {
    [ -z "$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 source'")" ]
}

pg_start "$DIR/pg" "$PORT" \
    "shared_preload_libraries = 'customer360'" \
    "c360.database = '$DB'" \
    "c360.tick_interval = 0" \
    "track_commit_timestamp = on" \
    "shared_buffers = 512MB" \
    "max_wal_size = 8GB" \
    "checkpoint_timeout = 30min" \
    "timezone = 'UTC'"
pg_start "$DIR/src" "$SRC_PORT" \
    "wal_level = logical" \
    "max_replication_slots = 10" \
    "max_wal_senders = 10" \
    "track_commit_timestamp = on" \
    "shared_buffers = 256MB" \
    "max_wal_size = 8GB" \
    "checkpoint_timeout = 30min" \
    "timezone = 'UTC'"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE $DB" >/dev/null
q -c "CREATE EXTENSION customer360" >/dev/null
pg_psql "$SRC_PORT" -d postgres -c "CREATE DATABASE $SRC_DB" >/dev/null

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
say "loading $CUSTOMERS customers (apply_changes) and $ORDERS orders on the source (untimed)"
q >/dev/null <<SQL
SELECT setseed(0.42);
CREATE TEMP TABLE cust AS
SELECT i, 'c' || lpad(i::text, 6, '0') AS customer_id, 'user' || i || '@example.com' AS email,
       (ARRAY['Ana','Ben','Chloe','Dev','Emma','Farid'])[1 + i % 6] AS first_name,
       (ARRAY['Smith','Garcia','Chen','Okafor'])[1 + i % 4] AS last_name,
       '+1555' || lpad(i::text, 7, '0') AS phone,
       (ARRAY['organic','paid_search','social','referral'])[1 + i % 4] AS acquisition_channel,
       now() - random() * interval '1000 days' AS signup_date,
       (ARRAY['bronze','silver','gold','platinum'])[1 + i % 4] AS loyalty_tier,
       now() - random() * interval '100 days' AS last_updated
FROM generate_series(1, $CUSTOMERS) i;
SELECT sum(c360.apply_changes(b))
FROM (SELECT jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert',
                                          'new', to_jsonb(c) - 'i')) AS b
      FROM cust c GROUP BY i / 5000) x;
SQL
s >/dev/null <<SQL
SET client_min_messages = warning;
CREATE TABLE orders (
    order_id     text PRIMARY KEY,
    customer_id  text NOT NULL,
    order_status text,
    total_amount numeric,
    item_count   integer,
    channel      text,
    created_at   timestamptz,
    updated_at   timestamptz
);
SELECT setseed(0.42);
INSERT INTO orders
SELECT 'o' || lpad(g::text, 8, '0'), 'c' || lpad((1 + floor(random() * $CUSTOMERS))::int::text, 6, '0'),
       (ARRAY['delivered','shipped','pending','cancelled','returned'])[1 + floor(random() * 5)::int],
       round((5 + random() * 295)::numeric, 2), 1 + floor(random() * 6)::int,
       (ARRAY['web','mobile','store','marketplace'])[1 + floor(random() * 4)::int],
       c, c
FROM generate_series(1, $ORDERS) g, LATERAL (SELECT now() - random() * interval '730 days' AS c) t;
-- the k-th update of a phase touches order order_at(k): a permutation of all orders
CREATE FUNCTION order_at(k bigint) RETURNS text LANGUAGE sql IMMUTABLE AS
\$\$ SELECT 'o' || lpad(((k * 7919) % $ORDERS + 1)::text, 8, '0') \$\$;
-- n updates in transactions of per_tx, starting at the from-th of the permutation
CREATE PROCEDURE bulk_updates(from_k bigint, n bigint, per_tx int) LANGUAGE plpgsql AS \$\$
DECLARE
    k bigint := from_k;
BEGIN
    WHILE k < from_k + n LOOP
        UPDATE orders SET order_status = (ARRAY['delivered','shipped','pending','cancelled','returned'])[1 + floor(random() * 5)::int],
                          total_amount = total_amount + 1, updated_at = clock_timestamp()
        WHERE order_id IN (SELECT order_at(j) FROM generate_series(k, least(k + per_tx, from_k + n) - 1) j);
        COMMIT;
        k := k + per_tx;
    END LOOP;
END
\$\$;
VACUUM ANALYZE orders;
SQL
q -c "VACUUM ANALYZE" >/dev/null

say "0./1. raw COPY of the $ORDERS orders and the snapshot of the same rows, interleaved (3 runs each)"
# COPY: orders TO a file on the source side, FROM it into a scratch copy of c360.orders.
# Snapshot: create_source + map_table (one transaction) until the source streams.  One
# session creates the source and polls every 20 ms inside the server (a psql per poll would
# take CPU from the worker being measured), noting when the first snapshot rows are done
# (worker start, slot, export); times from the commit.  Between runs the source is dropped
# and the orders mirror emptied with the profile rebuilt (untimed), so every run starts alike.
q -c "CREATE TABLE public.copy_scratch (LIKE c360.orders INCLUDING ALL)" >/dev/null
copy_out=() copy_in=() snap=() firsts=()
snapshot_once() {
    IFS='|' read -r secs first < <(q <<SQL
SELECT clock_timestamp() AS t0 \\gset
BEGIN;
SELECT c360.create_source('shop', 'postgres-cdc',
    '{"conninfo": "host=127.0.0.1 port=$SRC_PORT user=postgres dbname=$SRC_DB"}') \\g /dev/null
SELECT c360.map_table('shop', 'public.orders', 'orders') \\g /dev/null
COMMIT;
CREATE FUNCTION pg_temp.wait_streaming(t0 timestamptz) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE st text; done_rows bigint; first_rows numeric;
BEGIN
    LOOP
        SELECT state, COALESCE(snapshot_rows_done, 0) INTO st, done_rows
        FROM c360.source_status WHERE name = 'shop';
        IF st = 'streaming' THEN
            RETURN round(extract(epoch FROM clock_timestamp() - t0), 3) || '|' || COALESCE(first_rows::text, '?');
        END IF;
        IF first_rows IS NULL AND done_rows > 0 THEN
            first_rows := round(extract(epoch FROM clock_timestamp() - t0), 2);
        END IF;
        IF st = 'error' OR clock_timestamp() > t0 + interval '600 s' THEN
            RAISE EXCEPTION 'the snapshot did not finish: state %', st;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END \$\$;
SELECT pg_temp.wait_streaming(:'t0');
SQL
) || { q -c "SELECT * FROM c360.source_status" >&2; echo "the snapshot did not finish" >&2; exit 1; }
    snap+=("$secs") firsts+=("$first")
    mirror=$(q -c "SELECT count(*) FROM c360.orders")
    [ "$mirror" = "$ORDERS" ] || { echo "the snapshot left $mirror orders, not $ORDERS" >&2; exit 1; }
}
for run in 1 2 3; do
    t0=$(now)
    s -c "COPY orders TO STDOUT" >"$DIR/orders.copy"
    t1=$(now)
    q -c "COPY public.copy_scratch FROM '$DIR/orders.copy'" >/dev/null
    t2=$(now)
    copy_out+=("$(secs "$t0" "$t1")") copy_in+=("$(secs "$t1" "$t2")")
    n=$(q -c "SELECT count(*) FROM public.copy_scratch")
    [ "$n" = "$ORDERS" ] || { echo "COPY loaded $n rows, not $ORDERS" >&2; exit 1; }
    q -c "TRUNCATE public.copy_scratch" >/dev/null
    if [ "$run" -gt 1 ]; then
        q -c "SELECT c360.drop_source('shop')" >/dev/null
        q -c "TRUNCATE c360.orders" -c "SELECT c360.rebuild()" >/dev/null
    fi
    q -c "VACUUM ANALYZE" >/dev/null
    snapshot_once
    say "   run $run: COPY ${copy_out[-1]} s + ${copy_in[-1]} s, snapshot ${snap[-1]} s"
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
copy_out_med=$(median "${copy_out[@]}")
copy_in_med=$(median "${copy_in[@]}")
copy_secs=$(awk -v a="$copy_out_med" -v b="$copy_in_med" 'BEGIN { printf "%.2f", a + b }')
copy_in_rate=$(rate "$ORDERS" "$copy_in_med")
copy_rate=$(rate "$ORDERS" "$copy_secs")
q -c "DROP TABLE public.copy_scratch" >/dev/null
rm -f "$DIR/orders.copy"
say "   COPY TO file median $copy_out_med s, COPY FROM file median $copy_in_med s: $copy_rate rows/s both, $copy_in_rate rows/s load only"
snapshot_secs=$(median "${snap[@]}")
first_rows=$(median "${firsts[@]}")
snapshot_rate=$(rate "$ORDERS" "$snapshot_secs")
snap_ratio=$(awk -v a="$snapshot_rate" -v b="$copy_rate" 'BEGIN { printf "%.2f", a / b }')
snap_ratio_in=$(awk -v a="$snapshot_rate" -v b="$copy_in_rate" 'BEGIN { printf "%.2f", a / b }')
say "   $ORDERS rows in $snapshot_secs s (first rows done after ${first_rows:-?} s): $snapshot_rate rows/s ($snap_ratio x COPY out+in, $snap_ratio_in x COPY in)"
q -c "VACUUM ANALYZE" >/dev/null

say "2. streaming: $CHANGES updates in transactions of 1,000 written while paused, then applied"
q -c "SELECT c360.pause_source('shop')" >/dev/null
wait_for 60 worker_gone
before=$(applied)
s -c "CALL bulk_updates(0, $CHANGES, 1000)"
s -c "INSERT INTO orders VALUES ('o_marker1', 'c_marker', 'pending', 1, 1, 'web', now(), now())"
t0=$(now)
q -c "SELECT c360.resume_source('shop')" >/dev/null
wait_for 600 has_order o_marker1
t1=$(now)
stream_changes=$(($(applied) - before - 1))
stream_secs=$(secs "$t0" "$t1")
stream_rate=$(rate "$stream_changes" "$stream_secs")
say "   $stream_changes row changes in $stream_secs s (worker start included): $stream_rate changes/s"
[ "$stream_changes" = "$CHANGES" ] || { echo "changes_applied grew by $stream_changes, not $CHANGES" >&2; exit 1; }
q -c "VACUUM ANALYZE" >/dev/null
s -c "VACUUM ANALYZE orders" >/dev/null

total=$((RATE * SECONDS_AT_RATE))
[ "$total" -le "$ORDERS" ] || total=$ORDERS
say "3. freshness at $RATE changes/s for $SECONDS_AT_RATE s ($total updates, $TX_ROWS per transaction)"
f_start=$(s -c "SELECT clock_timestamp()")
# Paced: every 10 ms the transactions due by then; each order updated once (the
# permutation continues after phase 2's), so its source xmin is this very change.
python3 - "$total" "$RATE" "$TX_ROWS" "$CHANGES" "$ORDERS" <<'PY' | s >/dev/null
import sys, time
total, rate, per_tx, first, orders = map(int, sys.argv[1:])
out = sys.stdout
start = time.monotonic()
sent = 0
while sent < total:
    due = min(total, int((time.monotonic() - start) * rate) + per_tx)
    while sent < due:
        n = min(per_tx, total - sent)
        ids = ",".join("'o%08d'" % (((first + sent + j) * 7919) % orders + 1) for j in range(n))
        out.write("UPDATE orders SET total_amount = total_amount + 1, updated_at = clock_timestamp() "
                  f"WHERE order_id IN ({ids});\n")
        sent += n
    out.flush()
    time.sleep(0.01)
PY
s -c "INSERT INTO orders VALUES ('o_marker2', 'c_marker', 'pending', 1, 1, 'web', now(), now())"
wait_for 600 has_order o_marker2
s -c "COPY (SELECT order_id, customer_id, pg_xact_commit_timestamp(xmin) FROM orders
           WHERE updated_at >= '$f_start' AND order_id LIKE 'o0%') TO STDOUT" >"$DIR/fresh.copy"
read -r n achieved pmin p50 p99 pmax cn cp50 cp99 cpmax < <(q -F ' ' <<SQL
CREATE TEMP TABLE fresh (order_id text PRIMARY KEY, customer_id text, src_commit timestamptz);
\copy fresh FROM '$DIR/fresh.copy'
WITH per_change AS (
    SELECT f.src_commit,
           extract(epoch FROM pg_xact_commit_timestamp(o.xmin) - f.src_commit) * 1000 AS ms
    FROM fresh f JOIN c360.orders o USING (order_id)),
per_customer AS (
    SELECT extract(epoch FROM pg_xact_commit_timestamp(p.xmin) - l.src_commit) * 1000 AS ms
    FROM (SELECT customer_id, max(src_commit) AS src_commit FROM fresh GROUP BY customer_id) l
    JOIN c360.customer_360 p USING (customer_id))
SELECT c.n, c.achieved, c.pmin, c.p50, c.p99, c.pmax, p.n, p.p50, p.p99, p.pmax
FROM (SELECT count(*) AS n,
             round(count(*) / nullif(extract(epoch FROM max(src_commit) - min(src_commit)), 0)) AS achieved,
             round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)) AS p50,
             round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)) AS p99,
             round(max(ms)) AS pmax, round(min(ms)) AS pmin
      FROM per_change) c,
     (SELECT count(*) AS n,
             round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)) AS p50,
             round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)) AS p99,
             round(max(ms)) AS pmax
      FROM per_customer) p;
SQL
)
say "   $n changes at $achieved changes/s: p50 $p50 ms, p99 $p99 ms, max $pmax ms (per customer: p50 $cp50, p99 $cp99, max $cpmax)"
verify=$(q -c "SELECT count(*) FROM c360.verify()")
src_rows=$(s -c "SELECT count(*) FROM orders")
mirror_rows=$(q -c "SELECT count(*) FROM c360.orders")

verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == "<") ? (v < t) : (v >= t); print ok ? "met" : "NOT met" }'; }
snap_verdict=$(verdict "$snap_ratio" 0.5 ">=")
fresh_verdict=$(verdict "$p99" 200 "<")
mkdir -p "$OUT"
cat <<EOF | tee "$OUT/pg_source.txt"

postgres-cdc source ($(date -u +%FT%TZ); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; both PostgreSQL $(s -c "SHOW server_version") clusters on one machine)
  raw COPY             $ORDERS rows: TO file $copy_out_med s + FROM file $copy_in_med s   $copy_rate rows/s ($copy_in_rate rows/s load only; median of 3)
  snapshot             $ORDERS rows in $snapshot_secs s (median of 3)           $snapshot_rate rows/s   ${snap_ratio} x COPY (target >= 0.5: $snap_verdict; ${snap_ratio_in} x the load alone; first rows after ${first_rows:-?} s)
  streaming            $stream_changes changes in $stream_secs s        $stream_rate changes/s   (transactions of 1,000, backlog)
  freshness at $achieved/s   min $pmin ms   p50 $p50 ms   p99 $p99 ms   max $pmax ms   (target p99 < 200 ms: $fresh_verdict; $n changes, $TX_ROWS per transaction)
    per customer       p50 $cp50 ms   p99 $cp99 ms   max $cpmax ms   (last change -> profile row's commit; $cn customers)
  verify()             $verify rows differ; orders: source $src_rows, mirror $mirror_rows
EOF
[ "$verify" = 0 ] && [ "$src_rows" = "$mirror_rows" ]
