-- profile_columns: every column of c360.customer_360, for a fully populated customer and for
-- customers that leave every nullable column NULL (no data at all, and NULLs inside the data).
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
-- The profile without profile_updated_at (real clock) and next_change_at (bookkeeping).
CREATE TEMP VIEW profile AS
SELECT customer_id, email, first_name, last_name, loyalty_tier, acquisition_channel, signup_date,
       total_orders, lifetime_value, avg_order_value, first_order_date, last_order_date,
       last_order_status, preferred_channel, open_support_tickets, total_support_tickets,
       last_ticket_at, events_last_30d, product_views_last_30d, sessions_last_30d, last_active_at,
       lifecycle_stage, has_open_support_issue
FROM c360.customer_360;
SELECT c360.tick('2030-06-01 00:00+00');
SELECT c360.as_of(), c360.time_zone();

-- The profile relation has exactly the reference query's columns, in its order, plus the
-- maintainer's bookkeeping (profile_updated_at, next_change_at).  The view above shows the
-- reference columns only.
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type, attnotnull
FROM pg_attribute
WHERE attrelid = 'c360.customer_360'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;

-- A fully populated customer: every source contributes.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "full", "email": "ada@example.com",
     "first_name": "Ada", "last_name": "Lovelace", "phone": "+44 20 0000", "acquisition_channel": "referral",
     "signup_date": "2029-01-15 09:30:00+00", "loyalty_tier": "gold", "last_updated": "2030-05-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o1", "customer_id": "full", "order_status": "delivered",
     "total_amount": 10.50, "item_count": 1, "channel": "web", "created_at": "2030-01-10 12:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o2", "customer_id": "full", "order_status": "delivered",
     "total_amount": "20.25", "item_count": 2, "channel": "app", "created_at": "2030-03-10 12:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o3", "customer_id": "full", "order_status": "shipped",
     "total_amount": 5, "item_count": 3, "channel": "app", "created_at": "2030-05-20 08:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t1", "customer_id": "full", "status": "open",
     "category": "billing", "created_at": "2030-05-02 10:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t2", "customer_id": "full", "status": "resolved",
     "category": "shipping", "created_at": "2030-04-02 10:00+00", "resolved_at": "2030-04-03 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "full", "session_id": "s1",
     "event_type": "product_view", "product_id": "p1", "category_id": "c1", "event_time": "2030-05-30 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "full", "session_id": "s1",
     "event_type": "add_to_cart", "product_id": "p1", "event_time": "2030-05-30 10:05+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e3", "customer_id": "full", "session_id": "s2",
     "event_type": "product_view", "product_id": "p2", "event_time": "2030-05-31 18:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e4", "customer_id": "full", "session_id": "s0",
     "event_type": "product_view", "event_time": "2030-04-01 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
-- Expect: 3 orders, lifetime 35.75, avg 11.9166..., last status 'shipped', channel 'app' (2 of 3),
-- 1 open of 2 tickets, 3 events / 2 product views / 2 sessions in the last 30 days (e4 is older),
-- last_active_at = e3, stage active (last order 12 days ago).
SELECT * FROM profile WHERE customer_id = 'full' \gx

-- A customer with nothing but a key: every nullable profile column is NULL, the counters 0,
-- the stage 'prospect'.
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "bare"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM profile WHERE customer_id = 'bare' \gx

-- Explicit JSON nulls are NULLs too.
SELECT c360.apply_change('customers', 'insert', NULL,
  '{"customer_id": "nulls", "email": null, "first_name": null, "last_name": null, "phone": null,
    "acquisition_channel": null, "signup_date": null, "loyalty_tier": null, "last_updated": null}');
SELECT count(*) AS diffs FROM c360.verify();

-- NULLs inside the inputs: orders with NULL amount, status, channel and created_at; a ticket
-- with NULL status and created_at; events with NULL session and type.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "n1", "customer_id": "nulls"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "n2", "customer_id": "nulls", "total_amount": null,
     "order_status": null, "channel": null, "created_at": null}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "nt1", "customer_id": "nulls"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "ne1", "customer_id": "nulls",
     "event_time": "2030-05-31 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "ne2", "customer_id": "nulls",
     "session_id": null, "event_type": null, "event_time": "2030-05-31 01:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
-- Expect: 2 orders but lifetime_value 0 and avg 0 (sum/avg of NULLs), no order dates, status or
-- channel, hence 'prospect'; 1 ticket, not open; 2 events, 0 product views, 0 sessions.
SELECT * FROM profile WHERE customer_id = 'nulls' \gx

-- One priced order among NULL-priced ones: sum and avg ignore the NULLs; the dates come from
-- it; last_order_status stays NULL, as the undated orders sort first under created_at DESC
-- (see ties.sql).
SELECT c360.apply_change('orders', 'insert', NULL,
  '{"order_id": "n3", "customer_id": "nulls", "total_amount": 7.5, "channel": "store", "created_at": "2030-02-01 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, total_orders, lifetime_value, avg_order_value, first_order_date, last_order_date,
       last_order_status, preferred_channel, lifecycle_stage
FROM c360.customer_360 WHERE customer_id = 'nulls';

-- Mirror rows without a customer row make no profile row; the customer row brings them in.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "x1", "customer_id": "late", "total_amount": 3,
     "order_status": "placed", "channel": "web", "created_at": "2030-05-31 00:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "xt1", "customer_id": "late", "status": "open",
     "created_at": "2030-05-31 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "xe1", "customer_id": "late", "session_id": "ls",
     "event_type": "product_view", "event_time": "2030-05-31 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT count(*) AS late_rows FROM c360.customer_360 WHERE customer_id = 'late';
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "late", "email": "late@example.com"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, email, total_orders, lifetime_value, open_support_tickets, has_open_support_issue,
       events_last_30d, product_views_last_30d, sessions_last_30d, lifecycle_stage
FROM c360.customer_360 WHERE customer_id = 'late';

-- Numeric scale is kept exactly as sent (verify compares values as text).  The last order is
-- exactly 30 days old: no longer 'active'.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "scale"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "sc1", "customer_id": "scale", "total_amount": 1.10,
     "created_at": "2030-05-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "sc2", "customer_id": "scale", "total_amount": "2.200",
     "created_at": "2030-05-02 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, lifetime_value, avg_order_value FROM c360.customer_360 WHERE customer_id = 'scale';

-- Extreme values: NaN and infinite amounts, infinite timestamps (an order at +infinity is
-- active forever, an event at +infinity is in every window, one at -infinity in none), ids
-- with quotes and non-ASCII letters, an empty session id (a session like any other).
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "inf", "signup_date": "-infinity"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "i1", "customer_id": "inf", "total_amount": "NaN",
     "created_at": "infinity"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "i2", "customer_id": "inf", "total_amount": "Infinity",
     "created_at": "-infinity"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "minf"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "i3", "customer_id": "minf", "total_amount": "-Infinity",
     "created_at": "-infinity"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "ie1", "customer_id": "minf", "event_time": "infinity"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "ie2", "customer_id": "minf", "event_time": "-infinity"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "Zoë 'quoted' \"id\"", "first_name": "Zoë"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "ie3", "customer_id": "Zoë 'quoted' \"id\"",
     "session_id": "", "event_type": "product_view", "event_time": "2030-05-31 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, first_name, signup_date, total_orders, lifetime_value, avg_order_value, first_order_date,
       last_order_date, events_last_30d, sessions_last_30d, last_active_at, lifecycle_stage
FROM profile WHERE customer_id IN ('inf', 'minf') OR first_name = 'Zoë' ORDER BY customer_id;

-- The whole profile at the end; a full rebuild finds nothing to change.
SELECT customer_id, email, loyalty_tier, total_orders, lifetime_value, last_order_status, preferred_channel,
       open_support_tickets, total_support_tickets, events_last_30d, sessions_last_30d, lifecycle_stage,
       has_open_support_issue
FROM c360.customer_360 ORDER BY customer_id;
SELECT c360.rebuild() AS rows_changed_by_rebuild;
SELECT count(*) AS diffs FROM c360.verify();
