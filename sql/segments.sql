-- segments: the segment API.  Bad predicates give clear errors with their SQLSTATE; membership
-- is computed at creation (no outbox rows for it); apply_changes and c360.tick write enter,
-- exit and update rows to the outbox; membership always equals the predicate query; a segment
-- with a sink cannot be dropped.  No worker runs here: create_sink needs no broker.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-06-01 00:00+00');
-- CONTEXT lines would name lines of the install script; the messages and hints are the test.
\set SHOW_CONTEXT never

-- Members minus predicate rows plus predicate rows minus members, over every segment, with
-- each member's payload compared to the carried columns of its current profile row.
CREATE FUNCTION pg_temp.membership_diffs() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s record;
    n bigint;
    total bigint := 0;
BEGIN
    FOR s IN SELECT name, predicate, columns FROM c360.segments LOOP
        EXECUTE format(
            'WITH want AS (SELECT p.customer_id, %s AS payload FROM c360.customer_360 p WHERE (%s) IS TRUE),
                  have AS (SELECT customer_id, payload FROM c360.segment_members WHERE segment = %L)
             SELECT count(*) FROM ((TABLE want EXCEPT TABLE have) UNION ALL (TABLE have EXCEPT TABLE want)) d',
            c360._segment_payload(s.columns), s.predicate, s.name) INTO n;
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;
CREATE TEMP VIEW outbox AS
SELECT seq, segment, customer_id, change, payload FROM c360.segment_changes ORDER BY seq;
-- :seen is the newest outbox row shown so far; each step shows the rows after it.
\set seen 0

-- Six customers at 2030-06-01: c1 gold at_risk, c2 platinum active, c3 silver lapsing,
-- c4 gold prospect, c5 gold churned, c6 platinum lapsing.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c1", "email": "c1@example.com", "loyalty_tier": "gold"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c2", "email": "c2@example.com", "loyalty_tier": "platinum"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c3", "email": "c3@example.com", "loyalty_tier": "silver"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c4", "email": "c4@example.com", "loyalty_tier": "gold"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c5", "email": "c5@example.com", "loyalty_tier": "gold"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c6", "email": "c6@example.com", "loyalty_tier": "platinum"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o1", "customer_id": "c1", "total_amount": 700, "created_at": "2030-04-15 10:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o2", "customer_id": "c2", "total_amount": 1200, "created_at": "2030-05-20 10:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o3", "customer_id": "c3", "total_amount": 90, "created_at": "2029-12-01 10:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o5", "customer_id": "c5", "total_amount": 40, "created_at": "2029-01-01 10:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o6", "customer_id": "c6", "total_amount": 2500, "created_at": "2030-02-15 10:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t2", "customer_id": "c2", "status": "open", "created_at": "2030-05-30 09:00+00"}}
]$$);
SELECT customer_id, loyalty_tier, lifecycle_stage, lifetime_value, has_open_support_issue
FROM c360.customer_360 ORDER BY customer_id;
SELECT count(*) AS diffs FROM c360.verify();

--
-- Bad predicates and names: nothing is created.
--
-- unknown column
SELECT c360.create_segment('bad', $$loyalty_level = 'gold'$$);
\echo :LAST_ERROR_SQLSTATE
-- not boolean
SELECT c360.create_segment('bad', 'lifetime_value * 2');
\echo :LAST_ERROR_SQLSTATE
-- a subquery
SELECT c360.create_segment('bad', 'customer_id IN (SELECT customer_id FROM c360.orders)');
\echo :LAST_ERROR_SQLSTATE
-- a volatile function
SELECT c360.create_segment('bad', 'random() < 0.5');
\echo :LAST_ERROR_SQLSTATE
-- a stable function: membership would go stale as time passes
SELECT c360.create_segment('bad', $$last_active_at > now() - interval '7 days'$$);
\echo :LAST_ERROR_SQLSTATE
-- no predicate at all
SELECT c360.create_segment('bad', NULL);
\echo :LAST_ERROR_SQLSTATE
-- an aggregate, a window function, a set-returning function
SELECT c360.create_segment('bad', 'count(*) > 1');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_segment('bad', 'row_number() OVER () = 1');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_segment('bad', 'generate_series(1, 2) = 1');
\echo :LAST_ERROR_SQLSTATE
-- a syntax error points into the predicate
SELECT c360.create_segment('bad', $$loyalty_tier = 'gold' AND AND lifetime_value > 0$$);
\echo :LAST_ERROR_SQLSTATE
-- attempts to break out of the expression
SELECT c360.create_segment('bad', 'true) IS TRUE; DROP TABLE c360.orders; SELECT (true');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_segment('bad', 'true) FROM c360.customer_360 UNION SELECT (false');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_segment('bad', 'true) FROM c360.customer_360 /*');
\echo :LAST_ERROR_SQLSTATE
-- a bad name, a carried column that does not exist
SELECT c360.create_segment('Bad Name', 'true');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_segment('bad', 'true', ARRAY['customer_id', 'shoe_size']);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS segments FROM c360.segments;

--
-- Membership at creation: the member count is returned, members carry their payload, and
-- the outbox stays empty (members at creation are not changes).
--
SELECT c360.create_segment('vip_at_risk',
       $$loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')$$);
SELECT c360.create_segment('high_intent',
       $$product_views_last_30d >= 5 AND sessions_last_30d >= 2 AND lifecycle_stage <> 'active'$$);
SELECT c360.create_segment('support_escalation', 'has_open_support_issue AND lifetime_value > 1000',
       ARRAY['customer_id', 'email', 'lifetime_value', 'open_support_tickets']);
-- a NULL predicate value is not membership
SELECT c360.create_segment('ordered_before_2030', $$last_order_date < '2030-01-01 00:00+00'$$);
SELECT name, predicate, columns FROM c360.segments ORDER BY name;
SELECT segment, customer_id, payload FROM c360.segment_members ORDER BY segment, customer_id;
SELECT count(*) AS outbox_rows FROM c360.segment_changes;
SELECT pg_temp.membership_diffs() AS membership_diffs;
-- a second segment of the same name
SELECT c360.create_segment('vip_at_risk', 'true');
\echo :LAST_ERROR_SQLSTATE

--
-- Changes through apply_changes: enter, exit, update.
--
-- c1 orders again: active, so it exits vip_at_risk.  c3 becomes gold: lapsing gold, it enters.
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "o1b", "customer_id": "c1", "total_amount": 50, "created_at": "2030-05-31 12:00+00"}},
  {"input": "customers", "op": "update", "old": {"customer_id": "c3"}, "new": {"customer_id": "c3", "loyalty_tier": "gold"}}
]$$);
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();
-- c6 changes tier within the segment (a carried column): update.  c5 changes email, which
-- every segment carries by default: update in ordered_before_2030.
-- c2 opens a second ticket: open_support_tickets is carried by support_escalation: update.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "update", "old": {"customer_id": "c6"}, "new": {"customer_id": "c6", "loyalty_tier": "gold"}},
  {"input": "customers", "op": "update", "old": {"customer_id": "c5"}, "new": {"customer_id": "c5", "email": "c5@new.example.com"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t2b", "customer_id": "c2", "status": "open", "created_at": "2030-05-31 09:00+00"}}
]$$);
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();
-- A profile change that no segment carries or tests: no outbox row.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "update", "old": {"customer_id": "c2"}, "new": {"customer_id": "c2", "first_name": "Pat"}}
]$$);
SELECT count(*) AS outbox_rows FROM c360.segment_changes;
SELECT count(*) AS diffs FROM c360.verify();
-- Both of c2's tickets are resolved: c2 exits support_escalation.
SELECT c360.apply_changes($$[
  {"input": "support_tickets", "op": "update", "old": {"ticket_id": "t2"}, "new": {"ticket_id": "t2", "status": "resolved"}},
  {"input": "support_tickets", "op": "update", "old": {"ticket_id": "t2b"}, "new": {"ticket_id": "t2b", "status": "resolved"}}
]$$);
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();
-- Behaviour: c4 (gold, prospect) views products in two sessions, five views: high_intent.
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "c4", "session_id": "s1", "event_type": "product_view", "event_time": "2030-05-30 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "c4", "session_id": "s1", "event_type": "product_view", "event_time": "2030-05-30 10:01+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e3", "customer_id": "c4", "session_id": "s2", "event_type": "product_view", "event_time": "2030-05-31 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e4", "customer_id": "c4", "session_id": "s2", "event_type": "product_view", "event_time": "2030-05-31 10:01+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e5", "customer_id": "c4", "session_id": "s2", "event_type": "page_view", "event_time": "2030-05-31 10:02+00"}}
]$$);
SELECT count(*) AS outbox_rows FROM c360.segment_changes;
-- a cookie's view, linked to c4, makes the fifth: it enters
SELECT c360.apply_changes($$[
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e6", "customer_id": "ck-1", "session_id": "s3", "event_type": "product_view", "event_time": "2030-05-31 11:00+00"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i1", "customer_id": "c4", "identity_type": "cookie", "identity_value": "ck-1", "created_at": "2030-05-31 11:00+00"}}
]$$);
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();

--
-- Changes because time passed: c360.tick.
--
-- 2030-06-25: c2's last order (2030-05-20) is 36 days old, at_risk: platinum, it enters
-- vip_at_risk.
SELECT c360.tick('2030-06-25 00:00+00') > 0 AS changed;
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();
-- 2030-06-30: c4's two views of 05-30 leave the 30-day window: three views left, c4 exits
-- high_intent.
SELECT c360.tick('2030-06-30 00:00+00') > 0 AS changed;
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();
-- 2031-03-01: c1 and c2 are lapsing, still in; c3 and c6 are churned, out.
SELECT c360.tick('2031-03-01 00:00+00') > 0 AS changed;
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();

--
-- A deleted customer exits every segment it was in.
--
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "delete", "old": {"customer_id": "c2"}}
]$$);
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();

--
-- Sinks: create_sink needs no running broker; while a sink publishes a segment, the segment
-- cannot be dropped.
--
SELECT c360.create_sink('vip_out', 'vip_at_risk', 'kafka',
       '{"bootstrap.servers": "127.0.0.1:9", "topic": "vip_at_risk"}');
-- the sink starts after the newest outbox row, with the members as its snapshot
SELECT s.name, s.segment, p.seq = (SELECT max(seq) FROM c360.segment_changes) AS at_newest,
       (SELECT array_agg(customer_id ORDER BY customer_id) FROM c360.sink_snapshot n WHERE n.sink = s.name) AS snapshot
FROM c360.sinks s JOIN c360.sink_positions p ON p.sink = s.name;
SELECT name, segment, state, backlog, last_error FROM c360.sink_status;
SELECT c360.drop_segment('vip_at_risk');
\echo :LAST_ERROR_SQLSTATE
-- bad sinks
SELECT c360.create_sink('vip_out', 'vip_at_risk', 'kafka',
       '{"bootstrap.servers": "127.0.0.1:9", "topic": "again"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_sink('other', 'no_such_segment', 'kafka',
       '{"bootstrap.servers": "127.0.0.1:9", "topic": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_sink('other', 'vip_at_risk', 'kafka', '{"topic": "t"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_sink('other', 'vip_at_risk', 'webhook', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.drop_sink('no_such_sink');
\echo :LAST_ERROR_SQLSTATE
-- the outbox goes on while the sink is not running: its backlog grows (c3 orders again:
-- at_risk, so it enters vip_at_risk, and leaves ordered_before_2030)
SELECT c360.apply_changes($$[
  {"input": "orders", "op": "insert", "new": {"order_id": "o3b", "customer_id": "c3", "total_amount": 20, "created_at": "2030-12-01 10:00+00"}}
]$$);
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT name, backlog FROM c360.sink_status;
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();
-- drop the sink, then the segment: its members and outbox rows go with it
SELECT c360.drop_sink('vip_out');
SELECT count(*) AS sinks FROM c360.sinks;
SELECT c360.drop_segment('vip_at_risk');
SELECT c360.drop_segment('vip_at_risk');
\echo :LAST_ERROR_SQLSTATE
SELECT segment, count(*) FROM c360.segment_members GROUP BY segment ORDER BY segment;
SELECT DISTINCT segment FROM c360.segment_changes ORDER BY segment;
SELECT pg_temp.membership_diffs() AS membership_diffs;
-- changes go on for the remaining segments
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c7", "email": "c7@example.com", "loyalty_tier": "gold"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o7", "customer_id": "c7", "total_amount": 5000, "created_at": "2029-06-01 10:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t7", "customer_id": "c7", "status": "open", "created_at": "2031-02-20 09:00+00"}}
]$$);
SELECT * FROM outbox WHERE seq > :seen;
SELECT COALESCE(max(seq), 0) AS seen FROM c360.segment_changes \gset
SELECT pg_temp.membership_diffs() AS membership_diffs;
SELECT count(*) AS diffs FROM c360.verify();
