-- bad_input: every kind of bad change raises a clear ERROR (naming the input, column and value
-- where there is one) with a proper SQLSTATE, and changes nothing: a batch with one bad change
-- rolls back entirely.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-06-01 00:00+00');
-- Row counts of every mirror and of the profile, and a digest of the profile's contents.
CREATE TEMP VIEW state AS
SELECT (SELECT count(*) FROM c360.customers) AS customers,
       (SELECT count(*) FROM c360.orders) AS orders,
       (SELECT count(*) FROM c360.support_tickets) AS tickets,
       (SELECT count(*) FROM c360.behavioral_events) AS events,
       (SELECT count(*) FROM c360.identity_graph) AS links,
       (SELECT count(*) FROM c360.customer_360) AS profiles,
       (SELECT md5(string_agg(p::text, ',' ORDER BY customer_id))
          FROM (SELECT customer_id, email, total_orders, lifetime_value, last_order_status,
                       open_support_tickets, events_last_30d, sessions_last_30d, lifecycle_stage
                FROM c360.customer_360) p) AS profile_md5;

-- Some good data to protect.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c1", "email": "one@example.com"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o1", "customer_id": "c1", "total_amount": 10,
     "order_status": "placed", "created_at": "2030-05-30 00:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t1", "customer_id": "c1", "status": "open"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "c1", "session_id": "s1",
     "event_time": "2030-05-31 00:00+00"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i1", "customer_id": "c1",
     "identity_value": "ck1"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM state \gset before_
SELECT * FROM state;

--
-- Input and op
--
-- unknown input
SELECT c360.apply_change('invoices', 'insert', NULL, '{"invoice_id": "x"}');
\echo :LAST_ERROR_SQLSTATE
-- input names are exact (no case folding)
SELECT c360.apply_change('Orders', 'insert', NULL, '{"order_id": "x", "customer_id": "c1"}');
\echo :LAST_ERROR_SQLSTATE
-- unknown op
SELECT c360.apply_change('orders', 'upsert', NULL, '{"order_id": "x", "customer_id": "c1"}');
\echo :LAST_ERROR_SQLSTATE
-- NULL input or op
SELECT c360.apply_change(NULL, 'insert', NULL, '{"order_id": "x", "customer_id": "c1"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', NULL, NULL, '{"order_id": "x", "customer_id": "c1"}');
\echo :LAST_ERROR_SQLSTATE
-- an insert without a new row, a delete without an old row, an update with neither
SELECT c360.apply_change('orders', 'insert', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', 'delete', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', 'update', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE

--
-- Key and required columns
--
-- missing key column (insert, delete, update with neither image carrying it)
SELECT c360.apply_change('orders', 'insert', NULL, '{"customer_id": "c1", "total_amount": 5}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('customers', 'delete', '{"email": "one@example.com"}', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', 'update', '{"customer_id": "c1"}', '{"total_amount": 5}');
\echo :LAST_ERROR_SQLSTATE
-- key column present but null
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": null, "email": "x@example.com"}');
\echo :LAST_ERROR_SQLSTATE
-- an update whose new image sets the key to null (the value it sets is the stored one, so
-- that nothing would change even if it were accepted)
SELECT c360.apply_change('orders', 'update', '{"order_id": "o1"}', '{"order_id": null, "total_amount": 10}');
\echo :LAST_ERROR_SQLSTATE
-- a required column missing: an order without customer_id, an event without event_time, a
-- link without identity_value
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o2", "total_amount": 5}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('behavioral_events', 'insert', NULL, '{"event_id": "e2", "customer_id": "c1"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('identity_graph', 'insert', NULL, '{"identity_id": "i2", "customer_id": "c1"}');
\echo :LAST_ERROR_SQLSTATE
-- a required column sent as null (insert, and an update that would null it)
SELECT c360.apply_change('support_tickets', 'insert', NULL, '{"ticket_id": "t2", "customer_id": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', 'update', '{"order_id": "o1"}', '{"order_id": "o1", "customer_id": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('behavioral_events', 'update', '{"event_id": "e1"}', '{"event_id": "e1", "event_time": null}');
\echo :LAST_ERROR_SQLSTATE
-- an update of a key that is not stored, whose new image lacks a required column
SELECT c360.apply_change('orders', 'update', '{"order_id": "o-new"}', '{"order_id": "o-new", "total_amount": 1}');
\echo :LAST_ERROR_SQLSTATE

--
-- Values that do not cast to the column's type
--
-- numeric
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o2", "customer_id": "c1", "total_amount": "12,50"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o2", "customer_id": "c1", "total_amount": true}');
\echo :LAST_ERROR_SQLSTATE
-- integer: not a number, a fraction, out of range
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o2", "customer_id": "c1", "item_count": "two"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o2", "customer_id": "c1", "item_count": 1.5}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o2", "customer_id": "c1", "item_count": 99999999999}');
\echo :LAST_ERROR_SQLSTATE
-- timestamptz: not a timestamp, a day that does not exist, a number
SELECT c360.apply_change('behavioral_events', 'insert', NULL, '{"event_id": "e2", "customer_id": "c1", "event_time": "last tuesday"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "c2", "signup_date": "2030-02-30 10:00+00"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('support_tickets', 'insert', NULL, '{"ticket_id": "t2", "customer_id": "c1", "created_at": 1893456000}');
\echo :LAST_ERROR_SQLSTATE
-- an uncastable value in an update's new image
SELECT c360.apply_change('orders', 'update', '{"order_id": "o1"}', '{"order_id": "o1", "created_at": "soon"}');
\echo :LAST_ERROR_SQLSTATE

--
-- Malformed JSON and JSON of the wrong shape
--
-- malformed JSON text: the cast to jsonb fails before the function is called
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "c2",');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_changes('[{"input": "customers", "op": "insert", "new": {"customer_id": "c2"}');
\echo :LAST_ERROR_SQLSTATE
-- a row image that is not an object
SELECT c360.apply_change('customers', 'insert', NULL, '["c2"]');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('customers', 'insert', NULL, '"c2"');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('customers', 'delete', '42', NULL);
\echo :LAST_ERROR_SQLSTATE
-- a nested object or array as a column value
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "c2", "email": {"home": "h@example.com"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "o2", "customer_id": "c1", "total_amount": [1, 2]}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": {"id": "c2"}}');
\echo :LAST_ERROR_SQLSTATE
-- apply_changes needs an array: an object, a scalar, JSON null
SELECT c360.apply_changes('{"input": "customers", "op": "insert", "new": {"customer_id": "c2"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_changes('42');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_changes('null');
\echo :LAST_ERROR_SQLSTATE
-- SQL NULL: the function is strict and applies nothing
SELECT c360.apply_changes(NULL);
-- an element that is not an object
SELECT c360.apply_changes('[{"input": "customers", "op": "insert", "new": {"customer_id": "c2"}}, "oops"]');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_changes('[[{"input": "customers", "op": "insert", "new": {"customer_id": "c2"}}]]');
\echo :LAST_ERROR_SQLSTATE
-- a change without input or op, or with a non-string one
SELECT c360.apply_changes('[{"op": "insert", "new": {"customer_id": "c2"}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_changes('[{"input": "customers", "new": {"customer_id": "c2"}}]');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_changes('[{"input": 1, "op": "insert", "new": {"customer_id": "c2"}}]');
\echo :LAST_ERROR_SQLSTATE
-- "old"/"new" that are not objects
SELECT c360.apply_changes('[{"input": "customers", "op": "insert", "new": "c2"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_changes('[{"input": "customers", "op": "delete", "old": ["c1"]}]');
\echo :LAST_ERROR_SQLSTATE

-- Nothing so far changed anything.
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM state;

--
-- One bad change in a batch: the whole batch rolls back
--
-- The bad change is last; good changes to every input come before it.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c2", "email": "two@example.com"}},
  {"input": "customers", "op": "update", "old": {"customer_id": "c1"}, "new": {"customer_id": "c1", "email": "changed@example.com"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o2", "customer_id": "c2", "total_amount": 5}},
  {"input": "orders", "op": "delete", "old": {"order_id": "o1"}},
  {"input": "support_tickets", "op": "update", "old": {"ticket_id": "t1"}, "new": {"ticket_id": "t1", "status": "closed"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "c2", "event_time": "2030-05-31 00:00+00"}},
  {"input": "identity_graph", "op": "delete", "old": {"identity_id": "i1"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o3", "customer_id": "c2", "total_amount": "lots"}}
]$$);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM state;

-- The bad change is first (an unknown op), the good ones after it.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "merge", "new": {"customer_id": "c2"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c3"}}
]$$);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM state;

-- The bad value is found only when the events, the fourth input, are written: the customers,
-- orders and tickets of the batch were already applied, and are rolled back.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c4"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o4", "customer_id": "c4", "total_amount": 1}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t4", "customer_id": "c4", "status": "open"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e4", "customer_id": "c4", "event_time": "2030-05-31 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e5", "customer_id": "c4", "event_time": "2030-13-01 00:00+00"}}
]$$);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM state;

-- A required column nulled by a later change to a key inserted earlier in the same batch.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "o5", "customer_id": "c1", "total_amount": 1}},
  {"input": "orders", "op": "update", "old": {"order_id": "o5"}, "new": {"order_id": "o5", "customer_id": null}}
]$$);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM state;

-- Inside a transaction the error aborts it; after ROLLBACK nothing of the transaction remains.
BEGIN;
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "c6"}');
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "c7", "signup_date": "never"}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) AS diffs FROM c360.verify();

-- The state is exactly what it was before the first bad change.
SELECT * FROM state;
SELECT (s.customers, s.orders, s.tickets, s.events, s.links, s.profiles, s.profile_md5) =
       (:before_customers, :before_orders, :before_tickets, :before_events, :before_links,
        :before_profiles, :'before_profile_md5') AS unchanged
FROM state s;

-- And the same batch without its bad change applies.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c2", "email": "two@example.com"}},
  {"input": "customers", "op": "update", "old": {"customer_id": "c1"}, "new": {"customer_id": "c1", "email": "changed@example.com"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o2", "customer_id": "c2", "total_amount": 5}},
  {"input": "orders", "op": "delete", "old": {"order_id": "o1"}},
  {"input": "support_tickets", "op": "update", "old": {"ticket_id": "t1"}, "new": {"ticket_id": "t1", "status": "closed"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "c2", "event_time": "2030-05-31 00:00+00"}},
  {"input": "identity_graph", "op": "delete", "old": {"identity_id": "i1"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM state;
SELECT customer_id, email, total_orders, lifetime_value, open_support_tickets, events_last_30d, lifecycle_stage
FROM c360.customer_360 ORDER BY customer_id;
