-- customer360 0.11 -> 0.12: room on the pages of the mirrors whose rows are updated in place.
-- An order's status and amount, a ticket's status, a customer's attributes change through
-- updates, and no index names those columns (README "Indexes"), so such an update can stay
-- on its page (HOT: no new index entries) when the page has room.  Loaded full (fillfactor
-- 100), a page has none, and every first update of a row moves it and adds an entry to
-- each of the mirror's indexes (bench/orders.sh: the order updates' largest cost).  The
-- profile has had fillfactor 80 since 0.3; the event mirror is append-only.  This applies
-- to pages written from now on: VACUUM FULL a mirror to give its existing pages the room.
-- Released scripts are never edited; this one is open until 0.12 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.12'" to load this file. \quit

ALTER TABLE c360.customers SET (fillfactor = 90);
ALTER TABLE c360.orders SET (fillfactor = 90);
ALTER TABLE c360.support_tickets SET (fillfactor = 90);
