#!/usr/bin/env python3
"""test/segment_events.py: Segment spec calls for test/t_segment.sh, one per line as kcat -K:
reads them ("key:json value"), and what the source must make of them.

  segment_events.py stream COUNT --expect DIR [--customers N] [--prefix P] [--seed S]
      COUNT calls of COUNT/20 persons (key: the person, so that one person's calls keep their
      order): track, page and screen calls under the anonymousId until the person's first
      identify, under the userId after it, some under a legacy user id that an alias call
      later links; identify calls that sometimes move the anonymousId to another customer;
      resent events (same messageId); calls skipped by design; malformed calls.  Writes the
      source's due result to DIR: events.csv (the mirror rows of the unique events),
      links.csv (identity_graph: the last link per identity_id), counts (messages, changes,
      skipped, bad).
  segment_events.py bad COUNT_EACH --good N --kinds FILE --ids FILE [--prefix P] [--seed S]
      COUNT_EACH malformed or skipped calls of every kind shuffled with N good track calls
      (ids P-1.. listed in --ids); each line's kind goes to --kinds (same order).  Kind
      "tombstone" is an empty value: produce with kcat -Z.
"""
import argparse
import csv
import datetime
import json
import os
import random
import sys

NOW = datetime.datetime.now(datetime.timezone.utc)
OFFSETS = ["Z", "+02:00", "-0500", "+05:30", "-08"]


def iso(rng):
    """A moment in the last 25 days (never near the 30-day bound) in one of the spec's forms."""
    t = NOW - datetime.timedelta(seconds=rng.randint(60, 25 * 86400), milliseconds=rng.randint(0, 999))
    off = rng.choice(OFFSETS)
    if off == "Z":
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)
    sign = 1 if off[0] == "+" else -1
    hours, minutes = int(off[1:3]), int(off[-2:]) if len(off) > 3 else 0
    local = t + sign * datetime.timedelta(hours=hours, minutes=minutes)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d" % (t.microsecond // 1000) + off


def line(key, value):
    return "%s:%s" % (key, value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))


class Person:
    def __init__(self, rng, prefix, i, customers):
        self.key = "%s-p%d" % (prefix, i)
        self.anon = "%s-anon-%d" % (prefix, i)
        self.legacy = "%s-legacy-%d" % (prefix, i)
        self.user = "cust-%d" % rng.randint(1, customers)
        self.identified = False


def event_call(rng, p, message_id, legacy):
    """A track, page or screen call of p, and the mirror row it must become."""
    kind = rng.choice(["track"] * 4 + ["page"] * 2 + ["screen"])
    c = {"type": kind, "messageId": message_id, "timestamp": iso(rng)}
    if legacy:
        c["userId"] = p.legacy
    elif p.identified:
        c["userId"], c["anonymousId"] = p.user, p.anon
    else:
        c["anonymousId"] = p.anon
    session = "%s-s%d" % (p.key, rng.randint(1, 4))
    product = "p-%d" % rng.randint(1, 300) if rng.random() < 0.6 else None
    category = "cat-%d" % rng.randint(1, 20) if rng.random() < 0.8 else None
    c["context"] = {"sessionId": session, "library": {"name": "analytics.js", "version": "4.1.0"}}
    c["properties"] = {"product_id": product, "category": category}
    if kind == "track":
        c["event"] = rng.choice(["product_view", "add_to_cart", "purchase", "search"])
    event_type = {"track": c.get("event"), "page": "page_view", "screen": "screen_view"}[kind]
    customer = c.get("userId") or c["anonymousId"]
    return c, [message_id, customer, session, event_type, product, category, c["timestamp"]]


def skipped_call(rng, p, message_id):
    kind = rng.choice(["group", "identify_user", "identify_anon", "unknown"])
    c = {"messageId": message_id, "timestamp": iso(rng)}
    if kind == "group":
        c.update(type="group", userId=p.user, groupId="g-1")
    elif kind == "identify_user":
        c.update(type="identify", userId=p.user, traits={"email": "x@example.org"})
    elif kind == "identify_anon":
        c.update(type="identify", anonymousId=p.anon, traits={"plan": "free"})
    else:
        c.update(type="experiment_viewed", userId=p.user)
    return c


def bad_call(rng, message_id):
    return rng.choice([
        '{"type": "track", "messageId": ',
        json.dumps({"type": "track", "userId": "cust-1", "event": "x", "timestamp": iso(rng)}),
        json.dumps({"type": "track", "messageId": message_id, "userId": "cust-1", "event": "x",
                    "timestamp": "yesterday"}),
        json.dumps({"type": "track", "messageId": message_id, "userId": "cust-1", "timestamp": iso(rng)}),
        json.dumps({"type": "page", "messageId": message_id, "timestamp": iso(rng)}),
    ])


def stream(a, out):
    rng = random.Random(a.seed)
    persons = [Person(rng, a.prefix, i, a.customers) for i in range(1, max(a.count // 20, 1) + 1)]
    events, links, sent_events = {}, {}, []
    counts = {"messages": 0, "changes": 0, "skipped": 0, "bad": 0}
    for n in range(a.count):
        p = rng.choice(persons)
        mid = "%s-m%d" % (a.prefix, n)
        r = rng.random()
        counts["messages"] += 1
        if r < 0.03 and sent_events:
            out.write(rng.choice(sent_events) + "\n")     # a resent event: the mirror keeps one
            counts["changes"] += 1
        elif r < 0.70:
            c, row = event_call(rng, p, mid, legacy=rng.random() < 0.05)
            events[mid] = row
            sent_events.append(line(p.key, c))
            out.write(sent_events[-1] + "\n")
            counts["changes"] += 1
        elif r < 0.80:
            if rng.random() < 0.1:
                p.user = "cust-%d" % rng.randint(1, a.customers)   # the link moves
            p.identified = True
            c = {"type": "identify", "messageId": mid, "userId": p.user, "anonymousId": p.anon,
                 "timestamp": iso(rng), "traits": {"email": "%s@example.org" % p.user}}
            links["segment:anonymous_id:" + p.anon] = [p.user, "anonymous_id", p.anon, c["timestamp"]]
            out.write(line(p.key, c) + "\n")
            counts["changes"] += 1
        elif r < 0.84:
            c = {"type": "alias", "messageId": mid, "userId": p.user, "previousId": p.legacy,
                 "timestamp": iso(rng)}
            links["segment:alias:" + p.legacy] = [p.user, "alias", p.legacy, c["timestamp"]]
            out.write(line(p.key, c) + "\n")
            counts["changes"] += 1
        elif r < 0.96:
            out.write(line(p.key, skipped_call(rng, p, mid)) + "\n")
            counts["skipped"] += 1
        else:
            out.write(line(p.key, bad_call(rng, mid)) + "\n")
            counts["bad"] += 1
    with open(os.path.join(a.expect, "events.csv"), "w", newline="") as f:
        csv.writer(f).writerows(events.values())
    with open(os.path.join(a.expect, "links.csv"), "w", newline="") as f:
        csv.writer(f).writerows([k] + v for k, v in links.items())
    with open(os.path.join(a.expect, "counts"), "w") as f:
        for k, v in counts.items():
            f.write("%s %d\n" % (k, v))


def bad(a, out):
    """Every kind of call the source must dead-letter or skip, one a line."""
    rng = random.Random(a.seed)
    ts = lambda: iso(rng)
    call = lambda i, **kw: json.dumps(dict({"type": "track", "messageId": "bad-%d" % i, "userId": "cust-1",
                                            "event": "x", "timestamp": ts()}, **kw))
    kinds = {
        "bad_json": lambda i: '{"type": "track", "messageId": "bad-%d", ' % i,
        "not_object": lambda i: "[1, 2]",
        "no_type": lambda i: json.dumps({"messageId": "bad-%d" % i, "userId": "cust-1", "timestamp": ts()}),
        "no_message_id": lambda i: json.dumps({"type": "page", "userId": "cust-1", "timestamp": ts()}),
        "no_user": lambda i: json.dumps({"type": "screen", "messageId": "bad-%d" % i, "timestamp": ts()}),
        "object_user": lambda i: call(i, userId={"id": 1}),
        "bad_time": lambda i: call(i, timestamp="yesterday"),
        "no_offset": lambda i: call(i, timestamp="2024-05-01T10:00:00"),
        "no_time": lambda i: json.dumps({"type": "page", "messageId": "bad-%d" % i, "userId": "cust-1"}),
        "no_event": lambda i: call(i, event=None),
        "alias_half": lambda i: json.dumps({"type": "alias", "messageId": "bad-%d" % i, "userId": "cust-1",
                                            "timestamp": ts()}),
        "tombstone": lambda i: "",
        "group": lambda i: call(i, type="group", groupId="g-1"),
        "identify_user": lambda i: call(i, type="identify", traits={"plan": "pro"}),
        "identify_anon": lambda i: json.dumps({"type": "identify", "messageId": "bad-%d" % i,
                                               "anonymousId": "anon-x", "timestamp": ts()}),
    }
    lines = []
    for kind, make in kinds.items():
        for _ in range(a.count):
            lines.append((kind, make(len(lines))))
    with open(a.ids, "w") as ids:
        for i in range(1, a.good + 1):
            lines.append(("good", call(0, messageId="%s-%d" % (a.prefix, i), userId="cust-%d" % (i % 50 + 1),
                                       context={"sessionId": "s-%d" % i})))
            ids.write("%s-%d\n" % (a.prefix, i))
    rng.shuffle(lines)
    with open(a.kinds, "w") as kf:
        for kind, value in lines:
            out.write("k:" + value + "\n")
            kf.write(kind + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["stream", "bad"])
    p.add_argument("count", type=int)
    p.add_argument("--customers", type=int, default=200)
    p.add_argument("--prefix", default="sg")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--expect")
    p.add_argument("--good", type=int, default=0)
    p.add_argument("--ids")
    p.add_argument("--kinds")
    a = p.parse_args()
    (stream if a.what == "stream" else bad)(a, sys.stdout)


if __name__ == "__main__":
    main()
