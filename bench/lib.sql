-- bench/lib.sql: the bench's own schema in the bench cluster: the fixed clock instant, the
-- staging tables that hold pre-generated batches, the results, and the timed procedures.
-- Loaded once per run by bench/run.sh; nothing here touches the extension's objects.

CREATE SCHEMA bench;

-- Every generated timestamp is relative to one fixed instant, so that runs are comparable
-- and the tick phase knows exactly which rows cross a window boundary.
CREATE FUNCTION bench.t0() RETURNS timestamptz
    LANGUAGE sql IMMUTABLE AS $$ SELECT timestamptz '2030-01-01 00:00:00+00' $$;

-- The tick phase moves the clock by one hour and expects only the planted rows to cross a
-- boundary, so random data keeps clear of the 30/90/365-day boundaries (with margin on both
-- sides of the hour).
CREATE FUNCTION bench.off_band(ts timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN EXISTS (
        SELECT 1 FROM unnest(ARRAY[30, 90, 365]) d
        WHERE ts > bench.t0() - make_interval(days => d) - interval '1 hour'
          AND ts <= bench.t0() - make_interval(days => d) + interval '2 hours')
    THEN ts - interval '3 hours' ELSE ts END $$;

-- (lpad cuts: from 1,000,000 on, the number as it is)
CREATE FUNCTION bench.customer(i bigint) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT 'c' || CASE WHEN i < 1000000 THEN lpad(i::text, 6, '0') ELSE i::text END $$;

-- New events (ids prefix || seq), spread over all customers, within the last 30 days of t0.
-- Visits of per_visit events each: one customer, one new session, a minute apart.  A single
-- event's session is one of six per customer, so that some are already in the window.
CREATE FUNCTION bench.draw_events(prefix text, n bigint, customers bigint, per_visit int DEFAULT 1)
    RETURNS TABLE (seq bigint, event_id text, customer_id text, session_id text, event_type text,
                   product_id text, category_id text, event_time timestamptz)
    LANGUAGE sql AS $$
WITH v AS (
    SELECT g AS visit, 1 + floor(random() * customers)::bigint AS ci, floor(random() * 6)::int AS k,
           bench.t0() - random() * (interval '30 days' - interval '3 hours') AS at
    FROM generate_series(0, (n - 1) / per_visit) g)
SELECT s, prefix || lpad(s::text, 9, '0'), bench.customer(v.ci),
       CASE WHEN per_visit = 1 THEN 's' || v.ci || '-' || v.k ELSE 's' || prefix || v.visit END,
       (ARRAY['product_view','product_view','page_view','add_to_cart','purchase'])[1 + floor(random() * 5)::int],
       'p' || floor(random() * 5000)::int,
       'k' || floor(random() * 50)::int,
       bench.off_band(v.at + (s - 1) % per_visit * interval '1 minute')
FROM generate_series(1, n) s JOIN v ON v.visit = (s - 1) / per_visit $$;

-- The measured order changes: half new orders (never for planted customers, one in 100,
-- whose last order must stay put), half status/amount updates of distinct existing orders
-- of the table `existing` names, shuffled (seq).
CREATE FUNCTION bench.draw_order_changes(n bigint, customers bigint, existing text)
    RETURNS TABLE (seq bigint, op text, order_id text, customer_id text, order_status text,
                   total_amount numeric, item_count int, channel text, created_at timestamptz,
                   updated_at timestamptz)
    LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY EXECUTE format($q$
WITH ins AS (
    SELECT 'insert' AS op,
           'n' || lpad(s::text, 8, '0') AS order_id,
           bench.customer(CASE WHEN ci %% 100 = 0 THEN ci - 1 ELSE ci END) AS customer_id,
           (ARRAY['pending','shipped','delivered'])[1 + floor(random() * 3)::int] AS order_status,
           round((5 + random() * 295)::numeric, 2) AS total_amount,
           1 + floor(random() * 6)::int AS item_count,
           (ARRAY['web','mobile','store','marketplace'])[1 + floor(random() * 4)::int] AS channel,
           bench.t0() - random() * (interval '30 days' - interval '3 hours') AS created_at
    FROM (SELECT s, 1 + floor(random() * $1)::bigint AS ci
          FROM generate_series(1, $2 / 2) s) g),
upd AS (
    SELECT 'update' AS op, b.order_id, b.customer_id,
           (ARRAY['shipped','delivered','cancelled','returned'])[1 + floor(random() * 4)::int] AS order_status,
           round(b.total_amount * (0.5 + random())::numeric, 2) AS total_amount,
           b.item_count, b.channel, b.created_at
    FROM (SELECT * FROM %s ORDER BY random() LIMIT $2 - $2 / 2) b),
allc AS (SELECT * FROM ins UNION ALL SELECT * FROM upd)
SELECT row_number() OVER (ORDER BY random()), op, order_id, customer_id, order_status,
       total_amount, item_count, channel, created_at,
       bench.t0() - random() * interval '1 hour'
FROM allc$q$, existing) USING customers, n;
END $fn$;

-- Batches of JSON changes exactly as a client would send them (text), so that the timed
-- apply includes the JSON parse, as the timed COPY includes the CSV parse.  EXTERNAL storage:
-- fetching a batch costs no decompression that a real client would not have caused.
CREATE TABLE bench.batches (
    phase    text NOT NULL,
    batch_no integer NOT NULL,
    n        integer NOT NULL,
    changes  text NOT NULL,
    PRIMARY KEY (phase, batch_no)
);
ALTER TABLE bench.batches ALTER COLUMN changes SET STORAGE EXTERNAL;

CREATE TABLE bench.results (
    phase    text PRIMARY KEY,
    rows     bigint NOT NULL,
    seconds  float8 NOT NULL,
    batches  integer,
    p50_ms   float8,
    p99_ms   float8,
    max_ms   float8,
    note     text,
    lat_ms   float8[]            -- per batch, in order: shows drift as tables grow
);

-- The maintainer's nested statements per timed phase, from pg_stat_statements (track = all).
CREATE TABLE bench.statements (
    phase      text NOT NULL,
    label      text NOT NULL,
    calls      bigint NOT NULL,
    total_ms   float8 NOT NULL,
    mean_ms    float8 NOT NULL,
    rows       bigint NOT NULL,
    blks_hit   bigint NOT NULL,
    blks_other bigint NOT NULL
);

-- Names the extension's statements by where they live, so that the report reads as a
-- pointer into the C sources rather than as truncated SQL.
CREATE FUNCTION bench.label(q text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN q LIKE 'WITH d AS (SELECT % AS _c360_id%dd AS (%'
            THEN 'columns.c refresh (whole profile row)'
        WHEN q LIKE 'WITH d AS (SELECT % AS _c360_id%raw AS (%agg_behavioral_events AS (%fresh AS (%'
            THEN 'columns.c refresh behaviour (events recounted)'
        WHEN q LIKE 'WITH d AS (SELECT % AS _c360_id%raw AS (%expiry AS (%fresh AS (%'
            THEN 'columns.c refresh time (stage and expiry)'
        WHEN q LIKE 'WITH d AS (SELECT x AS _c360_id FROM unnest($1::text[]) x),%agg_%UPDATE%'
            THEN 'columns.c backfill chunk (traits)'
        WHEN q LIKE 'SELECT name, predicate, c360._segment_payload%' THEN 'segment.c list segments'
        WHEN q LIKE 'WITH v AS (SELECT * FROM unnest(%UPDATE c360.customer_360%'
            THEN 'columns.c events by difference (events, profiles, event traits)'
        WHEN q LIKE 'WITH v AS (SELECT * FROM unnest(%' THEN 'rollup.c insert_sql (events mirror)'
        WHEN q LIKE 'SELECT DISTINCT x FROM unnest($1::text[]) x' THEN 'maintain.c lock_ids (customer ids)'
        WHEN q LIKE 'SELECT as_of, time_zone FROM c360.clock' THEN 'maintain.c clock read'
        WHEN q LIKE 'WITH ev AS%' THEN 'columns.c tick events by difference (events left the window)'
        WHEN q LIKE 'WITH d AS (SELECT DISTINCT x AS _c360_id%'
            THEN 'traits.c refresh_sql (' || COALESCE(substring(q from 'JOIN c360\.(\w+) i ON'), '?') || ' traits)'
        WHEN q LIKE 'WITH d AS (SELECT x AS _c360_id%'
            THEN 'traits.c refresh_sql bulk (' || COALESCE(substring(q from 'JOIN c360\.(\w+) i ON'), '?') || ' traits)'
        WHEN q ~ '^SELECT DISTINCT .* FROM c360\.\w+ i WHERE \(i\.'
            THEN 'traits.c tick_sql (' || substring(q from 'FROM c360\.(\w+) i WHERE') || ' windows)'
        WHEN q LIKE 'SELECT DISTINCT COALESCE((SELECT ir.customer_id FROM c360.identity_resolved ir%'
            THEN 'rollup.c owners (events'' owners)'
        WHEN q LIKE 'SELECT customer_id FROM c360.customer_360 WHERE%' THEN 'columns.c tick band (last orders)'
        WHEN q LIKE 'UPDATE c360.clock%' THEN 'maintain.c tick set clock'
        WHEN q ~ '^SELECT .* FROM c360\.\w+ WHERE \w+ = ANY\(\$1\) ORDER BY .* FOR UPDATE'
            THEN 'apply.c lock (' || substring(q from 'FROM c360\.(\w+)') || ')'
        WHEN q ~ '^INSERT INTO c360\.\w+ \(.*unnest'
            THEN 'apply.c upsert (' || substring(q from 'INTO c360\.(\w+)') || ')'
        WHEN q ~ '^DELETE FROM c360\.\w+ WHERE'
            THEN 'apply.c delete (' || substring(q from 'FROM c360\.(\w+)') || ')'
        ELSE left(regexp_replace(q, '\s+', ' ', 'g'), 60)
    END $$;

CREATE FUNCTION bench.snapshot_statements(p_phase text) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO bench.statements
    SELECT p_phase, bench.label(query), sum(calls), sum(total_exec_time),
           sum(total_exec_time) / greatest(sum(calls), 1), sum(rows),
           sum(shared_blks_hit), sum(shared_blks_read + shared_blks_dirtied + shared_blks_written)
    FROM pg_stat_statements
    WHERE NOT toplevel AND query NOT LIKE '%bench.%' AND query NOT LIKE '%pg_stat_statements%'
      AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND query NOT LIKE '%percentile_cont%' AND query NOT LIKE 'SELECT timestamptz $1'
    GROUP BY 2 $$;

CREATE FUNCTION bench.pct(a float8[], p float8) RETURNS float8
    LANGUAGE sql IMMUTABLE AS $$
    SELECT percentile_cont(p) WITHIN GROUP (ORDER BY x) FROM unnest(a) x $$;

-- The first batch of chunk c when nbatches batches are cut into nchunks chunks (c = nchunks + 1
-- gives one past the last batch).
CREATE FUNCTION bench.chunk_first(c int, nbatches int, nchunks int) RETURNS int
    LANGUAGE sql IMMUTABLE AS $$ SELECT ((c - 1) * nbatches) / nchunks + 1 $$;

-- Apply staged batches p_from..p_to of a phase the way a source worker does: one batch per
-- transaction.  Only the apply and its commit are timed; fetching the staged text is not (a
-- worker would have it in memory already).  Appends each batch's milliseconds to lat.
CREATE PROCEDURE bench.apply_range(p_phase text, p_from int, p_to int,
                                   INOUT lat float8[], INOUT applied bigint)
    LANGUAGE plpgsql AS $$
DECLARE
    batch text;
    t     timestamptz;
BEGIN
    COMMIT;
    FOR i IN p_from..p_to LOOP
        SELECT changes INTO STRICT batch FROM bench.batches WHERE phase = p_phase AND batch_no = i;
        t := clock_timestamp();
        applied := applied + c360.apply_changes(batch::jsonb);
        COMMIT;
        lat := lat || extract(epoch FROM clock_timestamp() - t)::float8 * 1000;
    END LOOP;
END $$;

CREATE PROCEDURE bench.record_apply(p_phase text, lat float8[], applied bigint)
    LANGUAGE sql AS $$
    INSERT INTO bench.results
    SELECT p_phase, applied, sum(x) / 1000, count(*), bench.pct(lat, 0.5), bench.pct(lat, 0.99),
           max(x), NULL, lat
    FROM unnest(lat) x $$;

CREATE PROCEDURE bench.apply_staged(p_phase text)
    LANGUAGE plpgsql AS $$
DECLARE
    lat      float8[] := '{}';
    applied  bigint := 0;
    nbatches integer;
BEGIN
    PERFORM pg_stat_statements_reset();
    SELECT max(batch_no) INTO STRICT nbatches FROM bench.batches WHERE phase = p_phase;
    CALL bench.apply_range(p_phase, 1, nbatches, lat, applied);
    CALL bench.record_apply(p_phase, lat, applied);
    PERFORM bench.snapshot_statements(p_phase);
    COMMIT;
END $$;

-- Raw COPY of a server-side CSV file, committed, timed on the server, once into each of the
-- given identical tables; the median run counts.  A COPY lasts about a second, short enough
-- for a burst of other load on the machine to halve its rate.
CREATE PROCEDURE bench.copy_runs(p_tables text[], p_file text,
                                 INOUT secs float8, INOUT copied bigint, INOUT note text)
    LANGUAGE plpgsql AS $$
DECLARE
    t    timestamptz;
    n    bigint;
    runs float8[] := '{}';
BEGIN
    FOR i IN 1..array_length(p_tables, 1) LOOP
        COMMIT;
        t := clock_timestamp();
        EXECUTE format('COPY %s FROM %L WITH (FORMAT csv)', p_tables[i], p_file);
        GET DIAGNOSTICS n = ROW_COUNT;
        COMMIT;
        runs := runs || extract(epoch FROM clock_timestamp() - t)::float8;
    END LOOP;
    secs := secs + bench.pct(runs, 0.5);
    copied := copied + n;
    note := concat_ws(' | ', note,
                      (SELECT string_agg(round(x::numeric, 2)::text, ', ') FROM unnest(runs) x));
END $$;

-- A measured phase: its staged batches and its CSV in as many chunks as files, interleaved
-- (COPY chunk 1, apply chunk 1, COPY chunk 2, ...) so that both sides of the ratio run under
-- the same conditions, even when other work on the machine comes and goes.
CREATE PROCEDURE bench.measure(p_phase text, p_tables text[], p_files text[])
    LANGUAGE plpgsql AS $$
DECLARE
    nbatches integer;
    nchunks  integer := array_length(p_files, 1);
    lat      float8[] := '{}';
    applied  bigint := 0;
    secs     float8 := 0;
    copied   bigint := 0;
    note     text;
BEGIN
    PERFORM pg_stat_statements_reset();
    SELECT max(batch_no) INTO STRICT nbatches FROM bench.batches WHERE phase = p_phase;
    FOR c IN 1..nchunks LOOP
        CALL bench.copy_runs(p_tables, p_files[c], secs, copied, note);
        CALL bench.apply_range(p_phase, bench.chunk_first(c, nbatches, nchunks),
                               bench.chunk_first(c + 1, nbatches, nchunks) - 1, lat, applied);
    END LOOP;
    CALL bench.record_apply(p_phase, lat, applied);
    INSERT INTO bench.results (phase, rows, seconds, batches, note)
    VALUES ('copy_' || p_phase, copied, secs, nchunks, note);
    PERFORM bench.snapshot_statements(p_phase);
    COMMIT;
END $$;

-- Time one statement (tick, refresh, verify), committed.  A SELECT's single value is the
-- phase's row count; for a utility statement p_count_sql, run untimed afterwards, gives it.
CREATE PROCEDURE bench.time_stmt(p_phase text, p_sql text, p_note text DEFAULT NULL,
                                 p_count_sql text DEFAULT NULL)
    LANGUAGE plpgsql AS $$
DECLARE
    t       timestamptz;
    n       bigint;
    elapsed float8;
BEGIN
    PERFORM pg_stat_statements_reset();
    COMMIT;
    t := clock_timestamp();
    IF p_count_sql IS NULL THEN
        EXECUTE p_sql INTO n;
    ELSE
        EXECUTE p_sql;
    END IF;
    COMMIT;
    elapsed := extract(epoch FROM clock_timestamp() - t);
    IF p_count_sql IS NOT NULL THEN
        EXECUTE p_count_sql INTO n;
    END IF;
    INSERT INTO bench.results (phase, rows, seconds, batches, note)
    VALUES (p_phase, coalesce(n, 0), elapsed, 1, p_note);
    PERFORM bench.snapshot_statements(p_phase);
    COMMIT;
END $$;

-- Batch b of bench.floor_events (bench/data.sql, bench/sizes.sql) as one array a column.
CREATE FUNCTION bench.floor_batch(b int, OUT ids text[], OUT cust text[], OUT sess text[],
                                  OUT typ text[], OUT prod text[], OUT cat text[],
                                  OUT at timestamptz[])
    LANGUAGE plpgsql STABLE AS $$   -- plpgsql: the table is made after this file
BEGIN
    SELECT array_agg(event_id ORDER BY seq), array_agg(customer_id ORDER BY seq),
           array_agg(session_id ORDER BY seq), array_agg(event_type ORDER BY seq),
           array_agg(product_id ORDER BY seq), array_agg(category_id ORDER BY seq),
           array_agg(event_time ORDER BY seq)
    INTO ids, cust, sess, typ, prod, cat, at
    FROM bench.floor_events WHERE batch_no = b;
END $$;

-- The events floor's statement: the rows into the event mirror and, in the same statement,
-- their owners' profile counters (events, product views, last active).
CREATE FUNCTION bench.events_floor(ids text[], cust text[], sess text[], typ text[],
                                   prod text[], cat text[], at timestamptz[]) RETURNS void
    LANGUAGE plpgsql AS $$   -- plpgsql: its plan is kept across calls, as inline it was
BEGIN
    WITH ins AS (
        INSERT INTO c360.behavioral_events
        SELECT * FROM unnest(ids, cust, sess, typ, prod, cat, at)
        RETURNING customer_id, event_type, event_time),
    per AS (
        SELECT customer_id, count(*) AS n,
               count(*) FILTER (WHERE event_type = 'product_view') AS pv,
               max(event_time) AS last_at
        FROM ins GROUP BY customer_id)
    UPDATE c360.customer_360 p
    SET events_last_30d = p.events_last_30d + per.n,
        product_views_last_30d = p.product_views_last_30d + per.pv,
        last_active_at = greatest(p.last_active_at, per.last_at),
        profile_updated_at = clock_timestamp()
    FROM per WHERE p.customer_id = per.customer_id;
END $$;

-- What a batch of new events costs at the least, whatever maintains the profile.  Batch b
-- of the floor phase is written the ((b - 1) % 5 + 1)th of five ways, so the ways interleave
-- and see the same machine; each batch is rolled back, so they also see the same database:
--   copy    COPY of the batch's rows into the event mirror, one transaction per batch
--   insert  one plain INSERT of the rows into the event mirror
--   floor   that INSERT and, in the same statement, the owners' profile counters (events,
--           product views, last active): not a maintainer (no sessions, no window expiry,
--           no identity links), so a lower bound for any that keeps the profile exact per
--           batch
--   apply   c360.apply_changes, the maintainer, JSON parse included
--   visits  the same, for events that come in visits of 10 (one customer, one new session):
--           not the workload of the ratio target, but how much it depends on the spread
-- The ratio target is against the bulk COPY rate of phase 1; these show how much of it a
-- batch can reach at all.
CREATE PROCEDURE bench.floor(p_csv_prefix text)
    LANGUAGE plpgsql AS $$
DECLARE
    ways    text[] := '{copy,insert,floor,apply,visits}';
    lat     float8[] := '{}';
    way     text[] := '{}';
    nrows   int[] := '{}';
    v_n     int;
    f       record;
    batch   text;
    v_way   text;
    t       timestamptz;
BEGIN
    COMMIT;
    FOR b IN 1..(SELECT coalesce(max(batch_no), 0) FROM bench.batches WHERE phase = 'floor') LOOP
        SELECT * INTO f FROM bench.floor_batch(b);
        SELECT changes, batches.n INTO STRICT batch, v_n
        FROM bench.batches WHERE phase = 'floor' AND batch_no = b;
        v_way := ways[(b - 1) % 5 + 1];
        t := clock_timestamp();
        CASE v_way
        WHEN 'copy' THEN
            EXECUTE format('COPY c360.behavioral_events FROM %L WITH (FORMAT csv)',
                           p_csv_prefix || 'floor_' || b || '.csv');
        WHEN 'insert' THEN
            INSERT INTO c360.behavioral_events
            SELECT * FROM unnest(f.ids, f.cust, f.sess, f.typ, f.prod, f.cat, f.at);
        WHEN 'floor' THEN
            PERFORM bench.events_floor(f.ids, f.cust, f.sess, f.typ, f.prod, f.cat, f.at);
        WHEN 'apply', 'visits' THEN
            PERFORM c360.apply_changes(batch::jsonb);
        END CASE;
        lat := lat || extract(epoch FROM clock_timestamp() - t)::float8 * 1000;
        way := way || v_way;
        nrows := nrows || v_n;
        ROLLBACK;
    END LOOP;
    INSERT INTO bench.results (phase, rows, seconds, batches, p50_ms, p99_ms, max_ms)
    SELECT 'floor_' || w, sum(k), sum(x) / 1000, count(*), bench.pct(array_agg(x), 0.5),
           bench.pct(array_agg(x), 0.99), max(x)
    FROM unnest(way, lat, nrows) u(w, x, k) GROUP BY w;
    COMMIT;
END $$;
