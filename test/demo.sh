#!/usr/bin/env bash
# test/demo.sh: what `make demo` runs.  The article's pipeline, for real, on this machine:
#   - a PostgreSQL 15 server with customer360 preloaded (the Customer 360 lives there);
#   - the shop: a second PostgreSQL cluster (wal_level = logical) with its `orders`;
#   - the CRM: a MariaDB with `customers` and `support_tickets` (test/mysql_crm.sql);
#   - the click stream: the test Kafka broker (test/kafka_broker) with `customer_events`
#     (behavioural events) and `identity_links` (cookie -> customer, the identity graph).
# Four sources (postgres-cdc, mysql-cdc, two kafka) stream them into c360.customer_360; a
# segment (vip_at_risk) is published by a Kafka sink; two computed traits (cart adds in 7
# days, favourite category in 90 days) and a segment on one are added.  Then changes at the sources (a ticket
# opened in the CRM, an anonymous cookie's clicks and its identity link, an order in the
# shop, a tier upgrade in the CRM) show up in the profile within about a second, and the sink
# publishes the segment's exit and enter.  Ends with source_status and verify() (empty).
#
# Every wait is a bounded poll; any expected effect that does not show up fails the demo
# (exit 1), so it doubles as a smoke test (test/t_demo.sh runs it).  Every server it starts
# is stopped, and its temp dir removed, however it ends.
#
# It builds and installs the extension first (make; make install as root or when the
# PostgreSQL tree is writable).  C360_DEMO_NO_INSTALL=1 skips that and uses the installed
# build (test/t_demo.sh sets it: test/run.sh has built and installed already).
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh
T0=$(date +%s.%N)
. test/lib.sh   # poll, elapsed

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config
DB=c360_demo
# test/run.sh exports these for its own server; the demo names its servers explicitly
unset PGHOST PGPORT PGUSER PGDATABASE
export PGTZ=UTC PGDATESTYLE=ISO

STEP=0
step() { STEP=$((STEP + 1)); printf '\n[%5ss] %d. %s\n' "$(elapsed "$T0")" "$STEP" "$*"; }
note() { echo "  $*"; }
# print SQL (indented) as it is run
shown() { sed 's/^/      /'; }

die() {
    echo
    echo "DEMO FAILED: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
step "Packages and the extension"
note "test/deps.sh checks the Debian packages the demo needs (as root it installs missing ones)."
bash test/deps.sh
if [ -n "${C360_DEMO_NO_INSTALL:-}" ]; then
    note "C360_DEMO_NO_INSTALL is set: using the customer360 build installed in $("$PG_CONFIG" --pkglibdir)"
    [ -f "$("$PG_CONFIG" --sharedir)/extension/customer360.control" ] ||
        die "customer360 is not installed (run make install, or unset C360_DEMO_NO_INSTALL)"
else
    note "make, then make install (C360_DEMO_NO_INSTALL=1 skips both)"
    make -s >/dev/null
    if [ "$(id -u)" = 0 ] || [ -w "$("$PG_CONFIG" --pkglibdir)" ]; then
        make -s install >/dev/null
        note "built and installed customer360 (make && make install)"
    elif ! cmp -s customer360.so "$("$PG_CONFIG" --pkglibdir)/customer360.so"; then
        echo "not root and the PostgreSQL install tree is not writable: run 'sudo make install'" >&2
        exit 1
    else
        note "built customer360; the installed copy is this build"
    fi
fi

# ---------------------------------------------------------------------------------------------
DIR=$(mktemp -d /tmp/c360-demo.XXXXXX)
chmod 755 "$DIR"
LOCAL=$DIR/c360 SHOP=$DIR/shop CRM=$DIR/crm
PORT='' SHOP_PORT='' MY_PORT='' B=''
# shellcheck disable=SC2034  # set by broker_start, read by broker_stop
BROKER_PID=''

# A signal can arrive while a poll's output goes to /dev/null: cleanup writes to the demo's
# own stdout and stderr, kept on fds 8 and 9 (closed for the servers it starts).
exec 8>&1 9>&2
cleanup() {
    local rc=$?
    set +e
    trap - ERR
    exec 1>&8 2>&9
    if [ "$rc" -ne 0 ] && [ -n "$PORT" ]; then
        echo "---- diagnostics"
        pg_psql "$PORT" -d "$DB" -c "SELECT name, kind, state, changes_applied, dead_letters, last_error FROM c360.source_status" 2>&1
        pg_psql "$PORT" -d "$DB" -c "SELECT * FROM c360.sink_status" 2>&1
        echo "---- customer360 server log (last 20 lines)"
        tail -n 20 "$LOCAL/server.log" 2>/dev/null
    fi
    pg_stop "$LOCAL"
    pg_stop "$SHOP"
    mysql_stop "$CRM"
    broker_stop
    rm -rf "$DIR"
    [ "$rc" -eq 0 ] || echo "(servers stopped, $DIR removed)"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
trap 'echo "DEMO FAILED: the command at line $LINENO of test/demo.sh exited with status $?"' ERR

c360() { pg_psql "$PORT" -d "$DB" "$@"; }            # the customer360 server
val() { pg_psql "$PORT" -d "$DB" -At "$@"; }
table() { pg_psql "$PORT" -d "$DB" -P footer=off "$@" | sed '/^$/d; s/^/    /'; }
shop() { pg_psql "$SHOP_PORT" -d shop "$@"; }        # the shop's PostgreSQL
crm() { mysql_cli "$MY_PORT" -N -B "$@"; }             # the CRM's MariaDB
kc() { timeout 30 kcat "$@"; }

step "Four servers on loopback ports (free ones, so a test run on this machine is left alone)"
note "temp dir $DIR (removed at the end)"
# a random start, so that two demos starting at once do not pick the same free port
PORT=$(free_port $((54350 + RANDOM % 40)))
pg_start "$LOCAL" "$PORT" \
    "shared_preload_libraries = 'customer360'" \
    "c360.database = '$DB'" \
    "c360.tick_interval = '1s'" 8>&- 9>&- ||
    die "could not start the customer360 server"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE $DB"
c360 -c "SET client_min_messages = warning" -c "CREATE EXTENSION customer360"
note "customer360  PostgreSQL 15 on :$PORT, shared_preload_libraries = 'customer360', c360.database = '$DB'"

SHOP_PORT=$(free_port $((PORT + 1)))
pg_start "$SHOP" "$SHOP_PORT" "wal_level = logical" "max_replication_slots = 4" "max_wal_senders = 4" 8>&- 9>&- ||
    die "could not start the shop's PostgreSQL"
pg_psql "$SHOP_PORT" -d postgres -c "CREATE DATABASE shop"
note "shop         PostgreSQL 15 on :$SHOP_PORT (wal_level = logical), database shop"

mysql_start_free "$CRM" $((33350 + RANDOM % 40)) 8>&- 9>&- || die "could not start MariaDB"
note "crm          MariaDB $(crm -e 'SELECT VERSION()' | cut -d- -f1) on :$MY_PORT (binlog_format = ROW)"

broker_start "$DIR" customer_events:1 identity_links:1 vip_at_risk:1 8>&- 9>&- || die "the test Kafka broker did not start"
B=$BROKER_ADDR
note "kafka        the test broker (librdkafka's mock cluster) at $B: topics customer_events, identity_links, vip_at_risk"

# ---------------------------------------------------------------------------------------------
step "The upstream systems get their data (nothing in customer360 yet)"
note "Plain SQL in each system, and kcat producing JSON messages to Kafka."
# The shop: 130 buyers (C0001..C0130), 1 to 5 orders each; a buyer's latest order is
# quiet_days old, skewed towards recent so that every lifecycle stage shows up.
shop -q <<'SQL'
CREATE TABLE orders (
    order_id     text PRIMARY KEY,
    customer_id  text NOT NULL,
    order_status text,
    total_amount numeric(10,2),
    item_count   integer,
    channel      text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
SELECT setseed(0.42) \g /dev/null
CREATE TEMP TABLE buyer AS
SELECT c, format('C%s', lpad(c::text, 4, '0')) AS customer_id,
       floor(random() * random() * 420)::int AS quiet_days, 1 + floor(random() * 5)::int AS n
FROM generate_series(1, 130) c;
INSERT INTO orders
SELECT format('O%s', lpad((row_number() OVER (ORDER BY c, k))::text, 5, '0')), customer_id,
       CASE WHEN r < 0.80 THEN 'delivered' WHEN r < 0.90 THEN 'shipped'
            WHEN r < 0.96 THEN 'cancelled' ELSE 'returned' END,
       round((20 + random() * 280)::numeric, 2), 1 + floor(random() * 4)::int,
       (ARRAY['web', 'web', 'app', 'store'])[1 + floor(random() * 4)::int],
       t, t
FROM (SELECT b.*, k, random() AS r,
             now() - make_interval(days => quiet_days + CASE WHEN k = 1 THEN 0
                                                        ELSE 1 + floor(random() * 400)::int END,
                                   hours => floor(random() * 12)::int) AS t
      FROM buyer b, generate_series(1, b.n) k OFFSET 0) o;
SQL
note "shop (PostgreSQL): $(shop -At -c "SELECT count(*) || ' orders of ' || count(DISTINCT customer_id) || ' customers' FROM orders") in table orders"

# The CRM: 150 customers (C0131..C0150 have not ordered yet), 120 support tickets.
crm <test/mysql_crm.sql
crm <<'SQL'
USE crm_db;
INSERT INTO crm_db.customers (customer_id, email, first_name, last_name, phone,
                              acquisition_channel, signup_date, loyalty_tier)
SELECT CONCAT('C', LPAD(seq, 4, '0')), LOWER(CONCAT(fn, '.', ln, seq, '@example.com')), fn, ln,
       CONCAT('+1-555-', LPAD(seq, 4, '0')),
       ELT(1 + seq % 5, 'organic', 'paid_search', 'social', 'referral', 'email'),
       UTC_TIMESTAMP() - INTERVAL (420 + (seq * 37) % 500) DAY,
       CASE WHEN (seq * 13) % 20 < 9 THEN 'bronze' WHEN (seq * 13) % 20 < 14 THEN 'silver'
            WHEN (seq * 13) % 20 < 18 THEN 'gold' ELSE 'platinum' END
FROM (SELECT seq,
             ELT(1 + seq % 20, 'Ada', 'Ben', 'Cleo', 'Dev', 'Eva', 'Finn', 'Gia', 'Hugo', 'Iris', 'Jon',
                 'Kai', 'Lena', 'Milo', 'Nina', 'Omar', 'Pia', 'Quinn', 'Rosa', 'Sami', 'Tara') AS fn,
             ELT(1 + (seq * 7) % 16, 'Adams', 'Baker', 'Chen', 'Diaz', 'Evans', 'Fox', 'Garcia', 'Hall',
                 'Ito', 'Jones', 'Khan', 'Lopez', 'Meyer', 'Novak', 'Ortiz', 'Park') AS ln
      FROM seq_1_to_150) s;
INSERT INTO crm_db.support_tickets (customer_id, status, category, created_at, resolved_at)
SELECT CONCAT('C', LPAD(1 + (seq * 53) % 150, 4, '0')),
       CASE WHEN seq % 6 = 0 THEN 'open' WHEN seq % 11 = 0 THEN 'escalated' ELSE 'resolved' END,
       ELT(1 + seq % 5, 'billing', 'shipping', 'returns', 'product', 'account'),
       UTC_TIMESTAMP(3) - INTERVAL (1 + (seq * 41) % 200) DAY,
       CASE WHEN seq % 6 <> 0 AND seq % 11 <> 0
            THEN UTC_TIMESTAMP() - INTERVAL (1 + (seq * 41) % 200) DAY + INTERVAL 5 HOUR END
FROM seq_1_to_120;
SQL
note "crm (MariaDB): $(crm -e "SELECT CONCAT((SELECT COUNT(*) FROM crm_db.customers), ' customers, ',
                                          (SELECT COUNT(*) FROM crm_db.support_tickets), ' support tickets')") in database crm_db"

# The click stream: 400 events of customers and 60 of anonymous cookies ck-01..ck-08 over the
# last 25 days; ck-01..ck-05 are linked to customers (identity_links, key = link id).
gen() { pg_psql "$PORT" -d postgres -At; }
gen >"$DIR/events.txt" <<'SQL'
SELECT setseed(0.7) \g /dev/null
SELECT format('%s:%s', cid, replace(json_build_object(
           'event_id', format('E%s', lpad(i::text, 5, '0')), 'customer_id', cid,
           'session_id', format('%s-s%s', cid, s), 'event_type', et,
           'product_id', CASE WHEN et IN ('product_view', 'add_to_cart') THEN format('P%s', p) END,
           'category_id', (ARRAY['shoes', 'outerwear', 'bags', 'home', 'beauty'])[1 + p % 5],
           'event_time', (extract(epoch FROM t) * 1000)::bigint)::text, ' : ', ': '))
FROM (SELECT i,
             CASE WHEN i <= 400 THEN format('C%s', lpad((1 + floor(random() * 150))::int::text, 4, '0'))
                  ELSE format('ck-%s', lpad((1 + floor(random() * 8))::int::text, 2, '0')) END AS cid,
             1 + floor(random() * 4)::int AS s, 100 + floor(random() * 60)::int AS p,
             (ARRAY['product_view', 'product_view', 'page_view', 'search', 'add_to_cart'])[1 + floor(random() * 5)::int] AS et,
             now() - random() * interval '25 days' AS t
      FROM generate_series(1, 460) i OFFSET 0) e;
SQL
gen >"$DIR/links.txt" <<'SQL'
SELECT format('L%s:%s', k, replace(json_build_object('customer_id', format('C%s', lpad((k * 17)::text, 4, '0')),
           'identity_type', 'cookie', 'identity_value', format('ck-%s', lpad(k::text, 2, '0')),
           'created_at', (extract(epoch FROM now() - interval '10 days') * 1000)::bigint)::text, ' : ', ': '))
FROM generate_series(1, 5) k;
SQL
kc -P -b "$B" -t customer_events -K: <"$DIR/events.txt" || die "kcat could not produce to customer_events"
kc -P -b "$B" -t identity_links -K: <"$DIR/links.txt" || die "kcat could not produce to identity_links"
N_EVENTS=$(wc -l <"$DIR/events.txt")
note "kafka: $N_EVENTS events in customer_events, 5 cookie -> customer links in identity_links (kcat -P), e.g."
head -n 1 "$DIR/events.txt" | shown

# ---------------------------------------------------------------------------------------------
step "Connect the sources: c360.create_source + c360.map_table (the workers start at commit)"
note "Each source is a background worker: it copies its tables once (snapshot), then streams changes."
SRC_SQL=$(cat <<SQL
BEGIN;
SELECT c360.create_source('shop', 'postgres-cdc',
       '{"conninfo": "host=127.0.0.1 port=$SHOP_PORT dbname=shop user=postgres"}');
SELECT c360.map_table('shop', 'public.orders', 'orders');
SELECT c360.create_source('crm', 'mysql-cdc',
       '{"host": "127.0.0.1", "port": $MY_PORT, "user": "c360", "password": "c360pw", "server_id": 4242}');
SELECT c360.map_table('crm', 'crm_db.customers', 'customers');
SELECT c360.map_table('crm', 'crm_db.support_tickets', 'support_tickets');
SELECT c360.create_source('clicks', 'kafka',
       '{"bootstrap.servers": "$B", "topic": "customer_events", "startup": "earliest"}');
SELECT c360.map_table('clicks', 'customer_events', 'behavioral_events');
SELECT c360.create_source('identity', 'kafka',
       '{"bootstrap.servers": "$B", "topic": "identity_links", "startup": "earliest"}');
SELECT c360.map_table('identity', 'identity_links', 'identity_graph');
COMMIT;
SQL
)
printf '%s\n' "$SRC_SQL" | shown
t=$(date +%s.%N)
printf '%s\n' "$SRC_SQL" | c360 -o /dev/null
N_ORDERS=$(shop -At -c "SELECT count(*) FROM orders")
loaded() {
    [ "$(val -c "SELECT (SELECT count(*) FROM c360.source_status WHERE state = 'streaming') = 4
                    AND (SELECT count(*) FROM c360.orders) = $N_ORDERS
                    AND (SELECT count(*) FROM c360.customers) = 150
                    AND (SELECT count(*) FROM c360.support_tickets) = 120
                    AND (SELECT count(*) FROM c360.behavioral_events) = $N_EVENTS
                    AND (SELECT count(*) FROM c360.identity_graph) = 5")" = t ]
}
poll 60 "the four sources to stream and every mirror to hold its source's rows" loaded ||
    die "the sources did not load everything within 60 s"
note "snapshots and streams caught up in $(elapsed "$t")s; c360.source_status:"
STATUS_SQL="SELECT name, kind, state, changes_applied, COALESCE(lag_bytes, lag_messages) AS lag,
       dead_letters, COALESCE(last_error, '') AS last_error FROM c360.source_status ORDER BY name"
table -c "$STATUS_SQL"
note "the mirrors and the profile:"
table -c "SELECT (SELECT count(*) FROM c360.customer_360) AS profiles, (SELECT count(*) FROM c360.orders) AS orders,
                 (SELECT count(*) FROM c360.support_tickets) AS tickets,
                 (SELECT count(*) FROM c360.behavioral_events) AS events,
                 (SELECT count(*) FROM c360.identity_graph) AS identity_links"

# ---------------------------------------------------------------------------------------------
step "The article's query (a): VIPs at risk, straight from c360.customer_360"
VIP_SQL="SELECT customer_id, first_name || ' ' || last_name AS name, loyalty_tier, lifecycle_stage,
       lifetime_value, last_order_date::date AS last_order, open_support_tickets AS open_tix
FROM c360.customer_360
WHERE loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')
ORDER BY lifetime_value DESC LIMIT 5;"
printf '%s\n' "$VIP_SQL" | shown
table -c "$VIP_SQL"

# ---------------------------------------------------------------------------------------------
step "That query as a segment, published to Kafka by a sink"
note "A segment's membership is kept with each profile change; a sink publishes its enters and exits."
SEG_SQL=$(cat <<SQL
SELECT c360.create_segment('vip_at_risk',
       \$\$loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')\$\$);
SELECT c360.create_sink('vip_to_kafka', 'vip_at_risk', 'kafka',
       '{"bootstrap.servers": "$B", "topic": "vip_at_risk"}');
SQL
)
printf '%s\n' "$SEG_SQL" | shown
MEMBERS=$(printf '%s\n' "$SEG_SQL" | val | sed -n 1p)
note "vip_at_risk has $MEMBERS members; the sink publishes one 'enter' per member, then every change"

# Messages of topic vip_at_risk from offset SEEN on: "seq change customer tier stage".
SEEN=0
read_topic() {
    kc -C -b "$B" -t vip_at_risk -o "$SEEN" -e -q -f '%s\n' 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    p = m["profile"]
    print("seq %-4s %-6s %s  %-8s %-8s %s" % (m["seq"], m["change"], m["customer_id"],
          p.get("loyalty_tier"), p.get("lifecycle_stage"), p.get("email")))'
}
topic_has() { # topic_has N [PATTERN]: at least N new messages, one of them matching PATTERN
    read_topic >"$DIR/topic.txt" || return 1
    [ "$(wc -l <"$DIR/topic.txt")" -ge "$1" ] && grep -q -- "${2:-}" "$DIR/topic.txt"
}
poll 30 "the sink's first $MEMBERS messages" topic_has "$MEMBERS" ||
    die "the sink did not publish the $MEMBERS members to topic vip_at_risk"
note "kcat -C -t vip_at_risk read back $(wc -l <"$DIR/topic.txt") messages (seq = the sink's starting position), e.g.:"
head -n 3 "$DIR/topic.txt" | sed 's/^/    /'
note "one as published (key = customer_id, header seq):"
kc -C -b "$B" -t vip_at_risk -o 0 -c 1 -e -q -f '    key %k, headers %h\n    %s\n'
SEEN=$(wc -l <"$DIR/topic.txt")

# ---------------------------------------------------------------------------------------------
step "Your own columns: two computed traits, and a segment on one"
note "A trait is a column of customer_360 defined in SQL; the maintainer keeps it exact with every change and tick."
TRAIT_SQL=$(cat <<'SQL'
SELECT c360.create_trait('cart_adds_7d', 'behavioral_events', 'count(*)',
       $$event_type = 'add_to_cart'$$, lookback => '7 days');
SELECT c360.create_trait('fav_category_90d', 'behavioral_events',
       'mode() WITHIN GROUP (ORDER BY category_id)', lookback => '90 days');
SELECT c360.create_segment('cart_browsers', 'cart_adds_7d >= 2',
       ARRAY['customer_id', 'email', 'cart_adds_7d', 'fav_category_90d']);
SQL
)
printf '%s\n' "$TRAIT_SQL" | shown
CART_MEMBERS=$(printf '%s\n' "$TRAIT_SQL" | val | sed -n 3p)
table -c "SELECT name, input, aggregate, lookback, type, state FROM c360.traits"
table -c "SELECT customer_id, cart_adds_7d, fav_category_90d FROM c360.customer_360
          ORDER BY cart_adds_7d DESC, customer_id LIMIT 3"
note "cart_browsers has $CART_MEMBERS members"
TRAITS_SQL="SELECT customer_id, cart_adds_7d, fav_category_90d FROM c360.customer_360 WHERE customer_id = "

# ---------------------------------------------------------------------------------------------
# The customer of the story: the VIP at risk with the highest lifetime value and no open ticket.
HERO=$(val -c "SELECT customer_id FROM c360.customer_360
               WHERE loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')
                 AND open_support_tickets = 0
               ORDER BY lifetime_value DESC, customer_id LIMIT 1")
[ -n "$HERO" ] || die "the generated data has no VIP at risk without an open ticket"
PROFILE_SQL="SELECT customer_id, loyalty_tier AS tier, total_orders AS orders, lifetime_value AS ltv,
       lifecycle_stage AS stage, open_support_tickets AS open_tix, events_last_30d AS events_30d,
       sessions_last_30d AS sessions_30d FROM c360.customer_360 WHERE customer_id = "
profile() { table -c "$PROFILE_SQL'$1'"; }
profile_is() { [ "$(val -c "SELECT ($2) FROM c360.customer_360 WHERE customer_id = '$1'")" = t ]; }
# wait_profile CUSTOMER SINCE CONDITION WHAT: bounded poll until the customer's profile row
# satisfies CONDITION (SQL over c360.customer_360); prints the time since SINCE.
wait_profile() {
    local who=$1 since=$2 cond=$3 what=$4
    poll 15 "$what" profile_is "$who" "$cond" || die "$what did not show up in c360.customer_360 within 15 s"
    note "-> in customer_360 $(elapsed "$since")s after the source committed it:"
}
BASE=$(val -c "SELECT total_orders || ' ' || open_support_tickets || ' ' || events_last_30d || ' ' || sessions_last_30d
               FROM c360.customer_360 WHERE customer_id = '$HERO'")
read -r H_ORDERS H_TIX H_EVENTS H_SESSIONS <<<"$BASE"

step "Live: $HERO, our top VIP at risk, opens a support ticket in the CRM (MariaDB)"
profile "$HERO"
TICKET_SQL="INSERT INTO crm_db.support_tickets (customer_id, status, category, created_at)
VALUES ('$HERO', 'open', 'shipping', UTC_TIMESTAMP(3));"
printf '%s\n' "$TICKET_SQL" | shown
t=$(date +%s.%N)
crm -e "$TICKET_SQL"
wait_profile "$HERO" "$t" "open_support_tickets = $((H_TIX + 1))" "the ticket of $HERO"
profile "$HERO"

step "Live: an anonymous visitor (cookie ck-7f3a) browses; a Kafka message per click"
t=$(date +%s.%N)
now_ms=$(($(date +%s%N) / 1000000))
for i in 1 2 3 4 5 6; do
    printf 'ck-7f3a:{"event_id": "E-LIVE-%s", "customer_id": "ck-7f3a", "session_id": "ck-7f3a-s%s", "event_type": "product_view", "product_id": "P12%s", "category_id": "bags", "event_time": %s}\n' \
        "$i" $(((i + 2) / 3)) "$i" $((now_ms - (7 - i) * 60000))
done >"$DIR/cookie.txt"
{ sed -n 1p "$DIR/cookie.txt"; echo "... (6 clicks in 2 sessions over the last 6 minutes)"; } | shown
kc -P -b "$B" -t customer_events -K: <"$DIR/cookie.txt" || die "kcat could not produce the cookie's events"
cookie_in() { [ "$(val -c "SELECT count(*) FROM c360.behavioral_events WHERE customer_id = 'ck-7f3a'")" = 6 ]; }
poll 15 "the cookie's 6 events in c360.behavioral_events" cookie_in || die "the cookie's events did not arrive"
note "-> 6 events in c360.behavioral_events after $(elapsed "$t")s, under ck-7f3a: nobody's profile yet"

step "Live: the visitor logs in as $HERO; the identity_links topic gets the link"
LINK="L-LIVE-1:{\"customer_id\": \"$HERO\", \"identity_type\": \"cookie\", \"identity_value\": \"ck-7f3a\", \"created_at\": $now_ms}"
echo "$LINK" | shown
t=$(date +%s.%N)
echo "$LINK" | kc -P -b "$B" -t identity_links -K: || die "kcat could not produce the identity link"
wait_profile "$HERO" "$t" "events_last_30d = $((H_EVENTS + 6)) AND sessions_last_30d = $((H_SESSIONS + 2))" \
    "the cookie's 6 events (2 sessions) in the profile of $HERO"
profile "$HERO"
note "and its traits: the cookie's six views were of bags"
table -c "$TRAITS_SQL'$HERO'"

step "Live: $HERO places an order in the shop (PostgreSQL); no longer at risk"
ORDER_SQL="INSERT INTO orders VALUES ('O-LIVE-1', '$HERO', 'processing', 249.00, 3, 'app', now(), now());"
printf '%s\n' "$ORDER_SQL" | shown
t=$(date +%s.%N)
shop -c "$ORDER_SQL"
wait_profile "$HERO" "$t" "total_orders = $((H_ORDERS + 1)) AND lifecycle_stage = 'active'" "the order of $HERO"
profile "$HERO"
poll 15 "the sink's exit message for $HERO" topic_has 1 "exit.*$HERO" ||
    die "no exit message for $HERO on topic vip_at_risk"
note "-> $HERO left vip_at_risk; the sink published (an exit carries the profile as last published):"
sed 's/^/    /' "$DIR/topic.txt"
SEEN=$((SEEN + $(wc -l <"$DIR/topic.txt")))

# A lapsing or at-risk customer on a lower tier, upgraded to gold in the CRM: enters the segment.
UP=$(val -c "SELECT customer_id FROM c360.customer_360
             WHERE loyalty_tier IN ('bronze', 'silver') AND lifecycle_stage IN ('at_risk', 'lapsing')
             ORDER BY lifetime_value DESC, customer_id LIMIT 1")
[ -n "$UP" ] || die "the generated data has no lower-tier customer at risk"
UP_WAS=$(val -c "SELECT lifecycle_stage || ', ' || loyalty_tier FROM c360.customer_360 WHERE customer_id = '$UP'")
step "Live: the CRM upgrades $UP ($UP_WAS) to gold; $UP enters vip_at_risk"
profile "$UP"
UP_SQL="UPDATE crm_db.customers SET loyalty_tier = 'gold' WHERE customer_id = '$UP';"
printf '%s\n' "$UP_SQL" | shown
t=$(date +%s.%N)
crm -e "$UP_SQL"
wait_profile "$UP" "$t" "loyalty_tier = 'gold'" "the upgrade of $UP"
profile "$UP"
poll 15 "the sink's enter message for $UP" topic_has 1 "enter.*$UP" ||
    die "no enter message for $UP on topic vip_at_risk"
note "-> the sink published:"
sed 's/^/    /' "$DIR/topic.txt"

# ---------------------------------------------------------------------------------------------
step "Status and exactness"
note "c360.source_status:"
table -c "$STATUS_SQL"
note "c360.sink_status:"
sink_done() { [ "$(val -c "SELECT state = 'streaming' AND backlog = 0 FROM c360.sink_status")" = t ]; }
poll 15 "the sink's backlog to drain" sink_done || die "the sink did not catch up"
table -c "SELECT name, segment, state, position, backlog, COALESCE(last_error, '') AS last_error FROM c360.sink_status"
errors=$(val -c "SELECT count(*) FROM c360.source_status WHERE state <> 'streaming' OR last_error IS NOT NULL OR dead_letters > 0")
[ "$errors" = 0 ] || die "a source is not streaming cleanly"
note "c360.verify() compares customer_360 with the article's defining query over the mirrors:"
echo "SELECT count(*) FROM c360.verify();" | shown
n=$(val -c "SELECT count(*) FROM c360.verify()")
note "-> verify(): $n differences"
if [ "$n" != 0 ]; then
    table -c "SELECT * FROM c360.verify() LIMIT 10"
    die "c360.verify() is not empty"
fi

echo
echo "Demo complete in $(elapsed "$T0")s: four sources, one profile with two traits of your own, segments, one on Kafka; stopping the servers."
