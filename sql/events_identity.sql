-- events_identity: behavioural events (duplicates by event_id counted once, sessions counted
-- distinct) and their attribution through the identity graph: an event whose customer_id is an
-- identity_value belongs to that value's newest link's customer; links added, moved, replaced
-- and deleted re-attribute the events each time; events of unlinked cookies belong to nobody.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-06-01 00:00+00');
CREATE TEMP VIEW ev AS
SELECT customer_id, events_last_30d AS events, product_views_last_30d AS views,
       sessions_last_30d AS sessions, last_active_at
FROM c360.customer_360;

SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c1"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c2"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c3"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();

--
-- Duplicated event_id
--
-- A producer retry: the same event twice in one batch is stored and counted once.
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "c1", "session_id": "s1",
     "event_type": "product_view", "event_time": "2030-05-30 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "c1", "session_id": "s1",
     "event_type": "product_view", "event_time": "2030-05-30 10:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev WHERE customer_id = 'c1';
-- The same event_id again in a later batch, even with other contents, is ignored: the stored
-- event stays as it was.
SELECT c360.apply_change('behavioral_events', 'insert', NULL,
  '{"event_id": "e1", "customer_id": "c2", "session_id": "s9", "event_type": "page_view", "event_time": "2030-05-31 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev WHERE customer_id IN ('c1', 'c2') ORDER BY customer_id;
SELECT event_id, customer_id, session_id, event_type, event_time FROM c360.behavioral_events;
-- ... also when the duplicate comes in a batch that takes the replay path (with a delete).
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "delete", "old": {"event_id": "no-such-event"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "c2", "session_id": "s9",
     "event_type": "page_view", "event_time": "2030-05-31 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT event_id, customer_id, session_id, event_type, event_time FROM c360.behavioral_events;
-- Within one batch, the first of two different events with one event_id is kept.
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "c1", "session_id": "s2",
     "event_type": "page_view", "event_time": "2030-05-30 11:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "c2", "session_id": "s2",
     "event_type": "product_view", "event_time": "2030-05-30 12:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT event_id, customer_id, session_id, event_type, event_time FROM c360.behavioral_events ORDER BY event_id;
SELECT * FROM ev WHERE customer_id IN ('c1', 'c2') ORDER BY customer_id;

--
-- Sessions are counted distinct; events without a session count as events, not sessions.
--
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e3", "customer_id": "c1", "session_id": "s1",
     "event_type": "add_to_cart", "event_time": "2030-05-30 10:05+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e4", "customer_id": "c1",
     "event_type": "product_view", "event_time": "2030-05-30 10:06+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev WHERE customer_id = 'c1';

--
-- Anonymous cookie events belong to nobody until a link claims the cookie.
--
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "k1", "customer_id": "ck1", "session_id": "s1",
     "event_type": "product_view", "event_time": "2030-05-29 09:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "k2", "customer_id": "ck1", "session_id": "ks",
     "event_type": "product_view", "event_time": "2030-05-31 09:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "k3", "customer_id": "ck1", "session_id": "ks",
     "event_type": "page_view", "event_time": "2030-04-01 09:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;
SELECT count(*) AS profile_rows_for_cookie FROM c360.customer_360 WHERE customer_id = 'ck1';

-- Link added: ck1 -> c1.  c1 gains k1 and k2 (k3 is outside the window but sets nothing, as
-- k2 is later); session s1 is shared by c1's own events and the cookie's, and counts once.
SELECT c360.apply_change('identity_graph', 'insert', NULL,
  '{"identity_id": "i1", "customer_id": "c1", "identity_type": "cookie", "identity_value": "ck1", "created_at": "2030-05-01 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- New cookie events go straight to the cookie's customer.
SELECT c360.apply_change('behavioral_events', 'insert', NULL,
  '{"event_id": "k4", "customer_id": "ck1", "session_id": "ks2", "event_type": "product_view", "event_time": "2030-05-31 23:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- Link moved to c2: every cookie event moves from c1 to c2.
SELECT c360.apply_change('identity_graph', 'update', '{"identity_id": "i1", "customer_id": "c1"}',
  '{"identity_id": "i1", "customer_id": "c2"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- A second, newer link for the same cookie wins: the events move to c3.
SELECT c360.apply_change('identity_graph', 'insert', NULL,
  '{"identity_id": "i2", "customer_id": "c3", "identity_type": "cookie", "identity_value": "ck1", "created_at": "2030-05-20 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- The newer link's created_at goes back before i1's: i1 (c2) wins again.
SELECT c360.apply_change('identity_graph', 'update', '{"identity_id": "i2"}',
  '{"identity_id": "i2", "created_at": "2030-04-01 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- Equal created_at: the higher identity_id ('i2' > 'i1') wins.
SELECT c360.apply_change('identity_graph', 'update', '{"identity_id": "i2"}',
  '{"identity_id": "i2", "created_at": "2030-05-01 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- A NULL created_at sorts last: i1 wins over an undated i2.
SELECT c360.apply_change('identity_graph', 'update', '{"identity_id": "i2"}',
  '{"identity_id": "i2", "created_at": null}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- The winning link is deleted: the undated i2 (c3) is the only one left and wins.
SELECT c360.apply_change('identity_graph', 'delete', '{"identity_id": "i1"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- The last link is deleted: the cookie's events belong to nobody again.
SELECT c360.apply_change('identity_graph', 'delete', '{"identity_id": "i2"}', NULL);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

--
-- Links and events in one batch
--
-- A link and new events of its cookie in one batch: all of them land on c2.
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "k5", "customer_id": "ck1", "session_id": "ks3",
     "event_type": "product_view", "event_time": "2030-05-31 12:00+00"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i3", "customer_id": "c2",
     "identity_type": "cookie", "identity_value": "ck1", "created_at": "2030-05-31 00:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- The link's value changes to another cookie (ck2, no events yet) while ck2's first event
-- arrives: ck1's events go back to nobody, ck2's go to c2.
SELECT c360.apply_changes($$[
  {"input": "identity_graph", "op": "update", "old": {"identity_id": "i3"}, "new": {"identity_id": "i3", "identity_value": "ck2"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "k6", "customer_id": "ck2", "session_id": "ks4",
     "event_type": "page_view", "event_time": "2030-05-31 13:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- A cookie event is corrected to name the customer directly, another cookie event is deleted.
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "update", "old": {"event_id": "k2"}, "new": {"event_id": "k2", "customer_id": "c3"}},
  {"input": "behavioral_events", "op": "delete", "old": {"event_id": "k6"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

--
-- An identity value that is itself a customer id
--
-- c3 is linked into c1 (a merge): c3's own events are c1's now; c3 keeps its profile row with
-- no events.
SELECT c360.apply_change('identity_graph', 'insert', NULL,
  '{"identity_id": "i4", "customer_id": "c1", "identity_type": "merge", "identity_value": "c3", "created_at": "2030-05-31 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- Attribution is one step: with c1 itself linked into c2, c1's own events go to c2, while the
-- events of c3 stay with c1.
SELECT c360.apply_change('identity_graph', 'insert', NULL,
  '{"identity_id": "i5", "customer_id": "c2", "identity_type": "merge", "identity_value": "c1", "created_at": "2030-05-31 00:00+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- A customer linked to itself keeps its own events.
SELECT c360.apply_change('identity_graph', 'update', '{"identity_id": "i5"}', '{"identity_id": "i5", "customer_id": "c1"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- Both links removed in one batch: every customer has its own events back.
SELECT c360.apply_changes($$[
  {"input": "identity_graph", "op": "delete", "old": {"identity_id": "i4"}},
  {"input": "identity_graph", "op": "delete", "old": {"identity_id": "i5"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- The merged customer is deleted while linked: its events stay with the surviving customer.
SELECT c360.apply_changes($$[
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i6", "customer_id": "c1",
     "identity_value": "c3", "created_at": "2030-05-31 00:00+00"}},
  {"input": "customers", "op": "delete", "old": {"customer_id": "c3"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev ORDER BY customer_id;

-- However large the batch, the first of several events with one event_id is kept: here 300
-- inserts, each of 100 event_ids three times (first for c2, then for c1, then for a cookie).
SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert',
         'new', jsonb_build_object('event_id', 'big-' || (i % 100),
                                   'customer_id', (ARRAY['c2', 'c1', 'ck9'])[i / 100 + 1],
                                   'event_time', '2030-05-15 00:00+00')) ORDER BY i))
FROM generate_series(0, 299) i;
SELECT count(*) AS diffs FROM c360.verify();
SELECT customer_id, count(*) AS big_events FROM c360.behavioral_events WHERE event_id LIKE 'big-%'
GROUP BY customer_id ORDER BY customer_id;
SELECT * FROM ev ORDER BY customer_id;

--
-- Sessions by difference across an owner's raw ids
--
-- A cookie and its customer share a session (the login happens mid-session).  Batches of
-- events alone update the profile by difference: the shared session counts once, and one
-- already in the window does not count again.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c5"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i7", "customer_id": "c5",
     "identity_type": "cookie", "identity_value": "ck5", "created_at": "2030-05-01 00:00+00"}}
]$$);
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "x1", "customer_id": "ck5", "session_id": "sx",
     "event_type": "product_view", "event_time": "2030-05-05 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "x2", "customer_id": "c5", "session_id": "sx",
     "event_type": "page_view", "event_time": "2030-05-06 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "x3", "customer_id": "c5", "session_id": "sy",
     "event_type": "product_view", "event_time": "2030-05-03 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "x4", "customer_id": "ck5",
     "event_type": "page_view", "event_time": "2030-05-04 10:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev WHERE customer_id = 'c5';
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "x5", "customer_id": "ck5", "session_id": "sx",
     "event_type": "page_view", "event_time": "2030-05-10 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "x6", "customer_id": "c5", "session_id": "sz",
     "event_type": "page_view", "event_time": "2030-05-20 10:00+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev WHERE customer_id = 'c5';
-- Time passes: sy leaves the window with its only event; sx stays while either id still has
-- an event of it in the window, and leaves with the last one.
SELECT c360.tick('2030-06-04 12:00+00') > 0 AS changed;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev WHERE customer_id = 'c5';
SELECT c360.tick('2030-06-09 12:00+00') > 0 AS changed;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM ev WHERE customer_id = 'c5';

SELECT c360.rebuild() AS rows_changed_by_rebuild;
SELECT count(*) AS diffs FROM c360.verify();
