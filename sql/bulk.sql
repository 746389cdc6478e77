-- bulk: batches that dirty 5,000 customers or more are planned for their size (a snapshot's,
-- a rebuild's).  New profiles, orders for customers with a stored profile (their stored
-- behaviour kept), the same with events and links for some of them (their behaviour
-- recounted), deletes, a rebuild and a tick: verify() is empty after each.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SELECT c360.tick('2030-06-01 00:00+00');

-- 6,000 new customers, each with an order and two events, in one batch
SELECT c360.apply_changes(jsonb_agg(c)) FROM (
  SELECT jsonb_build_object('input', 'customers', 'op', 'insert', 'new',
           jsonb_build_object('customer_id', 'b' || g, 'email', 'b' || g || '@example.com',
                              'signup_date', '2029-01-01')) AS c
  FROM generate_series(1, 6000) g
  UNION ALL
  SELECT jsonb_build_object('input', 'orders', 'op', 'insert', 'new',
           jsonb_build_object('order_id', 'o' || g, 'customer_id', 'b' || g, 'order_status', 'paid',
                              'total_amount', g % 97, 'channel', 'web',
                              'created_at', timestamptz '2030-05-01' - g * interval '1 hour'))
  FROM generate_series(1, 6000) g
  UNION ALL
  SELECT jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new',
           jsonb_build_object('event_id', 'e' || g || '-' || k, 'customer_id', 'b' || g,
                              'session_id', 's' || g, 'event_type', 'product_view',
                              'event_time', timestamptz '2030-05-31' - (g + k) * interval '7 minutes'))
  FROM generate_series(1, 6000) g, generate_series(1, 2) k) x;
SELECT count(*) AS profiles, sum(total_orders) AS orders, sum(events_last_30d) AS events,
       sum(sessions_last_30d) AS sessions
FROM c360.customer_360;
SELECT count(*) AS diffs FROM c360.verify();

-- a second order for every customer: order columns change, stored behaviour stays
SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'orders', 'op', 'insert', 'new',
         jsonb_build_object('order_id', 'p' || g, 'customer_id', 'b' || g, 'order_status', 'shipped',
                            'total_amount', 10, 'channel', 'store',
                            'created_at', timestamptz '2030-05-20' + g * interval '1 second'))))
FROM generate_series(1, 6000) g;
SELECT sum(total_orders) AS orders, count(*) FILTER (WHERE last_order_status = 'shipped') AS shipped,
       sum(events_last_30d) AS events
FROM c360.customer_360;
SELECT count(*) AS diffs FROM c360.verify();

-- orders for all, and in the same batch events for some and a cookie linked to one:
-- those customers' behaviour is recounted, the others' kept
SELECT c360.apply_changes(jsonb_agg(c)) FROM (
  SELECT jsonb_build_object('input', 'orders', 'op', 'update', 'new',
           jsonb_build_object('order_id', 'p' || g, 'total_amount', 20)) AS c
  FROM generate_series(1, 6000) g
  UNION ALL
  SELECT jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new',
           jsonb_build_object('event_id', 'f' || g, 'customer_id', 'b' || g, 'session_id', 'new-' || g,
                              'event_type', 'page_view', 'event_time', '2030-05-30'))
  FROM generate_series(1, 6000, 100) g
  UNION ALL
  SELECT jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new',
           jsonb_build_object('event_id', 'ck' || k, 'customer_id', 'cookie-1', 'session_id', 'cs',
                              'event_type', 'product_view', 'event_time', '2030-05-29'))
  FROM generate_series(1, 3) k
  UNION ALL
  SELECT jsonb_build_object('input', 'identity_graph', 'op', 'insert', 'new',
           jsonb_build_object('identity_id', 'i1', 'customer_id', 'b7', 'identity_type', 'cookie',
                              'identity_value', 'cookie-1', 'created_at', '2030-05-01'))) x;
SELECT customer_id, total_orders, lifetime_value, events_last_30d, product_views_last_30d,
       sessions_last_30d
FROM c360.customer_360 WHERE customer_id IN ('b1', 'b2', 'b7', 'b101') ORDER BY customer_id;
SELECT count(*) AS diffs FROM c360.verify();

-- 5,000 customers deleted in one batch: their profile rows go
SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'delete', 'old',
         jsonb_build_object('customer_id', 'b' || g))))
FROM generate_series(1001, 6000) g;
SELECT count(*) AS profiles FROM c360.customer_360;
SELECT count(*) AS diffs FROM c360.verify();

-- a rebuild of every profile distrusts the stored behaviour
UPDATE c360.customer_360 SET events_last_30d = events_last_30d + 1 WHERE customer_id = 'b5';
SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert', 'new',
         jsonb_build_object('customer_id', 'n' || g))))
FROM generate_series(1, 5000) g;
SELECT count(*) AS diffs FROM c360.verify();
SELECT c360.rebuild() > 0 AS rebuilt;
SELECT count(*) AS profiles, sum(events_last_30d) AS events FROM c360.customer_360;
SELECT count(*) AS diffs FROM c360.verify();

-- a tick that moves every event out of the window: 6,000 raw ids' behaviour at once
SELECT c360.tick('2030-07-15 00:00+00') > 0 AS ticked;
SELECT count(*) AS profiles, count(*) FILTER (WHERE events_last_30d > 0) AS active,
       count(*) FILTER (WHERE lifecycle_stage = 'active') AS stage_active
FROM c360.customer_360;
SELECT count(*) AS diffs FROM c360.verify();

-- a rebuild in chunks of 700 customers (c360.rebuild_chunk), one transaction: profile rows
-- wrong at a chunk's first and last customer, and rows of customers no longer in the
-- mirror before the first customer, between two chunks and after the last one, go or
-- come right; then the whole profile from scratch
SET c360.rebuild_chunk = 700;
INSERT INTO c360.customer_360
SELECT (jsonb_populate_record(p, jsonb_build_object('customer_id', x.id))).*
FROM c360.customer_360 p, (VALUES ('a0'), ('b4x'), ('zz')) x(id) WHERE p.customer_id = 'b1';
UPDATE c360.customer_360 SET total_orders = total_orders + 5
WHERE customer_id IN (SELECT customer_id FROM c360.customers ORDER BY customer_id OFFSET 699 LIMIT 2);
SELECT count(*) AS diffs FROM c360.verify();
SELECT c360.rebuild() AS rebuilt;
SELECT count(*) AS profiles FROM c360.customer_360;
SELECT count(*) AS diffs FROM c360.verify();
DELETE FROM c360.customer_360;
SELECT c360.rebuild() AS rebuilt, count(*) AS customers FROM c360.customers;
SELECT count(*) AS diffs FROM c360.verify();
RESET c360.rebuild_chunk;
