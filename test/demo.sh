#!/usr/bin/env bash
# test/demo.sh: what `make demo` runs.  Builds and installs customer360, starts a throwaway
# server, streams a small generated shop through c360.apply_changes, shows profiles and the
# article's example queries, then streams more changes and moves the clock to show them change.
# The article's three queries are also segments, maintained as the profile changes; one of
# them is published by a Kafka sink to a throwaway test broker, whose messages are printed.
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh

PORT=54350
DB=c360_demo
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config

heading() { printf '\n=== %s ===\n' "$*"; }
# Tables without the "(N rows)" footer read better between headings.
sql() { pg_psql "$PORT" -d "$DB" -P footer=off "$@"; }
val() { pg_psql "$PORT" -d "$DB" -At "$@"; }

bash test/deps.sh
make -s >/dev/null
if [ "$(id -u)" = 0 ] || [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
    make -s install >/dev/null
elif ! cmp -s customer360.so "$("$PG_CONFIG" --pkglibdir)/customer360.so"; then
    echo "not root and the PostgreSQL install tree is not writable: run 'sudo make install'" >&2
    exit 1
fi

DIR=$(mktemp -d /tmp/c360-demo.XXXXXX)
BROKER_PID=
cleanup() {
    local rc=$?
    broker_stop
    pg_stop "$DIR"
    if [ "$rc" -ne 0 ]; then tail -n 30 "$DIR/server.log" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# The ticker is off: the demo moves the clock itself with c360.tick so each step is visible.
pg_start "$DIR" "$PORT" \
    "shared_preload_libraries = 'customer360'" \
    "c360.database = '$DB'" \
    "c360.tick_interval = 0"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE $DB"
sql -c "CREATE EXTENSION customer360"

heading "Loading a generated shop through c360.apply_changes (batches of 250)"
# setseed makes every run load the same shop; times are relative to the profile clock.
sql <<'SQL'
\o /dev/null
SELECT setseed(0.36);
\o
\pset tuples_only on
\pset format unaligned

-- 200 customers; the first 180 buy.  quiet_days is how long ago a customer last ordered,
-- skewed towards recent so that every lifecycle stage shows up.
CREATE TEMP TABLE gen_customer AS
SELECT i,
       format('C%s', lpad(i::text, 4, '0')) AS customer_id,
       (ARRAY['Ada','Ben','Cleo','Dev','Eva','Finn','Gia','Hugo','Iris','Jon','Kai','Lena',
              'Milo','Nina','Omar','Pia','Quinn','Rosa','Sami','Tara'])[1 + floor(r1 * 20)::int] AS first_name,
       (ARRAY['Adams','Baker','Chen','Diaz','Evans','Fox','Garcia','Hall','Ito','Jones',
              'Khan','Lopez','Meyer','Novak','Ortiz','Park'])[1 + floor(r2 * 16)::int] AS last_name,
       CASE WHEN r3 < 0.50 THEN 'bronze' WHEN r3 < 0.75 THEN 'silver'
            WHEN r3 < 0.90 THEN 'gold' ELSE 'platinum' END AS loyalty_tier,
       (ARRAY['organic','paid_search','social','referral','email'])[1 + floor(r4 * 5)::int] AS acquisition_channel,
       c360.as_of() - make_interval(days => 450 + floor(r5 * 600)::int) AS signup_date,
       floor(r6 * r6 * 430)::int AS quiet_days
FROM (SELECT i, random() r1, random() r2, random() r3, random() r4, random() r5, random() r6
      FROM generate_series(1, 200) i) g;

-- 1000 orders: each buyer's latest one quiet_days ago, the rest spread over the 440 days before.
CREATE TEMP TABLE gen_order AS
SELECT row_number() OVER (ORDER BY n) AS n, c.customer_id,
       c360.as_of() - make_interval(days => c.quiet_days + CASE WHEN latest THEN 0
                                    ELSE floor(r1 * (440 - c.quiet_days))::int END,
                                    hours => floor(r2 * 24)::int) AS created_at,
       CASE WHEN r3 < 0.70 THEN 'delivered' WHEN r3 < 0.85 THEN 'shipped'
            WHEN r3 < 0.93 THEN 'processing' WHEN r3 < 0.98 THEN 'cancelled'
            ELSE 'returned' END AS order_status,
       round((15 + r4 * 285)::numeric, 2) AS total_amount,
       1 + floor(r5 * 5)::int AS item_count,
       (ARRAY['web','web','app','store'])[1 + floor(r6 * 4)::int] AS channel
FROM (SELECT i AS n, CASE WHEN i <= 180 THEN i ELSE 1 + floor(random() * 180)::int END AS ci,
             i <= 180 AS latest,
             random() r1, random() r2, random() r3, random() r4, random() r5, random() r6
      FROM generate_series(1, 1000) i) g
JOIN gen_customer c ON c.i = g.ci;

-- 150 support tickets; recent ones are more often still open.
CREATE TEMP TABLE gen_ticket AS
SELECT i, format('C%s', lpad((1 + floor(r1 * 200)::int)::text, 4, '0')) AS customer_id,
       created_at,
       CASE WHEN created_at > c360.as_of() - interval '14 days' OR r3 < 0.08 THEN 'open'
            WHEN r3 < 0.6 THEN 'resolved' ELSE 'closed' END AS status,
       (ARRAY['billing','shipping','returns','product','account'])[1 + floor(r4 * 5)::int] AS category,
       r5
FROM (SELECT i, r1, r3, r4, r5, c360.as_of() - make_interval(mins => floor(r2 * 200 * 1440)::int) AS created_at
      FROM (SELECT i, random() r1, random() r2, random() r3, random() r4, random() r5
            FROM generate_series(1, 150) i) g0) g;

-- 3000 clickstream events over the last 60 days, recent buyers clicking the most (a
-- customer's weight falls with quiet_days), plus 200 from ten anonymous cookies ck-01..ck-10;
-- six of the cookies are linked to customers below.
CREATE TEMP TABLE gen_weight AS
SELECT customer_id,
       sum(w) OVER (ORDER BY i) AS upto, sum(w) OVER () AS total
FROM (SELECT i, customer_id,
             CASE WHEN i > 180 THEN 1.5 ELSE 1 + 8 * exp(-quiet_days / 60.0) END AS w
      FROM gen_customer) c;

CREATE TEMP TABLE gen_event AS
SELECT i, raw_id AS customer_id,
       format('%s-s%s', raw_id, floor(r2 * 10)::int) AS session_id,
       et AS event_type,
       CASE WHEN et IN ('product_view', 'add_to_cart') THEN format('P%s', 100 + floor(r4 * 60)::int) END AS product_id,
       (ARRAY['shoes','outerwear','bags','home','beauty'])[1 + floor(r5 * 5)::int] AS category_id,
       c360.as_of() - make_interval(secs => r6 * 60 * 86400) AS event_time
FROM (SELECT i, r2, r4, r5, r6,
             CASE WHEN i <= 3000
                  THEN (SELECT customer_id FROM gen_weight w WHERE w.upto >= g0.r1 * w.total
                        ORDER BY w.upto LIMIT 1)
                  ELSE format('ck-%s', lpad((1 + floor(r1 * 10)::int)::text, 2, '0')) END AS raw_id,
             CASE WHEN r3 < 0.40 THEN 'product_view' WHEN r3 < 0.70 THEN 'page_view'
                  WHEN r3 < 0.82 THEN 'search' WHEN r3 < 0.95 THEN 'add_to_cart'
                  ELSE 'checkout' END AS et
      FROM (SELECT i, random() r1, random() r2, random() r3, random() r4, random() r5, random() r6
            FROM generate_series(1, 3200) i) g0) g;

SELECT format('  %-36s %5s changes in %s', 'customers', sum(c360.apply_changes(b)),
              count(*) || CASE WHEN count(*) = 1 THEN ' batch' ELSE ' batches' END) FROM (
    SELECT jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert', 'new', jsonb_build_object(
               'customer_id', customer_id, 'email', lower(first_name || '.' || last_name || i) || '@example.com',
               'first_name', first_name, 'last_name', last_name, 'phone', format('+1-555-%s', lpad(i::text, 4, '0')),
               'acquisition_channel', acquisition_channel, 'signup_date', signup_date,
               'loyalty_tier', loyalty_tier, 'last_updated', signup_date))) AS b
    FROM gen_customer GROUP BY (i - 1) / 250) s;
SELECT format('  %-36s %5s changes in %s', 'orders', sum(c360.apply_changes(b)),
              count(*) || CASE WHEN count(*) = 1 THEN ' batch' ELSE ' batches' END) FROM (
    SELECT jsonb_agg(jsonb_build_object('input', 'orders', 'op', 'insert', 'new', jsonb_build_object(
               'order_id', format('O%s', lpad(n::text, 5, '0')), 'customer_id', customer_id,
               'order_status', order_status, 'total_amount', total_amount, 'item_count', item_count,
               'channel', channel, 'created_at', created_at, 'updated_at', created_at))) AS b
    FROM gen_order GROUP BY (n - 1) / 250) s;
SELECT format('  %-36s %5s changes in %s', 'support tickets', sum(c360.apply_changes(b)),
              count(*) || CASE WHEN count(*) = 1 THEN ' batch' ELSE ' batches' END) FROM (
    SELECT jsonb_agg(jsonb_build_object('input', 'support_tickets', 'op', 'insert', 'new', jsonb_build_object(
               'ticket_id', format('T%s', lpad(i::text, 4, '0')), 'customer_id', customer_id,
               'status', status, 'category', category, 'created_at', created_at,
               'resolved_at', CASE WHEN status <> 'open'
                                   THEN created_at + make_interval(hours => 1 + floor(r5 * 96)::int) END))) AS b
    FROM gen_ticket GROUP BY (i - 1) / 250) s;
SELECT format('  %-36s %5s changes in %s', 'behavioral events', sum(c360.apply_changes(b)),
              count(*) || CASE WHEN count(*) = 1 THEN ' batch' ELSE ' batches' END) FROM (
    SELECT jsonb_agg(jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new', jsonb_build_object(
               'event_id', format('E%s', lpad(i::text, 6, '0')), 'customer_id', customer_id,
               'session_id', session_id, 'event_type', event_type, 'product_id', product_id,
               'category_id', category_id, 'event_time', event_time))) AS b
    FROM gen_event GROUP BY (i - 1) / 250) s;
SELECT format('  %-36s %5s changes in 1 batch', 'identity links (cookie -> customer)', c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'identity_graph', 'op', 'insert', 'new', jsonb_build_object(
           'identity_id', format('I%s', k), 'customer_id', format('C%s', lpad((k * 7)::text, 4, '0')),
           'identity_type', 'cookie', 'identity_value', format('ck-%s', lpad(k::text, 2, '0')),
           'created_at', c360.as_of() - interval '10 days')))))
FROM generate_series(1, 6) k;
SQL

echo
sql <<'SQL'
SELECT c360.as_of() AS "profile clock (as_of)",
       (SELECT count(*) FROM c360.customer_360) AS profiles,
       (SELECT count(*) FROM c360.orders) AS orders,
       (SELECT count(*) FROM c360.support_tickets) AS tickets,
       (SELECT count(*) FROM c360.behavioral_events) AS events,
       (SELECT count(*) FROM c360.verify()) AS "verify() differences";
SQL

heading "A few profiles"
sql <<'SQL'
SELECT customer_id, first_name || ' ' || last_name AS name, loyalty_tier AS tier,
       total_orders AS orders, lifetime_value AS ltv, round(avg_order_value, 2) AS aov,
       last_order_date::date AS last_order, last_order_status AS last_status,
       preferred_channel AS channel, open_support_tickets AS open_tix,
       events_last_30d AS events_30d, product_views_last_30d AS views_30d,
       sessions_last_30d AS sessions_30d, lifecycle_stage AS stage
FROM c360.customer_360
WHERE customer_id IN ('C0001', 'C0007', 'C0042', 'C0150', 'C0190')
ORDER BY customer_id;
SQL

heading "(a) VIPs at risk: gold/platinum customers who are at_risk or lapsing"
sql <<'SQL'
SELECT customer_id, first_name || ' ' || last_name AS name, loyalty_tier, lifecycle_stage,
       lifetime_value, last_order_date::date AS last_order
FROM c360.customer_360
WHERE loyalty_tier IN ('gold', 'platinum')
  AND lifecycle_stage IN ('at_risk', 'lapsing')
ORDER BY lifetime_value DESC
LIMIT 8;
SQL

heading "(b) High-value customers with an open support issue (lifetime_value > 1000)"
sql <<'SQL'
SELECT customer_id, first_name || ' ' || last_name AS name, lifetime_value,
       open_support_tickets, last_ticket_at::date AS last_ticket, lifecycle_stage
FROM c360.customer_360
WHERE has_open_support_issue AND lifetime_value > 1000
ORDER BY lifetime_value DESC
LIMIT 8;
SQL

heading "(c) Engagement by lifecycle stage"
sql <<'SQL'
SELECT lifecycle_stage, count(*) AS customers,
       round(avg(sessions_last_30d), 2) AS avg_sessions_30d,
       round(avg(lifetime_value), 2) AS avg_ltv
FROM c360.customer_360
GROUP BY lifecycle_stage
ORDER BY array_position(ARRAY['active','at_risk','lapsing','churned','prospect'], lifecycle_stage);
SQL

heading "Segments: the article's queries as segments, kept up to date by the maintainer"
sql -At <<'SQL' | sed 's/^/  /'
SELECT format('%-20s %3s members  %s', 'vip_at_risk', c360.create_segment('vip_at_risk',
    $$loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')$$),
    'gold/platinum customers who are at_risk or lapsing');
SELECT format('%-20s %3s members  %s', 'high_intent', c360.create_segment('high_intent',
    $$product_views_last_30d >= 5 AND sessions_last_30d >= 2 AND lifecycle_stage <> 'active'$$),
    'browsing a lot, not buying lately');
SELECT format('%-20s %3s members  %s', 'support_escalation', c360.create_segment('support_escalation',
    'has_open_support_issue AND lifetime_value > 1000',
    ARRAY['customer_id', 'email', 'lifetime_value', 'open_support_tickets', 'last_ticket_at']),
    'high-value customers with an open support issue');
SQL

# A throwaway Kafka broker (librdkafka's mock cluster) and a sink publishing vip_at_risk to it.
broker_start "$DIR" vip_at_risk:1 || exit 1
BOOTSTRAP=$BROKER_ADDR
sql -At -c "SELECT c360.create_sink('vip_to_kafka', 'vip_at_risk', 'kafka',
                jsonb_build_object('bootstrap.servers', '$BOOTSTRAP', 'topic', 'vip_at_risk'))" >/dev/null
echo
echo "sink vip_to_kafka publishes vip_at_risk to topic vip_at_risk on the test broker at $BOOTSTRAP"

# Wait (at most 30 s) until the sink has published everything, then print the messages the
# topic got since the last call: seq, change, customer and profile, one line each (the first
# MAX of them, then a count).
TOPIC_SEEN=0
show_topic() {
    local max=${1:-1000000}
    local msgs
    for _ in $(seq 150); do
        [ "$(val -c "SELECT backlog = 0 AND state = 'streaming' FROM c360.sink_status WHERE name = 'vip_to_kafka'")" = t ] && break
        sleep 0.2
    done
    msgs=$(timeout 30 kcat -C -b "$BOOTSTRAP" -t vip_at_risk -o "$TOPIC_SEEN" -e -q -f '%s\n')
    [ -n "$msgs" ] || { echo "  (no new messages)"; return; }
    TOPIC_SEEN=$((TOPIC_SEEN + $(printf '%s\n' "$msgs" | wc -l)))
    printf '%s\n' "$msgs" | python3 -c '
import collections, json, sys
shown, changes = int(sys.argv[1]), collections.Counter()
for n, line in enumerate(sys.stdin):
    m = json.loads(line)
    p = m["profile"]
    changes[m["change"]] += 1
    if n < shown:
        print("  seq %5s  %-6s %s  %-8s %-8s %s" % (m["seq"], m["change"], m["customer_id"],
              p.get("loyalty_tier"), p.get("lifecycle_stage"), p.get("email")))
if n >= shown:
    print("  ... %d messages: %s" % (n + 1, ", ".join("%d %s" % (changes[c], c)
                                                  for c in ("enter", "exit", "update"))))' "$max"
}
echo "-- the topic after the sink started: one enter per member (seq = the sink's starting position)"
show_topic 5
echo "-- one message as published (key = customer_id, header seq):"
timeout 30 kcat -C -b "$BOOTSTRAP" -t vip_at_risk -o 0 -c 1 -e -q -f '  key %k, headers %h\n  %s\n'

# The VIP with the highest lifetime value among the at-risk ones: the streaming example.
VIP=$(val -c "SELECT customer_id FROM c360.customer_360
              WHERE loyalty_tier IN ('gold','platinum') AND lifecycle_stage IN ('at_risk','lapsing')
              ORDER BY lifetime_value DESC, customer_id LIMIT 1")
[ -n "$VIP" ] || { echo "the generated shop has no VIP at risk" >&2; exit 1; }
VIP_STAGE=$(val -c "SELECT lifecycle_stage FROM c360.customer_360 WHERE customer_id = '$VIP'")
show_vip() {
    sql -c "SELECT customer_id, loyalty_tier, total_orders, lifetime_value, last_order_date::date AS last_order,
                   last_order_status, open_support_tickets AS open_tix, events_last_30d AS events_30d,
                   sessions_last_30d AS sessions_30d, lifecycle_stage, profile_updated_at
            FROM c360.customer_360 WHERE customer_id = '$VIP'"
}
check_exact() {
    local n
    n=$(val -c "SELECT count(*) FROM c360.verify()")
    echo "verify(): $n differences"
    [ "$n" = 0 ] || { sql -c "SELECT * FROM c360.verify() LIMIT 20"; exit 1; }
}

heading "Streaming changes: $VIP, the top VIP from (a), $VIP_STAGE, places an order"
show_vip
sql -At -c "SELECT c360.apply_change('orders', 'insert', NULL, jsonb_build_object(
               'order_id', 'O-LIVE-1', 'customer_id', '$VIP', 'order_status', 'processing',
               'total_amount', 249.00, 'item_count', 3, 'channel', 'app',
               'created_at', c360.as_of(), 'updated_at', c360.as_of()))" >/dev/null
echo "-- after apply_change('orders', 'insert', ...):"
show_vip
echo "-- now active, $VIP left vip_at_risk; the sink published:"
show_topic

heading "Streaming changes: $VIP opens a support ticket, browses as a linked cookie, then the ticket is resolved"
sql -At <<SQL >/dev/null
SELECT c360.apply_changes(jsonb_build_array(
    jsonb_build_object('input', 'support_tickets', 'op', 'insert', 'new', jsonb_build_object(
        'ticket_id', 'T-LIVE-1', 'customer_id', '$VIP', 'status', 'open', 'category', 'shipping',
        'created_at', c360.as_of())),
    jsonb_build_object('input', 'identity_graph', 'op', 'insert', 'new', jsonb_build_object(
        'identity_id', 'I-LIVE-1', 'customer_id', '$VIP', 'identity_type', 'cookie',
        'identity_value', 'ck-09', 'created_at', c360.as_of()))));
SQL
echo "-- after a ticket insert and an identity link (cookie ck-09's events now count for $VIP):"
show_vip
sql -At <<SQL >/dev/null
SELECT c360.apply_change('support_tickets', 'update',
    '{"ticket_id": "T-LIVE-1"}',
    jsonb_build_object('ticket_id', 'T-LIVE-1', 'customer_id', '$VIP', 'status', 'resolved',
                       'category', 'shipping', 'created_at', c360.as_of(),
                       'resolved_at', c360.as_of()));
SQL
echo "-- after the ticket is resolved (update):"
show_vip
check_exact

heading "Time passes: c360.tick() moves the profile clock; lifecycle stages follow"
sql -q <<'SQL'
CREATE TABLE stage_history (step int, label text, stage text, n bigint);
INSERT INTO stage_history
SELECT 0, 'start', lifecycle_stage, count(*) FROM c360.customer_360 GROUP BY lifecycle_stage;
SQL
# Between ticks a few customers order again (at the new clock), so some become active while
# the rest age into later stages.
step=0 total=0
for days in 45 60 120 200; do
    step=$((step + 1)) total=$((total + days))
    changed=$(val -c "SELECT c360.tick(c360.as_of() + interval '$days days')")
    printf 'tick(as_of() + %3s days): %3s profile rows changed; ' "$days" "$changed"
    val -c "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'orders', 'op', 'insert',
                'new', jsonb_build_object('order_id', format('O-T$step-%s', customer_id),
                    'customer_id', customer_id, 'order_status', 'processing',
                    'total_amount', 80 + length(customer_id) * 10, 'item_count', 2, 'channel', 'web',
                    'created_at', c360.as_of(), 'updated_at', c360.as_of()))))
            FROM (SELECT customer_id FROM c360.customers
                  ORDER BY md5(customer_id || '$step') LIMIT 12) c" >/dev/null
    printf '12 customers order again; '
    check_exact
    sql -q -c "INSERT INTO stage_history
               SELECT $step, '+$total days', lifecycle_stage, count(*)
               FROM c360.customer_360 GROUP BY lifecycle_stage"
done
echo
sql <<'SQL'
SELECT label AS "clock", COALESCE(sum(n) FILTER (WHERE stage = 'active'), 0) AS active,
       COALESCE(sum(n) FILTER (WHERE stage = 'at_risk'), 0) AS at_risk,
       COALESCE(sum(n) FILTER (WHERE stage = 'lapsing'), 0) AS lapsing,
       COALESCE(sum(n) FILTER (WHERE stage = 'churned'), 0) AS churned,
       COALESCE(sum(n) FILTER (WHERE stage = 'prospect'), 0) AS prospect
FROM stage_history GROUP BY step, label ORDER BY step;
SQL
echo "-- $VIP at the end:"
show_vip

heading "Segments after the clock moved: the outbox and the sink"
sql <<'SQL'
SELECT s.name AS segment,
       (SELECT count(*) FROM c360.segment_members m WHERE m.segment = s.name) AS members,
       CASE WHEN k.name IS NOT NULL
            THEN format('pruned: sink %s has published it', k.name)
            ELSE format('%s enter, %s exit, %s update',
                        count(c.*) FILTER (WHERE c.change = 'enter'),
                        count(c.*) FILTER (WHERE c.change = 'exit'),
                        count(c.*) FILTER (WHERE c.change = 'update')) END AS "outbox (c360.segment_changes)"
FROM c360.segments s LEFT JOIN c360.sinks k ON k.segment = s.name
LEFT JOIN c360.segment_changes c ON c.segment = s.name
GROUP BY s.name, k.name ORDER BY s.name;
SQL
echo
echo "-- the topic got, while the clock moved:"
show_topic 8
sql -c "SELECT name, segment, state, position, backlog, last_error FROM c360.sink_status"

heading "Exactness"
sql -c "SELECT c360.as_of() AS as_of, count(*) AS \"verify() differences\" FROM c360.verify()"
echo "The profile equals the reference query at every step above."
