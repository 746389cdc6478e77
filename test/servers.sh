# test/servers.sh: start and stop throwaway servers on loopback ports, for tests, demo and
# bench.  Source it, then:
#   pg_start DIR PORT [postgresql.conf line]...   initdb DIR/data if needed, start, wait
#   pg_stop DIR                                   fast shutdown, if running
#   pg_psql PORT [psql args]...                   psql as postgres on 127.0.0.1:PORT
#   pg_discard DIR [KEEP_LOG]                     stop, keep the server log at KEEP_LOG, rm DIR
#   free_port PORT                                the first port from PORT nobody listens on
#   broker_start DIR TOPIC:PARTS...               the test Kafka broker (see below)
#   broker_stop                                   stop it
# initdb and postgres refuse to run as root, so as root they run as the postgres OS user
# (created by the postgresql-15 package).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
    local dir=$1 port=$2; shift 2
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log"; return 1; }
        {
            echo "port = $port"
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$dir'"
            echo "fsync = off"
            echo "max_worker_processes = 32"
            for line in "$@"; do echo "$line"; done
        } >>"$dir/data/postgresql.conf"
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
        { tail -n 30 "$dir/server.log"; return 1; }
}

pg_stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# A throwaway cluster's end: its data is of little use afterwards, but a failed run's server
# log is evidence, so with KEEP_LOG it is copied there first.
pg_discard() {
    local dir=$1 keep=${2:-}
    [ -n "$dir" ] || return 0
    pg_stop "$dir"
    if [ -n "$keep" ] && [ -f "$dir/server.log" ]; then
        cp "$dir/server.log" "$keep" && echo "server log of $dir kept in $keep"
    fi
    rm -rf "$dir"
}

pg_psql() {
    local port=$1; shift
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# MariaDB, for the mysql-cdc source:
#   mysql_start DIR PORT [my.cnf line]...   mariadb-install-db into DIR/data if needed, start
#                                           mariadbd on 127.0.0.1:PORT with a ROW binlog, wait
#   mysql_stop DIR                          shut down, if running
#   mysql_cli PORT [mariadb args]...        the mariadb client as root on 127.0.0.1:PORT
# The binlog is what the source reads: ROW format, FULL row images and FULL row metadata
# (column names, signedness, ENUM/SET labels in every TABLE_MAP event).
MYSQL_BIN=${MYSQL_BIN:-/usr/sbin}

mysql_start() {
    local dir=$1 port=$2; shift 2
    local user i
    user=$(id -un)
    mkdir -p "$dir"
    if [ ! -f "$dir/my.cnf" ]; then
        {
            echo "[mariadbd]"
            echo "datadir = $dir/data"
            echo "socket = $dir/mysql.sock"
            echo "pid-file = $dir/mariadbd.pid"
            echo "log-error = $dir/server.log"
            echo "port = $port"
            echo "bind-address = 127.0.0.1"
            echo "log_bin = mysql-bin"
            echo "binlog_format = ROW"
            echo "binlog_row_image = FULL"
            echo "binlog_row_metadata = FULL"
            echo "server_id = 1"
            echo "innodb_buffer_pool_size = 256M"
            echo "innodb_flush_log_at_trx_commit = 2"
            echo "sync_binlog = 0"
            echo "skip_name_resolve = ON"
            for line in "$@"; do echo "$line"; done
        } >"$dir/my.cnf"
    fi
    if [ ! -d "$dir/data/mysql" ]; then
        mariadb-install-db --defaults-file="$dir/my.cnf" --user="$user" \
            --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
            { cat "$dir/install.log"; return 1; }
    fi
    "$MYSQL_BIN/mariadbd" --defaults-file="$dir/my.cnf" --user="$user" >>"$dir/server.log" 2>&1 &
    local pid=$!
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "mariadbd on port $port exited during start-up" >&2
            tail -n 5 "$dir/server.log" >&2
            return 1
        fi
        if mariadb --socket="$dir/mysql.sock" -uroot -e "SELECT 1" >/dev/null 2>&1; then
            # root over TCP too (install-db makes root@localhost only; skip_name_resolve
            # leaves 127.0.0.1 as it is)
            mariadb --socket="$dir/mysql.sock" -uroot -e \
                "CREATE USER IF NOT EXISTS root@'127.0.0.1'; GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION"
            return 0
        fi
        sleep 0.2
    done
    echo "mariadbd on port $port did not start within 60 s" >&2
    tail -n 30 "$dir/server.log" >&2
    return 1
}

mysql_stop() {
    local dir=$1 pid i
    [ -f "$dir/mariadbd.pid" ] || return 0
    pid=$(cat "$dir/mariadbd.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
}

mysql_cli() {
    local port=$1; shift
    mariadb --protocol=TCP -h 127.0.0.1 -P "$port" -uroot --default-character-set=utf8mb4 "$@"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Start on a port that looked free, and on another one if that start fails: the port can be
# taken before the server binds it, by another run or by a client connection's ephemeral
# port (the kernel's range, 32768-60999, holds the test ports too).  Each try starts over
# in a fresh DIR.
#   pg_start_free DIR FROM [postgresql.conf line]...   sets PG_PORT
#   mysql_start_free DIR FROM [my.cnf line]...         sets MY_PORT
pg_start_free() { start_free pg_start PG_PORT "$@"; }
mysql_start_free() { start_free mysql_start MY_PORT "$@"; }

start_free() { # START VAR DIR FROM [line]...
    local start=$1 var=$2 dir=$3 from=$4 try port; shift 4
    for try in 1 2 3 4 5; do
        port=$(free_port $((from + (try - 1) * 10))) || return 1
        printf -v "$var" '%s' "$port"
        rm -rf "$dir"
        "$start" "$dir" "$port" "$@" && return 0
        echo "(the server did not start on port $port; trying another port)"
    done
    return 1
}

# Another run may share the machine: the first free port of PORT..PORT+99.
free_port() {
    local port=$1
    for ((i = 0; i < 100; i++)); do
        port_busy "$port" || { echo "$port"; return 0; }
        port=$((port + 1))
    done
    echo "no free port from $1" >&2
    return 1
}

# The test Kafka broker (test/kafka_broker.c: librdkafka's mock cluster, a real
# Kafka-protocol server), built when missing or older than its source.  Starts it in the
# background with the given topics, sets BROKER_PID, and sets BROKER_ADDR to the bootstrap
# address once it listens (its stderr goes to DIR/broker.err).
broker_start() {
    local dir=$1 root bin args=() topic
    shift
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    bin=$root/test/kafka_broker
    if [ ! -x "$bin" ] || [ "$root/test/kafka_broker.c" -nt "$bin" ]; then
        gcc -O2 -Wall -o "$bin.tmp.$$" "$root/test/kafka_broker.c" -lrdkafka || return 1
        mv -f "$bin.tmp.$$" "$bin"
    fi
    for topic in "$@"; do args+=(--topic "$topic"); done
    rm -f "$dir/bootstrap"
    "$bin" "${args[@]}" --bootstrap-file "$dir/bootstrap" >/dev/null 2>"$dir/broker.err" &
    BROKER_PID=$!
    for _ in $(seq 150); do
        if [ -s "$dir/bootstrap" ]; then
            BROKER_ADDR=$(cat "$dir/bootstrap")
            return 0
        fi
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "the test Kafka broker did not start: $(cat "$dir/broker.err" 2>/dev/null)" >&2
    return 1
}

broker_stop() {
    [ -n "${BROKER_PID:-}" ] && kill -0 "$BROKER_PID" 2>/dev/null || return 0
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
}
