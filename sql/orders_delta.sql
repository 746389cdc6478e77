-- orders_delta: order changes by difference (src/core/orders_sql.c).  New orders and updates
-- that keep an order's customer change the order columns by what changed; where that
-- cannot be exact the customer is recomputed.  Each step checks verify(), which compares
-- text images (a numeric's scale counts), and shows the columns.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-06-01 00:00+00');
CREATE TEMP VIEW ord AS
SELECT customer_id, total_orders, lifetime_value, avg_order_value, first_order_date,
       last_order_date, last_order_status, preferred_channel, lifecycle_stage, next_change_at
FROM c360.customer_360 ORDER BY customer_id;
CREATE FUNCTION o(id text, cust text, status text, amount numeric, channel text, at text)
    RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('order_id', id, 'customer_id', cust, 'order_status', status,
                              'total_amount', amount, 'channel', channel, 'created_at', at::timestamptz) $$;
CREATE FUNCTION ins(VARIADIC rows jsonb[]) RETURNS bigint LANGUAGE sql AS $$
    SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'orders', 'op', 'insert', 'new', r)))
    FROM unnest(rows) r $$;
CREATE FUNCTION upd(id text, changes jsonb) RETURNS void LANGUAGE sql AS $$
    SELECT c360.apply_change('orders', 'update', jsonb_build_object('order_id', id), changes) $$;

SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "a"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "b"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "a",
     "session_id": "s1", "event_type": "page_view", "event_time": "2030-05-20 00:00+00"}}
]$$);

-- new orders: counts, sums with the largest scale, average, first and last, the stage moves
SELECT ins(o('a1', 'a', 'pending', 10.5, 'web', '2029-01-01 00:00+00'));
SELECT ins(o('a2', 'a', 'shipped', 2.125, 'web', '2030-03-01 00:00+00'),
           o('a3', 'a', 'delivered', 4, 'app', '2030-03-01 00:00+00'),
           o('b1', 'b', 'pending', 1, 'store', '2030-05-30 00:00+00'));
SELECT * FROM c360.verify();
SELECT * FROM ord;
-- the latest order, whose stage change is the next one (the events' expiry is looked up)
SELECT ins(o('a4', 'a', 'returned', 7, 'app', '2030-05-25 00:00+00'));
SELECT * FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'a';
-- the preferred channel moves to the one now most frequent, and back on a tie (sort order)
SELECT ins(o('a5', 'a', 'pending', 1, 'app', '2030-04-01 00:00+00'));
SELECT ins(o('a6', 'a', 'pending', 1, 'web', '2030-04-02 00:00+00'));
SELECT * FROM c360.verify();
SELECT customer_id, preferred_channel FROM ord WHERE customer_id = 'a';

-- a new order tying the latest one: the key decides, so the customer is recomputed
SELECT ins(o('a0', 'a', 'tie-low', 1, 'web', '2030-05-25 00:00+00'));
SELECT ins(o('a9', 'a', 'tie-high', 1, 'web', '2030-05-25 00:00+00'));
SELECT * FROM c360.verify();
SELECT customer_id, last_order_status FROM ord WHERE customer_id = 'a';

-- updates that keep the customer: amounts up and down, with more and with less scale
SELECT upd('a2', '{"total_amount": 3.5}');
SELECT * FROM c360.verify();
SELECT upd('a3', '{"total_amount": 4.0001}');
SELECT upd('a3', '{"total_amount": 4}');
SELECT * FROM c360.verify();
SELECT customer_id, lifetime_value, avg_order_value FROM ord WHERE customer_id = 'a';
-- a status change of an older order, then of the latest one
SELECT upd('a1', '{"order_status": "lost"}');
SELECT upd('a9', '{"order_status": "tie-high-2"}');
SELECT * FROM c360.verify();
SELECT customer_id, last_order_status FROM ord WHERE customer_id = 'a';
-- a channel change, and a change of created_at (which orders the rows: recomputed)
SELECT upd('a5', '{"channel": "web"}');
SELECT upd('a1', '{"created_at": "2030-05-31 00:00+00"}');
SELECT * FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'a';

-- NULLs: an amount makes the average count fewer rows, a created_at sorts first
SELECT ins(o('b2', 'b', 'pending', NULL, NULL, '2030-05-31 00:00+00'));
SELECT ins(o('b3', 'b', 'pending', 5, 'store', '2030-05-31 06:00+00'));
SELECT * FROM c360.verify();
SELECT ins(o('c1', 'c', 'first', 5, 'web', NULL));
SELECT ins(o('c2', 'c', 'second', 6, 'web', '2030-05-31 00:00+00'));
SELECT * FROM c360.verify();
SELECT * FROM ord WHERE customer_id IN ('b', 'c');
-- the stored average tells whether every amount counts: with amounts 0 and NULL (a sum of
-- 0, whatever the count) and with 10 and NULL, then a new order and an updated NULL amount
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "d"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "e"}}]$$);
SELECT ins(o('d1', 'd', 'x', 0, 'web', '2030-05-01 00:00+00'), o('d2', 'd', 'x', NULL, 'web', '2030-05-02 00:00+00'),
           o('e1', 'e', 'x', 10, 'web', '2030-05-01 00:00+00'), o('e2', 'e', 'x', NULL, 'web', '2030-05-02 00:00+00'));
SELECT ins(o('d3', 'd', 'x', 5, 'web', '2030-05-03 00:00+00'));
SELECT upd('e2', '{"total_amount": 5}');
SELECT * FROM c360.verify();
SELECT customer_id, total_orders, lifetime_value, avg_order_value FROM ord WHERE customer_id IN ('d', 'e');

-- infinite amounts: the sum of what remains stays -Infinity when another amount changes
-- (by difference it would be -Infinity - -Infinity, NaN), and goes back to a number when
-- the infinite one changes
SELECT c360.apply_change('customers', 'insert', NULL, '{"customer_id": "f"}');
SELECT ins(o('f1', 'f', 'x', '-Infinity', 'web', '2030-05-01 00:00+00'),
           o('f2', 'f', 'x', 5, 'web', '2030-05-02 00:00+00'));
SELECT upd('f2', '{"total_amount": 6}');
SELECT * FROM c360.verify();
SELECT customer_id, lifetime_value, avg_order_value FROM ord WHERE customer_id = 'f';
SELECT upd('f1', '{"total_amount": 4}');
SELECT * FROM c360.verify();
SELECT customer_id, lifetime_value, avg_order_value FROM ord WHERE customer_id = 'f';

-- moves and deletes are recomputed on both sides; an unknown customer has no row
SELECT upd('b3', '{"customer_id": "c"}');
SELECT c360.apply_change('orders', 'delete', '{"order_id": "a4"}', NULL);
SELECT ins(o('z1', 'zz', 'pending', 5, 'web', '2030-05-31 00:00+00'));
SELECT * FROM c360.verify();
SELECT * FROM ord;

-- an order whose key changes and nothing else: the customer's row is not written again
-- (the delete of the old key recomputes it; no difference is written first)
CREATE TEMP TABLE before AS SELECT profile_updated_at FROM c360.customer_360 WHERE customer_id = 'a';
SELECT upd('a6', '{"order_id": "a6-renamed"}');
SELECT p.profile_updated_at = b.profile_updated_at AS row_untouched
FROM c360.customer_360 p, before b WHERE p.customer_id = 'a';
SELECT * FROM c360.verify();

-- one batch: an insert, an update and a delete of one customer, and a key that comes twice
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "b9", "customer_id": "b", "total_amount": 2.5, "created_at": "2030-05-31 07:00+00"}},
  {"input": "orders", "op": "update", "old": {"order_id": "b9"}, "new": {"order_status": "paid"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "c9", "customer_id": "c", "total_amount": 1, "created_at": "2030-05-01 00:00+00"}},
  {"input": "orders", "op": "delete", "old": {"order_id": "c9"}}
]$$);
SELECT * FROM c360.verify();
SELECT * FROM ord WHERE customer_id IN ('b', 'c');

-- a long channel (longer than a btree entry can hold) goes in, and becomes the most frequent
SELECT ins(o('c20', 'c', 'pending', 1, repeat('x', 3000), '2030-05-02 00:00+00'),
           o('c21', 'c', 'pending', 1, repeat('x', 3000), '2030-05-03 00:00+00'),
           o('c22', 'c', 'pending', 1, repeat('x', 3000), '2030-05-04 00:00+00'));
SELECT * FROM c360.verify();
SELECT customer_id, total_orders, left(preferred_channel, 3) AS channel, length(preferred_channel)
FROM ord WHERE customer_id = 'c';

-- ticks move the stage from the stored values, as for recomputed rows
SELECT c360.tick('2031-06-01 00:00+00');
SELECT * FROM c360.verify();
SELECT ins(o('b10', 'b', 'pending', 1, 'store', '2031-05-31 00:00+00'));
SELECT * FROM c360.verify();
SELECT customer_id, lifecycle_stage, next_change_at FROM ord WHERE customer_id = 'b';
