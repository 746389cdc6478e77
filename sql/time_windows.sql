-- time_windows: the time-dependent columns (events/product views/sessions in the last 30 days,
-- lifecycle_stage) as the profile clock moves with explicit c360.tick() instants.  Window
-- bounds are strict: an event at exactly as_of - 30 days is out, an order at exactly
-- as_of - 30 days is no longer 'active'.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-01-01 00:00+00');
SELECT c360.as_of();
CREATE TEMP VIEW tw AS
SELECT customer_id, events_last_30d AS events, product_views_last_30d AS views,
       sessions_last_30d AS sessions, last_active_at, last_order_date, lifecycle_stage,
       next_change_at
FROM c360.customer_360;

-- w has events around the window's edge (as_of - 30 days = 2029-12-02 00:00), a has one
-- order at as_of, p has nothing, o has an order from long ago.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "w"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "a"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "p"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "o"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "at-bound", "customer_id": "w", "session_id": "s4",
     "event_type": "product_view", "event_time": "2029-12-02 00:00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "after-bound", "customer_id": "w", "session_id": "s3",
     "event_type": "product_view", "event_time": "2029-12-02 00:00:01+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "yesterday", "customer_id": "w", "session_id": "s1",
     "event_type": "page_view", "event_time": "2029-12-31 12:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "now", "customer_id": "w", "session_id": "s2",
     "event_type": "product_view", "event_time": "2030-01-01 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "future", "customer_id": "w", "session_id": "s1",
     "event_type": "product_view", "event_time": "2030-01-20 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "a1", "customer_id": "a", "total_amount": 10,
     "created_at": "2030-01-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o1", "customer_id": "o", "total_amount": 10,
     "created_at": "2028-06-01 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
-- w: 4 events in the window (not 'at-bound'), 3 views, 3 sessions; next change when
-- 'after-bound' leaves.  a: active until 30 days after its order.  o: churned, nothing ahead.
SELECT * FROM tw ORDER BY customer_id;

-- verify() evaluated at another instant than the profile's clock does see differences: the
-- oracle is not vacuous.  At the clock's instant there are none.
SELECT * FROM c360.verify('2030-01-31 00:00+00');
SELECT count(*) AS diffs FROM c360.verify(c360.as_of());

-- One second later 'after-bound' is exactly at the bound and leaves.
SELECT c360.tick('2030-01-01 00:00:01+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'w';

-- A tick to the clock's own instant is allowed and changes nothing; a tick backwards is an
-- ERROR and leaves the clock where it was; tick(NULL) is NULL and does nothing.
SELECT c360.tick('2030-01-01 00:00:01+00');
SELECT c360.tick('2030-01-01 00:00:00+00');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.tick(NULL);
SELECT c360.as_of();
SELECT count(*) AS diffs FROM c360.verify();

-- 2030-01-30 12:00: 'yesterday' (2029-12-31 12:00) is at the bound: out; session s1 still
-- counts through 'future'.
SELECT c360.tick('2030-01-30 11:59:59.999999+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'w';
SELECT c360.tick('2030-01-30 12:00+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'w';

-- 2030-01-31 00:00 = a's order + 30 days: a turns at_risk and 'now' leaves w's window at the
-- same instant; one microsecond before, nothing has changed yet.
SELECT c360.tick('2030-01-30 23:59:59.999999+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id IN ('a', 'w') ORDER BY customer_id;
SELECT c360.tick('2030-01-31 00:00+00') AS rows_changed;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id IN ('a', 'w') ORDER BY customer_id;

-- An event inserted while the clock is at 2030-01-31 that is already outside the window counts
-- only for last_active_at; one inside the window counts.
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "late-old", "customer_id": "p", "session_id": "x",
     "event_type": "product_view", "event_time": "2030-01-01 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "late-new", "customer_id": "p", "session_id": "y",
     "event_type": "product_view", "event_time": "2030-01-01 00:00:00.000001+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'p';

-- 2030-02-19 00:00: 'future' (2030-01-20) leaves; w has no events in the window.
SELECT c360.tick('2030-02-19 00:00+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw ORDER BY customer_id;

-- 2030-04-01 00:00 = a's order + 90 days: at_risk -> lapsing (one microsecond before: at_risk).
SELECT c360.tick('2030-03-31 23:59:59.999999+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'a';
SELECT c360.tick('2030-04-01 00:00+00') AS rows_changed;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'a';

-- A prospect's first order makes it active; a backdated order of a lapsing customer moves
-- nothing (last_order_date is the max); a newer one reactivates it.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "p1", "customer_id": "p", "created_at": "2030-03-15 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "a0", "customer_id": "a", "created_at": "2029-12-01 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id IN ('a', 'p') ORDER BY customer_id;
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "a2", "customer_id": "a", "created_at": "2030-03-31 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'a';
-- Deleting that order sends it back to lapsing; deleting p's only order makes p a prospect.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "delete", "old": {"order_id": "a2"}},
  {"input": "orders", "op": "delete", "old": {"order_id": "p1"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id IN ('a', 'p') ORDER BY customer_id;

-- 2031-01-01 00:00 = a's order + 365 days: lapsing -> churned.
SELECT c360.tick('2030-12-31 23:59:59.999999+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'a';
SELECT c360.tick('2031-01-01 00:00+00') AS rows_changed;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw WHERE customer_id = 'a';

-- One big jump (400 days) over many boundaries at once: fresh activity for every customer,
-- then everything expires together.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "w1", "customer_id": "w", "created_at": "2031-01-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "p2", "customer_id": "p", "created_at": "2030-12-01 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "w-a", "customer_id": "w", "session_id": "z",
     "event_type": "product_view", "event_time": "2030-12-31 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "a-a", "customer_id": "a", "session_id": "z",
     "event_type": "page_view", "event_time": "2030-12-15 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw ORDER BY customer_id;
SELECT c360.tick(c360.as_of() + interval '400 days') AS rows_changed;
SELECT c360.as_of();
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM tw ORDER BY customer_id;

SELECT c360.rebuild() AS rows_changed_by_rebuild;
SELECT count(*) AS diffs FROM c360.verify();
