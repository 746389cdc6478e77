-- customer360--0.3--0.4.sql: update script from 0.3 to 0.4 (a fresh install runs the 0.1
-- script, then the updates).  Version 0.4 copies a table mapped after its source's snapshot
-- on its own, so that map_table works one statement at a time whenever it is typed.

\echo Use "ALTER EXTENSION customer360 UPDATE" to load this file. \quit

-- Where each mapped table's changes start to apply.  NULL: not copied yet; the worker
-- copies it (with the source's first snapshot, or alone after it) before streaming it.
-- '': from the start of the source's stream (the table was in the source's snapshot).
-- Otherwise the source position of the table's own snapshot (an LSN for postgres-cdc,
-- file:pos for mysql-cdc): its changes committed before it are in that copy.
ALTER TABLE c360.source_tables ADD COLUMN snapshot_position text;

-- What sources had already copied when this update ran.
UPDATE c360.source_tables t SET snapshot_position = ''
FROM c360.sources s
WHERE s.name = t.source
  AND CASE WHEN s.phase = 'error' THEN COALESCE(s.resume_phase, 'streaming') ELSE s.phase END <> 'snapshot';

-- Column mappings: which remote column (for Kafka, which path into the message) feeds each
-- input column whose name the remote does not share, e.g. {"total_amount": "amount"}.  NULL:
-- none, every input column is fed by the remote column (or top-level field) of its name.
ALTER TABLE c360.source_tables ADD COLUMN column_map jsonb;

-- Feed input from the remote table.  A PostgreSQL or MySQL source copies a table mapped
-- after its snapshot on its own, within a second or so; a Kafka source reads one topic,
-- from the position of its first start.  columns maps input columns to remote ones
-- ({"total_amount": "amount"}); for Kafka a value is a dot-separated path into the message
-- ("properties.product_id").  A remote column feeds at most one input column: one that a
-- mapping names feeds only that one.  Mapped anew with other columns (or none), the table
-- is copied again: its mirror rows came from other remote columns.
DROP FUNCTION c360.map_table(text, text, text);
CREATE FUNCTION c360.map_table(source text, remote text, input text, columns jsonb DEFAULT NULL)
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
    IF input IS NULL OR input NOT IN ('customers', 'orders', 'support_tickets',
                                      'behavioral_events', 'identity_graph') THEN
        RAISE EXCEPTION 'unknown input "%"', input
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The inputs are customers, orders, support_tickets, behavioral_events and identity_graph.';
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
REVOKE ALL ON FUNCTION c360.map_table(text, text, text, jsonb) FROM PUBLIC;

-- Which remote table or topic feeds which input, with its column mappings.  Like
-- c360.source_status, for monitoring roles too (GRANT SELECT ON c360.source_mappings); it
-- shows no source options.
CREATE VIEW c360.source_mappings AS
SELECT t.source,
       t.remote,
       t.input,
       t.column_map AS columns,
       t.snapshot_position
FROM c360.source_tables t;
REVOKE ALL ON c360.source_mappings FROM PUBLIC;
