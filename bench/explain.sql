-- bench/explain.sql: the actual plans (auto_explain, ANALYZE + BUFFERS) of the maintainer's
-- nested statements for one more events batch and one more orders batch of the bench's
-- shape, rolled back so the measured state is untouched.  Run by bench/run.sh after the
-- timed phases; output in bench/out/explain.txt.

SET max_parallel_workers_per_gather = 0;
SELECT count(*) AS customers FROM c360.customers \gset
SELECT setseed(0.5) \gset

SELECT jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new',
           jsonb_build_object('event_id', 'x' || s, 'customer_id', bench.customer(1 + floor(random() * :customers)::int),
                              'session_id', 'sx' || s % 300, 'event_type', 'product_view',
                              'product_id', 'p1', 'category_id', 'k1',
                              'event_time', c360.as_of() - random() * interval '29 days')))::text AS ev_batch
FROM generate_series(1, 1000) s \gset

SELECT jsonb_agg(c ORDER BY random())::text AS ord_batch FROM (
    SELECT jsonb_build_object('input', 'orders', 'op', 'insert', 'new',
               jsonb_build_object('order_id', 'x' || s, 'customer_id', bench.customer(1 + floor(random() * (:customers - 1))::int),
                                  'order_status', 'pending', 'total_amount', 10.5, 'item_count', 1,
                                  'channel', 'web', 'created_at', c360.as_of() - interval '1 day',
                                  'updated_at', c360.as_of())) AS c
    FROM generate_series(1, 500) s
    UNION ALL
    SELECT jsonb_build_object('input', 'orders', 'op', 'update',
               'old', jsonb_build_object('order_id', order_id),
               'new', to_jsonb(o) || jsonb_build_object('order_status', 'returned'))
    FROM (SELECT * FROM c360.orders ORDER BY random() LIMIT 500) o) x \gset

\o /dev/null
BEGIN;
-- A source worker applies thousands of batches per backend: after five executions the plan
-- cache may switch to generic plans.  Warm it the same way before looking.
SAVEPOINT w; SELECT c360.apply_changes(:'ev_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ev_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ev_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ev_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ev_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ev_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ord_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ord_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ord_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ord_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ord_batch'::jsonb); ROLLBACK TO w;
SAVEPOINT w; SELECT c360.apply_changes(:'ord_batch'::jsonb); ROLLBACK TO w;

\o
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
SET client_min_messages = notice;

\echo ==================== one events batch (1000 inserts) ====================
SAVEPOINT w; SELECT c360.apply_changes(:'ev_batch'::jsonb); ROLLBACK TO w;
\echo ==================== one orders batch (500 inserts, 500 updates) ====================
SAVEPOINT w; SELECT c360.apply_changes(:'ord_batch'::jsonb); ROLLBACK TO w;
\echo ==================== a tick of one more day ====================
SAVEPOINT w; SELECT c360.tick(c360.as_of() + interval '1 day'); ROLLBACK TO w;
ROLLBACK;
