-- ties: last_order_status when several orders share the latest created_at (the highest order_id
-- wins; a NULL created_at sorts first under DESC, as in the reference), and preferred_channel
-- when channels are equally frequent (mode() takes the first in sort order; NULLs ignored).
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-06-01 00:00+00');
CREATE TEMP VIEW ord AS
SELECT customer_id, total_orders, last_order_date, last_order_status, preferred_channel
FROM c360.customer_360;

SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "s"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "m"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();

--
-- last_order_status
--
-- Two orders at the same instant: the higher order_id ('s-b' > 's-a') gives the status.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "s-a", "customer_id": "s", "order_status": "from-a",
     "created_at": "2030-05-01 12:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "s-b", "customer_id": "s", "order_status": "from-b",
     "created_at": "2030-05-01 12:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- Arrival order does not matter: a third tied order with a lower id does not win ...
SELECT c360.apply_change('orders', 'insert', NULL,
  '{"order_id": "s-0", "customer_id": "s", "order_status": "from-0", "created_at": "2030-05-01 12:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';
-- ... one with a higher id does.
SELECT c360.apply_change('orders', 'insert', NULL,
  '{"order_id": "s-c", "customer_id": "s", "order_status": "from-c", "created_at": "2030-05-01 12:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- Ids compare as text: 's-c' beats 's-10' ('c' > '1').
SELECT c360.apply_change('orders', 'insert', NULL,
  '{"order_id": "s-10", "customer_id": "s", "order_status": "from-10", "created_at": "2030-05-01 12:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- The winner's status changes: the profile follows.
SELECT c360.apply_change('orders', 'update', '{"order_id": "s-c"}', '{"order_id": "s-c", "order_status": "from-c-2"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- A loser's status changes: no visible change.
SELECT c360.apply_change('orders', 'update', '{"order_id": "s-a"}', '{"order_id": "s-a", "order_status": "from-a-2"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- The winner is deleted: the next highest tied id wins (a non-invertible aggregate under delete).
SELECT c360.apply_change('orders', 'delete', '{"order_id": "s-c"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- The winner's key changes to a lower id: the tie is broken again.
SELECT c360.apply_change('orders', 'update', '{"order_id": "s-b"}', '{"order_id": "s-00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- A later created_at beats any id, even a lower one.
SELECT c360.apply_change('orders', 'insert', NULL,
  '{"order_id": "s-", "customer_id": "s", "order_status": "later", "created_at": "2030-05-01 12:00:00.000001+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- The later order moves back in time to the tie: the highest id among the tied wins again.
SELECT c360.apply_change('orders', 'update', '{"order_id": "s-"}', '{"order_id": "s-", "created_at": "2030-05-01 12:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

-- An order without created_at sorts first under ORDER BY created_at DESC: its status (here
-- NULL too) is the last status, though last_order_date ignores it.
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "s-null", "customer_id": "s", "order_status": "undated"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "s-null2", "customer_id": "s"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';
SELECT c360.apply_change('orders', 'delete', '{"order_id": "s-null2"}', NULL);
SELECT c360.apply_change('orders', 'delete', '{"order_id": "s-null"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 's';

--
-- preferred_channel = mode() WITHIN GROUP (ORDER BY channel)
--
-- One order each on web and app: a tie, the first in sort order ('app') wins.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "m1", "customer_id": "m", "channel": "web",
     "created_at": "2030-05-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "m2", "customer_id": "m", "channel": "app",
     "created_at": "2030-05-02 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'm';

-- A second web order breaks the tie.
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "m3", "customer_id": "m", "channel": "web",
  "created_at": "2030-05-03 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'm';

-- Two more on store: store 2, web 2, app 1 -> tie between store and web, store sorts first.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "m4", "customer_id": "m", "channel": "store"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "m5", "customer_id": "m", "channel": "store"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'm';

-- NULL channels are ignored by mode(), however many.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "m6", "customer_id": "m"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "m7", "customer_id": "m"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "m8", "customer_id": "m", "channel": null}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'm';

-- A store order moves to web: web 3 wins outright.
SELECT c360.apply_change('orders', 'update', '{"order_id": "m4"}', '{"order_id": "m4", "channel": "web"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'm';

-- Deletes bring the tie back: web 2 (m1, m4) against store 1 and app 1 -> web; then delete a
-- web order -> web 1, store 1, app 1 -> app.
SELECT c360.apply_change('orders', 'delete', '{"order_id": "m3"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'm';
SELECT c360.apply_change('orders', 'delete', '{"order_id": "m1"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'm';

-- An order moving to another customer takes its channel along: m2 (app) goes to s.
SELECT c360.apply_change('orders', 'update', '{"order_id": "m2", "customer_id": "m"}', '{"order_id": "m2", "customer_id": "s"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord ORDER BY customer_id;

-- Only NULL channels left: preferred_channel is NULL.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "delete", "old": {"order_id": "m4"}},
  {"input": "orders", "op": "delete", "old": {"order_id": "m5"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'm';

-- Everything in one batch: orders tied on created_at and on channel, inserted in "wrong" order.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "b"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "b2", "customer_id": "b", "order_status": "two",
     "channel": "web", "created_at": "2030-05-31 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "b3", "customer_id": "b", "order_status": "three",
     "channel": "email", "created_at": "2030-05-31 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "b1", "customer_id": "b", "order_status": "one",
     "channel": "web", "created_at": "2030-05-31 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "b4", "customer_id": "b", "order_status": "four",
     "channel": "email", "created_at": "2030-05-30 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ord WHERE customer_id = 'b';

SELECT c360.rebuild() AS rows_changed_by_rebuild;
SELECT count(*) AS diffs FROM c360.verify();
