#!/usr/bin/env python3
"""test/kafka_events.py: messages for the Kafka source tests and bench, one per line as
kcat -K: reads them ("key:json value").

  kafka_events.py events FIRST COUNT [--customers N] [--prefix P] [--dups RATE] [--seed S]
                  [--format json|segment] [--now EPOCH_MS]
      COUNT behavioral events with ids P-FIRST.. for customers cust-1..cust-N (key: the
      customer); with --format segment the same events as Segment track calls (source
      option "format": "segment", event_time always ISO-8601 text, the context a browser
      library sends).  event_time is ISO-8601 text or epoch milliseconds, alternately, within the
      last 25 days or 35-60 days ago (never near the 30-day bound, so that no event leaves
      the window while a test runs).  With --dups, that share of the lines re-sends an
      earlier event of the same run unchanged (a producer retry).  The unique event ids
      go to the file --ids names, one a line; with --csv, the same events as CSV rows of
      the mirror c360.behavioral_events (for a COPY baseline).
  kafka_events.py cookies COUNT [--cookies N] [--prefix P] [--seed S]
      COUNT events of anonymous cookie ids ck-1..ck-N.
  kafka_events.py bad COUNT_EACH [--good N] [--tombstones N] [--seed S]
      malformed messages of every kind the worker must dead-letter, COUNT_EACH of each
      kind, shuffled together with N good events (ids P-1.., listed in --ids) and N
      empty values (tombstones when kcat produces with -Z); each line's kind goes to
      --kinds (one a line, same order).
"""
import argparse
import datetime
import json
import random
import sys
import time

# --now fixes it, so that two runs (two formats) write the same events
NOW_MS = int(time.time() * 1000)
DAY_MS = 86400 * 1000
TYPES = ["page_view", "product_view", "add_to_cart", "purchase", "search"]


def event_time(rng, i):
    if rng.random() < 0.1:
        ms = NOW_MS - rng.randint(35 * DAY_MS, 60 * DAY_MS)
    else:
        ms = NOW_MS - rng.randint(60 * 1000, 25 * DAY_MS)
    if i % 2 == 0:
        return ms
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def event(rng, event_id, customer, i):
    return {
        "event_id": event_id,
        "customer_id": customer,
        "session_id": "s-%s-%d" % (customer, rng.randint(1, 5)),
        "event_type": rng.choice(TYPES),
        "product_id": "p-%d" % rng.randint(1, 500) if rng.random() < 0.7 else None,
        "category_id": "cat-%d" % rng.randint(1, 20),
        "event_time": event_time(rng, i),
        "user_agent": "test",  # not a column: ignored
    }


def iso_time(t):
    """An event_time, epoch milliseconds or ISO-8601 text, as ISO-8601 text."""
    if isinstance(t, int):
        d = datetime.datetime.fromtimestamp(t / 1000, datetime.timezone.utc)
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t % 1000)
    return t


def segment_track(e):
    """The event as a Segment track call: the same mirror row through format segment."""
    t = iso_time(e["event_time"])
    return {
        "type": "track",
        "messageId": e["event_id"],
        "userId": e["customer_id"],
        "anonymousId": "a-" + e["customer_id"],
        "event": e["event_type"],
        "timestamp": t,
        "originalTimestamp": t,
        "sentAt": t,
        "receivedAt": t,
        "channel": "client",
        "context": {
            "sessionId": e["session_id"],
            "library": {"name": "analytics.js", "version": "4.1.0"},
            "ip": "10.0.0.1",
            "locale": "en-US",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
            "page": {"path": "/p", "url": "https://shop.example/p"},
        },
        "properties": {"product_id": e["product_id"], "category": e["category_id"]},
        "integrations": {},
        "version": 2,
    }


def line(key, value):
    return "%s:%s" % (key, json.dumps(value, separators=(",", ":")))


def csv_row(e):
    """The event as a COPY (CSV) row of the mirror c360.behavioral_events."""
    cols = [e["event_id"], e["customer_id"], e["session_id"], e["event_type"],
            e["product_id"], e["category_id"], iso_time(e["event_time"])]
    return ",".join("" if c is None else '"%s"' % c for c in cols)


def events(a, out):
    rng = random.Random(a.seed)
    sent = []
    ids = open(a.ids, "w") if a.ids else None
    csv = open(a.csv, "w") if a.csv else None
    for n in range(a.count):
        if sent and rng.random() < a.dups:
            out.write(rng.choice(sent) + "\n")
            continue
        i = a.first + n
        customer = "cust-%d" % rng.randint(1, a.customers)
        e = event(rng, "%s-%d" % (a.prefix, i), customer, i)
        l = line(customer, segment_track(e) if a.format == "segment" else e)
        if csv:
            csv.write(csv_row(e) + "\n")
        if len(sent) < 5000:
            sent.append(l)
        else:
            sent[n % 5000] = l
        out.write(l + "\n")
        if ids:
            ids.write("%s-%d\n" % (a.prefix, i))
    if ids:
        ids.close()
    if csv:
        csv.close()


def cookies(a, out):
    rng = random.Random(a.seed)
    for i in range(a.count):
        ck = "ck-%d" % rng.randint(1, a.cookies)
        e = event(rng, "%s-%d" % (a.prefix, i), ck, i)
        e["event_time"] = NOW_MS - rng.randint(60 * 1000, 20 * DAY_MS)
        out.write(line(ck, e) + "\n")


def bad(a, out):
    """Every kind of message the decoder or the apply path must refuse, one a line."""
    rng = random.Random(a.seed)
    good = lambda i: {"event_id": "bad-%d" % i, "customer_id": "cust-1", "event_time": NOW_MS}
    kinds = {
        "bad_json": lambda i: '{"event_id": "bad-%d", "customer_id": ' % i,
        "not_object": lambda i: rng.choice(["[1, 2, 3]", "42", '"a string"', "null", "true"]),
        "no_customer": lambda i: json.dumps({"event_id": "bad-%d" % i, "event_time": NOW_MS}),
        "no_event_id": lambda i: json.dumps({"customer_id": "cust-1", "event_time": NOW_MS}),
        "null_customer": lambda i: json.dumps(dict(good(i), customer_id=None)),
        "object_value": lambda i: json.dumps(dict(good(i), customer_id={"id": "cust-1"})),
        "array_value": lambda i: json.dumps(dict(good(i), event_type=["a", "b"])),
        "bad_time": lambda i: json.dumps(dict(good(i), event_time="not a time")),
        "time_range": lambda i: json.dumps(dict(good(i), event_time=1e300)),
        "bad_utf8": lambda i: '{"event_id": "bad-%d", "customer_id": "\udcff"}' % i,
        "oversized": lambda i: json.dumps(dict(good(i), pad="x" * 70000)),
        "empty": lambda i: "",
    }
    lines = []
    for kind, make in kinds.items():
        for _ in range(a.count):
            lines.append((kind, make(len(lines))))
    lines += [("tombstone", "")] * a.tombstones
    ids = open(a.ids, "w") if a.ids else None
    for i in range(1, a.good + 1):
        e = event(rng, "%s-%d" % (a.prefix, i), "cust-%d" % rng.randint(1, a.customers), i)
        lines.append(("good", json.dumps(e)))
        if ids:
            ids.write("%s-%d\n" % (a.prefix, i))
    rng.shuffle(lines)
    kf = open(a.kinds, "w") if a.kinds else None
    for kind, value in lines:
        # surrogateescape turns \udcff into the single byte 0xff: invalid UTF-8
        out.buffer.write(("k:" + value + "\n").encode("utf-8", "surrogateescape"))
        if kf:
            kf.write(kind + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["events", "cookies", "bad"])
    p.add_argument("numbers", type=int, nargs="+")
    p.add_argument("--customers", type=int, default=10000)
    p.add_argument("--cookies", type=int, default=50)
    p.add_argument("--prefix", default="ev")
    p.add_argument("--dups", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ids")
    p.add_argument("--kinds")
    p.add_argument("--csv")
    p.add_argument("--format", choices=["json", "segment"], default="json")
    p.add_argument("--good", type=int, default=0)
    p.add_argument("--tombstones", type=int, default=0)
    p.add_argument("--now", type=int, help="epoch milliseconds the event times count back from")
    a = p.parse_args()
    if a.now is not None:
        global NOW_MS
        NOW_MS = a.now
    if a.what == "events":
        a.first, a.count = a.numbers
        events(a, sys.stdout)
    elif a.what == "cookies":
        a.count = a.numbers[0]
        cookies(a, sys.stdout)
    else:
        a.count = a.numbers[0]
        sys.stdout.flush()
        bad(a, sys.stdout)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
