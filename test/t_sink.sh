#!/usr/bin/env bash
# test/t_sink.sh: segments published by Kafka sink workers to the test broker
# (test/kafka_broker), on a server that preloads customer360 with c360.database =
# 'c360_workers' (test/run.sh's cluster).  Topics are read back with kcat and compared with
# a copy of the outbox (t_sink.sql keeps one: the sinks prune it).
#   1. The article: a gold customer whose last order is 60 days old enters vip_at_risk on a
#      tick, a new order makes them active and they exit; the topic holds enter then exit.
#   2. 10,000 customers flapping in and out through random changes (two writers at once)
#      and ticks: membership always equals the predicate query; the topic replays exactly
#      the sink's snapshot then the outbox sequence, no gap and no repeat.
#   3. The broker down for 10 s while changes go on (last_error says why, and clears),
#      then kill -9 of a sink worker mid-publish: no change missing, every seq present,
#      order kept; repeats only as a replay after the kill.
# Run: PGHOST=... PGPORT=... PGUSER=... bash test/t_sink.sh   (exit 0 = pass)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/servers.sh"
DB=c360_workers
: "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
export PGHOST PGPORT PGUSER
TMP=$(mktemp -d "${TMPDIR:-/tmp}/t_sink.XXXXXX")
BROKER_PID=
CUSTOMERS=10000
# Sink names are unique per run: c360.drop_sink keeps the launcher off a dropped sink's name
# for a minute, so a second run right after this one would wait for its sinks to start.
RUN=$(($$ % 100000))
VIP=vip_sink_$RUN FLAP=flap_sink_$RUN CRASH=crash_sink_$RUN
ROUNDS=${T_SINK_ROUNDS:-20}

q() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
die() {
    echo "FAIL: $*" >&2
    q -c "SELECT * FROM c360.sink_status" >&2 2>/dev/null || true
    exit 1
}

cleanup() {
    local rc=$?
    broker_stop
    # the workers' database is shared with the other worker tests: leave nothing behind
    # (T_SINK_KEEP=1 keeps the database as the test left it, for a closer look)
    [ "$rc" -ne 0 ] && [ -n "${T_SINK_KEEP:-}" ] && { echo "kept database $DB" >&2; return; }
    q -c "SELECT c360.drop_sink(name) FROM c360.sinks" >/dev/null 2>&1 || true
    q -c "DROP SCHEMA IF EXISTS t_sink CASCADE" >/dev/null 2>&1 || true
    q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" >/dev/null 2>&1 || true
    [ "$rc" -ne 0 ] && [ -s "$TMP/broker.err" ] && tail -n 5 "$TMP/broker.err" >&2
    rm -rf "$TMP"
}
trap cleanup EXIT

# poll SECS DESC CMD...: run CMD every 0.2 s until it succeeds; fail after SECS.
poll() {
    local secs=$1 desc=$2; shift 2
    local i
    for ((i = 0; i < secs * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "gave up after $secs s waiting for: $desc"
}

server_up() { q -c "SELECT 1" >/dev/null; }
sink_pid() {
    q -c "SELECT pid FROM pg_stat_activity
          WHERE backend_type = 'c360 sink' AND application_name = '$1' AND datname = '$DB'" 2>/dev/null |
        head -n 1
}
sink_running() { [ -n "$(sink_pid "$1")" ]; }
sink_replaced() { local p; p=$(sink_pid "$1"); [ -n "$p" ] && [ "$p" != "$2" ]; }
# Everything published and acknowledged, and no error left.
sink_caught_up() {
    [ "$(q -c "SELECT state = 'streaming' AND backlog = 0 AND last_error IS NULL
               FROM c360.sink_status WHERE name = '$1'")" = t ]
}
sink_has_error() { [ "$(q -c "SELECT last_error IS NOT NULL FROM c360.sink_status WHERE name = '$1'")" = t ]; }

# read_topic TOPIC [OFFSET]: the topic from OFFSET (default: its beginning) into
# t_sink.topic, in order (kcat -e stops at its end).
read_topic() {
    timeout 60 kcat -C -b "$BOOTSTRAP" -t "$1" -o "${2:-beginning}" -e -q -f '%k\t%h\t%s\n' >"$TMP/topic" ||
        die "kcat could not read topic $1"
    q -c "TRUNCATE t_sink.topic RESTART IDENTITY" \
      -c "\\copy t_sink.topic (k, h, v) FROM '$TMP/topic' WITH (FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01')"
}

# check_topic SINK TOPIC exact|replay [OFFSET]: the topic (from OFFSET, the messages before
# it checked already) against the sink's snapshot and the outbox copy.
check_topic() {
    local problems
    read_topic "$2" "${4:-}"
    problems=$(q -c "SELECT problem FROM t_sink.compare('$1', $([ "$3" = exact ] && echo true || echo false), ${4:-0})
                     ORDER BY problem LIMIT 20")
    [ -z "$problems" ] || die "topic $2 of sink $1:
$problems
(the topic begins with:
$(head -n 3 "$TMP/topic"))"
}

# membership SEGMENT: members vs SELECT customer_id FROM c360.customer_360 WHERE <predicate>.
check_membership() {
    local n
    n=$(q -c "SELECT t_sink.membership_diffs('$1')")
    [ "$n" = 0 ] || die "membership of $1 differs from its predicate in $n customers ($2)"
}

check_verify() {
    local n
    n=$(q -c "SELECT count(*) FROM c360.verify()")
    [ "$n" = 0 ] || die "c360.verify() returned $n rows ($1)"
}

# --- the broker and the database -----------------------------------------------------------
broker_start "$TMP" vip_out:1 flap_out:1 crash_out:1 || die "the test broker did not start"
BOOTSTRAP=$BROKER_ADDR
echo "broker at $BOOTSTRAP"

if [ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" = 0 ]; then
    psql -X -q -d postgres -c "CREATE DATABASE $DB"
fi
q -c "DROP SCHEMA IF EXISTS t_sink CASCADE" 2>/dev/null
q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" 2>/dev/null
q -c "CREATE EXTENSION customer360"
q -f "$ROOT/test/t_sink.sql"
# The clock in the future: the cluster's ticker (ticking to now()) leaves it alone.
q -c "SELECT c360.tick('2030-05-01 00:00+00')" >/dev/null
start=$(date +%s)

# --- 1. the article ------------------------------------------------------------------------
echo "1. the article: a gold customer enters vip_at_risk on a tick, exits with a new order"
q <<'SQL' >/dev/null
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "art1", "email": "ada@example.com",
     "first_name": "Ada", "loyalty_tier": "gold"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "art1-o1", "customer_id": "art1",
     "order_status": "delivered", "total_amount": 840, "created_at": "2030-04-02 12:00+00"}}
]$$);
SELECT c360.create_segment('vip_at_risk',
       $$loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')$$);
SQL
q -c "SELECT t_sink.create_sink('$VIP', 'vip_at_risk',
        jsonb_build_object('bootstrap.servers', '$BOOTSTRAP', 'topic', 'vip_out'))" >/dev/null
poll 30 "sink $VIP to start" sink_running $VIP
[ "$(q -c "SELECT lifecycle_stage FROM c360.customer_360 WHERE customer_id = 'art1'")" = active ] ||
    die "art1 is not active at 2030-05-01"
# 2030-06-01: the last order is 60 days old, at_risk.  psql shows the NOTIFY of the session.
q -c "LISTEN c360_segments" -c "SELECT c360.tick('2030-06-01 12:00+00')" >"$TMP/notify" 2>&1
grep -q 'payload "vip_at_risk:art1:enter"' "$TMP/notify" || die "no NOTIFY for the enter: $(cat "$TMP/notify")"
[ "$(q -c "SELECT count(*) FROM c360.segment_members WHERE segment = 'vip_at_risk' AND customer_id = 'art1'")" = 1 ] ||
    die "art1 did not enter vip_at_risk on the tick"
q <<'SQL' >/dev/null
SELECT c360.apply_change('orders', 'insert', NULL,
    '{"order_id": "art1-o2", "customer_id": "art1", "order_status": "processing",
      "total_amount": 120, "created_at": "2030-06-01 12:00+00"}');
SQL
[ "$(q -c "SELECT lifecycle_stage FROM c360.customer_360 WHERE customer_id = 'art1'")" = active ] ||
    die "art1 is not active after the new order"
poll 30 "sink $VIP to publish the enter and the exit" sink_caught_up $VIP
check_topic $VIP vip_out exact
got=$(q -c "SELECT string_agg(v::jsonb->>'customer_id' || ':' || (v::jsonb->>'change'), ' ' ORDER BY n) FROM t_sink.topic")
[ "$got" = "art1:enter art1:exit" ] || die "topic vip_out holds '$got', expected 'art1:enter art1:exit'"
echo "  vip_out: $got"
check_verify "after the article"
q -c "SELECT c360.drop_sink('$VIP')" -c "SELECT c360.drop_segment('vip_at_risk')" >/dev/null

# --- 2. 10,000 customers flapping -------------------------------------------------------------
echo "2. $CUSTOMERS customers flapping through $ROUNDS rounds of random changes and ticks"
# The article's predicate; the messages carry three columns (the test broker keeps about
# 5 MB per partition, and this topic gets some 25,000 messages).
q -c "SELECT c360.create_segment('flappers',
        \$\$loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')\$\$,
        ARRAY['customer_id', 'loyalty_tier', 'lifecycle_stage'])" >/dev/null
# Customers with random tiers and 1 to 3 orders over the last 400 days, in batches of 1,000.
q -v customers="$CUSTOMERS" <<'SQL' >/dev/null
SELECT setseed(0.6);
CREATE TEMP TABLE gen AS
SELECT i, format('f%s', lpad(i::text, 5, '0')) AS customer_id,
       (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + floor(random() * 4)::int] AS tier,
       1 + floor(random() * 3)::int AS orders
FROM generate_series(1, :customers) i;
SELECT c360.apply_changes(jsonb_agg(ch)) FROM (
    SELECT (i - 1) / 1000 AS b, jsonb_build_object('input', 'customers', 'op', 'insert', 'new',
               jsonb_build_object('customer_id', customer_id, 'email', customer_id || '@example.com',
                                  'loyalty_tier', tier)) AS ch
    FROM gen) s GROUP BY b ORDER BY b;
SELECT c360.apply_changes(jsonb_agg(ch)) FROM (
    SELECT (i - 1) / 1000 AS b, jsonb_build_object('input', 'orders', 'op', 'insert', 'new',
               jsonb_build_object('order_id', format('%s-o%s', customer_id, k), 'customer_id', customer_id,
                                  'order_status', 'delivered', 'total_amount', round((10 + random() * 400)::numeric, 2),
                                  'channel', 'web',
                                  'created_at', c360.as_of() - make_interval(secs => random() * 400 * 86400))) AS ch
    FROM gen, generate_series(1, orders) k) s GROUP BY b ORDER BY b;
SQL
check_membership flappers "after the load"
members=$(q -c "SELECT t_sink.create_sink('$FLAP', 'flappers',
                  jsonb_build_object('bootstrap.servers', '$BOOTSTRAP', 'topic', 'flap_out'))")
echo "  $FLAP created with $members members in its snapshot"

# One writer's random batch: tier changes, new orders (recent ones make a customer active),
# order deletes, customer deletes (an update of a missing customer brings it back).
writer() {
    q -v seed="$1" -v tag="$2" -v customers="$CUSTOMERS" <<'SQL' >/dev/null
SELECT setseed(:seed);
SELECT c360.apply_changes(jsonb_agg(ch ORDER BY o)) FROM (
    SELECT random() AS o, jsonb_build_object('input', 'customers', 'op', 'update',
               'old', jsonb_build_object('customer_id', cid),
               'new', jsonb_build_object('customer_id', cid, 'email', cid || '@example.com',
                                         'loyalty_tier', (ARRAY['bronze', 'silver', 'gold', 'platinum'])[1 + floor(random() * 4)::int])) AS ch
    FROM (SELECT format('f%s', lpad((1 + floor(random() * :customers))::int::text, 5, '0')) AS cid
          FROM generate_series(1, 250)) c
    UNION ALL
    SELECT random(), jsonb_build_object('input', 'orders', 'op', 'insert', 'new',
               jsonb_build_object('order_id', format('%s-%s', :'tag', g),
                                  'customer_id', format('f%s', lpad((1 + floor(random() * :customers))::int::text, 5, '0')),
                                  'order_status', 'delivered', 'total_amount', round((10 + random() * 400)::numeric, 2),
                                  'channel', 'app',
                                  'created_at', c360.as_of() - make_interval(secs => random() * 200 * 86400)))
    FROM generate_series(1, 200) g
    UNION ALL
    SELECT random(), jsonb_build_object('input', 'orders', 'op', 'delete', 'old', jsonb_build_object('order_id', order_id))
    FROM (SELECT order_id FROM c360.orders ORDER BY md5(order_id || :'tag') LIMIT 60) d
    UNION ALL
    SELECT random(), jsonb_build_object('input', 'customers', 'op', 'delete', 'old',
               jsonb_build_object('customer_id', format('f%s', lpad((1 + floor(random() * :customers))::int::text, 5, '0'))))
    FROM generate_series(1, 10)
) s;
SQL
}

# round R: two writers at once, then a tick of 5 to 30 days.
round() {
    local r=$1 pids=() p
    writer "0.$((r * 2))1" "r$r-a" & pids+=($!)
    writer "0.$((r * 2))2" "r$r-b" & pids+=($!)
    for p in "${pids[@]}"; do wait "$p" || die "a writer of round $r failed"; done
    q -c "SELECT setseed(0.$r); SELECT c360.tick(c360.as_of() + make_interval(days => 5 + floor(random() * 26)::int))" >/dev/null
    check_membership flappers "after round $r"
}

for ((r = 1; r <= ROUNDS; r++)); do
    round "$r"
done
check_verify "after $ROUNDS rounds"
changes=$(q -c "SELECT string_agg(change || ' ' || n, ', ' ORDER BY change)
                FROM (SELECT change, count(*) n FROM t_sink.outbox WHERE segment = 'flappers' GROUP BY change) c")
echo "  outbox of flappers: $changes; $(q -c "SELECT count(*) FROM c360.segment_members WHERE segment = 'flappers'") members now"
poll 120 "sink $FLAP to catch up" sink_caught_up $FLAP
check_topic $FLAP flap_out exact
flap_checked=$(q -c "SELECT count(*) FROM t_sink.topic")
echo "  flap_out replays the snapshot and the outbox exactly: $flap_checked messages"
left=$(q -c "SELECT count(*) FROM c360.segment_changes WHERE segment = 'flappers'")
[ "$left" = 0 ] || die "$left outbox rows of flappers are left though its only sink passed them"

# --- 3. broker down for 10 s, kill -9 mid-publish -------------------------------------------
echo "3. the broker down for 10 s, then kill -9 of a sink worker mid-publish"
# linger.ms (a properties.* option, passed to librdkafka) holds each batch of messages back
# for a second before sending it: the backlog built while the broker is down takes seconds
# to publish, and the kill lands mid-publish.
q -c "SELECT t_sink.create_sink('$CRASH', 'flappers',
        jsonb_build_object('bootstrap.servers', '$BOOTSTRAP', 'topic', 'crash_out',
                           'properties.linger.ms', '1000'))" >/dev/null
poll 30 "sink $CRASH to start" sink_running $CRASH
poll 60 "sink $CRASH to publish its snapshot" sink_caught_up $CRASH

kill -USR1 "$BROKER_PID"
down_at=$(date +%s)
echo "  broker down"
before=$(q -c "SELECT position FROM c360.sink_status WHERE name = '$CRASH'")
# Thousands of enters, exits and updates: half a year passes, then every customer's tier
# moves up one (platinum wraps round to bronze), then two more rounds.
q -c "SELECT c360.tick(c360.as_of() + interval '180 days')" >/dev/null
q <<'SQL' >/dev/null
SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'update',
           'old', jsonb_build_object('customer_id', customer_id),
           'new', jsonb_build_object('customer_id', customer_id, 'loyalty_tier',
                      CASE loyalty_tier WHEN 'bronze' THEN 'silver' WHEN 'silver' THEN 'gold'
                                        WHEN 'gold' THEN 'platinum' ELSE 'bronze' END))))
FROM (SELECT customer_id, loyalty_tier, ntile(10) OVER (ORDER BY customer_id) AS b FROM c360.customers) c
GROUP BY b ORDER BY b;
SQL
round $((ROUNDS + 1))
poll 30 "$CRASH to record the broker error" sink_has_error $CRASH
echo "  $CRASH: $(q -c "SELECT state || ', backlog ' || backlog || ', last_error: ' || last_error
                      FROM c360.sink_status WHERE name = '$CRASH'")"
round $((ROUNDS + 2))
sleep $((10 - ($(date +%s) - down_at) > 0 ? 10 - ($(date +%s) - down_at) : 0))
kill -USR2 "$BROKER_PID"
echo "  broker up after $(($(date +%s) - down_at)) s"

moved() {
    [ "$(q -c "SELECT position > $before AND backlog >= 500 FROM c360.sink_status WHERE name = '$CRASH'")" = t ]
}
poll 60 "$CRASH to be publishing its backlog" moved
victim=$(sink_pid $CRASH)
backlog=$(q -c "SELECT backlog FROM c360.sink_status WHERE name = '$CRASH'")
kill -9 "$victim"
echo "  killed $CRASH (pid $victim) with a backlog of $backlog"
poll 60 "the server back after kill -9" server_up
poll 60 "a new $CRASH worker" sink_replaced $CRASH "$victim"
round $((ROUNDS + 3))
poll 180 "sink $CRASH to catch up" sink_caught_up $CRASH
poll 60 "sink $FLAP to catch up" sink_caught_up $FLAP
check_verify "after the crash"
check_topic $CRASH crash_out replay
echo "  crash_out: $(q -c "SELECT count(*) FROM t_sink.topic") messages for $(q -c "SELECT count(*) FROM t_sink.expected('$CRASH')") changes, every seq present, in order"
# The flap sink was restarted by the crash too: still nothing missing, order kept.  (Read from
# where part 2 stopped: the test broker keeps about 5 MB per partition.)
check_topic $FLAP flap_out replay "$flap_checked"
echo "  flap_out: $(q -c "SELECT count(*) FROM t_sink.topic") more messages for $(($(q -c "SELECT count(*) FROM t_sink.expected('$FLAP')") - flap_checked)) more changes, every seq present, in order"

echo "ok - t_sink ($(($(date +%s) - start)) s)"
