#!/usr/bin/env bash
# test/t_mysql_source.sh: the mysql-cdc source against a real MariaDB started here.
#   1. the binlog decoder on every column type, against SELECT (test/mysql_decode.c)
#   2. snapshot of 50,000 customers and 100,000 tickets while writes go on
#   3. 30,000 random changes with kill -9 of the worker (5 times), a MariaDB restart and
#      binlog rotations in the middle: mirror = source, changes applied = row changes in the
#      binlog (nothing lost, nothing twice), verify() empty
#   4. types through the worker, an uncastable value into dead letters, drift cases, a
#      purged binlog, a wrong binlog_format, a missing privilege: each a clear error
# Runs against the cluster of test/run.sh (PGHOST/PGPORT/PGUSER), workers in c360_workers.
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh
. test/crm_compare.sh

DB=c360_workers
: "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
export PGHOST PGPORT PGUSER
MY_PORT=${MY_PORT:-33310}    # mysql_start_free takes the first free one from there
CUSTOMERS=${CUSTOMERS:-50000}
TICKETS=${TICKETS:-100000}
CHANGES=${CHANGES:-30000}
KILLS=${KILLS:-5}

MYDIR=$(mktemp -d /tmp/c360-mysql.XXXXXX)
TOOL=$MYDIR/mysql_decode
START=$(date +%s)

cleanup() {
    local rc=$?
    set +e
    for s in crm types_src drift_src purge_src fmt_src priv_src; do
        q -c "SELECT c360.drop_source('$s') FROM c360.sources WHERE name = '$s'" >/dev/null 2>&1
    done
    q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" >/dev/null 2>&1
    [ -n "${writer:-}" ] && kill "$writer" 2>/dev/null
    mysql_stop "$MYDIR"
    if [ "$rc" -eq 0 ]; then rm -rf "$MYDIR"; else
        echo "== MariaDB log (tail) =="; tail -n 20 "$MYDIR/server.log" 2>/dev/null
        echo "kept $MYDIR"
    fi
}
trap cleanup EXIT

q() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
my() { mysql_cli "$MY_PORT" -N -B "$@"; }
die() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "[$(( $(date +%s) - START ))s] $*"; }

# poll SECONDS DESC CMD...: run CMD until it succeeds, every 0.2 s, for at most SECONDS.
poll() {
    local secs=$1 desc=$2; shift 2
    local i
    for ((i = 0; i < secs * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    q -c "SELECT name, state, position, changes_applied, last_error FROM c360.source_status" || true
    die "gave up after $secs s waiting for: $desc"
}

state_is() { [ "$(q -c "SELECT state FROM c360.source_status WHERE name = '$1'")" = "$2" ]; }
# wait_streaming SECONDS NAME: poll until streaming; an error state fails at once.
wait_streaming() {
    local i st
    for ((i = 0; i < $1 * 5; i++)); do
        st=$(q -c "SELECT state FROM c360.source_status WHERE name = '$2'" 2>/dev/null || true)
        [ "$st" = streaming ] && return 0
        [ "$st" = error ] && die "source $2 is in error: $(q -c "SELECT last_error FROM c360.source_status WHERE name = '$2'")"
        sleep 0.2
    done
    die "gave up after $1 s waiting for $2 to stream"
}
worker_pid() {
    q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 source'
          AND application_name = '$1' AND datname = '$DB'" 2>/dev/null | head -n 1
}
worker_gone() { [ -z "$(worker_pid "$1")" ] && q -c "SELECT 1" >/dev/null; }
worker_replaced() { local p; p=$(worker_pid "$1"); [ -n "$p" ] && [ "$p" != "$2" ]; }
has_customer() { [ "$(q -c "SELECT count(*) FROM c360.customers WHERE customer_id = '$1'")" = 1 ]; }
verify_empty() {
    local n
    n=$(q -c "SELECT count(*) FROM c360.verify()")
    [ "$n" = 0 ] || { q -c "SELECT * FROM c360.verify() LIMIT 10"; die "verify() returned $n rows ($1)"; }
}
changes_applied() { q -c "SELECT changes_applied FROM c360.source_status WHERE name = '$1'"; }
master_pos() { my -e "SHOW MASTER STATUS" | awk '{print $1, $2}'; }
# The committed binlog position of a source, as file:pos.
source_position() {
    q -c "SELECT max(position) FILTER (WHERE part = 'file') || ':' || max(position) FILTER (WHERE part = 'pos')
          FROM c360.source_positions WHERE source = '$1'"
}
source_at_master() { [ "$(source_position "$1")" = "$(master_pos | tr ' ' ':')" ]; }

# A marker row written after everything else: once it is in the mirror, so is all before it.
marker=0
caught_up() {
    marker=$((marker + 1))
    my -e "INSERT INTO crm_db.customers (customer_id, email) VALUES ('c_marker$marker', 'm@x')"
    poll "${1:-180}" "marker c_marker$marker in the mirror" has_customer "c_marker$marker"
}

# The source's tables and the mirrors, as the same sorted text.
dump_mysql() { crm_dump_remote crm_db "$MYDIR/customers.my" "$MYDIR/tickets.my"; }
dump_pg() { crm_dump_mirror "$MYDIR/customers.pg" "$MYDIR/tickets.pg" "customer_id ~ '^[cn]'"; }
mirror_equals_source() {
    dump_mysql
    dump_pg
    local t
    for t in customers tickets; do
        if ! cmp -s "$MYDIR/$t.my" "$MYDIR/$t.pg"; then
            echo "$t: MariaDB $(wc -l <"$MYDIR/$t.my") rows, mirror $(wc -l <"$MYDIR/$t.pg") rows; first differences:"
            diff "$MYDIR/$t.my" "$MYDIR/$t.pg" | head -n 10
            die "mirror of $t differs from MariaDB ($1)"
        fi
    done
    echo "  mirror = MariaDB: $(wc -l <"$MYDIR/customers.my") customers, $(wc -l <"$MYDIR/tickets.my") tickets ($1)"
}

# Row changes of the CRM tables in the binlog from FILE POS to its end.
binlog_changes() { "$TOOL" count 127.0.0.1 "$MY_PORT" root "$1" "$2" crm_db.customers crm_db.support_tickets; }

# apply SQL from stdin in MariaDB
feed() { mysql_cli "$MY_PORT" --batch >/dev/null; }

create_crm_source() {
    q <<SQL >/dev/null
BEGIN;
SELECT c360.create_source('crm', 'mysql-cdc', '{"host": "127.0.0.1", "port": $MY_PORT, "user": "c360",
    "password": "c360pw", "server_id": 4101}');
SELECT c360.map_table('crm', 'crm_db.customers', 'customers');
SELECT c360.map_table('crm', 'crm_db.support_tickets', 'support_tickets');
COMMIT;
SQL
}

mysql_start_free "$MYDIR" "$MY_PORT" || die "MariaDB did not start"
step "MariaDB on 127.0.0.1:$MY_PORT in $MYDIR"
cc -O2 -Wall -o "$TOOL" test/mysql_decode.c src/decode/binlog_decode.c -Isrc -I/usr/include/mariadb -lmariadb
mysql_cli "$MY_PORT" <test/mysql_crm.sql

if [ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" = 0 ]; then
    psql -X -q -d postgres -c "CREATE DATABASE $DB"
fi
q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" 2>/dev/null
q -c "CREATE EXTENSION customer360"

step "1. the binlog decoder on every column type, compared with SELECT"
read -r file pos < <(master_pos)
mysql_cli "$MY_PORT" <test/mysql_types.sql
"$TOOL" 127.0.0.1 "$MY_PORT" root "$file" "$pos" crm_db all_types | tail -n 20
"$TOOL" 127.0.0.1 "$MY_PORT" root "$file" "$pos" crm_db all_types >/dev/null ||
    die "decoded values differ from SELECT"

step "2. snapshot of $CUSTOMERS customers and $TICKETS tickets while writes go on"
python3 test/mysql_changes.py load "$CUSTOMERS" "$TICKETS" | feed
python3 test/mysql_changes.py changes 3000 1 "$CUSTOMERS" "$TICKETS" >"$MYDIR/during.sql"
feed <"$MYDIR/during.sql" &
writer=$!
create_crm_source
poll 60 "the crm source to start its snapshot" worker_pid crm
wait "$writer"
writer=
wait_streaming 300 crm
caught_up
mirror_equals_source "after the snapshot"
verify_empty "after the snapshot"
[ "$(q -c "SELECT dead_letters FROM c360.source_status WHERE name = 'crm'")" = 0 ] ||
    die "dead letters after the snapshot"

step "3. $CHANGES random changes; kill -9 of the worker $KILLS times, a MariaDB restart, rotations"
read -r file0 pos0 < <(master_pos)
applied0=$(changes_applied crm)
chunks=10
per=$((CHANGES / chunks))
for ((c = 1; c <= chunks; c++)); do
    python3 test/mysql_changes.py changes "$per" $((100 + c)) "$CUSTOMERS" "$TICKETS" >"$MYDIR/chunk.sql"
    feed <"$MYDIR/chunk.sql" &
    writer=$!
    if [ "$c" -le "$KILLS" ]; then
        sleep 0.$((RANDOM % 9 + 1))
        pid=$(worker_pid crm)
        [ -n "$pid" ] || die "no crm worker to kill in chunk $c"
        behind=$(source_position crm)
        at=$(master_pos | tr " " ":")
        kill -9 "$pid"
        poll 60 "the crm worker back after kill -9 of $pid" worker_replaced crm "$pid"
        echo "  chunk $c: kill -9 of worker $pid at $behind (MariaDB at $at), back as $(worker_pid crm)"
    fi
    if [ $((c % 3)) = 0 ]; then
        my -e "FLUSH BINARY LOGS"
        echo "  chunk $c: FLUSH BINARY LOGS -> $(master_pos)"
    fi
    if [ "$c" = 7 ]; then
        # a restart while the chunk is being written and streamed: the writer's connection
        # drops with it (its uncommitted statement rolls back), the source loses its stream
        sleep 0.2
        behind=$(source_position crm)
        at=$(master_pos | tr " " ":")
        mysql_stop "$MYDIR"
        wait "$writer" || true
        writer=
        mysql_start "$MYDIR" "$MY_PORT"
        echo "  chunk $c: MariaDB restarted mid-chunk; the source had reached $behind of $at"
        # what the restart cut off is made up with a fresh chunk, so that at least
        # $CHANGES statements ran in all
        python3 test/mysql_changes.py changes "$per" $((200 + c)) "$CUSTOMERS" "$TICKETS" | feed
    fi
    if [ -n "$writer" ]; then
        wait "$writer"
        writer=
    fi
done
caught_up 300
mirror_equals_source "after $CHANGES changes and the faults"
verify_empty "after $CHANGES changes and the faults"
applied1=$(changes_applied crm)
expected=$(binlog_changes "$file0" "$pos0")
echo "  changes applied $((applied1 - applied0)), row changes in the binlog $expected"
[ $((applied1 - applied0)) = "$expected" ] ||
    die "applied $((applied1 - applied0)) changes for $expected row changes in the binlog (lost or twice)"
[ "$(q -c "SELECT dead_letters FROM c360.source_status WHERE name = 'crm'")" = 0 ] ||
    die "dead letters in the random changes"
q -c "SELECT name, state, position, changes_applied FROM c360.source_status WHERE name = 'crm'"

step "4a. types through the worker (snapshot and stream); an uncastable value into dead letters"
my -e "SET sql_mode = '';
CREATE TABLE crm_db.type_customers (
    customer_id varchar(20) PRIMARY KEY, email bigint unsigned, first_name decimal(30,10),
    last_name datetime(6), phone enum('x', 'y', 'zz'), acquisition_channel set('web', 'ads', 'store'),
    loyalty_tier double, signup_date timestamp(3) NULL DEFAULT NULL, last_updated date,
    ignored_col text) CHARACTER SET latin1;
INSERT INTO crm_db.type_customers VALUES
    ('ty1', 18446744073709551615, -12345678901234567890.0123456789, '2024-02-29 23:59:59.123456', 'zz',
     'web,store', 0.5, '2038-01-19 03:14:07.999', '2024-12-31', 'x'),
    ('ty2', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('tybad1', 1, 1, '2024-01-01', 'x', '', 1, '0000-00-00 00:00:00', '2024-01-01', NULL);"
q >/dev/null <<SQL
BEGIN;
SELECT c360.create_source('types_src', 'mysql-cdc', '{"host": "127.0.0.1", "port": $MY_PORT, "user": "c360",
    "password": "c360pw", "server_id": 4102}');
SELECT c360.map_table('types_src', 'crm_db.type_customers', 'customers');
COMMIT;
SQL
wait_streaming 120 types_src
my -e "SET sql_mode = '';
INSERT INTO crm_db.type_customers VALUES
    ('ty3', 0, 0.0000000001, '1000-01-01 00:00:00', 'x', 'ads', -1.25e-3, '1970-01-01 00:00:01.001', '1000-01-01', 'é'),
    ('tybad2', 2, 2, '2024-01-01', 'y', 'web', 2, '0000-00-00 00:00:00', '2024-01-01', NULL),
    ('ty4', 42, 3.5, '2024-06-01 12:00:00', 'y', 'web,ads,store', 1234.5, '2024-06-01 12:00:00.5', '2024-06-01', NULL);
UPDATE crm_db.type_customers SET phone = 'y', email = 7 WHERE customer_id = 'ty2';"
poll 60 "ty4 in the mirror" has_customer ty4
my -e "SET time_zone = '+00:00';
    SELECT customer_id, IFNULL(email, 'NULL'), IFNULL(first_name, 'NULL'), IFNULL(last_name, 'NULL'),
           IFNULL(phone, 'NULL'), IFNULL(acquisition_channel, 'NULL'), IFNULL(loyalty_tier + 0, 'NULL'),
           IFNULL(DATE_FORMAT(signup_date, '%Y-%m-%d %H:%i:%s.%f'), 'NULL'),
           IFNULL(DATE_FORMAT(last_updated, '%Y-%m-%d 00:00:00.000000'), 'NULL')
    FROM crm_db.type_customers WHERE customer_id NOT LIKE 'tybad%'" | LC_ALL=C sort >"$MYDIR/types.my"
q -F $'\t' -c "SELECT customer_id, coalesce(email, 'NULL'), coalesce(first_name, 'NULL'), coalesce(last_name, 'NULL'),
           coalesce(phone, 'NULL'), coalesce(acquisition_channel, 'NULL'), coalesce(loyalty_tier::float8::text, 'NULL'),
           coalesce(to_char(signup_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), 'NULL'),
           coalesce(to_char(last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), 'NULL')
    FROM c360.customers WHERE customer_id LIKE 'ty%'" | LC_ALL=C sort >"$MYDIR/types.pg"
diff "$MYDIR/types.my" "$MYDIR/types.pg" || die "typed values differ between MariaDB and the mirror"
echo "  $(wc -l <"$MYDIR/types.pg") rows of typed values equal MariaDB's"
n=$(q -c "SELECT count(*) FROM c360.dead_letters WHERE source = 'types_src' AND payload LIKE '%tybad%'")
[ "$n" = 2 ] || { q -c "SELECT * FROM c360.dead_letters"; die "expected 2 dead letters (snapshot and stream), got $n"; }
q -c "SELECT position, left(error, 90) FROM c360.dead_letters WHERE source = 'types_src'"
verify_empty "after the typed rows"

step "4b. drift: a nullable column added streams on; a dropped or retyped mapped column stops the source"
my -e "CREATE TABLE crm_db.drift_t (customer_id varchar(20) PRIMARY KEY, email varchar(50),
           phone varchar(20), signup_date datetime);
       INSERT INTO crm_db.drift_t VALUES ('d1', 'd1@x', '1', '2024-01-01 00:00:00');"
q >/dev/null <<SQL
BEGIN;
SELECT c360.create_source('drift_src', 'mysql-cdc', '{"host": "127.0.0.1", "port": $MY_PORT, "user": "c360",
    "password": "c360pw", "server_id": 4103}');
SELECT c360.map_table('drift_src', 'crm_db.drift_t', 'customers');
COMMIT;
SQL
poll 120 "d1 in the mirror" has_customer d1
my -e "ALTER TABLE crm_db.drift_t ADD COLUMN nickname varchar(20) NULL;
       INSERT INTO crm_db.drift_t VALUES ('d2', 'd2@x', '2', '2024-01-02 00:00:00', 'nick');"
poll 60 "d2 in the mirror after ADD COLUMN" has_customer d2
state_is drift_src streaming || die "drift_src stopped after a nullable column was added"
echo "  ADD COLUMN nickname: still streaming"
my -e "ALTER TABLE crm_db.drift_t DROP COLUMN phone"
poll 60 "drift_src past the ALTER TABLE" source_at_master drift_src
pos_before=$(source_position drift_src)
my -e "INSERT INTO crm_db.drift_t VALUES ('d3', 'd3@x', '2024-01-03 00:00:00', NULL)"
poll 60 "drift_src in error after DROP COLUMN phone" state_is drift_src error
err=$(q -c "SELECT last_error FROM c360.source_status WHERE name = 'drift_src'")
echo "  DROP COLUMN phone: error: $err"
[[ $err == *phone*dropped* ]] || die "unclear drift error: $err"
has_customer d3 && die "d3 applied although the source stopped"
[ "$(source_position drift_src)" = "$pos_before" ] ||
    die "the position moved from $pos_before to $(source_position drift_src) although the source stopped on drift"
q -c "SELECT c360.resume_source('drift_src')" >/dev/null
poll 60 "d3 in the mirror after resume_source" has_customer d3
echo "  resume_source (the loss accepted): d3 applied"
my -e "ALTER TABLE crm_db.drift_t MODIFY signup_date varchar(40)"
poll 60 "drift_src past the ALTER TABLE" source_at_master drift_src
pos_before=$(source_position drift_src)
my -e "INSERT INTO crm_db.drift_t VALUES ('d4', 'd4@x', 'yesterday', NULL)"
poll 60 "drift_src in error after MODIFY signup_date varchar" state_is drift_src error
err=$(q -c "SELECT last_error FROM c360.source_status WHERE name = 'drift_src'")
echo "  MODIFY signup_date varchar(40): error: $err"
[[ $err == *signup_date*varchar* ]] || die "unclear retype error: $err"
has_customer d4 && die "d4 applied although the source stopped"
[ "$(source_position drift_src)" = "$pos_before" ] ||
    die "the position moved although the source stopped on a retyped column"
q -c "SELECT c360.drop_source('drift_src')" >/dev/null

step "4c. a purged binlog, a wrong binlog_format and a missing privilege: clear errors"
my -e "CREATE TABLE crm_db.purge_t (customer_id varchar(20) PRIMARY KEY, email varchar(50));
       INSERT INTO crm_db.purge_t VALUES ('p1', 'p1@x');"
q >/dev/null <<SQL
BEGIN;
SELECT c360.create_source('purge_src', 'mysql-cdc', '{"host": "127.0.0.1", "port": $MY_PORT, "user": "c360",
    "password": "c360pw", "server_id": 4104}');
SELECT c360.map_table('purge_src', 'crm_db.purge_t', 'customers');
COMMIT;
SQL
poll 120 "p1 in the mirror" has_customer p1
q -c "SELECT c360.pause_source('purge_src')" >/dev/null
poll 30 "purge_src paused" state_is purge_src paused
poll 30 "the purge_src worker gone" worker_gone purge_src
caught_up
my -e "INSERT INTO crm_db.purge_t VALUES ('p2', 'p2@x'); FLUSH BINARY LOGS; FLUSH BINARY LOGS;"
current=$(master_pos | awk '{print $1}')
# a dump thread of a client that is gone holds its file until its next heartbeat fails
purged_to() { my -e "PURGE BINARY LOGS TO '$1'" && [ "$(my -e "SHOW BINARY LOGS" | head -n 1 | cut -f1)" = "$1" ]; }
poll 30 "PURGE BINARY LOGS TO '$current'" purged_to "$current"
q -c "SELECT c360.resume_source('purge_src')" >/dev/null
poll 60 "purge_src in error after its binlog was purged" state_is purge_src error
err=$(q -c "SELECT last_error FROM c360.source_status WHERE name = 'purge_src'")
echo "  purged: $err"
[[ $err == *"no longer on the MySQL server"*purged* ]] || die "unclear purged-binlog error: $err"
has_customer p2 && die "p2 applied from a purged binlog"
[ "$(q -c "SELECT phase FROM c360.sources WHERE name = 'purge_src'")" = error ] || die "purge_src not in error"
q -c "SELECT c360.drop_source('purge_src')" >/dev/null

my -e "SET GLOBAL binlog_format = 'STATEMENT'"
q >/dev/null <<SQL
BEGIN;
SELECT c360.create_source('fmt_src', 'mysql-cdc', '{"host": "127.0.0.1", "port": $MY_PORT, "user": "c360",
    "password": "c360pw", "server_id": 4105}');
SELECT c360.map_table('fmt_src', 'crm_db.purge_t', 'customers');
COMMIT;
SQL
poll 60 "fmt_src in error with binlog_format=STATEMENT" state_is fmt_src error
my -e "SET GLOBAL binlog_format = 'ROW'"
err=$(q -c "SELECT last_error FROM c360.source_status WHERE name = 'fmt_src'")
echo "  binlog_format: $err"
[[ $err == *binlog_format=STATEMENT*binlog_format=ROW* ]] || die "unclear binlog_format error: $err"
q -c "SELECT c360.drop_source('fmt_src')" >/dev/null

my -e "CREATE USER 'noslave'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT SELECT ON crm_db.* TO 'noslave'@'127.0.0.1';"
q >/dev/null <<SQL
BEGIN;
SELECT c360.create_source('priv_src', 'mysql-cdc', '{"host": "127.0.0.1", "port": $MY_PORT, "user": "noslave",
    "password": "pw", "server_id": 4106}');
SELECT c360.map_table('priv_src', 'crm_db.purge_t', 'customers');
COMMIT;
SQL
poll 60 "priv_src in error without REPLICATION SLAVE" state_is priv_src error
err=$(q -c "SELECT last_error FROM c360.source_status WHERE name = 'priv_src'")
echo "  privilege: $err"
[[ $err == *"Access denied"* ]] || die "the server's error is not shown verbatim: $err"
q -c "SELECT c360.drop_source('priv_src')" >/dev/null

step "the crm source is still streaming and exact"
state_is crm streaming || die "crm is not streaming at the end"
caught_up
mirror_equals_source "at the end"
verify_empty "at the end"

step "TRUNCATE of a mapped table empties its input"
my -e "TRUNCATE TABLE crm_db.support_tickets"
caught_up
[ "$(q -c "SELECT count(*) FROM c360.support_tickets")" = 0 ] || die "tickets left after TRUNCATE"
mirror_equals_source "after TRUNCATE"
verify_empty "after TRUNCATE"

step "no password in the server log"
# Every source above connected with "password": "c360pw" (priv_src with "pw", and failed):
# connection errors and state changes are logged, the options never.
if [ -n "${C360_SERVER_LOG:-}" ]; then
    [ -s "$C360_SERVER_LOG" ] || die "server log $C360_SERVER_LOG is empty"
    grep -q 'c360 source "crm"' "$C360_SERVER_LOG" || die "the server log has no line of source crm"
    ! grep -q 'c360pw' "$C360_SERVER_LOG" || die "the password is in the server log: $(grep -m1 c360pw "$C360_SERVER_LOG")"
else
    echo "  C360_SERVER_LOG not set (run through test/run.sh): skipped"
fi
step "ok"
