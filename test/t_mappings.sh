#!/usr/bin/env bash
# test/t_mappings.sh: column mappings (c360.map_table's columns) end to end, for every kind of
# source, against real servers started here (issue 18, item 1):
#   1  PostgreSQL: shop_orders(id, buyer, amount, state, qty, via, placed_at, changed_at) ->
#      orders, every column renamed (and a column named total_amount, of text, that must not
#      feed total_amount since that one is mapped to amount); snapshot, then streamed
#      inserts, updates and deletes; mirror = source row for row, verify() empty
#   2  PostgreSQL, a bad mapping (a remote column that does not exist): the source stops in
#      'error' saying which input column, which remote column and which table; the mapping
#      fixed + resume_source: the table copied, mirror = source
#   3  PostgreSQL drift on a mapped column (qty dropped on the source): 'error' naming qty and
#      item_count; mapped again without it + resume_source: copied again, mirror = source
#   4  MariaDB: crm.clients with renamed customer columns (one named in another letter case
#      than the mapping says, and a column named email that must not feed email); snapshot,
#      streamed changes, mirror = source; a bad mapping (error naming it); drift on a mapped
#      column (error naming it); mapped again without it + resume_source: copied again
#   5  Kafka: Segment-style events ({"messageId", "userId", "event", "timestamp",
#      "properties": {"product_id"}, "context": {"sessionId"}}) onto behavioral_events with
#      paths; a message without properties.product_id goes to dead letters with the reason
#      and the stream goes on; mirror = the good events, verify() empty
#   6  the mappings are in pg_dump's output
# Runs against the cluster of test/run.sh (PGHOST/PGPORT/PGUSER, customer360 preloaded,
# workers in c360_workers).  Every wait is a bounded poll.  Exit 0 only if every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/servers.sh

DB=c360_workers
: "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
export PGHOST PGPORT PGUSER PGTZ=UTC PGDATESTYLE=ISO
SRC_PORT=${C360_PGSRC_PORT:-54350}
MY_PORT=${MY_PORT:-33330}

T0=$(date +%s.%N)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/t_mappings.XXXXXX")
SRC_DIR=
MYDIR=
BROKER_PID=
B=
failures=()

. test/lib.sh
die() {
    echo "FAIL: $*"
    failures+=("$*")
    diagnostics
    exit 1
}
s() { psql -X -qAt -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d shop "$@"; }
my() { mysql_cli "$MY_PORT" -N -B "$@"; }

cleanup() {
    local rc=$?
    set +e
    drop_c360
    for o in $(q -c "SELECT roname FROM pg_replication_origin WHERE roname LIKE 'c360_map_%'" 2>/dev/null); do
        q -c "SELECT pg_replication_origin_drop('$o')" >/dev/null 2>&1
    done
    broker_stop
    [ -n "$MYDIR" ] && mysql_stop "$MYDIR"
    pg_discard "$SRC_DIR" "$([ "$rc" -ne 0 ] && echo "$TMP/pgsrc.server.log")"
    if [ "$rc" -eq 0 ]; then
        rm -rf "$TMP" "$MYDIR"
    else
        echo "files kept in $TMP${MYDIR:+ and $MYDIR}"
    fi
    exit "$rc"
}
trap cleanup EXIT

diagnostics() {
    set +e
    echo "---- diagnostics"
    q -c "SELECT name, state, position, changes_applied, dead_letters, last_error FROM c360.source_status" 2>&1
    q -c "SELECT * FROM c360.source_mappings ORDER BY 1, 2" 2>&1
    q -c "SELECT source, position, left(payload, 100), error FROM c360.dead_letters ORDER BY id LIMIT 5" 2>&1
    echo "----"
}

error_of() { q -c "SELECT last_error FROM c360.source_status WHERE name = '$1'"; }
# wait_streaming SECS NAME: until the source streams; an error state fails at once
wait_streaming() {
    local i st
    for ((i = 0; i < $1 * 5; i++)); do
        st=$(state_of "$2" || true)
        [ "$st" = streaming ] && return 0
        [ "$st" = error ] && die "source $2 is in error: $(error_of "$2")"
        sleep 0.2
    done
    die "gave up after $1 s waiting for $2 to stream (state $(state_of "$2"))"
}
# expect_error SECS NAME PATTERN: until the source is in state error, whose message has PATTERN
expect_error() {
    poll "$1" "source $2 in state error" state_is "$2" error ||
        die "source $2 did not stop in error (state $(state_of "$2"), last_error $(error_of "$2"))"
    local msg
    msg=$(error_of "$2")
    case $msg in
        *"$3"*) say "  $2 in error: $msg" ;;
        *) die "source $2: last_error is \"$msg\", not one with \"$3\"" ;;
    esac
}
# same DESC FILE_A FILE_B: equal files, else the first differences and a failure
same() {
    if ! cmp -s "$2" "$3"; then
        echo "$1: $(wc -l <"$2") rows on the source, $(wc -l <"$3") in the mirror; first differences:"
        diff "$2" "$3" | head -n 10
        return 1
    fi
}

fresh_c360

# ---------------------------------------------------------------------------------------------
say "the PostgreSQL source cluster"
SRC_DIR=$(mktemp -d /tmp/c360-mapsrc.XXXXXX)
pg_start_free "$SRC_DIR" "$SRC_PORT" "wal_level = logical" "max_replication_slots = 10" \
    "max_wal_senders = 10" "log_min_messages = warning" >/dev/null || die "could not start the source cluster"
SRC_PORT=$PG_PORT   # pg_start_free tries further ports if one is taken meanwhile
psql -X -q -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d postgres -c "CREATE DATABASE shop"
s <<'SQL'
CREATE TABLE shop_orders (
    id text PRIMARY KEY,
    buyer text NOT NULL,
    total_amount text,            -- not the input's total_amount: that one is mapped to amount
    amount numeric(10,2),
    state text,
    qty integer,
    via text,
    placed_at timestamptz,
    changed_at timestamptz
);
INSERT INTO shop_orders
SELECT 'o' || i, 'c' || (i % 97), 'junk', (i * 7 % 1000) / 4.0, (ARRAY['placed', 'shipped', 'delivered'])[1 + i % 3],
       1 + i % 5, CASE WHEN i % 4 = 0 THEN NULL ELSE 'web' END,
       '2026-01-01 00:00+00'::timestamptz + i * interval '37 minutes', '2026-02-01 00:00+00'::timestamptz + i * interval '1 minute'
FROM generate_series(1, 3000) i;
CREATE TABLE shop_tickets (tid text PRIMARY KEY, who text NOT NULL, st text, kind text, opened timestamptz);
INSERT INTO shop_tickets
SELECT 't' || i, 'c' || (i % 97), CASE WHEN i % 2 = 0 THEN 'open' ELSE 'solved' END, 'billing',
       '2026-03-01 00:00+00'::timestamptz + i * interval '1 hour'
FROM generate_series(1, 200) i;
SQL
CONNINFO="host=127.0.0.1 port=$SRC_PORT user=postgres dbname=shop"

orders_src() {
    s -c "COPY (SELECT id, buyer, coalesce(state, 'NULL'), coalesce(amount::text, 'NULL'), coalesce(${1:-qty}::text, 'NULL'),
                       coalesce(via, 'NULL'), coalesce(to_char(placed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'NULL'),
                       coalesce(to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'NULL')
                FROM shop_orders ORDER BY id COLLATE \"C\") TO STDOUT" >"$TMP/orders.src"
}
orders_mirror() {
    q -c "COPY (SELECT order_id, customer_id, coalesce(order_status, 'NULL'), coalesce(total_amount::text, 'NULL'),
                       coalesce(item_count::text, 'NULL'), coalesce(channel, 'NULL'),
                       coalesce(to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'NULL'),
                       coalesce(to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'NULL')
                FROM c360.orders ORDER BY order_id COLLATE \"C\") TO STDOUT" >"$TMP/orders.mirror"
}
orders_equal() { orders_src "$@"; orders_mirror; cmp -s "$TMP/orders.src" "$TMP/orders.mirror"; }
tickets_src() {
    s -c "COPY (SELECT tid, who, coalesce(st, 'NULL'), coalesce(kind, 'NULL'), to_char(opened AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                FROM shop_tickets ORDER BY tid COLLATE \"C\") TO STDOUT" >"$TMP/tickets.src"
}
tickets_mirror() {
    q -c "COPY (SELECT ticket_id, customer_id, coalesce(status, 'NULL'), coalesce(category, 'NULL'),
                       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                FROM c360.support_tickets WHERE ticket_id LIKE 't%' ORDER BY ticket_id COLLATE \"C\") TO STDOUT" >"$TMP/tickets.mirror"
}
tickets_equal() { tickets_src; tickets_mirror; cmp -s "$TMP/tickets.src" "$TMP/tickets.mirror"; }

# ---------------------------------------------------------------------------------------------
say "1. PostgreSQL: shop_orders -> orders, every column renamed"
q -c "BEGIN;
      SELECT c360.create_source('map_pg', 'postgres-cdc', jsonb_build_object('conninfo', '$CONNINFO'));
      SELECT c360.map_table('map_pg', 'shop_orders', 'orders',
          '{\"order_id\": \"id\", \"customer_id\": \"buyer\", \"total_amount\": \"amount\", \"order_status\": \"state\",
            \"item_count\": \"qty\", \"channel\": \"via\", \"created_at\": \"placed_at\", \"updated_at\": \"changed_at\"}');
      COMMIT;" >/dev/null
wait_streaming 60 map_pg
poll 60 "orders mirror = shop_orders after the snapshot" orders_equal ||
    { same orders "$TMP/orders.src" "$TMP/orders.mirror"; die "orders mirror differs after the snapshot"; }
say "  snapshot: $(wc -l <"$TMP/orders.mirror") orders equal"
s <<'SQL'
INSERT INTO shop_orders (id, buyer, total_amount, amount, state, qty, via, placed_at, changed_at)
SELECT 'n' || i, 'c' || (i % 13), 'junk', i / 3.0, 'placed', i % 7, 'app', now() - i * interval '1 hour', now()
FROM generate_series(1, 500) i;
UPDATE shop_orders SET state = 'shipped', amount = amount + 1, changed_at = changed_at + interval '1 day' WHERE id LIKE 'o1%';
UPDATE shop_orders SET buyer = 'c_moved', via = NULL WHERE id IN ('o5', 'n5');
DELETE FROM shop_orders WHERE id LIKE 'o2%';
BEGIN;
UPDATE shop_orders SET qty = qty + 10 WHERE id LIKE 'n1%';
DELETE FROM shop_orders WHERE id = 'n2';
COMMIT;
SQL
poll 60 "orders mirror = shop_orders after streamed changes" orders_equal ||
    { same orders "$TMP/orders.src" "$TMP/orders.mirror"; die "orders mirror differs after streamed changes"; }
poll 30 "verify() empty" verify_empty || die "verify() is not empty after the PostgreSQL stream"
[ "$(q -c "SELECT count(*) FROM c360.dead_letters")" = 0 ] || die "dead letters from map_pg"
say "  streamed: $(wc -l <"$TMP/orders.mirror") orders equal, verify() empty"

# ---------------------------------------------------------------------------------------------
say "2. PostgreSQL, a mapping that names a column the table does not have"
q -c "BEGIN;
      SELECT c360.create_source('map_pg_bad', 'postgres-cdc', jsonb_build_object('conninfo', '$CONNINFO'));
      SELECT c360.map_table('map_pg_bad', 'shop_tickets', 'support_tickets',
          '{\"ticket_id\": \"tid\", \"customer_id\": \"who\", \"status\": \"no_such_col\", \"category\": \"kind\", \"created_at\": \"opened\"}');
      COMMIT;" >/dev/null
expect_error 60 map_pg_bad 'input column "status" of input "support_tickets" is mapped to column "no_such_col", which source table public.shop_tickets does not have'
[ "$(q -c "SELECT count(*) FROM c360.support_tickets")" = 0 ] || die "tickets copied despite the bad mapping"
q -c "SELECT c360.map_table('map_pg_bad', 'shop_tickets', 'support_tickets',
          '{\"ticket_id\": \"tid\", \"customer_id\": \"who\", \"status\": \"st\", \"category\": \"kind\", \"created_at\": \"opened\"}');
      SELECT c360.resume_source('map_pg_bad');" >/dev/null
wait_streaming 60 map_pg_bad
s -c "UPDATE shop_tickets SET st = 'reopened' WHERE tid IN ('t1', 't2'); INSERT INTO shop_tickets VALUES ('t999', 'c1', 'open', NULL, now())"
poll 60 "tickets mirror = shop_tickets" tickets_equal ||
    { same tickets "$TMP/tickets.src" "$TMP/tickets.mirror"; die "tickets mirror differs after the fixed mapping"; }
say "  fixed and resumed: $(wc -l <"$TMP/tickets.mirror") tickets equal"

# ---------------------------------------------------------------------------------------------
say "3. PostgreSQL drift: mapped column qty (item_count) dropped on the source"
s -c "ALTER TABLE shop_orders DROP COLUMN qty; UPDATE shop_orders SET state = 'returned' WHERE id = 'o3'"
expect_error 60 map_pg 'column "qty" (mapped to input column "item_count") of source table public.shop_orders was dropped on the source'
q -c "SELECT c360.map_table('map_pg', 'shop_orders', 'orders',
          '{\"order_id\": \"id\", \"customer_id\": \"buyer\", \"total_amount\": \"amount\", \"order_status\": \"state\",
            \"channel\": \"via\", \"created_at\": \"placed_at\", \"updated_at\": \"changed_at\"}');
      SELECT c360.resume_source('map_pg');" >/dev/null
wait_streaming 60 map_pg
s -c "UPDATE shop_orders SET amount = 1 WHERE id = 'o4'"
# the copy replaces every row: item_count is NULL everywhere, not only in rows changed since
poll 60 "orders mirror = shop_orders (item_count no longer fed)" orders_equal NULL ||
    { same orders "$TMP/orders.src" "$TMP/orders.mirror"; die "orders mirror differs after the mapping without qty"; }
poll 30 "verify() empty" verify_empty || die "verify() is not empty after the re-copy"
say "  mapped again without it: copied again, $(wc -l <"$TMP/orders.mirror") orders equal"

# ---------------------------------------------------------------------------------------------
say "4. MariaDB: crm.clients -> customers, renamed columns"
MYDIR=$(mktemp -d /tmp/c360-mapmy.XXXXXX)
mysql_start_free "$MYDIR" "$MY_PORT" || die "could not start MariaDB"
my <<'SQL'
CREATE DATABASE crm CHARACTER SET utf8mb4;
USE crm;
CREATE TABLE crm.clients (
    ClientId varchar(20) PRIMARY KEY,
    email varchar(100),              -- not the input's email: that one is mapped to Mail
    Mail varchar(100),
    GivenName varchar(50),
    FamilyName varchar(50),
    Tel varchar(20),
    Tier varchar(10),
    JoinedAt datetime
);
CREATE TABLE crm.leads (LeadId varchar(20) PRIMARY KEY, Mail varchar(100));
INSERT INTO crm.clients
SELECT concat('k', seq), 'junk', concat('k', seq, '@example.com'), concat('Given', seq), concat('Family', seq),
       IF(seq % 3 = 0, NULL, concat('+1-555-', seq)), ELT(1 + seq % 3, 'gold', 'silver', 'bronze'),
       '2025-01-01 00:00:00' + INTERVAL seq HOUR
FROM crm.seq_1_to_1000;
CREATE USER 'c360'@'127.0.0.1' IDENTIFIED BY 'c360pw';
GRANT SELECT ON crm.* TO 'c360'@'127.0.0.1';
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'c360'@'127.0.0.1';
SQL
clients_src() {
    my -e "SELECT ClientId, IFNULL(Mail, 'NULL'), IFNULL(GivenName, 'NULL'), IFNULL(FamilyName, 'NULL'),
                  IFNULL(${1:-Tel}, 'NULL'), IFNULL(Tier, 'NULL'), IFNULL(DATE_FORMAT(JoinedAt, '%Y-%m-%d %H:%i:%s'), 'NULL')
           FROM crm.clients" | LC_ALL=C sort >"$TMP/clients.src"
}
clients_mirror() {
    q -F $'\t' -c "SELECT customer_id, coalesce(email, 'NULL'), coalesce(first_name, 'NULL'), coalesce(last_name, 'NULL'),
                          coalesce(phone, 'NULL'), coalesce(loyalty_tier, 'NULL'),
                          coalesce(to_char(signup_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), 'NULL')
                   FROM c360.customers" | LC_ALL=C sort >"$TMP/clients.mirror"
}
clients_equal() { clients_src "$@"; clients_mirror; cmp -s "$TMP/clients.src" "$TMP/clients.mirror"; }
MY_OPTS="{\"host\": \"127.0.0.1\", \"port\": $MY_PORT, \"user\": \"c360\", \"password\": \"c360pw\""
# clientid: MySQL column names compare without regard to case
q -c "BEGIN;
      SELECT c360.create_source('map_my', 'mysql-cdc', '$MY_OPTS, \"server_id\": 4301}');
      SELECT c360.map_table('map_my', 'crm.clients', 'customers',
          '{\"customer_id\": \"clientid\", \"email\": \"Mail\", \"first_name\": \"GivenName\", \"last_name\": \"FamilyName\",
            \"phone\": \"Tel\", \"loyalty_tier\": \"Tier\", \"signup_date\": \"JoinedAt\"}');
      COMMIT;" >/dev/null
wait_streaming 60 map_my
poll 60 "customers mirror = crm.clients after the snapshot" clients_equal ||
    { same clients "$TMP/clients.src" "$TMP/clients.mirror"; die "customers mirror differs after the snapshot"; }
say "  snapshot: $(wc -l <"$TMP/clients.mirror") customers equal"
my <<'SQL'
INSERT INTO crm.clients (ClientId, email, Mail, GivenName, Tier, JoinedAt)
SELECT concat('x', seq), 'junk', concat('x', seq, '@example.com'), 'New', 'bronze', '2026-06-01 12:00:00' FROM crm.seq_1_to_300;
UPDATE crm.clients SET Tier = 'platinum', Mail = concat('vip.', Mail), email = 'junk2' WHERE ClientId LIKE 'k1%';
UPDATE crm.clients SET Tel = NULL, FamilyName = 'Moved' WHERE ClientId IN ('k5', 'x5');
DELETE FROM crm.clients WHERE ClientId LIKE 'k2%';
SQL
poll 60 "customers mirror = crm.clients after streamed changes" clients_equal ||
    { same clients "$TMP/clients.src" "$TMP/clients.mirror"; die "customers mirror differs after streamed changes"; }
poll 30 "verify() empty" verify_empty || die "verify() is not empty after the MariaDB stream"
say "  streamed: $(wc -l <"$TMP/clients.mirror") customers equal, verify() empty"

say "4b. MariaDB, a mapping that names a column the table does not have"
q -c "BEGIN;
      SELECT c360.create_source('map_my_bad', 'mysql-cdc', '$MY_OPTS, \"server_id\": 4302}');
      SELECT c360.map_table('map_my_bad', 'crm.leads', 'identity_graph',
          '{\"identity_id\": \"LeadId\", \"customer_id\": \"Owner\", \"identity_value\": \"Mail\"}');
      COMMIT;" >/dev/null
expect_error 60 map_my_bad 'input column "customer_id" of input "identity_graph" is mapped to column "Owner", which source table crm.leads does not have'
q -c "SELECT c360.drop_source('map_my_bad')" >/dev/null

say "4c. MariaDB drift: mapped column Tel (phone) dropped on the source"
my -e "ALTER TABLE crm.clients DROP COLUMN Tel; UPDATE crm.clients SET Tier = 'diamond' WHERE ClientId = 'k3'"
expect_error 60 map_my 'column "Tel" (mapped to input column "phone") of source table crm.clients was dropped on the source'
q -c "SELECT c360.map_table('map_my', 'crm.clients', 'customers',
          '{\"customer_id\": \"clientid\", \"email\": \"Mail\", \"first_name\": \"GivenName\", \"last_name\": \"FamilyName\",
            \"loyalty_tier\": \"Tier\", \"signup_date\": \"JoinedAt\"}');
      SELECT c360.resume_source('map_my');" >/dev/null
wait_streaming 60 map_my
my -e "UPDATE crm.clients SET Mail = 'after@example.com' WHERE ClientId = 'k4'"
# the copy writes each row whole: phone is NULL everywhere, not only in rows changed since
poll 60 "customers mirror = crm.clients (phone no longer fed)" clients_equal NULL ||
    { same clients "$TMP/clients.src" "$TMP/clients.mirror"; die "customers mirror differs after the mapping without Tel"; }
poll 30 "verify() empty" verify_empty || die "verify() is not empty after the MariaDB re-copy"
say "  mapped again without it: copied again, $(wc -l <"$TMP/clients.mirror") customers equal"

# ---------------------------------------------------------------------------------------------
say "5. Kafka: Segment-style events with nested fields onto behavioral_events"
broker_start "$TMP" segment:2 || die "could not start the test Kafka broker"
B=$BROKER_ADDR
q -c "BEGIN;
      SELECT c360.create_source('map_kafka', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"segment\"}');
      SELECT c360.map_table('map_kafka', 'segment', 'behavioral_events',
          '{\"event_id\": \"messageId\", \"customer_id\": \"userId\", \"event_type\": \"event\", \"event_time\": \"timestamp\",
            \"product_id\": \"properties.product_id\", \"session_id\": \"context.sessionId\"}');
      COMMIT;" >/dev/null
wait_streaming 60 map_kafka
# good events, one without properties.product_id (dead letter), more good events after it;
# the expected mirror rows: event_id, customer_id, session_id, event_type, product_id,
# category_id, event_time
python3 - "$TMP" <<'PY'
import json, sys, datetime
tmp = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
msgs, want = [], []
for i in range(1, 401):
    t = (now - datetime.timedelta(minutes=7 * i)).strftime('%Y-%m-%dT%H:%M:%S.000Z')
    ev = {"type": "track", "messageId": "m%d" % i, "userId": "u%d" % (i % 23), "event": ["product_view", "add_to_cart"][i % 2],
          "timestamp": t, "properties": {"product_id": "p%d" % (i % 50), "price": i / 4},
          "context": {"sessionId": "s%d" % (i // 10), "ip": "10.0.0.1"}, "category_id": "cat%d" % (i % 4)}
    if i == 200:
        del ev["properties"]["product_id"]            # the dead letter
        msgs.append(json.dumps(ev))
        continue
    if i % 50 == 0:
        ev["properties"]["product_id"] = None          # a mapped path that is null: a null
    msgs.append(json.dumps(ev))
    want.append("\t".join([ev["messageId"], ev["userId"], ev["context"]["sessionId"], ev["event"],
                           ev["properties"]["product_id"] or "NULL", ev["category_id"], t]))
open(tmp + "/segment.jsonl", "w").write("\n".join(msgs) + "\n")
open(tmp + "/events.want", "w").write("\n".join(sorted(want)) + "\n")
PY
timeout 60 kcat -P -b "$B" -t segment <"$TMP/segment.jsonl" 2>>"$TMP/kcat.err" ||
    die "kcat could not produce: $(tail -n 3 "$TMP/kcat.err")"
events_mirror() {
    q -F $'\t' -c "SELECT event_id, customer_id, coalesce(session_id, 'NULL'), event_type, coalesce(product_id, 'NULL'),
                          coalesce(category_id, 'NULL'), to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
                   FROM c360.behavioral_events" | LC_ALL=C sort >"$TMP/events.mirror"
}
LC_ALL=C sort -o "$TMP/events.want" "$TMP/events.want"
events_equal() { events_mirror; cmp -s "$TMP/events.want" "$TMP/events.mirror"; }
poll 60 "behavioral_events mirror = the 399 good events" events_equal ||
    { same events "$TMP/events.want" "$TMP/events.mirror"; die "behavioral_events mirror differs from the events"; }
dead=$(q -c "SELECT count(*) || ' ' || min(error) FROM c360.dead_letters WHERE source = 'map_kafka'")
case $dead in
    "1 no field properties.product_id, which input column product_id is mapped to") ;;
    *) die "map_kafka dead letters: \"$dead\", not the one message without properties.product_id" ;;
esac
q -c "SELECT 1 FROM c360.dead_letters WHERE source = 'map_kafka' AND payload::jsonb->>'messageId' = 'm200'" | grep -q 1 ||
    die "the dead letter is not message m200"
state_is map_kafka streaming || die "map_kafka is not streaming after the dead letter: $(state_of map_kafka)"
poll 30 "verify() empty" verify_empty || die "verify() is not empty after the Kafka stream"
say "  $(wc -l <"$TMP/events.mirror") events equal, m200 in dead letters with its reason, verify() empty"

# ---------------------------------------------------------------------------------------------
say "6. the mappings are in pg_dump's output (c360.source_tables is dumped with the extension)"
"$PG_BIN/pg_dump" -d "$DB" --data-only >"$TMP/dump.sql" 2>"$TMP/dump.err" ||
    die "pg_dump failed: $(tail -n 3 "$TMP/dump.err")"
for want in '"total_amount": "amount"' '"product_id": "properties.product_id"' '"status": "st"'; do
    awk '/^COPY c360.source_tables /,/^\\\.$/' "$TMP/dump.sql" | grep -qF "$want" ||
        die "pg_dump's c360.source_tables has no $want"
done
say "  every mapping in the dump"

if [ "${#failures[@]}" -gt 0 ]; then
    echo "t_mappings: ${#failures[@]} failures"
    exit 1
fi
say "t_mappings: all checks passed"
