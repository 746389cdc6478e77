-- customer360 0.9 -> 0.10: one customer index fewer on the event mirror (issue 19: the
-- events path closer to the floor).  Every new event paid an entry in each of the
-- mirror's four indexes, two of them per customer; (customer_id, event_time) was one of
-- those two.  Its readers (a recount of an owner's 30-day window, the latest event, the
-- first event in the window, windowed event traits) are the paths a difference cannot
-- take, and (customer_id, session_id, event_time) serves them: the customer's entries,
-- event_time read from the index.  bench/mirror_insert.sh
-- times the index at about a third of a batch's mirror write; docs/ARCHITECTURE.md "The
-- event mirror's indexes".
-- Released scripts are never edited; this one is open until 0.10 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.10'" to load this file. \quit

DROP INDEX c360.behavioral_events_customer_time_idx;
