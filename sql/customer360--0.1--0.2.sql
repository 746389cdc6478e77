-- customer360--0.1--0.2.sql: update script from 0.1 to 0.2 (a fresh install runs the 0.1
-- script, then this one).  Version 0.2 adds GDPR erase with tombstones, and makes the
-- singleton tables survive pg_dump / pg_restore.

\echo Use "ALTER EXTENSION customer360 UPDATE" to load this file. \quit

-- Singletons (the clock, the erase salt) are created with their row by CREATE EXTENSION and
-- dumped with pg_extension_config_dump, so pg_restore copies a second row into a table that
-- already has one.  An insert replaces the row instead: COPY fires triggers (not rules).
-- These are the extension's own configuration rows, not the profile: the maintainer stays
-- trigger-free.
CREATE FUNCTION c360._singleton_replace() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
    RETURN NEW;
END
$$;
CREATE TRIGGER clock_singleton BEFORE INSERT ON c360.clock
    FOR EACH ROW EXECUTE FUNCTION c360._singleton_replace();

-- Erase (DESIGN.md section 11).  A tombstone keeps only a salted hash of the erased id, so
-- that late data for it can be recognised and dropped without keeping the id itself.
CREATE TABLE c360.erase_salt (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    salt bytea NOT NULL
);
-- 244 random bits from gen_random_uuid (pg_strong_random), with no pgcrypto needed
INSERT INTO c360.erase_salt (salt)
VALUES (decode(translate(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
CREATE TRIGGER erase_salt_singleton BEFORE INSERT ON c360.erase_salt
    FOR EACH ROW EXECUTE FUNCTION c360._singleton_replace();

CREATE TABLE c360.erased (
    id_hash         bytea PRIMARY KEY,
    erased_at       timestamptz NOT NULL DEFAULT now(),
    late_dropped    bigint NOT NULL DEFAULT 0,   -- late changes for the id dropped since
    last_dropped_at timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('c360.erase_salt', '');
SELECT pg_catalog.pg_extension_config_dump('c360.erased', '');
REVOKE ALL ON c360.erase_salt, c360.erased FROM PUBLIC;

CREATE FUNCTION c360._erase_hash(id text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256((SELECT salt FROM c360.erase_salt) || convert_to(id, 'UTF8'))
$$;

-- A pattern matching id as a whole token of a text (not inside a longer id or address).
CREATE FUNCTION c360._token_pattern(id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT '(^|[^[:alnum:]_@.+-])' || regexp_replace(id, '([^[:alnum:]])', '\\\1', 'g')
           || '($|[^[:alnum:]_@.+-])'
$$;

-- Remove a customer everywhere, through the one apply path (so rollups, profile and segment
-- exits follow as for any delete), then scrub what only the outbox and dead letters still
-- hold, and leave a tombstone.  The exclusive clock lock keeps every batch out meanwhile:
-- one that waited sees the tombstone when it runs.
CREATE FUNCTION c360.erase_customer(customer_id text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    erased_id text := erase_customer.customer_id;
    erased_email text;
    raw_ids text[];
    changes jsonb;
    removed jsonb;
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
REVOKE ALL ON FUNCTION c360.erase_customer(text) FROM PUBLIC;

-- Status views are for monitoring roles too (GRANT SELECT ON c360.source_status): the
-- position comes from c360.source_positions, which every source kind now writes, instead of
-- pg_replication_origin_status, which only a superuser may read.
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
       (SELECT count(*) FROM c360.dead_letters d WHERE d.source = s.name) AS dead_letters
FROM c360.sources s
LEFT JOIN c360.worker_status() w ON w.name = s.name
LEFT JOIN c360.source_progress p ON p.source = s.name;

-- drop_source works when the source server is gone for good: like DROP SUBSCRIPTION with
-- slot_name = NONE, drop_remote => false leaves the slot to the user, and the error that
-- stops a plain drop_source says so.
DROP FUNCTION c360.drop_source(text);
CREATE FUNCTION c360.drop_source(name text, drop_remote boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s c360.sources := c360._source(name);
    slot text := COALESCE(s.options->>'slot', 'c360_' || s.name);
BEGIN
    PERFORM c360._stop_worker(s.name);
    IF s.kind = 'postgres-cdc' THEN
        IF drop_remote THEN
            BEGIN
                PERFORM c360._pg_drop_remote(s.options->>'conninfo', slot,
                    CASE WHEN (s.created_objects->>'publication')::boolean
                         THEN COALESCE(s.options->>'publication', 'c360_' || s.name) END);
            EXCEPTION WHEN sqlclient_unable_to_establish_sqlconnection OR connection_failure THEN
                RAISE EXCEPTION '%', SQLERRM USING ERRCODE = SQLSTATE,
                    HINT = format('To drop the source anyway, run c360.drop_source(%L, drop_remote => false), '
                                  'then drop replication slot %I on the source server yourself: '
                                  'it holds WAL there until it is dropped.', s.name, slot);
            END;
        END IF;
        IF EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = 'c360_' || s.name) THEN
            PERFORM pg_replication_origin_drop('c360_' || s.name);
        END IF;
    END IF;
    DELETE FROM c360.sources x WHERE x.name = s.name;
    PERFORM c360._wake_launcher();
END
$$;
REVOKE ALL ON FUNCTION c360.drop_source(text, boolean) FROM PUBLIC;

-- segments (begin)
-- The maintainer reads the memberships of a batch's changed customers in every segment at
-- once; the primary key (segment, customer_id) serves lookups by segment only.
CREATE INDEX segment_members_customer_idx ON c360.segment_members (customer_id);

-- Members and outbox rows are written by the maintainer alone, for the segments it has just
-- read under the clock lock, which drop_segment takes too: a foreign key check for every
-- row written (a sixth of the maintainer's segment work) guards nothing more.  drop_segment
-- deletes the segment's members and outbox rows itself, as ON DELETE CASCADE did.
ALTER TABLE c360.segment_members DROP CONSTRAINT segment_members_segment_fkey;
ALTER TABLE c360.segment_changes DROP CONSTRAINT segment_changes_segment_fkey;

CREATE OR REPLACE FUNCTION c360.drop_segment(name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    sink text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM c360.segments s WHERE s.name = drop_segment.name) THEN
        RAISE EXCEPTION 'segment "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    SELECT string_agg(k.name, ', ') INTO sink FROM c360.sinks k WHERE k.segment = drop_segment.name;
    IF sink IS NOT NULL THEN
        RAISE EXCEPTION 'segment "%" is published by sink %', name, sink
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Drop the sink first with c360.drop_sink().';
    END IF;
    PERFORM pg_advisory_xact_lock(1664300592, 0);
    DELETE FROM c360.segments s WHERE s.name = drop_segment.name;
    DELETE FROM c360.segment_members m WHERE m.segment = drop_segment.name;
    DELETE FROM c360.segment_changes c WHERE c.segment = drop_segment.name;
END
$$;
-- segments (end)
