#!/usr/bin/env bash
# bench/sink.sh: the cost of segments and the speed of a Kafka sink, on a throwaway cluster.
#   1. Profile changes/s through c360.apply_changes (one batch per transaction) with no
#      segment and with 10 segments defined: the same stream of changes runs in two copies
#      of one database, chunk by chunk in alternation so that machine noise hits both alike.
#      The ratio of the times is the segment overhead (target <= 1.3x).  Also c360.tick()
#      with and without the segments.
#   2. Sink messages/s to the test broker (test/kafka_broker): a new sink's snapshot (one
#      enter per member), then an outbox backlog built while the broker was down.
# Knobs (environment): SINK_BENCH_CUSTOMERS (50000), SINK_BENCH_CHANGES (100000),
# SINK_BENCH_BATCH (1000), SINK_BENCH_CHUNKS (4), SINK_BENCH_PORT (54336); SINK_BENCH_SINK=0
# measures the segment overhead alone (part 1, no broker); SINK_BENCH_KEEP=1 leaves the
# cluster running (databases bench_none, bench_segs, bench_sink) for a closer look.
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh
. bench/cluster.sh
PORT=${SINK_BENCH_PORT:-54336}
CUSTOMERS=${SINK_BENCH_CUSTOMERS:-50000}
CHANGES=${SINK_BENCH_CHANGES:-100000}
BATCH=${SINK_BENCH_BATCH:-1000}
CHUNKS=${SINK_BENCH_CHUNKS:-4}
KEEP=${SINK_BENCH_KEEP:-0}
SINK=${SINK_BENCH_SINK:-1}

make -s >/dev/null && make -s install >/dev/null
[ "$SINK" = 0 ] || make -s test/kafka_broker >/dev/null

BROKER_PID=
BENCH_ON_EXIT='if [ -n "$BROKER_PID" ]; then kill -TERM "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi'

# The sink runs in bench_sink (the launcher's database); the segment bench in two others.
bench_cluster sinkbench "$PORT" "$KEEP" bench_segs \
    "c360.database = 'bench_sink'" \
    "shared_buffers = 512MB"

q() { local db=$1; shift; pg_psql "$PORT" -d "$db" -qAt "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

say "cluster on port $PORT; generating $CUSTOMERS customers and $CHANGES changes (untimed)"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE bench_base"
q bench_base -c "CREATE EXTENSION customer360" -c "SELECT c360.tick('2030-06-01 00:00+00')" >/dev/null
# The base: customers with 0 to 5 orders over two years, a few tickets, some clickstream.
# The measured stream, pre-generated as JSON text batches: order inserts and status updates,
# tier changes, tickets opened and resolved, events.
q bench_base -v customers="$CUSTOMERS" -v changes="$CHANGES" -v batch="$BATCH" <<'SQL' >/dev/null
SELECT setseed(0.42);
CREATE FUNCTION pg_temp.cid(i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'c' || lpad(i::text, 6, '0') $$;
CREATE FUNCTION pg_temp.any_cid() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT pg_temp.cid(1 + floor(random() * current_setting('bench.customers')::int)::bigint) $$;
SELECT set_config('bench.customers', :'customers', false);
CREATE TABLE public.base AS
SELECT row_number() OVER () AS n, ch FROM (
    SELECT jsonb_build_object('input', 'customers', 'op', 'insert', 'new', jsonb_build_object(
               'customer_id', pg_temp.cid(i), 'email', pg_temp.cid(i) || '@example.com',
               'loyalty_tier', (ARRAY['bronze', 'bronze', 'silver', 'gold', 'platinum'])[1 + floor(random() * 5)::int],
               'acquisition_channel', (ARRAY['organic', 'paid_search', 'social', 'email'])[1 + floor(random() * 4)::int],
               'signup_date', c360.as_of() - make_interval(days => 400 + floor(random() * 600)::int))) AS ch
    FROM generate_series(1, :customers) i
    UNION ALL
    SELECT jsonb_build_object('input', 'orders', 'op', 'insert', 'new', jsonb_build_object(
               'order_id', format('b%s-%s', i, k), 'customer_id', pg_temp.cid(i), 'order_status', 'delivered',
               'total_amount', round((10 + random() * 400)::numeric, 2),
               'channel', (ARRAY['web', 'app', 'store'])[1 + floor(random() * 3)::int],
               'created_at', c360.as_of() - make_interval(secs => random() * 730 * 86400)))
    FROM generate_series(1, :customers) i, generate_series(1, (i * 7919) % 6) k
    UNION ALL
    SELECT jsonb_build_object('input', 'support_tickets', 'op', 'insert', 'new', jsonb_build_object(
               'ticket_id', format('bt%s', i), 'customer_id', pg_temp.any_cid(),
               'status', CASE WHEN random() < 0.3 THEN 'open' ELSE 'resolved' END,
               'created_at', c360.as_of() - make_interval(days => floor(random() * 200)::int)))
    FROM generate_series(1, :customers / 5) i
    UNION ALL
    SELECT jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new', jsonb_build_object(
               'event_id', format('be%s', i), 'customer_id', pg_temp.any_cid(),
               'session_id', format('s%s', floor(random() * 5)::int),
               'event_type', (ARRAY['product_view', 'product_view', 'page_view', 'search', 'add_to_cart'])[1 + floor(random() * 5)::int],
               'event_time', c360.as_of() - make_interval(secs => random() * 45 * 86400)))
    FROM generate_series(1, :customers * 2) i
) s;
CREATE TABLE public.stream (b integer PRIMARY KEY, changes text NOT NULL);
INSERT INTO public.stream
SELECT (n - 1) / :batch + 1, jsonb_agg(ch ORDER BY n)::text FROM (
    SELECT row_number() OVER (ORDER BY random()) AS n, ch FROM (
        SELECT jsonb_build_object('input', 'orders', 'op', 'insert', 'new', jsonb_build_object(
                   'order_id', format('n%s', i), 'customer_id', pg_temp.any_cid(), 'order_status', 'processing',
                   'total_amount', round((10 + random() * 400)::numeric, 2),
                   'channel', (ARRAY['web', 'app', 'store'])[1 + floor(random() * 3)::int],
                   'created_at', c360.as_of() - make_interval(secs => random() * 86400))) AS ch
        FROM generate_series(1, :changes * 35 / 100) i
        UNION ALL
        SELECT jsonb_build_object('input', 'orders', 'op', 'update', 'old', jsonb_build_object('order_id', format('b%s-1', k)),
                   'new', jsonb_build_object('order_id', format('b%s-1', k),
                                             'order_status', (ARRAY['shipped', 'delivered', 'returned'])[1 + floor(random() * 3)::int]))
        FROM (SELECT 1 + floor(random() * :customers)::int AS k FROM generate_series(1, :changes * 18 / 100)) x
        WHERE (k * 7919) % 6 >= 1     -- customers with an order b<k>-1
        UNION ALL
        SELECT jsonb_build_object('input', 'customers', 'op', 'update', 'old', jsonb_build_object('customer_id', cid),
                   'new', jsonb_build_object('customer_id', cid,
                                             'loyalty_tier', (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + floor(random() * 4)::int]))
        FROM (SELECT pg_temp.any_cid() AS cid FROM generate_series(1, :changes * 15 / 100)) x
        UNION ALL
        SELECT jsonb_build_object('input', 'support_tickets', 'op', 'insert', 'new', jsonb_build_object(
                   'ticket_id', format('nt%s', i), 'customer_id', pg_temp.any_cid(), 'status', 'open',
                   'created_at', c360.as_of() - make_interval(secs => random() * 86400)))
        FROM generate_series(1, :changes * 10 / 100) i
        UNION ALL
        SELECT jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new', jsonb_build_object(
                   'event_id', format('ne%s', i), 'customer_id', pg_temp.any_cid(),
                   'session_id', format('s%s', floor(random() * 8)::int),
                   'event_type', (ARRAY['product_view', 'page_view', 'search'])[1 + floor(random() * 3)::int],
                   'event_time', c360.as_of() - make_interval(secs => random() * 86400)))
        FROM generate_series(1, :changes - :changes * 75 / 100) i
    ) s
) t GROUP BY 1;
-- One batch per transaction, as a source worker applies them.
CREATE PROCEDURE public.apply_stream(lo integer, hi integer) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT changes FROM public.stream WHERE b BETWEEN lo AND hi ORDER BY b LOOP
        PERFORM c360.apply_changes(r.changes::jsonb);
        COMMIT;
    END LOOP;
END
$$;
SQL
say "loading the base through apply_changes (untimed)"
q bench_base -c "SELECT sum(c360.apply_changes(b)) FROM (SELECT jsonb_agg(ch ORDER BY n) AS b
                  FROM public.base GROUP BY (n - 1) / 5000 ORDER BY (n - 1) / 5000) s" >/dev/null
q bench_base -c "VACUUM ANALYZE" >/dev/null
for db in bench_none bench_segs bench_sink; do
    pg_psql "$PORT" -d postgres -c "CREATE DATABASE $db TEMPLATE bench_base"
done

# Ten segments over every kind of profile column: tiers and stages, money, support,
# behaviour windows, channels.
q bench_segs <<'SQL' >"$DIR/segments"
SELECT name, c360.create_segment(name, predicate) FROM (VALUES
  ('vip_at_risk', $$loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')$$),
  ('high_intent', $$product_views_last_30d >= 5 AND sessions_last_30d >= 2 AND lifecycle_stage <> 'active'$$),
  ('support_escalation', 'has_open_support_issue AND lifetime_value > 1000'),
  ('big_spenders', 'lifetime_value > 1000'),
  ('winback', $$lifecycle_stage = 'churned' AND loyalty_tier <> 'bronze'$$),
  ('loyal', 'total_orders >= 4'),
  ('open_issue', 'has_open_support_issue'),
  ('idle_actives', $$events_last_30d = 0 AND lifecycle_stage = 'active'$$),
  ('app_big_baskets', $$preferred_channel = 'app' AND avg_order_value > 200$$),
  ('paid_one_timers', $$acquisition_channel = 'paid_search' AND total_orders = 1$$)
) s(name, predicate);
SQL
members=$(awk -F'|' '{ s += $2 } END { print s }' "$DIR/segments")
nbatches=$(q bench_base -c "SELECT max(b) FROM public.stream")
CHANGES=$(q bench_base -c "SELECT sum(jsonb_array_length(changes::jsonb)) FROM public.stream")

# --- 1. segment overhead ---------------------------------------------------------------------
say "applying $CHANGES changes in $nbatches batches, $CHUNKS chunks alternating between 0 and 10 segments"
t_none=0 t_segs=0
for ((c = 0; c < CHUNKS; c++)); do
    lo=$((c * nbatches / CHUNKS + 1)) hi=$(((c + 1) * nbatches / CHUNKS))
    # alternate which database goes first, so that neither always runs on a warmer machine
    if ((c % 2 == 0)); then order="bench_none bench_segs"; else order="bench_segs bench_none"; fi
    for db in $order; do
        t0=$(now)
        q "$db" -c "CALL public.apply_stream($lo, $hi)"
        t=$(secs "$t0" "$(now)")
        if [ "$db" = bench_none ]; then t_none=$(awk -v a="$t_none" -v b="$t" 'BEGIN { print a + b }'); else t_segs=$(awk -v a="$t_segs" -v b="$t" 'BEGIN { print a + b }'); fi
    done
done
outbox=$(q bench_segs -c "SELECT count(*) FROM c360.segment_changes")
diffs=$(q bench_segs -c "SELECT count(*) FROM c360.verify()")
[ "$diffs" = 0 ] || { echo "c360.verify() found $diffs differences with segments" >&2; exit 1; }

say "ticking 7 days in both databases"
tick_time() {
    local t0 n
    t0=$(now)
    n=$(q "$1" -c "SELECT c360.tick(c360.as_of() + interval '7 days')")
    echo "$(secs "$t0" "$(now)") $n"
}
read -r tick_none rows_none < <(tick_time bench_none)
read -r tick_segs rows_segs < <(tick_time bench_segs)
tick_outbox=$(($(q bench_segs -c "SELECT count(*) FROM c360.segment_changes") - outbox))

# --- report of part 1 (printed alone, or before part 2's) -----------------------------
report_segments() {
    echo
    echo "customer360 segments and sinks ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '%s customers; %s changes in batches of %s, one transaction each\n' "$CUSTOMERS" "$CHANGES" "$BATCH"
    printf '  %-34s %8.2f s  %8s changes/s\n' "apply_changes, no segment" "$t_none" "$(rate "$CHANGES" "$t_none")"
    printf '  %-34s %8.2f s  %8s changes/s   (%s members at creation; %s outbox rows)\n' \
        "apply_changes, 10 segments" "$t_segs" "$(rate "$CHANGES" "$t_segs")" "$members" "$outbox"
    printf '  %-34s %8.2fx  (target <= 1.3x)\n' "segment overhead" "$(awk -v a="$t_segs" -v b="$t_none" 'BEGIN { print a / b }')"
    printf '  %-34s %8.2f s  (%s profile rows changed)\n' "tick +7 days, no segment" "$tick_none" "$rows_none"
    printf '  %-34s %8.2f s  (%s profile rows changed, %s outbox rows) %.2fx\n' "tick +7 days, 10 segments" \
        "$tick_segs" "$rows_segs" "$tick_outbox" "$(awk -v a="$tick_segs" -v b="$tick_none" 'BEGIN { print a / b }')"
}
if [ "$SINK" = 0 ]; then
    report_segments
    exit 0
fi

# --- 2. sink messages/s ----------------------------------------------------------------------
say "sink: snapshot, then an outbox backlog built while the broker is down"
test/kafka_broker --topic bench:1 --bootstrap-file "$DIR/bootstrap" >/dev/null 2>"$DIR/broker.log" &
BROKER_PID=$!
for _ in $(seq 100); do [ -s "$DIR/bootstrap" ] && break; sleep 0.1; done
[ -s "$DIR/bootstrap" ] || { echo "the test broker did not start" >&2; exit 1; }
BOOTSTRAP=$(cat "$DIR/bootstrap")
state() { q bench_sink -c "SELECT state || ' ' || backlog FROM c360.sink_status WHERE name = 'bench'"; }
# wait_drained SECS: until the sink has published everything (fail after SECS).
wait_drained() {
    local i
    for ((i = 0; i < $1 * 20; i++)); do
        [ "$(state)" = "streaming 0" ] && return
        sleep 0.05
    done
    echo "the sink did not drain in $1 s: $(state)" >&2
    exit 1
}
everyone=$(q bench_sink -c "SELECT c360.create_segment('everyone', 'total_orders >= 0',
             ARRAY['customer_id', 'email', 'loyalty_tier', 'lifecycle_stage', 'total_orders', 'lifetime_value'])")
# Quick reconnects: the outbox phase is timed from the moment the broker is back.
t0=$(now)
q bench_sink -c "SELECT c360.create_sink('bench', 'everyone', 'kafka',
                   jsonb_build_object('bootstrap.servers', '$BOOTSTRAP', 'topic', 'bench',
                                      'properties.reconnect.backoff.ms', '10',
                                      'properties.reconnect.backoff.max.ms', '100'))" >/dev/null
wait_drained 300
snap_time=$(secs "$t0" "$(now)")
kill -USR1 "$BROKER_PID"
q bench_sink -c "CALL public.apply_stream(1, $((nbatches / 2)))"
backlog=$(q bench_sink -c "SELECT backlog FROM c360.sink_status WHERE name = 'bench'")
t0=$(now)
kill -USR2 "$BROKER_PID"
wait_drained 300
outbox_time=$(secs "$t0" "$(now)")

# --- report ----------------------------------------------------------------------------------
report_segments
printf 'Kafka sink to the test broker (c360.batch_size %s messages per delivery wait and commit)\n' \
    "$(q bench_sink -c "SHOW c360.batch_size")"
printf '  %-34s %8.2f s  %8s messages/s  (%s enters)\n' "snapshot of a new sink" "$snap_time" "$(rate "$everyone" "$snap_time")" "$everyone"
printf '  %-34s %8.2f s  %8s messages/s  (%s outbox rows)\n' "outbox backlog after broker down" "$outbox_time" "$(rate "$backlog" "$outbox_time")" "$backlog"
