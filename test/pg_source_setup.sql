-- test/pg_source_setup.sql: the source database of test/t_pg_source.sh, on the second
-- (wal_level = logical) cluster.  The article's orders, customers and support_tickets, each
-- with one extra column the profile ignores; a table no publication holds (unrelated WAL);
-- a log of committed row changes per table (statement triggers, same transaction as the
-- change, so it counts exactly what the stream must deliver); and the generators the test
-- calls: add_orders(n), churn(...) (many small transactions), big_changes(...) (a few big
-- statements).
SET client_min_messages = warning;

CREATE TABLE customers (
    customer_id         text PRIMARY KEY,
    email               text,
    first_name          text,
    last_name           text,
    phone               text,
    acquisition_channel text,
    signup_date         timestamptz,
    loyalty_tier        text,
    last_updated        timestamptz,
    crm_score           integer          -- not an input column: ignored
);

CREATE TABLE support_tickets (
    ticket_id   text PRIMARY KEY,
    customer_id text NOT NULL,
    status      text,
    category    text,
    created_at  timestamptz,
    resolved_at timestamptz,
    assignee    text                     -- ignored
);
-- one table with FULL, the others DEFAULT: both replica identities stream
ALTER TABLE support_tickets REPLICA IDENTITY FULL;

CREATE TABLE orders (
    order_id       text PRIMARY KEY,
    customer_id    text NOT NULL,
    order_status   text,
    total_amount   numeric(12,2),
    item_count     integer,
    channel        text,
    created_at     timestamptz,
    updated_at     timestamptz,
    warehouse_note text                  -- ignored
);
CREATE INDEX ON orders (customer_id);

-- in no publication: WAL the sources must not hold back
CREATE TABLE unrelated (id bigserial PRIMARY KEY, payload text);

CREATE SEQUENCE order_seq;
CREATE SEQUENCE ticket_seq;

-- the background writer loops until ctl.stop
CREATE TABLE ctl (one boolean PRIMARY KEY DEFAULT true CHECK (one), stop boolean NOT NULL DEFAULT false);
INSERT INTO ctl DEFAULT VALUES;

-- committed row changes per table
CREATE TABLE change_log (tbl text NOT NULL, n bigint NOT NULL);
CREATE FUNCTION log_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO change_log SELECT TG_TABLE_NAME, count(*) FROM old_rows;
    ELSE
        INSERT INTO change_log SELECT TG_TABLE_NAME, count(*) FROM new_rows;
    END IF;
    RETURN NULL;
END
$$;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['customers', 'support_tickets', 'orders'] LOOP
        EXECUTE format('CREATE TRIGGER %1$s_ins AFTER INSERT ON %1$I REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION log_changes()', t);
        EXECUTE format('CREATE TRIGGER %1$s_upd AFTER UPDATE ON %1$I REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION log_changes()', t);
        EXECUTE format('CREATE TRIGGER %1$s_del AFTER DELETE ON %1$I REFERENCING OLD TABLE AS old_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION log_changes()', t);
    END LOOP;
END
$$;

-- 2,000 customers and a few ids (c02001..c02050) that orders may name before the customer exists
CREATE FUNCTION rand_cust() RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT 'c' || lpad((1 + floor(random() * 2050))::int::text, 5, '0') $$;
CREATE FUNCTION pick(a text[]) RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT a[1 + floor(random() * array_length(a, 1))::int] $$;
CREATE FUNCTION new_order_id() RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT 'o' || lpad(nextval('order_seq')::text, 9, '0') $$;
-- an existing order, uniformly-ish: the first at or after a random id
CREATE FUNCTION any_order_id() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT COALESCE(
        (SELECT order_id FROM orders
         WHERE order_id >= 'o' || lpad((1 + floor(random() * (SELECT last_value FROM order_seq)))::bigint::text, 9, '0')
         ORDER BY order_id LIMIT 1),
        (SELECT min(order_id) FROM orders))
$$;
CREATE FUNCTION any_ticket_id() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT COALESCE(
        (SELECT ticket_id FROM support_tickets
         WHERE ticket_id >= 't' || lpad((1 + floor(random() * (SELECT last_value FROM ticket_seq)))::bigint::text, 9, '0')
         ORDER BY ticket_id LIMIT 1),
        (SELECT min(ticket_id) FROM support_tickets))
$$;
-- about 10 kB that does not compress below the TOAST threshold
CREATE FUNCTION big_text() RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 300) $$;

CREATE FUNCTION add_orders(n integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO orders (order_id, customer_id, order_status, total_amount, item_count, channel,
                        created_at, updated_at, warehouse_note)
    SELECT new_order_id(), rand_cust(),
           pick('{pending,paid,shipped,delivered,cancelled,returned}'),
           round((random() * 500)::numeric, 2), 1 + floor(random() * 9)::int,
           pick('{web,mobile,store,phone}'),
           now() - random() * interval '500 days', clock_timestamp(), 'aisle ' || g
    FROM generate_series(1, n) g;
END
$$;

CREATE FUNCTION add_tickets(n integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO support_tickets (ticket_id, customer_id, status, category, created_at, resolved_at, assignee)
    SELECT 't' || lpad(nextval('ticket_seq')::text, 9, '0'), rand_cust(),
           s, pick('{billing,shipping,product,account}'),
           now() - random() * interval '200 days',
           CASE WHEN s IN ('resolved', 'closed') THEN now() - random() * interval '10 days' END,
           'agent ' || g
    FROM generate_series(1, n) g, LATERAL (SELECT pick('{open,pending,resolved,closed}') AS s) x;
END
$$;

-- One random change to orders, customers or support_tickets (mostly orders): inserts, updates,
-- customer_id changes, key changes, deletes.
CREATE FUNCTION one_change() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r float8 := random();
    id text;
BEGIN
    IF r < 0.28 THEN
        PERFORM add_orders(1);
    ELSIF r < 0.55 THEN
        id := any_order_id();
        UPDATE orders SET order_status = pick('{paid,shipped,delivered,cancelled,returned}'),
                          total_amount = round((random() * 500)::numeric, 2),
                          updated_at = clock_timestamp()
        WHERE order_id = id;
    ELSIF r < 0.66 THEN
        id := any_order_id();
        UPDATE orders SET customer_id = rand_cust(), updated_at = clock_timestamp() WHERE order_id = id;
    ELSIF r < 0.68 THEN
        id := any_order_id();
        UPDATE orders SET order_id = new_order_id() WHERE order_id = id;
    ELSIF r < 0.80 THEN
        id := any_order_id();
        DELETE FROM orders WHERE order_id = id;
    ELSIF r < 0.87 THEN
        id := rand_cust();
        UPDATE customers SET loyalty_tier = pick('{bronze,silver,gold,platinum}'),
                             email = 'x' || floor(random() * 1e6) || '@example.com',
                             last_updated = clock_timestamp()
        WHERE customer_id = id;
    ELSIF r < 0.88 THEN
        id := rand_cust();
        INSERT INTO customers (customer_id, email, first_name, last_name, acquisition_channel,
                               signup_date, loyalty_tier, last_updated)
        VALUES (id, id || '@example.com', 'New', 'Customer', pick('{web,mobile,store}'),
                now() - random() * interval '900 days', 'bronze', clock_timestamp())
        ON CONFLICT (customer_id) DO UPDATE SET first_name = 'Again', last_updated = clock_timestamp();
    ELSIF r < 0.89 THEN
        id := rand_cust();
        DELETE FROM customers WHERE customer_id = id;
    ELSIF r < 0.94 THEN
        PERFORM add_tickets(1);
    ELSE
        id := any_ticket_id();
        UPDATE support_tickets SET status = pick('{resolved,closed,open}'),
                                   resolved_at = clock_timestamp()
        WHERE ticket_id = id;
    END IF;
END
$$;

-- Many small transactions of 1 to 3 changes: n_changes of them, or until ctl.stop.
CREATE PROCEDURE churn(n_changes integer, pause float8 DEFAULT 0, until_stopped boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    done integer := 0;
BEGIN
    LOOP
        IF until_stopped THEN
            EXIT WHEN (SELECT stop FROM ctl);
        ELSE
            EXIT WHEN done >= n_changes;
        END IF;
        FOR k IN 1 .. 1 + floor(random() * 3)::int LOOP
            PERFORM one_change();
            done := done + 1;
        END LOOP;
        COMMIT;
        IF pause > 0 THEN
            PERFORM pg_sleep(pause);
        END IF;
    END LOOP;
END
$$;

-- The initial data.
INSERT INTO customers
SELECT 'c' || lpad(g::text, 5, '0'), 'cust' || g || '@example.com', 'First' || g, 'Last' || g,
       CASE WHEN g % 100 = 0 THEN big_text() ELSE '+1-555-' || lpad(g::text, 4, '0') END,
       pick('{web,mobile,store,referral}'), now() - random() * interval '900 days',
       pick('{bronze,silver,gold,platinum}'), now(), g % 97
FROM generate_series(1, 2000) g;
-- values COPY's text format must escape: the snapshot decodes them back exactly
INSERT INTO customers VALUES
    ('c90001', E'tab\there@example.com', E'line\nbreak', E'back\\slash', '\N', E'cr\rlf',
     now(), '', now(), 1),
    ('c90002', NULL, E'\\N', E'ends with a backslash\\', E'\\t is not a tab', 'Ünïcødé ✓',
     NULL, NULL, NULL, 2);
SELECT add_tickets(5000);
