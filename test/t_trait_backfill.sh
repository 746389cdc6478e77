#!/usr/bin/env bash
# test/t_trait_backfill.sh: computed traits backfilled by the ticker, in chunks, while a
# Kafka source streams events into the same profile.
#
# Runs in database c360_workers of the server under test (PGHOST/PGPORT, the one test/run.sh
# starts: customer360 preloaded, c360.database = 'c360_workers', so the ticker and the
# source run there), with the test broker (test/kafka_broker).  Steps:
#   1  a profile of $CUSTOMERS customers (default 80,000: the backfill must last long enough
#      for $MIN_SAMPLES samples; 40,000 gave 48 once 0.10 backfilled faster) with orders
#      and events, loaded by c360.apply_changes in big batches, plus $PROBES probe
#      customers that only the probe events below touch; ALTER SYSTEM SET
#      c360.trait_backfill_chunk = 2000 and a reload
#   2  source tb_kafka streams topic tb_events into behavioral_events; a producer loop sends
#      about 600 events a second for the whole test; $PROBE_THREADS probers each send one event at
#      a time for a probe customer and time how long until its row is in the mirror (the
#      batch that writes it writes the profile in the same transaction), checking there and
#      then, in the same snapshot, that the probe customer's event traits equal their
#      definitions computed from the mirror (backfilled or not yet: the maintainer keeps a
#      backfilling trait exact for the customers that change)
#   3  six traits are created while the stream runs: one, then five more once its backfill
#      is under way (events and orders, windowed and not); each returns 0 and is
#      'backfilling'; a segment on a backfilling trait is refused with 55000; c360.traits is
#      watched until every trait is 'ready' (bounded): rows_backfilled moves in several steps
#      (chunks the ticker sizes to about 100 ms, at most 2,000 rows) and ends at the
#      profile's size
#   4  freshness while the traits backfilled: at least $MIN_SAMPLES probe samples; the
#      largest (and so the 99th percentile) time from producing an event to its row being
#      applied is under 1 s; no probe timed out; every probe customer's traits were exact
#   5  the producer stops; the source catches up (its positions = the messages produced,
#      changes_applied the same: each applied once); the mirror holds exactly the produced
#      events, row for row; verify() (every trait ready) empty; a segment on a trait now
#      works and holds what its predicate gives
# Every wait is a bounded poll.  The source, the extension and the setting are removed at the
# end, whatever happened.  Exit 0 only if every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/servers.sh

DB=c360_workers
: "${PGHOST:=127.0.0.1}" "${PGPORT:=54310}" "${PGUSER:=postgres}"
export PGHOST PGPORT PGUSER PGTZ=UTC PGDATESTYLE=ISO
CUSTOMERS=${C360_BACKFILL_CUSTOMERS:-80000}
PROBES=100
PROBE_THREADS=4
CHUNK=2000
TOPIC=tb_events
MIN_SAMPLES=${C360_BACKFILL_MIN_SAMPLES:-50}
# freshness bound, seconds
FRESH=1.0

T0=$(date +%s.%N)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/t_trait_backfill.XXXXXX")
BROKER_PID=
B=
LOCAL_LOG=
failures=()
bg_pids=()

. test/lib.sh
die() {
    fail "$*"
    diagnostics
    exit 1
}

cleanup() {
    local rc=$?
    set +e
    touch "$TMP/stop"
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    drop_c360
    q -c "ALTER SYSTEM RESET c360.trait_backfill_chunk" >/dev/null 2>&1
    q -c "SELECT pg_reload_conf()" >/dev/null 2>&1
    broker_stop
    if [ "$rc" -eq 0 ]; then
        rm -rf "$TMP"
    else
        echo "files kept in $TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

diagnostics() {
    set +e
    echo "---- diagnostics"
    q -c "SELECT name, state, position, lag_messages, changes_applied, dead_letters, last_error FROM c360.source_status" 2>&1
    q -c "SELECT name, state, rows_backfilled, backfill_percent FROM c360.traits" 2>&1
    q -c "SELECT backend_type, state, wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity
          WHERE datname = '$DB' AND pid <> pg_backend_pid()" 2>&1
    if [ -n "$LOCAL_LOG" ]; then
        echo "---- local server log (c360 lines, last 20)"
        grep -a 'c360\|ERROR' "$LOCAL_LOG" | tail -n 20
    fi
    echo "---- prober (last 5 samples)"
    tail -n 5 "$TMP/samples" 2>/dev/null
    echo "----"
}

positions() { q -c "SELECT COALESCE(sum(position::bigint), 0) FROM c360.source_positions WHERE source = 'tb_kafka'" 2>/dev/null; }
positions_are() { [ "$(positions)" = "$1" ]; }
all_ready() { [ "$(q -c "SELECT count(*) FILTER (WHERE state = 'ready') || '/' || count(*) FROM c360.traits")" = "$1/$1" ]; }
backfill_started() { [ "$(q -c "SELECT rows_backfilled > 0 FROM c360.traits WHERE name = '$1'")" = t ]; }
have_samples() { [ "$(wc -l <"$TMP/samples" 2>/dev/null || echo 0)" -ge "$1" ]; }

# ---------------------------------------------------------------------------------------------
# The producer: until $TMP/stop, batches of 150 events for random customers every 0.2 s,
# each batch appended to $TMP/produced once kcat has delivered it.
cat >"$TMP/producer.py" <<'PY'
import datetime, json, os, random, subprocess, sys, time
tmp, broker, topic, customers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rng = random.Random(7)
types = ["page_view", "product_view", "add_to_cart", "search"]
n = 0
deadline = time.time() + 900
while not os.path.exists(os.path.join(tmp, "stop")) and time.time() < deadline:
    now = time.time()
    lines = []
    for _ in range(150):
        n += 1
        cust = "cust-%05d" % rng.randint(1, customers)
        t = now - rng.uniform(2 * 3600, 25 * 86400)
        ev = {"event_id": "bg-%d" % n, "customer_id": cust, "session_id": "s-%d" % rng.randint(1, 50000),
              "event_type": rng.choice(types), "product_id": "p-%d" % rng.randint(1, 500),
              "category_id": "cat-%d" % rng.randint(0, 19),
              "event_time": datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        lines.append("%s:%s\n" % (cust, json.dumps(ev, separators=(",", ":"))))
    data = "".join(lines)
    r = subprocess.run(["timeout", "60", "kcat", "-P", "-b", broker, "-t", topic, "-K:", "-z", "lz4"],
                       input=data, text=True, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.stderr.write("kcat failed: %s\n" % r.stderr)
        sys.exit(1)
    with open(os.path.join(tmp, "produced"), "a") as f:
        f.write(data)
    time.sleep(0.2)
PY

# A producer that stays connected (kcat -P sends what it reads only at the end of its input):
# for each line "key:value" on stdin, one message, flushed; "ok" on stdout once delivered.
cat >"$TMP/line_producer.c" <<'C'
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

static int	failed;

static void
delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	if (m->err)
	{
		fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
		failed = 1;
	}
}

int
main(int argc, char **argv)
{
	static char line[1 << 16];
	char		errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;

	if (argc != 3 ||
		rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "linger.ms", "0", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "usage: line_producer BROKERS TOPIC (%s)\n", errstr);
		return 2;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, delivered);
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))) == NULL)
	{
		fprintf(stderr, "%s\n", errstr);
		return 1;
	}
	while (fgets(line, sizeof(line), stdin) != NULL)
	{
		size_t		n = strcspn(line, "\n");
		char	   *sep;

		line[n] = '\0';
		if ((sep = strchr(line, ':')) == NULL)
			continue;
		*sep++ = '\0';
		if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_KEY(line, strlen(line)),
							  RD_KAFKA_V_VALUE(sep, strlen(sep)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							  RD_KAFKA_V_END) != RD_KAFKA_RESP_ERR_NO_ERROR ||
			rd_kafka_flush(rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR || failed)
		{
			fprintf(stderr, "could not produce a message\n");
			return 1;
		}
		printf("ok\n");
		fflush(stdout);
	}
	rd_kafka_destroy(rk);
	return 0;
}
C

# The prober: until $TMP/stop, $PROBE_THREADS threads each send one event at a time for a
# probe customer probe-NNN (NNN cycling through 1..PROBES: no other event names them) through
# a line_producer of its own, and time from handing the event to the producer to its row
# being in the mirror: a bounded poll, every 10 ms, at most 10 s.  When the row is there, the same statement (one snapshot: the batch
# wrote the row and the profile in one transaction) compares the probe customer's event
# traits that existed before the event was produced with their definitions, computed here
# from the mirror.  One line per sample in $TMP/samples:
#   seq latency_s traits_backfilling(at produce) traits_backfilling(when seen)|- ok|BAD|TIMEOUT detail
cat >"$TMP/prober.py" <<'PY'
import datetime, json, os, subprocess, sys, threading, time
tmp, broker, topic, probes, db, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
types = ["page_view", "product_view", "add_to_cart", "search"]

# The definitions of the event traits, written independently of the extension's generated
# statements: for customer c (a probe customer: no identity link), at the clock.
REF = {
    "views_7d": "(SELECT count(*) FROM c360.behavioral_events x WHERE x.customer_id = c AND x.event_type = 'product_view'"
                " AND x.event_time > c360.window_start(c360.as_of(), '7 days'))",
    "fav_category_30d": "(SELECT mode() WITHIN GROUP (ORDER BY x.category_id) FROM c360.behavioral_events x"
                        " WHERE x.customer_id = c AND x.event_time > c360.window_start(c360.as_of(), '30 days'))",
    "last_event_type": "(SELECT x.event_type FROM c360.behavioral_events x WHERE x.customer_id = c"
                       " ORDER BY x.event_time DESC, x.event_id DESC LIMIT 1)",
    "products_7d": "(SELECT count(DISTINCT x.product_id) FROM c360.behavioral_events x WHERE x.customer_id = c"
                   " AND x.event_time > c360.window_start(c360.as_of(), '7 days'))",
}


class Psql:
    def __init__(self):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.err = []
        threading.Thread(target=lambda: [self.err.append(l) for l in self.p.stderr], daemon=True).start()
        self.n = 0
        self.run("SET statement_timeout = '20s';")

    def run(self, sql):
        self.n += 1
        marker = "__done_%d__" % self.n
        self.p.stdin.write(sql + "\n\\echo " + marker + "\n")
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if line == "":
                time.sleep(0.1)
                raise RuntimeError("psql: " + "".join(self.err))
            line = line.rstrip("\n")
            if line == marker:
                return out
            out.append(line)


lock = threading.Lock()
counter = [0]
samples = open(os.path.join(tmp, "samples"), "a", buffering=1)
sent = open(os.path.join(tmp, "probes"), "a", buffering=1)
failed = []
deadline = time.time() + 900


def prober(i):
    db = Psql()
    kcat = subprocess.Popen([os.path.join(tmp, "line_producer"), broker, topic], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "prober_producer_%d.err" % i), "w"),
                            text=True)

    def produce(line):
        kcat.stdin.write(line)
        kcat.stdin.flush()
        if kcat.stdout.readline() != "ok\n":
            raise RuntimeError("the producer failed: see prober_producer_%d.err" % i)
        sent.write(line)

    try:
        # one event to connect the producer before timing anything
        line = 'probe-%03d:{"event_id":"probe-warm-%d","customer_id":"probe-%03d","event_type":"warm_up","event_time":"%s"}\n' % (
            i + 1, i, i + 1, datetime.datetime.fromtimestamp(int(time.time()) - 7200, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        produce(line)
        t0 = time.monotonic()
        while not db.run("SELECT 1 FROM c360.behavioral_events WHERE event_id = 'probe-warm-%d';" % i):
            if time.monotonic() - t0 > 30:
                raise RuntimeError("the warm-up event was not applied in 30 s")
            time.sleep(0.05)
        while not os.path.exists(os.path.join(tmp, "stop")) and time.time() < deadline:
            with lock:
                counter[0] += 1
                k = counter[0]
            cust = "probe-%03d" % (k % probes + 1)
            eid = "probe-ev-%d" % k
            traits = [l.split("|") for l in db.run(
                "SELECT name, extract(epoch FROM created_at), state = 'backfilling' FROM c360.column_catalog;")]
            backfilling_before = sum(1 for t in traits if t[2] == "t")
            now = time.time()
            ev = {"event_id": eid, "customer_id": cust, "session_id": "ps-%d" % (k % 7),
                  "event_type": types[k % 4], "product_id": "p-probe-%d" % (k % 3), "category_id": "cat-%d" % (k % 5),
                  "event_time": datetime.datetime.fromtimestamp(int(now) - 3600, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            line = "%s:%s\n" % (cust, json.dumps(ev, separators=(",", ":")))
            # the traits committed before this event is produced must be exact for its customer
            checked = [t[0] for t in traits if t[0] in REF and float(t[1]) < now]
            check = ", ".join("p.%s IS NOT DISTINCT FROM %s, p.%s::text || ' want ' || %s::text" % (n, REF[n], n, REF[n])
                              for n in checked) or "true, ''"
            sql = ("SELECT (SELECT count(*) FROM c360.column_catalog WHERE state = 'backfilling'), %s"
                   " FROM c360.behavioral_events e JOIN c360.customer_360 p ON p.customer_id = e.customer_id,"
                   " LATERAL (SELECT e.customer_id AS c) cc WHERE e.event_id = '%s';" % (check, eid))
            t0 = time.monotonic()
            produce(line)
            while True:
                out = db.run(sql)
                latency = time.monotonic() - t0
                if out:
                    f = out[0].split("|")
                    bad = ["%s %s" % (n, f[2 + 2 * j]) for j, n in enumerate(checked) if f[1 + 2 * j] != "t"]
                    samples.write("%d %.3f %d %s %s %s: %s\n" % (k, latency, backfilling_before, f[0],
                                                                "BAD" if bad else "ok", cust,
                                                                "; ".join(bad) if bad else ",".join(checked) or "-"))
                    break
                if latency > 10:
                    samples.write("%d %.3f %d - TIMEOUT %s\n" % (k, latency, backfilling_before, cust))
                    break
                time.sleep(0.01)
            time.sleep(0.05)
    except Exception as e:
        failed.append("prober %d: %r" % (i, e))
    finally:
        try:
            kcat.stdin.close()
        except OSError:
            pass
        if kcat.wait(timeout=60) != 0:
            failed.append("prober %d: kcat exited with %d" % (i, kcat.returncode))


ts = [threading.Thread(target=prober, args=(i,)) for i in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
if failed:
    sys.stderr.write("\n".join(failed) + "\n")
    sys.exit(1)
PY

gcc -O2 -Wall -o "$TMP/line_producer" "$TMP/line_producer.c" -lrdkafka || die "could not build the line producer"

# ---------------------------------------------------------------------------------------------
say "step 1: $CUSTOMERS customers with orders and events, $PROBES probe customers; c360.trait_backfill_chunk = $CHUNK"
t1=$(date +%s.%N)
broker_start "$TMP" "$TOPIC:2" || die "the test broker did not start"
B=$BROKER_ADDR
fresh_c360
LOCAL_LOG=$(dirname "$(q -c "SHOW data_directory")")/server.log
[ -r "$LOCAL_LOG" ] || LOCAL_LOG=
poll 60 "the ticker in $DB" bash -c "psql -X -qAt -d $DB -c \"SELECT 1 FROM pg_stat_activity WHERE datname = '$DB' AND backend_type = 'c360 ticker'\" | grep -q 1" ||
    die "no c360 ticker runs in $DB"
# events in two steps: a first few, ANALYZE, then the rest (a first big batch into an empty
# mirror without statistics is planned badly)
q >/dev/null <<SQL
SELECT setseed(0.42);
SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'customers', 'op', 'insert', 'new',
         jsonb_build_object('customer_id', c, 'email', c || '@example.org',
                            'signup_date', now() - (g % 900) * interval '1 day'))))
FROM (SELECT g, 'cust-' || lpad(g::text, 5, '0') AS c FROM generate_series(1, $CUSTOMERS) g
      UNION ALL SELECT g, 'probe-' || lpad(g::text, 3, '0') FROM generate_series(1, $PROBES) g) x;
SELECT c360.apply_changes(jsonb_agg(jsonb_build_object('input', 'orders', 'op', 'insert', 'new',
         jsonb_build_object('order_id', 'ord-' || g,
                            'customer_id', CASE WHEN g % 400 = 0 THEN 'probe-' || lpad((1 + g / 400 % $PROBES)::text, 3, '0')
                                                ELSE 'cust-' || lpad((1 + (g::bigint * 7919) % $CUSTOMERS)::text, 5, '0') END,
                            'order_status', (ARRAY['placed', 'shipped', 'delivered', 'returned'])[1 + g % 4],
                            'total_amount', round((random() * 300)::numeric, 2), 'item_count', 1 + g % 5,
                            'channel', (ARRAY['web', 'mobile', 'store'])[1 + g % 3],
                            'created_at', now() - random() * interval '200 days', 'updated_at', now()))))
FROM generate_series(1, 2 * $CUSTOMERS) g;
CREATE TEMP VIEW initial_events AS
SELECT g, jsonb_build_object('input', 'behavioral_events', 'op', 'insert', 'new',
         jsonb_build_object('event_id', 'init-' || g,
                            'customer_id', CASE WHEN g % 300 = 0 THEN 'probe-' || lpad((1 + g / 300 % $PROBES)::text, 3, '0')
                                                ELSE 'cust-' || lpad((1 + (g::bigint * 104729) % $CUSTOMERS)::text, 5, '0') END,
                            'session_id', 's-' || (g % 50000),
                            'event_type', (ARRAY['page_view', 'product_view', 'add_to_cart', 'search'])[1 + (g / 7) % 4],
                            'product_id', 'p-' || (g % 500), 'category_id', 'cat-' || (g % 20),
                            'event_time', now() - interval '2 hours' - random() * interval '60 days')) AS ch
FROM generate_series(1, 3 * $CUSTOMERS) g;
SELECT c360.apply_changes(jsonb_agg(ch)) FROM initial_events WHERE g <= 1000;
ANALYZE c360.behavioral_events;
SELECT c360.apply_changes(jsonb_agg(ch)) FROM initial_events WHERE g > 1000 AND g <= 1000 + $CUSTOMERS * 3 / 2;
SELECT c360.apply_changes(jsonb_agg(ch)) FROM initial_events WHERE g > 1000 + $CUSTOMERS * 3 / 2;
ANALYZE c360.customer_360;
SQL
PROFILE=$(q -c "SELECT count(*) FROM c360.customer_360")
[ "$PROFILE" = $((CUSTOMERS + PROBES)) ] || die "the profile has $PROFILE rows, want $((CUSTOMERS + PROBES))"
q -c "ALTER SYSTEM SET c360.trait_backfill_chunk = $CHUNK" >/dev/null
q -c "SELECT pg_reload_conf()" >/dev/null
chunk_is() { [ "$(q -c "SHOW c360.trait_backfill_chunk")" = "$CHUNK" ]; }
poll 10 "c360.trait_backfill_chunk = $CHUNK in new sessions" chunk_is || die "c360.trait_backfill_chunk is $(q -c "SHOW c360.trait_backfill_chunk") after the reload"
say "  $PROFILE profile rows, $(q -c "SELECT count(*) FROM c360.orders") orders, $(q -c "SELECT count(*) FROM c360.behavioral_events") events in $(elapsed "$t1")s"

# ---------------------------------------------------------------------------------------------
say "step 2: source tb_kafka streams; the producer and the prober run"
t2=$(date +%s.%N)
# fetch.wait.max.ms: the test broker answers a fetch that finds nothing new only when the
# consumer's longest wait is over, where Kafka answers as soon as a message arrives; with
# librdkafka's 500 ms the samples would measure that wait (p50 0.48 s before any trait,
# against 0.08 s with 50 ms), not the apply path
q >/dev/null <<SQL
BEGIN;
SELECT c360.create_source('tb_kafka', 'kafka', '{"bootstrap.servers": "$B", "topic": "$TOPIC", "startup": "earliest",
                                                 "properties.fetch.wait.max.ms": "50"}');
SELECT c360.map_table('tb_kafka', '$TOPIC', 'behavioral_events');
COMMIT;
SQL
poll 60 "tb_kafka streaming" state_is tb_kafka streaming || die "tb_kafka is $(state_of tb_kafka), not streaming"
python3 "$TMP/producer.py" "$TMP" "$B" "$TOPIC" "$CUSTOMERS" 2>"$TMP/producer.err" &
PRODUCER=$!
bg_pids+=("$PRODUCER")
python3 "$TMP/prober.py" "$TMP" "$B" "$TOPIC" "$PROBES" "$DB" "$PROBE_THREADS" 2>"$TMP/prober.err" &
PROBER=$!
bg_pids+=("$PROBER")
# a few samples before any trait: the stream's own freshness
poll 60 "10 probe samples before any trait" have_samples 10 || die "the prober took no 10 samples in 60 s: $(cat "$TMP/prober.err")"
BASE=$(wc -l <"$TMP/samples")
say "  streaming; freshness before any trait: $(awk '{ print $2 }' "$TMP/samples" | sort -n | tail -n 1)s at most over $BASE samples"

# ---------------------------------------------------------------------------------------------
say "step 3: traits created while the source streams; the ticker backfills them in chunks of $CHUNK"
t3=$(date +%s.%N)
# watch c360.traits: "seconds name state rows_backfilled" every 0.2 s until $TMP/stop
( set +e
  while [ ! -e "$TMP/stop" ]; do
      q -F ' ' -c "SELECT extract(epoch FROM clock_timestamp()), name, state, rows_backfilled FROM c360.traits" 2>/dev/null
      sleep 0.2
  done ) >"$TMP/progress" &
bg_pids+=($!)
create() { # NAME INPUT AGGREGATE FILTER LOOKBACK: create_trait's result
    q -c "SELECT c360.create_trait('$1', '$2', \$a\$$3\$a\$, NULLIF(\$f\$$4\$f\$, ''), NULLIF('$5', '')::interval)"
}
n=$(create views_7d behavioral_events 'count(*)' "event_type = 'product_view'" '7 days') || die "create_trait(views_7d) failed"
[ "$n" = 0 ] || fail "create_trait(views_7d) on $PROFILE rows returned $n, want 0 (backfilled by the ticker)"
refused=$(q -c "DO \$\$ BEGIN PERFORM c360.create_segment('tb_viewers', 'views_7d > 0');
                RAISE EXCEPTION 'not refused';
                EXCEPTION WHEN object_not_in_prerequisite_state THEN RAISE NOTICE 'refused'; END \$\$" 2>&1) ||
    fail "create_segment over a backfilling trait was not refused with 55000: $refused"
poll 60 "the ticker backfilling views_7d" backfill_started views_7d || die "the ticker did not start backfilling views_7d in 60 s"
for spec in "fav_category_30d|behavioral_events|mode() WITHIN GROUP (ORDER BY category_id)||30 days" \
            "spend_90d|orders|sum(total_amount)||90 days" \
            "last_event_type|behavioral_events|(array_agg(event_type ORDER BY event_time DESC))[1]||" \
            "products_7d|behavioral_events|count(DISTINCT product_id)||7 days" \
            "last_status|orders|(array_agg(order_status ORDER BY created_at DESC))[1]||"; do
    IFS='|' read -r name input agg filter lookback <<<"$spec"
    n=$(create "$name" "$input" "$agg" "$filter" "$lookback") || die "create_trait($name) failed"
    [ "$n" = 0 ] || fail "create_trait($name) on $PROFILE rows returned $n, want 0"
done
say "  6 traits created in $(elapsed "$t3")s: $(q -c "SELECT string_agg(name || ' ' || state || ' ' || backfill_percent || '%', ', ') FROM c360.traits")"
poll 300 "every trait ready" all_ready 6 || die "the traits were not all ready within 300 s: $(q -c "SELECT string_agg(name || ' ' || state || ' ' || rows_backfilled, ', ') FROM c360.traits")"
DONE=$(date +%s.%N)
say "  every trait ready $(elapsed "$t3")s after the first create_trait"
# the samples taken until now cover the backfill; a few more after it
poll 30 "5 samples after the backfill" have_samples $(($(wc -l <"$TMP/samples") + 5)) || fail "the prober stopped taking samples"

# ---------------------------------------------------------------------------------------------
say "step 4: freshness and exactness while the traits backfilled"
touch "$TMP/stop"
for p in "$PROBER" "$PRODUCER"; do
    wait "$p" || fail "the $([ "$p" = "$PROBER" ] && echo prober || echo producer) failed: $(cat "$TMP/prober.err" "$TMP/producer.err")"
done
# samples produced while a trait was backfilling (at the produce or when seen)
tail -n +$((BASE + 1)) "$TMP/samples" | awk '$3 > 0 || ($4 != "-" && $4 > 0)' >"$TMP/during"
n_during=$(wc -l <"$TMP/during")
stats=$(awk '{ print $2 }' "$TMP/during" | sort -n | awk -v n="$n_during" '
    { v[NR] = $1 } END { if (n == 0) { print "0 0 0"; exit }
      p99 = v[int(0.99 * (n - 1)) + 1]; printf "%s %s %s", v[int((n + 1) / 2)], p99, v[n] }')
read -r p50 p99 max <<<"$stats"
say "  $n_during samples while traits backfilled: latency p50 ${p50}s, p99 ${p99}s, max ${max}s"
[ "$n_during" -ge "$MIN_SAMPLES" ] || fail "only $n_during freshness samples while the traits backfilled, want at least $MIN_SAMPLES"
awk -v m="$max" -v f="$FRESH" 'BEGIN { exit !(m < f) }' ||
    fail "an event took ${max}s from its producing to its row being applied while traits backfilled (bound ${FRESH}s; p99 ${p99}s): $(sort -k2 -n -r "$TMP/during" | head -n 3 | tr '\n' ';')"
timeouts=$(grep -c ' TIMEOUT ' "$TMP/samples" || true)
[ "$timeouts" = 0 ] || fail "$timeouts probe events not applied within 10 s"
checked=$(grep ' ok ' "$TMP/samples" | grep -vc ': -$' || true)
bad=$(grep -c ' BAD ' "$TMP/samples" || true)
[ "$bad" = 0 ] || fail "$bad probe samples found a probe customer's traits not exact right after its event: $(grep ' BAD ' "$TMP/samples" | head -n 3 | tr '\n' ';')"
[ "$checked" -ge 20 ] || fail "only $checked probe samples checked traits (want 20)"
say "  traits of the probe customer exact right after its event in $checked samples"
# the backfill moved in chunks (the ticker sizes them to about 100 ms each, at most $CHUNK
# rows) and covered the profile
chunks=$(awk '$3 == "backfilling" && $4 > 0 { print $2, $4 }' "$TMP/progress" | sort -u)
for name in views_7d fav_category_30d spend_90d last_event_type products_7d last_status; do
    steps=$(echo "$chunks" | awk -v n="$name" '$1 == n' | wc -l)
    [ "$steps" -ge 2 ] || fail "c360.traits showed $name backfilling at only $steps distinct row counts (want several chunks)"
done
rows=$(q -c "SELECT string_agg(name, ', ') FROM c360.traits WHERE rows_backfilled <> $PROFILE")
[ -z "$rows" ] || fail "traits whose rows_backfilled is not the profile's $PROFILE rows: $(q -c "SELECT string_agg(name || ' ' || rows_backfilled, ', ') FROM c360.traits")"
say "  c360.traits showed $(echo "$chunks" | grep -c . || true) chunk steps, each trait ending with $PROFILE rows"

# ---------------------------------------------------------------------------------------------
say "step 5: the source catches up; mirror = produced events; verify() empty"
t5=$(date +%s.%N)
cat "$TMP/produced" "$TMP/probes" >"$TMP/all"
total=$(wc -l <"$TMP/all")
poll 120 "all $total messages committed" positions_are "$total" ||
    die "tb_kafka committed $(positions) of $total messages"
applied=$(q -c "SELECT changes_applied FROM c360.source_status WHERE name = 'tb_kafka'")
[ "$applied" = "$total" ] || fail "changes_applied is $applied, $total messages were produced (each applied once)"
[ "$(q -c "SELECT count(*) FROM c360.dead_letters")" = 0 ] || fail "dead letters: $(q -c "SELECT count(*) FROM c360.dead_letters")"
cut -d: -f2- "$TMP/all" >"$TMP/all.json"
diff=$(q <<SQL
CREATE TEMP TABLE produced (v jsonb);
\\copy produced FROM '$TMP/all.json' WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')
CREATE TEMP TABLE want AS SELECT (jsonb_populate_record(NULL::c360.behavioral_events, v)).* FROM produced;
CREATE TEMP TABLE have AS SELECT * FROM c360.behavioral_events WHERE event_id LIKE 'bg-%' OR event_id LIKE 'probe-%';
SELECT (SELECT count(*) FROM want) || ' ' || (SELECT count(*) FROM have) || ' '
       || (SELECT count(*) FROM (SELECT * FROM want EXCEPT ALL SELECT * FROM have) a) || ' '
       || (SELECT count(*) FROM (SELECT * FROM have EXCEPT ALL SELECT * FROM want) b);
SQL
)
[ "$diff" = "$total $total 0 0" ] ||
    fail "mirror vs produced events (produced, in the mirror, produced but missing or different, in the mirror but not produced): $diff; want '$total $total 0 0'"
say "  $total messages applied once each; the mirror holds exactly the produced events, row for row"
t=$(date +%s.%N)
n=$(q -c "SELECT count(*) FROM c360.verify()")
if [ "$n" != 0 ]; then
    fail "verify() returned $n rows with every trait ready: $(q -c "SELECT string_agg(customer_id || ' ' || column_name || ' ' || COALESCE(profile_value, 'NULL') || ' want ' || COALESCE(reference_value, 'NULL'), '; ') FROM (SELECT * FROM c360.verify() LIMIT 5) v")"
else
    say "  verify() empty over $PROFILE customers, 6 traits ready ($(elapsed "$t")s)"
fi
members=$(q -c "SELECT c360.create_segment('tb_viewers', 'views_7d > 0')") ||
    fail "create_segment over a ready trait failed"
want=$(q -c "SELECT count(*) FROM c360.customer_360 WHERE views_7d > 0")
[ "$members" = "$want" ] && [ "$members" -gt 0 ] ||
    fail "segment tb_viewers has $members members, the predicate gives $want"
say "step 5 done in $(elapsed "$t5")s"

# ---------------------------------------------------------------------------------------------
q -c "SELECT c360.drop_source('tb_kafka')" >/dev/null || fail "drop_source failed"
if [ ${#failures[@]} -gt 0 ]; then
    diagnostics
    echo "${#failures[@]} check(s) failed in $(elapsed "$T0")s:"
    printf '  - %s\n' "${failures[@]}"
    exit 1
fi
echo "ok - t_trait_backfill ($(elapsed "$T0")s)"
