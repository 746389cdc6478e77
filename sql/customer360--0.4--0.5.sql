-- customer360--0.4--0.5.sql: update script from 0.4 to 0.5 (a fresh install runs the 0.1
-- script, then the updates).  Version 0.5 adds computed traits: profile columns users
-- define in SQL (docs/ARCHITECTURE.md, "Computed traits"; README, "Computed traits").

\echo Use "ALTER EXTENSION customer360 UPDATE" to load this file. \quit

-- The profile column catalog: one row per computed trait of c360.customer_360.  The
-- maintainer's statements, the tick's and verify()'s reference are generated from it
-- (src/core/traits.c; c360.trait_statements() shows them).
--
-- A trait's column is added to c360.customer_360, an extension member table, and pg_dump
-- does not dump columns added to such a table.  So this table is dumped (it is a
-- configuration table) and its trigger adds the column when a row arrives, also while
-- pg_restore loads it.  Its name sorts before customer_360's: pg_restore loads the tables'
-- data in name order, so the columns exist when the profile's rows come.
CREATE TABLE c360.column_catalog (
    name               text PRIMARY KEY CHECK (name ~ '^[a-z_][a-z0-9_]{0,39}$'),
    input              text NOT NULL,
    aggregate          text NOT NULL,      -- as the user wrote it
    func               text NOT NULL CHECK (func IN ('count_star', 'count', 'count_distinct',
                           'sum', 'avg', 'min', 'max', 'bool_or', 'bool_and', 'mode', 'first')),
    arg                text,               -- the aggregated expression (none for count(*))
    order_by           text,               -- first: the ordering expression
    descending         boolean NOT NULL DEFAULT false,
    filter             text,
    lookback           interval CHECK (lookback >= interval '0'),
    time_column        text,
    type               text NOT NULL,      -- the column's type
    state              text NOT NULL DEFAULT 'backfilling' CHECK (state IN ('backfilling', 'ready')),
    backfilled         bigint NOT NULL DEFAULT 0,   -- profile rows computed by the backfill
    backfilled_through text,               -- the last customer_id backfilled
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (lookback IS NULL OR time_column IS NOT NULL)
);
SELECT pg_catalog.pg_extension_config_dump('c360.column_catalog', '');

-- Bumped with every trait created or dropped: a batch reads it with the clock, and
-- regenerates its statements when it moved.
ALTER TABLE c360.clock ADD COLUMN catalog_version bigint NOT NULL DEFAULT 0;

-- A catalog row brings its column (and, for a window, an index on the input's time column,
-- which ticks scan); a deleted row takes the column away.
CREATE FUNCTION c360._column_catalog_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format('ALTER TABLE c360.customer_360 DROP COLUMN IF EXISTS %I', OLD.name);
        RETURN OLD;
    END IF;
    EXECUTE format('ALTER TABLE c360.customer_360 ADD COLUMN IF NOT EXISTS %I %s', NEW.name, NEW.type);
    IF NEW.lookback IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_attribute a
          ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = format('c360.%I', NEW.input)::regclass AND a.attname = NEW.time_column)
    THEN
        EXECUTE format('CREATE INDEX %I ON c360.%I (%I)',
                       left(NEW.input || '_' || NEW.time_column, 50) || '_trait_idx',
                       NEW.input, NEW.time_column);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER column_catalog_sync AFTER INSERT OR DELETE ON c360.column_catalog
    FOR EACH ROW EXECUTE FUNCTION c360._column_catalog_sync();

CREATE FUNCTION c360._shift_back(ts timestamptz, span interval, tz text) RETURNS timestamptz
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'c360_shift_back';

-- The start of a window: as_of - lookback, with Postgres's own arithmetic in the profile's
-- time zone.  A row counts when its time is later than this (strictly).
CREATE FUNCTION c360.window_start(as_of timestamptz, lookback interval) RETURNS timestamptz
LANGUAGE sql STABLE STRICT AS $$ SELECT c360._shift_back(as_of, lookback, c360.time_zone()) $$;

CREATE FUNCTION c360._trait_form(aggregate text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'c360_trait_form';
CREATE FUNCTION c360._trait_expression(input text, expr text, what text) RETURNS regtype
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'c360_trait_expression';
CREATE FUNCTION c360._trait_type(input text, func text, arg text, order_by text, descending boolean)
    RETURNS text LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'c360_trait_type';
CREATE FUNCTION c360._trait_backfill(all_at_once boolean) RETURNS bigint
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'c360_trait_backfill';
CREATE FUNCTION c360._traits_verify_sql() RETURNS text
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'c360_traits_verify';

-- The statements generated from the catalog, as they run.
CREATE FUNCTION c360.trait_statements()
RETURNS TABLE (input text, purpose text, statement text)
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'c360_trait_statements';

-- The inputs a trait may read, their key and their natural time.
CREATE FUNCTION c360._trait_input(input text, OUT key text, OUT natural_time text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT v.key, v.natural_time FROM (VALUES
        ('customers', 'customer_id', NULL),
        ('orders', 'order_id', 'created_at'),
        ('support_tickets', 'ticket_id', 'created_at'),
        ('behavioral_events', 'event_id', 'event_time'),
        ('identity_graph', 'identity_id', NULL)) v(input, key, natural_time)
    WHERE v.input = _trait_input.input
$$;

-- Add a computed trait: a column of c360.customer_360 that the maintainer keeps equal to
-- <aggregate> FILTER (WHERE <filter> AND <time_column> > as_of - <lookback>) over each
-- customer's rows of <input>.  Everything is checked before anything changes.  On a profile
-- of at most c360.trait_backfill_chunk rows the trait is computed at once and the number of
-- rows is returned; on a larger one it is backfilled in chunks by the ticker (or
-- CALL c360.backfill_traits()) while sources stream, and 0 is returned.
CREATE FUNCTION c360.create_trait(name text, input text, aggregate text, filter text DEFAULT NULL,
                                  lookback interval DEFAULT NULL, time_column text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    form text;
    m text[];
    arg text;
    order_by text;
    descending boolean := false;
    key text;
    natural_time text;
    tc text;
    typ text;
BEGIN
    IF name IS NULL OR name !~ '^[a-z_][a-z0-9_]{0,39}$' OR name LIKE '\_c360%' THEN
        RAISE EXCEPTION 'invalid trait name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use up to 40 lower-case letters, digits and underscores, not starting with _c360 (the generated statements'' own names).';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = 'c360.customer_360'::regclass
               AND a.attname = create_trait.name AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of c360.customer_360 already exists', name
            USING ERRCODE = 'duplicate_column';
    END IF;
    SELECT t.key, t.natural_time INTO key, natural_time FROM c360._trait_input(input) t;
    IF key IS NULL THEN
        RAISE EXCEPTION 'unknown input "%"', input
            USING ERRCODE = 'undefined_column',
                  HINT = 'The inputs are customers, orders, support_tickets, behavioral_events and identity_graph.';
    END IF;
    IF aggregate IS NULL THEN
        RAISE EXCEPTION 'a trait''s aggregate must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    form := c360._trait_form(aggregate);
    IF form = 'first' THEN
        m := regexp_match(aggregate,
            '^\s*\(\s*(?:pg_catalog\s*\.\s*)?array_agg\s*\((.*)\s+order\s+by\s+(.*?)(\s+(asc|desc))?\s*\)\s*\)\s*\[\s*1\s*\]\s*$', 'i');
        arg := m[1]; order_by := m[2]; descending := lower(m[4]) IS NOT DISTINCT FROM 'desc';
    ELSIF form = 'mode' THEN
        m := regexp_match(aggregate,
            '^\s*(?:pg_catalog\s*\.\s*)?mode\s*\(\s*\)\s*within\s+group\s*\(\s*order\s+by\s+(.*?)(\s+asc)?\s*\)\s*$', 'i');
        arg := m[1];
    ELSIF form = 'count_distinct' THEN
        m := regexp_match(aggregate, '^\s*(?:pg_catalog\s*\.\s*)?count\s*\(\s*distinct\s+(.*)\)\s*$', 'i');
        arg := m[1];
    ELSIF form <> 'count_star' THEN
        m := regexp_match(aggregate, '^\s*(?:pg_catalog\s*\.\s*)?[a-z_]+\s*\((.*)\)\s*$', 'i');
        arg := m[1];
    END IF;
    IF form <> 'count_star' AND (m IS NULL OR arg IS NULL OR (form = 'first' AND order_by IS NULL)) THEN
        RAISE EXCEPTION 'could not read trait aggregate "%"', aggregate
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Write it on its own, without comments or outer parentheses, in one of the documented forms.';
    END IF;
    IF arg IS NOT NULL THEN
        PERFORM c360._trait_expression(input, arg, 'aggregate argument');
    END IF;
    IF order_by IS NOT NULL THEN
        PERFORM c360._trait_expression(input, order_by, 'ordering');
    END IF;
    IF filter IS NOT NULL AND c360._trait_expression(input, filter, 'filter') <> 'boolean'::regtype THEN
        RAISE EXCEPTION 'a trait''s filter must be boolean, not %', c360._trait_expression(input, filter, 'filter')
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    IF lookback < interval '0' THEN
        RAISE EXCEPTION 'a trait''s lookback must not be negative, not %', lookback
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    tc := COALESCE(time_column, CASE WHEN lookback IS NOT NULL THEN natural_time END);
    IF lookback IS NOT NULL AND tc IS NULL THEN
        RAISE EXCEPTION 'input "%" has no time column for a lookback', input
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name one with the time_column argument.';
    END IF;
    IF tc IS NOT NULL AND c360._trait_expression(input, quote_ident(tc), 'time column') <> 'timestamptz'::regtype THEN
        RAISE EXCEPTION 'a trait''s time column must be timestamptz: column "%" of input "%" is %',
            tc, input, c360._trait_expression(input, quote_ident(tc), 'time column')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    typ := c360._trait_type(input, form, arg, order_by, descending);

    -- the clock lock (key "c360" = 1664300592): no batch runs while the column comes
    PERFORM pg_advisory_xact_lock(1664300592, 0);
    INSERT INTO c360.column_catalog (name, input, aggregate, func, arg, order_by, descending,
                                     filter, lookback, time_column, type)
    VALUES (name, input, aggregate, form, arg, order_by, descending, filter, lookback, tc, typ);
    UPDATE c360.clock SET catalog_version = catalog_version + 1;
    IF (SELECT count(*) FROM (SELECT 1 FROM c360.customer_360
                              LIMIT current_setting('c360.trait_backfill_chunk')::int + 1) x)
       > current_setting('c360.trait_backfill_chunk')::int THEN
        RETURN 0;
    END IF;
    RETURN c360._trait_backfill(true);
END
$$;

-- Remove a trait and its column; refused while a segment reads or carries it.
CREATE FUNCTION c360.drop_trait(name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    users text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM c360.column_catalog t WHERE t.name = drop_trait.name) THEN
        RAISE EXCEPTION 'trait "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    SELECT string_agg(s.name, ', ' ORDER BY s.name) INTO users FROM c360.segments s
    WHERE drop_trait.name = ANY (s.columns) OR drop_trait.name = ANY (c360._check_predicate(s.predicate));
    IF users IS NOT NULL THEN
        RAISE EXCEPTION 'trait "%" is read by segment %', name, users
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Drop the segments (and their sinks) first.';
    END IF;
    PERFORM pg_advisory_xact_lock(1664300592, 0);
    DELETE FROM c360.column_catalog t WHERE t.name = drop_trait.name;
    UPDATE c360.clock SET catalog_version = catalog_version + 1;
END
$$;

-- Backfill every trait still backfilling, one chunk per transaction (the ticker does the
-- same; this is for a database whose workers do not run).
CREATE PROCEDURE c360.backfill_traits()
LANGUAGE plpgsql AS $$
BEGIN
    WHILE c360._trait_backfill(false) >= 0 LOOP
        COMMIT;
    END LOOP;
END
$$;

-- The traits, their definitions, types and state.  Like c360.source_status, for monitoring
-- roles too (GRANT SELECT ON c360.traits).
CREATE VIEW c360.traits AS
SELECT t.name, t.input, t.aggregate, t.filter, t.lookback, t.time_column, t.type, t.state,
       t.backfilled AS rows_backfilled,
       CASE WHEN t.state = 'backfilling' THEN
           round(100.0 * t.backfilled / greatest(c.reltuples, t.backfilled, 1)::numeric, 1)
       END AS backfill_percent,
       t.created_at
FROM c360.column_catalog t
CROSS JOIN (SELECT reltuples FROM pg_class WHERE oid = 'c360.customer_360'::regclass) c
ORDER BY t.created_at, t.name;
REVOKE ALL ON c360.traits FROM PUBLIC;

-- Defining and backfilling traits changes the profile table: not for everyone.
REVOKE ALL ON FUNCTION c360.create_trait(text, text, text, text, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.drop_trait(text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE c360.backfill_traits() FROM PUBLIC;
REVOKE ALL ON FUNCTION c360._trait_backfill(boolean) FROM PUBLIC;

-- verify() covers the traits: the article's columns as before (now _verify_columns), and
-- each ready trait against its reference.
ALTER FUNCTION c360.verify(timestamptz) RENAME TO _verify_columns;
CREATE FUNCTION c360.verify(as_of timestamptz DEFAULT c360.as_of())
RETURNS TABLE (customer_id text, column_name text, profile_value text, reference_value text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT * FROM (SELECT * FROM c360._verify_columns($1) UNION ALL '
        || c360._traits_verify_sql() || ') v ORDER BY 1, 2'
        USING as_of;
END
$$;
