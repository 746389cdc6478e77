#!/usr/bin/env python3
# bench/traits_report.py: format bench/traits.sh's measurements (one JSON document on stdin:
# the at-once backfill's timings, and per database, bench_plain and bench_traits, its apply
# chunks, timings and nested statements) as the traits report, print it and write it to the
# file named by argv[1].  Exits 1 when a verify() found differences.
import json
import statistics
import sys

from report import time_shares

TARGET_RATE = 0.7       # with traits / without, events and order changes
TARGET_BACKFILL = 2.0   # backfill / CREATE TABLE AS


def n(x):
    return f"{x:,.0f}"


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def phase(db, name):
    chunks = [c for c in (db["chunks"] or []) if c["phase"] == name]
    lat = [x for c in chunks for x in c["lat"]]
    rows = sum(c["applied"] for c in chunks)
    secs = sum(lat) / 1000
    return {"rows": rows, "seconds": secs, "rate": rows / secs if secs else float("inf"),
            "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat) if lat else 0,
            "chunk_rates": [c["applied"] / (sum(c["lat"]) / 1000) for c in chunks]}


def timings(db, name):
    return [t for t in (db["timings"] or []) if t["phase"] == name]


def main():
    doc = json.load(sys.stdin)
    plain, traits, once = doc["plain"], doc["traits"], doc["once"]["timings"] or []
    once_statements = doc["once"]["statements"] or []
    out = []
    p = out.append
    failed = False

    p(f"customer360 computed traits bench: {n(traits['profiles'])} profiles, batches of "
      f"{doc['batch']:,}, PostgreSQL {doc['server']}, {doc['cores']} cores")
    p(f"load average (1/5/15 min) at start {doc['load_start']}, at end {doc['load_end']}")
    p("the ten traits:")
    for t in traits["traits"] or []:
        p(f"  {t['name']:<20} {t['input']:<18} {t['aggregate']}"
          + (f" FILTER ({t['filter']})" if t["filter"] else "")
          + (f", lookback {t['lookback']}" if t["lookback"] else "") + f"  -> {t['type']}")
    p("")

    # 1. backfill
    ctas = [t["seconds"] for t in timings({"timings": once}, "ctas") + timings(traits, "ctas")]
    base = statistics.median(ctas)
    at_once = timings({"timings": once}, "at_once")
    t_once = sum(t["seconds"] for t in at_once)
    created = timings(traits, "chunked_create")
    t_created = sum(t["seconds"] for t in created)
    chunked = timings(traits, "chunked")
    t_chunked = sum(t["seconds"] for t in chunked)
    p(f"1. backfill of the ten traits over {n(traits['profiles'])} profiles")
    p(f"   CREATE TABLE AS of the same aggregates {base:8.2f} s  (median of "
      + ", ".join(f"{x:.2f}" for x in ctas) + " s)")
    verdict = lambda r: "met" if r <= TARGET_BACKFILL else "NOT met"
    p(f"   at once: ten create_trait         {t_once:8.2f} s  {t_once / base:6.2f} x  "
      f"target <= {TARGET_BACKFILL}: {verdict(t_once / base)}")
    p("     each (s, rows): " + ", ".join(f"{t['step']} {t['seconds']:.2f}/{n(t['rows'])}"
                                           for t in at_once))
    total = t_created + t_chunked
    p(f"   chunked: ten create_trait         {t_created:8.2f} s  (each returns 0; "
      + ", ".join(f"{t['seconds']:.2f}" for t in created) + ")")
    p(f"            CALL backfill_traits()   {t_chunked:8.2f} s  (one chunk per transaction; "
      f"column_catalog.backfilled sums to {n(chunked[0]['rows']) if chunked else '?'})")
    p(f"            together                 {total:8.2f} s  {total / base:6.2f} x  "
      f"target <= {TARGET_BACKFILL}: {verdict(total / base)}")
    v = timings({"timings": once}, "backfill")
    if v:
        p(f"   verify() after the backfill at once: {v[0]['rows']} rows ({v[0]['seconds']:.1f} s)"
          f"  {'OK' if v[0]['rows'] == 0 else 'FAILED'}")
        failed |= v[0]["rows"] != 0
    p("   the CREATE TABLE AS equals both backfills' trait columns row for row (checked)")
    for label, secs, stmts in (("at once", t_once, [s for s in once_statements if s["phase"] == "at_once"]),
                               ("chunked", t_chunked, [s for s in (traits["statements"] or [])
                                                       if s["phase"] == "chunked"])):
        p(f"   where the {label} backfill's time goes (pg_stat_statements, nested, share of its time):")
        # not the wrappers (create_trait, _trait_backfill), which contain everything
        stmts = [s for s in stmts if not s["label"].startswith(("SELECT c360.", "CALL c360."))]
        for s in sorted(stmts, key=lambda s: -s["total_ms"])[:4]:
            p(f"     {100 * s['total_ms'] / 1000 / secs:5.1f}%  {s['mean_ms']:9.1f} ms x {s['calls']:<4}"
              f" {s['rows'] / max(s['calls'], 1):8.0f} rows/call  {s['label']}")
    p("")

    # 2. apply rates
    p(f"2. apply_changes with ten traits against without: the same batches, {doc['chunks']} chunks "
      "alternating between two copies of one database")
    for i, (name, what) in enumerate((("events", "events"), ("orders", "order changes"))):
        a, b = phase(plain, name), phase(traits, name)
        ratio = b["rate"] / a["rate"]
        per_chunk = [y / x for x, y in zip(a["chunk_rates"], b["chunk_rates"])]
        p(f"   {what}: {n(a['rows'])}")
        for label, r in (("no trait", a), ("ten traits", b)):
            p(f"     {label:<11} {n(r['rate']):>7} {what}/s  {r['seconds']:7.2f} s  (batch p50 "
              f"{r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, max {r['max']:.0f} ms)")
        p(f"     ratio       {ratio:7.3f}  (p50 {a['p50'] / b['p50']:.3f}; per chunk: median "
          f"{statistics.median(per_chunk):.3f}, range {min(per_chunk):.3f}-{max(per_chunk):.3f})"
          f"  target >= {TARGET_RATE}: {'met' if ratio >= TARGET_RATE else 'NOT met'}")
    p("")

    # 3. tick and verify
    p("3. c360.tick() and verify()")
    for step in ("tick +1 s", "tick +1 h"):
        a = [t for t in timings(plain, "tick") if t["step"] == step]
        b = [t for t in timings(traits, "tick") if t["step"] == step]
        if a and b:
            p(f"   {step:<10} no trait {a[0]['seconds'] * 1000:8.1f} ms ({n(a[0]['rows'])} rows changed), "
              f"ten traits {b[0]['seconds'] * 1000:8.1f} ms ({n(b[0]['rows'])} rows changed)")
    for label, db in (("no trait", plain), ("ten traits", traits)):
        v = timings(db, "verify")
        rows = v[0]["rows"] if v else -1
        failed |= rows != 0
        p(f"   verify() {label:<10}: {rows} rows ({v[0]['seconds'] if v else 0:.1f} s)  "
          f"{'OK' if rows == 0 else 'FAILED'}")
    p("")

    p("where the time goes (pg_stat_statements, nested statements, share of phase time):")
    for ph in ("events", "orders"):
        for label, db in (("ten traits", traits), ("no trait", plain)):
            total = phase(db, ph)["seconds"] * 1000
            stmts = [s for s in (db["statements"] or []) if s["phase"] == ph]
            rows = sorted(stmts, key=lambda s: -s["total_ms"])[:6]
            rest = 100 - sum(100 * s["total_ms"] / total for s in stmts)
            p(f"  {ph}, {label}:")
            time_shares(p, rows, total, rest)

    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(sys.argv[1], "w") as f:
        f.write(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
