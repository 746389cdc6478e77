-- customer360--0.1.sql: install script of the customer360 extension.
-- Mirrors of the five profile inputs, the maintainer's private rollups, the profile relation
-- c360.customer_360, the clock, and the SQL API (apply, tick, verify, rebuild).

\echo Use "CREATE EXTENSION customer360" to load this file. \quit

-- The profile's one clock.  Every time-dependent column of c360.customer_360 is exact as of
-- as_of; window arithmetic (as_of - interval 'N days') is done in time_zone, fixed when the
-- extension is created, so that every backend (workers included) computes the same bounds.
CREATE TABLE c360.clock (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    as_of      timestamptz NOT NULL,
    time_zone  text NOT NULL
);
INSERT INTO c360.clock (as_of, time_zone) VALUES (now(), current_setting('TimeZone'));

-- Mirrors: one per profile input, columns exactly as the inputs (DESIGN.md section 3).
CREATE TABLE c360.customers (
    customer_id         text PRIMARY KEY,
    email               text,
    first_name          text,
    last_name           text,
    phone               text,
    acquisition_channel text,
    signup_date         timestamptz,
    loyalty_tier        text,
    last_updated        timestamptz
);

CREATE TABLE c360.orders (
    order_id     text PRIMARY KEY,
    customer_id  text NOT NULL,
    order_status text,
    total_amount numeric,
    item_count   integer,
    channel      text,
    created_at   timestamptz,
    updated_at   timestamptz
);
CREATE INDEX orders_customer_id_idx ON c360.orders (customer_id);

CREATE TABLE c360.support_tickets (
    ticket_id   text PRIMARY KEY,
    customer_id text NOT NULL,
    status      text,
    category    text,
    created_at  timestamptz,
    resolved_at timestamptz
);
CREATE INDEX support_tickets_customer_id_idx ON c360.support_tickets (customer_id);

CREATE TABLE c360.behavioral_events (
    event_id    text PRIMARY KEY,
    customer_id text NOT NULL,
    session_id  text,
    event_type  text,
    product_id  text,
    category_id text,
    event_time  timestamptz NOT NULL
);
CREATE INDEX behavioral_events_customer_time_idx ON c360.behavioral_events (customer_id, event_time);
-- Serves c360.tick(): the events whose window membership changed between two instants.
CREATE INDEX behavioral_events_time_idx ON c360.behavioral_events (event_time);

CREATE TABLE c360.identity_graph (
    identity_id    text PRIMARY KEY,
    customer_id    text NOT NULL,
    identity_type  text,
    identity_value text NOT NULL,
    created_at     timestamptz
);
CREATE INDEX identity_graph_customer_id_idx ON c360.identity_graph (customer_id);
CREATE INDEX identity_graph_value_idx ON c360.identity_graph (identity_value);

-- Maintainer state, derived from the mirrors (c360.rebuild() recreates it).
-- The winning link per identity value: events whose customer_id equals identity_value belong
-- to customer_id.
CREATE TABLE c360.identity_resolved (
    identity_value text PRIMARY KEY,
    customer_id    text NOT NULL
);
CREATE INDEX identity_resolved_customer_id_idx ON c360.identity_resolved (customer_id);

-- Per raw id (an event's own customer_id: a customer or a cookie/device id), counters exact as
-- of c360.as_of(), so that a new event costs O(1) and not a rescan of the id's history.
CREATE TABLE c360.event_rollup (
    raw_id            text PRIMARY KEY,
    events_30d        bigint NOT NULL,
    product_views_30d bigint NOT NULL,
    last_event_at     timestamptz
);

-- Sessions are counted distinct across all raw ids of a customer, so they cannot be summed
-- per raw id: keep each session's latest event per raw id and count at read time.
CREATE TABLE c360.event_sessions (
    raw_id        text NOT NULL,
    session_id    text NOT NULL,
    last_event_at timestamptz NOT NULL,
    PRIMARY KEY (raw_id, session_id)
);

-- The profile: exactly the reference query's columns, in its order, plus bookkeeping.
CREATE TABLE c360.customer_360 (
    customer_id            text PRIMARY KEY,
    email                  text,
    first_name             text,
    last_name              text,
    loyalty_tier           text,
    acquisition_channel    text,
    signup_date            timestamptz,
    total_orders           bigint NOT NULL,
    lifetime_value         numeric NOT NULL,
    avg_order_value        numeric NOT NULL,
    first_order_date       timestamptz,
    last_order_date        timestamptz,
    last_order_status      text,
    preferred_channel      text,
    open_support_tickets   bigint NOT NULL,
    total_support_tickets  bigint NOT NULL,
    last_ticket_at         timestamptz,
    events_last_30d        bigint NOT NULL,
    product_views_last_30d bigint NOT NULL,
    sessions_last_30d      bigint NOT NULL,
    last_active_at         timestamptz,
    lifecycle_stage        text NOT NULL,
    has_open_support_issue boolean NOT NULL,
    profile_updated_at     timestamptz NOT NULL,
    next_change_at         timestamptz
);
-- The article's queries: high-value customers with an open support issue, and engagement by
-- lifecycle stage.
CREATE INDEX customer_360_open_issue_ltv_idx ON c360.customer_360 (lifetime_value DESC)
    WHERE has_open_support_issue;
CREATE INDEX customer_360_stage_sessions_idx ON c360.customer_360 (lifecycle_stage, sessions_last_30d);
-- Serves c360.tick(): last orders crossing the 30/90/365-day stage boundaries.
CREATE INDEX customer_360_last_order_idx ON c360.customer_360 (last_order_date);

-- Sources: one row per upstream system, one worker each (DESIGN.md sections 4, 5, 8).
-- options may hold secrets (a conninfo password): the table is readable by its owner only
-- and no view shows it.
CREATE TABLE c360.sources (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z_][a-z0-9_]{0,39}$'),
    kind        text NOT NULL CHECK (kind IN ('postgres-cdc', 'mysql-cdc', 'kafka')),
    options     jsonb NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    -- the persisted phase: 'snapshot' until the initial copy committed, then 'streaming';
    -- 'error' stops the worker until c360.resume_source()
    phase       text NOT NULL DEFAULT 'snapshot' CHECK (phase IN ('snapshot', 'streaming', 'error')),
    last_error  text,
    resume_phase text,
    created_objects jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Which remote table or topic feeds which input; columns match by name.
CREATE TABLE c360.source_tables (
    source text NOT NULL REFERENCES c360.sources ON DELETE CASCADE,
    remote text NOT NULL,
    -- the input columns the remote table had at the snapshot; a later schema that lacks one
    -- is drift.  NULL: learn them from the next schema seen (after c360.resume_source)
    columns text[],
    input  text NOT NULL CHECK (input IN ('customers', 'orders', 'support_tickets',
                                          'behavioral_events', 'identity_graph')),
    PRIMARY KEY (source, remote)
);

-- Source positions that are not replication origins (binlog file/pos, Kafka offsets), and
-- the counters a worker keeps, written in the same transaction as the batch they describe.
CREATE TABLE c360.source_positions (
    source   text NOT NULL REFERENCES c360.sources ON DELETE CASCADE,
    part     text NOT NULL,
    position text NOT NULL,
    PRIMARY KEY (source, part)
);

CREATE TABLE c360.source_progress (
    source          text PRIMARY KEY REFERENCES c360.sources ON DELETE CASCADE,
    changes_applied bigint NOT NULL DEFAULT 0,
    last_applied_at timestamptz,
    last_source_commit_at timestamptz
);

-- Rows or messages that could not be decoded or cast, kept with the reason; the stream goes on.
CREATE TABLE c360.dead_letters (
    id       bigserial PRIMARY KEY,
    source   text NOT NULL,
    position text,
    payload  text,
    error    text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_source_idx ON c360.dead_letters (source, id);

SELECT pg_catalog.pg_extension_config_dump('c360.sources', '');
SELECT pg_catalog.pg_extension_config_dump('c360.source_tables', '');
SELECT pg_catalog.pg_extension_config_dump('c360.source_positions', '');
SELECT pg_catalog.pg_extension_config_dump('c360.source_progress', '');
SELECT pg_catalog.pg_extension_config_dump('c360.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('c360.dead_letters_id_seq', '');

-- pg_dump keeps the rows of extension tables only when they are marked.
SELECT pg_catalog.pg_extension_config_dump('c360.clock', '');
SELECT pg_catalog.pg_extension_config_dump('c360.customers', '');
SELECT pg_catalog.pg_extension_config_dump('c360.orders', '');
SELECT pg_catalog.pg_extension_config_dump('c360.support_tickets', '');
SELECT pg_catalog.pg_extension_config_dump('c360.behavioral_events', '');
SELECT pg_catalog.pg_extension_config_dump('c360.identity_graph', '');
SELECT pg_catalog.pg_extension_config_dump('c360.identity_resolved', '');
SELECT pg_catalog.pg_extension_config_dump('c360.event_rollup', '');
SELECT pg_catalog.pg_extension_config_dump('c360.event_sessions', '');
SELECT pg_catalog.pg_extension_config_dump('c360.customer_360', '');

-- The clock.
CREATE FUNCTION c360.as_of() RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT as_of FROM c360.clock $$;

CREATE FUNCTION c360.time_zone() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT time_zone FROM c360.clock $$;

-- ts + days calendar days, in time zone tz: Postgres's own interval arithmetic, as if the
-- session's TimeZone were tz.
CREATE FUNCTION c360.shift_days(ts timestamptz, days integer, tz text) RETURNS timestamptz
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'c360_shift_days';

-- The apply path.
CREATE FUNCTION c360.apply_change(input text, op text, old jsonb, new jsonb) RETURNS void
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'c360_apply_change';

CREATE FUNCTION c360.apply_changes(changes jsonb) RETURNS bigint
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'c360_apply_changes';

CREATE FUNCTION c360.tick(as_of timestamptz DEFAULT now()) RETURNS bigint
    LANGUAGE c VOLATILE STRICT
    AS 'MODULE_PATHNAME', 'c360_tick';

CREATE FUNCTION c360.rebuild() RETURNS bigint
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'c360_rebuild';

CREATE FUNCTION c360._preloaded() RETURNS boolean
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'c360_preloaded';

-- The defining query (shared/reference/customer_360.sql), verbatim but for its window bounds,
-- which use the profile's time zone.
CREATE FUNCTION c360.reference_profile(as_of timestamptz)
RETURNS TABLE (
    customer_id text, email text, first_name text, last_name text, loyalty_tier text,
    acquisition_channel text, signup_date timestamptz, total_orders bigint,
    lifetime_value numeric, avg_order_value numeric, first_order_date timestamptz,
    last_order_date timestamptz, last_order_status text, preferred_channel text,
    open_support_tickets bigint, total_support_tickets bigint, last_ticket_at timestamptz,
    events_last_30d bigint, product_views_last_30d bigint, sessions_last_30d bigint,
    last_active_at timestamptz, lifecycle_stage text, has_open_support_issue boolean)
LANGUAGE sql STABLE
AS $$
WITH
bounds AS (
    SELECT c360.shift_days(as_of, -30, c360.time_zone())  AS d30,
           c360.shift_days(as_of, -90, c360.time_zone())  AS d90,
           c360.shift_days(as_of, -365, c360.time_zone()) AS d365
),
resolved_identity AS (
    SELECT DISTINCT ON (identity_value) identity_value, customer_id
    FROM c360.identity_graph
    ORDER BY identity_value, created_at DESC NULLS LAST, identity_id DESC
),
attributed_events AS (
    SELECT COALESCE(ri.customer_id, e.customer_id) AS customer_id,
           e.session_id, e.event_type, e.event_time
    FROM c360.behavioral_events e
    LEFT JOIN resolved_identity ri ON ri.identity_value = e.customer_id
),
ord AS (
    SELECT customer_id,
           count(*)                                                        AS total_orders,
           sum(total_amount)                                               AS total_spend,
           avg(total_amount)                                               AS avg_order_value,
           min(created_at)                                                 AS first_order_date,
           max(created_at)                                                 AS last_order_date,
           (array_agg(order_status ORDER BY created_at DESC, order_id DESC))[1] AS last_order_status,
           mode() WITHIN GROUP (ORDER BY channel)                          AS preferred_channel
    FROM c360.orders
    GROUP BY customer_id
),
sup AS (
    SELECT customer_id,
           count(*) FILTER (WHERE status = 'open')                         AS open_tickets,
           count(*)                                                        AS total_tickets,
           max(created_at)                                                 AS last_ticket_at
    FROM c360.support_tickets
    GROUP BY customer_id
),
beh AS (
    SELECT customer_id,
           count(*) FILTER (WHERE event_time > b.d30)                      AS events_30d,
           count(*) FILTER (WHERE event_type = 'product_view'
                              AND event_time > b.d30)                      AS product_views_30d,
           count(DISTINCT session_id) FILTER (WHERE event_time > b.d30)    AS sessions_30d,
           max(event_time)                                                 AS last_active_at
    FROM attributed_events, bounds b
    GROUP BY customer_id
)
SELECT
    c.customer_id,
    c.email,
    c.first_name,
    c.last_name,
    c.loyalty_tier,
    c.acquisition_channel,
    c.signup_date,
    COALESCE(ord.total_orders, 0)      AS total_orders,
    COALESCE(ord.total_spend, 0)       AS lifetime_value,
    COALESCE(ord.avg_order_value, 0)   AS avg_order_value,
    ord.first_order_date,
    ord.last_order_date,
    ord.last_order_status,
    ord.preferred_channel,
    COALESCE(sup.open_tickets, 0)      AS open_support_tickets,
    COALESCE(sup.total_tickets, 0)     AS total_support_tickets,
    sup.last_ticket_at,
    COALESCE(beh.events_30d, 0)        AS events_last_30d,
    COALESCE(beh.product_views_30d, 0) AS product_views_last_30d,
    COALESCE(beh.sessions_30d, 0)      AS sessions_last_30d,
    beh.last_active_at,
    CASE
        WHEN ord.last_order_date > b.d30  THEN 'active'
        WHEN ord.last_order_date > b.d90  THEN 'at_risk'
        WHEN ord.last_order_date > b.d365 THEN 'lapsing'
        WHEN ord.last_order_date IS NOT NULL THEN 'churned'
        ELSE 'prospect'
    END                                AS lifecycle_stage,
    COALESCE(sup.open_tickets, 0) > 0  AS has_open_support_issue
FROM c360.customers c
CROSS JOIN bounds b
LEFT JOIN ord ON ord.customer_id = c.customer_id
LEFT JOIN sup ON sup.customer_id = c.customer_id
LEFT JOIN beh ON beh.customer_id = c.customer_id
$$;

-- Every difference between c360.customer_360 and the reference query at as_of, column by
-- column, compared as text so that even a numeric's scale counts.  A missing or extra profile
-- row shows as one row with column_name 'customer_id'.
CREATE FUNCTION c360.verify(as_of timestamptz DEFAULT c360.as_of())
RETURNS TABLE (customer_id text, column_name text, profile_value text, reference_value text)
LANGUAGE sql STABLE
AS $$
SELECT COALESCE(p.customer_id, r.customer_id), v.column_name, v.profile_value, v.reference_value
FROM c360.customer_360 p
FULL JOIN c360.reference_profile(as_of) r ON r.customer_id = p.customer_id
CROSS JOIN LATERAL (VALUES
    ('customer_id', p.customer_id, r.customer_id),
    ('email', p.email, r.email),
    ('first_name', p.first_name, r.first_name),
    ('last_name', p.last_name, r.last_name),
    ('loyalty_tier', p.loyalty_tier, r.loyalty_tier),
    ('acquisition_channel', p.acquisition_channel, r.acquisition_channel),
    ('signup_date', p.signup_date::text, r.signup_date::text),
    ('total_orders', p.total_orders::text, r.total_orders::text),
    ('lifetime_value', p.lifetime_value::text, r.lifetime_value::text),
    ('avg_order_value', p.avg_order_value::text, r.avg_order_value::text),
    ('first_order_date', p.first_order_date::text, r.first_order_date::text),
    ('last_order_date', p.last_order_date::text, r.last_order_date::text),
    ('last_order_status', p.last_order_status, r.last_order_status),
    ('preferred_channel', p.preferred_channel, r.preferred_channel),
    ('open_support_tickets', p.open_support_tickets::text, r.open_support_tickets::text),
    ('total_support_tickets', p.total_support_tickets::text, r.total_support_tickets::text),
    ('last_ticket_at', p.last_ticket_at::text, r.last_ticket_at::text),
    ('events_last_30d', p.events_last_30d::text, r.events_last_30d::text),
    ('product_views_last_30d', p.product_views_last_30d::text, r.product_views_last_30d::text),
    ('sessions_last_30d', p.sessions_last_30d::text, r.sessions_last_30d::text),
    ('last_active_at', p.last_active_at::text, r.last_active_at::text),
    ('lifecycle_stage', p.lifecycle_stage, r.lifecycle_stage),
    ('has_open_support_issue', p.has_open_support_issue::text, r.has_open_support_issue::text)
) AS v(column_name, profile_value, reference_value)
WHERE (p.customer_id IS NULL OR r.customer_id IS NULL) = (v.column_name = 'customer_id')
  AND v.profile_value IS DISTINCT FROM v.reference_value
ORDER BY 1, 2
$$;

-- Segments (DESIGN.md section 9): a boolean predicate over c360.customer_360 columns.
CREATE TABLE c360.segments (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z_][a-z0-9_]{0,39}$'),
    predicate  text NOT NULL,
    columns    text[] NOT NULL,        -- the profile columns carried in change messages
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE c360.segment_members (
    segment     text NOT NULL REFERENCES c360.segments ON DELETE CASCADE,
    customer_id text NOT NULL,
    entered_at  timestamptz NOT NULL,
    payload     jsonb NOT NULL,        -- the carried columns as last published
    PRIMARY KEY (segment, customer_id)
);

-- The outbox: every enter, exit and update, in the transaction of the profile change.
CREATE TABLE c360.segment_changes (
    seq         bigserial PRIMARY KEY,
    segment     text NOT NULL REFERENCES c360.segments ON DELETE CASCADE,
    customer_id text NOT NULL,
    change      text NOT NULL CHECK (change IN ('enter', 'exit', 'update')),
    payload     jsonb NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX segment_changes_segment_seq_idx ON c360.segment_changes (segment, seq);

-- Sinks publish a segment's outbox (bgworkers/kafka_sink.c).
CREATE TABLE c360.sinks (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z_][a-z0-9_]{0,39}$'),
    segment    text NOT NULL REFERENCES c360.segments ON DELETE RESTRICT,
    kind       text NOT NULL CHECK (kind IN ('kafka')),
    options    jsonb NOT NULL DEFAULT '{}',
    enabled    boolean NOT NULL DEFAULT true,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The last outbox seq a sink has had delivered (acknowledged by the broker).
CREATE TABLE c360.sink_positions (
    sink text PRIMARY KEY REFERENCES c360.sinks ON DELETE CASCADE,
    seq  bigint NOT NULL
);

-- A new sink's first messages: the segment's members when it was created (one enter each),
-- published before the outbox rows after sink_positions.seq; deleted as they are delivered.
CREATE TABLE c360.sink_snapshot (
    sink        text NOT NULL REFERENCES c360.sinks ON DELETE CASCADE,
    customer_id text NOT NULL,
    payload     jsonb NOT NULL,
    PRIMARY KEY (sink, customer_id)
);

SELECT pg_catalog.pg_extension_config_dump('c360.segments', '');
SELECT pg_catalog.pg_extension_config_dump('c360.segment_members', '');
SELECT pg_catalog.pg_extension_config_dump('c360.segment_changes', '');
SELECT pg_catalog.pg_extension_config_dump('c360.segment_changes_seq_seq', '');
SELECT pg_catalog.pg_extension_config_dump('c360.sinks', '');
SELECT pg_catalog.pg_extension_config_dump('c360.sink_positions', '');
SELECT pg_catalog.pg_extension_config_dump('c360.sink_snapshot', '');

CREATE FUNCTION c360._check_predicate(predicate text) RETURNS text[]
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'c360_check_predicate';

-- The SQL expression that renders a profile row p's carried columns as a JSON object.
CREATE FUNCTION c360._segment_payload(columns text[]) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 'jsonb_build_object(' || string_agg(format('%L, p.%I', c, c), ', ' ORDER BY o) || ')'
    FROM unnest(columns) WITH ORDINALITY AS u(c, o)
$$;

-- Create a segment: validate the predicate, compute its membership once (while no batch
-- runs: the clock lock is held exclusively), then the maintainer keeps it.
CREATE FUNCTION c360.create_segment(name text, predicate text, columns text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    used text[];
    carried text[];
    bad text;
    members bigint;
BEGIN
    IF name IS NULL OR name !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid segment name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use up to 40 lower-case letters, digits and underscores.';
    END IF;
    IF predicate IS NULL THEN
        RAISE EXCEPTION 'a segment predicate must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    used := c360._check_predicate(predicate);
    carried := COALESCE(columns, ARRAY['customer_id', 'email'] ||
                        ARRAY(SELECT u FROM unnest(used) u WHERE u NOT IN ('customer_id', 'email')));
    SELECT c INTO bad FROM unnest(carried) c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = 'c360.customer_360'::regclass AND a.attname = c
                        AND a.attnum > 0 AND NOT a.attisdropped);
    IF bad IS NOT NULL OR cardinality(carried) = 0 THEN
        RAISE EXCEPTION 'column "%" of a segment''s columns is not a column of c360.customer_360', bad
            USING ERRCODE = 'undefined_column';
    END IF;
    -- the clock lock (key "c360" = 1664300592) excludes every apply batch meanwhile
    PERFORM pg_advisory_xact_lock(1664300592, 0);
    INSERT INTO c360.segments (name, predicate, columns) VALUES (name, predicate, carried);
    EXECUTE format('INSERT INTO c360.segment_members (segment, customer_id, entered_at, payload) '
                   'SELECT %L, p.customer_id, clock_timestamp(), %s FROM c360.customer_360 p '
                   'WHERE (%s) IS TRUE', name, c360._segment_payload(carried), predicate);
    GET DIAGNOSTICS members = ROW_COUNT;
    RETURN members;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'segment "%" already exists', name USING ERRCODE = 'duplicate_object';
END
$$;

CREATE FUNCTION c360.drop_segment(name text) RETURNS void
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
END
$$;

-- The source API.
CREATE FUNCTION c360._kind_available(kind text) RETURNS boolean
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'c360_kind_available';
CREATE FUNCTION c360._wake_launcher() RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'c360_wake_launcher';
CREATE FUNCTION c360._stop_worker(name text) RETURNS void
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'c360_stop_worker';
CREATE FUNCTION c360._release_worker(name text) RETURNS void
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'c360_release_worker';
CREATE FUNCTION c360._pg_drop_remote(conninfo text, slot text, publication text) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'c360_pg_drop_remote';
CREATE FUNCTION c360.worker_status(
    OUT name text, OUT pid integer, OUT state text, OUT source_position text, OUT lag_bytes bigint,
    OUT lag_seconds double precision, OUT snapshot_done bigint, OUT snapshot_total bigint,
    OUT lag_messages bigint)
RETURNS SETOF record
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'c360_worker_status';

CREATE FUNCTION c360._source(source_name text) RETURNS c360.sources
LANGUAGE plpgsql AS $$
DECLARE
    s c360.sources;
BEGIN
    SELECT * INTO s FROM c360.sources WHERE name = source_name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer360 source "%" does not exist', source_name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN s;
END
$$;

CREATE FUNCTION c360.create_source(name text, kind text, options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF kind IS NULL OR kind NOT IN ('postgres-cdc', 'mysql-cdc', 'kafka') THEN
        RAISE EXCEPTION 'unknown source kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kinds are postgres-cdc, mysql-cdc and kafka.';
    END IF;
    IF NOT c360._kind_available(kind) THEN
        RAISE EXCEPTION 'source kind "%" is not available in this version of customer360', kind
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'the options of a source must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'postgres-cdc' AND jsonb_typeof(options->'conninfo') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'a postgres-cdc source needs a "conninfo" option (a libpq connection string)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'mysql-cdc' AND (jsonb_typeof(options->'host') IS DISTINCT FROM 'string'
                               OR jsonb_typeof(options->'user') IS DISTINCT FROM 'string'
                               OR jsonb_typeof(options->'server_id') IS DISTINCT FROM 'number') THEN
        RAISE EXCEPTION 'a mysql-cdc source needs "host", "user" (strings) and "server_id" (a number unique among the server''s replicas); "port", "password" and "database" are optional'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'kafka' AND (jsonb_typeof(options->'bootstrap.servers') IS DISTINCT FROM 'string'
                           OR jsonb_typeof(options->'topic') IS DISTINCT FROM 'string') THEN
        RAISE EXCEPTION 'a kafka source needs "bootstrap.servers" and "topic" (strings); "startup" (earliest|latest), "partitions" and "properties.*" are optional'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind = 'kafka' AND options ? 'startup' AND options->>'startup' NOT IN ('earliest', 'latest') THEN
        RAISE EXCEPTION 'option "startup" must be earliest or latest, not "%"', options->>'startup'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF name IS NULL OR name !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid source name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use up to 40 lower-case letters, digits and underscores.';
    END IF;
    INSERT INTO c360.sources (name, kind, options) VALUES (name, kind, options);
    INSERT INTO c360.source_progress (source) VALUES (name);
    PERFORM c360._release_worker(name);   -- a source dropped under this name is gone
    PERFORM c360._wake_launcher();
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'customer360 source "%" already exists', name USING ERRCODE = 'duplicate_object';
END
$$;

-- Map a remote table ('schema.table'; 'public' when no schema is given) onto an input.
-- Mappings are read when the source takes its snapshot: map every table before its first
-- start (or in the transaction that creates it).
CREATE FUNCTION c360.map_table(source text, remote text, input text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s c360.sources := c360._source(source);
    qualified text := CASE WHEN s.kind = 'postgres-cdc' AND position('.' in remote) = 0
                           THEN 'public.' || remote ELSE remote END;
BEGIN
    IF input IS NULL OR input NOT IN ('customers', 'orders', 'support_tickets',
                                      'behavioral_events', 'identity_graph') THEN
        RAISE EXCEPTION 'unknown input "%"', input
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The inputs are customers, orders, support_tickets, behavioral_events and identity_graph.';
    END IF;
    IF s.phase <> 'snapshot' THEN
        RAISE EXCEPTION 'source "%" already took its snapshot; a table mapped now would miss its existing rows', source
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Drop the source and create it again with all its tables mapped.';
    END IF;
    INSERT INTO c360.source_tables (source, remote, input) VALUES (source, qualified, input)
    ON CONFLICT ON CONSTRAINT source_tables_pkey DO UPDATE SET input = excluded.input;
    PERFORM c360._wake_launcher();
END
$$;

CREATE FUNCTION c360.pause_source(name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM c360._source(name);
    UPDATE c360.sources s SET enabled = false WHERE s.name = pause_source.name;
    PERFORM c360._wake_launcher();
END
$$;

-- Resume a paused source, or retry one in state error (after the user fixed its cause).
-- Its mapped columns are learned again from the schema the stream shows next.
CREATE FUNCTION c360.resume_source(name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s c360.sources := c360._source(name);
BEGIN
    UPDATE c360.sources x
    SET enabled = true,
        phase = CASE WHEN s.phase = 'error' THEN COALESCE(s.resume_phase, 'streaming') ELSE s.phase END,
        last_error = CASE WHEN s.phase = 'error' THEN NULL ELSE s.last_error END,
        resume_phase = NULL
    WHERE x.name = s.name;
    IF s.phase = 'error' THEN
        UPDATE c360.source_tables t SET columns = NULL WHERE t.source = s.name;
    END IF;
    PERFORM c360._wake_launcher();
END
$$;

-- Stop the source's worker, remove what it created on the source (its replication slot;
-- the publication if the source created it) and forget it.
CREATE FUNCTION c360.drop_source(name text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s c360.sources := c360._source(name);
BEGIN
    PERFORM c360._stop_worker(s.name);
    IF s.kind = 'postgres-cdc' THEN
        PERFORM c360._pg_drop_remote(s.options->>'conninfo',
                                     COALESCE(s.options->>'slot', 'c360_' || s.name),
                                     CASE WHEN (s.created_objects->>'publication')::boolean
                                          THEN COALESCE(s.options->>'publication', 'c360_' || s.name) END);
        IF EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = 'c360_' || s.name) THEN
            PERFORM pg_replication_origin_drop('c360_' || s.name);
        END IF;
    END IF;
    DELETE FROM c360.sources x WHERE x.name = s.name;
    PERFORM c360._wake_launcher();
END
$$;

-- What each source is doing.  Never shows options (they may hold a password).
CREATE VIEW c360.source_status AS
SELECT s.name,
       s.kind,
       CASE WHEN NOT s.enabled THEN 'paused'
            WHEN s.phase = 'error' THEN 'error'
            WHEN w.pid IS NULL THEN 'stopped'
            ELSE w.state END                                       AS state,
       COALESCE(w.source_position,
                (SELECT o.remote_lsn::text FROM pg_replication_origin_status o
                 WHERE o.external_id = 'c360_' || s.name AND o.remote_lsn <> '0/0'),
                (SELECT string_agg(p.part || '=' || p.position, ', ' ORDER BY p.part)
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

-- Create a sink publishing a segment's changes.  Its position and its snapshot of the
-- members are taken while no batch runs (the clock lock), so the snapshot and the outbox
-- rows after the position meet exactly: no gap, no double.
CREATE FUNCTION c360.create_sink(name text, segment text, kind text, options jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF name IS NULL OR name !~ '^[a-z_][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'invalid sink name "%"', name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use up to 40 lower-case letters, digits and underscores.';
    END IF;
    IF kind IS DISTINCT FROM 'kafka' THEN
        RAISE EXCEPTION 'unknown sink kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The only sink kind is kafka.';
    END IF;
    IF NOT c360._kind_available('kafka-sink') THEN
        RAISE EXCEPTION 'sink kind "%" is not available in this version of customer360', kind
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF jsonb_typeof(options->'bootstrap.servers') IS DISTINCT FROM 'string'
       OR jsonb_typeof(options->'topic') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'a kafka sink needs "bootstrap.servers" and "topic" (strings); "properties.*" are optional'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM c360.segments s WHERE s.name = create_sink.segment) THEN
        RAISE EXCEPTION 'segment "%" does not exist', segment USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM pg_advisory_xact_lock(1664300592, 0);
    INSERT INTO c360.sinks (name, segment, kind, options) VALUES (name, segment, kind, options);
    PERFORM c360._release_worker('sink:' || name);
    -- the sequence, not max(seq): sinks prune the outbox, possibly to empty
    INSERT INTO c360.sink_positions (sink, seq)
    VALUES (name, COALESCE(pg_sequence_last_value('c360.segment_changes_seq_seq'), 0));
    INSERT INTO c360.sink_snapshot (sink, customer_id, payload)
    SELECT name, m.customer_id, m.payload FROM c360.segment_members m
    WHERE m.segment = create_sink.segment;
    PERFORM c360._wake_launcher();
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'sink "%" already exists', name USING ERRCODE = 'duplicate_object';
END
$$;

CREATE FUNCTION c360.drop_sink(name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM c360.sinks k WHERE k.name = drop_sink.name) THEN
        RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM c360._stop_worker('sink:' || name);
    DELETE FROM c360.sinks k WHERE k.name = drop_sink.name;
    PERFORM c360._wake_launcher();
END
$$;

CREATE VIEW c360.sink_status AS
SELECT k.name,
       k.segment,
       CASE WHEN NOT k.enabled THEN 'paused'
            WHEN w.pid IS NULL THEN 'stopped'
            ELSE w.state END                                        AS state,
       p.seq                                                        AS position,
       (SELECT count(*) FROM c360.sink_snapshot n WHERE n.sink = k.name)
       + (SELECT count(*) FROM c360.segment_changes c
          WHERE c.segment = k.segment AND c.seq > p.seq)            AS backlog,
       k.last_error
FROM c360.sinks k
LEFT JOIN c360.sink_positions p ON p.sink = k.name
LEFT JOIN c360.worker_status() w ON w.name = 'sink:' || k.name;

-- Tables holding profile data are not for PUBLIC; the owner grants what each role may read.
REVOKE ALL ON ALL TABLES IN SCHEMA c360 FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.apply_change(text, text, jsonb, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.apply_changes(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.tick(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.rebuild() FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.create_source(text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.map_table(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.pause_source(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.resume_source(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.drop_source(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360._stop_worker(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360._release_worker(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360._pg_drop_remote(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.create_segment(text, text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.drop_segment(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.create_sink(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION c360.drop_sink(text) FROM PUBLIC;

DO $$
BEGIN
    IF NOT c360._preloaded() THEN
        -- CREATE EXTENSION runs this script with client_min_messages at warning; the setting
        -- is local to the script, so lowering it here shows this one notice and no other
        PERFORM set_config('client_min_messages', 'notice', true);
        RAISE NOTICE 'customer360 is not in shared_preload_libraries: the SQL API works, but no background workers (sources, sinks, ticker) will run'
            USING HINT = 'Add customer360 to shared_preload_libraries and set c360.database, then restart the server.';
    END IF;
END
$$;
