-- traits: computed traits (c360.create_trait), users' own profile columns.  Every aggregate
-- form with and without filter and lookback; ties and NULLs; event traits through identity
-- links moved and deleted; expiry on ticks at the microsecond boundary and across a DST
-- change; every bad definition with its SQLSTATE; drop_trait and its refusals; a segment on a
-- trait.  verify() (which compares each ready trait with its reference) after each step.
SET client_min_messages = warning;
SET TimeZone = 'America/New_York';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-01-01 00:00+00');

SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "a", "loyalty_tier": "gold", "signup_date": "2029-06-01 00:00+00"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "b", "loyalty_tier": "silver", "signup_date": "2029-12-20 00:00+00"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "n"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "a1", "customer_id": "a", "order_status": "delivered", "total_amount": 10.50, "item_count": 1, "channel": "web", "created_at": "2029-12-30 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "a2", "customer_id": "a", "order_status": "shipped", "total_amount": 20, "item_count": 3, "channel": "app", "created_at": "2029-12-30 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "a3", "customer_id": "a", "order_status": "returned", "total_amount": null, "item_count": null, "channel": "web", "created_at": "2029-06-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "b1", "customer_id": "b", "order_status": "placed", "total_amount": 5, "item_count": 2, "channel": "app", "created_at": "2029-12-31 12:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t1", "customer_id": "a", "status": "open", "category": "billing", "created_at": "2029-12-29 00:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t2", "customer_id": "b", "status": "closed", "category": "shipping", "created_at": "2029-11-01 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "a", "session_id": "s1", "event_type": "add_to_cart", "product_id": "p1", "category_id": "toys", "event_time": "2029-12-31 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "a", "session_id": "s1", "event_type": "product_view", "product_id": "p2", "category_id": "books", "event_time": "2029-12-31 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e3", "customer_id": "cookie", "session_id": "s9", "event_type": "add_to_cart", "product_id": "p2", "category_id": "books", "event_time": "2029-12-25 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e4", "customer_id": "b", "session_id": "s2", "event_type": "product_view", "product_id": "p3", "category_id": "toys", "event_time": "2029-10-01 00:00+00"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i1", "customer_id": "a", "identity_type": "cookie", "identity_value": "cookie", "created_at": "2029-12-01 00:00+00"}}
]$$);

-- Every form.  Orders: count(*), count(expr), sum, avg, min, max, bool_or, bool_and, mode,
-- first/last value (tie between a1 and a2 on created_at: broken by order_id descending).
SELECT c360.create_trait('orders_n', 'orders', 'count(*)');
SELECT c360.create_trait('amounts_n', 'orders', 'count(total_amount)');
SELECT c360.create_trait('spend', 'orders', 'sum(total_amount)');
SELECT c360.create_trait('avg_items', 'orders', 'avg(item_count)');
SELECT c360.create_trait('min_amount', 'orders', 'min(total_amount)');
SELECT c360.create_trait('max_amount_web', 'orders', 'max(total_amount)', $$channel = 'web'$$);
SELECT c360.create_trait('any_return', 'orders', $$bool_or(order_status = 'returned')$$);
SELECT c360.create_trait('all_big', 'orders', 'bool_and(total_amount > 8)');
SELECT c360.create_trait('fav_channel', 'orders', 'mode() WITHIN GROUP (ORDER BY channel)');
SELECT c360.create_trait('last_status', 'orders', '(array_agg(order_status ORDER BY created_at DESC))[1]');
SELECT c360.create_trait('first_status', 'orders', '(ARRAY_AGG(order_status ORDER BY created_at ASC))[1]');
SELECT c360.create_trait('spend_7d', 'orders', 'sum(total_amount * item_count)', lookback => '7 days');
-- Events, through the identity graph (cookie's events are a's): windows, DISTINCT, mode.
SELECT c360.create_trait('cart_adds_7d', 'behavioral_events', 'count(*)', $$event_type = 'add_to_cart'$$, '7 days');
SELECT c360.create_trait('products_90d', 'behavioral_events', 'count(DISTINCT product_id)', lookback => '90 days');
SELECT c360.create_trait('fav_category_90d', 'behavioral_events', 'mode() WITHIN GROUP (ORDER BY category_id)', lookback => '90 days');
SELECT c360.create_trait('last_product', 'behavioral_events', '(array_agg(product_id ORDER BY event_time DESC))[1]');
-- Tickets, the customer row itself, identity links (with a named time column).
SELECT c360.create_trait('open_billing', 'support_tickets', 'count(*)', $$status = 'open' AND category = 'billing'$$);
SELECT c360.create_trait('last_ticket_category', 'support_tickets', '(array_agg(category ORDER BY created_at DESC))[1]', lookback => '30 days');
SELECT c360.create_trait('is_gold', 'customers', $$bool_or(loyalty_tier = 'gold')$$);
SELECT c360.create_trait('new_signup', 'customers', 'count(*)', lookback => '30 days', time_column => 'signup_date');
SELECT c360.create_trait('cookies', 'identity_graph', 'count(DISTINCT identity_value)', $$identity_type = 'cookie'$$);

SELECT name, input, type, state, lookback, time_column FROM c360.traits;
CREATE TEMP VIEW ord AS
SELECT customer_id, orders_n, amounts_n, spend, avg_items, min_amount, max_amount_web, any_return,
       all_big, fav_channel, last_status, first_status, spend_7d
FROM c360.customer_360;
CREATE TEMP VIEW oth AS
SELECT customer_id, cart_adds_7d, products_90d, fav_category_90d, last_product, open_billing,
       last_ticket_category, is_gold, new_signup, cookies
FROM c360.customer_360;
SELECT * FROM ord ORDER BY 1;
SELECT * FROM oth ORDER BY 1;
SELECT * FROM c360.verify();

-- Changes: an order moves from a to b, a NULL amount gets a value, a ticket closes, a late
-- event for the cookie; only real changes are written.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "update", "old": {"order_id": "a2"}, "new": {"order_id": "a2", "customer_id": "b", "order_status": "shipped", "total_amount": 20, "item_count": 3, "channel": "app", "created_at": "2029-12-30 00:00+00"}},
  {"input": "orders", "op": "update", "old": {"order_id": "a3"}, "new": {"order_id": "a3", "customer_id": "a", "order_status": "returned", "total_amount": 1.25, "item_count": 1, "channel": "web", "created_at": "2029-06-01 00:00+00"}},
  {"input": "support_tickets", "op": "update", "old": {"ticket_id": "t1"}, "new": {"ticket_id": "t1", "customer_id": "a", "status": "closed", "category": "billing", "created_at": "2029-12-29 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e5", "customer_id": "cookie", "session_id": "s9", "event_type": "product_view", "product_id": "p4", "category_id": "books", "event_time": "2029-12-31 23:00+00"}}
]$$);
SELECT * FROM ord ORDER BY 1;
SELECT * FROM oth ORDER BY 1;
SELECT * FROM c360.verify();

-- The identity link moves the cookie to b, then is deleted: the cookie's events follow.
SELECT c360.apply_change('identity_graph', 'insert', NULL,
  '{"identity_id": "i2", "customer_id": "b", "identity_type": "cookie", "identity_value": "cookie", "created_at": "2029-12-15 00:00+00"}');
SELECT customer_id, cart_adds_7d, products_90d, fav_category_90d, last_product, cookies FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
SELECT c360.apply_changes($$[
  {"input": "identity_graph", "op": "delete", "old": {"identity_id": "i1"}},
  {"input": "identity_graph", "op": "delete", "old": {"identity_id": "i2"}}
]$$);
SELECT customer_id, cart_adds_7d, products_90d, fav_category_90d, last_product, cookies FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();

-- Expiry at the microsecond boundary: a window counts rows strictly later than
-- as_of - lookback.  e5 (2029-12-31 23:00 UTC) leaves the 7-day window when as_of - 7 days
-- reaches it: 2030-01-07 23:00 UTC exactly.
SELECT c360.apply_change('identity_graph', 'insert', NULL,
  '{"identity_id": "i3", "customer_id": "a", "identity_type": "cookie", "identity_value": "cookie", "created_at": "2029-12-20 00:00+00"}');
SELECT c360.create_trait('events_7d', 'behavioral_events', 'count(*)', lookback => '7 days');
SELECT c360.tick('2030-01-07 22:59:59.999999+00');
SELECT customer_id, events_7d, cart_adds_7d, spend_7d FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
-- next_change_at includes the traits' windows: a's is e5 leaving events_7d.  Its parts:
-- the article's (the 30-day window, the stage), each input's windowed traits, their least.
SELECT customer_id, next_change_at, article_change_at, traits_change_at,
       behavioral_events_traits_change_at AS events_part, orders_traits_change_at AS orders_part
FROM c360.customer_360 ORDER BY 1;
SELECT c360.tick('2030-01-07 23:00:00+00');
SELECT customer_id, events_7d, cart_adds_7d, spend_7d FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
SELECT customer_id, next_change_at, traits_change_at FROM c360.customer_360 ORDER BY 1;
SELECT column_name, count(*) AS diffs_a_microsecond_earlier
FROM c360.verify('2030-01-07 22:59:59.999999+00') GROUP BY 1 ORDER BY 1;

-- Across a DST change (the profile's zone is America/New_York): on 2030-03-10 clocks spring
-- forward, so as_of - 7 days is 167 hours back across it, and a 1 hour window is an hour of
-- absolute time.
SELECT c360.tick('2030-03-01 00:00+00');
SELECT c360.create_trait('views_1h', 'behavioral_events', 'count(*)', lookback => '1 hour');
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "d1", "customer_id": "a", "session_id": "s5", "event_type": "product_view", "event_time": "2030-03-09 12:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "d2", "customer_id": "a", "session_id": "s5", "event_type": "product_view", "event_time": "2030-03-09 12:30+00"}}
]$$);
SELECT customer_id, events_7d, views_1h FROM c360.customer_360 WHERE customer_id = 'a';
SELECT c360.tick('2030-03-09 13:00:00+00');
SELECT customer_id, events_7d, views_1h FROM c360.customer_360 WHERE customer_id = 'a';
SELECT c360.tick('2030-03-09 13:30:00+00');
SELECT customer_id, events_7d, views_1h FROM c360.customer_360 WHERE customer_id = 'a';
SELECT * FROM c360.verify();
-- 7 days after d1 in New York is 2030-03-16 11:00 UTC (EDT), not 12:00
SELECT c360.tick('2030-03-16 10:59:59+00');
SELECT customer_id, events_7d, views_1h FROM c360.customer_360 WHERE customer_id = 'a';
-- and next_change_at says so
SELECT customer_id, next_change_at, behavioral_events_traits_change_at FROM c360.customer_360 WHERE customer_id = 'a';
SELECT c360.tick('2030-03-16 11:00:00+00');
SELECT customer_id, events_7d, views_1h FROM c360.customer_360 WHERE customer_id = 'a';
SELECT c360.window_start('2030-03-16 11:00:00+00', '7 days') AS bound_7d;
SELECT * FROM c360.verify();

-- A segment on a trait; its sink payload can carry traits.
SELECT c360.create_segment('gold_spenders', 'is_gold AND spend > 5', ARRAY['customer_id', 'spend', 'last_status']);
SELECT segment, customer_id, payload FROM c360.segment_members ORDER BY 1, 2;
SELECT c360.apply_change('orders', 'insert', NULL,
  '{"order_id": "a4", "customer_id": "a", "order_status": "placed", "total_amount": 100, "created_at": "2030-03-16 10:00+00"}');
SELECT segment, customer_id, change, payload FROM c360.segment_changes ORDER BY seq;
SELECT * FROM c360.verify();

-- drop_trait: refused while a segment reads or carries the trait; then the column is gone.
SELECT c360.drop_trait('is_gold');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.drop_trait('last_status');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.drop_trait('no_such_trait');
\echo :LAST_ERROR_SQLSTATE
-- a view of the user's that reads the column holds it too (Postgres's own dependency)
SELECT c360.drop_trait('first_status');
\echo :LAST_ERROR_SQLSTATE
DROP VIEW ord, oth;
SELECT c360.drop_trait('first_status');
SELECT count(*) AS first_status_columns FROM pg_attribute
WHERE attrelid = 'c360.customer_360'::regclass AND attname = 'first_status' AND NOT attisdropped;
SELECT c360.drop_segment('gold_spenders');
SELECT c360.drop_trait('is_gold');
SELECT * FROM c360.verify();

-- Bad definitions are refused before anything changes.
SELECT c360.create_trait('x', 'returns', 'count(*)');                          -- unknown input
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'sum(amount)');                        -- unknown column
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'count(*)', 'no_such_column > 1');      -- in the filter
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'percentile_cont(0.5) WITHIN GROUP (ORDER BY total_amount)');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'sum(total_amount) + 1');              -- not one aggregate
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'sum(DISTINCT total_amount)');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'count(*) FILTER (WHERE true)');       -- filter goes in its argument
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'sum(total_amount) OVER ()');           -- window function
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', '(array_agg(order_status ORDER BY created_at))[2]');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'max((SELECT 1))');                    -- subquery
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'count(*)', 'created_at > now()');      -- stable function
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'max(random())');                      -- volatile function
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'max(row_number() OVER ())');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'sum(order_status)');                  -- no such aggregate
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'count(*)', 'total_amount');            -- filter not boolean
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'count(*)', lookback => '-1 day');      -- negative lookback
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'customers', 'count(*)', lookback => '1 day');    -- no time column
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'count(*)', lookback => '1 day', time_column => 'order_status');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'count(*)', lookback => '1 day', time_column => 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('spend', 'orders', 'count(*)');                       -- a trait's name
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('total_orders', 'orders', 'count(*)');                -- a built-in column
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('Bad-Name', 'orders', 'count(*)');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('_c360_id', 'orders', 'count(*)');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'sum(total_amount); DROP TABLE c360.orders');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('x', 'orders', 'max(total_amount) FROM c360.orders; SELECT max(1)');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS traits FROM c360.traits;

-- Erasure removes the profile row with its traits; a late order of the erased customer is
-- dropped by the tombstone and changes no trait.
SELECT c360.erase_customer('b');
SELECT c360.apply_change('orders', 'insert', NULL,
  '{"order_id": "b9", "customer_id": "b", "order_status": "placed", "total_amount": 1, "created_at": "2030-03-16 10:00+00"}');
SELECT customer_id, orders_n, spend FROM c360.customer_360 ORDER BY 1;
SELECT count(*) AS orders_of_b FROM c360.orders WHERE customer_id = 'b';
SELECT * FROM c360.verify();

-- Rebuild recomputes traits too; a trait's generated statements can be read.
UPDATE c360.customer_360 SET spend = 0, cart_adds_7d = 99;
SELECT count(*) > 0 AS corrupted FROM c360.verify();
SELECT c360.rebuild() > 0 AS rebuilt;
SELECT * FROM c360.verify();
SELECT purpose, statement FROM c360.trait_statements() WHERE input = 'support_tickets' ORDER BY purpose;
-- new events update the event traits in the rollup's own write: counts by difference, the
-- others recomputed over the owners' events and the new ones
SELECT statement FROM c360.trait_statements()
WHERE input = 'behavioral_events' AND purpose = 'events by difference';

-- One catalog: the article's columns are its built-in entries, the traits follow, and the
-- maintainer's statements, reference_profile() and verify() are generated from it.
SELECT name, builtin, input, aggregate, filter, lookback, time_column, type, state
FROM c360.profile_columns;
SELECT purpose, statement FROM c360.profile_statements() WHERE purpose <> 'verify' ORDER BY purpose;
SELECT position('spend_7d' IN statement) > 0 AS verify_reads_traits
FROM c360.profile_statements() WHERE purpose = 'verify';
-- a wrong article column and a wrong trait value are both seen, then mended
UPDATE c360.customer_360 SET has_open_support_issue = NOT has_open_support_issue, spend = -1
WHERE customer_id = 'a';
SELECT * FROM c360.verify();
SELECT c360.rebuild() > 0 AS rebuilt;
SELECT * FROM c360.verify();
SELECT count(*) AS differences FROM c360.reference_profile(c360.as_of()) r
FULL JOIN c360.customer_360 p USING (customer_id)
WHERE r.customer_id IS NULL OR p.customer_id IS NULL OR
      (r.email, r.total_orders, r.lifetime_value::text, r.last_order_status, r.preferred_channel,
       r.open_support_tickets, r.events_last_30d, r.sessions_last_30d, r.last_active_at,
       r.lifecycle_stage, r.has_open_support_issue) IS DISTINCT FROM
      (p.email, p.total_orders, p.lifetime_value::text, p.last_order_status, p.preferred_channel,
       p.open_support_tickets, p.events_last_30d, p.sessions_last_30d, p.last_active_at,
       p.lifecycle_stage, p.has_open_support_issue);

-- A large profile backfills in chunks: the trait is 'backfilling' (and no segment may use
-- it) until backfill_traits() has gone through every chunk.
SET c360.trait_backfill_chunk = 10;
SELECT c360.apply_changes((SELECT json_agg(json_build_object('input', 'customers', 'op', 'insert',
    'new', json_build_object('customer_id', 'bulk' || i)))::jsonb FROM generate_series(1, 25) i));
SELECT c360.create_trait('orders_ever', 'orders', 'count(*) > 0'::text);
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('has_orders', 'orders', 'bool_or(true)');
SELECT name, state, rows_backfilled FROM c360.traits WHERE name = 'has_orders';
SELECT c360.create_segment('buyers', 'has_orders');
\echo :LAST_ERROR_SQLSTATE
CALL c360.backfill_traits();
SELECT name, state, rows_backfilled FROM c360.traits WHERE name = 'has_orders';
SELECT count(*) FILTER (WHERE has_orders) AS with_orders, count(*) AS profiles FROM c360.customer_360;
SELECT * FROM c360.verify();
RESET c360.trait_backfill_chunk;

-- A chunk reads each input by its customers' range.  Events whose raw id lies outside the
-- chunk's range but is linked to a customer in it count for that customer, and those of a
-- raw id inside the range linked to a customer outside it do not.
SET c360.trait_backfill_chunk = 10;
SELECT c360.apply_changes($$[
 {"input": "identity_graph", "op": "insert", "new": {"identity_id": "lnk1", "customer_id": "bulk1",
  "identity_type": "cookie", "identity_value": "zz-cookie", "created_at": "2030-03-01 00:00+00"}},
 {"input": "identity_graph", "op": "insert", "new": {"identity_id": "lnk2", "customer_id": "bulk9",
  "identity_type": "cookie", "identity_value": "bulk20", "created_at": "2030-03-01 00:00+00"}},
 {"input": "behavioral_events", "op": "insert", "new": {"event_id": "bf1", "customer_id": "zz-cookie",
  "event_type": "page_view", "event_time": "2030-03-15 00:00+00"}},
 {"input": "behavioral_events", "op": "insert", "new": {"event_id": "bf2", "customer_id": "bulk20",
  "event_type": "page_view", "event_time": "2030-03-15 00:00+00"}},
 {"input": "behavioral_events", "op": "insert", "new": {"event_id": "bf3", "customer_id": "bulk2",
  "event_type": "page_view", "event_time": "2030-03-15 00:00+00"}}]$$::jsonb);
SELECT c360.create_trait('events_seen', 'behavioral_events', 'count(*)', lookback => '400 days');
SELECT name, state FROM c360.traits WHERE name = 'events_seen';
CALL c360.backfill_traits();
SELECT customer_id, events_seen FROM c360.customer_360 WHERE customer_id LIKE 'bulk%' AND events_seen > 0
ORDER BY 1;
SELECT * FROM c360.verify();
SELECT c360.drop_trait('events_seen');
RESET c360.trait_backfill_chunk;

-- A trait created at once while another still backfills: the backfill computes both, and both
-- are ready (create_trait does every backfilling trait, not only the oldest).
SET c360.trait_backfill_chunk = 10;
SELECT c360.create_trait('orders_total', 'orders', 'count(*)');
RESET c360.trait_backfill_chunk;
SELECT c360.create_trait('customer_rows', 'customers', 'count(*)');
SELECT name, state, rows_backfilled FROM c360.traits WHERE name IN ('orders_total', 'customer_rows');
SELECT count(*) AS uncomputed FROM c360.customer_360 WHERE orders_total IS NULL OR customer_rows IS NULL;
SELECT * FROM c360.verify();
