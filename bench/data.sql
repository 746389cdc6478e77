-- bench/data.sql: generate the bench's shop (untimed) into staging: the rows of every phase,
-- their JSON batches of :batch changes for c360.apply_changes, and the CSV files that the raw
-- COPY baselines load.  psql variables: customers, base_orders, base_events, events,
-- order_changes, batch, chunks, csv_prefix, floor_batches, and optionally load_batch (the
-- base phases' batch size, :batch unless set: a large one loads a big shop through the bulk
-- path).  Deterministic (setseed), serial so the seed holds.

\if :{?load_batch}
\else
\set load_batch :batch
\endif

SET max_parallel_workers_per_gather = 0;
SELECT setseed(0.36) \gset

-- The tick phase moves the clock from t0 to t0 + 1 hour.  One customer in 100 is planted to
-- cross a boundary in that hour, a quarter each way: its last order crosses 30, 90 or 365
-- days, or its oldest in-window event leaves the 30-day window.  k minutes past the boundary
-- (1..58) spreads them over the hour; everything else keeps clear of it (bench.off_band).
CREATE TABLE bench.planted AS
SELECT i, bench.customer(i) AS customer_id, (i / 100) % 4 AS kind,
       bench.t0() - make_interval(days => (ARRAY[30, 90, 365, 30])[(i / 100) % 4 + 1])
                  + make_interval(mins => 1 + ((i / 100) % 58)::int) AS at
FROM generate_series(100, :customers, 100) i;

CREATE TABLE bench.customers AS
SELECT i AS seq, bench.customer(i) AS customer_id,
       'user' || i || '@example.com' AS email,
       (ARRAY['Ana','Ben','Chloe','Dev','Emma','Farid','Gia','Hugo'])[1 + i % 8] AS first_name,
       (ARRAY['Smith','Garcia','Chen','Okafor','Novak','Silva'])[1 + i % 6] AS last_name,
       '+1555' || lpad(i::text, 7, '0') AS phone,
       (ARRAY['organic','paid_search','social','referral','email'])[1 + floor(random() * 5)::int] AS acquisition_channel,
       bench.t0() - random() * interval '1000 days' AS signup_date,
       (ARRAY['bronze','silver','gold','platinum',NULL])[1 + floor(random() * 5)::int] AS loyalty_tier,
       bench.t0() - random() * interval '100 days' AS last_updated
FROM generate_series(1, :customers) i;

-- Base orders over two years; a planted customer's orders all precede its planted last order.
CREATE TABLE bench.base_orders AS
WITH o AS (
    SELECT s AS seq, 1 + floor(random() * :customers)::bigint AS ci,
           bench.off_band(bench.t0() - random() * interval '730 days') AS created_at,
           random() AS r1, random() AS r2, random() AS r3, random() AS r4
    FROM generate_series(1, :base_orders) s)
SELECT o.seq, 'o' || lpad(o.seq::text, 8, '0') AS order_id, bench.customer(o.ci) AS customer_id,
       (ARRAY['delivered','shipped','pending','cancelled','returned'])[1 + floor(o.r1 * 5)::int] AS order_status,
       round((5 + o.r2 * 295)::numeric, 2) AS total_amount,
       1 + floor(o.r3 * 6)::int AS item_count,
       (ARRAY['web','mobile','store','marketplace'])[1 + floor(o.r4 * 4)::int] AS channel,
       CASE WHEN p.kind < 3 THEN least(o.created_at, p.at - interval '1 day') ELSE o.created_at END AS created_at
FROM o LEFT JOIN bench.planted p ON p.i = o.ci
UNION ALL
SELECT :base_orders + row_number() OVER (ORDER BY p.i), 'od' || p.i, p.customer_id, 'delivered',
       99.50, 2, 'web', p.at
FROM bench.planted p WHERE p.kind < 3;
ALTER TABLE bench.base_orders ADD COLUMN updated_at timestamptz;
UPDATE bench.base_orders SET updated_at = created_at;

-- Base events over 60 days; planted event customers get one event just past the boundary.
CREATE TABLE bench.base_events AS
SELECT s AS seq, 'e' || lpad(s::text, 9, '0') AS event_id, bench.customer(ci) AS customer_id,
       's' || ci || '-' || floor(random() * 4)::int AS session_id,
       (ARRAY['product_view','product_view','page_view','add_to_cart','purchase'])[1 + floor(random() * 5)::int] AS event_type,
       'p' || floor(random() * 5000)::int AS product_id,
       'k' || floor(random() * 50)::int AS category_id,
       bench.off_band(bench.t0() - random() * interval '60 days') AS event_time
FROM (SELECT s, 1 + floor(random() * :customers)::bigint AS ci
      FROM generate_series(1, :base_events) s) g
UNION ALL
SELECT :base_events + row_number() OVER (ORDER BY p.i), 'ed' || p.i, p.customer_id,
       's' || p.i || '-old', 'product_view', 'p1', 'k1', p.at
FROM bench.planted p WHERE p.kind = 3;

-- The measured events.
CREATE TABLE bench.new_events AS SELECT * FROM bench.draw_events('m', :events, :customers);

-- The floor phase's events (bench.floor), with their own ids; its batches are rolled back, so
-- they never reach the mirror.  Batch b goes to way (b - 1) % 5 + 1; the fifth way's events
-- come in visits of 10.
CREATE TABLE bench.floor_events AS
SELECT ((seq - 1) / :batch / 4) * 5 + (seq - 1) / :batch % 4 + 1 AS batch_no, *
FROM bench.draw_events('f', 4 * :floor_batches * :batch, :customers)
UNION ALL
SELECT ((seq - 1) / :batch) * 5 + 5, *
FROM bench.draw_events('v', :floor_batches * :batch, :customers, 10);
CREATE INDEX ON bench.floor_events (batch_no);

-- The measured order changes (bench.draw_order_changes).
CREATE TABLE bench.order_changes AS
SELECT * FROM bench.draw_order_changes(:order_changes, :customers, 'bench.base_orders');

-- JSON batches, built server-side so that no client formatting is ever timed.
INSERT INTO bench.batches
SELECT 'customers', (seq - 1) / :load_batch + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert',
                                    'new', to_jsonb(c) - 'seq') ORDER BY seq)::text
FROM bench.customers c GROUP BY 2;

INSERT INTO bench.batches
SELECT 'base_orders', (seq - 1) / :load_batch + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'orders', 'op', 'insert',
                                    'new', to_jsonb(o) - 'seq') ORDER BY seq)::text
FROM bench.base_orders o GROUP BY 2;

INSERT INTO bench.batches
SELECT 'base_events', (seq - 1) / :load_batch + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert',
                                    'new', to_jsonb(e) - 'seq') ORDER BY seq)::text
FROM bench.base_events e GROUP BY 2;

INSERT INTO bench.batches
SELECT 'events', (seq - 1) / :batch + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert',
                                    'new', to_jsonb(e) - 'seq') ORDER BY seq)::text
FROM bench.new_events e GROUP BY 2;

INSERT INTO bench.batches
SELECT 'orders', (seq - 1) / :batch + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'orders', 'op', op,
                                    'old', CASE WHEN op = 'update' THEN jsonb_build_object('order_id', order_id) END,
                                    'new', to_jsonb(o) - 'seq' - 'op') ORDER BY seq)::text
FROM bench.order_changes o GROUP BY 2;

INSERT INTO bench.batches
SELECT 'floor', batch_no, count(*),
       jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert',
                                    'new', to_jsonb(e) - 'seq' - 'batch_no') ORDER BY seq)::text
FROM bench.floor_events e GROUP BY 2;

-- The same rows as CSV for the COPY baselines, one file per chunk of batches (the measured
-- phases interleave COPY and apply chunk by chunk): the events, and the new images of the
-- order changes.
SELECT format('COPY (SELECT event_id, customer_id, session_id, event_type, product_id, category_id,
                            event_time
                     FROM bench.new_events WHERE (seq - 1) / %s + 1 BETWEEN %s AND %s ORDER BY seq)
               TO %L WITH (FORMAT csv)',
              :batch, bench.chunk_first(c, nb, :chunks), bench.chunk_first(c + 1, nb, :chunks) - 1,
              :'csv_prefix' || 'events_' || c || '.csv')
FROM generate_series(1, :chunks) c,
     (SELECT max(batch_no) AS nb FROM bench.batches WHERE phase = 'events') x \gexec

SELECT format('COPY (SELECT order_id, customer_id, order_status, total_amount, item_count, channel,
                            created_at, updated_at
                     FROM bench.order_changes WHERE (seq - 1) / %s + 1 BETWEEN %s AND %s ORDER BY seq)
               TO %L WITH (FORMAT csv)',
              :batch, bench.chunk_first(c, nb, :chunks), bench.chunk_first(c + 1, nb, :chunks) - 1,
              :'csv_prefix' || 'orders_' || c || '.csv')
FROM generate_series(1, :chunks) c,
     (SELECT max(batch_no) AS nb FROM bench.batches WHERE phase = 'orders') x \gexec

-- The floor phase's COPY way takes every fifth batch (bench.floor), one file each.
SELECT format('COPY (SELECT event_id, customer_id, session_id, event_type, product_id, category_id,
                            event_time
                     FROM bench.floor_events WHERE batch_no = %s ORDER BY seq)
               TO %L WITH (FORMAT csv)', b, :'csv_prefix' || 'floor_' || b || '.csv')
FROM generate_series(1, 5 * :floor_batches) b WHERE b % 5 = 1 \gexec

ANALYZE bench.batches;
