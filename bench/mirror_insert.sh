#!/usr/bin/env bash
# bench/mirror_insert.sh: how the event mirror's rows are best written (issue 19, item 1).
# The events path writes a batch's rows with one SQL INSERT ... ON CONFLICT (event_id) DO
# NOTHING (src/core/profile_sql.c, INSERT_EVENTS_CTES): duplicate event_ids count once.
# COPY writes rows as a multi-insert (heap_multi_insert, then the index entries).  A
# multi-insert path in the extension would still have to drop the batch's duplicates first:
# one probe of the primary key for the batch's ids.  So the question is whether
#     COPY + the probe  <  INSERT ... ON CONFLICT DO NOTHING
# by enough to matter against a whole events batch (about 40 ms at bench/run.sh's scale).
# It also times COPY into a copy without (customer_id, event_time), to show what one
# customer index costs each batch.
# On a throwaway cluster: a mirror-shaped table of BENCH_BASE_EVENTS (500,000) events over
# BENCH_CUSTOMERS (100,000) customers, with the mirror's four indexes, in three copies;
# MI_BATCHES (40) batches of 1,000 new events with random customers, each written by every
# way in rotation, one transaction per batch.  Prints the median ms per batch of each way.
# Knobs: BENCH_CUSTOMERS, BENCH_BASE_EVENTS, MI_BATCHES, MI_PORT (54343).  About 2 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
PORT=${MI_PORT:-54343}
CUSTOMERS=${BENCH_CUSTOMERS:-100000}
BASE=${BENCH_BASE_EVENTS:-500000}
NB=${MI_BATCHES:-40}

. test/servers.sh
. bench/cluster.sh
bench_cluster mirrorinsert "$PORT" 0 postgres "shared_buffers = 1GB"
chmod 755 "$DIR"
q() { pg_psql "$PORT" -d postgres -X -q "$@"; }

echo "mirror insert bench: $BASE events over $CUSTOMERS customers, $NB batches of 1,000 ($(date +%T))"
q -v customers="$CUSTOMERS" -v base="$BASE" -v nb="$NB" -v dir="$DIR" <<'SQL'
CREATE TABLE ev (event_id text PRIMARY KEY, customer_id text NOT NULL, session_id text,
                 event_type text, product_id text, category_id text,
                 event_time timestamptz NOT NULL);
INSERT INTO ev
SELECT 'e' || g, 'c' || lpad((1 + (hashint4(g) & 2147483647) % :customers)::text, 6, '0'),
       's' || (g / 4), (ARRAY['page_view', 'product_view', 'add_to_cart'])[1 + g % 3],
       'p' || (g % 5000), 'k' || (g % 40), '2026-01-01'::timestamptz + g * interval '10 s'
FROM generate_series(1, :base) g;
CREATE INDEX ON ev (customer_id, session_id, event_time);
CREATE INDEX ev_customer_time ON ev (customer_id, event_time);
CREATE INDEX ON ev (event_time);
CREATE TABLE ev_copy (LIKE ev INCLUDING ALL);
INSERT INTO ev_copy SELECT * FROM ev;
CREATE TABLE ev_less (LIKE ev INCLUDING ALL);
INSERT INTO ev_less SELECT * FROM ev;
DROP INDEX ev_less_customer_id_event_time_idx;
VACUUM ANALYZE ev; VACUUM ANALYZE ev_copy; VACUUM ANALYZE ev_less;
CREATE TABLE batches AS
SELECT b, 'n' || b || '-' || g AS event_id,
       'c' || lpad((1 + (random() * (:customers - 1))::int)::text, 6, '0') AS customer_id,
       'ns' || b || '-' || (g / 3) AS session_id,
       (ARRAY['page_view', 'product_view', 'add_to_cart'])[1 + g % 3] AS event_type,
       'p' || (g % 5000) AS product_id, 'k' || (g % 40) AS category_id,
       '2026-06-01'::timestamptz + (b * 1000 + g) * interval '1 s' AS event_time
FROM generate_series(1, :nb) b, generate_series(1, 1000) g;
CREATE TABLE timings (way text, b int, ms float8);
SELECT format('COPY (SELECT event_id, customer_id, session_id, event_type, product_id, category_id, event_time FROM batches WHERE b = %s) TO %L', b, :'dir' || '/b' || b || '.tsv')
FROM generate_series(1, :nb) b \gexec
CREATE PROCEDURE run_batch(bn int, dir text) LANGUAGE plpgsql AS $$
DECLARE a text[]; c text[]; s text[]; t text[]; p text[]; g text[]; tm timestamptz[];
        t0 timestamptz;
BEGIN
    SELECT array_agg(x.event_id), array_agg(x.customer_id), array_agg(x.session_id),
           array_agg(x.event_type), array_agg(x.product_id), array_agg(x.category_id),
           array_agg(x.event_time)
    INTO a, c, s, t, p, g, tm FROM batches x WHERE x.b = bn;
    COMMIT;
    t0 := clock_timestamp();
    INSERT INTO ev
    SELECT v.event_id, v.customer_id, v.session_id, v.event_type, v.product_id, v.category_id, v.event_time
    FROM (SELECT * FROM unnest(a, c, s, t, p, g, tm) WITH ORDINALITY
              AS v(event_id, customer_id, session_id, event_type, product_id, category_id, event_time, n)
          ORDER BY event_id COLLATE "C", n) v
    ON CONFLICT (event_id) DO NOTHING;
    COMMIT;
    INSERT INTO timings VALUES ('INSERT ... ON CONFLICT DO NOTHING (today)', bn, 1000 * extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp();
    PERFORM 1 FROM ev_copy WHERE event_id = ANY (a);
    INSERT INTO timings VALUES ('the duplicate probe (primary key, the batch''s ids)', bn, 1000 * extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp();
    EXECUTE format('COPY ev_copy FROM %L', dir || '/b' || bn || '.tsv');
    COMMIT;
    INSERT INTO timings VALUES ('COPY (multi-insert)', bn, 1000 * extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp();
    EXECUTE format('COPY ev_less FROM %L', dir || '/b' || bn || '.tsv');
    COMMIT;
    INSERT INTO timings VALUES ('COPY, without (customer_id, event_time)', bn, 1000 * extract(epoch FROM clock_timestamp() - t0));
    COMMIT;
END $$;
SELECT format('CALL run_batch(%s, %L)', b, :'dir') FROM generate_series(1, :nb) b \gexec
\pset footer off
SELECT way, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) AS "median ms",
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 2) AS "p90 ms"
FROM timings GROUP BY way ORDER BY min(b), 2 DESC;
SELECT CASE WHEN (SELECT count(*) FROM ev) = (SELECT count(*) FROM ev_copy)
             AND (SELECT count(*) FROM ev) = (SELECT count(*) FROM ev_less)
            THEN 'the three tables hold the same rows' ELSE 'ROW COUNTS DIFFER' END AS "check";
SQL
