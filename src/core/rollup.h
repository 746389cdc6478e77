/*-------------------------------------------------------------------------
 * rollup.h
 *	  Events on the way in and the winning identity link per identity value: whose
 *	  events a raw id's are.  Each function returns the customers whose profile may
 *	  have changed (appended to ids).
 *-------------------------------------------------------------------------
 */
#ifndef C360_ROLLUP_H
#define C360_ROLLUP_H

#include "postgres.h"
#include "nodes/pg_list.h"

#include "core/clock.h"
#include "core/dirty.h"

/*
 * The customer a raw id's events belong to, as SQL over the raw id x: its winning identity
 * link (c360.identity_resolved), else itself.
 */
#define OWNER_OF(x) "COALESCE((SELECT ir.customer_id FROM c360.identity_resolved ir" \
	" WHERE ir.identity_value = " x "), " x ")"

/*
 * New events ($1..$7: the mirror's columns) into the mirror, taken in key order so that
 * concurrent batches lock index entries in one order, and among duplicates of an event id
 * in arrival order, so that the first one wins as on the replay path.  ins holds the rows
 * really inserted.
 */
#define INSERT_EVENTS_CTES_RETURNING(cols) \
"WITH v AS (SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7) WITH ORDINALITY\n" \
"           AS v(event_id, customer_id, session_id, event_type, product_id, category_id, event_time, n)\n" \
"           ORDER BY event_id COLLATE \"C\", n),\n" \
"ins AS (INSERT INTO c360.behavioral_events\n" \
"        SELECT event_id, customer_id, session_id, event_type, product_id, category_id, event_time\n" \
"        FROM v ON CONFLICT (event_id) DO NOTHING\n" \
"        RETURNING " cols ")"
#define INSERT_EVENTS_CTES INSERT_EVENTS_CTES_RETURNING("customer_id, session_id, event_type, event_time")

/*
 * Whether the session (ev.session_id) of an owner (ev.owner) has an event after bound b
 * under any of the owner's raw ids: one probe of the (customer_id, session_id,
 * event_time) index per raw id.  ev is materialized, so that each event's owner is
 * looked up once, not once per reference to it.
 */
#define SESSION_SEEN_AFTER(b) \
"EXISTS (\n" \
"  SELECT 1 FROM (SELECT ev.owner UNION ALL SELECT ir.identity_value\n" \
"                 FROM c360.identity_resolved ir WHERE ir.customer_id = ev.owner) r(raw_id)\n" \
"  JOIN c360.behavioral_events was ON was.customer_id = r.raw_id\n" \
"    AND was.session_id = ev.session_id AND was.event_time > " b "\n" \
"  WHERE " OWNER_OF("r.raw_id") " = ev.owner)"

extern List *c360_rollup_insert_events(Datum *columns, List *ids);
extern List *c360_rollup_owners(Datum raw_ids, List *ids);
extern void c360_rollup_insert_events_delta(Datum *columns, const C360Clock *clock,
											C360Dirty *dirty);
extern void c360_rollup_shift(TimestampTz from_bound, TimestampTz to_bound, C360Dirty *dirty);
extern List *c360_rollup_resolve(List *identity_values, List *ids);
extern void c360_rollup_rebuild(void);

#endif							/* C360_ROLLUP_H */
