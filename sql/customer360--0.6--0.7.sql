-- customer360 0.6 -> 0.7: the article's columns become the built-in entries of the profile
-- column catalog (docs/ARCHITECTURE.md, "The profile column catalog"; README, "The
-- profile column catalog").  reference_profile() and verify() run queries generated from
-- the catalog, as the maintainer's statements are.  Released scripts are never edited;
-- this one is open until 0.7 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.7'" to load this file. \quit

-- The built-in entries are data of the library (src/core/columns.c), the same for every
-- database: they are shown here, not stored, so that nothing of them is dumped.
CREATE FUNCTION c360._builtin_columns()
RETURNS TABLE (name text, input text, aggregate text, filter text, lookback interval,
               time_column text, type text)
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'c360_builtin_columns_srf';

-- Every derived column of c360.customer_360: the article's (builtin) and the traits, in
-- the profile's column order.
CREATE VIEW c360.profile_columns AS
SELECT b.name, true AS builtin, b.input, b.aggregate, b.filter, b.lookback, b.time_column,
       b.type, 'ready'::text AS state
FROM c360._builtin_columns() b
UNION ALL
SELECT t.name, false, t.input, t.aggregate, t.filter, t.lookback, t.time_column, t.type, t.state
FROM (SELECT * FROM c360.column_catalog ORDER BY created_at, name) t;

-- The statements generated from the catalog, as they run.
CREATE FUNCTION c360.profile_statements()
RETURNS TABLE (purpose text, statement text)
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'c360_profile_statements';

CREATE FUNCTION c360._generated_sql(purpose text) RETURNS text
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'c360_generated_sql';

-- The defining query, generated from the built-in entries.  Its columns are the article's,
-- as before.
CREATE OR REPLACE FUNCTION c360.reference_profile(as_of timestamptz)
RETURNS TABLE (
    customer_id text, email text, first_name text, last_name text, loyalty_tier text,
    acquisition_channel text, signup_date timestamptz, total_orders bigint,
    lifetime_value numeric, avg_order_value numeric, first_order_date timestamptz,
    last_order_date timestamptz, last_order_status text, preferred_channel text,
    open_support_tickets bigint, total_support_tickets bigint, last_ticket_at timestamptz,
    events_last_30d bigint, product_views_last_30d bigint, sessions_last_30d bigint,
    last_active_at timestamptz, lifecycle_stage text, has_open_support_issue boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE c360._generated_sql('reference') USING as_of;
END
$$;

-- Every difference between the profile and the reference at as_of, the article's columns
-- and the ready traits alike, in one generated query.
CREATE OR REPLACE FUNCTION c360.verify(as_of timestamptz DEFAULT c360.as_of())
RETURNS TABLE (customer_id text, column_name text, profile_value text, reference_value text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE c360._generated_sql('verify') USING as_of;
END
$$;

-- The article's columns alone (cheaper than verify() where traits are many), generated too.
CREATE OR REPLACE FUNCTION c360._verify_columns(as_of timestamptz DEFAULT c360.as_of())
RETURNS TABLE (customer_id text, column_name text, profile_value text, reference_value text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE c360._generated_sql('verify article') USING as_of;
END
$$;

DROP FUNCTION c360._traits_verify_sql();

REVOKE ALL ON c360.profile_columns FROM PUBLIC;
