-- customer360 0.5 -> 0.6: inputs of your own (c360.create_input), and the Kafka formats
-- debezium and segment.  Released scripts are never edited; this one is open until 0.6 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.6'" to load this file. \quit

-------------------------------------------------------------------------------------------
-- Inputs of your own (docs/ARCHITECTURE.md, "Inputs, mirrors, the change record"; README,
-- "Inputs of your own").
--
-- c360.inputs is the catalog of every input: the article's five (builtin) and those
-- c360.create_input adds.  A user's input has a mirror table c360.<name> like the built-in
-- ones, fed through the one apply path.  That table is not a member of the extension, so
-- pg_dump dumps it whole (definition, indexes, rows) like any table of the user's; only the
-- users' rows of this catalog are dumped (the built-in ones come with CREATE EXTENSION).
-------------------------------------------------------------------------------------------
CREATE TABLE c360.inputs (
    name            text PRIMARY KEY,
    columns         text NOT NULL,      -- the mirror's columns, as create_input normalized them
    key             text NOT NULL,      -- the primary key column (text)
    customer_column text NOT NULL,      -- the column naming the customer (text)
    time_column     text,               -- the natural time of traits' windows
    builtin         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO c360.inputs (name, columns, key, customer_column, time_column, builtin)
SELECT v.name,
       (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', '
                          ORDER BY a.attnum)
        FROM pg_attribute a WHERE a.attrelid = format('c360.%I', v.name)::regclass
          AND a.attnum > 0 AND NOT a.attisdropped),
       v.key, v.customer_column, v.time_column, true
FROM (VALUES ('customers', 'customer_id', 'customer_id', NULL),
             ('orders', 'order_id', 'customer_id', 'created_at'),
             ('support_tickets', 'ticket_id', 'customer_id', 'created_at'),
             ('behavioral_events', 'event_id', 'customer_id', 'event_time'),
             ('identity_graph', 'identity_id', 'customer_id', NULL))
     v(name, key, customer_column, time_column);
SELECT pg_catalog.pg_extension_config_dump('c360.inputs', 'WHERE NOT builtin');

-- Mappings and traits name an input of the catalog (0.1 listed the five in a CHECK).
ALTER TABLE c360.source_tables DROP CONSTRAINT source_tables_input_check,
    ADD FOREIGN KEY (input) REFERENCES c360.inputs;
ALTER TABLE c360.column_catalog ADD FOREIGN KEY (input) REFERENCES c360.inputs;

-- The inputs' names for hints: the article's five in its order, then users' by name.
CREATE FUNCTION c360._input_names() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(i.name, ', ' ORDER BY array_position(
               '{customers,orders,support_tickets,behavioral_events,identity_graph}'::text[], i.name), i.name)
    FROM c360.inputs i
$$;

-- The inputs a trait may read, their key and their natural time: now the catalog.  An
-- unknown input is create_trait's error (42703), with the catalog's names as the hint.
CREATE OR REPLACE FUNCTION c360._trait_input(input text, OUT key text, OUT natural_time text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT i.key, i.time_column INTO key, natural_time FROM c360.inputs i WHERE i.name = _trait_input.input;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown input "%"', input
            USING ERRCODE = 'undefined_column',
                  HINT = 'The inputs are ' || c360._input_names() || '.';
    END IF;
END
$$;

-- A trait's column brings, for a window over a built-in input, an index on the input's time
-- column.  Not on a user's input: its mirror is dumped whole, indexes included, and an index
-- made here while pg_restore loads this catalog would collide with the dumped one.
-- create_input indexes its time column instead.
CREATE OR REPLACE FUNCTION c360._column_catalog_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format('ALTER TABLE c360.customer_360 DROP COLUMN IF EXISTS %I', OLD.name);
        RETURN OLD;
    END IF;
    EXECUTE format('ALTER TABLE c360.customer_360 ADD COLUMN IF NOT EXISTS %I %s', NEW.name, NEW.type);
    IF NEW.lookback IS NOT NULL
       AND EXISTS (SELECT 1 FROM c360.inputs i WHERE i.name = NEW.input AND i.builtin)
       AND NOT EXISTS (
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

-- The columns of a create_input definition, parsed by Postgres's own grammar: names and
-- types only (no constraint, default or collation), each type one an input may have.
CREATE FUNCTION c360._input_columns(columns text, OUT name text, OUT type regtype)
RETURNS SETOF record
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'c360_input_columns';

-- Add an input: its catalog row and its mirror c360.<name>, keyed by key, indexed by the
-- customer column (traits and erase_customer read a customer's rows) and the time column.
CREATE FUNCTION c360.create_input(name text, columns text, key text, customer_column text,
                                  time_column text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    defs text;
    key_type regtype;
    customer_type regtype;
    time_type regtype;
BEGIN
    IF name IS NULL OR name !~ '^[a-z_][a-z0-9_]{0,39}$' OR name LIKE '\_c360%'
       OR quote_ident(name) <> name THEN
        RAISE EXCEPTION 'invalid input name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use up to 40 lower-case letters, digits and underscores, not a reserved word, not starting with _c360.';
    END IF;
    IF EXISTS (SELECT 1 FROM c360.inputs i WHERE i.name = create_input.name)
       OR to_regclass(format('c360.%I', name)) IS NOT NULL THEN
        RAISE EXCEPTION 'input "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'The name is an input already, or another relation in schema c360.';
    END IF;
    IF columns IS NULL OR key IS NULL OR customer_column IS NULL THEN
        RAISE EXCEPTION 'columns, key and customer_column must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT string_agg(format('%I %s', c.name, format_type(c.type, NULL)), ', '),
           min(c.type::text) FILTER (WHERE c.name = create_input.key)::regtype,
           min(c.type::text) FILTER (WHERE c.name = create_input.customer_column)::regtype,
           min(c.type::text) FILTER (WHERE c.name = create_input.time_column)::regtype
    INTO defs, key_type, customer_type, time_type
    FROM c360._input_columns(columns) c;
    IF key_type IS NULL OR customer_type IS NULL OR (time_column IS NOT NULL AND time_type IS NULL) THEN
        RAISE EXCEPTION 'column "%" is not among the columns of input "%"',
                        CASE WHEN key_type IS NULL THEN key
                             WHEN customer_type IS NULL THEN customer_column ELSE time_column END, name
            USING ERRCODE = 'undefined_column',
                  HINT = 'key, customer_column and time_column name columns of the definition.';
    END IF;
    IF key_type <> 'text'::regtype OR customer_type <> 'text'::regtype THEN
        RAISE EXCEPTION 'the key and customer columns of an input must be text, not %',
                        CASE WHEN key_type <> 'text'::regtype THEN key_type ELSE customer_type END
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'Declare them text: sources send any key as text, and customer ids are text.';
    END IF;
    IF time_type IS NOT NULL AND time_type <> 'timestamptz'::regtype THEN
        RAISE EXCEPTION 'the time column of an input must be timestamptz, not %', time_type
            USING ERRCODE = 'datatype_mismatch';
    END IF;
    EXECUTE format('CREATE TABLE c360.%I (%s, PRIMARY KEY (%I))', name, defs, key);
    EXECUTE format('ALTER TABLE c360.%I ALTER COLUMN %I SET NOT NULL', name, customer_column);
    EXECUTE format('CREATE INDEX ON c360.%I (%I)', name, customer_column);
    IF time_column IS NOT NULL THEN
        EXECUTE format('CREATE INDEX ON c360.%I (%I)', name, time_column);
    END IF;
    INSERT INTO c360.inputs (name, columns, key, customer_column, time_column)
    VALUES (name, defs, key, customer_column, time_column);
    UPDATE c360.clock SET catalog_version = catalog_version + 1;
END
$$;
REVOKE ALL ON FUNCTION c360.create_input(text, text, text, text, text) FROM PUBLIC;

-- Drop a user's input and its mirror, unless a source maps it or a trait reads it.
CREATE FUNCTION c360.drop_input(name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i c360.inputs;
    users text;
BEGIN
    SELECT * INTO i FROM c360.inputs x WHERE x.name = drop_input.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'input "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    IF i.builtin THEN
        RAISE EXCEPTION 'input "%" is built in', name
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Only inputs made by c360.create_input can be dropped.';
    END IF;
    SELECT string_agg(format('source %s maps %s', t.source, t.remote), ', ' ORDER BY t.source, t.remote)
    INTO users FROM c360.source_tables t WHERE t.input = i.name;
    users := concat_ws(', ', users, (SELECT string_agg(format('trait %s reads it', c.name), ', ' ORDER BY c.name)
                                     FROM c360.column_catalog c WHERE c.input = i.name));
    IF users <> '' THEN
        RAISE EXCEPTION 'cannot drop input "%" because other objects depend on it', name
            USING ERRCODE = 'dependent_objects_still_exist',
                  DETAIL = users || '.',
                  HINT = 'Drop the traits (c360.drop_trait) and the mappings (c360.drop_source) first.';
    END IF;
    EXECUTE format('DROP TABLE c360.%I', i.name);
    DELETE FROM c360.inputs x WHERE x.name = i.name;
    UPDATE c360.clock SET catalog_version = catalog_version + 1;
END
$$;
REVOKE ALL ON FUNCTION c360.drop_input(text) FROM PUBLIC;

-- map_table as in 0.4, for every input of the catalog.
CREATE OR REPLACE FUNCTION c360.map_table(source text, remote text, input text, columns jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s c360.sources;
    qualified text;
    col text;
    val jsonb;
    seen text[] := '{}';
BEGIN
    -- NO KEY UPDATE, not c360._source()'s UPDATE: a snapshot running meanwhile holds the
    -- row KEY SHARE (its writes reference it) for as long as it copies, and need not be
    -- waited for; the table mapped now is copied after it
    SELECT * INTO s FROM c360.sources x WHERE x.name = map_table.source FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer360 source "%" does not exist', source
            USING ERRCODE = 'undefined_object';
    END IF;
    qualified := CASE WHEN s.kind = 'postgres-cdc' AND position('.' in remote) = 0
                      THEN 'public.' || remote ELSE remote END;
    IF NOT EXISTS (SELECT 1 FROM c360.inputs i WHERE i.name = map_table.input) THEN
        RAISE EXCEPTION 'unknown input "%"', input
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The inputs are ' || c360._input_names() || '.';
    END IF;
    IF columns IS NOT NULL AND jsonb_typeof(columns) = 'null' THEN
        columns := NULL;
    END IF;
    IF columns IS NOT NULL THEN
        IF jsonb_typeof(columns) <> 'object' THEN
            RAISE EXCEPTION 'columns must be a JSON object mapping input columns to remote ones, not a JSON %', jsonb_typeof(columns)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example {"total_amount": "amount"}.';
        END IF;
        FOR col, val IN SELECT e.key, e.value FROM jsonb_each(columns) e ORDER BY e.key LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                           WHERE a.attrelid = format('c360.%I', input)::regclass
                             AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
                RAISE EXCEPTION 'input "%" has no column "%"', input, col
                    USING ERRCODE = 'undefined_column',
                          HINT = format('The keys of columns are columns of input %s: %s.', input,
                                        (SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_attribute a
                                         WHERE a.attrelid = format('c360.%I', input)::regclass
                                           AND a.attnum > 0 AND NOT a.attisdropped));
            END IF;
            IF jsonb_typeof(val) <> 'string' OR val #>> '{}' = '' THEN
                RAISE EXCEPTION 'input column "%" must be mapped to a remote column name (a non-empty string), not %', col, val::text
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF (CASE WHEN s.kind = 'mysql-cdc' THEN lower(val #>> '{}') ELSE val #>> '{}' END) = ANY (seen) THEN
                RAISE EXCEPTION 'remote column "%" is mapped to more than one input column', val #>> '{}'
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'A remote column feeds at most one input column.';
            END IF;
            seen := seen || (CASE WHEN s.kind = 'mysql-cdc' THEN lower(val #>> '{}') ELSE val #>> '{}' END);
        END LOOP;
        IF columns = '{}' THEN
            columns := NULL;
        END IF;
    END IF;
    IF s.kind = 'kafka' AND s.phase <> 'snapshot' THEN
        RAISE EXCEPTION 'Kafka source "%" already started reading its topic; a mapping made now would miss what it read', source
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Drop the source and create it again with its topic mapped.';
    END IF;
    -- a table moved to another input, or mapped with other columns, is copied anew
    INSERT INTO c360.source_tables AS t (source, remote, input, column_map)
    VALUES (source, qualified, input, columns)
    ON CONFLICT ON CONSTRAINT source_tables_pkey DO UPDATE
    SET input = excluded.input,
        column_map = excluded.column_map,
        snapshot_position = CASE WHEN t.input = excluded.input
                                  AND t.column_map IS NOT DISTINCT FROM excluded.column_map
                                 THEN t.snapshot_position END,
        columns = CASE WHEN t.input = excluded.input
                        AND t.column_map IS NOT DISTINCT FROM excluded.column_map
                       THEN t.columns END;
    PERFORM c360._wake_launcher();
END
$$;

-- erase_customer as in 0.2, and the customer's rows of users' inputs.
CREATE OR REPLACE FUNCTION c360.erase_customer(customer_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    erased_id text := erase_customer.customer_id;
    erased_email text;
    raw_ids text[];
    changes jsonb;
    removed jsonb;
    more jsonb;
    i c360.inputs;
    n bigint;
BEGIN
    IF erased_id IS NULL THEN
        RAISE EXCEPTION 'customer_id must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pg_advisory_xact_lock(1664300592, 0);

    SELECT c.email INTO erased_email FROM c360.customers c WHERE c.customer_id = erased_id;
    -- the raw ids whose events are this customer's: its own and the identities resolved to it
    raw_ids := ARRAY[erased_id] || ARRAY(SELECT r.identity_value FROM c360.identity_resolved r
                                  WHERE r.customer_id = erased_id);
    SELECT COALESCE(jsonb_agg(jsonb_build_object('input', d.input, 'op', 'delete', 'old', d.old)),
                    '[]'),
           COALESCE(jsonb_object_agg(d.input, d.n) FILTER (WHERE d.first), '{}')
    INTO changes, removed
    FROM (SELECT k.input, k.old,
                 count(*) OVER (PARTITION BY k.input) AS n,
                 row_number() OVER (PARTITION BY k.input) = 1 AS first
          FROM (SELECT 'customers' AS input, jsonb_build_object('customer_id', c.customer_id) AS old
                FROM c360.customers c WHERE c.customer_id = erased_id
                UNION ALL
                SELECT 'orders', jsonb_build_object('order_id', o.order_id)
                FROM c360.orders o WHERE o.customer_id = erased_id
                UNION ALL
                SELECT 'support_tickets', jsonb_build_object('ticket_id', t.ticket_id)
                FROM c360.support_tickets t WHERE t.customer_id = erased_id
                UNION ALL
                SELECT 'identity_graph', jsonb_build_object('identity_id', g.identity_id)
                FROM c360.identity_graph g WHERE g.customer_id = erased_id OR g.identity_value = erased_id
                UNION ALL
                SELECT 'behavioral_events', jsonb_build_object('event_id', e.event_id)
                FROM c360.behavioral_events e WHERE e.customer_id = ANY (raw_ids)) k) d;
    removed := jsonb_build_object('customers', 0, 'orders', 0, 'support_tickets', 0,
                                  'identity_graph', 0, 'behavioral_events', 0) || removed;
    -- users' inputs: their rows of the customer
    FOR i IN SELECT * FROM c360.inputs x WHERE NOT x.builtin ORDER BY x.name LOOP
        EXECUTE format('SELECT COALESCE(jsonb_agg(jsonb_build_object(''input'', %L, ''op'', ''delete'','
                       ' ''old'', jsonb_build_object(%L, x.%I))), ''[]''), count(*)'
                       ' FROM c360.%I x WHERE x.%I = $1', i.name, i.key, i.key, i.name, i.customer_column)
        INTO more, n USING erased_id;
        changes := changes || more;
        removed := removed || jsonb_build_object(i.name, n);
    END LOOP;
    removed := removed || jsonb_build_object('customer_360',
        (SELECT count(*) FROM c360.customer_360 p WHERE p.customer_id = erased_id));
    removed := removed || jsonb_build_object('segment_members',
        (SELECT count(*) FROM c360.segment_members m WHERE m.customer_id = erased_id));
    PERFORM c360.apply_changes(changes);

    -- Outbox rows no sink will publish go; the rest (the exits just written among them) keep
    -- only the id, which the sinks need, until every sink has passed them.
    DELETE FROM c360.segment_changes c WHERE c.customer_id = erased_id
      AND NOT EXISTS (SELECT FROM c360.sinks k WHERE k.segment = c.segment);
    UPDATE c360.segment_changes c SET payload = '{}'
    WHERE c.customer_id = erased_id AND c.payload <> '{}';
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed || jsonb_build_object('segment_changes_scrubbed', n);
    DELETE FROM c360.sink_snapshot s WHERE s.customer_id = erased_id;
    WITH gone AS (
        DELETE FROM c360.dead_letters d
        WHERE d.payload ~ c360._token_pattern(erased_id) OR d.error ~ c360._token_pattern(erased_id)
           OR (erased_email <> '' AND (d.payload ~ c360._token_pattern(erased_email)
                                OR d.error ~ c360._token_pattern(erased_email)))
        RETURNING 1)
    SELECT count(*) INTO n FROM gone;
    removed := removed || jsonb_build_object('dead_letters', n);

    INSERT INTO c360.erased (id_hash) VALUES (c360._erase_hash(erased_id)) ON CONFLICT DO NOTHING;
    RETURN removed;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Kafka format segment (bgworkers/kafka_source.c, src/decode/segment_decode.c): the calls a
-- source skips by design (Segment group calls, identify calls with nothing to link) are
-- counted in the batch's transaction, with its offsets, and shown in source_status.
ALTER TABLE c360.source_progress ADD COLUMN skipped_messages bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE VIEW c360.source_status AS
SELECT s.name,
       s.kind,
       CASE WHEN NOT s.enabled THEN 'paused'
            WHEN s.phase = 'error' THEN 'error'
            WHEN w.pid IS NULL THEN 'stopped'
            ELSE w.state END                                       AS state,
       COALESCE(w.source_position,
                (SELECT CASE WHEN s.kind = 'postgres-cdc'
                             THEN max(p.position) FILTER (WHERE p.part = 'lsn')
                             ELSE string_agg(p.part || '=' || p.position, ', ' ORDER BY p.part) END
                 FROM c360.source_positions p WHERE p.source = s.name)) AS position,
       w.lag_bytes,
       w.lag_messages,
       w.lag_seconds,
       w.snapshot_done                                             AS snapshot_rows_done,
       w.snapshot_total                                            AS snapshot_rows_total,
       COALESCE(p.changes_applied, 0)                              AS changes_applied,
       s.last_error,
       p.last_applied_at,
       (SELECT count(*) FROM c360.dead_letters d WHERE d.source = s.name) AS dead_letters,
       COALESCE(p.skipped_messages, 0)                             AS skipped_messages
FROM c360.sources s
LEFT JOIN c360.worker_status() w ON w.name = s.name
LEFT JOIN c360.source_progress p ON p.source = s.name;
-- end of the Kafka format segment block

-- ---------------------------------------------------------------------------------------
-- Kafka message formats (option "format" of a kafka source): json (the default), debezium,
-- segment.  The worker reads the option (bgworkers/kafka_source.c); this check refuses an
-- unknown format when the source is created, rather than when its worker starts.
CREATE FUNCTION c360._kafka_format_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'kafka' AND NEW.options ? 'format'
       AND (jsonb_typeof(NEW.options->'format') IS DISTINCT FROM 'string'
            OR NEW.options->>'format' NOT IN ('json', 'debezium', 'segment')) THEN
        RAISE EXCEPTION 'option "format" of kafka source "%" must be json, debezium or segment, not %',
                        NEW.name, NEW.options->'format'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER kafka_format_check BEFORE INSERT OR UPDATE OF options ON c360.sources
    FOR EACH ROW EXECUTE FUNCTION c360._kafka_format_check();
-- end of the Kafka message formats
