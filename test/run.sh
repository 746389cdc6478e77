#!/usr/bin/env bash
# test/run.sh: what `make test` runs.  Installs missing packages, builds and installs the
# extension, starts a throwaway PostgreSQL 15 cluster with customer360 preloaded, runs the
# pg_regress suites and every test/t_* integration test, and ends with "N passed, M failed".
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
. test/servers.sh

PORT=${C360_TEST_PORT:-54310}
TEST_TIMEOUT=${TEST_TIMEOUT:-1200}
# C360_ONLY=REGEX runs only the pg_regress suites and integration tests whose names match
# (for working on one test; `make test` runs everything).
ONLY=${C360_ONLY:-}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config

passed=0
failed=0
failed_names=()
DIR=

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); failed_names+=("$1"); }

server_log_tail() {
    echo "== server log (tail of $DIR/server.log) =="
    tail -n 60 "$DIR/server.log" 2>/dev/null || true
}

# Runs however the script ends; the cluster must never outlive it.  A failed run keeps DIR
# (server log, per-test logs) for a closer look.
summarized=0
finish() {
    local rc=$?
    [ -n "$DIR" ] || return 0
    if [ "$summarized" = 0 ] && [ "$rc" -ne 0 ]; then
        server_log_tail
    fi
    pg_stop "$DIR"
    if [ "$rc" -eq 0 ]; then
        rm -rf "$DIR"
    elif [ "$summarized" = 0 ]; then
        echo "logs kept in $DIR"
    fi
}
trap finish EXIT

echo "== dependencies =="
bash test/deps.sh

echo "== build =="
make -s >/dev/null
# Without root, `make install` can only work if the PostgreSQL install tree is writable; if it
# is not, a copy installed earlier (sudo make install) still serves when it is this build.
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
if [ "$(id -u)" = 0 ] || { [ -w "$pkglibdir" ] && [ -w "$sharedir/extension" ]; }; then
    make -s install >/dev/null
elif cmp -s customer360.so "$pkglibdir/customer360.so"; then
    echo "not root and $pkglibdir is not writable; the installed customer360.so matches this build"
else
    echo "not root and $pkglibdir is not writable: run 'sudo make install' (or make test as root)" >&2
    exit 1
fi

echo "== server on 127.0.0.1:$PORT =="
DIR=$(mktemp -d /tmp/c360-test.XXXXXX)
pg_start "$DIR" "$PORT" \
    "shared_preload_libraries = 'customer360'" \
    "c360.database = 'c360_workers'" \
    "c360.tick_interval = 200"
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
# tests that check what the server logged (no password, no erased id) read it here
export C360_SERVER_LOG=$DIR/server.log
# The launcher's database is part of this cluster's set-up; t_workers installs the extension
# in it.  Without it the launcher would fail and restart every few seconds.
pg_psql "$PORT" -d postgres -c "CREATE DATABASE c360_workers"

echo "== pg_regress =="
suites=()
for f in sql/*.sql; do
    case $f in sql/customer360--*) continue ;; esac
    [ -z "$ONLY" ] || [[ $(basename "$f" .sql) =~ $ONLY ]] || continue
    [ -e "$f" ] && suites+=("$f")
done
if [ ${#suites[@]} -eq 0 ]; then
    echo "no pg_regress suites (sql/*.sql besides the install script): skipped"
else
    rm -f regression.diffs
    log=$DIR/installcheck.log
    set +e
    regress=()
    for f in "${suites[@]}"; do regress+=("$(basename "$f" .sql)"); done
    make -s installcheck PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres \
        REGRESS="${regress[*]}" >"$log" 2>&1
    rc=$?
    set -e
    # PG 15 pg_regress prints one line per test: "test NAME ... ok", or within a parallel
    # group "     NAME ... FAILED"; "failed (ignored)" does not count against us.
    n_ok=0 n_bad=0
    while IFS= read -r line; do
        if [[ $line =~ ^(test[[:space:]]+|[[:space:]]+)?([^[:space:]]+)[[:space:]]+\.\.\.[[:space:]]+(ok|FAILED|failed\ \(ignored\)) ]]; then
            name=${BASH_REMATCH[2]}
            case ${BASH_REMATCH[3]} in
                FAILED) n_bad=$((n_bad + 1)); fail "regress/$name"; echo "FAILED  regress/$name" ;;
                *)      n_ok=$((n_ok + 1)); pass; echo "ok      regress/$name" ;;
            esac
        fi
    done <"$log"
    if [ "$rc" -ne 0 ] && [ "$n_bad" -eq 0 ]; then
        # pg_regress itself failed (no server, bad options): count it so it cannot pass silently.
        fail "installcheck"
        echo "FAILED  installcheck (exit $rc, no per-test failure reported)"
        cat "$log"
    fi
    if [ "$n_bad" -gt 0 ] && [ -f regression.diffs ]; then
        echo "== regression.diffs =="
        cat regression.diffs
    fi
fi

echo "== integration tests =="
shopt -s nullglob
tests=(test/t_*.sh test/t_*.py)
shopt -u nullglob
mapfile -t tests < <(printf '%s\n' "${tests[@]}" | LC_ALL=C sort)
for t in "${tests[@]}"; do
    [ -n "$t" ] || continue
    name=$(basename "$t")
    [ -z "$ONLY" ] || [[ $name =~ $ONLY ]] || continue
    case $t in *.py) cmd=(python3 "$t") ;; *) cmd=(bash "$t") ;; esac
    log=$DIR/$name.log
    printf '%-40s ' "$name"
    start=$(date +%s)
    set +e
    timeout --kill-after=30 "$TEST_TIMEOUT" "${cmd[@]}" </dev/null >"$log" 2>&1
    rc=$?
    set -e
    secs=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
        pass
        echo "ok (${secs}s)"
    else
        fail "$name"
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "FAILED: timed out after ${TEST_TIMEOUT}s"
        else
            echo "FAILED (exit $rc, ${secs}s)"
        fi
        sed "s/^/    $name| /" "$log"
    fi
done

echo
if [ "$failed" -gt 0 ]; then
    server_log_tail
    echo "logs kept in $DIR"
    echo "failed: ${failed_names[*]}"
fi
[ "$passed" -gt 0 ] || [ "$failed" -gt 0 ] || echo "no tests ran"
summarized=1
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
