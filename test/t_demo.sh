#!/usr/bin/env bash
# test/t_demo.sh: `make demo` (test/demo.sh) as a smoke test of the whole pipeline.
#
# Runs the demo with C360_DEMO_NO_INSTALL=1 (test/run.sh has built and installed the
# extension already; the demo uses that build).  The demo starts servers of its own on free
# ports (a customer360 server, the shop's PostgreSQL, the CRM's MariaDB, the test Kafka
# broker), so the server of test/run.sh is not involved.  Checks:
#   1. the demo exits 0 within 300 s: each of its steps saw its expected effect within a
#      bounded poll (it fails itself otherwise), and it prints "Demo complete";
#   2. the four sources (shop postgres-cdc, crm mysql-cdc, clicks and identity kafka) are
#      streaming in the final c360.source_status, and the sink vip_to_kafka is streaming;
#      the traits cart_adds_7d and fav_category_90d are ready and segment cart_browsers exists;
#   3. the story customer's profile rows, as printed before and after each source change:
#      open_support_tickets +1 after the CRM ticket, events_last_30d +6 and
#      sessions_last_30d +2 after the cookie's identity link, total_orders +1, a higher
#      lifetime_value and lifecycle_stage active after the shop order;
#   4. the upgraded customer's tier goes to gold after the CRM update;
#   5. the sink's messages read back with kcat: the snapshot's enters, an exit for the story
#      customer, an enter for the upgraded one;
#   6. verify() is empty ("verify(): 0 differences");
#   7. the demo left nothing behind: its temp dir is gone and no process runs from it.
# Exit 0 only if every check passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

OUT=$(mktemp /tmp/t_demo.XXXXXX)
trap 'rm -f "$OUT"' EXIT
failures=()
fail() { echo "FAIL: $*"; failures+=("$*"); }

start=$(date +%s)
C360_DEMO_NO_INSTALL=1 timeout --kill-after=30 300 bash test/demo.sh </dev/null >"$OUT" 2>&1
rc=$?
secs=$(($(date +%s) - start))
cat "$OUT"
echo "---- t_demo checks (the demo took ${secs}s, exit $rc)"

# 1. exit status and the last line
[ "$rc" -eq 0 ] || fail "test/demo.sh exited with status $rc"
grep -q '^Demo complete in' "$OUT" || fail "the demo did not print 'Demo complete'"

# 2. the final status tables (the last occurrence of each source's row)
for s in shop:postgres-cdc crm:mysql-cdc clicks:kafka identity:kafka; do
    row=$(grep -E "^ +${s%%:*} +\\| ${s#*:} +\\|" "$OUT" | tail -n 1)
    [[ $row =~ \|\ streaming\ +\| ]] || fail "source ${s%%:*} is not streaming at the end: '$row'"
done
grep -Eq '^ +vip_to_kafka +\| vip_at_risk +\| streaming +\|' "$OUT" ||
    fail "the sink vip_to_kafka is not shown streaming in c360.sink_status"

# 2b. the traits step: both traits ready, the segment on one created
for t in cart_adds_7d fav_category_90d; do
    grep -Eq "^ +$t +\| behavioral_events +\|.*\| ready *$" "$OUT" || fail "trait $t is not shown ready in c360.traits"
done
grep -Eq 'cart_browsers has [0-9]+ members' "$OUT" || fail "the demo did not create segment cart_browsers"

# 3. the story customer: "Live: C0023, our top VIP at risk, ..."; its profile rows (8 columns:
# customer_id, tier, orders, ltv, stage, open_tix, events_30d, sessions_30d) in print order:
# before the ticket, after the ticket, after the identity link, after the order.
HERO=$(sed -nE 's/.*Live: (C[0-9]+), our top VIP at risk.*/\1/p' "$OUT" | head -n 1)
if [ -z "$HERO" ]; then
    fail "the demo did not name its story customer"
else
    mapfile -t rows < <(awk -F'|' -v id="$HERO" 'NF == 8 && $1 ~ "^ +" id " +$" {
        for (i = 1; i <= NF; i++) gsub(/ /, "", $i); print $3, $4, $5, $6, $7, $8 }' "$OUT")
    if [ "${#rows[@]}" -ne 4 ]; then
        fail "expected 4 profile rows of $HERO (before/after the ticket, after the link, after the order), got ${#rows[@]}"
    else
        read -r o0 l0 st0 t0 e0 s0 <<<"${rows[0]}"
        read -r o1 l1 st1 t1 e1 s1 <<<"${rows[1]}"
        read -r o2 l2 st2 t2 e2 s2 <<<"${rows[2]}"
        read -r o3 l3 st3 t3 e3 s3 <<<"${rows[3]}"
        [ "$t1" -eq $((t0 + 1)) ] || fail "open_support_tickets of $HERO went $t0 -> $t1 after the CRM ticket"
        [[ $st0 =~ ^(at_risk|lapsing)$ ]] || fail "$HERO was $st0 before the story, not at_risk/lapsing"
        [ "$e2" -eq $((e1 + 6)) ] && [ "$s2" -eq $((s1 + 2)) ] ||
            fail "after the identity link $HERO has events/sessions $e2/$s2, expected $((e1 + 6))/$((s1 + 2))"
        [ "$o3" -eq $((o2 + 1)) ] && [ "$st3" = active ] &&
            awk -v a="$l2" -v b="$l3" 'BEGIN { exit !(b > a) }' ||
            fail "after the shop order $HERO has orders $o3 (was $o2), ltv $l3 (was $l2), stage $st3 (want active)"
        echo "  $HERO: open tickets $t0 -> $t1; events/sessions $e1/$s1 -> $e2/$s2; orders $o2 -> $o3, ltv $l2 -> $l3, $st0 -> $st3"
    fi
fi
n=$(grep -c -- '-> in customer_360 .*s after the source committed it' "$OUT")
[ "$n" -eq 4 ] || fail "expected 4 source changes seen in customer_360, the demo shows $n"

# 4. the upgrade
UP=$(sed -nE 's/.*Live: the CRM upgrades (C[0-9]+) .*/\1/p' "$OUT" | head -n 1)
if [ -z "$UP" ]; then
    fail "the demo did not name the upgraded customer"
else
    tiers=$(awk -F'|' -v id="$UP" 'NF == 8 && $1 ~ "^ +" id " +$" { gsub(/ /, "", $2); printf "%s ", $2 }' "$OUT")
    [[ $tiers =~ ^(bronze|silver)\ gold\ $ ]] || fail "the tier of $UP went '$tiers', expected bronze/silver then gold"
fi

# 5. the sink's messages
enters=$(grep -cE '^ +seq [0-9]+ +enter +C[0-9]+' "$OUT")
[ "$enters" -ge 4 ] || fail "fewer than 3 snapshot enters plus the upgrade's enter on topic vip_at_risk ($enters)"
[ -n "${HERO:-}" ] && { grep -qE "^ +seq [0-9]+ +exit +$HERO " "$OUT" || fail "no exit message for $HERO read back from the topic"; }
[ -n "${UP:-}" ] && { grep -qE "^ +seq [0-9]+ +enter +$UP +gold " "$OUT" || fail "no enter message for $UP read back from the topic"; }

# 6. exactness
grep -q -- '-> verify(): 0 differences' "$OUT" || fail "the demo does not show verify() empty"

# 7. nothing left behind
DEMO_DIR=$(sed -nE 's/.*temp dir (\/tmp\/c360-demo\.[A-Za-z0-9]+).*/\1/p' "$OUT" | head -n 1)
if [ -z "$DEMO_DIR" ]; then
    fail "the demo did not print its temp dir"
else
    [ ! -e "$DEMO_DIR" ] || fail "the demo left $DEMO_DIR behind"
    left=$(ps -eo pid=,args= | grep -F "$DEMO_DIR" | grep -v grep)
    [ -z "$left" ] || fail "processes of the demo still run: $left"
fi

if [ ${#failures[@]} -gt 0 ]; then
    echo "t_demo: ${#failures[@]} check(s) failed"
    exit 1
fi
echo "t_demo: every check passed"
