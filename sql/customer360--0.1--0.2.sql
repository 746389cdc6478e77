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

-- segments (begin)
-- segments (end)
