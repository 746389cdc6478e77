# test/lib.sh: the helpers integration tests share (source it after setting DB and T0).
#   q ...                     psql on the database under test, unaligned, stop on error
#   say MSG, fail MSG         progress lines stamped with seconds since T0; failures collected
#   state_of NAME, state_is NAME STATE, verify_empty
#   poll SECS DESC CMD...     a bounded wait: CMD every 0.2 s until it succeeds, false after SECS
#   run_decode_test DIR [NAME]  build test/NAME.c (default kafka_decode_test: the Kafka
#                             decoders, no server) in DIR and run it
#   fresh_c360                the database DB (created if need be) with the extension anew;
#                             dies unless the server preloads it
#   drop_c360                 a cleanup: drop every sink, source, the extension and schema c360
#                             (the next test in the shared database starts from nothing),
#                             whatever state they are in

q() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "[$(elapsed "$T0")s] $*"; }
fail() { echo "FAIL: $*"; failures+=("$*"); }
# a source's state in c360.source_status; verify() empty
state_of() { q -c "SELECT state FROM c360.source_status WHERE name = '$1'" 2>/dev/null; }
state_is() { [ "$(state_of "$1")" = "$2" ]; }
verify_empty() { [ "$(q -c "SELECT count(*) FROM c360.verify()")" = 0 ]; }

poll() {
    local secs=$1 desc=$2; shift 2
    local deadline=$(($(date +%s%N) + secs * 1000000000))
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if [ "$(date +%s%N)" -ge "$deadline" ]; then
            echo "  gave up after ${secs}s waiting for: $desc"
            return 1
        fi
        sleep 0.2
    done
}

fresh_c360() {
    if [ "$(psql -X -qAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'")" = 0 ]; then
        psql -X -q -d postgres -c "CREATE DATABASE $DB"
    fi
    q -c "DROP EXTENSION IF EXISTS customer360 CASCADE" -c "DROP SCHEMA IF EXISTS c360 CASCADE" >/dev/null 2>&1
    q -c "CREATE EXTENSION customer360"
    [ "$(q -c "SELECT c360._preloaded()")" = t ] || die "customer360 is not preloaded on $PGHOST:$PGPORT"
}

drop_c360() {
    if [ -n "$(q -c "SELECT 1 FROM pg_extension WHERE extname = 'customer360'" 2>/dev/null)" ]; then
        q -c "SELECT c360.drop_sink(name) FROM c360.sinks" >/dev/null 2>&1
        q -c "SET statement_timeout = '20s'; SELECT c360.drop_source(name) FROM c360.sources" >/dev/null 2>&1 ||
            q -c "DELETE FROM c360.sources" >/dev/null 2>&1
        q -c "DROP EXTENSION customer360 CASCADE" >/dev/null 2>&1
    fi
    # the mirrors of inputs of one's own are the user's tables, in schema c360, which
    # DROP EXTENSION leaves behind
    q -c "DROP SCHEMA IF EXISTS c360 CASCADE" >/dev/null 2>&1
}

run_decode_test() {
    local pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} name=${2:-kafka_decode_test}
    [ -x "$pg_config" ] || pg_config=pg_config
    gcc -Wall -DFRONTEND -ffunction-sections -fdata-sections -Isrc -I"$("$pg_config" --includedir-server)" \
        -o "$1/$name" "test/$name.c" src/decode/kafka_decode.c src/decode/segment_decode.c \
        src/decode/debezium_decode.c src/core/change.c \
        -L"$("$pg_config" --pkglibdir)" -lpgcommon -lpgport -ljansson -lm -Wl,--gc-sections || {
        echo "could not build test/$name.c"
        return 1
    }
    "$1/$name"
}
