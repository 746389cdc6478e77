-- test/t_sink.sql: helpers of test/t_sink.sh, in schema t_sink of the test database.
--   t_sink.outbox          a copy of every outbox row (the sinks prune c360.segment_changes)
--   t_sink.snapshot        each sink's snapshot and starting position, copied at create_sink
--   t_sink.create_sink     c360.create_sink plus that copy, in one transaction
--   t_sink.topic           a topic as read back by kcat (key, headers, value), in order
--   t_sink.expected(sink)  the messages the sink must publish, in order
--   t_sink.compare(sink, exact, base)  problems of t_sink.topic against expected(sink)
--   t_sink.membership_diffs(segment)  members vs the predicate query, both ways
CREATE SCHEMA t_sink;

CREATE TABLE t_sink.outbox (LIKE c360.segment_changes);
CREATE FUNCTION t_sink.copy_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO t_sink.outbox SELECT NEW.*;
    RETURN NULL;
END
$$;
CREATE TRIGGER t_sink_copy AFTER INSERT ON c360.segment_changes
    FOR EACH ROW EXECUTE FUNCTION t_sink.copy_outbox();

-- start: the newest outbox seq when the sink was created (the outbox copy is never pruned,
-- so this holds even when c360.segment_changes was empty); seq: the sink's position then,
-- which its snapshot messages carry.
CREATE TABLE t_sink.snapshot (sink text, customer_id text, payload jsonb, seq bigint, start bigint);
-- create_sink holds the clock lock until commit: no outbox row commits meanwhile.
CREATE FUNCTION t_sink.create_sink(name text, segment text, options jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    start bigint;
BEGIN
    PERFORM c360.create_sink(name, segment, 'kafka', options);
    start := (SELECT COALESCE(max(o.seq), 0) FROM t_sink.outbox o);
    INSERT INTO t_sink.snapshot
    SELECT s.sink, s.customer_id, s.payload, p.seq, start
    FROM c360.sink_snapshot s JOIN c360.sink_positions p USING (sink) WHERE s.sink = name;
    INSERT INTO t_sink.snapshot
    SELECT p.sink, NULL, NULL, p.seq, start FROM c360.sink_positions p WHERE p.sink = name;
    RETURN (SELECT count(*) FROM c360.sink_snapshot s WHERE s.sink = name);
END
$$;

CREATE TABLE t_sink.topic (n bigserial, k text, h text, v text);

-- The snapshot's members in customer_id order (as the worker reads them, by its index),
-- each an enter at the starting position; then the segment's outbox rows after it.
CREATE FUNCTION t_sink.expected(sink_name text)
RETURNS TABLE (i bigint, seq bigint, customer_id text, change text, payload jsonb)
LANGUAGE sql AS $$
    WITH start AS (SELECT start FROM t_sink.snapshot WHERE sink = sink_name AND customer_id IS NULL),
    snap AS (
        SELECT row_number() OVER (ORDER BY s.customer_id) AS i, s.seq, s.customer_id,
               'enter'::text AS change, s.payload
        FROM t_sink.snapshot s WHERE s.sink = sink_name AND s.customer_id IS NOT NULL)
    SELECT * FROM snap
    UNION ALL
    SELECT (SELECT count(*) FROM snap) + row_number() OVER (ORDER BY o.seq), o.seq, o.customer_id,
           o.change, o.payload
    FROM t_sink.outbox o JOIN c360.sinks k ON k.segment = o.segment AND k.name = sink_name
    WHERE o.seq > (SELECT start FROM start)
$$;

-- What is wrong with t_sink.topic as the sink's topic, one row per problem (none: it is
-- right).  The topic was read from offset base (the messages before it were checked
-- earlier), so its message n is the topic's message base + n.  exact: the topic is the
-- expected sequence, message for message.  Otherwise repeats are allowed, but only as a
-- replay: each message is the next expected one or goes back to an earlier one, so nothing
-- is skipped and the order is kept.
CREATE FUNCTION t_sink.compare(sink_name text, exact boolean, base bigint DEFAULT 0)
RETURNS TABLE (problem text)
LANGUAGE sql AS $$
    WITH e AS (SELECT * FROM t_sink.expected(sink_name)),
    a AS (SELECT base + t.n AS n, t.k, t.h, t.v::jsonb AS v FROM t_sink.topic t),
    m AS (SELECT a.*, e.i, e.payload, lag(e.i, 1, base) OVER (ORDER BY a.n) AS prev_i
          FROM a LEFT JOIN e ON e.seq = (a.v->>'seq')::bigint AND e.customer_id = a.v->>'customer_id'
                             AND e.change = a.v->>'change')
    SELECT format('message %s is not expected: %s', n, v) FROM m WHERE i IS NULL
    UNION ALL
    SELECT format('message %s: key %s, header %s, segment %s, profile %s (expected %s)', n, k, h,
                  v->>'segment', v->'profile', payload)
    FROM m WHERE i IS NOT NULL
      AND (k IS DISTINCT FROM v->>'customer_id' OR h IS DISTINCT FROM 'seq=' || (v->>'seq')
           OR v->'profile' IS DISTINCT FROM payload
           OR v->>'segment' IS DISTINCT FROM (SELECT segment FROM c360.sinks WHERE name = sink_name))
    UNION ALL
    SELECT format('message %s is expected message %s', n, i) FROM m WHERE exact AND i <> n
    UNION ALL
    SELECT format('message %s (expected #%s) skips ahead of #%s', n, i, prev_i)
    FROM m WHERE NOT exact AND i > prev_i + 1
    UNION ALL
    SELECT format('the topic has %s messages, %s expected', base + (SELECT count(*) FROM a),
                  (SELECT count(*) FROM e))
    WHERE exact AND base + (SELECT count(*) FROM a) <> (SELECT count(*) FROM e)
    UNION ALL
    SELECT format('the topic reaches expected message %s of %s', (SELECT max(i) FROM m), (SELECT count(*) FROM e))
    WHERE (SELECT COALESCE(max(i), 0) FROM m) <> (SELECT count(*) FROM e)
$$;

CREATE FUNCTION t_sink.membership_diffs(segment_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    pred text := (SELECT predicate FROM c360.segments WHERE name = segment_name);
    n bigint;
BEGIN
    EXECUTE format(
        'WITH want AS (SELECT customer_id FROM c360.customer_360 WHERE (%s) IS TRUE),
              have AS (SELECT customer_id FROM c360.segment_members WHERE segment = %L)
         SELECT count(*) FROM ((TABLE want EXCEPT TABLE have) UNION ALL (TABLE have EXCEPT TABLE want)) d',
        pred, segment_name) INTO n;
    RETURN n;
END
$$;
