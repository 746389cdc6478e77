-- bench/explain.sql: the actual plans (auto_explain, ANALYZE + BUFFERS) of the maintainer's
-- nested statements for one more events batch, one more orders batch and a one-day tick, all
-- of the bench's shape and all rolled back, so the measured state is untouched.  Run by
-- bench/run.sh after the timed phases; output in bench/out/explain.txt.

SET max_parallel_workers_per_gather = 0;
SELECT setseed(0.5) \gset
SELECT count(*) AS customers FROM c360.customers \gset

-- Seven batches of each kind, on different customers and orders: six warm the plan cache
-- (a source worker runs thousands of batches per backend, so after five executions the
-- plan cache may have switched to generic plans), the seventh is explained.  Distinct keys
-- keep the rolled-back warm-ups' dead index entries away from the explained batch.
CREATE TEMP TABLE ex (kind text, n int, batch jsonb);

INSERT INTO ex
SELECT 'events', (s - 1) / 1000 + 1,
       jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new',
           jsonb_build_object('event_id', 'x' || s,
                              'customer_id', bench.customer(1 + floor(random() * :customers)::int),
                              'session_id', 'sx' || s % 300, 'event_type', 'product_view',
                              'product_id', 'p1', 'category_id', 'k1',
                              'event_time', c360.as_of() - random() * interval '29 days')))
FROM generate_series(1, 7000) s GROUP BY 2;

INSERT INTO ex
SELECT 'orders', n, jsonb_agg(c ORDER BY random()) FROM (
    SELECT (s - 1) / 500 + 1 AS n,
           jsonb_build_object('input', 'orders', 'op', 'insert', 'new',
               jsonb_build_object('order_id', 'x' || s,
                                  'customer_id', bench.customer(1 + floor(random() * (:customers - 1))::int),
                                  'order_status', 'pending', 'total_amount', 10.5, 'item_count', 1,
                                  'channel', 'web', 'created_at', c360.as_of() - interval '1 day',
                                  'updated_at', c360.as_of())) AS c
    FROM generate_series(1, 3500) s
    UNION ALL
    SELECT (row_number() OVER () - 1) / 500 + 1,
           jsonb_build_object('input', 'orders', 'op', 'update',
               'old', jsonb_build_object('order_id', order_id),
               'new', to_jsonb(o) || jsonb_build_object('order_status', 'returned'))
    FROM (SELECT * FROM c360.orders ORDER BY random() LIMIT 3500) o) x
GROUP BY n;

-- Each warm-up runs in a subtransaction that the raised error rolls back.
DO $$
BEGIN
    FOR i IN 1..6 LOOP
        BEGIN
            PERFORM c360.apply_changes(batch) FROM ex WHERE kind = 'events' AND n = i;
            PERFORM c360.apply_changes(batch) FROM ex WHERE kind = 'orders' AND n = i;
            RAISE EXCEPTION USING ERRCODE = 'P0004';
        EXCEPTION WHEN assert_failure THEN
            NULL;
        END;
    END LOOP;
END
$$;

BEGIN;
LOAD 'auto_explain';
SET LOCAL auto_explain.log_min_duration = 0;
SET LOCAL auto_explain.log_analyze = on;
SET LOCAL auto_explain.log_buffers = on;
SET LOCAL auto_explain.log_nested_statements = on;
SET LOCAL auto_explain.log_level = notice;
SET LOCAL client_min_messages = notice;

\echo ==================== one events batch (1000 inserts) ====================
SAVEPOINT w;
SELECT c360.apply_changes(batch) FROM ex WHERE kind = 'events' AND n = 7;
ROLLBACK TO w;
\echo ==================== one orders batch (500 inserts, 500 updates) ====================
SAVEPOINT w;
SELECT c360.apply_changes(batch) FROM ex WHERE kind = 'orders' AND n = 7;
ROLLBACK TO w;
\echo ==================== a tick of one more day ====================
SAVEPOINT w;
SELECT c360.tick(c360.as_of() + interval '1 day');
ROLLBACK TO w;
ROLLBACK;
