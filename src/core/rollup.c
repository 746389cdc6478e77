/*-------------------------------------------------------------------------
 * rollup.c
 *	  Behavioural events on the way in, folded into their owners' profile rows by
 *	  difference, so that an event costs the same whatever the size of its
 *	  customer's history; and the winning identity link per value, which says whose
 *	  events a raw id's are.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "core/spi.h"
#include "core/clock.h"
#include "core/columns.h"
#include "core/traits.h"
#include "core/rollup.h"

/* Insert new events; returns their owners, whose behaviour the maintainer recounts. */
static const char *insert_sql =
INSERT_EVENTS_CTES "\n"
"SELECT DISTINCT " OWNER_OF("ins.customer_id") " FROM ins";

/* The owners of raw ids ($1): who to lock for new events, or to recount for changed ones. */
static const char *owners_of_sql =
"SELECT DISTINCT " OWNER_OF("x") " FROM unnest($1::text[]) x";

/*
 * The bound moved back (a DST fall-back moves as_of - 30 days back by an hour): the events
 * between $2 and $1 re-entered the window.  Their owners are recounted.
 */
static const char *shift_back_sql =
"SELECT DISTINCT " OWNER_OF("e.customer_id") " FROM c360.behavioral_events e\n"
"WHERE e.event_time > $2 AND e.event_time <= $1";

/*
 * Re-resolve identity values ($1) after their links changed: both the owner before and the
 * owner after (and the value itself, when it names a customer with no link) may gain or
 * lose events.
 */
static const char *owners_sql =
"SELECT DISTINCT o FROM unnest($1::text[]) x, LATERAL (VALUES (x), (" OWNER_OF("x") ")) v(o)";

static const char *unresolve_sql =
"DELETE FROM c360.identity_resolved WHERE identity_value = ANY($1)";

static const char *resolve_sql =
"INSERT INTO c360.identity_resolved (identity_value, customer_id)\n"
"SELECT DISTINCT ON (identity_value) identity_value, customer_id FROM c360.identity_graph\n"
"WHERE identity_value = ANY($1)\n"
"ORDER BY identity_value, created_at DESC NULLS LAST, identity_id DESC\n"
"RETURNING customer_id";

static const char *rebuild_sql[] = {
	"TRUNCATE c360.identity_resolved",
	"INSERT INTO c360.identity_resolved (identity_value, customer_id)\n"
	"SELECT DISTINCT ON (identity_value) identity_value, customer_id FROM c360.identity_graph\n"
	"ORDER BY identity_value, created_at DESC NULLS LAST, identity_id DESC",
};

List *
c360_rollup_insert_events(Datum *columns, List *ids)
{
	static SPIPlanPtr plan;
	Oid			types[7] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};

	return c360_exec_ids(c360_plan(&plan, insert_sql, 7, types), columns, NULL, ids);
}

/* The owners of the raw ids in $1: who must be locked before their events are applied. */
List *
c360_rollup_owners(Datum raw_ids, List *ids)
{
	static SPIPlanPtr plan;
	Oid			types[1] = {TEXTARRAYOID};

	return c360_exec_ids(c360_plan(&plan, owners_of_sql, 1, types), &raw_ids, NULL, ids);
}

void
c360_rollup_insert_events_delta(Datum *columns, const C360Clock *clock, C360Dirty *dirty)
{
	static SPIPlanPtr builtin_plan;
	SPIPlanPtr *plan = &builtin_plan;
	Oid			types[FUNC_MAX_ARGS] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[FUNC_MAX_ARGS];
	List	   *lookbacks = NIL;
	const char *sql = c360_traits_events_delta(clock, &lookbacks, &plan);
	int			nargs;

	if (sql == NULL)
		sql = c360_profile_statement(C360_ROLLUP_INSERT, false);
	/* $1..$7 the new events' columns, the windows' bounds and the zone, the traits' bounds */
	memcpy(args, columns, sizeof(Datum) * 7);
	nargs = 7 + c360_profile_bounds(clock, &args[7], &types[7]);
	nargs += c360_window_args(lookbacks, clock, &args[nargs], &types[nargs]);
	dirty->written = c360_exec_ids(c360_plan(plan, sql, nargs, types), args, NULL,
								   dirty->written);
}

/*
 * The clock's 30-day bound moved from from_bound to to_bound: forward, the owners of the
 * events that left the window lose them by difference and only time passed for them;
 * back, the owners of the events that re-entered it are recounted.
 */
void
c360_rollup_shift(TimestampTz from_bound, TimestampTz to_bound, C360Dirty *dirty)
{
	static SPIPlanPtr delta_plan;
	static SPIPlanPtr back_plan;
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2] = {TimestampTzGetDatum(from_bound), TimestampTzGetDatum(to_bound)};

	if (to_bound > from_bound)
	{
		List	   *owners = c360_exec_ids(c360_plan(&delta_plan,
													 c360_profile_statement(C360_ROLLUP_SHIFT, false),
													 2, types),
										   args, NULL, NIL);

		dirty->timed = list_concat(dirty->timed, owners);
		dirty->written = list_concat(dirty->written, owners);
	}
	else if (to_bound < from_bound)
		dirty->behaviour = c360_exec_ids(c360_plan(&back_plan, shift_back_sql, 2, types),
										 args, NULL, dirty->behaviour);
}

List *
c360_rollup_resolve(List *identity_values, List *ids)
{
	static SPIPlanPtr owners_plan;
	static SPIPlanPtr unresolve_plan;
	static SPIPlanPtr resolve_plan;
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values;

	if (identity_values == NIL)
		return ids;
	values = c360_text_array(identity_values);
	ids = c360_exec_ids(c360_plan(&owners_plan, owners_sql, 1, types), &values, NULL, ids);
	c360_exec(c360_plan(&unresolve_plan, unresolve_sql, 1, types), &values, NULL);
	return c360_exec_ids(c360_plan(&resolve_plan, resolve_sql, 1, types), &values, NULL, ids);
}

void
c360_rollup_rebuild(void)
{
	for (int i = 0; i < lengthof(rebuild_sql); i++)
		if (SPI_execute(rebuild_sql[i], false, 0) < 0)
			elog(ERROR, "customer360 rebuild failed: %s", rebuild_sql[i]);
}
