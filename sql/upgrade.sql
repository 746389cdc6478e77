-- upgrade: a database created at version 0.1 with live data is updated with ALTER EXTENSION
-- customer360 UPDATE (through 0.2 to 0.3); the profile stays exact, the data stays, the later
-- versions' features work, and the updated extension has exactly the objects of a fresh
-- install.  The library serves every version (a 0.1 database has no tombstones to check).
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
CREATE TEMP TABLE fresh AS
SELECT pg_describe_object(classid, objid, 0) AS object
FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'customer360')
  AND deptype = 'e';
CREATE TEMP TABLE fresh_options AS
SELECT relname, reloptions FROM pg_class
WHERE relnamespace = 'c360'::regnamespace AND reloptions IS NOT NULL;
SET client_min_messages = warning;
DROP EXTENSION customer360;
CREATE EXTENSION customer360 VERSION '0.1';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'customer360';
SELECT c360.tick('2030-06-01 00:00+00');

SELECT c360.apply_changes('[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c1", "email": "c1@example.com", "loyalty_tier": "gold", "signup_date": "2029-01-01 00:00+00"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c2", "email": "c2@example.com", "loyalty_tier": "silver", "signup_date": "2029-02-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o1", "customer_id": "c1", "order_status": "delivered", "total_amount": 120, "channel": "web", "created_at": "2030-03-01 10:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o2", "customer_id": "c2", "order_status": "shipped", "total_amount": 30, "channel": "app", "created_at": "2030-05-20 10:00+00"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i1", "customer_id": "c1", "identity_type": "cookie", "identity_value": "ck1"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "ck1", "session_id": "s1", "event_type": "product_view", "event_time": "2030-05-31 10:00+00"}}
]');
SELECT c360.apply_change('behavioral_events', 'insert', NULL, '{"event_id": "e2", "customer_id": "c2", "session_id": "s2", "event_type": "page_view", "event_time": "2030-05-31 11:00+00"}');
SELECT c360.create_segment('gold', $$loyalty_tier = 'gold'$$);
CREATE TEMP TABLE before AS SELECT * FROM c360.customer_360;
SELECT * FROM c360.verify();
-- sources past their snapshot (paused: no worker runs here); 0.4 marks their tables copied
INSERT INTO c360.sources (name, kind, enabled, phase, resume_phase) VALUES
    ('up_streaming', 'mysql-cdc', false, 'streaming', NULL),
    ('up_failed', 'mysql-cdc', false, 'error', 'streaming'),
    ('up_failed_early', 'mysql-cdc', false, 'error', 'snapshot'),
    ('up_new', 'mysql-cdc', false, 'snapshot', NULL);
INSERT INTO c360.source_tables (source, remote, input)
SELECT name, 'crm_db.customers', 'customers' FROM c360.sources;

ALTER EXTENSION customer360 UPDATE;
SELECT source, quote_nullable(snapshot_position) AS snapshot_position FROM c360.source_tables ORDER BY 1;
-- a table mapped now waits for its copy; mapped again to the same input it stays copied
SELECT c360.map_table('up_streaming', 'crm_db.support_tickets', 'support_tickets');
SELECT c360.map_table('up_streaming', 'crm_db.customers', 'customers');
SELECT remote, input, quote_nullable(snapshot_position) AS snapshot_position FROM c360.source_tables WHERE source = 'up_streaming' ORDER BY 1;
DELETE FROM c360.sources WHERE name LIKE 'up\_%';
SELECT extversion FROM pg_extension WHERE extname = 'customer360';
SELECT * FROM c360.verify();
-- the same profile rows, bookkeeping and all
-- (0.11 adds next_change_at's parts; without traits the article's part is next_change_at)
CREATE TEMP VIEW after AS
SELECT to_jsonb(p) - 'article_change_at' - 'traits_change_at' AS r FROM c360.customer_360 p;
SELECT count(*) AS changed FROM ((SELECT to_jsonb(b) FROM before b EXCEPT TABLE after)
                                 UNION ALL (TABLE after EXCEPT SELECT to_jsonb(b) FROM before b)) d;
SELECT count(*) AS parts_apart FROM c360.customer_360
WHERE article_change_at IS DISTINCT FROM next_change_at OR traits_change_at IS NOT NULL;
DROP VIEW after;
SELECT segment, customer_id FROM c360.segment_members ORDER BY 1, 2;
-- the same objects as a fresh install
SELECT object AS missing_after_update FROM fresh
EXCEPT SELECT pg_describe_object(classid, objid, 0) FROM pg_depend
WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'customer360') AND deptype = 'e';
SELECT pg_describe_object(classid, objid, 0) AS extra_after_update FROM pg_depend
WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'customer360') AND deptype = 'e'
EXCEPT SELECT object FROM fresh;
-- and the same storage options (0.3: the profile's fillfactor; 0.12: the updated mirrors')
SELECT relname, reloptions FROM pg_class
WHERE relnamespace = 'c360'::regnamespace AND reloptions IS NOT NULL ORDER BY 1;
(SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'c360'::regnamespace AND reloptions IS NOT NULL
 EXCEPT TABLE fresh_options) UNION ALL
(TABLE fresh_options EXCEPT SELECT relname, reloptions FROM pg_class
 WHERE relnamespace = 'c360'::regnamespace AND reloptions IS NOT NULL);

-- the updated database works: events by difference, changes, erase, tombstones, ticks
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o3", "customer_id": "c2", "order_status": "delivered", "total_amount": 10, "channel": "app", "created_at": "2030-05-31 10:00+00"}');
SELECT c360.apply_changes('[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e3", "customer_id": "c2", "session_id": "s2", "event_type": "product_view", "event_time": "2030-05-31 12:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e4", "customer_id": "c2", "session_id": "s3", "event_type": "page_view", "event_time": "2030-05-31 13:00+00"}}
]');
SELECT customer_id, events_last_30d, product_views_last_30d, sessions_last_30d, last_active_at
FROM c360.customer_360 WHERE customer_id = 'c2';
SELECT * FROM c360.verify();
SELECT c360.erase_customer('c1');
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o4", "customer_id": "c1", "total_amount": 10}');
SELECT late_dropped FROM c360.erased;
SELECT c360.tick('2030-07-01 00:00+00') >= 0 AS ticked;
SELECT customer_id, total_orders, lifecycle_stage FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();

-- 0.5's computed traits on the updated database with its data: computed at once, kept
-- through changes and ticks, gone with drop_trait
SELECT c360.create_trait('orders_90d', 'orders', 'count(*)', lookback => '90 days');
SELECT c360.create_trait('last_event_type', 'behavioral_events',
                         '(array_agg(event_type ORDER BY event_time DESC))[1]');
SELECT customer_id, orders_90d, last_event_type FROM c360.customer_360 ORDER BY 1;
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o5", "customer_id": "c2", "total_amount": 3, "created_at": "2030-06-30 10:00+00"}');
SELECT c360.tick('2030-09-27 00:00+00') >= 0 AS ticked;
SELECT customer_id, orders_90d, last_event_type FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
SELECT c360.drop_trait('orders_90d');
SELECT count(*) AS orders_90d_columns FROM pg_attribute
WHERE attrelid = 'c360.customer_360'::regclass AND attname = 'orders_90d' AND NOT attisdropped;
SELECT * FROM c360.verify();

-- 0.6's inputs of your own on the updated database: the catalog lists the built-in five, an
-- input of one's own takes changes and a trait, and goes with drop_input
SELECT name, key, customer_column, time_column FROM c360.inputs WHERE builtin ORDER BY name;
SELECT c360.create_input('refunds', 'refund_id text, customer_id text, amount numeric, created_at timestamptz',
                         'refund_id', 'customer_id', 'created_at');
SELECT c360.apply_change('refunds', 'insert', NULL, '{"refund_id": "f1", "customer_id": "c2", "amount": 4, "created_at": "2030-09-01 00:00+00"}');
SELECT c360.create_trait('refunded', 'refunds', 'sum(amount)', lookback => '30 days');
SELECT customer_id, refunded FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
SELECT c360.drop_trait('refunded'), c360.drop_input('refunds');
SELECT to_regclass('c360.refunds') AS refunds_mirror;

-- 0.7's profile column catalog on the updated database: the article's columns are its
-- built-in entries, and verify() and reference_profile() run queries generated from it.
SELECT name, input, aggregate, filter, lookback FROM c360.profile_columns WHERE builtin;
SELECT count(*) AS reference_rows FROM c360.reference_profile(c360.as_of());
UPDATE c360.customer_360 SET lifecycle_stage = 'churned', sessions_last_30d = 7;
SELECT column_name, profile_value, reference_value FROM c360.verify() ORDER BY 1, 2;
SELECT c360.rebuild() > 0 AS rebuilt;
SELECT * FROM c360.verify();

-- 0.8: the profile's indexes, without (lifecycle_stage, sessions_last_30d)
SELECT indexrelid::regclass::text AS profile_index FROM pg_index
WHERE indrelid = 'c360.customer_360'::regclass ORDER BY 1;

-- 0.9: orders by difference, on the order mirror's new indexes; an order with a NULL
-- amount makes its customer's average inexact by difference, so that one is recomputed
SELECT indexrelid::regclass::text AS order_index, pg_get_indexdef(indexrelid) LIKE '%WHERE%' AS partial
FROM pg_index WHERE indrelid = 'c360.orders'::regclass ORDER BY 1;
SELECT c360.apply_changes('[{"input": "orders", "op": "insert", "new": {"order_id": "up9a", "customer_id": "c2", "total_amount": 10.5, "channel": "web", "created_at": "2030-09-02 00:00+00"}},
                            {"input": "orders", "op": "insert", "new": {"order_id": "up9b", "customer_id": "c2", "total_amount": null, "channel": "app", "created_at": "2030-09-03 00:00+00"}}]');
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "up9c", "customer_id": "c2", "total_amount": 3.25, "channel": "app", "created_at": "2030-09-04 00:00+00"}');
SELECT customer_id, total_orders, lifetime_value, avg_order_value, preferred_channel, last_order_date
FROM c360.customer_360 WHERE customer_id = 'c2';
SELECT * FROM c360.verify();

-- 0.10: the event mirror's indexes, without (customer_id, event_time); its readers (a
-- recount, the latest event, windowed event traits) go through the session index
SELECT indexrelid::regclass::text AS event_index FROM pg_index
WHERE indrelid = 'c360.behavioral_events'::regclass ORDER BY 1;
SELECT c360.create_trait('views_7d', 'behavioral_events', 'count(*)', $$event_type = 'product_view'$$, '7 days');
SELECT c360.apply_changes('[{"input": "behavioral_events", "op": "insert", "new": {"event_id": "up10a", "customer_id": "c2", "session_id": "s9", "event_type": "product_view", "event_time": "2030-09-26 10:00+00"}},
                            {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i10", "customer_id": "c2", "identity_type": "cookie", "identity_value": "ck2"}},
                            {"input": "behavioral_events", "op": "insert", "new": {"event_id": "up10b", "customer_id": "ck2", "session_id": "s9", "event_type": "product_view", "event_time": "2030-09-26 11:00+00"}}]');
SELECT customer_id, events_last_30d, sessions_last_30d, last_active_at, views_7d
FROM c360.customer_360 ORDER BY 1;
SELECT c360.tick('2030-10-03 10:30+00');
SELECT customer_id, events_last_30d, sessions_last_30d, last_active_at, views_7d
FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
SELECT c360.drop_trait('views_7d');

-- 0.11: next_change_at's parts.  A database at 0.10 with windowed traits and data, updated:
-- each input's part is computed, and next_change_at includes the traits' windows.
SET client_min_messages = warning;
DROP EXTENSION customer360;
CREATE EXTENSION customer360 VERSION '0.10';
RESET client_min_messages;
SELECT c360.tick('2031-01-10 00:00+00');
SELECT c360.apply_changes('[
  {"input": "customers", "op": "insert", "new": {"customer_id": "u1"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "u2"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "uo1", "customer_id": "u1", "total_amount": 5, "created_at": "2031-01-05 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "ue1", "customer_id": "u2", "session_id": "s1", "event_type": "add_to_cart", "event_time": "2031-01-09 12:00+00"}}
]');
SELECT c360.create_trait('orders_7d', 'orders', 'count(*)', lookback => '7 days');
SELECT c360.create_trait('carts_1d', 'behavioral_events', 'count(*)', $$event_type = 'add_to_cart'$$, '1 day');
ALTER EXTENSION customer360 UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'customer360';
SELECT customer_id, next_change_at, article_change_at, traits_change_at,
       orders_traits_change_at, behavioral_events_traits_change_at
FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
-- the parts follow changes, ticks and drop_trait
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "uo2", "customer_id": "u2", "total_amount": 1, "created_at": "2031-01-09 00:00+00"}');
SELECT c360.tick('2031-01-10 12:00+00');
SELECT customer_id, next_change_at, traits_change_at FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
SELECT c360.drop_trait('orders_7d');
SELECT customer_id, next_change_at, traits_change_at FROM c360.customer_360 ORDER BY 1;
SELECT count(*) AS orders_part_columns FROM pg_attribute
WHERE attrelid = 'c360.customer_360'::regclass AND attname = 'orders_traits_change_at' AND NOT attisdropped;
SELECT * FROM c360.verify();
-- a trait may not take a part's name, nor a part a trait's
SELECT c360.create_trait('behavioral_events_traits_change_at', 'behavioral_events', 'count(*)');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('support_tickets_traits_change_at', 'orders', 'count(*)');
SELECT c360.create_trait('tickets_7d', 'support_tickets', 'count(*)', lookback => '7 days');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.drop_trait('support_tickets_traits_change_at');
SELECT * FROM c360.verify();
