#!/usr/bin/env bash
# bench/mysql.sh: the mysql-cdc source on a throwaway PostgreSQL cluster and MariaDB.
#   1. snapshot rows/s: CUSTOMERS customers and 2x as many tickets, from create_source to
#      streaming (the snapshot commits in one local transaction)
#   2. streaming changes/s: random CRM changes written while the source is paused, then
#      applied from the binlog as fast as it goes (row changes counted in the binlog)
#   3. freshness at RATE changes/s: loyalty tier changes, one autocommit statement each,
#      each on a customer changed once; per change, MariaDB's statement time (stored in
#      customers.last_updated) to the commit of the transaction that wrote its profile row
#      (track_commit_timestamp); p50/p99/max, target p99 < 200 ms
# Knobs (environment): MYSQL_BENCH_CUSTOMERS (100000), MYSQL_BENCH_CHANGES (50000),
# MYSQL_BENCH_RATE (5000), MYSQL_BENCH_SECONDS (15), MYSQL_BENCH_PG_PORT (54338),
# MYSQL_BENCH_MY_PORT (33338); MYSQL_BENCH_KEEP=1 leaves both servers running.
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh
PG_PORT=${MYSQL_BENCH_PG_PORT:-54338}
MY_PORT=${MYSQL_BENCH_MY_PORT:-33338}
CUSTOMERS=${MYSQL_BENCH_CUSTOMERS:-100000}
TICKETS=$((CUSTOMERS * 2))
CHANGES=${MYSQL_BENCH_CHANGES:-50000}
RATE=${MYSQL_BENCH_RATE:-5000}
SECONDS_AT_RATE=${MYSQL_BENCH_SECONDS:-15}
KEEP=${MYSQL_BENCH_KEEP:-0}
DB=bench_mysql

make -s >/dev/null && make -s install >/dev/null

DIR=$(mktemp -d /tmp/c360-mysqlbench.XXXXXX)
chmod 755 "$DIR"   # the PostgreSQL cluster inside runs as the postgres user
cleanup() {
    if [ "$KEEP" = 1 ]; then
        echo "left running: psql -h 127.0.0.1 -p $PG_PORT -U postgres -d $DB; mariadb -h 127.0.0.1 -P $MY_PORT -u root;" \
            "stop: . test/servers.sh && pg_stop $DIR/pg && mysql_stop $DIR/my && rm -rf $DIR" >&2
        return
    fi
    pg_stop "$DIR/pg"
    mysql_stop "$DIR/my"
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

q() { pg_psql "$PG_PORT" -d "$DB" -qAt "$@"; }
my() { mysql_cli "$MY_PORT" -N -B "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
state() { q -c "SELECT state FROM c360.source_status WHERE name = 'crm'"; }
has_customer() { [ "$(q -c "SELECT count(*) FROM c360.customers WHERE customer_id = '$1'")" = 1 ]; }
wait_for() { # SECONDS CMD...: poll every 50 ms
    local limit=$1; shift
    local end
    end=$(awk -v n="$(now)" -v l="$limit" 'BEGIN { printf "%.0f", n + l }')
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || { echo "gave up waiting for: $*" >&2; exit 1; }
        sleep 0.05
    done
}
streaming() { [ "$(state)" = streaming ]; }
worker_gone() {
    [ -z "$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'c360 source'")" ]
}

pg_start "$DIR/pg" "$PG_PORT" \
    "shared_preload_libraries = 'customer360'" \
    "c360.database = '$DB'" \
    "c360.tick_interval = 0" \
    "track_commit_timestamp = on" \
    "shared_buffers = 512MB" \
    "max_wal_size = 8GB" \
    "checkpoint_timeout = 30min" \
    "timezone = 'UTC'"
pg_psql "$PG_PORT" -d postgres -c "CREATE DATABASE $DB" >/dev/null
q -c "CREATE EXTENSION customer360" >/dev/null
mysql_start "$DIR/my" "$MY_PORT"
mysql_cli "$MY_PORT" <test/mysql_crm.sql
cc -O2 -o "$DIR/mysql_decode" test/mysql_decode.c src/decode/binlog_decode.c -Isrc -I/usr/include/mariadb -lmariadb

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
say "loading $CUSTOMERS customers and $TICKETS tickets into MariaDB (untimed)"
python3 test/mysql_changes.py load "$CUSTOMERS" "$TICKETS" | mysql_cli "$MY_PORT" >/dev/null
rows=$((CUSTOMERS + TICKETS))

say "1. snapshot"
t0=$(now)
q >/dev/null <<SQL
BEGIN;
SELECT c360.create_source('crm', 'mysql-cdc', '{"host": "127.0.0.1", "port": $MY_PORT, "user": "c360",
    "password": "c360pw", "server_id": 4201}');
SELECT c360.map_table('crm', 'crm_db.customers', 'customers');
SELECT c360.map_table('crm', 'crm_db.support_tickets', 'support_tickets');
COMMIT;
SQL
wait_for 1800 streaming
t1=$(now)
snapshot_secs=$(secs "$t0" "$t1")
snapshot_rate=$(rate "$rows" "$snapshot_secs")
say "   $rows rows in $snapshot_secs s: $snapshot_rate rows/s"

say "2. streaming: $CHANGES changes written while paused, then applied"
q -c "SELECT c360.pause_source('crm')" >/dev/null
wait_for 60 worker_gone
read -r file pos < <(my -e "SHOW MASTER STATUS" | awk '{print $1, $2}')
python3 test/mysql_changes.py changes "$CHANGES" 7 "$CUSTOMERS" "$TICKETS" | mysql_cli "$MY_PORT" >/dev/null
my -e "INSERT INTO crm_db.customers (customer_id, email) VALUES ('c_marker1', 'm@x')"
row_changes=$("$DIR/mysql_decode" count 127.0.0.1 "$MY_PORT" root "$file" "$pos" crm_db.customers crm_db.support_tickets)
t0=$(now)
q -c "SELECT c360.resume_source('crm')" >/dev/null
wait_for 1800 has_customer c_marker1
t1=$(now)
stream_secs=$(secs "$t0" "$t1")
stream_rate=$(rate "$row_changes" "$stream_secs")
say "   $row_changes row changes in $stream_secs s (worker start included): $stream_rate changes/s"

say "3. freshness at $RATE changes/s for $SECONDS_AT_RATE s"
total=$((RATE * SECONDS_AT_RATE))
[ "$total" -le "$CUSTOMERS" ] || total=$CUSTOMERS
# Paced: every 10 ms the statements due by then; each customer is changed once, so its
# profile row's xmin is the transaction that applied this very change.
python3 - "$total" "$RATE" <<'PY' | mysql_cli "$MY_PORT" >/dev/null
import sys, time
total, rate = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout
start = time.monotonic()
sent = 0
while sent < total:
    due = min(total, int((time.monotonic() - start) * rate) + 1)
    while sent < due:
        sent += 1
        out.write(f"UPDATE crm_db.customers SET loyalty_tier = IF(loyalty_tier = 'platinum', 'bronze', 'platinum'), "
                  f"last_updated = NOW(6) WHERE customer_id = 'c{sent}';\n")
    out.flush()
    time.sleep(0.01)
PY
t_end=$(now)
my -e "INSERT INTO crm_db.customers (customer_id, email) VALUES ('c_marker2', 'm@x')"
wait_for 600 has_customer c_marker2
read -r achieved p50 p99 pmax n < <(q -F ' ' <<SQL
SELECT round($total / extract(epoch FROM max(c.last_updated) - min(c.last_updated))),
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY f)), round(percentile_cont(0.99) WITHIN GROUP (ORDER BY f)),
       round(max(f)), count(*)
FROM (SELECT c.last_updated,
             extract(epoch FROM pg_xact_commit_timestamp(p.xmin) - c.last_updated) * 1000 AS f
      FROM c360.customers c JOIN c360.customer_360 p USING (customer_id)
      WHERE c.customer_id ~ '^c[0-9]+$'
        AND substr(c.customer_id, 2)::int <= $total) c;
SQL
)
say "   $n changes at $achieved changes/s: freshness p50 $p50 ms, p99 $p99 ms, max $pmax ms"
verify=$(q -c "SELECT count(*) FROM c360.verify()")

cat <<EOF

mysql-cdc source ($(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; MariaDB $(my -e "SELECT VERSION()") and PostgreSQL on one machine)
  snapshot             $rows rows in $snapshot_secs s           $snapshot_rate rows/s
  streaming            $row_changes changes in $stream_secs s        $stream_rate changes/s
  freshness at $achieved/s   p50 $p50 ms   p99 $p99 ms   max $pmax ms   (target p99 < 200 ms; $n changes)
  verify()             $verify rows differ
EOF
