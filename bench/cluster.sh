# bench/cluster.sh: the throwaway cluster a bench starts (sourced, after test/servers.sh).
#   bench_cluster NAME PORT KEEP DB [postgresql.conf line]...
#       initdb and start a cluster in a new /tmp/c360-NAME.XXXXXX (sets DIR) with the bench
#       settings below, then the given lines (later lines win).  On exit it runs
#       $BENCH_ON_EXIT (say, stopping a broker), then stops the cluster and removes DIR,
#       unless KEEP is 1: then it says how to reach database DB and how to stop it.
# The settings: customer360 and pg_stat_statements preloaded, no ticker, the profile's clock
# in UTC, and room for bulk work (work_mem, maintenance_work_mem, WAL, no early checkpoint).
# fsync is off (test/servers.sh): commits cost no flush on either side of a ratio.
BENCH_ON_EXIT=:

bench_cluster() {
    local name=$1 port=$2
    BENCH_KEEP_CLUSTER=$3 BENCH_DB=$4
    shift 4
    DIR=$(mktemp -d "/tmp/c360-$name.XXXXXX")
    trap bench_cluster_exit EXIT
    trap 'exit 1' INT TERM
    pg_start "$DIR" "$port" \
        "shared_preload_libraries = 'customer360, pg_stat_statements'" \
        "c360.tick_interval = 0" \
        "work_mem = 16MB" \
        "maintenance_work_mem = 256MB" \
        "max_wal_size = 8GB" \
        "checkpoint_timeout = 30min" \
        "timezone = 'UTC'" \
        "$@"
    BENCH_PORT_USED=$port
}

bench_cluster_exit() {
    eval "$BENCH_ON_EXIT"
    if [ "$BENCH_KEEP_CLUSTER" = 1 ]; then
        echo "cluster left running: psql -h 127.0.0.1 -p $BENCH_PORT_USED -U postgres -d $BENCH_DB;" \
            "stop: . test/servers.sh && pg_stop $DIR && rm -rf $DIR" >&2
        return
    fi
    pg_stop "$DIR"
    rm -rf "$DIR"
}
