#!/usr/bin/env bash
# bench/sizes.sh: `make bench-scale`.  The same shop at several sizes (SCALE_SIZES customers,
# default 100,000 and 10,000,000, each with 2 orders, half a support ticket and 5 events a
# customer), each in a
# database of its own on one throwaway cluster with shared_buffers = 1GB, so that the large
# one outgrows it.  Per size (bench/sizes.sql generates the shop):
#   - the load: rows written straight into the mirrors, then c360.rebuild() (README,
#     "Loading a large history"), each timed; a CREATE TABLE AS of the reference query
#     over the same mirrors, which rebuild() is compared with (issue 19: at most 3x);
#   - 100,000 events and 100,000 order changes (half new orders, half updates) through
#     c360.apply_changes in batches of 1,000, as a source applies them, and as many for
#     other customers through their floors (bench/sizes.sql): the least any design that
#     keeps the profile exact per batch writes, so that the report tells the machine's
#     growth with size from the maintainer's;
#   - a tick of an hour, which finds 1% of the customers due, and its floor (the due rows,
#     each written once);
#   - 10,000 point lookups by customer_id, each timed on the server: p50, p99;
#   - the article's three queries (the high-value open issues, engagement by stage,
#     gold/platinum at risk or lapsing);
#   - verify() (SCALE_VERIFY=0 skips it), and the disk size per customer.
# The report puts each size beside the smallest, with issue 19's targets, and goes to
# bench/out/scale.txt.  Knobs (environment): SCALE_SIZES, SCALE_CHANGES (100,000),
# SCALE_PORT (54339), SCALE_VERIFY, SCALE_KEEP=1.  At 10,000,000 customers it takes about
# an hour and 50 GB of disk on 2 cores (50 minutes with SCALE_VERIFY=0); `SCALE_SIZES="100000
# 1000000"` about 5 minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out
PORT=${SCALE_PORT:-54339}
SIZES=${SCALE_SIZES:-100000 10000000}
CHANGES=${SCALE_CHANGES:-100000}
VERIFY=${SCALE_VERIFY:-1}
KEEP=${SCALE_KEEP:-0}

make -s >/dev/null && make -s install >/dev/null
. test/servers.sh
. bench/cluster.sh

mkdir -p "$OUT"
bench_cluster scale "$PORT" "$KEEP" postgres "shared_buffers = 1GB" "max_wal_size = 16GB"

q() { local db=$1; shift; pg_psql "$PORT" -d "$db" "$@"; }
say() { printf '%s  %s\n' "$(date +%T)" "$*" >&2; }
# time a statement on the server, committed, into bench.results (phase, rows, seconds)
timed() { # db phase sql
    q "$1" -c "CALL bench.time_stmt('$2', \$sql\$$3\$sql\$)" >/dev/null
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

for n in $SIZES; do
    db=scale_$n
    say "$n customers: generating the shop straight into the mirrors"
    q postgres -c "CREATE DATABASE $db" >/dev/null
    q "$db" -c "CREATE EXTENSION customer360" -c "CREATE EXTENSION pg_stat_statements" \
        -f bench/lib.sql >/dev/null
    q "$db" -c "SELECT c360.tick(bench.t0())" >/dev/null
    a=$(date +%s.%N)
    q "$db" -v customers="$n" -v changes="$CHANGES" -v batch=1000 -f bench/sizes.sql >/dev/null
    q "$db" -c "VACUUM ANALYZE" >/dev/null
    b=$(date +%s.%N)
    q "$db" -c "INSERT INTO bench.results (phase, rows, seconds)
                SELECT 'load', (SELECT count(*) FROM c360.customers) + (SELECT count(*) FROM c360.orders)
                               + (SELECT count(*) FROM c360.support_tickets)
                               + (SELECT count(*) FROM c360.behavioral_events), $b - $a"
    say "$n: rebuild(), then a CREATE TABLE AS of the reference query"
    q "$db" -c "CHECKPOINT" >/dev/null
    timed "$db" rebuild "SELECT c360.rebuild()"
    q "$db" -c "VACUUM ANALYZE c360.customer_360" -c "CHECKPOINT" >/dev/null
    q "$db" >/dev/null <<'SQL'
SELECT format('PREPARE reference(timestamptz) AS %s', c360._generated_sql('reference')) \gexec
SELECT clock_timestamp() AS t0 \gset
CREATE TABLE bench.reference AS EXECUTE reference(c360.as_of());
INSERT INTO bench.results (phase, rows, seconds)
SELECT 'ctas', (SELECT count(*) FROM bench.reference), extract(epoch FROM clock_timestamp() - :'t0');
DROP TABLE bench.reference;
SQL
    q "$db" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    say "$n: events and order changes through apply_changes"
    q "$db" -c "CALL bench.apply_staged('events')" -c "CALL bench.apply_staged('orders')" >/dev/null
    say "$n: the floors of events and order changes (other customers, rolled back)"
    q "$db" -c "CALL bench.size_floors()" >/dev/null
    say "$n: a tick with 1% due, point lookups, the article's queries"
    q "$db" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null
    timed "$db" tick "SELECT c360.tick(bench.t0() + interval '1 hour')"
    q "$db" -c "CALL bench.tick_floor()" >/dev/null
    q "$db" -c "INSERT INTO bench.results (phase, rows, seconds, p50_ms, p99_ms, max_ms)
                SELECT 'lookup', 10000, sum(x) / 1000, bench.pct(l, 0.5), bench.pct(l, 0.99), max(x)
                FROM (SELECT bench.lookups(10000, $n) AS l) s, unnest(s.l) x GROUP BY l" >/dev/null
    timed "$db" query_high_value "SELECT count(*) FROM (SELECT customer_id, lifetime_value, open_support_tickets
        FROM c360.customer_360 WHERE has_open_support_issue AND lifetime_value > 1000
        ORDER BY lifetime_value DESC) x"
    timed "$db" query_by_stage "SELECT count(*) FROM (SELECT lifecycle_stage, count(*), avg(sessions_last_30d)
        FROM c360.customer_360 GROUP BY 1 ORDER BY 1) x"
    timed "$db" query_at_risk "SELECT count(*) FROM (SELECT customer_id, loyalty_tier, lifecycle_stage
        FROM c360.customer_360 WHERE loyalty_tier IN ('gold', 'platinum')
        AND lifecycle_stage IN ('at_risk', 'lapsing') ORDER BY 1) x"
    if [ "$VERIFY" = 1 ]; then
        say "$n: verify()"
        timed "$db" verify "SELECT count(*) FROM c360.verify()"
    fi
    q "$db" -At -c "SELECT json_build_object('customers', $n,
        'disk_bytes', pg_database_size(current_database()),
        'profile_bytes', pg_total_relation_size('c360.customer_360'),
        'results', (SELECT json_object_agg(phase, json_build_object('rows', rows, 'seconds', seconds,
                        'p50_ms', p50_ms, 'p99_ms', p99_ms, 'max_ms', max_ms)) FROM bench.results))" \
        >"$DIR/size_$n.json"
    [ "$KEEP" = 1 ] || q postgres -c "DROP DATABASE $db" >/dev/null
done

python3 - "$OUT/scale.txt" "$(nproc)" "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(q postgres -At -c 'SHOW server_version')" "$CHANGES" "$DIR"/size_*.json <<'PY'
import json, sys
out, cores, load0, load1, server, changes = sys.argv[1:7]
runs = sorted((json.load(open(f)) for f in sys.argv[7:]), key=lambda r: r["customers"])
base = runs[0]
def r(run, phase, key="seconds"):
    return run["results"].get(phase, {}).get(key)
def rate(run, phase):
    return r(run, phase, "rows") / r(run, phase)
rows = [
    ("load: rows into the mirrors", lambda x: "%.0f s (%s rows)" % (r(x, "load"), format(r(x, "load", "rows"), ",")), None, None),
    ("rebuild()", lambda x: "%.1f s" % r(x, "rebuild"), None, None),
    ("CREATE TABLE AS of the reference query", lambda x: "%.1f s" % r(x, "ctas"), None, None),
    ("rebuild() / CREATE TABLE AS", lambda x: "%.2f x" % (r(x, "rebuild") / r(x, "ctas")), None, "<= 3 at the largest"),
    ("events/s through apply_changes", lambda x: "%.0f" % rate(x, "events"), lambda x: rate(x, "events") / rate(base, "events"), ">= 0.7"),
    ("order changes/s", lambda x: "%.0f" % rate(x, "orders"), lambda x: rate(x, "orders") / rate(base, "orders"), ">= 0.7"),
    ("  floor: rows + owners' counters", lambda x: "%.0f" % rate(x, "floor_events"), lambda x: rate(x, "floor_events") / rate(base, "floor_events"), None),
    ("  events / floor", lambda x: "%.2f" % (rate(x, "events") / rate(x, "floor_events")), None, None),
    ("  floor: rows + owners' counters", lambda x: "%.0f" % rate(x, "floor_orders"), lambda x: rate(x, "floor_orders") / rate(base, "floor_orders"), None),
    ("  order changes / floor", lambda x: "%.2f" % (rate(x, "orders") / rate(x, "floor_orders")), None, None),
    ("tick of an hour (1% due)", lambda x: "%.2f s (%s rows)" % (r(x, "tick"), format(r(x, "tick", "rows"), ",")), lambda x: r(x, "tick") / r(base, "tick"), "<= 10"),
    ("  floor: the due rows written by key", lambda x: "%.3f s (%s rows)" % (r(x, "tick_floor"), format(r(x, "tick_floor", "rows"), ",")), lambda x: r(x, "tick_floor") / r(base, "tick_floor"), None),
    ("point lookup p50", lambda x: "%.3f ms" % r(x, "lookup", "p50_ms"), None, None),
    ("point lookup p99", lambda x: "%.3f ms" % r(x, "lookup", "p99_ms"), None, "< 1 ms"),
    ("query: high value, open issue", lambda x: "%.3f s" % r(x, "query_high_value"), lambda x: r(x, "query_high_value") / r(base, "query_high_value"), None),
    ("query: engagement by stage", lambda x: "%.3f s" % r(x, "query_by_stage"), lambda x: r(x, "query_by_stage") / r(base, "query_by_stage"), None),
    ("query: gold/platinum at risk", lambda x: "%.3f s" % r(x, "query_at_risk"), lambda x: r(x, "query_at_risk") / r(base, "query_at_risk"), None),
    ("verify()", lambda x: "%.1f s, %d rows" % (r(x, "verify"), r(x, "verify", "rows")) if r(x, "verify") is not None else "skipped", None, "0 rows"),
    ("disk per customer", lambda x: "%.0f bytes (profile %.0f)" % (x["disk_bytes"] / x["customers"], x["profile_bytes"] / x["customers"]), lambda x: (x["disk_bytes"] / x["customers"]) / (base["disk_bytes"] / base["customers"]), None),
]
lines = ["customer360 scale bench: PostgreSQL %s, %s cores, shared_buffers 1GB; load %s -> %s" % (server, cores, load0, load1),
         "each size: 2 orders, 0.5 support tickets and 5 events a customer; %s events and %s order changes in batches of 1,000"
         % (format(int(changes), ","), format(int(changes), ",")), ""]
head = "%-40s" % "" + "".join("%28s" % format(x["customers"], ",") for x in runs) + "   ratio to %s, target" % format(base["customers"], ",")
lines.append(head)
for label, show, ratio, target in rows:
    line = "%-40s" % label + "".join("%28s" % show(x) for x in runs)
    if ratio and len(runs) > 1:
        line += "   %.2f" % ratio(runs[-1])
    if target:
        line += ("   " if not ratio else "  ") + "(" + target + ")"
    lines.append(line)
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text, end="")
PY
bad=$(cat "$DIR"/size_*.json | python3 -c "
import json, sys
print(sum(json.loads(l)['results'].get('verify', {}).get('rows') or 0 for l in sys.stdin))")
[ "$bad" = 0 ] || { echo "verify() is not empty ($bad rows)" >&2; exit 1; }
