-- bench/sizes.sql: the scale bench's shop (bench/sizes.sh), loaded after bench/lib.sql into
-- a database of its own per size.  psql variables: customers, changes, batch.  Orders (2 a
-- customer), support tickets (1 in 2 customers, a fifth of them open) and events (5 a
-- customer) are written straight into the mirrors, in chunks of a million rows
-- a transaction: with c360.rebuild() afterwards that is the fastest way in (README,
-- "Loading a large history"); rebuild() is timed by the script.  One customer in 100 is
-- planted as bench/data.sql does: its last order crosses 30, 90 or 365 days, or its oldest
-- in-window event leaves the 30-day window, in the hour after bench.t0(), so that a tick of
-- an hour finds 1% due.  Deterministic (setseed).

SET max_parallel_workers_per_gather = 0;
SELECT setseed(0.19) \gset

CREATE TABLE bench.planted AS
SELECT i, bench.customer(i) AS customer_id, (i / 100) % 4 AS kind,
       bench.t0() - make_interval(days => (ARRAY[30, 90, 365, 30])[(i / 100) % 4 + 1])
                  + make_interval(mins => 1 + ((i / 100) % 58)::int) AS at
FROM generate_series(100, :customers, 100) i;
CREATE UNIQUE INDEX ON bench.planted (i);

-- p_total rows of a mirror, a million per transaction
CREATE PROCEDURE bench.load_mirror(p_table text, p_total bigint, p_customers bigint)
    LANGUAGE plpgsql AS $$
BEGIN
    FOR lo IN 0..p_total - 1 BY 1000000 LOOP
        IF p_table = 'customers' THEN
            INSERT INTO c360.customers
            SELECT bench.customer(i), 'user' || i || '@example.com',
                   (ARRAY['Ana','Ben','Chloe','Dev','Emma','Farid','Gia','Hugo'])[1 + i % 8],
                   (ARRAY['Smith','Garcia','Chen','Okafor','Novak','Silva'])[1 + i % 6],
                   '+1555' || lpad(i::text, 8, '0'),
                   (ARRAY['organic','paid_search','social','referral','email'])[1 + floor(random() * 5)::int],
                   bench.t0() - random() * interval '1000 days',
                   (ARRAY['bronze','silver','gold','platinum',NULL])[1 + floor(random() * 5)::int],
                   bench.t0() - random() * interval '100 days'
            FROM generate_series(lo + 1, least(lo + 1000000, p_total)) i;
        ELSIF p_table = 'support_tickets' THEN
            INSERT INTO c360.support_tickets
            SELECT 't' || s, bench.customer(1 + floor(random() * p_customers)::bigint),
                   CASE WHEN random() < 0.2 THEN 'open' ELSE 'resolved' END,
                   (ARRAY['billing','delivery','product','account'])[1 + floor(random() * 4)::int],
                   bench.t0() - random() * interval '400 days', NULL
            FROM generate_series(lo + 1, least(lo + 1000000, p_total)) s;
        ELSIF p_table = 'orders' THEN
            -- a planted customer's orders all precede its planted last order
            INSERT INTO c360.orders
            SELECT 'o' || s, bench.customer(o.ci),
                   (ARRAY['delivered','shipped','pending','cancelled','returned'])[1 + floor(random() * 5)::int],
                   round((5 + random() * 295)::numeric, 2), 1 + floor(random() * 6)::int,
                   (ARRAY['web','mobile','store','marketplace'])[1 + floor(random() * 4)::int],
                   CASE WHEN p.kind < 3 THEN least(o.at, p.at - interval '1 day') ELSE o.at END,
                   CASE WHEN p.kind < 3 THEN least(o.at, p.at - interval '1 day') ELSE o.at END
            FROM (SELECT s, 1 + floor(random() * p_customers)::bigint AS ci,
                         bench.off_band(bench.t0() - random() * interval '730 days') AS at
                  FROM generate_series(lo + 1, least(lo + 1000000, p_total)) s) o
            LEFT JOIN bench.planted p ON p.i = o.ci;
        ELSE
            INSERT INTO c360.behavioral_events
            SELECT 'e' || s, bench.customer(ci), 's' || ci || '-' || floor(random() * 4)::int,
                   (ARRAY['product_view','product_view','page_view','add_to_cart','purchase'])[1 + floor(random() * 5)::int],
                   'p' || floor(random() * 5000)::int, 'k' || floor(random() * 50)::int,
                   bench.off_band(bench.t0() - random() * interval '60 days')
            FROM (SELECT s, 1 + floor(random() * p_customers)::bigint AS ci
                  FROM generate_series(lo + 1, least(lo + 1000000, p_total)) s) g;
        END IF;
        COMMIT;
    END LOOP;
END $$;

CALL bench.load_mirror('customers', :customers, :customers);
CALL bench.load_mirror('orders', 2 * :customers, :customers);
-- the planted last orders and oldest in-window events
INSERT INTO c360.orders
SELECT 'od' || i, customer_id, 'delivered', 99.50, 2, 'web', at, at FROM bench.planted WHERE kind < 3;
CALL bench.load_mirror('support_tickets', :customers / 2, :customers);
CALL bench.load_mirror('behavioral_events', 5 * :customers, :customers);
INSERT INTO c360.behavioral_events
SELECT 'ed' || i, customer_id, 's' || i || '-old', 'product_view', 'p1', 'k1', at
FROM bench.planted WHERE kind = 3;

-- The measured changes, as bench/data.sql draws them: new events within 30 days, and order
-- changes (bench.draw_order_changes).  :changes of each, in batches of :batch.
INSERT INTO bench.batches
SELECT 'events', (seq - 1) / :batch + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert',
                                    'new', to_jsonb(e) - 'seq') ORDER BY seq)::text
FROM bench.draw_events('m', :changes, :customers) e GROUP BY 2;

CREATE TABLE bench.order_changes AS
SELECT * FROM bench.draw_order_changes(:changes, :customers, 'c360.orders');

INSERT INTO bench.batches
SELECT 'orders', (seq - 1) / :batch + 1, count(*),
       jsonb_agg(jsonb_build_object('input', 'orders', 'op', op,
                                    'old', CASE WHEN op = 'update' THEN jsonb_build_object('order_id', order_id) END,
                                    'new', to_jsonb(o) - 'seq' - 'op') ORDER BY seq)::text
FROM bench.order_changes o GROUP BY 2;

-- The floors (README, Benchmarks): at each size, the least any design that keeps the
-- profile exact per batch writes, so that how much of a change's cost growth is the
-- machine's (random pages of a larger database) and how much the maintainer's shows in one
-- run.  Drawn apart from the measured changes (other random customers, so that neither
-- finds the other's pages cached), from tables (no JSON), each batch rolled back.
CREATE TABLE bench.floor_events AS
SELECT (seq - 1) / :batch + 1 AS batch_no, * FROM bench.draw_events('f', :changes, :customers);
CREATE INDEX ON bench.floor_events (batch_no);
CREATE TABLE bench.floor_orders AS
SELECT (seq - 1) / :batch + 1 AS batch_no, d.*, o.total_amount AS old_amount
FROM bench.draw_order_changes(:changes, :customers, 'c360.orders') d
LEFT JOIN c360.orders o ON d.op = 'update' AND o.order_id = d.order_id;
UPDATE bench.floor_orders SET order_id = 'f' || order_id WHERE op = 'insert';
CREATE INDEX ON bench.floor_orders (batch_no);

-- Per batch: events are the mirror rows and their owners' counters (bench.events_floor); order
-- changes the rows, new or updated, and their owners' count, sum, average and latest date,
-- the old amount taken from the change as a CDC event carries it.  Rolled back.
CREATE PROCEDURE bench.size_floors()
    LANGUAGE plpgsql AS $$
DECLARE
    t   timestamptz;
    lat float8[] := '{}';
    way text[] := '{}';
    k   bigint[] := '{}';
    f   record;
BEGIN
    COMMIT;
    FOR b IN 1..(SELECT max(batch_no) FROM bench.floor_events) LOOP
        SELECT * INTO f FROM bench.floor_batch(b);
        t := clock_timestamp();
        PERFORM bench.events_floor(f.ids, f.cust, f.sess, f.typ, f.prod, f.cat, f.at);
        lat := lat || extract(epoch FROM clock_timestamp() - t)::float8 * 1000;
        way := way || 'floor_events'::text;
        ROLLBACK;
        k := k || (SELECT count(*) FROM bench.floor_events WHERE batch_no = b);
        t := clock_timestamp();
        WITH ins AS (
            INSERT INTO c360.orders
            SELECT order_id, customer_id, order_status, total_amount, item_count, channel,
                   created_at, updated_at
            FROM bench.floor_orders WHERE batch_no = b AND op = 'insert'
            RETURNING customer_id, total_amount, created_at),
        upd AS (
            UPDATE c360.orders o SET order_status = u.order_status, total_amount = u.total_amount,
                   updated_at = u.updated_at
            FROM bench.floor_orders u
            WHERE u.batch_no = b AND u.op = 'update' AND o.order_id = u.order_id
            RETURNING o.customer_id, u.total_amount - u.old_amount AS d),
        per AS (
            SELECT c.customer_id, sum(c.cnt) AS cnt, sum(c.amt) AS amt, max(c.at) AS at
            FROM (SELECT i.customer_id, 1 AS cnt, i.total_amount AS amt, i.created_at AS at FROM ins i
                  UNION ALL SELECT u.customer_id, 0, u.d, NULL FROM upd u) c
            GROUP BY c.customer_id)
        UPDATE c360.customer_360 p
        SET total_orders = p.total_orders + per.cnt, lifetime_value = p.lifetime_value + per.amt,
            avg_order_value = (p.lifetime_value + per.amt) / nullif(p.total_orders + per.cnt, 0),
            last_order_date = greatest(p.last_order_date, per.at),
            profile_updated_at = clock_timestamp()
        FROM per WHERE p.customer_id = per.customer_id;
        lat := lat || extract(epoch FROM clock_timestamp() - t)::float8 * 1000;
        way := way || 'floor_orders'::text;
        ROLLBACK;
        k := k || (SELECT count(*) FROM bench.floor_orders WHERE batch_no = b);
    END LOOP;
    INSERT INTO bench.results (phase, rows, seconds, batches, p50_ms, p99_ms, max_ms)
    SELECT w, sum(r), sum(x) / 1000, count(*), bench.pct(array_agg(x), 0.5),
           bench.pct(array_agg(x), 0.99), max(x)
    FROM unnest(way, lat, k) u(w, x, r) GROUP BY w;
    COMMIT;
END $$;

-- The tick's floor: the due customers' profile rows (the planted ones, 1%), each written
-- once, found by key; rolled back.  Run after the tick, on the pages it read: a lower bound.
CREATE PROCEDURE bench.tick_floor()
    LANGUAGE plpgsql AS $$
DECLARE
    t       timestamptz;
    ids     text[] := (SELECT array_agg(customer_id ORDER BY customer_id) FROM bench.planted);
    n       bigint;
    elapsed float8;
BEGIN
    COMMIT;
    t := clock_timestamp();
    UPDATE c360.customer_360 SET profile_updated_at = clock_timestamp() WHERE customer_id = ANY(ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    elapsed := extract(epoch FROM clock_timestamp() - t);
    ROLLBACK;
    INSERT INTO bench.results (phase, rows, seconds, batches) VALUES ('tick_floor', n, elapsed, 1);
    COMMIT;
END $$;

-- Point lookups: random customers, each timed on the server.
CREATE FUNCTION bench.lookups(n int, customers bigint) RETURNS float8[]
    LANGUAGE plpgsql AS $$
DECLARE
    ms  float8[] := '{}';
    t   timestamptz;
    id  text;
    rec record;
BEGIN
    FOR k IN 1..n LOOP
        id := bench.customer(1 + floor(random() * customers)::bigint);
        t := clock_timestamp();
        SELECT * INTO rec FROM c360.customer_360 WHERE customer_id = id;
        ms := ms || extract(epoch FROM clock_timestamp() - t)::float8 * 1000;
    END LOOP;
    RETURN ms;
END $$;
ANALYZE;
