-- dst: 30/90-day windows across the US daylight-saving changes of 2030 (spring forward on
-- 2030-03-10 at 02:00 EST, fall back on 2030-11-03 at 02:00 EDT) with the profile clock's zone
-- America/New_York.  Window bounds are Postgres's own as_of - interval '30 days' in that zone:
-- a "30-day" window is 719 or 721 hours long when it spans a change, and when as_of or the
-- bound falls in a skipped or repeated hour the bound jumps forward or even moves back.  Each
-- block ticks to instants just around the boundary and shows the counts flip exactly when
-- as_of - interval '30 days' passes the event.
SET client_min_messages = warning;
SET TimeZone = 'America/New_York';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.time_zone();
SELECT c360.tick('2030-02-01 00:00+00');
-- The clock, its 30-day bound, and (for contrast) a naive 720-hour bound.
CREATE TEMP VIEW clock AS
SELECT c360.as_of() AS as_of, c360.as_of() - interval '30 days' AS bound_30d,
       c360.as_of() - interval '720 hours' AS naive_720h;
CREATE TEMP VIEW dst AS
SELECT customer_id, events_last_30d AS events, sessions_last_30d AS sessions, last_order_date,
       lifecycle_stage
FROM c360.customer_360;

-- One customer per case; every event and order time is given in UTC.
SELECT c360.apply_changes($$[
  {"input": "customers", "op": "insert", "new": {"customer_id": "spring_asof"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "spring_span"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "spring_90"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "spring_gap"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "fall_asof"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "fall_span"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "fall_overlap"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "sa1", "customer_id": "spring_asof", "session_id": "a",
     "event_time": "2030-02-08 07:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "sa2", "customer_id": "spring_asof", "session_id": "b",
     "event_time": "2030-02-08 07:30+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "sa3", "customer_id": "spring_asof", "session_id": "c",
     "event_time": "2030-02-08 08:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "sa4", "customer_id": "spring_asof", "session_id": "d",
     "event_time": "2030-02-08 08:00:01+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "sa-o", "customer_id": "spring_asof",
     "created_at": "2030-02-08 07:30+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "ss1", "customer_id": "spring_span", "session_id": "a",
     "event_time": "2030-03-02 17:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "ss-o", "customer_id": "spring_span",
     "created_at": "2030-03-02 17:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "s90-o", "customer_id": "spring_90",
     "created_at": "2030-02-01 17:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "sg1", "customer_id": "spring_gap", "session_id": "a",
     "event_time": "2030-03-10 07:30+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "sg-o", "customer_id": "spring_gap",
     "created_at": "2030-03-10 07:30+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "fa1", "customer_id": "fall_asof", "session_id": "a",
     "event_time": "2030-10-04 05:30+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "fa-o", "customer_id": "fall_asof",
     "created_at": "2030-10-04 05:30+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "fs1", "customer_id": "fall_span", "session_id": "a",
     "event_time": "2030-10-15 16:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "fs-o", "customer_id": "fall_span",
     "created_at": "2030-10-15 16:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "fo1", "customer_id": "fall_overlap", "session_id": "a",
     "event_time": "2030-11-03 05:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "fo2", "customer_id": "fall_overlap", "session_id": "b",
     "event_time": "2030-11-03 05:30+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "fo3", "customer_id": "fall_overlap", "session_id": "c",
     "event_time": "2030-11-03 06:30+00"}}
]$$);
SELECT count(*) AS diffs FROM c360.verify();
-- The events in New York time: note the two 01:30 on 2030-11-03 (EDT, then EST).
SELECT event_id, customer_id, event_time FROM c360.behavioral_events ORDER BY event_time, event_id;
SELECT * FROM dst ORDER BY customer_id;

--
-- spring_asof: as_of itself crosses the spring-forward gap (01:59:59 EST -> 03:00 EDT), so the
-- bound jumps from 02-08 01:59:59 EST to 02-08 03:00 EST: the events of a whole hour (02:00,
-- 02:30 and 03:00 EST) leave the window in one microsecond, together with the order's 'active'.
--
SELECT c360.tick('2030-03-10 06:59:59.999999+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_asof';
SELECT c360.tick('2030-03-10 07:00+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_asof';

--
-- spring_span: a window spanning the change is 719 hours long.  The event and order at
-- 2030-03-02 12:00 EST leave at 2030-04-01 12:00 EDT, an hour before as_of - 720 hours would
-- reach them.
--
SELECT c360.tick('2030-04-01 15:59:59.999999+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_span';
SELECT c360.tick('2030-04-01 16:00+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_span';

--
-- spring_gap: the bound falls into the skipped hour of 2030-03-10 (02:xx does not exist; it
-- reads as EST, i.e. 03:xx EDT).  From as_of 02:00 to 03:00 EDT on 2030-04-09 the bound runs
-- from 03:00 to 04:00 EDT, then at as_of 03:00 EDT it is 03:00 EDT again: the bound moves
-- back an hour, and the event at 03:30 EDT leaves, comes back, and leaves again.
--
SELECT c360.tick('2030-04-09 06:29:59+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_gap';
SELECT c360.tick('2030-04-09 06:30+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_gap';
SELECT c360.tick('2030-04-09 06:59:59.999999+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_gap';
SELECT c360.tick('2030-04-09 07:00+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_gap';
SELECT c360.tick('2030-04-09 07:29:59.999999+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_gap';
SELECT c360.tick('2030-04-09 07:30+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_gap';

--
-- spring_90: the 90-day stage boundary across the change: the order of 2030-02-01 12:00 EST
-- turns 'lapsing' at 2030-05-02 12:00 EDT (2159 hours later).
--
SELECT c360.tick('2030-05-02 15:59:59.999999+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_90';
SELECT c360.tick('2030-05-02 16:00+00');
SELECT c360.as_of(), c360.as_of() - interval '90 days' AS bound_90d;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'spring_90';

--
-- fall_asof: as_of itself passes the fall-back (01:59:59 EDT -> 01:00 EST), so the bound
-- moves back from 10-04 01:59:59 EDT to 10-04 01:00 EDT.  The event (and order) at
-- 10-04 01:30 EDT leaves the window at 01:30 EDT, re-enters at 01:00 EST and leaves again at
-- 01:30 EST; the stage goes active -> at_risk -> active -> at_risk.
--
SELECT c360.tick('2030-11-03 05:29:59+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_asof';
SELECT c360.tick('2030-11-03 05:30+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_asof';
SELECT c360.tick('2030-11-03 05:59:59.999999+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_asof';
SELECT c360.tick('2030-11-03 06:00+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_asof';
SELECT c360.tick('2030-11-03 06:29:59.999999+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_asof';
SELECT c360.tick('2030-11-03 06:30+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_asof';

--
-- fall_span: a window spanning the fall-back is 721 hours long.  The event and order at
-- 2030-10-15 12:00 EDT stay in until 2030-11-14 12:00 EST, an hour after as_of - 720 hours
-- has passed them.
--
SELECT c360.tick('2030-11-14 16:59:59.999999+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_span';
SELECT c360.tick('2030-11-14 17:00+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_span';

--
-- fall_overlap: the bound falls into the repeated hour of 2030-11-03 (01:xx happens twice and
-- reads as the later, EST one).  At as_of 2030-12-03 01:00 EST the bound jumps from
-- 00:59:59 EDT to 01:00 EST: the events at 01:00 EDT and 01:30 EDT leave together; the one at
-- 01:30 EST leaves at 01:30 EST.
--
SELECT c360.tick('2030-12-03 05:59:59.999999+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_overlap';
SELECT c360.tick('2030-12-03 06:00+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_overlap';
SELECT c360.tick('2030-12-03 06:29:59.999999+00');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_overlap';
SELECT c360.tick('2030-12-03 06:30+00');
SELECT * FROM clock;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_overlap';

--
-- The windows are the profile clock's zone, not the session's.  A session in Asia/Tokyo (no
-- DST) would put the 30-day bound of 2031-03-20 12:00 EDT at 720 hours back, 2031-02-18
-- 16:00 UTC; the profile's bound is 2031-02-18 12:00 EST = 17:00 UTC (719 hours, across the
-- spring-forward of 2031-03-09).  An event at 16:30 UTC is out of the profile's window,
-- whichever session applies and ticks, and verify() (which uses the profile's zone) agrees.
--
SET TimeZone = 'Asia/Tokyo';
SELECT c360.time_zone();
SELECT c360.apply_change('behavioral_events', 'insert', NULL,
  '{"event_id": "tk1", "customer_id": "fall_overlap", "session_id": "tk", "event_time": "2031-02-18 16:30+00"}');
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_overlap';
SELECT c360.tick('2031-03-20 16:00+00');
SELECT c360.as_of() AT TIME ZONE 'UTC' AS as_of_utc,
       (c360.as_of() - interval '30 days') AT TIME ZONE 'UTC' AS session_bound_utc,
       c360.shift_days(c360.as_of(), -30, c360.time_zone()) AT TIME ZONE 'UTC' AS profile_bound_utc;
SELECT count(*) AS diffs FROM c360.verify();
SELECT * FROM dst WHERE customer_id = 'fall_overlap';
RESET TimeZone;

SET TimeZone = 'America/New_York';
SELECT * FROM dst ORDER BY customer_id;
SELECT c360.rebuild() AS rows_changed_by_rebuild;
SELECT count(*) AS diffs FROM c360.verify();
