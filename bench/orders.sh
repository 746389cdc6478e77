#!/usr/bin/env bash
# bench/orders.sh: order inserts and order updates through c360.apply_changes with the whole
# profile, against plain COPY and plain UPDATE of the same rows into a bare orders table, at
# issue 19's scale: 100,000 customers with 1,000,000 orders, batches of 1,000.
# The bare table is an orders table as an application keeps it: the mirror's columns, a
# primary key and an index on customer_id (the mirror's own indexes until 0.8), holding the
# same base orders.  The ways run batch by batch in rotation (COPY batch i, apply inserts
# i, UPDATE batch i, apply updates i, the two floors of batch i), each in its own committed
# transaction, so that other load on the machine hits all alike.  The floor is the least a
# batch of new orders costs any design that keeps the profile per batch: the rows (into
# another bare copy) and their owners' count, sum and latest date in one statement, from a
# table (no JSON), rolled back.  The update floor likewise: the rows' UPDATE and their
# owners' sum and average moved by the amounts' difference, the old amount taken from the
# change (as a CDC event carries it), rolled back.  Rates are per batch at the median.
# verify() must be empty, and the mirror must equal the bare table row for row.
# The shop is bench/run.sh's (bench/data.sql, same seed), loaded through apply_changes in
# batches of BENCH_LOAD_BATCH (20,000): the bulk path.
# Knobs (environment): BENCH_CUSTOMERS (100,000), BENCH_BASE_ORDERS (1,000,000),
# ORDERS_BENCH_BATCHES (30 of each kind), BENCH_BATCH, ORDERS_BENCH_PORT (54341),
# ORDERS_BENCH_KEEP=1.  About 5 minutes on 2 cores.  Prints the report and writes it to
# bench/out/orders.txt.  Part of make bench (BENCH_EXTRAS), or alone: `make bench-orders`.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
PORT=${ORDERS_BENCH_PORT:-54341}
export BENCH_CUSTOMERS=${BENCH_CUSTOMERS:-100000} BENCH_BASE_ORDERS=${BENCH_BASE_ORDERS:-1000000} \
    BENCH_BASE_EVENTS=${BENCH_BASE_EVENTS:-300000} BENCH_ORDER_CHANGES=${BENCH_ORDER_CHANGES:-1000}
. bench/scale.sh
LOAD_BATCH=${BENCH_LOAD_BATCH:-20000}
NB=${ORDERS_BENCH_BATCHES:-30}
KEEP=${ORDERS_BENCH_KEEP:-0}

make -s >/dev/null && make -s install >/dev/null
. test/servers.sh
. bench/cluster.sh

mkdir -p "$OUT"
bench_cluster ordersbench "$PORT" "$KEEP" bench "shared_buffers = 1GB" \
    "pg_stat_statements.track = all" "pg_stat_statements.max = 1000"

q() { pg_psql "$PORT" -d bench "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "orders bench: cluster on port $PORT in $DIR; generating $CUSTOMERS customers, $BASE_ORDERS orders (untimed)"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE bench" >/dev/null
q -c "CREATE EXTENSION customer360" -c "CREATE EXTENSION pg_stat_statements" -f bench/lib.sql >/dev/null
q -c "SELECT c360.tick(bench.t0())" >/dev/null
q -v customers="$CUSTOMERS" -v base_orders="$BASE_ORDERS" -v base_events="$BASE_EVENTS" \
    -v events=1000 -v order_changes="$ORDER_CHANGES" -v batch="$BATCH" \
    -v load_batch="$LOAD_BATCH" -v chunks=1 -v csv_prefix="$DIR/" -v floor_batches=0 \
    -f bench/data.sql >/dev/null
rm -f "$DIR"/*.csv

say "loading it through apply_changes in batches of $LOAD_BATCH"
q -c "CALL bench.apply_staged('customers')" -c "CALL bench.apply_staged('base_orders')" \
    -c "CALL bench.apply_staged('base_events')" >/dev/null

say "staging $NB batches of $BATCH new orders and $NB of $BATCH updates; the bare table"
q -v nb="$NB" -v batch="$BATCH" -v customers="$CUSTOMERS" -v dir="$DIR" <<'SQL' >/dev/null
CREATE TABLE bench.ord AS
SELECT op, row_number() OVER (PARTITION BY op ORDER BY seq) AS k, order_id, customer_id,
       order_status, total_amount, item_count, channel, created_at, updated_at
FROM bench.draw_order_changes(2 * :nb * :batch, :customers, 'c360.orders');
ALTER TABLE bench.ord ADD COLUMN batch_no int, ADD COLUMN old_amount numeric;
UPDATE bench.ord SET batch_no = (k - 1) / :batch + 1;
-- an update's amount before it, as a change data capture event carries it (the update floor)
UPDATE bench.ord u SET old_amount = o.total_amount FROM c360.orders o
WHERE u.op = 'update' AND o.order_id = u.order_id;
CREATE INDEX ON bench.ord (op, batch_no);
INSERT INTO bench.batches
SELECT 'ord_' || op, batch_no, count(*),
       jsonb_agg(jsonb_build_object('input', 'orders', 'op', op,
                                    'old', CASE WHEN op = 'update' THEN jsonb_build_object('order_id', order_id) END,
                                    'new', to_jsonb(o) - 'op' - 'k' - 'batch_no' - 'old_amount') ORDER BY k)::text
FROM bench.ord o GROUP BY op, batch_no;
SELECT format($$COPY (SELECT order_id, customer_id, order_status, total_amount, item_count, channel,
                             created_at, updated_at FROM bench.ord WHERE op = 'insert' AND batch_no = %s ORDER BY k)
                TO %L WITH (FORMAT csv)$$, b, :'dir' || '/ord_' || b || '.csv')
FROM generate_series(1, :nb) b \gexec
-- the bare table as an application keeps it; the floor's rows are the mirror's, on pages
-- kept as the mirror keeps them (its fillfactor)
SELECT format('CREATE TABLE bench.%1$s (LIKE c360.orders)%2$s', t,
              CASE WHEN t = 'orders_floor' THEN
                  (SELECT ' WITH (' || array_to_string(reloptions, ', ') || ')' FROM pg_class
                   WHERE oid = 'c360.orders'::regclass AND reloptions IS NOT NULL) END),
       format('INSERT INTO bench.%1$s SELECT * FROM c360.orders', t),
       format('ALTER TABLE bench.%1$s ADD PRIMARY KEY (order_id)', t),
       format('CREATE INDEX ON bench.%1$s (customer_id)', t)
FROM unnest(ARRAY['orders_bare', 'orders_floor']) t \gexec
VACUUM ANALYZE;
CHECKPOINT;

-- The six ways, batch by batch in rotation; each in its own committed transaction (the
-- apply ways as bench.apply_range times a batch).
CREATE PROCEDURE bench.orders_rounds(p_nb int, p_dir text) LANGUAGE plpgsql AS $$
DECLARE
    t       timestamptz;
    lat     float8[] := ARRAY[[0,0,0,0,0,0]];
    one     float8[];
    applied bigint;
BEGIN
    PERFORM pg_stat_statements_reset();
    COMMIT;
    FOR b IN 1..p_nb LOOP
        t := clock_timestamp();
        EXECUTE format('COPY bench.orders_bare FROM %L WITH (FORMAT csv)', p_dir || '/ord_' || b || '.csv');
        COMMIT;
        lat[1][1] := extract(epoch FROM clock_timestamp() - t) * 1000;
        one := '{}';
        applied := 0;
        CALL bench.apply_range('ord_insert', b, b, one, applied);
        lat[1][2] := one[1];
        t := clock_timestamp();
        UPDATE bench.orders_bare o SET order_status = u.order_status, total_amount = u.total_amount,
                                      updated_at = u.updated_at
        FROM bench.ord u WHERE u.op = 'update' AND u.batch_no = b AND o.order_id = u.order_id;
        COMMIT;
        lat[1][3] := extract(epoch FROM clock_timestamp() - t) * 1000;
        one := '{}';
        CALL bench.apply_range('ord_update', b, b, one, applied);
        lat[1][4] := one[1];
        -- the floor: the new orders' rows and their owners' counters in one statement, no
        -- JSON, no check, rolled back (a subtransaction) so that every round sees one database
        BEGIN
            t := clock_timestamp();
            WITH ins AS (
                INSERT INTO bench.orders_floor
                SELECT order_id, customer_id, order_status, total_amount, item_count, channel,
                       created_at, updated_at
                FROM bench.ord WHERE op = 'insert' AND batch_no = b
                RETURNING customer_id, total_amount, created_at),
            agg AS (SELECT customer_id, count(*) AS n, sum(total_amount) AS s, max(created_at) AS m
                    FROM ins GROUP BY customer_id)
            UPDATE c360.customer_360 p
            SET total_orders = p.total_orders + agg.n, lifetime_value = p.lifetime_value + agg.s,
                last_order_date = greatest(p.last_order_date, agg.m)
            FROM agg WHERE p.customer_id = agg.customer_id;
            lat[1][5] := extract(epoch FROM clock_timestamp() - t) * 1000;
            RAISE EXCEPTION USING ERRCODE = 'P0004';
        EXCEPTION WHEN assert_failure THEN NULL;
        END;
        -- the floor for updates: the rows, and their owners' sum and average moved by the
        -- amounts' difference (the old amount from the change, as a CDC event carries it)
        BEGIN
            t := clock_timestamp();
            WITH upd AS (
                UPDATE bench.orders_floor o SET order_status = u.order_status,
                       total_amount = u.total_amount, updated_at = u.updated_at
                FROM bench.ord u WHERE u.op = 'update' AND u.batch_no = b AND o.order_id = u.order_id
                RETURNING o.customer_id, u.total_amount - u.old_amount AS d),
            agg AS (SELECT customer_id, sum(d) AS s FROM upd GROUP BY customer_id)
            UPDATE c360.customer_360 p
            SET lifetime_value = p.lifetime_value + agg.s,
                avg_order_value = (p.lifetime_value + agg.s) / p.total_orders
            FROM agg WHERE p.customer_id = agg.customer_id;
            lat[1][6] := extract(epoch FROM clock_timestamp() - t) * 1000;
            RAISE EXCEPTION USING ERRCODE = 'P0004';
        EXCEPTION WHEN assert_failure THEN NULL;
        END;
        INSERT INTO bench.results (phase, rows, seconds, batches, p50_ms, p99_ms, max_ms, note)
        SELECT 'ord_' || b || '_' || w, 0, lat[1][w] / 1000, 1, lat[1][w], NULL, NULL, NULL
        FROM generate_series(1, 6) w;
        COMMIT;
    END LOOP;
    PERFORM bench.snapshot_statements('orders');
END $$;
SQL

say "measuring: $NB rounds of COPY, apply inserts, UPDATE, apply updates, the floor"
q -c "CALL bench.orders_rounds($NB, '$DIR')" >/dev/null

say "checking: verify(), and the mirror against the bare table row for row"
VERIFY=$(q -At -c "SELECT count(*) FROM c360.verify()")
DIFF=$(q -At -c "SELECT count(*) FROM ((TABLE c360.orders EXCEPT TABLE bench.orders_bare)
                                        UNION ALL (TABLE bench.orders_bare EXCEPT TABLE c360.orders)) d")
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

q -At -v batch="$BATCH" -v load_start="$LOAD_START" -v load_end="$LOAD_END" \
    -v verify="$VERIFY" -v diff="$DIFF" -v customers="$CUSTOMERS" -v base_orders="$BASE_ORDERS" <<'SQL' | tee "$OUT/orders.txt"
WITH r AS (
    SELECT split_part(phase, '_', 3)::int AS way, percentile_cont(0.5) WITHIN GROUP (ORDER BY p50_ms) AS ms
    FROM bench.results WHERE phase ~ '^ord_[0-9]+_[0-9]$' GROUP BY 1),
w AS (SELECT way, ms, :batch * 1000 / ms AS rate FROM r)
SELECT format('Orders bench (%s; 2 cores; load %s -> %s)', now()::timestamptz(0), :'load_start', :'load_end')
UNION ALL SELECT format('  %s customers, %s base orders, batches of %s; per-batch medians, six ways in rotation',
                        :customers, :base_orders, :batch)
UNION ALL
SELECT format('  %-46s %8s ms %9s /s', (ARRAY['plain COPY into a bare orders table',
                                           'apply_changes, new orders (whole profile)',
                                           'plain UPDATE of the bare table',
                                           'apply_changes, order updates (whole profile)',
                                           'floor: INSERT + owners'' counters, one statement',
                                           'floor: UPDATE + owners'' sum and average'])[way],
              round(ms::numeric, 1), round(rate)) FROM w
UNION ALL
SELECT format('  inserts: apply_changes / COPY   %s  (target >= 0.35)',
              round(((SELECT rate FROM w WHERE way = 2) / (SELECT rate FROM w WHERE way = 1))::numeric, 3))
UNION ALL
SELECT format('  new orders: floor / COPY %s (the least any design that keeps the profile per batch writes)',
              round(((SELECT rate FROM w WHERE way = 5) / (SELECT rate FROM w WHERE way = 1))::numeric, 3))
UNION ALL
SELECT format('  updates: apply_changes / UPDATE %s  (target >= 0.35)',
              round(((SELECT rate FROM w WHERE way = 4) / (SELECT rate FROM w WHERE way = 3))::numeric, 3))
UNION ALL
SELECT format('  updates: floor / UPDATE %s; apply_changes / floor %s',
              round(((SELECT rate FROM w WHERE way = 6) / (SELECT rate FROM w WHERE way = 3))::numeric, 3),
              round(((SELECT rate FROM w WHERE way = 4) / (SELECT rate FROM w WHERE way = 6))::numeric, 3))
UNION ALL
SELECT format('  new orders: apply_changes / floor %s',
              round(((SELECT rate FROM w WHERE way = 2) / (SELECT rate FROM w WHERE way = 5))::numeric, 3))
UNION ALL
SELECT '  where the time goes (both apply ways, nested statements, ms per call):'
UNION ALL
SELECT format('    %8s ms x %s  %s', round((total_ms / calls)::numeric, 2), calls, label)
FROM (SELECT * FROM bench.statements WHERE phase = 'orders' ORDER BY total_ms DESC LIMIT 6) s
UNION ALL
SELECT format('  check: verify() %s rows; mirror vs bare table %s rows differ', :'verify', :'diff');
SQL
[ "$VERIFY" = 0 ] && [ "$DIFF" = 0 ] || { echo "orders bench: check failed" >&2; exit 1; }
