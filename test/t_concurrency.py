#!/usr/bin/env python3
# Concurrency test: four sessions (orders, customers + support tickets, events + identity links,
# ticks) maintain the same 40 customers' profiles at once for C360_CONCURRENCY_SECONDS (default
# 60): no error of any kind (deadlock 40P01, serialization 40001), and verify() empty at every
# pause and the end, with four segments' members and outbox exact too.
# The profile carries computed traits over every input (TRAITS: windowed and not, with
# filters), so the same workload maintains them and verify() checks them; one segment reads
# two of them.  A fifth session changes the trait catalog under the load (DDL: create_trait,
# drop_trait, one of them building a time-column index), which takes the clock lock
# exclusively as segment creation does: no deadlock, no error, and the traits it creates
# are exact from the next pause on.
# An input of one's own (returns, c360.create_input) with traits over it is changed by two
# sessions: the orders one, and the events one inside its inserts-only batches, which lock
# every customer the batch touched once, in the statement that updates events by difference.
import datetime
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86400 * 1000000
START = "2030-01-15 12:00:00+00"

# Few customers, so that every session keeps touching the profile rows the others touch.
CUSTOMER_IDS = ["c%02d" % i for i in range(1, 41)]
COOKIE_IDS = ["k%02d" % i for i in range(1, 31)]
ORDER_IDS = ["o%03d" % i for i in range(1, 401)]
TICKET_IDS = ["t%03d" % i for i in range(1, 151)]
IDENTITY_IDS = ["i%02d" % i for i in range(1, 41)]
RETURN_IDS = {"orders": ["r%03d" % i for i in range(1, 101)],      # each session its own keys
              "events": ["r%03d" % i for i in range(101, 201)]}
MAX_EVENTS = 8000   # beyond this the events session deletes old events, so verify stays cheap

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
    "returns": ["return_id", "customer_id", "amount", "reason", "created_at"],
}
RETURNS_INPUT = ("SELECT c360.create_input('returns', 'return_id text, customer_id text, amount numeric, "
                 "reason text, created_at timestamptz', 'return_id', 'customer_id', 'created_at');")
KEY = {t: cols[0] for t, cols in COLUMNS.items()}


class SqlError(Exception):
    pass


class Psql:
    """One long-lived psql process; each command is followed by an \\echo marker, so that its
    output ends where the marker appears."""

    def __init__(self, dbname):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", dbname],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8")
        self.stderr = []
        self.n = 0
        threading.Thread(target=self._drain, daemon=True).start()
        # A hang must end as an error, not as a test that never returns.
        self.run("\\set VERBOSITY verbose\nSET client_min_messages = warning;\n"
                 "SET statement_timeout = '120s';")

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def run(self, sql):
        self.n += 1
        marker = "__c360_done_%d__" % self.n
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
                time.sleep(0.1)
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


def brief(message):
    """An error without the text of the extension's long statements in its CONTEXT."""
    return "\n".join(line[:300] for line in message.splitlines()
                     if re.match(r"(ERROR|DETAIL|HINT|CONTEXT|Process|LOCATION|psql)", line))


def admin(sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql],
                   check=True, stdout=subprocess.DEVNULL)


def replay(model, table, op, old, new):
    """The apply semantics (apply.c: replay()): what the mirror holds after one change."""
    key = KEY[table]
    cols = COLUMNS[table]
    if op == "delete":
        model.pop(old[key], None)
        return
    if op == "insert":
        if table == "behavioral_events" and new[key] in model:
            return
        model[new[key]] = {c: new.get(c) for c in cols}
        return
    fromk = old.get(key) if old else None
    fromk = fromk if fromk is not None else new.get(key)
    tok = new.get(key) if new.get(key) is not None else fromk
    row = dict(model[fromk]) if fromk in model else {c: None for c in cols}
    if tok != fromk:
        model.pop(fromk, None)
    row.update({c: v for c, v in new.items() if c in cols})
    row[key] = tok
    model[tok] = row


class Shared:
    def __init__(self, seed, sessions):
        self.seed = seed
        self.clock = None                 # c360.as_of() in us, as last seen by the ticker
        self.t0 = None                    # when the sessions started
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.parked = threading.Barrier(sessions + 1)     # the sessions and main
        self.resumed = threading.Barrier(sessions + 1)
        self.errors = []
        self.lock = threading.Lock()

    def error(self, who, msg):
        with self.lock:
            self.errors.append("%s: %s" % (who, msg))
        self.stop.set()
        # Nobody may wait for a session that is gone.
        self.parked.abort()
        self.resumed.abort()


class Session(threading.Thread):
    def __init__(self, name, shared, dbname, index):
        super().__init__(name=name, daemon=True)
        self.shared = shared
        self.dbname = dbname
        self.rng = random.Random("%s-%d" % (shared.seed, index))
        self.batches = 0
        self.changes = 0
        self.models = {}
        self.last_sql = None

    # values
    def ts(self, nullable=True):
        rng = self.rng
        if nullable and rng.random() < 0.08:
            return None
        clock = self.shared.clock
        r = rng.random()
        if r < 0.5:
            us = clock - rng.randint(0, 35 * DAY_US)
        elif r < 0.6:
            us = clock + rng.randint(0, 10 * DAY_US)
        else:
            us = clock - rng.randint(0, 400 * DAY_US)
        us -= us % 1000000
        return (EPOCH + datetime.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def maybe(self, v):
        return None if self.rng.random() < 0.1 else v

    def customer(self):
        return self.rng.choice(CUSTOMER_IDS)

    def numeric(self):
        if self.rng.random() < 0.08:
            return None
        v = "%d.%02d" % divmod(self.rng.randint(0, 50000), 100)
        return self.rng.choice([v, v + "0", v.rstrip("0").rstrip(".")])

    def change(self, table, op, old, new):
        replay(self.models[table], table, op, old, new)
        return {"input": table, "op": op, "old": old, "new": new}

    def return_change(self):
        """A return of one's own input: inserted, moved to another customer, re-dated, deleted."""
        rng = self.rng
        m = self.models["returns"]
        k = rng.choice(RETURN_IDS[self.name])
        r = rng.random()
        if r < 0.5 or k not in m:
            return self.change("returns", "insert", None, {
                "return_id": k, "customer_id": self.customer(), "amount": self.numeric(),
                "reason": self.maybe(rng.choice(["size", "color", "late"])), "created_at": self.ts()})
        if r < 0.85:
            new = {"customer_id": self.customer()} if rng.random() < 0.5 else {}
            new["created_at"] = self.ts()
            return self.change("returns", "update", {"return_id": k}, new)
        return self.change("returns", "delete", {"return_id": k}, None)

    def run(self):
        try:
            self.db = Psql(self.dbname)
            while not self.shared.stop.is_set():
                if self.shared.pause.is_set():
                    self.shared.parked.wait(timeout=300)
                    self.shared.resumed.wait(timeout=300)
                    continue
                self.last_sql = self.step()
                self.after(self.db.run(self.last_sql))
                self.batches += 1
        except SqlError as e:
            code = "deadlock" if "40P01" in str(e) else \
                "serialization failure" if "40001" in str(e) else "error"
            self.shared.error(self.name, "%s after %d batches:\n%s\nstatement: %s" % (
                code, self.batches, brief(str(e)), (self.last_sql or "")[:1000]))
        except threading.BrokenBarrierError:
            pass    # another session failed while this one was paused; its error is reported
        except Exception as e:  # a bug in this script must fail the test too
            self.shared.error(self.name, "%r" % e)
        finally:
            if getattr(self, "db", None):
                self.db.close()

    def after(self, out):
        pass

    def apply_sql(self, batch):
        self.changes += len(batch)
        return "SELECT c360.apply_changes($j$%s$j$::jsonb);" % json.dumps(batch)


class Orders(Session):
    def __init__(self, *a):
        super().__init__(*a)
        self.models = {"orders": {}, "returns": {}}

    def row(self, key):
        return {"order_id": key, "customer_id": self.customer(),
                "order_status": self.maybe(self.rng.choice(["placed", "shipped", "delivered", "cancelled"])),
                "total_amount": self.numeric(), "item_count": self.maybe(self.rng.randint(1, 9)),
                "channel": self.maybe(self.rng.choice(["web", "mobile", "store"])),
                "created_at": self.ts(), "updated_at": self.ts()}

    def step(self):
        rng = self.rng
        m = self.models["orders"]
        batch = []
        for _ in range(rng.randint(1, 50)):
            k = rng.choice(ORDER_IDS)
            r = rng.random()
            if r < 0.45 or k not in m:
                batch.append(self.change("orders", "insert", None, self.row(k)))
            elif r < 0.75:
                # The order moves to another customer and/or changes status.
                new = {"customer_id": self.customer()} if rng.random() < 0.6 else {}
                new["order_status"] = rng.choice(["shipped", "delivered", "returned"])
                if rng.random() < 0.3:
                    new["created_at"] = self.ts(False)
                batch.append(self.change("orders", "update", {"order_id": k}, new))
            elif r < 0.85:
                nk = rng.choice(ORDER_IDS)
                batch.append(self.change("orders", "update", {"order_id": k},
                                         {"order_id": nk, "total_amount": self.numeric()}))
            else:
                batch.append(self.change("orders", "delete", {"order_id": k}, None))
            if rng.random() < 0.2:
                batch.append(self.return_change())
        return self.apply_sql(batch)


class Customers(Session):
    def __init__(self, *a):
        super().__init__(*a)
        self.models = {"customers": {}, "support_tickets": {}}

    def ticket(self, key):
        return {"ticket_id": key, "customer_id": self.customer(),
                "status": self.maybe(self.rng.choice(["open", "pending", "resolved", "closed"])),
                "category": self.maybe(self.rng.choice(["billing", "shipping", "product"])),
                "created_at": self.ts(), "resolved_at": self.ts()}

    def ticket_change(self):
        rng = self.rng
        m = self.models["support_tickets"]
        k = rng.choice(TICKET_IDS)
        r = rng.random()
        if r < 0.4 or k not in m:
            return self.change("support_tickets", "insert", None, self.ticket(k))
        if r < 0.7:
            # resolved, reopened, moved to another customer
            new = {"status": rng.choice(["open", "resolved", "closed"]), "resolved_at": self.ts()}
            if rng.random() < 0.4:
                new["customer_id"] = self.customer()
            return self.change("support_tickets", "update", {"ticket_id": k}, new)
        if r < 0.8:
            return self.change("support_tickets", "update", {"ticket_id": k},
                               {"ticket_id": rng.choice(TICKET_IDS), "category": "product"})
        return self.change("support_tickets", "delete", {"ticket_id": k}, None)

    def row(self, key):
        return {"customer_id": key, "email": self.maybe("%s@example.com" % key),
                "first_name": self.maybe(self.rng.choice(["Ann", "Bob", "Zoë"])),
                "last_name": self.maybe(self.rng.choice(["Ng", "O'Brien"])),
                "phone": None,
                "acquisition_channel": self.maybe(self.rng.choice(["organic", "social"])),
                "signup_date": self.ts(),
                "loyalty_tier": self.maybe(self.rng.choice(["bronze", "silver", "gold"])),
                "last_updated": self.ts()}

    def step(self):
        rng = self.rng
        m = self.models["customers"]
        batch = []
        for _ in range(rng.randint(1, 20)):
            if rng.random() < 0.4:
                batch.append(self.ticket_change())
                continue
            k = self.customer()
            r = rng.random()
            if r < 0.4 or k not in m:
                batch.append(self.change("customers", "insert", None, self.row(k)))
            elif r < 0.8:
                batch.append(self.change("customers", "update", {"customer_id": k},
                                         {"loyalty_tier": rng.choice(["silver", "gold", None]),
                                          "last_updated": self.ts()}))
            elif r < 0.88:
                batch.append(self.change("customers", "update", {"customer_id": k},
                                         {"customer_id": self.customer()}))
            else:
                batch.append(self.change("customers", "delete", {"customer_id": k}, None))
        return self.apply_sql(batch)


class Events(Session):
    def __init__(self, *a):
        super().__init__(*a)
        self.models = {"behavioral_events": {}, "identity_graph": {}, "returns": {}}
        self.next_id = 0

    def event(self, key):
        rng = self.rng
        raw = self.customer() if rng.random() < 0.6 else rng.choice(COOKIE_IDS)
        return {"event_id": key, "customer_id": raw,
                "session_id": self.maybe("s%03d" % rng.randint(1, 150)),
                "event_type": rng.choice(["product_view", "product_view", "page_view", "add_to_cart"]),
                "product_id": None, "category_id": self.maybe("cat1"),
                "event_time": self.ts(False)}

    def step(self):
        rng = self.rng
        ev = self.models["behavioral_events"]
        batch = []
        r = rng.random()
        if len(ev) > MAX_EVENTS:
            # Keep the mirror small: drop a slice of events (a recount, run exclusively).
            for k in rng.sample(sorted(ev), 300):
                batch.append(self.change("behavioral_events", "delete", {"event_id": k}, None))
        elif r < 0.8:
            # The hot path: inserts only, with a few ids retried from earlier batches (a
            # duplicate within one batch is t_random_diff.py's business).
            earlier = list(ev)[-300:]
            for _ in range(rng.randint(1, 200)):
                if earlier and rng.random() < 0.05:
                    k = rng.choice(earlier)
                else:
                    self.next_id += 1
                    k = "e%07d" % self.next_id
                batch.append(self.change("behavioral_events", "insert", None, self.event(k)))
            for _ in range(rng.randint(0, 3)):
                batch.append(self.return_change())
        elif r < 0.9 or not ev:
            # Identity links added, moved and deleted, with a few events in the same batch.
            for _ in range(rng.randint(1, 5)):
                k = rng.choice(IDENTITY_IDS)
                op = rng.choice(["insert", "insert", "update", "delete"])
                if op == "delete":
                    batch.append(self.change("identity_graph", "delete", {"identity_id": k}, None))
                elif op == "update" and k in self.models["identity_graph"]:
                    batch.append(self.change("identity_graph", "update", {"identity_id": k},
                                             {"customer_id": self.customer()}))
                else:
                    value = rng.choice(COOKIE_IDS) if rng.random() < 0.8 else self.customer()
                    batch.append(self.change("identity_graph", "insert", None, {
                        "identity_id": k, "customer_id": self.customer(),
                        "identity_type": "cookie", "identity_value": value,
                        "created_at": self.ts()}))
            for _ in range(rng.randint(0, 20)):
                self.next_id += 1
                k = "e%07d" % self.next_id
                batch.append(self.change("behavioral_events", "insert", None, self.event(k)))
        else:
            # Events corrected or withdrawn: moved to another id or time, deleted.
            keys = list(ev)
            for _ in range(rng.randint(1, 30)):
                k = rng.choice(keys)
                if rng.random() < 0.5:
                    batch.append(self.change("behavioral_events", "update", {"event_id": k},
                                             {"customer_id": self.customer(),
                                              "event_time": self.ts(False)}))
                else:
                    batch.append(self.change("behavioral_events", "delete", {"event_id": k}, None))
        return self.apply_sql(batch)


class Ticker(Session):
    def step(self):
        time.sleep(self.rng.random() * 0.02)
        secs = int(2 ** self.rng.uniform(6, 18.5))   # a minute to about four days
        return ("SELECT c360.tick(c360.as_of() + interval '%d seconds');\n"
                "SELECT (extract(epoch FROM c360.as_of()) * 1000000)::bigint;" % secs)

    def after(self, out):
        # Publish the clock, so that the other sessions' timestamps follow it.
        self.shared.clock = int(out[-1])


class Ddl(Session):
    """Changes the trait catalog under the load: DDL's statements, each once, when its share
    of the run has passed (pauses included); in between, nothing."""

    def __init__(self, *a, seconds):
        super().__init__(*a)
        self.seconds = seconds
        self.pending = None
        self.done = []      # (statement, its output)

    def step(self):
        if len(self.done) < len(DDL) and \
                time.time() - self.shared.t0 >= DDL[len(self.done)][0] * self.seconds:
            self.pending = DDL[len(self.done)][1]
            return self.pending
        self.pending = None
        time.sleep(0.05)
        return "SELECT 1;"

    def after(self, out):
        if self.pending:
            self.done.append((self.pending, out))


# Computed traits (name, input, aggregate, filter, lookback, time column) over every input,
# created before the load starts: windowed and not, with and without filters, every kind of
# aggregate; every ticket trait has a window on created_at (so their statement reads only
# rows after the earliest bound).  The clock moves by up to four days a tick, so windows of a
# few days see rows enter and leave all the time.
TRAITS = [
    ("views_7d", "behavioral_events", "count(*)", "event_type = 'product_view'", "7 days", None),
    ("fav_type_14d", "behavioral_events", "mode() WITHIN GROUP (ORDER BY event_type)", None, "14 days", None),
    ("sessions_3d", "behavioral_events", "count(DISTINCT session_id)", None, "3 days", None),
    ("last_event_type", "behavioral_events", "(array_agg(event_type ORDER BY event_time DESC))[1]", None, None, None),
    ("first_seen", "behavioral_events", "min(event_time)", None, None, None),
    ("spend_90d", "orders", "sum(total_amount)", None, "90 days", None),
    ("last_status", "orders", "(array_agg(order_status ORDER BY created_at DESC))[1]", None, None, None),
    ("max_items", "orders", "max(item_count)", None, None, None),
    ("avg_web", "orders", "avg(total_amount)", "channel = 'web'", None, None),
    ("open_tickets_30d", "support_tickets", "count(*)", "status = 'open'", "30 days", None),
    ("ticket_categories_60d", "support_tickets", "count(DISTINCT category)", None, "60 days", None),
    ("any_unresolved_45d", "support_tickets", "bool_or(resolved_at IS NULL)", None, "45 days", None),
    ("links", "identity_graph", "count(*)", None, None, None),
    ("cookie_links_30d", "identity_graph", "count(*)", "identity_type = 'cookie'", "30 days", "created_at"),
    ("last_link_value", "identity_graph", "(array_agg(identity_value ORDER BY created_at DESC))[1]", None, None, None),
    ("all_gold", "customers", "bool_and(loyalty_tier = 'gold')", None, None, None),
    ("doomed", "orders", "min(total_amount)", None, None, None),     # dropped under the load
    ("refunds_30d", "returns", "sum(amount)", None, "30 days", None),
    ("returns_n", "returns", "count(*)", None, None, None),
    ("last_reason", "returns", "(array_agg(reason ORDER BY created_at DESC))[1]", None, None, None),
]

# What the DDL session does under the load, at these shares of the run.  The second
# create_trait's window is over a column with no index yet: it builds one.
DDL = [
    (0.15, "SELECT c360.create_trait('late_views_3d', 'behavioral_events', 'count(*)', "
           "$f$event_type = 'product_view'$f$, '3 days');"),
    (0.30, "SELECT c360.drop_trait('doomed');"),
    (0.45, "SELECT c360.create_trait('updated_30d', 'orders', 'count(*)', lookback => '30 days', "
           "time_column => 'updated_at');"),
    (0.60, "SELECT c360.drop_trait('late_views_3d');"),
    (0.75, "SELECT c360.create_trait('late_link_values', 'identity_graph', "
           "'count(DISTINCT identity_value)');"),
]
FINAL_TRAITS = sorted({t[0] for t in TRAITS} - {"doomed"} | {"updated_30d", "late_link_values"})


def trait_sql(name, input, aggregate, filter, lookback, time_column):
    lit = lambda v: "NULL" if v is None else "$t$%s$t$" % v
    return "SELECT c360.create_trait(%s, %s, %s, %s, %s::interval, %s);" % (
        lit(name), lit(input), lit(aggregate), lit(filter), lit(lookback), lit(time_column))


# Segments over columns that every session moves (orders, events, tiers, ticks, traits).
# They have no sink, so the outbox keeps every row: the last row per member, in seq order,
# must say what segment_members says.
SEGMENTS = [
    ("big_spenders", "lifetime_value > 300", ["lifetime_value", "total_orders"]),
    ("browsers", "events_last_30d >= 3", ["events_last_30d", "sessions_last_30d", "last_active_at"]),
    ("gold_idle", "loyalty_tier = 'gold' AND lifecycle_stage <> 'active'", ["lifecycle_stage"]),
    ("viewers", "views_7d >= 2 AND spend_90d > 100", ["views_7d", "spend_90d", "last_status"]),
]

# Members whose last outbox row (highest seq) is not an enter or update with their payload,
# or the reverse.
OUTBOX_SQL = """
WITH last AS (
  SELECT DISTINCT ON (segment, customer_id) segment, customer_id, change, payload
  FROM c360.segment_changes ORDER BY segment, customer_id, seq DESC),
now_in AS (SELECT segment, customer_id, payload FROM last WHERE change <> 'exit'),
members AS (SELECT segment, customer_id, payload FROM c360.segment_members)
SELECT 'outbox says member, members do not: ' || segment || ' ' || customer_id
FROM (SELECT * FROM now_in EXCEPT SELECT * FROM members) a
UNION ALL
SELECT 'member, outbox does not say so: ' || segment || ' ' || customer_id
FROM (SELECT * FROM members EXCEPT SELECT * FROM now_in) b
LIMIT 10;
"""


def segment_problems(db, what):
    problems = []
    for name, predicate, columns in SEGMENTS:
        out = db.run(
            "WITH want AS (SELECT p.customer_id, %s AS payload FROM c360.customer_360 p\n"
            "              WHERE (%s) IS TRUE),\n"
            "     have AS (SELECT customer_id, payload FROM c360.segment_members WHERE segment = '%s')\n"
            "SELECT 'missing or stale: ' || customer_id FROM (TABLE want EXCEPT TABLE have) a\n"
            "UNION ALL SELECT 'extra or stale: ' || customer_id FROM (TABLE have EXCEPT TABLE want) b\n"
            "LIMIT 10;" % (db.run("SELECT c360._segment_payload(columns) FROM c360.segments"
                                  " WHERE name = '%s';" % name)[0], predicate, name))
        if out:
            problems.append("segment %s differs from its predicate %s:\n  %s" % (
                name, what, "\n  ".join(out)))
    out = db.run(OUTBOX_SQL)
    if out:
        problems.append("the outbox disagrees with the members %s:\n  %s" % (what, "\n  ".join(out)))
    return problems


def note_variety(db, varied):
    """Add to varied the traits that take more than one value (NULL counts as one) over the
    profile now: a trait that never did proved nothing."""
    names = db.run("SELECT name FROM c360.column_catalog;")
    if names:
        varied.update(db.run(" UNION ALL ".join(
            "SELECT '%s' FROM c360.customer_360 HAVING count(DISTINCT %s::text)"
            " + (count(*) > count(%s))::int > 1" % (n, n, n) for n in names) + ";"))


def checks(db, sessions, what, mirrors=True):
    """verify() empty, segments exact, and every session's writes in the mirrors."""
    problems = []
    n = int(db.run("SELECT count(*) FROM c360.verify();")[0])
    if n:
        problems.append("c360.verify() returned %d row(s) %s:\n  %s" % (n, what, "\n  ".join(
            db.run("SELECT * FROM c360.verify() LIMIT 20;"))))
    problems += segment_problems(db, what)
    written = {}    # table -> rows, over the sessions (their keys differ)
    for s in sessions if mirrors else []:
        for table, model in s.models.items():
            written.setdefault(table, []).extend(model.values())
    for table, rows in written.items():
        js = json.dumps(rows)
        out = db.run(
            "WITH m AS (SELECT r::text AS t FROM jsonb_populate_recordset(NULL::c360.%s, $m$%s$m$) r),\n"
            "     s AS (SELECT s::text AS t FROM c360.%s s)\n"
            "SELECT 'written, missing: ' || t FROM (SELECT t FROM m EXCEPT ALL SELECT t FROM s) a\n"
            "UNION ALL SELECT 'unexpected: ' || t FROM (SELECT t FROM s EXCEPT ALL SELECT t FROM m) b\n"
            "LIMIT 10;" % (table, js, table))
        if out:
            problems.append("mirror %s differs from what the sessions wrote %s:\n  %s" % (
                table, what, "\n  ".join(out)))
    return problems


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else random.SystemRandom().randrange(10 ** 9)
    seconds = float(os.environ.get("C360_CONCURRENCY_SECONDS", "60"))
    print("seed %d, %.0f s" % (seed, seconds), flush=True)
    dbname = "c360_conc_%d_%d" % (seed, os.getpid())
    admin("CREATE DATABASE %s" % dbname)
    db = Psql(dbname)
    db.run("SET TimeZone = 'UTC';\nCREATE EXTENSION customer360;")
    db.run("SELECT c360.tick('%s');" % START)
    db.run(RETURNS_INPUT)
    for t in TRAITS:
        db.run(trait_sql(*t))
    not_ready = db.run("SELECT name FROM c360.traits WHERE state <> 'ready';")
    if not_ready:
        print("FAIL: traits created on an empty profile are not ready: %s" % ", ".join(not_ready))
        sys.exit(1)
    for name, predicate, columns in SEGMENTS:
        db.run("SELECT c360.create_segment('%s', $p$%s$p$, '{%s}');" % (name, predicate, ",".join(columns)))
    # a trait a segment reads cannot go (2BP01); the DO block fails if drop_trait does not refuse
    db.run("DO $$ BEGIN PERFORM c360.drop_trait('views_7d');"
           " RAISE EXCEPTION 'drop_trait dropped a trait segment viewers reads';"
           " EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$;")
    n_sessions = 5
    shared = Shared(seed, n_sessions)
    shared.clock = int(db.run("SELECT (extract(epoch FROM c360.as_of()) * 1000000)::bigint;")[0])

    ddl = Ddl("ddl", shared, dbname, 5, seconds=seconds)
    sessions = [Orders("orders", shared, dbname, 1), Customers("customers", shared, dbname, 2),
                Events("events", shared, dbname, 3), Ticker("ticks", shared, dbname, 4), ddl]
    assert len(sessions) == n_sessions
    t0 = shared.t0 = time.time()
    for s in sessions:
        s.start()
    pauses = 0
    varied = set()
    paused = 0.0     # the sessions must run side by side for `seconds`, pauses not counted
    problems = []
    rng = random.Random(seed)
    next_pause = t0 + 1.0
    while not shared.stop.is_set() and time.time() - t0 - paused < seconds:
        time.sleep(0.05)
        if time.time() < next_pause:
            continue
        # A quiet moment: every session between transactions, then check everything.
        pause_start = time.time()
        shared.pause.set()
        try:
            shared.parked.wait(timeout=300)
        except threading.BrokenBarrierError:
            if not shared.errors:
                shared.error("main", "the sessions did not pause within 300 s (a hang?)")
            break
        shared.pause.clear()
        pauses += 1
        # Frequent pauses: a profile row left stale by a race is soon repaired by the next
        # change to that customer, so it must be caught before that.  The mirrors (every
        # event so far) are compared less often.
        problems = checks(db, sessions, "at pause %d (%.0f s)" % (pauses, time.time() - t0),
                          mirrors=pauses % 10 == 0)
        note_variety(db, varied)
        try:
            shared.resumed.wait(timeout=300)
        except threading.BrokenBarrierError:
            if not shared.errors:
                shared.error("main", "the sessions did not resume")
            break
        paused += time.time() - pause_start
        if problems:
            shared.stop.set()
            break
        next_pause = time.time() + rng.uniform(0.2, 1.5)
    shared.stop.set()
    for s in sessions:
        s.join(timeout=180)
        if s.is_alive():
            shared.errors.append("%s: still running 180 s after the stop (a hang?)" % s.name)
    elapsed = time.time() - t0 - paused

    if not problems and not shared.errors:
        problems = checks(db, sessions, "at the end")
    traits = db.run("SELECT name || ' ' || state FROM c360.traits ORDER BY name;")
    print("traits: " + ", ".join(traits))
    if not problems and not shared.errors:
        if len(ddl.done) != len(DDL):
            problems.append("the DDL session made %d of its %d catalog changes" % (len(ddl.done), len(DDL)))
        elif sorted(t.split()[0] for t in traits) != FINAL_TRAITS or any(not t.endswith(" ready") for t in traits):
            problems.append("c360.traits at the end: %s; want %s, all ready" % (traits, FINAL_TRAITS))
        # every trait took more than one value at some pause: its checks proved something
        note_variety(db, varied)
        dull = sorted(set(FINAL_TRAITS) - varied)
        if dull:
            problems.append("traits that never took more than one value over the profile: %s"
                            % ", ".join(dull))
        print("catalog changes under the load: " + "; ".join(
            "%s -> %s" % (re.sub(r"\s+", " ", sql)[:70], ",".join(out)) for sql, out in ddl.done))
    for s in sessions:
        print("session %-9s %6d batches, %7d changes" % (s.name, s.batches, s.changes))
    print("%d pauses checked, %.1f s side by side (+%.1f s paused), clock at %s" % (
        pauses, elapsed, paused, db.run("SELECT c360.as_of();")[0]))
    churn = db.run("SELECT segment || ' ' || count(*) FILTER (WHERE change = 'enter') || ' enters, '"
                   " || count(*) FILTER (WHERE change = 'exit') || ' exits, '"
                   " || count(*) FILTER (WHERE change = 'update') || ' updates'"
                   " FROM c360.segment_changes GROUP BY segment ORDER BY segment;")
    print("segment outbox: " + "; ".join(churn))
    failures = shared.errors + problems
    if not failures and elapsed < seconds - 1:
        failures.append("ran %.1f s, expected %.0f s" % (elapsed, seconds))
    if not failures and any(s.batches == 0 for s in sessions):
        failures.append("a session applied no batch")
    if not failures and len(churn) < len(SEGMENTS):
        failures.append("a segment had no member all along: its checks proved nothing")
    db.close()
    if failures:
        for f in failures:
            print("FAIL: " + f)
        print("database %s kept for a closer look (seed %d)" % (dbname, seed))
        sys.exit(1)
    admin("DROP DATABASE %s WITH (FORCE)" % dbname)
    print("ok")


if __name__ == "__main__":
    main()
