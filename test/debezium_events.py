#!/usr/bin/env python3
"""test/debezium_events.py: Debezium change events (Kafka Connect's JSON converter) for the
debezium format's test and bench, one message a line as kcat -K '\\t' -Z reads them
("key<TAB>value"; an empty key or value is a null one: a truncate's key, a tombstone).

Each stream is generated from a model of the source table, and the rows the table holds at
the end are written out as the mirror must show them (each column as the encoding of its
last write decodes), so that the test compares the mirror with rows computed apart from
the decoder.  Values are encoded as Debezium documents them, chosen at random per message:
with or without the schema/payload wrapper; decimals as decimal.handling.mode precise
(Decimal, or VariableScaleDecimal), string or double; timestamps as io.debezium.time.
Timestamp / MicroTimestamp / NanoTimestamp / ZonedTimestamp / Date (and Kafka Connect's
Timestamp), or without a schema as integers the decoder reads by magnitude, or ISO text.

  debezium_events.py customers DIR
      a scripted stream of table dbz.public.customers (key "id", "mail" for email): snapshot
      reads, creates, updates with a full, a key-only and a null before, an unchanged
      TOASTed value (Debezium's placeholder), deletes with a key-only and a null before
      (the message key names the row) each followed by its tombstone, two truncates (with
      and without schema), and two bad messages.
  debezium_events.py orders COUNT DIR [--keys K] [--customers N] [--bad RATE] [--seed S]
      COUNT messages of table dbz.public.orders (key "id", "amount" for total_amount) for
      orders o-1..o-K: first a snapshot (op r) of half the keys, then creates, updates
      (before null, key-only or full; the customer moves now and then), deletes followed by
      tombstones, re-creates; RATE of the messages are bad ones of every kind.
  debezium_events.py events [--schema] < kafka_events.py output
      the same behavioural events as creates of table dbz.public.behavioral_events.

Files written to DIR for customers and orders: NAME.msgs (the messages), NAME.expected.csv
(the final rows, the mirror's columns), NAME.bad.csv (kind, payload of each bad message),
NAME.stats (JSON: messages, changes, tombstones, bad).
"""
import argparse
import base64
import csv
import datetime
import json
import random
import sys
import time

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
NOW_US = int(time.time()) * 1000000
DAY_US = 86400 * 1000000
UNAVAILABLE = "__debezium_unavailable_value"

# per table: the source table's columns (name, kind) and the input columns they feed
TABLES = {
    "customers": {
        "columns": [("id", "text"), ("mail", "text"), ("first_name", "text"), ("last_name", "text"),
                    ("phone", "text"), ("acquisition_channel", "text"), ("signup_date", "ts"),
                    ("loyalty_tier", "text"), ("last_updated", "ts")],
        "input": ["customer_id", "email", "first_name", "last_name", "phone", "acquisition_channel",
                  "signup_date", "loyalty_tier", "last_updated"],
    },
    "orders": {
        "columns": [("id", "text"), ("customer_id", "text"), ("order_status", "text"), ("amount", "num"),
                    ("item_count", "int"), ("channel", "text"), ("created_at", "ts"), ("updated_at", "ts")],
        "input": ["order_id", "customer_id", "order_status", "total_amount", "item_count", "channel",
                  "created_at", "updated_at"],
    },
    "behavioral_events": {
        "columns": [("event_id", "text"), ("customer_id", "text"), ("session_id", "text"),
                    ("event_type", "text"), ("product_id", "text"), ("category_id", "text"),
                    ("event_time", "ts")],
        "input": ["event_id", "customer_id", "session_id", "event_type", "product_id", "category_id",
                  "event_time"],
    },
}

SOURCE_SCHEMA = {"type": "struct", "optional": False, "name": "io.debezium.connector.postgresql.Source",
                 "field": "source", "fields": [
                     {"type": "string", "optional": False, "field": "version"},
                     {"type": "string", "optional": False, "field": "connector"},
                     {"type": "string", "optional": False, "field": "name"},
                     {"type": "int64", "optional": False, "field": "ts_ms"},
                     {"type": "boolean", "optional": True, "default": False, "field": "snapshot"},
                     {"type": "string", "optional": False, "field": "db"},
                     {"type": "string", "optional": False, "field": "schema"},
                     {"type": "string", "optional": False, "field": "table"},
                     {"type": "int64", "optional": True, "field": "txId"},
                     {"type": "int64", "optional": True, "field": "lsn"}]}


def dumps(v):
    return json.dumps(v, separators=(",", ":"))


def ts_text(us):
    """An instant (microseconds since 1970) as the mirror's timestamptz reads back."""
    t = EPOCH + datetime.timedelta(microseconds=us)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def unscaled_b64(n):
    return base64.b64encode(n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)).decode()


def real_text(d):
    """A double as the decoder writes it (kafka_decode.c real_text: %.15g, more if needed)."""
    for prec in (15, 16, 17):
        t = "%.*g" % (prec, d)
        if float(t) == d:
            return t
    return t


def cents_text(c):
    return "%s%d.%02d" % ("-" if c < 0 else "", abs(c) // 100, abs(c) % 100)


class Encoding:
    """The encodings of one message: with or without schema, and per column its mode."""

    NUM_SCHEMA = ["precise", "variable", "string", "double"]
    NUM_BARE = ["variable", "string", "double"]
    TS_SCHEMA = ["ms", "connect_ms", "us", "ns", "zoned", "date"]
    TS_BARE = ["ms", "us", "ns", "iso", "days"]

    def __init__(self, rng, table, schema=None):
        self.table = table
        self.schema = rng.random() < 0.5 if schema is None else schema
        self.modes = {}
        for name, kind in TABLES[table]["columns"]:
            if kind == "num":
                self.modes[name] = rng.choice(self.NUM_SCHEMA if self.schema else self.NUM_BARE)
            elif kind == "ts":
                # dates are rarer: they drop the time of day
                modes = self.TS_SCHEMA if self.schema else self.TS_BARE
                self.modes[name] = rng.choice(modes[:-1] * 4 + modes[-1:])
            elif kind == "int":
                self.modes[name] = rng.choice(["int16", "int32", "int64"])

    def field_schema(self, name, kind):
        mode = self.modes.get(name)
        plain = lambda t: {"type": t, "optional": name != "id", "field": name}
        named = lambda t, n: {"type": t, "optional": True, "name": n, "version": 1, "field": name}
        if kind == "text":
            return plain("string")
        if kind == "int":
            return plain(mode)
        if kind == "num":
            if mode == "precise":
                s = named("bytes", "org.apache.kafka.connect.data.Decimal")
                s["parameters"] = {"scale": "2", "connect.decimal.precision": "10"}
                return s
            if mode == "variable":
                s = named("struct", "io.debezium.data.VariableScaleDecimal")
                s["fields"] = [{"type": "int32", "optional": False, "field": "scale"},
                               {"type": "bytes", "optional": False, "field": "value"}]
                return s
            return plain(mode)
        return {"ms": named("int64", "io.debezium.time.Timestamp"),
                "connect_ms": named("int64", "org.apache.kafka.connect.data.Timestamp"),
                "us": named("int64", "io.debezium.time.MicroTimestamp"),
                "ns": named("int64", "io.debezium.time.NanoTimestamp"),
                "zoned": named("string", "io.debezium.time.ZonedTimestamp"),
                "date": named("int32", "io.debezium.time.Date")}[mode]

    def value(self, name, kind, v, rng):
        """(the JSON value, the text the mirror shows for it)"""
        if v is None or v == UNAVAILABLE:
            return v, None
        mode = self.modes.get(name)
        if kind == "text":
            return v, v
        if kind == "int":
            return v, str(v)
        if kind == "num":
            if mode == "precise":
                return unscaled_b64(v), cents_text(v)
            if mode == "variable":
                return {"scale": 2, "value": unscaled_b64(v)}, cents_text(v)
            if mode == "string":
                return cents_text(v), cents_text(v)
            return v / 100, real_text(v / 100)
        # timestamps, v in microseconds
        if mode in ("ms", "connect_ms"):
            return v // 1000, ts_text(v // 1000 * 1000)
        if mode == "us":
            return v, ts_text(v)
        if mode == "ns":
            # sub-microsecond digits below one half: the column's input rounds them away
            return v * 1000 + rng.randint(0, 499), ts_text(v)
        if mode in ("zoned", "iso"):
            return ts_text(v).replace(" ", "T").replace("+00", "Z"), ts_text(v)
        return v // DAY_US, ts_text(v // DAY_US * DAY_US)


class Stream:
    """A table's change stream and the rows it leaves."""

    def __init__(self, table, rng):
        self.table = table
        self.rng = rng
        self.cols = TABLES[table]["columns"]
        self.rows = {}          # key -> {column: raw value}
        self.shown = {}         # key -> {column: the mirror's text}
        self.lines = []
        self.bad = []
        self.changes = 0
        self.tombstones = 0
        self.lsn = 1000

    def key_doc(self, key):
        # the key's bytes never change for a row: Kafka partitions by them
        if hash_parity(key):
            return dumps({"schema": {"type": "struct", "optional": False,
                                     "name": "dbz.public.%s.Key" % self.table,
                                     "fields": [{"type": "string", "optional": False, "field": "id"}]},
                          "payload": {"id": key}})
        return dumps({"id": key})

    def image(self, enc, row, only_key=False):
        out = {}
        for name, kind in self.cols:
            if only_key and name != "id":
                continue
            out[name] = enc.value(name, kind, row.get(name), self.rng)[0]
        return out

    def envelope(self, enc, op, before, after):
        self.lsn += 8
        payload = {"before": before, "after": after,
                   "source": {"version": "2.7.0.Final", "connector": "postgresql", "name": "dbz",
                              "ts_ms": NOW_US // 1000, "snapshot": op == "r", "db": "shop",
                              "schema": "public", "table": self.table, "txId": self.lsn // 8,
                              "lsn": self.lsn},
                   "op": op, "ts_ms": NOW_US // 1000}
        if op == "t":
            del payload["before"], payload["after"]
        if not enc.schema:
            return dumps(payload)
        row = {"type": "struct", "optional": True, "name": "dbz.public.%s.Value" % self.table,
               "fields": [enc.field_schema(n, k) for n, k in self.cols]}
        schema = {"type": "struct", "optional": False, "name": "dbz.public.%s.Envelope" % self.table,
                  "version": 1, "fields": [dict(row, field="before"), dict(row, field="after"),
                                           SOURCE_SCHEMA,
                                           {"type": "string", "optional": False, "field": "op"},
                                           {"type": "int64", "optional": True, "field": "ts_ms"}]}
        return dumps({"schema": schema, "payload": payload})

    def emit(self, key, value):
        self.lines.append("%s\t%s" % (key, value))

    def write(self, op, key, row, before="full", schema=None):
        """A create/read/update of key to row; before: full, key, null."""
        enc = Encoding(self.rng, self.table, schema)
        old = self.rows.get(key)
        b = None
        if op == "u" and old is not None and before != "null":
            b = self.image(enc, old, only_key=before == "key")
        after = self.image(enc, row)
        shown = dict(self.shown.get(key, {}))
        for name, kind in self.cols:
            if row.get(name) != UNAVAILABLE:   # a placeholder keeps the stored value
                shown[name] = enc.value(name, kind, row.get(name), self.rng)[1]
        stored = dict(old or {})
        stored.update({n: v for n, v in row.items() if v != UNAVAILABLE})
        self.rows[key] = stored
        self.shown[key] = shown
        self.emit(self.key_doc(key), self.envelope(enc, op, b, after))
        self.changes += 1

    def delete(self, key, before="key", schema=None):
        enc = Encoding(self.rng, self.table, schema)
        old = self.rows.pop(key)
        self.shown.pop(key)
        b = None if before == "null" else self.image(enc, old, only_key=before == "key")
        self.emit(self.key_doc(key), self.envelope(enc, "d", b, None))
        self.emit(self.key_doc(key), "")     # the tombstone
        self.changes += 1
        self.tombstones += 1

    def truncate(self, schema):
        enc = Encoding(self.rng, self.table, schema)
        self.rows.clear()
        self.shown.clear()
        self.emit("", self.envelope(enc, "t", None, None))
        self.changes += 1

    def bad_message(self, kind, key, row):
        """A message the decoder must dead-letter (or the apply path: uncastable)."""
        schema = kind in ("no_scale", "bad_time") or (kind not in ("precise_no_schema",) and self.rng.random() < 0.5)
        enc = Encoding(self.rng, self.table, schema)
        if kind == "precise_no_schema":
            enc.modes["amount"] = "precise"
        value = json.loads(self.envelope(enc, "c", None, self.image(enc, row)))
        payload = value["payload"] if schema else value
        if kind == "bad_json":
            text = dumps(value)[:-17]
        elif kind == "not_object":
            n = len(self.lines)     # each bad message is a payload of its own
            text = self.rng.choice(["[1,2,%d]", "%d", '"c%d"', '{"a":%d}'[:-1] + "]"]) % n
        else:
            if kind == "unknown_op":
                payload["op"] = self.rng.choice(["x", "create", "C", "U"])
            elif kind == "message_op":
                payload["op"] = "m"
                payload["message"] = {"prefix": "p", "content": "Ymfy"}
                del payload["before"], payload["after"]
            elif kind == "no_after":
                payload["after"] = None
            elif kind == "null_customer":
                payload["after"]["customer_id"] = None
            elif kind == "no_scale":
                set_field_schema(value, {"type": "bytes", "optional": True,
                                         "name": "org.apache.kafka.connect.data.Decimal", "field": "amount"})
                payload["after"]["amount"] = unscaled_b64(row["amount"])
            elif kind == "bad_time":
                set_field_schema(value, {"type": "int64", "optional": True, "name": "io.debezium.time.Timestamp",
                                         "field": "created_at"})
                payload["after"]["created_at"] = "yesterday"
            elif kind == "uncastable":
                payload["after"]["item_count"] = "lots"
            text = dumps(value)
        self.emit(self.key_doc(key), text)
        self.bad.append((kind, text))

    def save(self, out, name):
        with open("%s/%s.msgs" % (out, name), "w") as f:
            for line in self.lines:
                f.write(line + "\n")
        with open("%s/%s.expected.csv" % (out, name), "w", newline="") as f:
            w = csv.writer(f)
            for key in sorted(self.shown):
                w.writerow(["" if self.shown[key][n] is None else self.shown[key][n] for n, _ in self.cols])
        with open("%s/%s.bad.csv" % (out, name), "w", newline="") as f:
            csv.writer(f).writerows(self.bad)
        with open("%s/%s.stats" % (out, name), "w") as f:
            json.dump({"messages": len(self.lines), "changes": self.changes,
                       "tombstones": self.tombstones, "bad": len(self.bad)}, f)


def set_field_schema(value, schema):
    """Replace a field's schema in the before and after row structs of a value."""
    for row in value["schema"]["fields"][:2]:
        row["fields"] = [schema if f["field"] == schema["field"] else f for f in row["fields"]]


def hash_parity(key):
    return sum(key.encode()) % 2 == 0


def customer_row(rng, key, tier=None):
    return {"id": key, "mail": "%s@example.org" % key, "first_name": rng.choice(["Anne", "Bo", "Cy"]),
            "last_name": rng.choice(["Kretchmar", "Lee", None]), "phone": None,
            "acquisition_channel": rng.choice(["web", "app"]),
            "signup_date": NOW_US - rng.randint(100, 900) * DAY_US + rng.randint(0, DAY_US),
            "loyalty_tier": tier or rng.choice(["gold", "silver", "bronze"]),
            "last_updated": NOW_US - rng.randint(0, 50 * DAY_US)}


def customers(a):
    rng = random.Random(a.seed)
    s = Stream("customers", rng)
    for i in range(1, 21):                                  # the snapshot
        s.write("r", "dc-%d" % i, customer_row(rng, "dc-%d" % i), schema=i % 2 == 0)
    s.write("c", "dc-21", customer_row(rng, "dc-21"), schema=False)
    s.write("u", "dc-1", dict(s.rows["dc-1"], first_name="Anne Marie"), before="full", schema=True)
    s.write("u", "dc-2", dict(s.rows["dc-2"], loyalty_tier="platinum"), before="null", schema=False)
    s.write("u", "dc-3", dict(s.rows["dc-3"], mail="new3@example.org"), before="key", schema=True)
    s.write("u", "dc-6", dict(s.rows["dc-6"], loyalty_tier=UNAVAILABLE, phone="555"), before="key")
    s.delete("dc-4", before="key", schema=True)
    s.delete("dc-5", before="null", schema=False)
    s.bad_message("unknown_op", "dc-7", customer_row(rng, "dc-7"))
    s.truncate(schema=True)                                 # every row above goes
    for i in range(30, 36):
        s.write("c", "dc-%d" % i, customer_row(rng, "dc-%d" % i))
    s.write("u", "dc-30", dict(s.rows["dc-30"], last_name="After"), before="null")
    s.delete("dc-31", before="full")
    s.truncate(schema=False)
    for i in range(40, 46):
        s.write("c", "dc-%d" % i, customer_row(rng, "dc-%d" % i))
    s.write("u", "dc-41", dict(s.rows["dc-41"], loyalty_tier=UNAVAILABLE, first_name="Cy Two"), before="full")
    s.write("u", "dc-43", dict(s.rows["dc-43"], mail="m43@example.org"), before="null", schema=True)
    s.delete("dc-42", before="null", schema=True)
    s.bad_message("no_after", "dc-44", s.rows["dc-44"])
    s.save(a.dir, "customers")


def order_row(rng, key, customers, old=None):
    row = dict(old) if old else {"id": key, "customer_id": "cust-%d" % rng.randint(1, customers),
                                 "created_at": NOW_US - rng.randint(DAY_US, 400 * DAY_US) + rng.randint(0, 999999)}
    if old and rng.random() < 0.1:
        row["customer_id"] = "cust-%d" % rng.randint(1, customers)     # the order moves
    row.update({"order_status": rng.choice(["placed", "paid", "shipped", "delivered", "returned"]),
                "amount": rng.randint(0, 99999), "item_count": rng.randint(1, 20),
                "channel": rng.choice(["web", "app", "store", None]),
                "updated_at": NOW_US - rng.randint(0, 30 * DAY_US) + rng.randint(0, 999999)})
    return row


BAD_KINDS = ["bad_json", "not_object", "unknown_op", "message_op", "no_after", "precise_no_schema",
             "no_scale", "null_customer", "bad_time", "uncastable"]


def orders(a):
    rng = random.Random(a.seed)
    s = Stream("orders", rng)
    keys = ["o-%d" % i for i in range(1, a.keys + 1)]
    for key in keys[: a.keys // 2]:                          # the snapshot
        s.write("r", key, order_row(rng, key, a.customers))
    uncastable = 0
    while len(s.lines) < a.count:
        key = rng.choice(keys)
        if rng.random() < a.bad:
            kind = rng.choice(BAD_KINDS)
            if kind == "uncastable":
                # each one makes its batch go change by change: a few are enough
                if uncastable >= 3:
                    continue
                uncastable += 1
            s.bad_message(kind, key, order_row(rng, key, a.customers, s.rows.get(key)))
        elif key not in s.rows:
            s.write("c", key, order_row(rng, key, a.customers))
        elif rng.random() < 0.8:
            s.write("u", key, order_row(rng, key, a.customers, s.rows[key]),
                    before=rng.choice(["null", "null", "key", "full"]))
        else:
            s.delete(key, before=rng.choice(["key", "key", "null", "full"]))
    s.save(a.dir, "orders")


def events(a):
    """kafka_events.py's events (key:json lines) as creates of an events table."""
    rng = random.Random(1)
    s = Stream("behavioral_events", rng)
    for line in sys.stdin:
        e = json.loads(line.split(":", 1)[1])
        t = e["event_time"]
        if isinstance(t, str):
            t = int(datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ")
                    .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
        enc = Encoding(rng, "behavioral_events", a.schema)
        enc.modes["event_time"] = "us" if a.schema else "ms"
        row = {n: e.get(n) for n, _ in s.cols}
        row["event_time"] = t * 1000
        sys.stdout.write("%s\t%s\n" % (dumps({"event_id": e["event_id"]}),
                                       s.envelope(enc, "c", None, s.image(enc, row))))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("customers")
    c.add_argument("dir")
    c.add_argument("--seed", type=int, default=1)
    o = sub.add_parser("orders")
    o.add_argument("count", type=int)
    o.add_argument("dir")
    o.add_argument("--keys", type=int, default=2000)
    o.add_argument("--customers", type=int, default=1000)
    o.add_argument("--bad", type=float, default=0.01)
    o.add_argument("--seed", type=int, default=2)
    e = sub.add_parser("events")
    e.add_argument("--schema", action="store_true")
    a = p.parse_args()
    {"customers": customers, "orders": orders, "events": events}[a.what](a)


if __name__ == "__main__":
    main()
