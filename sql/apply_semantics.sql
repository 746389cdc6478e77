-- apply_semantics: what insert, update and delete do to the mirrors and the profile, alone and
-- in sequences inside one apply_changes batch.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-06-01 00:00+00');
-- The profile without profile_updated_at (real clock) and next_change_at (bookkeeping).
CREATE TEMP VIEW profile AS
SELECT customer_id, email, first_name, last_name, loyalty_tier, acquisition_channel, signup_date,
       total_orders, lifetime_value, avg_order_value, first_order_date, last_order_date,
       last_order_status, preferred_channel, open_support_tickets, total_support_tickets,
       last_ticket_at, events_last_30d, product_views_last_30d, sessions_last_30d, last_active_at,
       lifecycle_stage, has_open_support_issue
FROM c360.customer_360;
-- Order facts per customer, short.
CREATE TEMP VIEW orders_view AS
SELECT customer_id, total_orders, lifetime_value, last_order_date, last_order_status,
       preferred_channel, lifecycle_stage
FROM c360.customer_360;

--
-- Customers
--
-- Insert makes the profile row.
SELECT c360.apply_change('customers', 'insert', NULL,
  '{"customer_id": "c1", "email": "one@example.com", "first_name": "Una", "loyalty_tier": "bronze",
    "signup_date": "2030-01-01 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, email, first_name, last_name, loyalty_tier, signup_date FROM profile;

-- Insert of an existing key is an upsert of the whole row: columns the new image lacks are NULL.
SELECT c360.apply_change('customers', 'insert', NULL,
  '{"customer_id": "c1", "email": "one@example.org", "last_name": "Uno"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, email, first_name, last_name, loyalty_tier, signup_date FROM profile;

-- Update with a partial new image: columns missing from it keep their stored value; a column
-- sent as JSON null becomes NULL.  Unknown keys are ignored.
SELECT c360.apply_change('customers', 'update', '{"customer_id": "c1"}',
  '{"customer_id": "c1", "loyalty_tier": "silver", "first_name": "Una", "email": null, "favourite_colour": "red"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, email, first_name, last_name, loyalty_tier, signup_date FROM profile;
SELECT customer_id, email, first_name, last_name, phone, loyalty_tier FROM c360.customers;

-- Update without an old image: the new image's key says which row.
SELECT c360.apply_change('customers', 'update', NULL, '{"customer_id": "c1", "acquisition_channel": "ads"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, email, first_name, last_name, loyalty_tier, acquisition_channel FROM profile;

-- Update of a key that is not stored creates the row from the new image.
SELECT c360.apply_change('customers', 'update', '{"customer_id": "c2"}', '{"customer_id": "c2", "first_name": "Dos"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, email, first_name, loyalty_tier FROM profile ORDER BY customer_id;

--
-- Orders: a customer's totals, an order moving between customers, a key change
--
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "o1", "customer_id": "c1", "order_status": "placed",
     "total_amount": 100, "channel": "web", "created_at": "2030-05-20 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o2", "customer_id": "c1", "order_status": "placed",
     "total_amount": 50, "channel": "web", "created_at": "2030-05-25 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o3", "customer_id": "c2", "order_status": "placed",
     "total_amount": 10, "channel": "app", "created_at": "2030-01-10 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM orders_view ORDER BY customer_id;

-- A status update touching only order_status.
SELECT c360.apply_change('orders', 'update', '{"order_id": "o2"}', '{"order_id": "o2", "order_status": "shipped"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM orders_view ORDER BY customer_id;

-- o2 moves from c1 to c2: both profiles change (c1 loses it, c2 gains it and becomes active).
SELECT c360.apply_change('orders', 'update', '{"order_id": "o2", "customer_id": "c1"}',
  '{"order_id": "o2", "customer_id": "c2"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM orders_view ORDER BY customer_id;
SELECT order_id, customer_id, order_status, total_amount, channel, created_at FROM c360.orders ORDER BY order_id;

-- Key change: o1 becomes o9; its other columns come along (the new image has only the key).
SELECT c360.apply_change('orders', 'update', '{"order_id": "o1"}', '{"order_id": "o9"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT order_id, customer_id, order_status, total_amount, channel, created_at FROM c360.orders ORDER BY order_id;

-- Key change and customer change at once: o9 becomes o10 of c2, with a new amount.
SELECT c360.apply_change('orders', 'update', '{"order_id": "o9", "customer_id": "c1"}',
  '{"order_id": "o10", "customer_id": "c2", "total_amount": 101}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT order_id, customer_id, order_status, total_amount, channel, created_at FROM c360.orders ORDER BY order_id;
SELECT * FROM orders_view ORDER BY customer_id;

-- Delete an order, then delete it again (a missing key is a no-op), then a key never seen.
SELECT c360.apply_change('orders', 'delete', '{"order_id": "o3"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT c360.apply_change('orders', 'delete', '{"order_id": "o3"}', NULL);
SELECT c360.apply_change('orders', 'delete', '{"order_id": "never-there", "customer_id": "c1"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT count(*) AS orders FROM c360.orders;
SELECT * FROM orders_view ORDER BY customer_id;

--
-- Support tickets: open -> resolved flips has_open_support_issue
--
SELECT c360.apply_changes($$[
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t1", "customer_id": "c1", "status": "open",
     "created_at": "2030-05-01 00:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t2", "customer_id": "c1", "status": "open",
     "created_at": "2030-05-02 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, open_support_tickets, total_support_tickets, last_ticket_at, has_open_support_issue
FROM profile WHERE customer_id = 'c1';
SELECT c360.apply_change('support_tickets', 'update', '{"ticket_id": "t1"}',
  '{"ticket_id": "t1", "status": "resolved", "resolved_at": "2030-05-03 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, open_support_tickets, total_support_tickets, last_ticket_at, has_open_support_issue
FROM profile WHERE customer_id = 'c1';
SELECT c360.apply_change('support_tickets', 'delete', '{"ticket_id": "t2"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, open_support_tickets, total_support_tickets, last_ticket_at, has_open_support_issue
FROM profile WHERE customer_id = 'c1';

--
-- Customer key change and delete: the profile row follows the customer row; the orders stay
-- with the id they name.
--
SELECT c360.apply_change('customers', 'update', '{"customer_id": "c2"}', '{"customer_id": "c3"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, first_name, total_orders, lifecycle_stage FROM profile ORDER BY customer_id;
SELECT c360.apply_change('customers', 'update', '{"customer_id": "c3"}', '{"customer_id": "c2"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, first_name, total_orders, lifecycle_stage FROM profile ORDER BY customer_id;
SELECT c360.apply_change('customers', 'delete', '{"customer_id": "c2"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, first_name, total_orders, lifecycle_stage FROM profile ORDER BY customer_id;
SELECT count(*) AS orders_of_c2 FROM c360.orders WHERE customer_id = 'c2';
-- Re-inserting the customer brings its orders back into its profile.
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "c2", "first_name": "Dos"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM orders_view ORDER BY customer_id;

--
-- Sequences of changes to one key inside one batch replay in arrival order.
--
-- insert, update, delete of the same order in one batch: nothing remains, nothing changes.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "b1", "customer_id": "c1", "total_amount": 5,
     "created_at": "2030-05-31 00:00+00"}},
  {"input": "orders", "op": "update", "old": {"order_id": "b1"}, "new": {"order_id": "b1", "total_amount": 6}},
  {"input": "orders", "op": "delete", "old": {"order_id": "b1"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT count(*) AS b1_rows FROM c360.orders WHERE order_id = 'b1';
SELECT * FROM orders_view WHERE customer_id = 'c1';

-- insert then two partial updates: the last value of each column wins, the rest accumulate.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "b2", "customer_id": "c1", "order_status": "placed",
     "total_amount": 5, "channel": "store", "created_at": "2030-05-31 00:00+00"}},
  {"input": "orders", "op": "update", "old": {"order_id": "b2"}, "new": {"order_id": "b2", "total_amount": 6}},
  {"input": "orders", "op": "update", "old": {"order_id": "b2"}, "new": {"order_id": "b2", "order_status": "paid"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT order_id, customer_id, order_status, total_amount, channel, created_at FROM c360.orders WHERE order_id = 'b2';
SELECT * FROM orders_view WHERE customer_id = 'c1';

-- delete then re-insert of a stored key: the re-inserted row, not the old one, stays.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "delete", "old": {"order_id": "b2"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "b2", "customer_id": "c2", "total_amount": 7,
     "created_at": "2030-05-30 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT order_id, customer_id, order_status, total_amount, channel, created_at FROM c360.orders WHERE order_id = 'b2';
SELECT * FROM orders_view ORDER BY customer_id;

-- A chain of key changes b2 -> b3 -> b4 in one batch, then an update of the final key.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "update", "old": {"order_id": "b2"}, "new": {"order_id": "b3"}},
  {"input": "orders", "op": "update", "old": {"order_id": "b3"}, "new": {"order_id": "b4"}},
  {"input": "orders", "op": "update", "old": {"order_id": "b4"}, "new": {"order_id": "b4", "customer_id": "c1"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT order_id, customer_id, total_amount, created_at FROM c360.orders WHERE order_id LIKE 'b%' ORDER BY order_id;
SELECT * FROM orders_view ORDER BY customer_id;

-- A customer and its first order arrive in the same batch as another customer's delete.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "n1", "customer_id": "c4", "total_amount": 1,
     "channel": "app", "created_at": "2030-05-15 00:00+00"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c4", "first_name": "Cuatro"}},
  {"input": "customers", "op": "delete", "old": {"customer_id": "c2"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c5"}},
  {"input": "customers", "op": "delete", "old": {"customer_id": "c5"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM orders_view ORDER BY customer_id;

-- A change that changes nothing (the stored values again) rewrites no profile row:
-- profile_updated_at stays; a real change moves it.  An empty batch applies 0.
SELECT profile_updated_at AS c4_updated_at FROM c360.customer_360 WHERE customer_id = 'c4' \gset
SELECT c360.apply_change('orders', 'update', '{"order_id": "n1"}', '{"order_id": "n1", "total_amount": 1}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT profile_updated_at = :'c4_updated_at' AS c4_row_untouched FROM c360.customer_360 WHERE customer_id = 'c4';
SELECT c360.apply_change('orders', 'update', '{"order_id": "n1"}', '{"order_id": "n1", "total_amount": 1.0}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT profile_updated_at > :'c4_updated_at' AS c4_row_rewritten, lifetime_value
FROM c360.customer_360 WHERE customer_id = 'c4';
SELECT c360.apply_changes('[]');
SELECT count(*) AS diffs FROM c360.verify();

--
-- Behavioural events: updates and deletes (rare, but a correction may come) recount.
--
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "c1", "session_id": "s1",
     "event_type": "product_view", "event_time": "2030-05-30 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "c1", "session_id": "s2",
     "event_type": "product_view", "event_time": "2030-05-31 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, events_last_30d, product_views_last_30d, sessions_last_30d, last_active_at
FROM profile WHERE customer_id IN ('c1', 'c4') ORDER BY customer_id;
-- e2 moves to c4 and becomes a page view; e1 moves out of the window.
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "update", "old": {"event_id": "e2"},
   "new": {"event_id": "e2", "customer_id": "c4", "event_type": "page_view"}},
  {"input": "behavioral_events", "op": "update", "old": {"event_id": "e1"},
   "new": {"event_id": "e1", "event_time": "2030-04-01 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, events_last_30d, product_views_last_30d, sessions_last_30d, last_active_at
FROM profile WHERE customer_id IN ('c1', 'c4') ORDER BY customer_id;
SELECT c360.apply_change('behavioral_events', 'delete', '{"event_id": "e2"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, events_last_30d, product_views_last_30d, sessions_last_30d, last_active_at
FROM profile WHERE customer_id IN ('c1', 'c4') ORDER BY customer_id;

-- The whole profile at the end; a full rebuild finds nothing to change.
SELECT * FROM profile ORDER BY customer_id;
SELECT c360.rebuild() AS rows_changed_by_rebuild;
SELECT count(*) AS diffs FROM c360.verify();
