#!/usr/bin/env python3
# Randomized differential test: 20,000 random changes and clock ticks in UTC, then 3,000 across
# New York's DST changes; after every step c360.customer_360 must equal the defining query.
# Usage: python3 test/t_random_diff.py [SEED]   (PGHOST/PGPORT/PGUSER name the server)
import copy
import datetime
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
            us = self.shift_days(self.clock, -rng.choice([30, 30, 90, 365]))
            # On a bound, next to it, and (more often where the zone has DST) within the
            # hour a DST change moves it by.
            us += rng.choice([0, 0, 0, -1, 1, -1000000, 1000000] +
                             [-1800000000, 1800000000, -3000000000, 3000000000] *
                             (3 if self.dst else 1))
        elif r < 0.35 and self.dst:
            t = rng.choice(self.dst)
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
            days = rng.choice([30, 90, 365])
            aims = [t for t in self.ts_pool
                    if self.clock <= self.shift_days(t, days) <= horizon]
            if aims:
                return ("SELECT c360.tick(greatest(c360.as_of(), '%s'::timestamptz + interval "
                        "'%d days' + interval '%d microseconds'));" % (
                            self.ts_text(rng.choice(aims)), days, rng.choice([0, 0, 1, -1])))
        if r < 0.40 and self.dst:
            aims = [self.shift_days(t, d) for t in self.dst for d in (0, 30, 90, 365)]
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
    CHECK_SQL = ("SELECT count(*) FROM c360.verify();\n"
                 + REF_DIFF_SQL % 5 + ";\n"
                 "\\echo --stamps--\n"
                 "SELECT customer_id, profile_updated_at, md5(ROW(%s, next_change_at)::text)"
                 " FROM c360.customer_360;\n" % PROFILE_COLUMNS)

    def check(self, what, batch=None, stamps=True):
        out = self.db.run(self.CHECK_SQL, log=False)
        sep = out.index("--stamps--")
        nverify = int(out[0])
        ref_rows = out[1:sep]
        if nverify or ref_rows:
            self.fail(what, batch, "c360.verify() returned %d row(s)" % nverify
                      if nverify else "the embedded reference query differs from the profile")
        # A profile row is written only when it really changes, and then gets a new
        # profile_updated_at (the row image here leaves profile_updated_at out).
        cur = {}
        for line in out[sep + 1:]:
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
        state = ("SELECT md5(string_agg(t, E'\\n' ORDER BY t)) FROM ("
                 " SELECT 'p' || (p.*)::text AS t FROM (SELECT %s, next_change_at FROM c360.customer_360) p"
                 " UNION ALL SELECT 'i' || i::text FROM c360.identity_resolved i) x;" % PROFILE_COLUMNS)
        before = self.db.run(state)
        self.db.run("CREATE TEMP TABLE pre_rebuild AS SELECT %s, next_change_at FROM c360.customer_360;"
                    % PROFILE_COLUMNS)
        changed = int(self.db.run("SELECT c360.rebuild();")[0])
        after = self.db.run(state)
        if changed or before != after:
            diff = self.db.run(
                "SELECT 'incremental: ' || a::text FROM (SELECT * FROM pre_rebuild EXCEPT ALL"
                " SELECT %s, next_change_at FROM c360.customer_360) a"
                " UNION ALL SELECT 'rebuilt:     ' || b::text FROM (SELECT %s, next_change_at"
                " FROM c360.customer_360 EXCEPT ALL SELECT * FROM pre_rebuild) b LIMIT 10;"
                % (PROFILE_COLUMNS, PROFILE_COLUMNS))
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
        self.check("poisoned batch %d" % n, batch)
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

        txn = None
        while self.stats["changes"] < self.target_changes:
            self.stats["batches"] += 1
            n = self.stats["batches"]
            if txn is None and self.rng.random() < 0.06:
                # A few batches and ticks in one transaction, sometimes rolled back: nothing
                # the extension keeps per backend may outlive an abort.
                txn = {"model": copy.deepcopy(self.model), "left": self.rng.randint(2, 4),
                       "rollback": self.rng.random() < 0.4}
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
            self.check("batch %d" % n, batch)
            self.check_mirrors("batch %d" % n, batch, self.touched)
            if n % 25 == 0:
                self.check_mirrors("batch %d (all rows)" % n, batch)
            if txn is None and self.rng.random() < 0.01:
                # An exact incremental state leaves a rebuild nothing to do.
                changed = self.db.run("SELECT c360.rebuild();")
                if changed != ["0"]:
                    self.fail("rebuild after batch %d" % n, batch, "c360.rebuild() changed %s "
                              "profile row(s)" % changed)
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
                self.check("tick after batch %d (%s)" % (n, sql))
            if txn is not None:
                txn["left"] -= 1
                if txn["left"] == 0:
                    if txn["rollback"]:
                        self.db.run("ROLLBACK;")
                        self.model = txn["model"]
                        self.stats["rollbacks"] += 1
                        self.read_clock()
                        self.check("rollback after batch %d" % n, stamps=False)
                        self.check_mirrors("rollback after batch %d" % n)
                    else:
                        self.db.run("COMMIT;")
                        self.check("commit after batch %d" % n)
                    txn = None
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
              "clock at %s; %s (%.1fs)" % (
                  self.name, self.stats["changes"], self.stats["batches"], self.stats["rollbacks"],
                  self.stats["poisoned"], self.stats["ticks"], as_of, counts, time.time() - t0))



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
