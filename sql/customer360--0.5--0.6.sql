-- customer360 0.5 -> 0.6: inputs of your own (c360.create_input), and the Kafka formats
-- debezium and segment.  Released scripts are never edited; this one is open until 0.6 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.6'" to load this file. \quit

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
