#!/usr/bin/env python3
# Randomized differential test: 20,000 random changes and clock ticks in UTC, then 3,000 across
# New York's DST changes; after every step c360.customer_360 must equal the defining query,
# and its random computed traits (every input, every aggregate form, random filters and
# lookbacks from an hour to 400 days) this script's own reference computed from its model.
# Usage: python3 test/t_random_diff.py [SEED]   (PGHOST/PGPORT/PGUSER name the server)
import copy
import datetime
import decimal
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

try:
    import zoneinfo
except ImportError:  # the UTC run needs no zone data; the New York run then skips DST aiming
    zoneinfo = None

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86400 * 1000000

# Small key spaces, so that upserts, re-keys onto live keys, re-attribution and duplicate
# events happen all the time and verify() stays cheap.
CUSTOMER_IDS = ["c%03d" % i for i in range(1, 151)]
COOKIE_IDS = ["k%03d" % i for i in range(1, 81)]
STRAY_IDS = ["u%02d" % i for i in range(1, 11)]  # devices no identity link ever names
ORDER_IDS = ["o%04d" % i for i in range(1, 601)]
TICKET_IDS = ["t%03d" % i for i in range(1, 101)]
EVENT_IDS = ["e%05d" % i for i in range(1, 3001)]
IDENTITY_IDS = ["i%03d" % i for i in range(1, 121)]

COLUMNS = {
    "customers": ["customer_id", "email", "first_name", "last_name", "phone",
                  "acquisition_channel", "signup_date", "loyalty_tier", "last_updated"],
    "orders": ["order_id", "customer_id", "order_status", "total_amount", "item_count",
               "channel", "created_at", "updated_at"],
    "support_tickets": ["ticket_id", "customer_id", "status", "category", "created_at",
                        "resolved_at"],
    "behavioral_events": ["event_id", "customer_id", "session_id", "event_type", "product_id",
                          "category_id", "event_time"],
    "identity_graph": ["identity_id", "customer_id", "identity_type", "identity_value",
                       "created_at"],
}
KEY = {t: cols[0] for t, cols in COLUMNS.items()}
REQUIRED = {
    "customers": {"customer_id"},
    "orders": {"order_id", "customer_id"},
    "support_tickets": {"ticket_id", "customer_id"},
    "behavioral_events": {"event_id", "customer_id", "event_time"},
    "identity_graph": {"identity_id", "customer_id", "identity_value"},
}
KEYSPACE = {"customers": CUSTOMER_IDS, "orders": ORDER_IDS, "support_tickets": TICKET_IDS,
            "behavioral_events": EVENT_IDS, "identity_graph": IDENTITY_IDS}
INPUT_WEIGHTS = [("customers", 15), ("orders", 25), ("support_tickets", 12),
                 ("behavioral_events", 38), ("identity_graph", 10)]

# The defining query, verbatim from shared/reference/customer_360.sql (the extension carries
# its own copy inside c360.verify(); this one is independent of it).
REFERENCE_SQL = """
WITH
resolved_identity AS (
    SELECT DISTINCT ON (identity_value) identity_value, customer_id
    FROM identity_graph
    ORDER BY identity_value, created_at DESC NULLS LAST, identity_id DESC
),
attributed_events AS (
    SELECT COALESCE(ri.customer_id, e.customer_id) AS customer_id,
           e.session_id, e.event_type, e.event_time
    FROM behavioral_events e
    LEFT JOIN resolved_identity ri ON ri.identity_value = e.customer_id
),
ord AS (
    SELECT customer_id,
           count(*)                                                        AS total_orders,
           sum(total_amount)                                               AS total_spend,
           avg(total_amount)                                               AS avg_order_value,
           min(created_at)                                                 AS first_order_date,
           max(created_at)                                                 AS last_order_date,
           (array_agg(order_status ORDER BY created_at DESC, order_id DESC))[1] AS last_order_status,
           mode() WITHIN GROUP (ORDER BY channel)                          AS preferred_channel
    FROM orders
    GROUP BY customer_id
),
sup AS (
    SELECT customer_id,
           count(*) FILTER (WHERE status = 'open')                         AS open_tickets,
           count(*)                                                        AS total_tickets,
           max(created_at)                                                 AS last_ticket_at
    FROM support_tickets
    GROUP BY customer_id
),
beh AS (
    SELECT customer_id,
           count(*) FILTER (WHERE event_time > :as_of - interval '30 days') AS events_30d,
           count(*) FILTER (WHERE event_type = 'product_view'
                              AND event_time > :as_of - interval '30 days') AS product_views_30d,
           count(DISTINCT session_id)
               FILTER (WHERE event_time > :as_of - interval '30 days')      AS sessions_30d,
           max(event_time)                                                  AS last_active_at
    FROM attributed_events
    GROUP BY customer_id
)
SELECT
    c.customer_id,
    c.email,
    c.first_name,
    c.last_name,
    c.loyalty_tier,
    c.acquisition_channel,
    c.signup_date,
    COALESCE(ord.total_orders, 0)      AS total_orders,
    COALESCE(ord.total_spend, 0)       AS lifetime_value,
    COALESCE(ord.avg_order_value, 0)   AS avg_order_value,
    ord.first_order_date,
    ord.last_order_date,
    ord.last_order_status,
    ord.preferred_channel,
    COALESCE(sup.open_tickets, 0)      AS open_support_tickets,
    COALESCE(sup.total_tickets, 0)     AS total_support_tickets,
    sup.last_ticket_at,
    COALESCE(beh.events_30d, 0)        AS events_last_30d,
    COALESCE(beh.product_views_30d, 0) AS product_views_last_30d,
    COALESCE(beh.sessions_30d, 0)      AS sessions_last_30d,
    beh.last_active_at,
    CASE
        WHEN ord.last_order_date > :as_of - interval '30 days'  THEN 'active'
        WHEN ord.last_order_date > :as_of - interval '90 days'  THEN 'at_risk'
        WHEN ord.last_order_date > :as_of - interval '365 days' THEN 'lapsing'
        WHEN ord.last_order_date IS NOT NULL                    THEN 'churned'
        ELSE 'prospect'
    END                                AS lifecycle_stage,
    COALESCE(sup.open_tickets, 0) > 0  AS has_open_support_issue
FROM customers c
LEFT JOIN ord ON ord.customer_id = c.customer_id
LEFT JOIN sup ON sup.customer_id = c.customer_id
LEFT JOIN beh ON beh.customer_id = c.customer_id
"""

PROFILE_COLUMNS = (
    "customer_id, email, first_name, last_name, loyalty_tier, acquisition_channel, signup_date, "
    "total_orders, lifetime_value, avg_order_value, first_order_date, last_order_date, "
    "last_order_status, preferred_channel, open_support_tickets, total_support_tickets, "
    "last_ticket_at, events_last_30d, product_views_last_30d, sessions_last_30d, "
    "last_active_at, lifecycle_stage, has_open_support_issue")

# Rows as text on both sides: a numeric's scale (1.5 vs 1.50) is a difference.
REF_DIFF_SQL = """
WITH ref AS (SELECT r::text AS t FROM (%s) r),
     prof AS (SELECT p::text AS t FROM (SELECT %s FROM c360.customer_360) p)
SELECT d FROM (
    (SELECT 'reference: ' || t AS d FROM (SELECT t FROM ref EXCEPT ALL SELECT t FROM prof) a)
    UNION ALL
    (SELECT 'profile:   ' || t FROM (SELECT t FROM prof EXCEPT ALL SELECT t FROM ref) b)
) x ORDER BY substr(d, 12), d LIMIT %%d""" % (
    REFERENCE_SQL.replace(":as_of", "c360.as_of()"), PROFILE_COLUMNS)


class SqlError(Exception):
    pass


class Psql:
    """One long-lived psql process; each command is followed by an \\echo marker, so that its
    output ends where the marker appears and one process serves the whole run."""

    def __init__(self, dbname, log=None):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
             "-d", dbname],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8")
        self.stderr = []
        self.n = 0
        self.log = log
        threading.Thread(target=self._drain, daemon=True).start()
        self.run("\\set VERBOSITY verbose\nSET client_min_messages = warning;")

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def run(self, sql, log=True):
        """The output lines of sql; log=False keeps checks out of the replay script."""
        self.n += 1
        marker = "__c360_done_%d__" % self.n
        if self.log is not None and log:
            self.log.write(sql.rstrip() + "\n")
        try:
            self.proc.stdin.write(sql.rstrip() + "\n\\echo " + marker + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if line == "":
                self.proc.wait()
                time.sleep(0.1)  # let the stderr thread catch the last lines
                raise SqlError("".join(self.stderr).strip() or "psql exited")
            line = line.rstrip("\n")
            if line == marker:
                return lines
            lines.append(line)

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


def admin(sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql],
                   check=True, stdout=subprocess.DEVNULL)


class RawNum(str):
    """A numeric sent as a bare JSON number with exactly this text (json.dumps would turn
    Decimal into a float or a string)."""


def dumps(obj):
    def mark(v):
        if isinstance(v, RawNum):
            return "\x00N" + v
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v
    return re.sub(r'"\\u0000N([^"]*)"', r"\1", json.dumps(mark(obj), separators=(",", ":")))


# ---- computed traits ---------------------------------------------------------------------
# Random traits (c360.create_trait) over every input, and this script's own reference for
# them, computed in Python from the model of the mirrors: a trait's value for a customer is
#   <aggregate> FILTER (WHERE (<filter>) AND <time_column> > as_of - <lookback>)
# over the customer's rows of the input (events through the winning identity link).  The
# expressions below carry their SQL text and a Python evaluator with SQL's semantics
# (three-valued logic, numeric NaN and infinities, the database's collation, Postgres's
# numeric scale rules and its timestamptz - interval arithmetic in the profile's zone).

INF = float("inf")
DEC = decimal.Context(prec=400, rounding=decimal.ROUND_HALF_EVEN)
PG_TYPES = {"text": "text", "numeric": "numeric", "int": "integer", "bigint": "bigint",
            "ts": "timestamp with time zone", "bool": "boolean"}
TYPES = {
    "customers": {"customer_id": "text", "email": "text", "first_name": "text",
                  "last_name": "text", "phone": "text", "acquisition_channel": "text",
                  "signup_date": "ts", "loyalty_tier": "text", "last_updated": "ts"},
    "orders": {"order_id": "text", "customer_id": "text", "order_status": "text",
               "total_amount": "numeric", "item_count": "int", "channel": "text",
               "created_at": "ts", "updated_at": "ts"},
    "support_tickets": {"ticket_id": "text", "customer_id": "text", "status": "text",
                        "category": "text", "created_at": "ts", "resolved_at": "ts"},
    "behavioral_events": {"event_id": "text", "customer_id": "text", "session_id": "text",
                          "event_type": "text", "product_id": "text", "category_id": "text",
                          "event_time": "ts"},
    "identity_graph": {"identity_id": "text", "customer_id": "text", "identity_type": "text",
                       "identity_value": "text", "created_at": "ts"},
}
NATURAL_TIME = {"orders": "created_at", "support_tickets": "created_at",
                "behavioral_events": "event_time"}
TIME_COLUMNS = {t: [c for c, ty in cols.items() if ty == "ts"] for t, cols in TYPES.items()}


def _days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, 0 = 1 BC)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _local_to_us(local, zone):
    """A wall-clock time in zone, as Postgres reads it (DetermineTimeZoneOffset): in a
    spring-forward gap the offset before the change, in a fall-back overlap the one after."""
    if zone is None:
        return Run.us(local.replace(tzinfo=UTC))
    a = local.replace(tzinfo=zone, fold=0)
    b = local.replace(tzinfo=zone, fold=1)
    if a.utcoffset() != b.utcoffset() and \
            a.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local:
        return Run.us(b)      # ambiguous: the later offset, the one after the change
    return Run.us(a)          # unambiguous, or a gap: fold=0 takes the offset before it


_ZONES = {}


def _zone(name):
    if name == "UTC":
        return None
    if name not in _ZONES:
        _ZONES[name] = zoneinfo.ZoneInfo(name)
    return _ZONES[name]


_TS_CACHE = {}
_BC = re.compile(r"^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\+00 BC$")
_NAIVE_ZONE = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?) "
                         r"([A-Za-z_]+(?:/[A-Za-z_]+)*)$")


def ts_us(s):
    """A model timestamp text as Postgres's timestamptz: microseconds since the epoch,
    or +-INF; None for NULL."""
    if s is None:
        return None
    v = _TS_CACHE.get(s)
    if v is not None:
        return v
    if s == "infinity":
        v = INF
    elif s == "-infinity":
        v = -INF
    elif s == "epoch":
        v = 0
    elif _BC.match(s):
        y, mo, d, h, mi, se = (int(x) for x in _BC.match(s).groups())
        v = ((_days_from_civil(1 - y, mo, d) * 86400 + h * 3600 + mi * 60 + se) * 1000000)
    elif _NAIVE_ZONE.match(s):
        local, zname = _NAIVE_ZONE.match(s).groups()
        v = _local_to_us(datetime.datetime.fromisoformat(local), _zone(zname))
    else:
        d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        if d.tzinfo is None:
            raise ValueError("timestamp without zone in the model: %r" % s)
        v = Run.us(d)
    _TS_CACHE[s] = v
    return v


def pg_shift(ts, span, zone, sign):
    """ts + sign * span, span = (months, days, microseconds), as Postgres's
    timestamptz_pl_interval computes it with TimeZone = zone (timestamptz_mi_interval negates
    the span): the months on the local date (the day clamped to the month's end), then the
    days on the local date, each re-read as a local time (_local_to_us), then the
    microseconds."""
    months, days, micros = span
    if months:
        local = Run.dt(ts).astimezone(zone or UTC).replace(tzinfo=None)
        y, m = divmod(local.year * 12 + local.month - 1 + sign * months, 12)
        m += 1
        last = (datetime.date(y + m // 12, m % 12 + 1, 1) - datetime.timedelta(days=1)).day
        ts = _local_to_us(local.replace(year=y, month=m, day=min(local.day, last)), zone)
    if days:
        local = Run.dt(ts).astimezone(zone or UTC).replace(tzinfo=None)
        ts = _local_to_us(local + datetime.timedelta(days=sign * days), zone)
    return ts + sign * micros


def window_start(as_of, span, zone):
    """c360.window_start: as_of - lookback in the profile's zone."""
    return pg_shift(as_of, span, zone, -1)


def num(s):
    """A numeric's text as Postgres keeps it (no negative zero)."""
    d = decimal.Decimal(s)
    return d.copy_abs() if d.is_zero() else d


def num_key(d):
    """Postgres's numeric order: -Infinity < finite < Infinity < NaN, NaN = NaN."""
    if d.is_nan():
        return (3, 0)
    if d.is_infinite():
        return (2, 0) if d > 0 else (0, 0)
    return (1, d)


def num_text(d):
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "Infinity" if d > 0 else "-Infinity"
    if d.is_zero():
        d = d.copy_abs()
    return format(d, "f")


def num_loose(text):
    """A numeric's value without its scale (12.5 = 12.50), for the aggregates whose pick
    among equal values Postgres leaves open (min, max, mode)."""
    if text == "NULL":
        return text
    d = num(text)
    return num_text(d.normalize(DEC)) if d.is_finite() else num_text(d)


def _nbase(v):
    """Weight and first digit of a positive value in Postgres's base-10000 numeric."""
    if v == 0:
        return 0, 0
    w = v.adjusted() // 4
    return w, int(v.scaleb(-4 * w, DEC))


def pg_div(total, n):
    """numeric_div(total, n) for a finite total and a count n > 0, with Postgres's result
    scale (select_div_scale) and rounding (half away from zero): avg's text."""
    dscale = max(0, -total.as_tuple().exponent)
    w1, f1 = _nbase(abs(total))
    w2, f2 = _nbase(decimal.Decimal(n))
    qw = w1 - w2 - (1 if f1 <= f2 else 0)
    rscale = min(max(16 - qw * 4, dscale, 0), 1000)
    numer = int(abs(total).scaleb(dscale, DEC)) * 10 ** rscale
    denom = n * 10 ** dscale
    q, r = divmod(numer, denom)
    if 2 * r >= denom:
        q += 1
    digits = str(q).rjust(rscale + 1, "0")
    text = digits[:len(digits) - rscale] + ("." + digits[-rscale:] if rscale else "")
    return ("-" if total < 0 and q else "") + text


def pg_sum(vals, avg=False):
    """sum(numeric) / avg(numeric) of non-null values, as text (NULL for none)."""
    if not vals:
        return "NULL"
    nan = any(v.is_nan() for v in vals)
    pinf = any(v.is_infinite() and v > 0 for v in vals)
    ninf = any(v.is_infinite() and v < 0 for v in vals)
    if nan or (pinf and ninf):
        return "NaN"
    if pinf or ninf:
        return "Infinity" if pinf else "-Infinity"
    total = decimal.Decimal(0)
    for v in vals:
        total = DEC.add(total, v)
    return pg_div(total, len(vals)) if avg else num_text(total)


class X:
    """An expression over one input's row: its SQL text, a Python evaluator with SQL's
    semantics (None is NULL), and its type."""
    __slots__ = ("sql", "fn", "typ")

    def __init__(self, sql, fn, typ):
        self.sql, self.fn, self.typ = sql, fn, typ


def _conv(typ):
    if typ == "numeric":
        cache = {}

        def f(s):
            if s is None:
                return None
            v = cache.get(s)
            if v is None:
                v = cache[s] = num(s)
            return v
        return f
    if typ == "int":
        return lambda s: None if s is None else int(s)
    if typ == "ts":
        return ts_us
    return lambda s: s


def col(table, name):
    conv = _conv(TYPES[table][name])
    return X(name, lambda r: conv(r[name]), TYPES[table][name])


def lit(v):
    if isinstance(v, str):
        return X("'%s'" % v.replace("'", "''"), lambda r: v, "text")
    if isinstance(v, int):
        return X(str(v), lambda r: v, "int")
    return X(num_text(v), lambda r: v, "numeric")


class Ranks:
    """The database collation's order of every text value the runs can produce."""
    rank = {}

    @classmethod
    def key(cls, s):
        try:
            return cls.rank[s]
        except KeyError:
            raise KeyError("text value %r is not in the collation ranks (TEXT_VOCAB)" % s)


def sort_key(typ):
    if typ == "text":
        return Ranks.key
    if typ == "numeric":
        return num_key
    if typ in ("int", "ts", "bool"):
        return lambda v: v
    raise ValueError(typ)


def cmp(a, op, b):
    """a op b; numeric and int operands compare as numeric."""
    typ = "numeric" if {a.typ, b.typ} == {"numeric", "int"} else a.typ
    if typ == "numeric":
        ca = (lambda r: a.fn(r)) if a.typ == "numeric" else (
            lambda r: None if a.fn(r) is None else decimal.Decimal(a.fn(r)))
        cb = (lambda r: b.fn(r)) if b.typ == "numeric" else (
            lambda r: None if b.fn(r) is None else decimal.Decimal(b.fn(r)))
    else:
        ca, cb = a.fn, b.fn
    key = sort_key(typ) if op not in ("=", "<>") or typ == "numeric" else (lambda v: v)
    test = {"=": lambda x, y: x == y, "<>": lambda x, y: x != y, "<": lambda x, y: x < y,
            "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}[op]

    def f(r):
        x, y = ca(r), cb(r)
        if x is None or y is None:
            return None
        return test(key(x), key(y))
    return X("%s %s %s" % (a.sql, op, b.sql), f, "bool")


def in_list(a, values):
    vs = set(values)

    def f(r):
        x = a.fn(r)
        return None if x is None else x in vs
    return X("%s IN (%s)" % (a.sql, ", ".join(lit(v).sql for v in values)), f, "bool")


def is_null(a, negate=False):
    return X("%s IS %sNULL" % (a.sql, "NOT " if negate else ""),
             lambda r: (a.fn(r) is None) != negate, "bool")


def distinct_from(a, v):
    return X("%s IS DISTINCT FROM %s" % (a.sql, lit(v).sql), lambda r: a.fn(r) != v, "bool")


def like(a, pattern):
    """LIKE with one % at the start or the end (and no _ in the pattern)."""
    assert "_" not in pattern and pattern.count("%") == 1
    core = pattern.strip("%")
    test = (lambda s: s.startswith(core)) if pattern.endswith("%") else (lambda s: s.endswith(core))

    def f(r):
        x = a.fn(r)
        return None if x is None else test(x)
    return X("%s LIKE %s" % (a.sql, lit(pattern).sql), f, "bool")


def and_(a, b):
    def f(r):
        x, y = a.fn(r), b.fn(r)
        if x is False or y is False:
            return False
        return None if x is None or y is None else True
    return X("(%s) AND (%s)" % (a.sql, b.sql), f, "bool")


def or_(a, b):
    def f(r):
        x, y = a.fn(r), b.fn(r)
        if x is True or y is True:
            return True
        return None if x is None or y is None else False
    return X("(%s) OR (%s)" % (a.sql, b.sql), f, "bool")


def not_(a):
    return X("NOT (%s)" % a.sql, lambda r: None if a.fn(r) is None else not a.fn(r), "bool")


def length(a):
    return X("length(%s)" % a.sql, lambda r: None if a.fn(r) is None else len(a.fn(r)), "int")


def lower(a):
    return X("lower(%s)" % a.sql, lambda r: None if a.fn(r) is None else a.fn(r).lower(), "text")


def coalesce(a, v):
    b = lit(v)
    return X("coalesce(%s, %s)" % (a.sql, b.sql),
             lambda r: b.fn(r) if a.fn(r) is None else a.fn(r), a.typ)


def case01(cond):
    return X("CASE WHEN %s THEN 1 ELSE 0 END" % cond.sql,
             lambda r: 1 if cond.fn(r) is True else 0, "int")


class Agg:
    """A trait's aggregate: form (as c360.column_catalog.func names it), argument, and for
    'first' the ordering.  value(rows, key) is the aggregate over rows (already filtered),
    as the text the check fetches (see Trait.fetch_sql)."""

    def __init__(self, form, x=None, order=None, desc=None):
        self.form, self.x, self.order, self.desc = form, x, order, desc
        if form == "count_star":
            self.sql = "count(*)"
        elif form == "count_distinct":
            self.sql = "count(DISTINCT %s)" % x.sql
        elif form == "mode":
            self.sql = "mode() WITHIN GROUP (ORDER BY %s)" % x.sql
        elif form == "first":
            self.sql = "(array_agg(%s ORDER BY %s%s))[1]" % (
                x.sql, order.sql, {None: "", False: " ASC", True: " DESC"}[desc])
        else:
            self.sql = "%s(%s)" % (form, x.sql)
        if form.startswith("count"):
            self.typ = "bigint"
        elif form in ("bool_or", "bool_and"):
            self.typ = "bool"
        elif form == "avg":
            self.typ = "numeric"
        elif form == "sum":
            self.typ = "numeric" if x.typ == "numeric" else "bigint"
        else:
            self.typ = x.typ
        # min, max and mode of numerics: which of equal values (12.5, 12.50) Postgres
        # returns is left open, so those compare by value
        self.loose = self.typ == "numeric" and form in ("min", "max", "mode")

    def value(self, rows, rowkey):
        form = self.form
        if form == "count_star":
            return str(len(rows))
        if form == "first":
            if not rows:
                return "NULL"
            ok, ox = sort_key(self.order.typ), self.order.fn
            if self.desc:
                # DESC puts NULLs first; ties go to the key, descending
                best = max(rows, key=lambda r: (ox(r) is None, 0 if ox(r) is None else ok(ox(r)),
                                                Ranks.key(rowkey(r))))
            else:
                best = min(rows, key=lambda r: (ox(r) is None, 0 if ox(r) is None else ok(ox(r)),
                                                -Ranks.key(rowkey(r))))
            return render(self.x.fn(best), self.typ)
        vals = [v for v in (self.x.fn(r) for r in rows) if v is not None]
        if form == "count":
            return str(len(vals))
        if form == "count_distinct":
            k = num_key if self.x.typ == "numeric" else (lambda v: v)
            return str(len({k(v) for v in vals}))
        if not vals:
            return "NULL"
        if form in ("sum", "avg"):
            if self.x.typ == "numeric":
                return pg_sum(vals, form == "avg")
            if form == "sum":
                return str(sum(vals))
            return pg_div(decimal.Decimal(sum(vals)), len(vals))
        if form == "bool_or":
            return render(any(vals), "bool")
        if form == "bool_and":
            return render(all(vals), "bool")
        k = sort_key(self.x.typ)
        if form == "min":
            v = min(vals, key=k)
        elif form == "max":
            v = max(vals, key=k)
        elif form == "mode":
            # the most frequent value; among equally frequent ones the first in order
            counts = {}
            for x in vals:
                counts[x] = counts.get(x, 0) + 1
            v = min(counts, key=lambda x: (-counts[x], k(x)))
        else:
            raise ValueError(form)
        out = render(v, self.typ)
        return num_loose(out) if self.loose else out


def render(v, typ):
    """A value as the check fetches it: quote_nullable for text, epoch microseconds for
    timestamps, Postgres's text otherwise; NULL as NULL."""
    if v is None:
        return "NULL"
    if typ == "text":
        assert "\\" not in v
        return "'%s'" % v.replace("'", "''")
    if typ == "ts":
        return "infinity" if v == INF else "-infinity" if v == -INF else str(v)
    if typ == "bool":
        return "true" if v else "false"
    if typ == "numeric":
        return num_text(v)
    return str(v)


def _templates():
    """Per input and aggregate form, the aggregates the random traits choose from; and per
    input the filters.  Every input has every form."""
    A = Agg
    o = lambda c: col("orders", c)
    s = lambda c: col("support_tickets", c)
    e = lambda c: col("behavioral_events", c)
    cu = lambda c: col("customers", c)
    ig = lambda c: col("identity_graph", c)
    aggs = {
        "orders": {
            "count_star": [A("count_star")],
            "count": [A("count", o("channel")), A("count", o("total_amount")),
                      A("count", o("updated_at"))],
            "count_distinct": [A("count_distinct", o("channel")),
                               A("count_distinct", o("order_status")),
                               A("count_distinct", o("total_amount")),
                               A("count_distinct", o("item_count"))],
            "sum": [A("sum", o("total_amount")), A("sum", o("item_count"))],
            "avg": [A("avg", o("total_amount")), A("avg", o("item_count"))],
            "min": [A("min", o("total_amount")), A("min", o("created_at")),
                    A("min", o("order_status")), A("min", o("item_count"))],
            "max": [A("max", o("total_amount")), A("max", o("updated_at")),
                    A("max", o("channel"))],
            "bool_or": [A("bool_or", cmp(o("total_amount"), ">", lit(100))),
                        A("bool_or", cmp(o("order_status"), "=", lit("returned")))],
            "bool_and": [A("bool_and", cmp(o("item_count"), ">", lit(0))),
                         A("bool_and", in_list(o("channel"), ["web", "mobile"]))],
            "mode": [A("mode", o("channel")), A("mode", o("order_status")),
                     A("mode", o("item_count"))],
            "first": [A("first", o("order_status"), o("created_at"), True),
                      A("first", o("total_amount"), o("created_at"), None),
                      A("first", o("channel"), o("total_amount"), True),
                      A("first", o("item_count"), o("updated_at"), False),
                      A("first", o("created_at"), o("item_count"), True),
                      A("first", o("total_amount"), o("channel"), None),
                      A("first", o("order_id"), o("item_count"), False)],
        },
        "support_tickets": {
            "count_star": [A("count_star")],
            "count": [A("count", s("resolved_at")), A("count", s("category"))],
            "count_distinct": [A("count_distinct", s("category")),
                               A("count_distinct", lower(s("status")))],
            "sum": [A("sum", length(s("category"))),
                    A("sum", case01(cmp(s("status"), "=", lit("open"))))],
            "avg": [A("avg", length(s("status")))],
            "min": [A("min", s("resolved_at")), A("min", s("category"))],
            "max": [A("max", s("created_at")), A("max", s("status"))],
            "bool_or": [A("bool_or", cmp(s("status"), "=", lit("open")))],
            "bool_and": [A("bool_and", is_null(s("resolved_at"), negate=True)),
                         A("bool_and", cmp(s("resolved_at"), ">", s("created_at")))],
            "mode": [A("mode", s("category")), A("mode", s("status"))],
            "first": [A("first", s("status"), s("created_at"), True),
                      A("first", s("category"), s("resolved_at"), None),
                      A("first", s("ticket_id"), s("category"), True),
                      A("first", s("created_at"), s("status"), None)],
        },
        "behavioral_events": {
            "count_star": [A("count_star")],
            "count": [A("count", e("product_id")), A("count", e("session_id"))],
            "count_distinct": [A("count_distinct", e("session_id")),
                               A("count_distinct", e("product_id")),
                               A("count_distinct", e("event_type"))],
            "sum": [A("sum", case01(cmp(e("event_type"), "=", lit("purchase")))),
                    A("sum", length(e("session_id")))],
            "avg": [A("avg", length(e("session_id"))),
                    A("avg", case01(in_list(e("event_type"), ["add_to_cart", "purchase"])))],
            "min": [A("min", e("event_time")), A("min", e("category_id"))],
            "max": [A("max", e("event_time")), A("max", e("product_id"))],
            "bool_or": [A("bool_or", cmp(e("event_type"), "=", lit("purchase")))],
            "bool_and": [A("bool_and", is_null(e("session_id"), negate=True))],
            "mode": [A("mode", e("event_type")), A("mode", e("category_id"))],
            "first": [A("first", e("product_id"), e("event_time"), True),
                      A("first", e("event_type"), e("event_time"), None),
                      A("first", e("session_id"), e("event_time"), True),
                      A("first", e("event_time"), e("category_id"), False),
                      A("first", e("event_id"), e("event_type"), True),
                      A("first", e("product_id"), e("category_id"), True)],
        },
        "customers": {
            "count_star": [A("count_star")],
            "count": [A("count", cu("email")), A("count", cu("phone"))],
            "count_distinct": [A("count_distinct", cu("loyalty_tier"))],
            "sum": [A("sum", length(cu("email")))],
            "avg": [A("avg", length(cu("first_name")))],
            "min": [A("min", cu("signup_date")), A("min", cu("first_name"))],
            "max": [A("max", cu("last_updated")), A("max", cu("loyalty_tier"))],
            "bool_or": [A("bool_or", cmp(cu("loyalty_tier"), "=", lit("gold")))],
            "bool_and": [A("bool_and", is_null(cu("phone"), negate=True))],
            "mode": [A("mode", cu("acquisition_channel"))],
            "first": [A("first", cu("loyalty_tier"), cu("signup_date"), True)],
        },
        "identity_graph": {
            "count_star": [A("count_star")],
            "count": [A("count", ig("created_at")), A("count", ig("identity_type"))],
            "count_distinct": [A("count_distinct", ig("identity_value")),
                               A("count_distinct", ig("identity_type"))],
            "sum": [A("sum", length(ig("identity_value")))],
            "avg": [A("avg", length(ig("identity_type")))],
            "min": [A("min", ig("identity_value")), A("min", ig("created_at"))],
            "max": [A("max", ig("created_at")), A("max", ig("identity_type"))],
            "bool_or": [A("bool_or", cmp(ig("identity_type"), "=", lit("cookie")))],
            "bool_and": [A("bool_and", like(ig("identity_value"), "k%"))],
            "mode": [A("mode", ig("identity_type"))],
            "first": [A("first", ig("identity_value"), ig("created_at"), True),
                      A("first", ig("identity_type"), ig("identity_id"), False),
                      A("first", ig("identity_id"), ig("identity_type"), True),
                      A("first", ig("identity_value"), ig("identity_type"), None)],
        },
    }
    filters = {
        "orders": [cmp(o("order_status"), "=", lit("shipped")),
                   in_list(o("order_status"), ["delivered", "shipped"]),
                   cmp(o("total_amount"), ">", lit(20)),
                   and_(cmp(o("total_amount"), ">=", lit(decimal.Decimal("100.5"))),
                        cmp(o("channel"), "<>", lit("store"))),
                   cmp(o("item_count"), ">=", lit(3)),
                   distinct_from(o("order_status"), "cancelled"),
                   is_null(o("channel")),
                   cmp(coalesce(o("item_count"), 0), "<", lit(2)),
                   cmp(o("updated_at"), ">", o("created_at")),
                   or_(cmp(o("channel"), "=", lit("web")),
                       not_(cmp(o("total_amount"), "<", lit(50))))],
        "support_tickets": [cmp(s("status"), "=", lit("open")),
                            cmp(lower(s("status")), "=", lit("open")),
                            in_list(s("category"), ["billing", "returns"]),
                            is_null(s("resolved_at")),
                            cmp(s("resolved_at"), ">", s("created_at"))],
        "behavioral_events": [cmp(e("event_type"), "=", lit("product_view")),
                              in_list(e("event_type"), ["product_view", "add_to_cart"]),
                              is_null(e("product_id"), negate=True),
                              is_null(e("session_id")),
                              cmp(e("category_id"), "<", lit("cat10")),
                              like(e("customer_id"), "k%")],
        "customers": [in_list(cu("loyalty_tier"), ["gold", "platinum"]),
                      like(cu("email"), "%@example.com"),
                      cmp(cu("acquisition_channel"), "=", lit("paid_search")),
                      is_null(cu("phone"), negate=True)],
        "identity_graph": [cmp(ig("identity_type"), "=", lit("cookie")),
                           like(ig("identity_value"), "k%"),
                           or_(is_null(ig("identity_type")),
                               cmp(ig("identity_type"), "<>", lit("email")))],
    }
    return aggs, filters


TEMPLATES = _templates()
FORMS = ["count_star", "count", "count_distinct", "sum", "avg", "min", "max", "bool_or",
         "bool_and", "mode", "first"]


def text_vocab():
    """Every text value the generator can put in a mirror (for the collation ranks)."""
    v = set(CUSTOMER_IDS + COOKIE_IDS + STRAY_IDS + ORDER_IDS + TICKET_IDS + EVENT_IDS +
            IDENTITY_IDS)
    v |= {"%s@example.com" % c for c in CUSTOMER_IDS} | {"%s@mail.test" % c for c in CUSTOMER_IDS}
    v |= {"", "Ann", "Bob", "Zoë", "Li", "José", "O'Brien", "Smith", "Ng", "Müller", "Kowalski",
          "organic", "paid_search", "social", "referral", "bronze", "silver", "gold", "platinum",
          "placed", "shipped", "delivered", "cancelled", "returned", "web", "mobile", "store",
          "phone", "open", "closed", "pending", "Open", "billing", "shipping", "returns",
          "account", "product_view", "page_view", "add_to_cart", "purchase", "search",
          "cookie", "device", "email", "cat10"}
    v |= {"p%03d" % i for i in range(1, 201)} | {"cat%02d" % i for i in range(1, 21)}
    v |= {"s%03d" % i for i in range(1, 401)}
    v |= {"s-%s-%d" % (c, i) for c in CUSTOMER_IDS + COOKIE_IDS + STRAY_IDS for i in range(5)}
    return sorted(v)


class Trait:
    def __init__(self, name, table, agg, filt, lookback, time_column):
        self.name, self.table, self.agg, self.filt = name, table, agg, filt
        self.lookback = lookback          # None, or (sql text, (months, days, microseconds))
        self.time_column = time_column    # as passed to create_trait (None: the default)
        self.tc = time_column or (NATURAL_TIME.get(table) if lookback else None)
        self.tfn = ts_us if self.tc else None
        key = KEY[table]
        self.rowkey = lambda r: r[key]

    def describe(self):
        return "%s: %s over %s%s%s%s" % (
            self.name, self.agg.sql, self.table,
            " FILTER (%s)" % self.filt.sql if self.filt else "",
            " lookback '%s'" % self.lookback[0] if self.lookback else "",
            " on %s" % self.tc if self.lookback else "")

    def create_sql(self):
        q = lambda s: "NULL" if s is None else "$q$%s$q$" % s
        return "SELECT c360.create_trait(%s, %s, %s, %s, %s, %s);" % (
            q(self.name), q(self.table), q(self.agg.sql), q(self.filt.sql if self.filt else None),
            q(self.lookback[0] if self.lookback else None), q(self.time_column))

    def fetch_sql(self):
        c = "p.%s" % self.name
        if self.agg.typ == "text":
            return "quote_nullable(%s)" % c
        if self.agg.typ == "ts":
            return ("CASE WHEN %s IS NULL THEN 'NULL' WHEN isfinite(%s) THEN "
                    "(extract(epoch FROM %s) * 1000000)::bigint::text ELSE %s::text END"
                    % (c, c, c, c))
        return "COALESCE(%s::text, 'NULL')" % c

    def expected(self, rows, bound):
        ffn = self.filt.fn if self.filt else None
        tfn = self.tfn
        tc = self.tc
        if ffn or bound is not None:
            rows = [r for r in rows
                    if (ffn is None or ffn(r) is True)
                    and (bound is None or (r[tc] is not None and tfn(r[tc]) > bound))]
        return self.agg.value(rows, self.rowkey)



class Run:
    """One database, one random stream, one model of what the mirrors must hold."""

    def __init__(self, name, seed, tz, start, changes, max_batch, tick_every, step_policy,
                 max_jump):
        self.name = name
        self.seed = seed
        self.rng = random.Random("%s-%s" % (seed, name))
        self.tz = tz
        self.zone = zoneinfo.ZoneInfo(tz) if zoneinfo and tz != "UTC" else None
        self.start = start
        self.target_changes = changes
        self.max_batch = max_batch
        self.tick_every = tick_every
        self.step_policy = step_policy    # log2 of the random step's seconds: (lo, hi)
        self.max_jump = max_jump
        self.model = {t: {} for t in COLUMNS}
        self.ts_pool = []      # instants already used, for ties
        self.stamps = {}       # customer_id -> (profile_updated_at, row image) at the last check
        self.foreign_tz = None  # the session's TimeZone for this step, when not the profile's
        self.clock = None      # c360.as_of() in microseconds since the epoch
        self.dbname = "c360_rand_%s_%s_%d" % (name.lower(), seed, os.getpid())
        self.logpath = "/tmp/%s.sql" % self.dbname
        self.stats = {"batches": 0, "changes": 0, "ticks": 0, "rollbacks": 0, "poisoned": 0}
        self.dst = self._dst_instants() if self.zone else []
        # Computed traits: the live ones (Trait), their states as the last check read them,
        # and whether the mid-run set was made.  A run whose zone data is missing has none
        # (the reference needs the zone's rules).
        self.traits_on = tz == "UTC" or self.zone is not None
        self.traits = []
        self.trait_seq = 0
        self.trait_state = {}
        self.mid_done = False
        self.chunk = 10000          # c360.trait_backfill_chunk in this session
        self.routine_checks = 0
        self.trait_cache = {}       # (trait, customer) -> (bound, row ids, rows, value)
        self.stats.update({"trait_values": 0, "backfill_steps": 0})

    # ---- time -------------------------------------------------------------------------
    def _dst_instants(self):
        """UTC instants (us) of the zone's offset changes in 2029..2032."""
        out = []
        t = datetime.datetime(2029, 1, 1, tzinfo=UTC)
        prev = t.astimezone(self.zone).utcoffset()
        while t.year < 2033:
            t2 = t + datetime.timedelta(hours=1)
            off = t2.astimezone(self.zone).utcoffset()
            if off != prev:
                out.append(self.us(t2))
                prev = off
            t = t2
        return out

    @staticmethod
    def us(dt):
        return (dt - EPOCH) // datetime.timedelta(microseconds=1)

    @staticmethod
    def dt(us):
        return EPOCH + datetime.timedelta(microseconds=us)

    def shift_days(self, us, days):
        """Postgres's ts + interval 'N days' in the profile's zone (close enough to aim at
        window bounds; the oracles never rely on it)."""
        if self.zone is None:
            return us + days * DAY_US
        local = self.dt(us).astimezone(self.zone).replace(tzinfo=None)
        local += datetime.timedelta(days=days)
        return self.us(local.replace(tzinfo=self.zone))

    def instant(self):
        rng = self.rng
        r = rng.random()
        if r < 0.10 and self.ts_pool:
            us = rng.choice(self.ts_pool)                       # a tie
        elif r < 0.17 or (self.dst and r < 0.30):
            # a window bound: the profile's 30/90/365 days, or a trait's lookback
            spans = self.trait_spans()
            if spans and rng.random() < 0.6:
                us = window_start(self.clock, rng.choice(spans)[1], self.zone)
            else:
                us = window_start(self.clock, (0, rng.choice([30, 30, 90, 365]), 0), self.zone)
            # On a bound, next to it, and (more often where the zone has DST) within the
            # hour a DST change moves it by.
            us += rng.choice([0, 0, 0, -1, 1, -1000000, 1000000] +
                             [-1800000000, 1800000000, -3000000000, 3000000000] *
                             (3 if self.dst else 1))
        elif r < 0.35 and self.dst:
            t = rng.choice(self.dst)
            spans = self.trait_spans()
            if spans and rng.random() < 0.5:
                t = pg_shift(t, rng.choice(spans)[1], self.zone, rng.choice([-1, -1, 1]))
            else:
                t = self.shift_days(t, rng.choice([0, 0, -30, -90, -365, 30]))
            us = t + rng.randint(-3, 3) * 1800 * 1000000
        elif r < 0.55:
            us = self.clock - rng.randint(0, 40 * DAY_US)
        elif r < 0.62:
            us = self.clock + rng.randint(0, 30 * DAY_US)
        else:
            us = self.clock + rng.randint(-450 * DAY_US, 300 * DAY_US)
        if rng.random() < 0.7:
            us -= us % 1000000
        if len(self.ts_pool) < 400:
            self.ts_pool.append(us)
        else:
            self.ts_pool[rng.randrange(400)] = us
        return us

    def ts_text(self, us):
        rng = self.rng
        d = self.dt(us)
        r = rng.random()
        if r < 0.45:
            s = d.strftime("%Y-%m-%dT%H:%M:%S")
            frac = ".%06d" % d.microsecond if d.microsecond else ""
            return s + frac + "Z"
        if r < 0.85:
            off = rng.choice([-8, -5, -3, 0, 1, 2, 5.5, 9])
            tz = datetime.timezone(datetime.timedelta(hours=off))
            return d.astimezone(tz).isoformat(sep=rng.choice(["T", " "]))
        if self.foreign_tz:
            return d.isoformat()
        # No offset: read in the session TimeZone, like a naive timestamp from a source.
        zone = self.zone or UTC
        return d.astimezone(zone).replace(tzinfo=None).isoformat(sep=" ")

    def ts(self, nullable=True):
        r = self.rng.random()
        if nullable and r < 0.08:
            return None
        if r > 0.997:
            # Special values are timestamps too: windows and stage bounds must cope.
            return self.pick("infinity", "-infinity", "epoch", "0044-03-15 12:00:00+00 BC")
        return self.ts_text(self.instant())

    # ---- values -----------------------------------------------------------------------
    def maybe(self, v, p=0.12):
        return None if self.rng.random() < p else v

    def pick(self, *choices):
        return self.rng.choice(choices)

    def numeric(self):
        rng = self.rng
        r = rng.random()
        if r < 0.08:
            return None
        if r < 0.09:
            return self.pick("NaN", "Infinity", "-Infinity", "0", "-0.00", "123456789012.123456789")
        cents = rng.randint(-500, 50000) if rng.random() < 0.05 else rng.randint(0, 30000)
        base = "%d.%02d" % divmod(cents, 100) if cents >= 0 else "-%d.%02d" % divmod(-cents, 100)
        form = rng.random()
        if form < 0.3:
            text = base.rstrip("0").rstrip(".") if "." in base else base   # 12.5, 12
        elif form < 0.5:
            text = base + "0" * rng.randint(1, 3)                           # 12.500
        else:
            text = base                                                     # 12.50
        return RawNum(text) if rng.random() < 0.6 else text

    def customer_id(self):
        return self.rng.choice(CUSTOMER_IDS)

    def full_row(self, table, key):
        rng = self.rng
        if table == "customers":
            return {
                "customer_id": key,
                "email": self.maybe(self.pick("%s@example.com" % key, "%s@mail.test" % key, "")),
                "first_name": self.maybe(self.pick("Ann", "Bob", "Zoë", "Li", "José", "")),
                "last_name": self.maybe(self.pick("O'Brien", "Smith", "Ng", "Müller", "Kowalski")),
                "phone": self.maybe("+1-555-%04d" % rng.randint(0, 9999)),
                "acquisition_channel": self.maybe(self.pick("organic", "paid_search", "social", "referral")),
                "signup_date": self.ts(),
                "loyalty_tier": self.maybe(self.pick("bronze", "silver", "gold", "platinum")),
                "last_updated": self.ts(),
            }
        if table == "orders":
            ic = self.maybe(rng.randint(0, 12))
            return {
                "order_id": key,
                "customer_id": self.customer_id(),
                "order_status": self.maybe(self.pick("placed", "shipped", "delivered", "cancelled", "returned")),
                "total_amount": self.numeric(),
                "item_count": str(ic) if ic is not None and rng.random() < 0.3 else ic,
                "channel": self.maybe(self.pick("web", "mobile", "store", "phone")),
                "created_at": self.ts(),
                "updated_at": self.ts(),
            }
        if table == "support_tickets":
            return {
                "ticket_id": key,
                "customer_id": self.customer_id(),
                "status": self.maybe(self.pick("open", "open", "closed", "pending", "Open")),
                "category": self.maybe(self.pick("billing", "shipping", "returns", "account")),
                "created_at": self.ts(),
                "resolved_at": self.ts(),
            }
        if table == "behavioral_events":
            r = rng.random()
            raw = (self.customer_id() if r < 0.55 else
                   rng.choice(COOKIE_IDS) if r < 0.95 else rng.choice(STRAY_IDS))
            return {
                "event_id": key,
                "customer_id": raw,
                "session_id": self.session_for(raw),
                "event_type": self.maybe(self.pick("product_view", "product_view", "product_view",
                                                   "page_view", "add_to_cart", "purchase", "search"), 0.05),
                "product_id": self.maybe("p%03d" % rng.randint(1, 200)),
                "category_id": self.maybe("cat%02d" % rng.randint(1, 20)),
                "event_time": self.ts(nullable=False),
            }
        if table == "identity_graph":
            return {
                "identity_id": key,
                "customer_id": self.customer_id(),
                "identity_type": self.maybe(self.pick("cookie", "device", "email")),
                "identity_value": self.identity_value(),
                "created_at": self.ts(),
            }
        raise ValueError(table)

    def identity_value(self):
        return self.rng.choice(COOKIE_IDS) if self.rng.random() < 0.7 else self.customer_id()

    def owner(self, raw):
        """The customer the raw id's events currently belong to, per the model's links."""
        best = None
        for link in self.model["identity_graph"].values():
            if link["identity_value"] != raw:
                continue
            k = (link["created_at"] is not None, self.parse_ts(link["created_at"]), link["identity_id"])
            if best is None or k > best[0]:
                best = (k, link["customer_id"])
        return best[1] if best else raw

    def parse_ts(self, s):
        if s is None:
            return 0
        try:
            d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            return 0
        if d.tzinfo is None:
            d = d.replace(tzinfo=self.zone or UTC)
        return self.us(d)

    def session_for(self, raw):
        """Sessions mostly follow the customer the raw id resolves to, so that one session
        spans a cookie and its customer and sessions must be counted distinct across ids."""
        rng = self.rng
        r = rng.random()
        if r < 0.1:
            return None
        if r < 0.55 and self.model["identity_graph"]:
            return "s-%s-%d" % (self.owner(raw), rng.randint(0, 4))
        return "s%03d" % rng.randint(1, 400)

    # ---- changes ----------------------------------------------------------------------
    def existing_key(self, table):
        m = self.model[table]
        if not m:
            return None
        for _ in range(30):
            k = self.rng.choice(KEYSPACE[table])
            if k in m:
                return k
        return self.rng.choice(list(m))

    def missing_key(self, table):
        m = self.model[table]
        for _ in range(30):
            k = self.rng.choice(KEYSPACE[table])
            if k not in m:
                return k
        return None

    def insert_image(self, row, table):
        """An insert image may leave out nullable columns (they become NULL) and carry
        columns the profile does not know (ignored)."""
        img = {}
        for c, v in row.items():
            if v is None and c not in REQUIRED[table] and self.rng.random() < 0.5:
                continue
            img[c] = v
        if self.rng.random() < 0.05:
            img["_source_extra"] = self.pick("x", 1, None)
        return img

    def old_image(self, table, key):
        """CDC sends either the key alone or the whole old row."""
        if key in self.model[table] and self.rng.random() < 0.3:
            return dict(self.model[table][key])
        return {KEY[table]: key}

    def gen_change(self, table):
        rng = self.rng
        key = KEY[table]
        r = rng.random()
        ex = self.existing_key(table)
        if table == "behavioral_events":
            if self.events_insert_only:
                r *= 0.67
            if r < 0.55 or ex is None:
                # A random id: the mirror settles at about 80% of the key space, new events
                # keep coming and some inserts are duplicates of older ones.
                k = rng.choice(EVENT_IDS)
                self.batch_events.append(k)
                return {"op": "insert", "new": self.insert_image(self.full_row(table, k), table)}
            if r < 0.67:
                # A producer retry, sometimes with different content: the first one stays.
                # Often a retry of an event of this very batch.
                if self.batch_events and rng.random() < 0.5:
                    ex = rng.choice(self.batch_events)
                row = self.full_row(table, ex)
                if rng.random() < 0.5 and ex in self.model[table]:
                    row = dict(self.model[table][ex])
                return {"op": "insert", "new": row}
            if r < 0.92:
                return {"op": "delete", "old": self.old_image(table, ex if rng.random() < 0.85
                                                              else rng.choice(EVENT_IDS))}
            return self.gen_update(table, ex)
        if r < 0.22:
            k = self.missing_key(table) or rng.choice(KEYSPACE[table])
            return {"op": "insert", "new": self.insert_image(self.full_row(table, k), table)}
        if r < 0.35 and ex is not None:
            return {"op": "insert", "new": self.insert_image(self.full_row(table, ex), table)}
        if r < 0.50:
            k = ex if ex is not None and rng.random() < 0.85 else rng.choice(KEYSPACE[table])
            return {"op": "delete", "old": self.old_image(table, k)}
        if ex is None:
            k = rng.choice(KEYSPACE[table])
            return {"op": "insert", "new": self.full_row(table, k)}
        return self.gen_update(table, ex)

    def gen_update(self, table, ex):
        rng = self.rng
        key = KEY[table]
        cols = COLUMNS[table]
        r = rng.random()
        if r < 0.08:
            # An update of a key that is not there: only a full image can make a row of it.
            k = self.missing_key(table) or ex
            new = self.full_row(table, k)
            if k in self.model[table]:
                new = self.insert_image(new, table)
            return {"op": "update", "old": {key: k}, "new": new}
        fresh = self.full_row(table, ex)
        if r < 0.12:
            # Nothing really changes: the key alone, or the stored row again.
            new = {key: ex} if rng.random() < 0.5 else dict(self.model[table][ex])
            return {"op": "update", "old": self.old_image(table, ex), "new": new}
        if r < 0.35:
            new = fresh                                           # full image
        else:
            # Partial image: a few columns, the customer id moving often.
            n = rng.randint(1, 3)
            chosen = set(rng.sample(cols[1:], n))
            if table != "customers" and rng.random() < 0.4:
                chosen.add("customer_id")
            if table == "identity_graph" and rng.random() < 0.3:
                chosen.add("identity_value")
            new = {c: fresh[c] for c in cols if c in chosen}
            if rng.random() < 0.5:
                new[key] = ex
        old = self.old_image(table, ex)
        if rng.random() < 0.15:
            # The key itself changes, sometimes onto a live key (which the moved row replaces).
            new[key] = self.missing_key(table) if rng.random() < 0.6 else self.existing_key(table)
            if new[key] is None:
                new[key] = ex
            if rng.random() < 0.3:
                # The new image alone names the new key; old still names the row.
                old = {key: ex}
        return {"op": "update", "old": old, "new": new}

    def model_apply(self, table, ch):
        """The apply semantics, replayed in order (apply.c: replay())."""
        m = self.model[table]
        key = KEY[table]
        cols = COLUMNS[table]
        op, old, new = ch["op"], ch.get("old"), ch.get("new")
        for img in (old, new):
            if img and img.get(key) is not None:
                self.touched[table].add(img[key])
        if op == "delete":
            m.pop(old[key], None)
            return
        if op == "insert":
            k = new[key]
            if table == "behavioral_events" and k in m:
                return
            m[k] = {c: self.norm(new.get(c)) for c in cols}
            return
        oldk = old.get(key) if old else None
        newk = new.get(key)
        fromk = oldk if oldk is not None else newk
        tok = newk if newk is not None else oldk
        row = dict(m[fromk]) if fromk in m else {c: None for c in cols}
        if tok != fromk:
            m.pop(fromk, None)
        for c in cols:
            if c in new:
                row[c] = self.norm(new[c])
        row[key] = tok
        m[tok] = row

    NAIVE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?$")

    def norm(self, v):
        """A value as the model keeps it: the text Postgres will cast.  A timestamp without
        offset was read in the session's zone: kept with that zone's name, it means the
        same instant whatever zone the row is later re-sent or checked in."""
        if v is None:
            return None
        if isinstance(v, (RawNum, int)):
            return str(v)
        if isinstance(v, str) and self.NAIVE.match(v):
            return "%s %s" % (v, self.foreign_tz or self.tz)
        return v

    def gen_batch(self):
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            size = rng.randint(1, 10)
        elif r < 0.7:
            size = rng.randint(10, 60)
        else:
            size = rng.randint(60, 300)
        size = min(size, self.max_batch)
        names = [n for n, _ in INPUT_WEIGHTS]
        weights = [w for _, w in INPUT_WEIGHTS]
        single = rng.choice(names) if rng.random() < 0.3 else None
        batch = []
        self.batch_events = []
        self.touched = {t: set() for t in COLUMNS}
        # Event inserts alone take the extension's fast path; any other event op, the replay.
        self.events_insert_only = rng.random() < 0.45
        for _ in range(size):
            table = single or rng.choices(names, weights)[0]
            ch = self.gen_change(table)
            self.model_apply(table, ch)
            ch = {"input": table, "op": ch["op"], "old": ch.get("old"), "new": ch.get("new")}
            if ch["old"] is None and rng.random() < 0.5:
                del ch["old"]
            if ch["new"] is None and rng.random() < 0.5:
                del ch["new"]
            batch.append(ch)
        for table, rows in self.model.items():
            for row in rows.values():
                for c in REQUIRED[table]:
                    assert row[c] is not None, (table, row)
        return batch

    def gen_tick(self):
        """SQL for the next tick: a random step, a calendar step, or exactly onto a window
        bound of a stored instant or of a daylight-saving change (where > versus >= and the
        zone's arithmetic matter).  Aimed targets stay within max_jump days of the clock."""
        rng = self.rng
        r = rng.random()
        horizon = self.clock + self.max_jump * DAY_US
        if r < 0.15:
            steps = [s for s in ("0 seconds", "1 day", "7 days", "30 days", "1 mon", "90 days",
                                 "365 days", "1 year") if self.span_days(s) <= self.max_jump]
            return "SELECT c360.tick(c360.as_of() + interval '%s');" % rng.choice(steps)
        if r < 0.30:
            # onto the instant a stored time leaves a window: the profile's or a trait's
            spans = [("%d days" % d, (0, d, 0)) for d in (30, 90, 365)]
            if self.trait_spans() and rng.random() < 0.6:
                spans = self.trait_spans()
            text, span = rng.choice(spans)
            aims = [t for t in self.ts_pool
                    if self.clock <= pg_shift(t, span, self.zone, 1) <= horizon]
            if aims:
                return ("SELECT c360.tick(greatest(c360.as_of(), '%s'::timestamptz + interval "
                        "'%s' + interval '%d microseconds'));" % (
                            self.ts_text(rng.choice(aims)), text, rng.choice([0, 0, 1, -1])))
        if r < 0.40 and self.dst:
            aims = [self.shift_days(t, d) for t in self.dst for d in (0, 30, 90, 365)]
            aims += [pg_shift(t, span, self.zone, 1) for t in self.dst
                     for _, span in self.trait_spans()]
            aims = [t for t in aims if self.clock <= t <= horizon]
            if aims:
                t = rng.choice(aims) + rng.randint(-4, 4) * 900 * 1000000
                return "SELECT c360.tick(greatest(c360.as_of(), '%s'::timestamptz));" % (
                    self.dt(t).isoformat())
        lo, hi = self.step_policy
        secs = int(round(2 ** rng.uniform(lo, hi)))
        return "SELECT c360.tick(c360.as_of() + interval '%d seconds');" % secs

    @staticmethod
    def span_days(step):
        n, unit = step.split()
        return int(n) * {"seconds": 0, "day": 1, "days": 1, "mon": 31, "year": 366}[unit]

    # ---- checks -----------------------------------------------------------------------
    # After every batch and every tick: c360.verify() is empty, and so is the difference
    # between the profile and the embedded reference query evaluated with Postgres's own
    # "as_of - interval 'N days'" in the session TimeZone (trusting neither verify() nor
    # c360.shift_days).  verify() compares profile with mirrors only, so the mirror rows a
    # batch touched are also compared with this script's model of the apply semantics (all
    # rows every 25 batches).  At the end, c360.rebuild() must find nothing to change.
    # Every trait that is ready is compared with this script's reference (check_traits)
    # after every step.  verify() compares the traits too, with a query per trait that costs
    # more than all the rest of a check: the routine checks (after a batch, a poisoned batch,
    # a tick, a commit, a backfill chunk) run it every VERIFY_TRAITS_EVERY times, and
    # c360._verify_columns(), the article's columns alone, otherwise; the other checks (trait
    # made or dropped, rollback, rebuild, start and end) run the whole verify().
    VERIFY_TRAITS_EVERY = 8
    SECTIONS = ("--stamps--", "--catalog--", "--bounds--", "--traits--")

    def columns(self, skip=()):
        """The profile's columns the checks compare: the article's, next_change_at and its
        parts, the traits' (but those in skip; and but next_change_at and the traits' parts
        when a trait in skip has a window: a rebuild computes its part too)."""
        parts = sorted({t.table for t in self.traits if t.lookback})
        if any(t.lookback for t in self.traits if t.name in skip):
            bookkeeping = ", article_change_at"
        else:
            bookkeeping = ", next_change_at, article_change_at, traits_change_at" + "".join(
                ", %s_traits_change_at" % p for p in parts)
        return PROFILE_COLUMNS + bookkeeping + "".join(
            ", " + t.name for t in self.traits if t.name not in skip)

    def check_sql(self, full):
        verify = "c360.verify()" if full else "c360._verify_columns(c360.as_of())"
        sql = ("SELECT count(*) FROM %s;\n" % verify + REF_DIFF_SQL % 5 + ";\n"
               "\\echo --stamps--\n"
               "SELECT customer_id, profile_updated_at, md5(ROW(%s)::text)"
               " FROM c360.customer_360;\n" % self.columns())
        if not self.traits_on:
            return sql
        sql += ("\\echo --catalog--\n"
                "SELECT name, state, type FROM c360.column_catalog ORDER BY name;\n")
        spans = self.trait_spans()
        if spans:
            # Postgres's own as_of - lookback in the session's zone (the profile's), and
            # c360.window_start's: this script's arithmetic must agree with the first, the
            # extension's with it too.
            sql += ("\\echo --bounds--\n"
                    "SELECT l, (extract(epoch FROM c360.as_of() - l::interval) * 1000000)::bigint,"
                    " (extract(epoch FROM c360.window_start(c360.as_of(), l::interval))"
                    " * 1000000)::bigint"
                    " FROM unnest($l$%s$l$::text[]) l;\n" % (
                        "{%s}" % ",".join('"%s"' % text for text, _ in spans)))
        if self.traits:
            sql += ("\\echo --traits--\n"
                    "SELECT p.customer_id%s FROM c360.customer_360 p ORDER BY p.customer_id;\n" % (
                        "".join(", " + t.fetch_sql() for t in self.traits)))
        return sql

    def check(self, what, batch=None, stamps=True, routine=False):
        self.routine_checks += routine
        full = (not routine or not self.traits
                or self.routine_checks % self.VERIFY_TRAITS_EVERY == 0)
        out = self.db.run(self.check_sql(full), log=False)
        sections = {}
        cut = [i for i, line in enumerate(out) if line in self.SECTIONS] + [len(out)]
        for a, b in zip(cut, cut[1:]):
            sections[out[a]] = out[a + 1:b]
        sep = cut[0]
        nverify = int(out[0])
        ref_rows = out[1:sep]
        if nverify or ref_rows:
            self.fail(what, batch, "c360.%s returned %d row(s)" % (
                "verify()" if full else "_verify_columns()", nverify)
                      if nverify else "the embedded reference query differs from the profile")
        # A profile row is written only when it really changes, and then gets a new
        # profile_updated_at (the row image here leaves profile_updated_at out).
        cur = {}
        for line in sections["--stamps--"]:
            cid, updated, image = line.split("|")
            cur[cid] = (updated, image)
        bad = []
        for cid, (updated, image) in cur.items():
            if not stamps or cid not in self.stamps:
                continue
            old_updated, old_image = self.stamps[cid]
            if (image == old_image) != (updated == old_updated):
                bad.append("%s: profile_updated_at %s -> %s, row %s" % (
                    cid, old_updated, updated, "unchanged" if image == old_image else "changed"))
        self.stamps = cur
        if bad:
            self.fail(what, batch, "profile_updated_at does not follow the row's changes:\n  "
                      + "\n  ".join(bad[:10]))
        if self.traits_on:
            self.check_traits(what, batch, sections)

    # ---- computed traits --------------------------------------------------------------
    def trait_spans(self):
        """The live traits' lookbacks: (text, (months, days, microseconds))."""
        seen = {}
        for t in self.traits:
            if t.lookback:
                seen[t.lookback[0]] = t.lookback
        return sorted(seen.values())

    def check_traits(self, what, batch, sections):
        """The catalog holds exactly this script's traits with their types; the window
        bounds agree; every ready trait's column equals the reference, row for row."""
        catalog = {}
        for line in sections["--catalog--"]:
            name, state, typ = line.split("|")
            catalog[name] = (state, typ)
        mine = {t.name: t for t in self.traits}
        if set(catalog) != set(mine):
            self.fail(what, batch, "c360.column_catalog holds traits %s, expected %s" % (
                sorted(catalog), sorted(mine)))
        for name, (state, typ) in catalog.items():
            if typ != PG_TYPES[mine[name].agg.typ]:
                self.fail(what, batch, "trait %s has type %s, expected %s" % (
                    mine[name].describe(), typ, PG_TYPES[mine[name].agg.typ]))
        self.trait_state = {n: st for n, (st, _) in catalog.items()}
        spans = dict(self.trait_spans())
        for line in sections.get("--bounds--", []):
            text, native, ext = line.split("|")
            ours = window_start(self.clock, spans[text], self.zone)
            if int(native) != ours:
                self.fail(what, batch, "this script's as_of - interval '%s' is %s, Postgres's %s "
                          "(as_of %s): the test's arithmetic is wrong" % (
                              text, self.dt(ours), self.dt(int(native)), self.dt(self.clock)))
            if int(ext) != int(native):
                self.fail(what, batch, "c360.window_start(as_of, '%s') is %s, but as_of - "
                          "interval '%s' in the profile's zone is %s" % (
                              text, self.dt(int(ext)), text, self.dt(int(native))))
        ready = [(i, t) for i, t in enumerate(self.traits) if catalog[t.name][0] == "ready"]
        if not ready:
            return
        # The fetch is ordered by customer_id: one column per trait, in the model's
        # customers in the collation's order.
        width = 1 + len(self.traits)
        cols = list(zip(*(line.split("|") for line in sections.get("--traits--", []))))
        cols = cols or [()] * width
        customers = tuple(sorted(self.model["customers"], key=Ranks.key))
        if cols[0] != customers:
            self.fail(what, batch, "the profile's customers differ from the model's")
        # A value is recomputed only when the customer's rows changed since the last check,
        # or the window's bound moved over one of their times.  model_apply never changes a
        # row in place (a new image is a new dict), and the cache keeps the rows it saw
        # alive, so the same ids are the same rows.
        groups = self.trait_groups({t.table for _, t in ready})
        sigs = {table: {cid: tuple(map(id, rows)) for cid, rows in g.items()}
                for table, g in groups.items()}
        cache = self.trait_cache
        bad = []
        for i, t in ready:
            bound = window_start(self.clock, t.lookback[1], self.zone) if t.lookback else None
            g, sg, name, tc = groups[t.table], sigs[t.table], t.name, t.tc
            expected = []
            for cid in customers:
                sig = sg.get(cid, ())
                hit = cache.get((name, cid))
                if hit is not None and hit[1] == sig and (
                        hit[0] == bound or not any(
                            r[tc] is not None
                            and min(hit[0], bound) < ts_us(r[tc]) <= max(hit[0], bound)
                            for r in hit[2])):
                    exp = hit[3]
                    if hit[0] != bound:
                        cache[(name, cid)] = (bound, sig, hit[2], exp)
                else:
                    rows = g.get(cid, ())
                    exp = t.expected(rows, bound)
                    cache[(name, cid)] = (bound, sig, rows, exp)
                expected.append(exp)
            got = cols[i + 1]
            if t.agg.loose:
                got = tuple(map(num_loose, got))
            if got != tuple(expected):
                bad += [(t, cid, val, exp, bound) for cid, val, exp in zip(customers, got, expected)
                        if val != exp]
            self.stats["trait_values"] += len(customers)
        if bad:
            lines = ["%s: %s: profile %s, reference %s" % (t.name, cid, val, exp)
                     for t, cid, val, exp, _ in bad[:12]]
            t, cid, _, _, bound = bad[0]
            rows = sorted(groups[t.table].get(cid, ()), key=t.rowkey)
            lines.append("trait %s" % t.describe())
            lines.append("as_of %s, window bound %s" % (
                self.dt(self.clock), "none" if bound is None else self.dt(bound)))
            lines.append("%s's rows of %s (model):" % (cid, t.table))
            lines += ["  %s" % json.dumps(r, ensure_ascii=False) for r in rows[:40]]
            self.fail(what, batch, "%d trait value(s) differ from this script's reference "
                      "(the profile's value, the reference's; text quoted, timestamps in epoch "
                      "microseconds):\n  %s" % (len(bad), "\n  ".join(lines)))

    def trait_groups(self, tables):
        """Each input's rows by the customer they count for: their customer_id; events
        through the winning link of their raw id (latest created_at, NULLs last, then the
        highest identity_id), else the raw id itself."""
        groups = {}
        for table in tables:
            g = {}
            rows = self.model[table].values()
            if table == "behavioral_events":
                best = {}
                for link in self.model["identity_graph"].values():
                    at = ts_us(link["created_at"])
                    k = (at is not None, 0 if at is None else at, Ranks.key(link["identity_id"]))
                    v = link["identity_value"]
                    if v not in best or k > best[v][0]:
                        best[v] = (k, link["customer_id"])
                for r in rows:
                    raw = r["customer_id"]
                    g.setdefault(best[raw][1] if raw in best else raw, []).append(r)
            else:
                for r in rows:
                    g.setdefault(r["customer_id"], []).append(r)
            groups[table] = g
        return groups

    def load_ranks(self):
        """The database collation's order of every text value (min, max, mode, orderings
        and ties by key follow it)."""
        if Ranks.rank:
            return
        vocab = text_vocab()
        out = self.db.run("SELECT v FROM jsonb_array_elements_text($v$%s$v$::jsonb) v ORDER BY v;"
                          % json.dumps(vocab), log=False)
        if sorted(out) != vocab:
            self.fail("setup", None, "could not read the collation order of the text values")
        Ranks.rank = {v: i for i, v in enumerate(out)}

    def gen_lookback(self):
        """A random lookback from an hour to 400 days: hours, days, months, or a mix."""
        rng = self.rng
        r = rng.random()
        if r < 0.25:
            h = rng.choice([1, 1, 2, 5, 12, 24, 25, 48, 71])
            return ("%d hour%s" % (h, "s" if h > 1 else ""), (0, 0, h * 3600 * 1000000))
        if r < 0.6:
            d = rng.choice([1, 7, 30, 45, 90, 365, 400, rng.randint(2, 400)])
            return ("%d day%s" % (d, "s" if d > 1 else ""), (0, d, 0))
        if r < 0.85:
            m = rng.choice([1, 1, 3, 6, 12, 13])
            return ("%d mons" % m, (m, 0, 0))
        m, d = rng.randint(0, 11), rng.randint(0, 29)
        h, mi = rng.randint(1, 23), rng.choice([0, 30])
        return ("%d mons %d days %02d:%02d:00" % (m, d, h, mi),
                (m, d, (h * 3600 + mi * 60) * 1000000))

    def gen_traits(self, n, cover):
        """n random traits; with cover, every input and every aggregate form among them."""
        rng = self.rng
        aggs, filters = TEMPLATES
        inputs = list(COLUMNS)
        if cover:
            # the extra ones favour the forms with the most to get wrong: ties, NULLs, scale
            extra = FORMS + ["first", "first", "mode", "avg", "sum"]
            forms = FORMS + [rng.choice(extra) for _ in range(n - len(FORMS))]
            tables = inputs + [rng.choice(inputs) for _ in range(n - len(inputs))]
            rng.shuffle(forms)
            rng.shuffle(tables)
        else:
            forms = [rng.choice(FORMS) for _ in range(n)]
            tables = [rng.choice(inputs) for _ in range(n)]
        out = []
        for form, table in zip(forms, tables):
            self.trait_seq += 1
            agg = rng.choice(aggs[table][form])
            filt = rng.choice(filters[table]) if rng.random() < 0.55 else None
            lookback = tc = None
            if rng.random() < 0.7:
                lookback = self.gen_lookback()
                if table not in NATURAL_TIME or rng.random() < 0.3:
                    tc = rng.choice(TIME_COLUMNS[table])
            name = "tr%02d_%s_%s" % (self.trait_seq, table.split("_")[0][:8], form)
            out.append(Trait(name, table, agg, filt, lookback, tc))
        return out

    def create_traits(self, traits, what):
        """create_trait for each: it returns the rows it computed at once (a profile of at
        most c360.trait_backfill_chunk rows), else 0 and the trait backfills."""
        for t in traits:
            print("[%s] %s trait %s" % (self.name, what, t.describe()), flush=True)
            self.pick_zone()    # the profile's zone makes the windows, not the session's
            try:
                out = self.db.run(self.in_zone(t.create_sql()))
            except SqlError as e:
                self.fail("create_trait %s" % what, None,
                          "%s raised an error:\n%s" % (t.create_sql(), e))
            n = len(self.model["customers"])
            expect = str(n) if n <= self.chunk else "0"
            if out != [expect]:
                self.fail("create_trait %s" % what, None, "%s returned %r, expected %s" % (
                    t.create_sql(), out, expect))
            self.traits.append(t)
            row = self.db.run(
                "SELECT input = $q$%s$q$, aggregate = $q$%s$q$, filter IS NOT DISTINCT FROM %s,"
                " lookback IS NOT DISTINCT FROM %s::interval, time_column IS NOT DISTINCT FROM %s,"
                " state FROM c360.traits WHERE name = '%s';" % (
                    t.table, t.agg.sql, "$q$%s$q$" % t.filt.sql if t.filt else "NULL",
                    "$q$%s$q$" % t.lookback[0] if t.lookback else "NULL",
                    "'%s'" % t.tc if t.tc else "NULL", t.name), log=False)
            state = "ready" if n <= self.chunk else "backfilling"
            if row != ["t|t|t|t|t|" + state]:
                self.fail("create_trait %s" % what, None, "c360.traits shows %s as %r, expected "
                          "its definition and state %s" % (t.name, row, state))
        self.check("traits created %s" % what, stamps=False)

    def drop_trait(self, t, what):
        print("[%s] %s drop trait %s" % (self.name, what, t.name), flush=True)
        self.db.run("SELECT c360.drop_trait('%s');" % t.name)
        self.traits.remove(t)
        left = self.db.run("SELECT count(*) FROM pg_attribute WHERE attrelid = "
                           "'c360.customer_360'::regclass AND attname = '%s' AND NOT attisdropped;"
                           % t.name, log=False)
        if left != ["0"]:
            self.fail("drop_trait %s" % what, None,
                      "column %s is still in c360.customer_360" % t.name)

    def mid_run_traits(self, n, in_txn):
        """On the populated profile: drop a trait or two, and create a few more, computed at
        once or (with a small c360.trait_backfill_chunk) backfilled in chunks between the
        batches and ticks that follow.  Just before the new ones, sometimes, a trait created
        in a transaction that loads the catalog (a tick) and rolls back: the next
        create_trait bumps the catalog to the version number the backend loaded the ghost
        under, and nothing of the ghost may stay."""
        rng = self.rng
        what = "after batch %d" % n
        for t in rng.sample(self.traits, min(len(self.traits), rng.randint(1, 2))):
            self.drop_trait(t, what)
        if rng.random() < 0.5 and len(self.model["customers"]) > 10:
            self.chunk = rng.choice([10, 13, 25, 40])
            self.db.run("SET c360.trait_backfill_chunk = %d;" % self.chunk)
        if not in_txn and rng.random() < 0.6:
            ghost = self.gen_traits(1, cover=False)[0]
            print("[%s] %s trait %s, rolled back" % (self.name, what, ghost.describe()), flush=True)
            self.db.run("BEGIN;\n%s\nSELECT c360.tick(c360.as_of() + interval '1 microsecond');\n"
                        "ROLLBACK;" % ghost.create_sql())
            left = self.db.run("SELECT count(*) FROM pg_attribute WHERE attrelid = "
                               "'c360.customer_360'::regclass AND attname = '%s' AND NOT "
                               "attisdropped;" % ghost.name, log=False)
            if left != ["0"]:
                self.fail("rolled back create_trait %s" % what, None,
                          "column %s is in c360.customer_360" % ghost.name)
        self.create_traits(self.gen_traits(rng.randint(2, 3), cover=False), what)
        self.mid_done = True

    def backfilling(self):
        return any(st == "backfilling" for st in self.trait_state.values())

    def backfill_step(self, what):
        """One chunk, as the ticker does it."""
        self.pick_zone()
        out = self.db.run(self.in_zone("SELECT c360._trait_backfill(false);"))
        self.stats["backfill_steps"] += 1
        if out == ["-1"]:
            self.fail(what, None, "c360._trait_backfill found no trait backfilling; c360.traits "
                      "said %s" % self.trait_state)
        self.check(what, routine=True)

    def finish_backfill(self):
        for _ in range(1000):
            if not self.backfilling():
                return
            self.backfill_step("backfill at the end")
        self.fail("backfill at the end", None, "traits still backfilling: %s" % self.trait_state)

    def check_mirrors(self, what, batch=None, touched=None):
        """The mirrors against the model: every row, or only the keys a batch touched."""
        sql = []
        for table, rows in self.model.items():
            key = KEY[table]
            if touched is None:
                keys, where = rows, ""
            elif touched[table]:
                keys = [k for k in touched[table] if k in rows]
                where = " WHERE %s = ANY($k$%s$k$::text[])" % (
                    key, "{%s}" % ",".join(sorted(touched[table])))
            else:
                continue
            js = json.dumps([rows[k] for k in keys], separators=(",", ":"))
            sql.append(
                "WITH m AS (SELECT r::text AS t FROM jsonb_populate_recordset(NULL::c360.%s, $m$%s$m$) r),\n"
                "     s AS (SELECT s::text AS t FROM c360.%s s%s)\n"
                "SELECT '%s model-only: ' || t FROM (SELECT t FROM m EXCEPT ALL SELECT t FROM s) a\n"
                "UNION ALL SELECT '%s mirror-only: ' || t FROM (SELECT t FROM s EXCEPT ALL SELECT t FROM m) b\n"
                "LIMIT 10;" % (table, js, table, where, table, table))
        out = self.db.run("\n".join(sql), log=False) if sql else []
        if out:
            self.fail(what, batch, "a mirror table differs from the model of the apply "
                      "semantics (model-only: what the batches say the row is; mirror-only: "
                      "what the mirror holds):\n  " + "\n  ".join(out))

    def check_rebuild(self):
        cols = self.columns()
        state = ("SELECT md5(string_agg(t, E'\\n' ORDER BY t)) FROM ("
                 " SELECT 'p' || (p.*)::text AS t FROM (SELECT %s FROM c360.customer_360) p"
                 " UNION ALL SELECT 'i' || i::text FROM c360.identity_resolved i) x;" % cols)
        before = self.db.run(state)
        self.db.run("CREATE TEMP TABLE pre_rebuild AS SELECT %s FROM c360.customer_360;" % cols)
        changed = int(self.db.run("SELECT c360.rebuild();")[0])
        after = self.db.run(state)
        if changed or before != after:
            diff = self.db.run(
                "SELECT 'incremental: ' || a::text FROM (SELECT * FROM pre_rebuild EXCEPT ALL"
                " SELECT %s FROM c360.customer_360) a"
                " UNION ALL SELECT 'rebuilt:     ' || b::text FROM (SELECT %s"
                " FROM c360.customer_360 EXCEPT ALL SELECT * FROM pre_rebuild) b LIMIT 10;"
                % (cols, cols))
            self.fail("c360.rebuild() at the end", None,
                      "rebuild() changed %d profile row(s) / the maintainer's state differs from a "
                      "rebuild:\n  %s" % (changed, "\n  ".join(diff)))
        self.check("after c360.rebuild()")

    def fail(self, what, batch, why):
        print("FAIL [%s run, seed %s] %s: %s" % (self.name, self.seed, what, why))
        if batch is not None:
            print("failing batch (%d changes):" % len(batch))
            print(dumps(batch))
        try:
            for line in self.db.run("SELECT * FROM c360.verify() LIMIT 20;", log=False):
                print("  verify: " + line)
            for line in self.db.run(REF_DIFF_SQL % 20 + ";", log=False):
                print("  " + line)
            print("as_of: " + self.db.run("SELECT c360.as_of();", log=False)[0])
        except SqlError as e:
            print("  (could not query the database: %s)" % e)
        self.log.flush()
        print("database %s kept; the run's statements are in %s (psql -f it in an empty "
              "database to replay, or cut it down to a minimal repro)" % (self.dbname, self.logpath))
        print("replay: python3 test/t_random_diff.py %s" % self.seed)
        sys.exit(1)

    # ---- driver -----------------------------------------------------------------------
    FOREIGN_ZONES = {"UTC": ["America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"],
                     "America/New_York": ["UTC", "Europe/London", "Australia/Sydney"]}

    def pick_zone(self):
        self.foreign_tz = (self.rng.choice(self.FOREIGN_ZONES[self.tz])
                           if self.rng.random() < 0.2 else None)

    def in_zone(self, sql):
        """The statement run in this step's session TimeZone: the profile's zone is fixed at
        CREATE EXTENSION, so another session zone must change nothing."""
        if not self.foreign_tz:
            return sql
        return "SET TimeZone = '%s';\n%s\nSET TimeZone = '%s';" % (self.foreign_tz, sql, self.tz)

    def apply(self, n, batch):
        if len(batch) == 1 and self.rng.random() < 0.5:
            ch = batch[0]   # the single-change entry point takes the same path
            sql = "SELECT c360.apply_change('%s', '%s', %s, %s);" % (
                ch["input"], ch["op"],
                "$j$%s$j$" % dumps(ch["old"]) if ch.get("old") is not None else "NULL",
                "$j$%s$j$" % dumps(ch["new"]) if ch.get("new") is not None else "NULL")
            expect = [""]
        else:
            sql = "SELECT c360.apply_changes($j$%s$j$::jsonb);" % dumps(batch)
            expect = [str(len(batch))]
        sql = self.in_zone(sql)
        try:
            out = self.db.run(sql)
        except SqlError as e:
            self.fail("batch %d" % n, batch, "apply_changes raised an error:\n%s" % e)
        if out != expect:
            self.fail("batch %d" % n, batch, "apply_changes returned %r, expected %r" % (out, expect))
        self.stats["changes"] += len(batch)

    POISONS = [
        ("orders", "insert", None, {"order_id": "o0001", "customer_id": "c001", "total_amount": "12,50"}),
        ("orders", "insert", None, {"order_id": "o0002", "customer_id": "c002", "item_count": 2.5}),
        ("customers", "insert", None, {"customer_id": "c003", "signup_date": "2030-02-30T00:00:00Z"}),
        ("customers", "update", {"customer_id": "c004"}, {"last_updated": "yesterday-ish"}),
        ("behavioral_events", "insert", None, {"event_id": "e_bad", "customer_id": "k001"}),
        ("support_tickets", "update", {"ticket_id": "t_none"}, {"status": "open"}),
        ("identity_graph", "insert", None, {"identity_id": "i001", "customer_id": "c005",
                                            "identity_value": {"nested": 1}}),
        ("loyalty_points", "insert", None, {"id": 1}),
        ("orders", "upsert", None, {"order_id": "o0003", "customer_id": "c006"}),
        ("orders", "delete", {"customer_id": "c007"}, None),
        ("orders", "insert", None, {"order_id": "o0004", "customer_id": "c008", "item_count": "99999999999"}),
        ("customers", "insert", None, {"customer_id": None, "email": "nobody@example.com"}),
    ]

    def poisoned_batch(self, n):
        """A random batch with one bad change somewhere in it: the whole batch must fail
        with a data error (not an internal one) and change nothing."""
        saved = copy.deepcopy(self.model)
        batch = self.gen_batch()
        self.model = saved
        table, op, old, new = self.rng.choice(self.POISONS)
        batch.insert(self.rng.randint(0, len(batch)), {"input": table, "op": op, "old": old, "new": new})
        sql = ("DO $$ BEGIN PERFORM c360.apply_changes($j$%s$j$::jsonb);\n"
               "RAISE EXCEPTION 'apply_changes accepted a batch with a bad change';\n"
               "EXCEPTION WHEN invalid_text_representation OR datetime_field_overflow OR\n"
               "  invalid_datetime_format OR not_null_violation OR invalid_parameter_value OR\n"
               "  numeric_value_out_of_range\n"
               "  THEN NULL; END $$;" % dumps(batch))
        try:
            self.db.run(sql)
        except SqlError as e:
            self.fail("poisoned batch %d" % n, batch, "expected a data error (22P02, 22008, "
                      "22007, 23502, 22023 or 22003), got:\n%s" % e)
        self.stats["poisoned"] += 1
        self.check("poisoned batch %d" % n, batch, routine=True)
        self.check_mirrors("poisoned batch %d" % n, batch)

    def read_clock(self):
        self.clock = int(self.db.run(
            "SELECT (extract(epoch FROM c360.as_of()) * 1000000)::bigint;", log=False)[0])

    def main(self):
        t0 = time.time()
        admin("CREATE DATABASE %s" % self.dbname)
        admin("ALTER DATABASE %s SET TimeZone = '%s'" % (self.dbname, self.tz))
        self.log = open(self.logpath, "w")
        self.db = Psql(self.dbname, self.log)
        # The profile's zone is the session's at CREATE EXTENSION; the reference query's
        # window arithmetic uses the session's, so both must be this run's zone.
        self.db.run("SET TimeZone = '%s';\nCREATE EXTENSION customer360;\n"
                    "SET search_path = c360, public;" % self.tz)
        zone = self.db.run("SELECT c360.time_zone();")[0]
        if zone != self.tz:
            self.fail("setup", None, "the profile's zone is %s, expected %s" % (zone, self.tz))
        self.db.run("SELECT c360.tick('%s');" % self.start)
        # The clock never runs backwards.
        self.db.run("DO $$ BEGIN PERFORM c360.tick(c360.as_of() - interval '1 microsecond');"
                    " RAISE EXCEPTION 'c360.tick() moved the clock back without an error';"
                    " EXCEPTION WHEN invalid_parameter_value THEN NULL; END $$;")
        self.read_clock()
        self.check("after the first tick")
        if self.traits_on:
            # Traits over every input in every aggregate form, made on the empty profile;
            # a few more on the populated one halfway through (mid_run_traits).
            self.load_ranks()
            self.create_traits(self.gen_traits(self.rng.randint(11, 12), cover=True),
                               "at the start")
        else:
            print("[%s] no zone data (zoneinfo): no traits in this run" % self.name)

        txn = None
        while self.stats["changes"] < self.target_changes:
            self.stats["batches"] += 1
            n = self.stats["batches"]
            if txn is None and self.rng.random() < 0.06:
                # A few batches and ticks in one transaction, sometimes rolled back: nothing
                # the extension keeps per backend may outlive an abort.
                txn = {"model": copy.deepcopy(self.model), "left": self.rng.randint(2, 4),
                       "rollback": self.rng.random() < 0.4, "traits": list(self.traits),
                       "mid_done": self.mid_done, "chunk": self.chunk}
                self.db.run("BEGIN;")
            self.foreign_tz = None
            if txn is None and self.rng.random() < 0.03:
                self.poisoned_batch(n)
                continue
            self.pick_zone()
            if self.rng.random() < 0.01:
                batch, self.touched = [], {t: set() for t in COLUMNS}
            else:
                batch = self.gen_batch()
            self.apply(n, batch)
            self.check("batch %d" % n, batch, routine=True)
            self.check_mirrors("batch %d" % n, batch, self.touched)
            if n % 25 == 0:
                self.check_mirrors("batch %d (all rows)" % n, batch)
            if (self.traits_on and not self.mid_done
                    and self.stats["changes"] >= self.target_changes // 2):
                self.mid_run_traits(n, txn is not None)
            if txn is None and self.rng.random() < 0.01:
                # An exact incremental state leaves a rebuild nothing to do; but for the
                # columns of traits still backfilling, whose rows the backfill has not
                # reached yet: it computes those too.
                skip = [t for t, st in self.trait_state.items() if st == "backfilling"]
                state = "SELECT md5(string_agg((p.*)::text, E'\\n' ORDER BY p.customer_id)) FROM " \
                        "(SELECT %s FROM c360.customer_360) p;" % self.columns(skip)
                before = self.db.run(state, log=False)
                changed = self.db.run("SELECT c360.rebuild();")
                if (changed != ["0"] and not skip) or self.db.run(state, log=False) != before:
                    self.fail("rebuild after batch %d" % n, batch, "c360.rebuild() changed %s "
                              "profile row(s)%s" % (changed, " (traits backfilling: %s)" % skip
                                                    if skip else ""))
                self.check("rebuild after batch %d" % n)
            if self.rng.random() < self.tick_every:
                self.pick_zone()
                sql = self.in_zone(self.gen_tick())
                try:
                    self.db.run(sql)
                except SqlError as e:
                    self.fail("tick after batch %d" % n, None, "%s raised an error:\n%s" % (sql, e))
                self.stats["ticks"] += 1
                self.read_clock()
                self.check("tick after batch %d (%s)" % (n, sql), routine=True)
            if self.backfilling() and self.rng.random() < 0.5:
                self.backfill_step("backfill chunk after batch %d" % n)
            if txn is not None:
                txn["left"] -= 1
                if txn["left"] == 0:
                    if txn["rollback"]:
                        self.db.run("ROLLBACK;")
                        self.model = txn["model"]
                        # traits made or dropped in it are undone, and so is SET
                        self.traits, self.mid_done, self.chunk = (
                            txn["traits"], txn["mid_done"], txn["chunk"])
                        self.stats["rollbacks"] += 1
                        self.read_clock()
                        self.check("rollback after batch %d" % n, stamps=False)
                        self.check_mirrors("rollback after batch %d" % n)
                    else:
                        self.db.run("COMMIT;")
                        self.check("commit after batch %d" % n, routine=True)
                    txn = None
        self.finish_backfill()
        self.check_mirrors("end of run")
        self.check_rebuild()
        as_of = self.db.run("SELECT c360.as_of();")[0]
        counts = self.db.run(
            "SELECT (SELECT count(*) FROM c360.customer_360) || ' profiles, ' ||"
            " (SELECT count(*) FROM c360.orders) || ' orders, ' ||"
            " (SELECT count(*) FROM c360.behavioral_events) || ' events, ' ||"
            " (SELECT count(*) FROM c360.identity_graph) || ' links';")[0]
        self.db.close()
        self.log.close()
        admin("DROP DATABASE %s WITH (FORCE)" % self.dbname)
        os.unlink(self.logpath)
        print("%s run ok: %d changes in %d batches (%d rolled back, %d poisoned), %d ticks, "
              "clock at %s; %s; %d traits at the end, %d trait values compared, %d backfill "
              "chunks (%.1fs)" % (
                  self.name, self.stats["changes"], self.stats["batches"], self.stats["rollbacks"],
                  self.stats["poisoned"], self.stats["ticks"], as_of, counts, len(self.traits),
                  self.stats["trait_values"], self.stats["backfill_steps"], time.time() - t0))



def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else random.SystemRandom().randrange(10 ** 9)
    print("seed %d (replay: python3 test/t_random_diff.py %d)" % (seed, seed), flush=True)
    scale = float(os.environ.get("C360_RANDOM_SCALE", "1"))   # more changes for a soak
    only = os.environ.get("C360_RANDOM_ONLY")                  # UTC or NewYork: one run
    # Long clock steps (minutes to 400 days) in UTC; then a New York run whose short steps
    # walk the clock and its 30/90/365-day bounds across the fall-back of 2030-11-03 (a bound
    # moving backwards) and the spring-forward of 2031-03-09.
    runs = [
        Run("UTC", seed, "UTC", "2030-01-15 12:00:00+00", int(20000 * scale), 300, 0.6,
            (6, 25.04), 400),
        Run("NewYork", seed, "America/New_York", "2030-10-26 12:00:00-04", int(3000 * scale),
            60, 1.0, (6, 20), 20),
    ]
    for run in runs:
        if not only or run.name == only:
            run.main()
    print("ok")


if __name__ == "__main__":
    main()
