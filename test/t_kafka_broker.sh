#!/usr/bin/env bash
# test/t_kafka_broker.sh: the test Kafka broker (test/kafka_broker, librdkafka's mock
# cluster) works as a real broker for another process, here kcat:
#   - it starts, writes its bootstrap address to a file and stdout, and has the topics
#     it was told with their partition counts;
#   - 1,000 keyed messages produced are all consumed back, spread over the 3 partitions;
#   - SIGUSR1 takes it down (clients fail), SIGUSR2 brings it back on the same address
#     with the data kept;
#   - SIGTERM stops it promptly with exit status 0 and removes its files.
# Run: bash test/t_kafka_broker.sh   (exit 0 = pass)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BROKER=$ROOT/test/kafka_broker
SRC=$ROOT/test/kafka_broker.c
TMP=$(mktemp -d "${TMPDIR:-/tmp}/t_kafka_broker.XXXXXX")
PID=

cleanup() {
    # Never leave a broker behind, whatever made us exit.
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    if [ -s "$TMP/broker.err" ]; then
        echo "--- broker stderr:" >&2
        tail -n 20 "$TMP/broker.err" >&2
    fi
    exit 1
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.1 s, give up after SECONDS.
# The broker must stay alive meanwhile (unless we are waiting for it to exit).
wait_for() {
    local secs=$1 what=$2; shift 2
    local tries=$((secs * 10))
    for _ in $(seq "$tries"); do
        "$@" && return 0
        sleep 0.1
    done
    fail "$what: not after ${secs} s"
}
alive() { kill -0 "$PID" 2>/dev/null || fail "broker exited unexpectedly"; }
ready() { alive; [ -s "$TMP/bootstrap" ]; }
logged() { alive; grep -q "$1" "$TMP/broker.err"; }
gone() { ! kill -0 "$PID" 2>/dev/null; }

# kcat with a hard bound: a broker that misbehaves must fail the test, not hang it.
kc() { timeout 30 kcat "$@"; }

# --- build, if missing or older than its source -----------------------------------------
# Build to a private name and rename, so tests running in parallel never run a half-written
# binary.  (The Makefile may gain a rule for this; the gcc line is the same.)
if [ ! -x "$BROKER" ] || [ "$SRC" -nt "$BROKER" ]; then
    gcc -O2 -Wall -o "$BROKER.tmp.$$" "$SRC" -lrdkafka || fail "cannot build $BROKER"
    mv -f "$BROKER.tmp.$$" "$BROKER"
fi

# --- bad arguments are refused ------------------------------------------------------------
rc=0; "$BROKER" --topic customer_events:0 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "--topic NAME:0 should exit 2, got $rc"

# --- start --------------------------------------------------------------------------------
"$BROKER" --topic customer_events:3 --topic segment_out:1 \
    --bootstrap-file "$TMP/bootstrap" --pid-file "$TMP/broker.pid" \
    >"$TMP/broker.out" 2>"$TMP/broker.err" &
PID=$!
wait_for 15 "bootstrap file $TMP/bootstrap" ready
BOOTSTRAP=$(cat "$TMP/bootstrap")
[[ $BOOTSTRAP =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "bootstrap address '$BOOTSTRAP'"
# stdout is flushed before the log line, which may come after the file is renamed in.
wait_for 5 "startup log line" logged "broker(s) up"
[ "$(cat "$TMP/broker.out")" = "$BOOTSTRAP" ] || fail "stdout '$(cat "$TMP/broker.out")' is not the bootstrap address"
[ "$(cat "$TMP/broker.pid")" = "$PID" ] || fail "pid file does not hold $PID"

# --- metadata -----------------------------------------------------------------------------
kc -L -b "$BOOTSTRAP" -m 10 >"$TMP/meta" 2>"$TMP/kcat.err" || fail "kcat -L: $(cat "$TMP/kcat.err")"
grep -q 'topic "customer_events" with 3 partitions' "$TMP/meta" || fail "customer_events has not 3 partitions: $(cat "$TMP/meta")"
grep -q 'topic "segment_out" with 1 partitions' "$TMP/meta" || fail "segment_out has not 1 partition: $(cat "$TMP/meta")"

# --- produce 1,000 keyed messages, consume them back --------------------------------------
# -K: splits each line at its first ':', so the JSON value may hold more colons.
seq 1 1000 | awk '{ printf "customer-%d:{\"event_id\":%d,\"customer_id\":\"customer-%d\"}\n", $1 % 100, $1, $1 % 100 }' \
    >"$TMP/messages"
# Lines go on stdin: given a file argument, kcat -P sends the whole file as ONE message.
kc -P -b "$BOOTSTRAP" -t customer_events -K: <"$TMP/messages" 2>"$TMP/kcat.err" ||
    fail "kcat -P: $(cat "$TMP/kcat.err")"

# consume_all FILE: every message of customer_events from the beginning, as
# "partition key:value" lines; -e stops at the end of every partition.
consume_all() {
    kc -C -b "$BOOTSTRAP" -t customer_events -o beginning -e -q -f '%p %k:%s\n' >"$1" 2>"$TMP/kcat.err" ||
        fail "kcat -C: $(cat "$TMP/kcat.err")"
}
consume_all "$TMP/consumed"
n=$(wc -l <"$TMP/consumed")
[ "$n" = 1000 ] || fail "consumed $n messages, want 1000"
# Each produced line comes back exactly once, key and value intact.
cmp -s <(sort "$TMP/messages") <(cut -d' ' -f2- "$TMP/consumed" | sort) ||
    fail "consumed messages differ from the produced ones"
# 100 distinct keys hash to all 3 partitions.
parts=$(cut -d' ' -f1 "$TMP/consumed" | sort -u | tr '\n' ' ')
[ "$parts" = "0 1 2 " ] || fail "messages landed on partitions '$parts', want 0 1 2"

# --- down (SIGUSR1): clients fail fast ----------------------------------------------------
kill -USR1 "$PID"
wait_for 5 "down log line" logged "SIGUSR1: brokers down"
if timeout 15 kcat -L -b "$BOOTSTRAP" -m 2 >/dev/null 2>&1; then
    fail "kcat -L succeeded while the broker is down"
fi
# kcat's producer gives up by itself once all brokers are down ("All broker connections
# are down: terminating"), so this is quick; timeout only bounds it.
if echo 'late:1' | timeout 15 kcat -P -b "$BOOTSTRAP" -t customer_events -K: \
        -X message.timeout.ms=2000 >/dev/null 2>&1; then
    fail "kcat -P succeeded while the broker is down"
fi

# --- up (SIGUSR2): same address, data kept -------------------------------------------------
kill -USR2 "$PID"
wait_for 5 "up log line" logged "SIGUSR2: brokers up"
kc -L -b "$BOOTSTRAP" -m 10 >"$TMP/meta" 2>"$TMP/kcat.err" || fail "kcat -L after up: $(cat "$TMP/kcat.err")"
grep -q 'topic "customer_events" with 3 partitions' "$TMP/meta" || fail "metadata after up: $(cat "$TMP/meta")"
consume_all "$TMP/consumed2"
n=$(wc -l <"$TMP/consumed2")
[ "$n" = 1000 ] || fail "after down/up consumed $n messages, want the 1000 produced before"
echo 'segment-1:{"segment":"vip"}' | kc -P -b "$BOOTSTRAP" -t segment_out -K: 2>"$TMP/kcat.err" ||
    fail "kcat -P after up: $(cat "$TMP/kcat.err")"
got=$(kc -C -b "$BOOTSTRAP" -t segment_out -o beginning -e -q -f '%k %s\n' 2>"$TMP/kcat.err") ||
    fail "kcat -C segment_out: $(cat "$TMP/kcat.err")"
[ "$got" = 'segment-1 {"segment":"vip"}' ] || fail "segment_out holds '$got'"

# --- SIGTERM: prompt clean exit ------------------------------------------------------------
kill -TERM "$PID"
wait_for 10 "exit after SIGTERM" gone
rc=0; wait "$PID" || rc=$?
PID=
[ "$rc" = 0 ] || fail "broker exited with status $rc after SIGTERM"
[ ! -e "$TMP/bootstrap" ] || fail "bootstrap file left behind after exit"
[ ! -e "$TMP/broker.pid" ] || fail "pid file left behind after exit"

echo "ok - t_kafka_broker"
