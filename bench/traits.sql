-- bench/traits.sql: the traits bench's own objects (bench/traits.sh), loaded after
-- bench/lib.sql into the base database, so every copy of it has them.  Nothing here touches
-- the extension's objects; the traits are created by bench/traits.sh in the copies.

-- The ten traits of the bench: five over events (lookbacks of 1, 7, 30 and 90 days and all
-- time; count(*), count(DISTINCT), mode(), first/last), five over orders (count, sum, max,
-- last value, avg with a filter).
CREATE TABLE bench.trait_defs (
    ord       integer PRIMARY KEY,
    name      text NOT NULL,
    input     text NOT NULL,
    aggregate text NOT NULL,
    filter    text,
    lookback  interval
);
INSERT INTO bench.trait_defs VALUES
    (1, 'cart_adds_7d', 'behavioral_events', 'count(*)', $$event_type = 'add_to_cart'$$, '7 days'),
    (2, 'events_1d', 'behavioral_events', 'count(*)', NULL, '1 day'),
    (3, 'products_30d', 'behavioral_events', 'count(DISTINCT product_id)', NULL, '30 days'),
    (4, 'fav_category_90d', 'behavioral_events', 'mode() WITHIN GROUP (ORDER BY category_id)', NULL, '90 days'),
    (5, 'last_viewed_product', 'behavioral_events', '(array_agg(product_id ORDER BY event_time DESC))[1]',
        $$event_type = 'product_view'$$, NULL),
    (6, 'orders_90d', 'orders', 'count(*)', NULL, '90 days'),
    (7, 'spend_365d', 'orders', 'sum(total_amount)', NULL, '365 days'),
    (8, 'max_order', 'orders', 'max(total_amount)', NULL, NULL),
    (9, 'last_status', 'orders', '(array_agg(order_status ORDER BY created_at DESC))[1]', NULL, NULL),
    (10, 'avg_delivered', 'orders', 'avg(total_amount)', $$order_status = 'delivered'$$, NULL);

-- Everything traits.sh times outside the apply phases: one row per step.
CREATE TABLE bench.timings (
    phase   text NOT NULL,
    step    text NOT NULL,
    seconds float8 NOT NULL,
    rows    bigint,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The apply phases' latencies, one row per chunk of batches.
CREATE TABLE bench.chunks (
    phase       text NOT NULL,
    first_batch integer NOT NULL,
    lat         float8[] NOT NULL,
    applied     bigint NOT NULL,
    PRIMARY KEY (phase, first_batch)
);

-- Apply staged batches p_from..p_to of a phase, one transaction each, exactly as
-- bench/run.sh does (bench.apply_range: only apply_changes and its commit are timed).
CREATE PROCEDURE bench.apply_chunk(p_phase text, p_from int, p_to int)
    LANGUAGE plpgsql AS $$
DECLARE
    lat     float8[] := '{}';
    applied bigint := 0;
BEGIN
    CALL bench.apply_range(p_phase, p_from, p_to, lat, applied);
    INSERT INTO bench.chunks VALUES (p_phase, p_from, lat, applied);
    COMMIT;
END $$;

-- Create the ten traits, one transaction each, timed one by one.  With
-- c360.trait_backfill_chunk above the profile's size each computes its trait at once;
-- with the default each returns 0 and leaves it backfilling.
CREATE PROCEDURE bench.create_traits(p_phase text)
    LANGUAGE plpgsql AS $$
DECLARE
    d record;
    t timestamptz;
    n bigint;
BEGIN
    COMMIT;
    FOR d IN SELECT * FROM bench.trait_defs ORDER BY ord LOOP
        t := clock_timestamp();
        n := c360.create_trait(d.name, d.input, d.aggregate, d.filter, d.lookback);
        COMMIT;
        INSERT INTO bench.timings (phase, step, seconds, rows)
        VALUES (p_phase, d.name, extract(epoch FROM clock_timestamp() - t), n);
        COMMIT;
    END LOOP;
END $$;

-- The chunked backfill, as the ticker or a user runs it: one chunk per transaction.
CREATE PROCEDURE bench.backfill(p_phase text)
    LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
BEGIN
    COMMIT;
    t := clock_timestamp();
    CALL c360.backfill_traits();
    INSERT INTO bench.timings (phase, step, seconds, rows)
    VALUES (p_phase, 'CALL c360.backfill_traits()', extract(epoch FROM clock_timestamp() - t),
            (SELECT sum(backfilled) FROM c360.column_catalog));
    COMMIT;
END $$;

-- The backfill's baseline: the same ten aggregates from the mirrors into a new table, with
-- one plain GROUP BY per input joined to the customers, events attributed through the
-- winning identity links as the extension attributes them, windows as c360.window_start()
-- draws them, counts 0 and other aggregates NULL for a customer with no rows.
CREATE PROCEDURE bench.ctas(p_phase text)
    LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    n bigint;
BEGIN
    DROP TABLE IF EXISTS bench.traits_ctas;
    COMMIT;
    t := clock_timestamp();
    CREATE TABLE bench.traits_ctas AS
    WITH b AS (
        SELECT c360.window_start(c360.as_of(), interval '1 day') AS d1,
               c360.window_start(c360.as_of(), interval '7 days') AS d7,
               c360.window_start(c360.as_of(), interval '30 days') AS d30,
               c360.window_start(c360.as_of(), interval '90 days') AS d90,
               c360.window_start(c360.as_of(), interval '365 days') AS d365),
    resolved AS (
        SELECT DISTINCT ON (identity_value) identity_value, customer_id
        FROM c360.identity_graph
        ORDER BY identity_value, created_at DESC NULLS LAST, identity_id DESC),
    ev AS (
        SELECT COALESCE(r.customer_id, e.customer_id) AS customer_id,
               count(*) FILTER (WHERE e.event_type = 'add_to_cart' AND e.event_time > b.d7) AS cart_adds_7d,
               count(*) FILTER (WHERE e.event_time > b.d1) AS events_1d,
               count(DISTINCT e.product_id) FILTER (WHERE e.event_time > b.d30) AS products_30d,
               mode() WITHIN GROUP (ORDER BY e.category_id) FILTER (WHERE e.event_time > b.d90)
                   AS fav_category_90d,
               (array_agg(e.product_id ORDER BY e.event_time DESC, e.event_id DESC)
                    FILTER (WHERE e.event_type = 'product_view'))[1] AS last_viewed_product
        FROM c360.behavioral_events e
        LEFT JOIN resolved r ON r.identity_value = e.customer_id
        CROSS JOIN b
        GROUP BY 1),
    od AS (
        SELECT o.customer_id,
               count(*) FILTER (WHERE o.created_at > b.d90) AS orders_90d,
               sum(o.total_amount) FILTER (WHERE o.created_at > b.d365) AS spend_365d,
               max(o.total_amount) AS max_order,
               (array_agg(o.order_status ORDER BY o.created_at DESC, o.order_id DESC))[1] AS last_status,
               avg(o.total_amount) FILTER (WHERE o.order_status = 'delivered') AS avg_delivered
        FROM c360.orders o CROSS JOIN b
        GROUP BY 1)
    SELECT c.customer_id,
           COALESCE(ev.cart_adds_7d, 0) AS cart_adds_7d, COALESCE(ev.events_1d, 0) AS events_1d,
           COALESCE(ev.products_30d, 0) AS products_30d, ev.fav_category_90d,
           ev.last_viewed_product,
           COALESCE(od.orders_90d, 0) AS orders_90d, od.spend_365d, od.max_order, od.last_status,
           od.avg_delivered
    FROM c360.customers c
    LEFT JOIN ev USING (customer_id)
    LEFT JOIN od USING (customer_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    COMMIT;
    INSERT INTO bench.timings (phase, step, seconds, rows)
    VALUES (p_phase, 'CREATE TABLE AS', extract(epoch FROM clock_timestamp() - t), n);
    COMMIT;
END $$;

-- Profile rows whose ten traits differ from the CREATE TABLE AS (as text, as verify()
-- compares): 0 shows the baseline computes what the backfill computed.
CREATE FUNCTION bench.ctas_differs() RETURNS bigint
    LANGUAGE plpgsql AS $$
BEGIN
    RETURN (SELECT count(*)
    FROM c360.customer_360 p FULL JOIN bench.traits_ctas t USING (customer_id)
    WHERE ROW(p.cart_adds_7d::text, p.events_1d::text, p.products_30d::text,
              p.fav_category_90d::text, p.last_viewed_product::text, p.orders_90d::text,
              p.spend_365d::text, p.max_order::text, p.last_status::text, p.avg_delivered::text)
          IS DISTINCT FROM
          ROW(t.cart_adds_7d::text, t.events_1d::text, t.products_30d::text,
              t.fav_category_90d::text, t.last_viewed_product::text, t.orders_90d::text,
              t.spend_365d::text, t.max_order::text, t.last_status::text, t.avg_delivered::text));
END $$;

-- One timed statement (tick), committed; its single value is the row count.
CREATE PROCEDURE bench.time_step(p_phase text, p_step text, p_sql text)
    LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    n bigint;
BEGIN
    COMMIT;
    t := clock_timestamp();
    EXECUTE p_sql INTO n;
    COMMIT;
    INSERT INTO bench.timings (phase, step, seconds, rows)
    VALUES (p_phase, p_step, extract(epoch FROM clock_timestamp() - t), n);
    COMMIT;
END $$;
