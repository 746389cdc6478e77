#!/usr/bin/env bash
# test/t_custom_input.sh: an input of your own (c360.create_input) end to end (issue 18, item 2):
#   1  create_input('returns', ...) fed by a real PostgreSQL source through map_table with
#      renamed columns (shop_returns: a bigint key, numeric(10,2), boolean, jsonb); snapshot,
#      then changes typed one statement at a time (autocommit) and in one transaction:
#      inserts, updates (one moves a return to another customer), deletes; mirror = source
#      row for row
#   2  a trait over it (refunds in 90 days), a segment on that trait: profile = what the
#      source rows say (computed here from the source), verify() empty
#   3  drop_input is refused (2BP01) while a source maps the input and a trait reads it
#   4  erase_customer removes the customer's returns; a later source row of that customer is
#      dropped by the tombstone; the other customers' rows keep streaming
#   5  pg_dump -Fc and a plain pg_dump restored into new databases: the input's catalog row,
#      mirror rows, indexes, the trait's column and values come back; verify() empty there
#   6  MariaDB: crm.prefs (tinyint(1), int, bigint, double, decimal, date, datetime, JSON)
#      onto an input of every column type, snapshot and streamed changes; mirror = source
#   7  Kafka: JSON messages with nested fields onto an input with a jsonb column, through
#      paths; a message lacking a mapped path goes to dead letters; mirror = the good messages
#   8  the README's Zendesk example: Debezium change events (with schemas, as Debezium's
#      PostgreSQL connector documents them: snapshot reads, updates without before, deletes
#      and their tombstones) onto an input of one's own; mirror = the rows the events leave,
#      a trait over it = the same rows counted apart
# Runs against the cluster of test/run.sh (PGHOST/PGPORT/PGUSER, customer360 preloaded,
# workers in c360_workers).  Every wait is a bounded poll.  Exit 0 only if every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/servers.sh

DB=c360_workers
: "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
export PGHOST PGPORT PGUSER PGTZ=UTC PGDATESTYLE=ISO
SRC_PORT=${C360_PGSRC_PORT:-54370}
MY_PORT=${MY_PORT:-33370}

T0=$(date +%s.%N)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/t_custom_input.XXXXXX")
SRC_DIR=
MYDIR=
BROKER_PID=
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
    for d in c360_restored c360_restored_plain; do
        psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1
    done
    for o in $(q -c "SELECT roname FROM pg_replication_origin WHERE roname LIKE 'c360_ret_%'" 2>/dev/null); do
        q -c "SELECT pg_replication_origin_drop('$o')" >/dev/null 2>&1
    done
    broker_stop
    [ -n "$MYDIR" ] && mysql_stop "$MYDIR"
    pg_discard "$SRC_DIR" "$([ "$rc" -ne 0 ] && echo "$TMP/pgsrc.server.log")"
    if [ "$rc" -eq 0 ]; then rm -rf "$TMP" "$MYDIR"; else echo "files kept in $TMP${MYDIR:+ and $MYDIR}"; fi
    exit "$rc"
}
trap cleanup EXIT

diagnostics() {
    set +e
    echo "---- diagnostics"
    q -c "SELECT name, state, position, changes_applied, dead_letters, last_error FROM c360.source_status" 2>&1
    q -c "SELECT source, position, left(payload, 100), error FROM c360.dead_letters ORDER BY id LIMIT 5" 2>&1
    echo "----"
}


# The source's rows and the mirror's, as the same text: id, order, customer, amount, reason,
# time, restocked, meta.
returns_src() {
    s -c "COPY (SELECT id::text, order_ref, buyer, coalesce(refund::text, 'NULL'), coalesce(why, 'NULL'),
                       coalesce(to_char(returned_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), 'NULL'),
                       coalesce(restocked::text, 'NULL'), coalesce(meta::text, 'NULL')
                FROM shop_returns ORDER BY id::text COLLATE \"C\") TO STDOUT" >"$TMP/returns.src"
}
returns_mirror() {
    psql -X -qAt -d "${1:-$DB}" -c "COPY (SELECT return_id, order_id, customer_id, coalesce(amount::text, 'NULL'), coalesce(reason, 'NULL'),
                       coalesce(to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), 'NULL'),
                       coalesce(restocked::text, 'NULL'), coalesce(meta::text, 'NULL')
                FROM c360.returns ORDER BY return_id COLLATE \"C\") TO STDOUT" >"$TMP/returns.mirror"
}
returns_equal() { returns_src; returns_mirror; cmp -s "$TMP/returns.src" "$TMP/returns.mirror"; }
wait_equal() {
    poll 60 "$1: returns mirror = shop_returns" returns_equal || {
        diff "$TMP/returns.src" "$TMP/returns.mirror" | head -n 10
        die "$1: the returns mirror differs from shop_returns"
    }
    say "  $1: $(wc -l <"$TMP/returns.mirror") returns equal row for row"
}
# the trait as the source rows say it: the sum of refunds later than as_of - 90 days
refunds_expected() {
    local bound
    bound=$(q -c "SELECT c360.window_start(c360.as_of(), '90 days')")
    s -c "SELECT buyer || ':' || sum(refund) FROM shop_returns WHERE returned_at > '$bound'
          AND buyer IN ($(q -c "SELECT string_agg(quote_literal(customer_id), ',') FROM c360.customers"))
          GROUP BY buyer HAVING sum(refund) IS NOT NULL ORDER BY buyer COLLATE \"C\""
}
refunds_profile() {
    q -c "SELECT customer_id || ':' || refunds_90d FROM c360.customer_360 WHERE refunds_90d IS NOT NULL
          ORDER BY customer_id COLLATE \"C\""
}
refunds_match() { [ "$(refunds_expected)" = "$(refunds_profile)" ]; }

fresh_c360

# ---------------------------------------------------------------------------------------------
say "the PostgreSQL source cluster"
SRC_DIR=$(mktemp -d /tmp/c360-retsrc.XXXXXX)
pg_start_free "$SRC_DIR" "$SRC_PORT" "wal_level = logical" "max_replication_slots = 10" \
    "max_wal_senders = 10" "log_min_messages = warning" >/dev/null || die "could not start the source cluster"
SRC_PORT=$PG_PORT   # pg_start_free tries further ports if one is taken meanwhile
psql -X -q -h 127.0.0.1 -p "$SRC_PORT" -U postgres -d postgres -c "CREATE DATABASE shop"
s <<'SQL'
CREATE TABLE shop_returns (
    id bigint PRIMARY KEY,
    order_ref text NOT NULL,
    buyer text NOT NULL,
    refund numeric(10,2),
    why text,
    returned_at timestamptz,
    restocked boolean,
    meta jsonb,
    internal_note text           -- not an input column: not mirrored
);
INSERT INTO shop_returns
SELECT i, 'o' || i, 'c' || (i % 23), (i * 7 % 500) / 4.0, (ARRAY['size', 'color', 'late', NULL])[1 + i % 4],
       now() - (i % 200) * interval '1 day' - i * interval '1 minute', i % 3 = 0,
       CASE WHEN i % 5 = 0 THEN jsonb_build_object('rma', i, 'tags', jsonb_build_array('a', i)) END, 'x'
FROM generate_series(1, 2000) i;
SQL
CONNINFO="host=127.0.0.1 port=$SRC_PORT user=postgres dbname=shop"

q -c "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert',
          'new', jsonb_build_object('customer_id', 'c' || i))))
      FROM generate_series(0, 19) i" >/dev/null   # c20..c22 have returns but no customer row

# ---------------------------------------------------------------------------------------------
say "1. create_input returns; a PostgreSQL source maps shop_returns onto it, columns renamed"
q -c "SELECT c360.create_input('returns',
          'return_id text, order_id text, customer_id text, amount numeric, reason text, created_at timestamptz, restocked boolean, meta jsonb',
          key => 'return_id', customer_column => 'customer_id', time_column => 'created_at')" >/dev/null
q -c "SELECT c360.create_trait('refunds_90d', 'returns', 'sum(amount)', lookback => '90 days')" >/dev/null
q -c "SELECT c360.create_segment('refunders', 'refunds_90d > 4000', ARRAY['customer_id', 'refunds_90d'])" >/dev/null
q -c "BEGIN;
      SELECT c360.create_source('ret_pg', 'postgres-cdc', jsonb_build_object('conninfo', '$CONNINFO'));
      SELECT c360.map_table('ret_pg', 'shop_returns', 'returns',
          '{\"return_id\": \"id\", \"order_id\": \"order_ref\", \"customer_id\": \"buyer\", \"amount\": \"refund\",
            \"reason\": \"why\", \"created_at\": \"returned_at\"}');
      COMMIT;" >/dev/null
poll 60 "ret_pg streaming" eval '[ "$(state_of ret_pg)" = streaming ]' || die "ret_pg does not stream (state $(state_of ret_pg))"
wait_equal "snapshot"

# autocommit statements, then one transaction
s -c "INSERT INTO shop_returns VALUES (5001, 'o5001', 'c1', 99.99, 'broken', now() - interval '1 hour', true, '{\"rma\": \"x\"}', 'y')"
s -c "UPDATE shop_returns SET refund = refund + 1, why = 'changed' WHERE id % 10 = 1"
s -c "UPDATE shop_returns SET buyer = 'c2' WHERE id = 5"           # a move from c5 to c2
s -c "DELETE FROM shop_returns WHERE id % 17 = 0"
s -c "UPDATE shop_returns SET meta = NULL, restocked = NULL WHERE id = 10"
s <<'SQL'
BEGIN;
INSERT INTO shop_returns SELECT 6000 + i, 'o' || i, 'c' || (i % 7), i, 'bulk', now() - i * interval '3 hours', false, NULL, 'z'
FROM generate_series(1, 300) i;
UPDATE shop_returns SET returned_at = returned_at - interval '100 days' WHERE id BETWEEN 6001 AND 6050;
DELETE FROM shop_returns WHERE id BETWEEN 6251 AND 6300;
COMMIT;
SQL
wait_equal "streamed changes"

# ---------------------------------------------------------------------------------------------
say "2. the trait and the segment"
poll 30 "refunds_90d = the source's sums" refunds_match || {
    diff <(refunds_expected) <(refunds_profile) | head
    die "refunds_90d differs from what shop_returns says"
}
members=$(q -c "SELECT count(*) FROM c360.segment_members WHERE segment = 'refunders'")
expected=$(q -c "SELECT count(*) FROM c360.customer_360 WHERE refunds_90d > 4000")
[ "$members" = "$expected" ] && [ "$members" -gt 0 ] && [ "$members" -lt 20 ] ||
    fail "refunders has $members members, the predicate gives $expected (of 20 customers)"
verify_empty || die "verify() is not empty: $(q -c "SELECT * FROM c360.verify() LIMIT 5")"
say "  refunds_90d of $(refunds_profile | wc -l) customers = the source's sums; $members refunders; verify() empty"

# ---------------------------------------------------------------------------------------------
say "3. drop_input refused while mapped and read"
out=$(q -c "SELECT c360.drop_input('returns')" 2>&1 || true)
case $out in
    *"cannot drop input \"returns\""*) ;;
    *) fail "drop_input of a mapped input: $out" ;;
esac
code=$(psql -X -qAt -d "$DB" -c "\\set VERBOSITY sqlstate" -c "SELECT c360.drop_input('returns')" 2>&1 || true)
[ "$code" = "ERROR:  2BP01" ] || fail "drop_input's SQLSTATE is \"$code\", not 2BP01"

# ---------------------------------------------------------------------------------------------
say "4. erase_customer c3; a later return of c3 is dropped, others stream on"
removed=$(q -c "SELECT c360.erase_customer('c3') ->> 'returns'")
[ "$removed" -gt 0 ] || fail "erase_customer removed $removed returns of c3"
[ "$(q -c "SELECT count(*) FROM c360.returns WHERE customer_id = 'c3'")" = 0 ] || fail "c3's returns are still there"
s -c "INSERT INTO shop_returns VALUES (7001, 'o7001', 'c3', 5, 'late', now(), false, NULL, 'n')"
s -c "INSERT INTO shop_returns VALUES (7002, 'o7002', 'c4', 6, 'late', now(), false, NULL, 'n')"
poll 60 "c4's new return mirrored" eval '[ "$(q -c "SELECT count(*) FROM c360.returns WHERE return_id = '"'"'7002'"'"'")" = 1 ]' ||
    die "the return of c4 after the erase did not arrive"
[ "$(q -c "SELECT count(*) FROM c360.returns WHERE customer_id = 'c3'")" = 0 ] || fail "a late return of erased c3 was applied"
[ "$(q -c "SELECT late_dropped FROM c360.erased")" -ge 1 ] || fail "the tombstone counted no late change"
verify_empty || die "verify() is not empty after the erase"

# ---------------------------------------------------------------------------------------------
say "5. pg_dump and restore"
q -c "SELECT c360.pause_source('ret_pg')" >/dev/null
pg_dump -Fc -d "$DB" -f "$TMP/c360.dump" 2>"$TMP/dump.err" || die "pg_dump failed: $(cat "$TMP/dump.err")"
pg_dump -d "$DB" -f "$TMP/c360.sql" 2>"$TMP/dump.err" || die "pg_dump (plain) failed: $(cat "$TMP/dump.err")"
returns_mirror
cp "$TMP/returns.mirror" "$TMP/returns.before"
profile() { psql -X -qAt -d "$1" -c "SELECT customer_id || ':' || coalesce(refunds_90d::text, '-') FROM c360.customer_360 ORDER BY 1"; }
profile "$DB" >"$TMP/profile.before"
psql -X -q -d postgres -c "CREATE DATABASE c360_restored" -c "CREATE DATABASE c360_restored_plain"
pg_restore --single-transaction -d c360_restored "$TMP/c360.dump" 2>"$TMP/restore.err" ||
    die "pg_restore failed: $(head -n 20 "$TMP/restore.err")"
psql -X -q -v ON_ERROR_STOP=1 -d c360_restored_plain -f "$TMP/c360.sql" >/dev/null 2>"$TMP/restore_plain.err" ||
    die "restoring the plain dump failed: $(head -n 20 "$TMP/restore_plain.err")"
for d in c360_restored c360_restored_plain; do
    returns_mirror "$d"
    cmp -s "$TMP/returns.before" "$TMP/returns.mirror" || fail "$d: the returns mirror differs from the dumped one"
    [ "$(psql -X -qAt -d "$d" -c "SELECT key || ' ' || customer_column || ' ' || time_column FROM c360.inputs WHERE name = 'returns'")" = "return_id customer_id created_at" ] ||
        fail "$d: the catalog row of returns did not come back"
    [ "$(psql -X -qAt -d "$d" -c "SELECT count(*) FROM pg_indexes WHERE schemaname = 'c360' AND tablename = 'returns'")" = 3 ] ||
        fail "$d: the indexes of c360.returns did not come back"
    profile "$d" | cmp -s "$TMP/profile.before" - || fail "$d: the profile's refunds_90d differs from the dumped one"
    [ "$(psql -X -qAt -d "$d" -c "SELECT count(*) FROM c360.verify()")" = 0 ] || fail "$d: verify() is not empty"
    psql -X -qAt -d "$d" -v ON_ERROR_STOP=1 -c "SELECT c360.apply_change('returns', 'insert', NULL, '{\"return_id\": \"r-new\", \"customer_id\": \"c1\", \"amount\": 1000, \"created_at\": \"$(date -u +%FT%T)Z\"}')" >/dev/null ||
        fail "$d: applying to the restored input failed"
    [ "$(psql -X -qAt -d "$d" -c "SELECT count(*) FROM c360.verify()")" = 0 ] || fail "$d: verify() is not empty after a change"
done
say "  both restores: catalog, mirror, indexes, trait values equal; verify() empty; the input takes changes"

# ---------------------------------------------------------------------------------------------
say "6. MariaDB: crm.prefs onto an input of every column type (c3, erased, has no rows)"
q -c "SELECT c360.resume_source('ret_pg')" >/dev/null
q -c "SELECT c360.create_input('prefs',
          'pref_id text, customer_id text, opted_in boolean, sends integer, opens bigint, score double precision,
           spend numeric, born date, seen_at timestamptz, extra jsonb, note text',
          'pref_id', 'customer_id', 'seen_at')" >/dev/null
q -c "SELECT c360.create_trait('opted_in', 'prefs', 'bool_or(opted_in)')" >/dev/null
MYDIR=$(mktemp -d /tmp/c360-retmy.XXXXXX)
mysql_start_free "$MYDIR" "$MY_PORT" || die "could not start MariaDB"
my <<'SQL'
CREATE DATABASE crm CHARACTER SET utf8mb4;
CREATE TABLE crm.prefs (
    id varchar(20) PRIMARY KEY,
    client varchar(20) NOT NULL,
    optin tinyint(1),
    sends int,
    opens bigint,
    score double,
    spend decimal(12,2),
    born date,
    seen datetime(6),
    extra JSON,
    note varchar(50)
);
INSERT INTO crm.prefs
SELECT concat('p', seq), concat('c', IF(seq % 20 = 3, 4, seq % 20)), seq % 2, seq, seq * 1000000000, seq / 8, seq * 1.25,
       '1990-01-01' + INTERVAL seq DAY, '2026-01-01 00:00:00.123456' + INTERVAL seq HOUR,
       IF(seq % 4 = 0, NULL, JSON_OBJECT('n', seq, 'tags', JSON_ARRAY('a', seq))), IF(seq % 5 = 0, NULL, 'hi')
FROM crm.seq_1_to_500;
CREATE USER 'c360'@'127.0.0.1' IDENTIFIED BY 'c360pw';
GRANT SELECT ON crm.* TO 'c360'@'127.0.0.1';
GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'c360'@'127.0.0.1';
SQL
# both sides as text in one form: booleans 0/1, doubles and decimals as numbers, json parsed
prefs_src() {
    my -e "SELECT id, client, IFNULL(optin, 'NULL'), IFNULL(sends, 'NULL'), IFNULL(opens, 'NULL'),
                  IFNULL(CAST(score AS DECIMAL(20,6)), 'NULL'), IFNULL(CAST(spend AS DECIMAL(20,6)), 'NULL'),
                  IFNULL(born, 'NULL'), IFNULL(DATE_FORMAT(seen, '%Y-%m-%d %H:%i:%s.%f'), 'NULL'),
                  IFNULL(JSON_EXTRACT(extra, '$.n'), 'NULL'), IFNULL(note, 'NULL')
           FROM crm.prefs" | LC_ALL=C sort >"$TMP/prefs.src"
}
prefs_mirror() {
    q -F $'\t' -c "SELECT pref_id, customer_id, coalesce(opted_in::int::text, 'NULL'), coalesce(sends::text, 'NULL'),
                          coalesce(opens::text, 'NULL'), coalesce(round(score::numeric, 6)::text, 'NULL'),
                          coalesce(round(spend, 6)::text, 'NULL'), coalesce(born::text, 'NULL'),
                          coalesce(to_char(seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), 'NULL'),
                          coalesce(extra ->> 'n', 'NULL'), coalesce(note, 'NULL')
                   FROM c360.prefs" | LC_ALL=C sort >"$TMP/prefs.mirror"
}
prefs_equal() { prefs_src; prefs_mirror; cmp -s "$TMP/prefs.src" "$TMP/prefs.mirror"; }
wait_prefs() {
    poll 60 "$1: prefs mirror = crm.prefs" prefs_equal || {
        diff "$TMP/prefs.src" "$TMP/prefs.mirror" | head -n 10
        die "$1: the prefs mirror differs from crm.prefs"
    }
    say "  $1: $(wc -l <"$TMP/prefs.mirror") prefs equal row for row"
}
MY_OPTS="{\"host\": \"127.0.0.1\", \"port\": $MY_PORT, \"user\": \"c360\", \"password\": \"c360pw\", \"server_id\": 4371}"
q -c "BEGIN;
      SELECT c360.create_source('ret_my', 'mysql-cdc', '$MY_OPTS');
      SELECT c360.map_table('ret_my', 'crm.prefs', 'prefs',
          '{\"pref_id\": \"id\", \"customer_id\": \"client\", \"opted_in\": \"optin\", \"seen_at\": \"seen\"}');
      COMMIT;" >/dev/null
poll 60 "ret_my streaming" eval '[ "$(state_of ret_my)" = streaming ]' || die "ret_my does not stream (state $(state_of ret_my))"
wait_prefs "snapshot"
my -e "UPDATE crm.prefs SET optin = 1 - optin, extra = JSON_OBJECT('n', 7) WHERE id LIKE 'p1%'"
my -e "UPDATE crm.prefs SET client = 'c1' WHERE id = 'p2'"
my -e "DELETE FROM crm.prefs WHERE id LIKE 'p3%'"
my -e "INSERT INTO crm.prefs VALUES ('q1', 'c2', 1, NULL, 9000000000000, -0.5, 0.01, '2000-02-29', '2026-12-01 10:00:00.5', '[1, 2]', 'new')"
wait_prefs "streamed changes"
poll 30 "verify() empty" verify_empty || die "verify() is not empty with prefs"
[ "$(q -c "SELECT extra::text FROM c360.prefs WHERE pref_id = 'q1'")" = "[1, 2]" ] || fail "a JSON array did not arrive as jsonb"

# ---------------------------------------------------------------------------------------------
say "7. Kafka: nested JSON onto an input with a jsonb column"
q -c "SELECT c360.create_input('email_events',
          'message_id text, customer_id text, kind text, campaign jsonb, sent_at timestamptz',
          'message_id', 'customer_id', 'sent_at')" >/dev/null
q -c "SELECT c360.create_trait('emails_opened_30d', 'email_events', 'count(*)', \$\$kind = 'open'\$\$, '30 days')" >/dev/null
broker_start "$TMP" email:2 helpdesk.public.tickets:1 || die "could not start the test Kafka broker"
q -c "BEGIN;
      SELECT c360.create_source('ret_kafka', 'kafka', '{\"bootstrap.servers\": \"$BROKER_ADDR\", \"topic\": \"email\"}');
      SELECT c360.map_table('ret_kafka', 'email', 'email_events',
          '{\"customer_id\": \"recipient.id\", \"kind\": \"event\", \"campaign\": \"campaign\", \"sent_at\": \"ts\"}');
      COMMIT;" >/dev/null
poll 60 "ret_kafka streaming" eval '[ "$(state_of ret_kafka)" = streaming ]' || die "ret_kafka does not stream"
python3 - "$TMP" <<'PY'
import json, sys, datetime
tmp = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
lines, want = [], []
for i in range(1, 301):
    t = (now - datetime.timedelta(hours=5 * i)).strftime('%Y-%m-%dT%H:%M:%SZ')
    v = {"event": ["send", "open", "click"][i % 3], "ts": t, "recipient": {"id": "c%d" % (4 if i % 20 == 3 else i % 20)},
         "campaign": {"n": i, "name": "spring"} if i % 7 else None}   # in jsonb's key order
    if i == 150:
        del v["recipient"]                          # the dead letter: no recipient.id
        lines.append("m%d\t%s" % (i, json.dumps(v)))
        continue
    lines.append("m%d\t%s" % (i, json.dumps(v)))
    want.append("\t".join(["m%d" % i, v["recipient"]["id"], v["event"],
                           json.dumps(v["campaign"], separators=(", ", ": ")) if v["campaign"] else "NULL", t]))
open(tmp + "/email.kv", "w").write("\n".join(lines) + "\n")
open(tmp + "/email.want", "w").write("\n".join(sorted(want)) + "\n")
PY
timeout 60 kcat -P -b "$BROKER_ADDR" -t email -K $'\t' <"$TMP/email.kv" 2>>"$TMP/kcat.err" ||
    die "kcat could not produce: $(tail -n 3 "$TMP/kcat.err")"
email_mirror() {
    q -F $'\t' -c "SELECT message_id, customer_id, kind, coalesce(campaign::text, 'NULL'),
                          to_char(sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                   FROM c360.email_events" | LC_ALL=C sort >"$TMP/email.mirror"
}
email_equal() { email_mirror; cmp -s "$TMP/email.want" "$TMP/email.mirror"; }
poll 60 "email_events mirror = the good messages" email_equal || {
    diff "$TMP/email.want" "$TMP/email.mirror" | head
    die "the email_events mirror differs from the messages"
}
dl=$(q -c "SELECT count(*) || ' ' || bool_and(error LIKE '%recipient.id%') FROM c360.dead_letters WHERE source = 'ret_kafka'")
[ "$dl" = "1 true" ] || fail "ret_kafka's dead letters: $dl, want the one message without recipient.id"
poll 30 "verify() empty" verify_empty || die "verify() is not empty with email_events"
say "  $(wc -l <"$TMP/email.mirror") messages equal, 1 dead letter naming recipient.id, verify() empty"

# ---------------------------------------------------------------------------------------------
say "8. the README's Zendesk example: Debezium change events onto zendesk_tickets"
q -c "SELECT c360.create_input('zendesk_tickets',
          'id text, requester_id text, status text, priority text, satisfaction text, created_at timestamptz, updated_at timestamptz',
          key => 'id', customer_column => 'requester_id', time_column => 'created_at')" >/dev/null
q -c "SELECT c360.create_trait('open_urgent_tickets', 'zendesk_tickets', 'count(*)',
          \$\$status IN ('new', 'open') AND priority = 'urgent'\$\$)" >/dev/null
kc_topic=helpdesk.public.tickets
python3 - "$TMP" <<'PY'
import json, random, sys, datetime
tmp = sys.argv[1]
rng = random.Random(7)
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
fields = [("id", "int64", None), ("requester", "string", None), ("status", "string", None),
          ("priority", "string", None), ("satisfaction", "string", None),
          ("created_at", "int64", "io.debezium.time.MicroTimestamp"),
          ("updated_at", "string", "io.debezium.time.ZonedTimestamp")]
def struct(name):
    return {"type": "struct", "optional": True, "name": name, "field": name,
            "fields": [dict({"type": t, "optional": f != "id", "field": f}, **({"name": n} if n else {}))
                       for f, t, n in fields]}
value_schema = {"type": "struct", "name": "helpdesk.public.tickets.Envelope", "optional": False,
                "fields": [struct("before"), struct("after"),
                           {"type": "struct", "field": "source", "optional": False, "name": "io.debezium.connector.postgresql.Source",
                            "fields": [{"type": "string", "field": "connector", "optional": False}]},
                           {"type": "string", "field": "op", "optional": False},
                           {"type": "int64", "field": "ts_ms", "optional": True}]}
key_schema = {"type": "struct", "name": "helpdesk.public.tickets.Key", "optional": False,
              "fields": [{"type": "int64", "field": "id", "optional": False}]}
rows, lines = {}, []
def key(i):
    return json.dumps({"schema": key_schema, "payload": {"id": i}})
def emit(op, i, before, after):
    lines.append(key(i) + "\t" + json.dumps({"schema": value_schema, "payload": {
        "before": before, "after": after, "source": {"connector": "postgresql"}, "op": op,
        "ts_ms": 1700000000000}}))
def row(i):
    t = now - datetime.timedelta(hours=rng.randint(1, 2000))
    return {"id": i, "requester": "c%d" % rng.choice([0, 1, 2, 4, 5, 6, 7]),
            "status": rng.choice(["new", "open", "pending", "solved"]),
            "priority": rng.choice(["low", "normal", "urgent", None]),
            "satisfaction": rng.choice(["good", "bad", None]),
            "created_at": int(t.timestamp()) * 1000000 + rng.randint(0, 999999),
            "updated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
for i in range(1, 61):                      # the connector's snapshot
    rows[i] = row(i); emit("r", i, None, rows[i])
for n in range(200):                        # then the stream
    i = rng.randint(1, 80)
    if i not in rows:
        rows[i] = row(i); emit("c", i, None, rows[i])
    elif rng.random() < 0.8:                # REPLICA IDENTITY DEFAULT: before is null
        r = dict(rows[i], status=rng.choice(["open", "pending", "solved"]), priority=rng.choice(["urgent", "normal"]))
        rows[i] = r; emit("u", i, None, r)
    else:
        emit("d", i, {"id": i, "requester": None, "status": None, "priority": None, "satisfaction": None,
                      "created_at": None, "updated_at": None}, None)
        lines.append(key(i) + "\t")         # the tombstone: a null value
        del rows[i]
open(tmp + "/zendesk.msgs", "w").write("\n".join(lines) + "\n")
def ts(us):
    return datetime.datetime.fromtimestamp(us // 1000000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + ".%06d" % (us % 1000000)
want = ["\t".join([str(i), r["requester"], r["status"], r["priority"] or "NULL", r["satisfaction"] or "NULL",
                   ts(r["created_at"])]) for i, r in rows.items()]
open(tmp + "/zendesk.want", "w").write("\n".join(sorted(want)) + "\n")
urgent = {}
for r in rows.values():
    if r["status"] in ("new", "open") and r["priority"] == "urgent" and r["requester"] in ("c0", "c1", "c2", "c4", "c5", "c6", "c7"):
        urgent[r["requester"]] = urgent.get(r["requester"], 0) + 1
open(tmp + "/zendesk.urgent", "w").write("\n".join("%s:%d" % kv for kv in sorted(urgent.items())) + "\n")
PY
q -c "BEGIN;
      SELECT c360.create_source('zendesk', 'kafka', '{\"bootstrap.servers\": \"$BROKER_ADDR\", \"topic\": \"$kc_topic\",
                                                      \"format\": \"debezium\", \"startup\": \"earliest\"}');
      SELECT c360.map_table('zendesk', '$kc_topic', 'zendesk_tickets', '{\"requester_id\": \"requester\"}');
      COMMIT;" >/dev/null
timeout 60 kcat -P -b "$BROKER_ADDR" -t "$kc_topic" -K $'\t' -Z <"$TMP/zendesk.msgs" 2>>"$TMP/kcat.err" ||
    die "kcat could not produce: $(tail -n 3 "$TMP/kcat.err")"
zendesk_mirror() {
    q -F $'\t' -c "SELECT id, requester_id, status, coalesce(priority, 'NULL'), coalesce(satisfaction, 'NULL'),
                          to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
                   FROM c360.zendesk_tickets" | LC_ALL=C sort >"$TMP/zendesk.mirror"
}
zendesk_equal() { zendesk_mirror; cmp -s "$TMP/zendesk.want" "$TMP/zendesk.mirror"; }
poll 60 "zendesk_tickets mirror = the rows the change events leave" zendesk_equal || {
    diff "$TMP/zendesk.want" "$TMP/zendesk.mirror" | head
    die "the zendesk_tickets mirror differs from the change events"
}
[ "$(q -c "SELECT count(*) FROM c360.dead_letters WHERE source = 'zendesk'")" = 0 ] || fail "zendesk has dead letters"
got=$(q -c "SELECT customer_id || ':' || open_urgent_tickets FROM c360.customer_360 WHERE open_urgent_tickets > 0 ORDER BY 1")
[ "$got" = "$(grep . "$TMP/zendesk.urgent" || true)" ] || fail "open_urgent_tickets: got '$got', want '$(cat "$TMP/zendesk.urgent")'"
poll 30 "verify() empty" verify_empty || die "verify() is not empty with zendesk_tickets"
say "  $(wc -l <"$TMP/zendesk.mirror") tickets equal the change events' rows, open_urgent_tickets exact, verify() empty"

if [ ${#failures[@]} -gt 0 ]; then
    echo "${#failures[@]} check(s) failed"
    exit 1
fi
say "PASS"
