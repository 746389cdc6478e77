-- inputs: inputs of your own (c360.create_input).  A mirror of every column type fed by
-- apply_changes through the one apply path; a trait over it kept exact through inserts,
-- updates, moves, deletes and ticks; a segment on that trait; erase_customer and its
-- tombstone; every bad definition with its SQLSTATE; drop_input and its refusals.
-- verify() after each step.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-01-01 00:00+00');

SELECT c360.create_input('returns',
       'return_id text, order_id text, customer_id text, amount numeric, reason text, created_at timestamptz',
       key => 'return_id', customer_column => 'customer_id', time_column => 'created_at');
SELECT name, columns, key, customer_column, time_column, builtin FROM c360.inputs ORDER BY builtin, name;
\d c360.returns

-- every type an input's column may have
SELECT c360.create_input('prefs',
       'pref_id text, customer_id text, opted_in boolean, sends integer, opens bigint, score double precision, score_n numeric, born date, at timestamptz, extra jsonb, note text',
       'pref_id', 'customer_id');
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "a"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "b"}},
  {"input": "prefs", "op": "insert", "new": {"pref_id": "p1", "customer_id": "a", "opted_in": true, "sends": 3, "opens": 9000000000, "score": 0.25, "score_n": 1.50, "born": "1990-02-03", "at": "2029-12-01 10:00+00", "extra": {"tags": ["x", 1], "ok": null}, "note": "hi"}},
  {"input": "prefs", "op": "insert", "new": {"pref_id": "p2", "customer_id": "b", "opted_in": false, "extra": "just a string"}}
]$$);
SELECT * FROM c360.prefs ORDER BY pref_id;
-- an update of one column keeps the others; a repeated image writes nothing
SELECT c360.apply_change('prefs', 'update', '{"pref_id": "p1"}', '{"pref_id": "p1", "opted_in": false}');
SELECT c360.apply_change('prefs', 'update', '{"pref_id": "p1"}', '{"pref_id": "p1", "opted_in": false}');
SELECT pref_id, opted_in, sends, extra FROM c360.prefs ORDER BY pref_id;
-- a value the column's type cannot read names the input and the column
SELECT c360.apply_change('prefs', 'insert', NULL, '{"pref_id": "p3", "customer_id": "a", "sends": "many"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.apply_change('prefs', 'insert', NULL, '{"pref_id": "p3"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_trait('opted_in', 'prefs', 'bool_or(opted_in)');

-- traits over returns: refunds in 90 days, the count, the last reason
SELECT c360.create_trait('refunds_90d', 'returns', 'sum(amount)', lookback => '90 days');
SELECT c360.create_trait('returns_n', 'returns', 'count(*)');
SELECT c360.create_trait('last_reason', 'returns', '(array_agg(reason ORDER BY created_at DESC))[1]');
SELECT c360.create_segment('refunders', 'refunds_90d > 50', ARRAY['customer_id', 'refunds_90d']);
SELECT c360.apply_changes($$[
  {"input": "returns", "op": "insert", "new": {"return_id": "r1", "order_id": "o1", "customer_id": "a", "amount": 40, "reason": "size", "created_at": "2029-12-01 00:00+00"}},
  {"input": "returns", "op": "insert", "new": {"return_id": "r2", "order_id": "o2", "customer_id": "a", "amount": 30, "reason": "color", "created_at": "2029-10-05 00:00+00"}},
  {"input": "returns", "op": "insert", "new": {"return_id": "r3", "order_id": "o3", "customer_id": "b", "amount": 5, "reason": "late", "created_at": "2029-12-20 00:00+00"}}
]$$);
SELECT customer_id, refunds_90d, returns_n, last_reason, opted_in FROM c360.customer_360 ORDER BY 1;
SELECT segment, customer_id, change FROM c360.segment_changes ORDER BY seq;
SELECT * FROM c360.verify();

-- r2 (2029-10-05 00:00 UTC) leaves the 90-day window when as_of - 90 days, in the profile's
-- time zone (America/Los_Angeles, across the DST change), reaches it: at 2030-01-03 01:00 UTC
SELECT c360.tick('2030-01-03 00:59:59.999999+00');
SELECT c360.window_start(c360.as_of(), '90 days');
SELECT customer_id, refunds_90d FROM c360.customer_360 ORDER BY 1;
SELECT c360.tick('2030-01-03 01:00+00');
SELECT c360.window_start(c360.as_of(), '90 days');
SELECT customer_id, refunds_90d FROM c360.customer_360 ORDER BY 1;
SELECT segment, customer_id, change FROM c360.segment_changes ORDER BY seq;
SELECT * FROM c360.verify();

-- a return moves from a to b, another is deleted, one is updated in place
SELECT c360.apply_changes($$[
  {"input": "returns", "op": "update", "old": {"return_id": "r1"}, "new": {"return_id": "r1", "customer_id": "b"}},
  {"input": "returns", "op": "delete", "old": {"return_id": "r3"}},
  {"input": "returns", "op": "update", "old": {"return_id": "r2"}, "new": {"return_id": "r2", "amount": 31, "created_at": "2029-12-30 00:00+00"}}
]$$);
SELECT * FROM c360.returns ORDER BY return_id;
SELECT customer_id, refunds_90d, returns_n, last_reason FROM c360.customer_360 ORDER BY 1;
SELECT * FROM c360.verify();
SELECT input, purpose FROM c360.trait_statements() WHERE input = 'returns' ORDER BY 2;

-- bad definitions, each with its SQLSTATE; nothing is created
SELECT c360.create_input('returns', 'x text', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('orders', 'x text', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('customer_360', 'x text', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('Bad', 'x text', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('select', 'x text', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x money', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x nosuchtype', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text, y numeric(10,2)', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text, y text[]', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text NOT NULL', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text, PRIMARY KEY (x)', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text, x text', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', '"X" text', 'X', 'X');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text); DROP TABLE c360.orders; CREATE TABLE y (z text', 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text', 'y', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text', 'x', 'y');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text', 'x', 'x', 'y');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x integer, c text', 'x', 'c');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', 'x text, t date', 'x', 'x', 't');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.create_input('z1', NULL, 'x', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT to_regclass('c360.z1'), (SELECT count(*) FROM c360.inputs WHERE name = 'z1');

-- drop_input: refused for built-in inputs, unknown names, and while a trait reads it
SELECT c360.drop_input('orders');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.drop_input('nothing');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.drop_input('returns');
\echo :LAST_ERROR_SQLSTATE
-- a trait over an unknown input names the inputs
SELECT c360.create_trait('x', 'refunds', 'count(*)');
\echo :LAST_ERROR_SQLSTATE

-- erase_customer removes b's returns; the tombstone drops a late return of b
SELECT c360.erase_customer('b');
SELECT c360.apply_change('returns', 'insert', NULL, '{"return_id": "r9", "customer_id": "b", "amount": 1}');
SELECT return_id, customer_id FROM c360.returns ORDER BY 1;
SELECT * FROM c360.verify();

-- dropped: the traits first, then the input; created again with other columns, the
-- session sees the new ones
SELECT c360.drop_segment('refunders');
SELECT c360.drop_trait('refunds_90d'), c360.drop_trait('returns_n'), c360.drop_trait('last_reason');
SELECT c360.drop_input('returns');
SELECT c360.create_input('returns', 'return_id text, customer_id text, total numeric', 'return_id', 'customer_id');
SELECT c360.apply_change('returns', 'insert', NULL, '{"return_id": "n1", "customer_id": "a", "total": 2}');
SELECT * FROM c360.returns;
SELECT c360.drop_trait('opted_in');
SELECT c360.drop_input('returns'), c360.drop_input('prefs');
SELECT name FROM c360.inputs WHERE NOT builtin;
SELECT * FROM c360.verify();
