# test/servers.sh: start and stop throwaway servers on loopback ports, for tests, demo and
# bench.  Source it, then:
#   pg_start DIR PORT [postgresql.conf line]...   initdb DIR/data if needed, start, wait
#   pg_stop DIR                                   fast shutdown, if running
#   pg_psql PORT [psql args]...                   psql as postgres on 127.0.0.1:PORT
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

pg_psql() {
    local port=$1; shift
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}
