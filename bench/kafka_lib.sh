# bench/kafka_lib.sh: what the Kafka source benchmarks share (sourced after test/servers.sh;
# the bench sets DIR, its scratch directory, and PORT).
#   kafka_bench_cleanup             the EXIT trap: the broker, the cluster, DIR
#   kafka_bench_cluster BATCH       a throwaway cluster with customer360 preloaded, its
#                                   workers in database bench (c360.batch_size BATCH)
#   kafka_bench_customers N         customers cust-1..N through c360.apply_changes
#   kafka_bench_broker TOPIC:P...   the test broker with these topics; sets B and BROKER_PID
#   kafka_bench_source NAME TOPIC [OPTIONS]   a Kafka source into behavioral_events, streaming;
#                                   OPTIONS: more JSON members ('"format": "segment"')
#   kafka_bench_feed NAME TOPIC TOTAL BACKLOG HOOK CHUNK...
#                                   produce the chunk files while the source reads, a chunk
#                                   only while at most BACKLOG messages are ahead of it (the
#                                   mock broker keeps 5 MiB or 100,000 batches per partition),
#                                   until TOTAL are committed; HOOK is called with the
#                                   committed count on every look (":" for none); lines are
#                                   "key:value", or split at KAFKA_BENCH_DELIM
#   kafka_bench_committed NAME      the messages the source committed (NAME may be a LIKE
#                                   pattern: the sources' sum; kafka_bench_feed passes it on)

psql_b() { pg_psql "$PORT" -d bench "$@"; }
q() { psql_b -At "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

kafka_bench_cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID"
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    pg_stop "$DIR"
    rm -rf "$DIR"
}

kafka_bench_cluster() {
    pg_start "$DIR" "$PORT" \
        "shared_preload_libraries = 'customer360'" \
        "c360.database = 'bench'" \
        "c360.tick_interval = 0" \
        "c360.batch_size = $1" \
        "shared_buffers = 1GB" \
        "work_mem = 16MB" \
        "max_wal_size = 8GB" \
        "checkpoint_timeout = 30min" \
        "timezone = 'UTC'"
    pg_psql "$PORT" -d postgres -c "CREATE DATABASE bench"
    psql_b -c "CREATE EXTENSION customer360"
}

kafka_bench_customers() {
    local first
    for ((first = 1; first <= $1; first += 10000)); do
        q -c "SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert',
                'new', jsonb_build_object('customer_id', 'cust-' || i, 'email', 'u' || i || '@example.org',
                                          'signup_date', now() - i * interval '1 hour'))))
              FROM generate_series($first, least($first + 9999, $1)) i" >/dev/null
    done
}

kafka_bench_broker() {
    local topics=() t
    for t in "$@"; do topics+=(--topic "$t"); done
    test/kafka_broker "${topics[@]}" --bootstrap-file "$DIR/bootstrap" >/dev/null 2>"$DIR/broker.err" &
    BROKER_PID=$!
    for _ in $(seq 150); do [ -s "$DIR/bootstrap" ] && break; sleep 0.1; done
    B=$(cat "$DIR/bootstrap")
}

kafka_bench_source() {
    q -c "BEGIN;
          SELECT c360.create_source('$1', 'kafka', '{\"bootstrap.servers\": \"$B\", \"topic\": \"$2\", \"startup\": \"earliest\"${3:+, $3}}');
          SELECT c360.map_table('$1', '$2', 'behavioral_events');
          COMMIT;" >/dev/null
    for _ in $(seq 300); do
        [ "$(q -c "SELECT state FROM c360.source_status WHERE name = '$1'")" = streaming ] && return 0
        sleep 0.1
    done
    say "source $1 is not streaming: $(q -c "SELECT state || ' ' || COALESCE(last_error, '') FROM c360.source_status WHERE name = '$1'")"
    return 1
}

kafka_bench_committed() {
    q -c "SELECT COALESCE(sum(position::bigint), 0) FROM c360.source_positions WHERE source LIKE '$1'"
}

kafka_bench_feed() {
    local name=$1 topic=$2 total=$3 backlog=$4 hook=$5 produced=0 c chunk deadline
    shift 5
    for chunk in "$@"; do
        while c=$(kafka_bench_committed "$name") && "$hook" "$c" && [ $((produced - c)) -gt "$backlog" ]; do
            sleep 0.2
        done
        timeout 120 kcat -P -b "$B" -t "$topic" -K "${KAFKA_BENCH_DELIM:-:}" -z lz4 <"$chunk" 2>>"$DIR/kcat.err"
        produced=$((produced + $(wc -l <"$chunk")))
    done
    deadline=$(($(date +%s) + 3600))
    while c=$(kafka_bench_committed "$name") && "$hook" "$c" && [ "$c" -lt "$total" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { say "source $name did not catch up within an hour"; return 1; }
        sleep 0.2
    done
}
