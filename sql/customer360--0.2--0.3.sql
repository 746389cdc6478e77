-- customer360--0.2--0.3.sql: update script from 0.2 to 0.3 (a fresh install runs the 0.1
-- script, then the updates).  Version 0.3 keeps no per raw id event rollups: new events
-- update their owners' profile rows by difference, and a session's first in-window event is
-- found through an index of the event mirror.  The profile rows stay as they are (exact).

\echo Use "ALTER EXTENSION customer360 UPDATE" to load this file. \quit

DROP TABLE c360.event_rollup;
DROP TABLE c360.event_sessions;

-- Whether an event's session was already in the window, for one raw id: one probe,
-- whatever the size of the raw id's history.
CREATE INDEX behavioral_events_customer_session_idx
    ON c360.behavioral_events (customer_id, session_id, event_time);

-- Every event batch updates its customers' profile rows in place: room in their pages lets
-- an update stay on its page (HOT, where no indexed column changed) instead of moving the
-- row and adding an entry to every index.  Applies to pages written from now on (a fresh
-- install: all of them; an updated database: VACUUM FULL c360.customer_360 to repack).
ALTER TABLE c360.customer_360 SET (fillfactor = 80);
