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
#include "core/rollup.h"

/*
 * New events ($1..$7: the mirror's columns) into the mirror, taken in key order so that
 * concurrent batches lock index entries in one order, and among duplicates of an event id
 * in arrival order, so that the first one wins as on the replay path.  ins holds the rows
 * really inserted.
 */
#define INSERT_EVENTS_CTES \
"WITH v AS (SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7) WITH ORDINALITY\n" \
"           AS v(event_id, customer_id, session_id, event_type, product_id, category_id, event_time, n)\n" \
"           ORDER BY event_id COLLATE \"C\", n),\n" \
"ins AS (INSERT INTO c360.behavioral_events\n" \
"        SELECT event_id, customer_id, session_id, event_type, product_id, category_id, event_time\n" \
"        FROM v ON CONFLICT (event_id) DO NOTHING\n" \
"        RETURNING customer_id, session_id, event_type, event_time)\n"

/* Insert new events; returns their owners, whose behaviour the maintainer recounts. */
static const char *insert_sql =
INSERT_EVENTS_CTES
"SELECT DISTINCT " OWNER_OF("ins.customer_id") " FROM ins";

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

/*
 * The same insert for a batch whose events are all new and which changes no identity
 * link (events alone, or with a CDC transaction's other rows), whose owners the caller
 * has locked (and whose links cannot change meanwhile: re-attribution takes the clock
 * lock exclusively), with each owner's profile updated by difference: its counters
 * increased by the new in-window events, its sessions by those that entered the window
 * (no event of the session and owner was in the window before: the probe reads the
 * mirror as before this statement's insert), last_active_at and next_change_at by max
 * and min.  The profile row is the owner's rollup, so an event costs the same whatever
 * the size of its customer's history.  Owners without a profile row (no customer row
 * yet) are left to the recount that creates it.  Returns the profile rows written.  $8
 * is the 30-day bound, $9 the profile's time zone.
 */
static const char *insert_delta_sql =
INSERT_EVENTS_CTES ",\n"
"ev AS MATERIALIZED (SELECT ins.*, " OWNER_OF("ins.customer_id") " AS owner FROM ins),\n"
"per_session AS (\n"
"  SELECT owner, count(*) FILTER (WHERE event_time > $8) AS n,\n"
"         count(*) FILTER (WHERE event_type = 'product_view' AND event_time > $8) AS pv,\n"
"         max(event_time) AS last_at, min(event_time) FILTER (WHERE event_time > $8) AS first_in,\n"
"         session_id IS NOT NULL AND max(event_time) > $8\n"
"           AND NOT " SESSION_SEEN_AFTER("$8") " AS entered\n"
"  FROM ev GROUP BY owner, session_id),\n"
"per_owner AS (\n"
"  SELECT owner, sum(n)::bigint AS n, sum(pv)::bigint AS pv, max(last_at) AS last_at,\n"
"         min(first_in) AS first_in, count(*) FILTER (WHERE entered) AS k\n"
"  FROM per_session GROUP BY owner)\n"
"UPDATE c360.customer_360 p SET\n"
"  events_last_30d = p.events_last_30d + r.n,\n"
"  product_views_last_30d = p.product_views_last_30d + r.pv,\n"
"  sessions_last_30d = p.sessions_last_30d + r.k,\n"
"  last_active_at = greatest(p.last_active_at, r.last_at),\n"
"  next_change_at = least(p.next_change_at, c360.shift_days(r.first_in, 30, $9)),\n"
"  profile_updated_at = clock_timestamp()\n"
"FROM per_owner r\n"
"WHERE p.customer_id = r.owner\n"
"  AND (r.n > 0 OR p.last_active_at IS NULL OR r.last_at > p.last_active_at)\n"
"RETURNING p.customer_id";

/* The owners of raw ids ($1): who to lock for new events, or to recount for changed ones. */
static const char *owners_of_sql =
"SELECT DISTINCT " OWNER_OF("x") " FROM unnest($1::text[]) x";

/*
 * The clock moved the 30-day bound forward from $1 to $2: the events between them left the
 * window.  Their owners' counters drop by difference (a session leaves with its last
 * in-window event); stage and expiry are left to the caller.  Returns the owners.
 */
static const char *shift_delta_sql =
"WITH ev AS MATERIALIZED (\n"
"  SELECT " OWNER_OF("e.customer_id") " AS owner, e.session_id, e.event_type\n"
"  FROM c360.behavioral_events e WHERE e.event_time > $1 AND e.event_time <= $2),\n"
"per_session AS (\n"
"  SELECT owner, count(*) AS n, count(*) FILTER (WHERE event_type = 'product_view') AS pv,\n"
"         session_id IS NOT NULL AND NOT " SESSION_SEEN_AFTER("$2") " AS left_window\n"
"  FROM ev GROUP BY owner, session_id),\n"
"per_owner AS (\n"
"  SELECT owner, sum(n)::bigint AS n, sum(pv)::bigint AS pv,\n"
"         count(*) FILTER (WHERE left_window) AS k\n"
"  FROM per_session GROUP BY owner)\n"
"UPDATE c360.customer_360 p SET\n"
"  events_last_30d = p.events_last_30d - r.n,\n"
"  product_views_last_30d = p.product_views_last_30d - r.pv,\n"
"  sessions_last_30d = p.sessions_last_30d - r.k,\n"
"  profile_updated_at = clock_timestamp()\n"
"FROM per_owner r WHERE p.customer_id = r.owner\n"
"RETURNING p.customer_id";

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
	static SPIPlanPtr plan;
	Oid			types[9] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, TEXTOID};
	Datum		args[9];

	memcpy(args, columns, sizeof(Datum) * 7);
	args[7] = TimestampTzGetDatum(clock->d30);
	args[8] = CStringGetTextDatum(clock->time_zone);
	dirty->written = c360_exec_ids(c360_plan(&plan, insert_delta_sql, 9, types), args, NULL,
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
		List	   *owners = c360_exec_ids(c360_plan(&delta_plan, shift_delta_sql, 2, types),
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
