#!/usr/bin/env bash
# test/t_installcheck.sh: `make installcheck`, as the README tells a newcomer to run it, works
# against a server of their own, and fails fast and clearly against one that does not preload
# customer360.
#   1. A server of its own with shared_preload_libraries = 'customer360' and c360.database set
#      (not the cluster of test/run.sh): `make installcheck PGHOST=... PGPORT=... PGUSER=...`
#      passes, with one "ok" line per sql/*.sql suite (besides the install scripts) and no
#      FAILED.
#   2. The same server restarted without the preload: `make installcheck` exits non-zero within
#      seconds with the Makefile's one message naming shared_preload_libraries and the fix, and
#      runs no suite (no pg_regress output, no contrib_regression database, no results).
#   3. The server restarted with c360.database = 'contrib_regression' (the database pg_regress
#      drops and re-creates, which the launcher would hold open): the same fast, clear failure.
#   4. The server stopped: `make installcheck` says it cannot query the server.
# It uses the installed build (test/run.sh installs it first; run alone, `make install` first).
# pg_regress writes into a temporary --outputdir (EXTRA_REGRESS_OPTS), so the work tree's
# results/ and regression.diffs, which test/run.sh reads, are left alone.
set -euo pipefail

cd "$(dirname "$0")/.."
. test/servers.sh

PORT=$(free_port 54340)
DIR=$(mktemp -d /tmp/c360-installcheck.XXXXXX)
OUT=$(mktemp -d /tmp/c360-installcheck-out.XXXXXX)
cleanup() { pg_stop "$DIR"; rm -rf "$DIR" "$OUT"; }
trap cleanup EXIT
trap 'exit 1' INT TERM

die() {
    echo "FAIL: $*" >&2
    tail -n 30 "$DIR/server.log" >&2 2>/dev/null || true
    exit 1
}

# What a newcomer types, with this server's connection (test/run.sh exports its own PG*).
installcheck() {
    make -s installcheck PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=postgres \
        EXTRA_REGRESS_OPTS="--outputdir=$1"
}

# the suites: sql/*.sql besides the install and upgrade scripts
n_suites=0
for f in sql/*.sql; do
    case $f in sql/customer360--*) continue ;; esac
    n_suites=$((n_suites + 1))
done
[ "$n_suites" -gt 0 ] || die "no pg_regress suites in sql/"

pkglibdir=$("${PG_CONFIG:-$PG_BIN/pg_config}" --pkglibdir 2>/dev/null || true)
if [ -f customer360.so ] && [ -n "$pkglibdir" ] && ! cmp -s customer360.so "$pkglibdir/customer360.so"; then
    echo "note: the installed customer360.so is not this work tree's build (make install first)"
fi

# anything pg_regress writes into the work tree would be newer than this
touch "$OUT/marker"

echo "1. make installcheck against a server that preloads customer360 (port $PORT)"
pg_start "$DIR" "$PORT" \
    "shared_preload_libraries = 'customer360'" \
    "c360.database = 'c360_ic'"
pg_psql "$PORT" -d postgres -c "CREATE DATABASE c360_ic"
log=$DIR/installcheck.log
start=$(date +%s)
set +e
installcheck "$OUT/pass" >"$log" 2>&1
rc=$?
set -e
secs=$(($(date +%s) - start))
# PG 15 pg_regress: "test NAME ... ok" or, in a parallel group, "     NAME ... ok" (as run.sh)
n_ok=0 n_bad=0
while IFS= read -r line; do
    if [[ $line =~ ^(test[[:space:]]+|[[:space:]]+)?([^[:space:]]+)[[:space:]]+\.\.\.[[:space:]]+(ok|FAILED|failed\ \(ignored\)) ]]; then
        case ${BASH_REMATCH[3]} in
            FAILED) n_bad=$((n_bad + 1)) ;;
            *) n_ok=$((n_ok + 1)) ;;
        esac
    fi
done <"$log"
echo "  exit $rc in ${secs}s: $n_ok ok, $n_bad FAILED, $n_suites suites"
if [ "$rc" -ne 0 ] || [ "$n_bad" -gt 0 ] || [ "$n_ok" -lt "$n_suites" ]; then
    cat "$log"
    [ -f "$OUT/pass/regression.diffs" ] && head -n 200 "$OUT/pass/regression.diffs"
    die "make installcheck on a preloading server: exit $rc, $n_ok ok, $n_bad FAILED, $n_suites suites"
fi
[ -d "$OUT/pass/results" ] || die "pg_regress wrote no results/ into --outputdir $OUT/pass"

echo "2. make installcheck against the same server restarted without the preload"
pg_psql "$PORT" -d postgres -c "DROP DATABASE contrib_regression"
pg_stop "$DIR"
echo "shared_preload_libraries = ''" >>"$DIR/data/postgresql.conf"
pg_start "$DIR" "$PORT"
libs=$(pg_psql "$PORT" -At -d postgres -c "SHOW shared_preload_libraries")
[ -z "$libs" ] || die "the restarted server still preloads '$libs'"
start=$(date +%s)
set +e
out=$(installcheck "$OUT/fail" 2>&1)
rc=$?
set -e
secs=$(($(date +%s) - start))
echo "$out" | sed 's/^/  | /'
echo "  exit $rc in ${secs}s"
[ "$rc" -ne 0 ] || die "make installcheck passed against a server without the preload"
[ "$secs" -le 10 ] || die "make installcheck took ${secs}s to fail; it should fail at once"
grep -q "does not preload customer360" <<<"$out" || die "no 'does not preload customer360' message"
grep -q "shared_preload_libraries = 'customer360'" <<<"$out" || die "the message does not give the fix"
! grep -Eq "regress install-check|\.\.\. +(ok|FAILED)|^test " <<<"$out" || die "pg_regress ran"
[ ! -e "$OUT/fail" ] || die "pg_regress wrote $OUT/fail"
n=$(pg_psql "$PORT" -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'contrib_regression'")
[ "$n" = 0 ] || die "pg_regress created contrib_regression"

echo "3. make installcheck against the server restarted with c360.database = 'contrib_regression'"
pg_stop "$DIR"
echo "shared_preload_libraries = 'customer360'" >>"$DIR/data/postgresql.conf"
echo "c360.database = 'contrib_regression'" >>"$DIR/data/postgresql.conf"
pg_start "$DIR" "$PORT"
start=$(date +%s)
set +e
out=$(installcheck "$OUT/db" 2>&1)
rc=$?
set -e
secs=$(($(date +%s) - start))
echo "$out" | sed 's/^/  | /'
echo "  exit $rc in ${secs}s"
[ "$rc" -ne 0 ] || die "make installcheck passed with c360.database = 'contrib_regression'"
[ "$secs" -le 10 ] || die "make installcheck took ${secs}s to fail; it should fail at once"
grep -q "c360.database = 'contrib_regression'" <<<"$out" || die "no message naming c360.database"
! grep -Eq "regress install-check|\.\.\. +(ok|FAILED)|^test " <<<"$out" || die "pg_regress ran"
[ ! -e "$OUT/db" ] || die "pg_regress wrote $OUT/db"

echo "4. make installcheck with the server stopped"
pg_stop "$DIR"
set +e
out=$(installcheck "$OUT/down" 2>&1)
rc=$?
set -e
echo "$out" | sed 's/^/  | /'
[ "$rc" -ne 0 ] || die "make installcheck passed with no server"
grep -q "cannot query the server" <<<"$out" || die "no 'cannot query the server' message"
[ ! -e "$OUT/down" ] || die "pg_regress wrote $OUT/down"
written=$(find regression.diffs regression.out results -newer "$OUT/marker" 2>/dev/null || true)
[ -z "$written" ] || die "pg_regress wrote into the work tree: $written"
echo "ok"
