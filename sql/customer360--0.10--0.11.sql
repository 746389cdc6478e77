-- customer360 0.10 -> 0.11: next_change_at covers the computed traits' windows (issue 16).
-- A profile row keeps next_change_at's parts apart (src/core/change_parts.c,
-- docs/ARCHITECTURE.md "next_change_at and its parts"):
--   article_change_at          the article's columns' next change, what next_change_at
--                              was before 0.11;
--   <input>_traits_change_at   per input with a windowed trait (the catalog trigger adds
--                              it): when the earliest row that counts in one of those
--                              traits leaves its window;
--   traits_change_at           the least of the inputs' parts;
-- and next_change_at is the least of them all.  Each statement recomputes the parts of
-- what it read and takes the others as stored.
-- Released scripts are never edited; this one is open until 0.11 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.11'" to load this file. \quit

ALTER TABLE c360.customer_360 ADD COLUMN article_change_at timestamptz,
                              ADD COLUMN traits_change_at timestamptz;
UPDATE c360.customer_360 SET article_change_at = next_change_at WHERE next_change_at IS NOT NULL;

-- ts + span with Postgres's arithmetic in zone tz: when a row at ts leaves a window of span.
CREATE FUNCTION c360._shift(ts timestamptz, span interval, tz text) RETURNS timestamptz
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'c360_shift';

-- Recompute an input's part of next_change_at, and next_change_at, for every profile row.
CREATE FUNCTION c360._trait_changes(input text) RETURNS bigint
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'c360_trait_changes';
REVOKE ALL ON FUNCTION c360._trait_changes(text) FROM PUBLIC;

-- A windowed trait also brings its input's part column (also while pg_restore loads this
-- catalog, as for the trait's own column), and the last windowed trait over an input takes
-- it away.  A column of that name that is no part (a trait named so) is refused.
CREATE OR REPLACE FUNCTION c360._column_catalog_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    part text := CASE TG_OP WHEN 'DELETE' THEN OLD.input ELSE NEW.input END || '_traits_change_at';
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format('ALTER TABLE c360.customer_360 DROP COLUMN IF EXISTS %I', OLD.name);
        IF OLD.lookback IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM c360.column_catalog c WHERE c.input = OLD.input AND c.lookback IS NOT NULL)
        THEN
            EXECUTE format('ALTER TABLE c360.customer_360 DROP COLUMN IF EXISTS %I', part);
        END IF;
        RETURN OLD;
    END IF;
    EXECUTE format('ALTER TABLE c360.customer_360 ADD COLUMN IF NOT EXISTS %I %s', NEW.name, NEW.type);
    IF NEW.lookback IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                       WHERE a.attrelid = 'c360.customer_360'::regclass AND a.attname = part
                         AND NOT a.attisdropped)
        THEN
            EXECUTE format('ALTER TABLE c360.customer_360 ADD COLUMN %I timestamptz', part);
        ELSIF NOT EXISTS (SELECT 1 FROM c360.column_catalog c
                          WHERE c.input = NEW.input AND c.lookback IS NOT NULL AND c.name <> NEW.name)
        THEN
            RAISE EXCEPTION 'column "%" of c360.customer_360 would hold the next change of the windowed traits over "%"',
                part, NEW.input
                USING ERRCODE = 'duplicate_column', HINT = 'Drop or rename the trait "' || part || '" first.';
        END IF;
    END IF;
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

-- Remove a trait and its column; refused while a segment reads or carries it.  A windowed
-- trait's input part is recomputed without it, and next_change_at with it.
CREATE OR REPLACE FUNCTION c360.drop_trait(name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    users text;
    dropped c360.column_catalog;
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
    DELETE FROM c360.column_catalog t WHERE t.name = drop_trait.name RETURNING * INTO dropped;
    UPDATE c360.clock SET catalog_version = catalog_version + 1;
    IF dropped.lookback IS NOT NULL THEN
        PERFORM c360._trait_changes(dropped.input);
    END IF;
END
$$;

-- The parts of the traits there are, computed once; every process regenerates its
-- statements (they write the parts from now on).
DO $$
DECLARE
    i text;
BEGIN
    FOR i IN SELECT DISTINCT input FROM c360.column_catalog WHERE lookback IS NOT NULL ORDER BY 1 LOOP
        EXECUTE format('ALTER TABLE c360.customer_360 ADD COLUMN IF NOT EXISTS %I timestamptz',
                       i || '_traits_change_at');
    END LOOP;
    UPDATE c360.clock SET catalog_version = catalog_version + 1;
    FOR i IN SELECT DISTINCT input FROM c360.column_catalog WHERE lookback IS NOT NULL ORDER BY 1 LOOP
        PERFORM c360._trait_changes(i);
    END LOOP;
END
$$;
