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

-- Feed input from the remote table.  A PostgreSQL or MySQL source copies a table mapped
-- after its snapshot on its own, within a second or so; a Kafka source reads one topic,
-- from the position of its first start.
CREATE OR REPLACE FUNCTION c360.map_table(source text, remote text, input text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s c360.sources;
    qualified text;
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
    IF s.kind = 'kafka' AND s.phase <> 'snapshot' THEN
        RAISE EXCEPTION 'Kafka source "%" already started reading its topic; a mapping made now would miss what it read', source
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Drop the source and create it again with its topic mapped.';
    END IF;
    -- a table moved to another input is copied into it anew
    INSERT INTO c360.source_tables AS t (source, remote, input) VALUES (source, qualified, input)
    ON CONFLICT ON CONSTRAINT source_tables_pkey DO UPDATE
    SET input = excluded.input,
        snapshot_position = CASE WHEN t.input = excluded.input THEN t.snapshot_position END,
        columns = CASE WHEN t.input = excluded.input THEN t.columns END;
    PERFORM c360._wake_launcher();
END
$$;
