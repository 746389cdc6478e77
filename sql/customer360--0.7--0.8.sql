-- customer360 0.7 -> 0.8: the profile loses its index on (lifecycle_stage, sessions_last_30d)
-- (issue 19).  Measured at 1,000,000 customers (bench/index.sh, README "Indexes"): with it
-- only about a fifth of the events path's profile updates were HOT, since most change
-- sessions_last_30d; without it all of them are, the events path is about 1.1x faster, and
-- the article's stage queries are no slower (engagement by stage reads the whole table
-- either way; gold/platinum at risk or lapsing matches about half of it).  An index on
-- lifecycle_stage alone measured the same for the queries and a little slower for events.
-- A user who filters on the stage adds the index of their choice (README, "Indexes").
-- Released scripts are never edited; this one is open until 0.8 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.8'" to load this file. \quit

DROP INDEX c360.customer_360_stage_sessions_idx;
