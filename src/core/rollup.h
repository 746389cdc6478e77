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

extern List *c360_rollup_insert_events(Datum *columns, List *ids);
extern List *c360_rollup_owners(Datum raw_ids, List *ids);
extern void c360_rollup_insert_events_delta(Datum *columns, const C360Clock *clock,
											C360Dirty *dirty);
extern void c360_rollup_shift(TimestampTz from_bound, TimestampTz to_bound, C360Dirty *dirty);
extern List *c360_rollup_resolve(List *identity_values, List *ids);
extern void c360_rollup_rebuild(void);

#endif							/* C360_ROLLUP_H */
