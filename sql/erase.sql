-- erase: c360.erase_customer removes a customer from every mirror, rollup, profile row,
-- segment and dead letter (events attributed through identity links included), scrubs the
-- outbox rows a sink still has to publish down to the id, and leaves a tombstone holding only
-- a salted hash; late changes for the id are dropped and counted, and a neighbour whose id
-- has the erased id as a prefix is untouched.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-06-01 00:00+00');
\set SHOW_CONTEXT never

-- Rows of every table in schema c360 that hold the text as a whole token, in any column.
CREATE FUNCTION pg_temp.holding(needle text) RETURNS TABLE (tbl text, n bigint)
LANGUAGE plpgsql AS $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c
             WHERE c.relnamespace = 'c360'::regnamespace AND c.relkind = 'r' ORDER BY 1 LOOP
        EXECUTE format('SELECT count(*) FROM %s x WHERE x::text ~ c360._token_pattern(%L)', t, needle)
        INTO n;
        IF n > 0 THEN
            tbl := t::text;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- cust-7 (gold, at risk) has an order, a ticket, events under its own id and under a cookie
-- linked to it, and a phone link; cust-70 is its neighbour and shares nothing with it.
SELECT c360.apply_changes('[
  {"input": "customers", "op": "insert", "new": {"customer_id": "cust-7", "email": "seven@example.com", "first_name": "Sev", "loyalty_tier": "gold", "signup_date": "2029-01-01 00:00+00"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "cust-70", "email": "seventy@example.com", "loyalty_tier": "gold", "signup_date": "2029-01-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o1", "customer_id": "cust-7", "order_status": "delivered", "total_amount": 120, "channel": "web", "created_at": "2030-03-01 10:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o2", "customer_id": "cust-70", "order_status": "delivered", "total_amount": 80, "channel": "app", "created_at": "2030-03-01 10:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t1", "customer_id": "cust-7", "status": "open", "category": "billing", "created_at": "2030-05-30 09:00+00"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i1", "customer_id": "cust-7", "identity_type": "cookie", "identity_value": "ck-7"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i2", "customer_id": "cust-70", "identity_type": "cookie", "identity_value": "ck-70"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "ck-7", "session_id": "s1", "event_type": "product_view", "event_time": "2030-05-31 10:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e2", "customer_id": "cust-7", "session_id": "s1", "event_type": "page_view", "event_time": "2030-05-31 10:05+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e3", "customer_id": "ck-70", "session_id": "s2", "event_type": "page_view", "event_time": "2030-05-31 11:00+00"}}
]');
SELECT c360.create_segment('gold', $$loyalty_tier = 'gold'$$);
SELECT c360.create_segment('open_issue', $$has_open_support_issue$$);
-- a sink keeps the gold segment's outbox rows until it publishes them (no worker runs here)
SELECT c360.create_sink('gold_out', 'gold', 'kafka', '{"bootstrap.servers": "127.0.0.1:1", "topic": "t"}');
-- an update of cust-7 waits in the outbox with its email in the payload
SELECT c360.apply_changes('[{"input": "customers", "op": "update", "old": {"customer_id": "cust-7"}, "new": {"customer_id": "cust-7", "email": "seven@example.org", "loyalty_tier": "gold", "signup_date": "2029-01-01 00:00+00"}}]');
INSERT INTO c360.dead_letters (source, position, payload, error) VALUES
  ('crm', '1', '{"customer_id": "cust-7", "signup_date": "soon"}', 'invalid input syntax for type timestamp'),
  ('crm', '2', '{"customer_id": "cust-70", "signup_date": "later"}', 'invalid input syntax for type timestamp'),
  ('web', '3', 'mail from seven@example.org', 'not JSON');
SELECT * FROM pg_temp.holding('cust-7');

SELECT c360.erase_customer('cust-7');
SELECT * FROM c360.verify();
-- the outbox keeps the id (a sink must still publish the exit) and nothing else
SELECT segment, customer_id, change, payload FROM c360.segment_changes WHERE customer_id = 'cust-7' ORDER BY seq;
SELECT * FROM pg_temp.holding('cust-7');
SELECT * FROM pg_temp.holding('seven@example.org');
SELECT * FROM pg_temp.holding('ck-7');
-- the neighbour is all there
SELECT customer_id, email, total_orders, events_last_30d FROM c360.customer_360 ORDER BY 1;
SELECT * FROM pg_temp.holding('cust-70');
SELECT source, position FROM c360.dead_letters ORDER BY id;
-- the tombstone holds a hash, not the id
SELECT count(*) AS tombstones, bool_and(id_hash = c360._erase_hash('cust-7')) AS hashed,
       bool_and(position(convert_to('cust-7', 'UTF8') IN id_hash) = 0) AS no_id
FROM c360.erased;

-- Late data for the erased id is dropped and counted; data for others goes on.
SELECT c360.apply_changes('[
  {"input": "customers", "op": "update", "old": {"customer_id": "cust-7"}, "new": {"customer_id": "cust-7", "email": "seven@example.com", "loyalty_tier": "gold"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o3", "customer_id": "cust-7", "total_amount": 5, "created_at": "2030-05-31 00:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e4", "customer_id": "cust-7", "event_time": "2030-05-31 12:00+00"}},
  {"input": "identity_graph", "op": "insert", "new": {"identity_id": "i3", "customer_id": "cust-70", "identity_type": "cookie", "identity_value": "cust-7"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o4", "customer_id": "cust-70", "total_amount": 5, "created_at": "2030-05-31 00:00+00"}}
]');
-- events alone take the by-difference path: filtered too
SELECT c360.apply_change('behavioral_events', 'insert', NULL, '{"event_id": "e5", "customer_id": "cust-7", "event_time": "2030-05-31 12:00+00"}');
SELECT late_dropped, last_dropped_at IS NOT NULL AS counted_at FROM c360.erased;
SELECT * FROM pg_temp.holding('cust-7');
SELECT customer_id, total_orders FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();

-- Erasing twice, or an unknown id, removes nothing and keeps one tombstone per id.
SELECT c360.erase_customer('cust-7');
SELECT count(*) FROM c360.erased;
SELECT c360.erase_customer(NULL);

-- The tombstone check follows the clock: a tick and a rebuild do not bring anything back.
SELECT c360.tick('2030-06-02 00:00+00') >= 0 AS ticked;
SELECT c360.rebuild() >= 0 AS rebuilt;
SELECT * FROM pg_temp.holding('cust-7');
SELECT * FROM c360.verify();

SELECT c360.drop_sink('gold_out');
