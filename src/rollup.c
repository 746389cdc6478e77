/*-------------------------------------------------------------------------
 * rollup.c
 *	  Behavioural events folded into per raw id rollups on the way in, so that an
 *	  event costs the same whatever the size of its customer's history, and the
 *	  winning identity link per value, which says whose events a raw id's are.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "rollup.h"

/* The customer a raw id's events belong to: its winning identity link, else itself. */
#define OWNER_OF(x) "COALESCE((SELECT ir.customer_id FROM c360.identity_resolved ir" \
	" WHERE ir.identity_value = " x "), " x ")"

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
"        RETURNING customer_id, session_id, event_type, event_time),\n"

/*
 * Insert new events ($1..$7: the mirror's columns; $8: the 30-day bound) and add them to
 * their raw ids' counters and sessions (rollup rows, too, are taken in key order).
 */
static const char *insert_sql =
INSERT_EVENTS_CTES
"counted AS (\n"
"  INSERT INTO c360.event_rollup AS r (raw_id, events_30d, product_views_30d, last_event_at)\n"
"  SELECT customer_id, count(*) FILTER (WHERE event_time > $8),\n"
"         count(*) FILTER (WHERE event_type = 'product_view' AND event_time > $8),\n"
"         max(event_time)\n"
"  FROM ins GROUP BY customer_id ORDER BY customer_id COLLATE \"C\"\n"
"  ON CONFLICT (raw_id) DO UPDATE SET\n"
"    events_30d = r.events_30d + excluded.events_30d,\n"
"    product_views_30d = r.product_views_30d + excluded.product_views_30d,\n"
"    last_event_at = greatest(r.last_event_at, excluded.last_event_at)),\n"
"sessions AS (\n"
"  INSERT INTO c360.event_sessions AS s (raw_id, session_id, last_event_at)\n"
"  SELECT customer_id, session_id, max(event_time) FROM ins WHERE session_id IS NOT NULL\n"
"  GROUP BY customer_id, session_id ORDER BY customer_id COLLATE \"C\", session_id COLLATE \"C\"\n"
"  ON CONFLICT (raw_id, session_id) DO UPDATE SET\n"
"    last_event_at = greatest(s.last_event_at, excluded.last_event_at))\n"
"SELECT DISTINCT " OWNER_OF("ins.customer_id") " FROM ins";

/*
 * The same insert for a batch of events alone, whose owners the caller has locked, with
 * the profile updated by difference where that is exact: an owner whose only raw id is
 * itself (no identity link points to it or away from it) gets its counters increased by
 * the new in-window events, its sessions by those that entered the window (the statement
 * reads event_sessions as before its own upsert; under the owner's lock nobody else moves
 * them), last_active_at and
 * next_change_at by max and min.  Other owners are returned for a recompute.  Returns
 * (customer_id, written).  $9 is the profile's time zone.
 */
static const char *insert_delta_sql =
INSERT_EVENTS_CTES
"per_raw AS (\n"
"  SELECT customer_id AS raw_id, count(*) FILTER (WHERE event_time > $8) AS n,\n"
"         count(*) FILTER (WHERE event_type = 'product_view' AND event_time > $8) AS pv,\n"
"         max(event_time) AS last_at, min(event_time) FILTER (WHERE event_time > $8) AS first_in\n"
"  FROM ins GROUP BY customer_id),\n"
"counted AS (\n"
"  INSERT INTO c360.event_rollup AS r (raw_id, events_30d, product_views_30d, last_event_at)\n"
"  SELECT raw_id, n, pv, last_at FROM per_raw ORDER BY raw_id COLLATE \"C\"\n"
"  ON CONFLICT (raw_id) DO UPDATE SET\n"
"    events_30d = r.events_30d + excluded.events_30d,\n"
"    product_views_30d = r.product_views_30d + excluded.product_views_30d,\n"
"    last_event_at = greatest(r.last_event_at, excluded.last_event_at)),\n"
"per_session AS (\n"
"  SELECT customer_id AS raw_id, session_id, max(event_time) AS last_at FROM ins\n"
"  WHERE session_id IS NOT NULL GROUP BY customer_id, session_id),\n"
"sessions AS (\n"
"  INSERT INTO c360.event_sessions AS s (raw_id, session_id, last_event_at)\n"
"  SELECT raw_id, session_id, last_at FROM per_session\n"
"  ORDER BY raw_id COLLATE \"C\", session_id COLLATE \"C\"\n"
"  ON CONFLICT (raw_id, session_id) DO UPDATE SET\n"
"    last_event_at = greatest(s.last_event_at, excluded.last_event_at)),\n"
"entering AS (\n"
"  SELECT ps.raw_id, count(*) AS k\n"
"  FROM per_session ps LEFT JOIN c360.event_sessions was USING (raw_id, session_id)\n"
"  WHERE ps.last_at > $8 AND (was.last_event_at IS NULL OR was.last_event_at <= $8)\n"
"  GROUP BY ps.raw_id),\n"
"owners AS (\n"
"  SELECT r.raw_id, COALESCE(ir.customer_id, r.raw_id) AS owner,\n"
"         ir.customer_id IS NULL AND NOT EXISTS\n"
"           (SELECT 1 FROM c360.identity_resolved x WHERE x.customer_id = r.raw_id) AS simple\n"
"  FROM per_raw r LEFT JOIN c360.identity_resolved ir ON ir.identity_value = r.raw_id),\n"
"delta AS (\n"
"  UPDATE c360.customer_360 p SET\n"
"    events_last_30d = p.events_last_30d + r.n,\n"
"    product_views_last_30d = p.product_views_last_30d + r.pv,\n"
"    sessions_last_30d = p.sessions_last_30d + COALESCE(e.k, 0),\n"
"    last_active_at = greatest(p.last_active_at, r.last_at),\n"
"    next_change_at = least(p.next_change_at, c360.shift_days(r.first_in, 30, $9)),\n"
"    profile_updated_at = clock_timestamp()\n"
"  FROM per_raw r JOIN owners o USING (raw_id) LEFT JOIN entering e USING (raw_id)\n"
"  WHERE o.simple AND p.customer_id = r.raw_id\n"
"    AND (r.n > 0 OR p.last_active_at IS NULL OR r.last_at > p.last_active_at)\n"
"  RETURNING p.customer_id)\n"
"SELECT owner, false FROM owners WHERE NOT simple\n"
"UNION ALL SELECT customer_id, true FROM delta";

/* Recount raw ids ($1) from the mirror, as of the 30-day bound $2. */
static const char *forget_sql =
"WITH r AS (DELETE FROM c360.event_rollup WHERE raw_id = ANY($1)),\n"
"s AS (DELETE FROM c360.event_sessions WHERE raw_id = ANY($1))\n"
"SELECT 1";

static const char *recount_sql =
"WITH r AS (\n"
"  INSERT INTO c360.event_rollup (raw_id, events_30d, product_views_30d, last_event_at)\n"
"  SELECT customer_id, count(*) FILTER (WHERE event_time > $2),\n"
"         count(*) FILTER (WHERE event_type = 'product_view' AND event_time > $2),\n"
"         max(event_time)\n"
"  FROM c360.behavioral_events WHERE customer_id = ANY($1) GROUP BY customer_id),\n"
"s AS (\n"
"  INSERT INTO c360.event_sessions (raw_id, session_id, last_event_at)\n"
"  SELECT customer_id, session_id, max(event_time) FROM c360.behavioral_events\n"
"  WHERE customer_id = ANY($1) AND session_id IS NOT NULL GROUP BY customer_id, session_id)\n"
"SELECT DISTINCT " OWNER_OF("x") " FROM unnest($1::text[]) x";

/*
 * The 30-day bound moved from $1 to $2: events between them left the window (or, when a
 * DST fall-back moved the bound back, re-entered it).
 */
static const char *shift_sql =
"WITH band AS (\n"
"  SELECT customer_id, count(*) AS n, count(*) FILTER (WHERE event_type = 'product_view') AS pv\n"
"  FROM c360.behavioral_events\n"
"  WHERE event_time > least($1::timestamptz, $2) AND event_time <= greatest($1::timestamptz, $2)\n"
"  GROUP BY customer_id),\n"
"u AS (\n"
"  UPDATE c360.event_rollup r\n"
"  SET events_30d = r.events_30d + CASE WHEN $2 > $1 THEN -band.n ELSE band.n END,\n"
"      product_views_30d = r.product_views_30d + CASE WHEN $2 > $1 THEN -band.pv ELSE band.pv END\n"
"  FROM band WHERE r.raw_id = band.customer_id)\n"
"SELECT DISTINCT " OWNER_OF("band.customer_id") " FROM band";

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
	"TRUNCATE c360.identity_resolved, c360.event_rollup, c360.event_sessions",
	"INSERT INTO c360.identity_resolved (identity_value, customer_id)\n"
	"SELECT DISTINCT ON (identity_value) identity_value, customer_id FROM c360.identity_graph\n"
	"ORDER BY identity_value, created_at DESC NULLS LAST, identity_id DESC",
	"INSERT INTO c360.event_rollup (raw_id, events_30d, product_views_30d, last_event_at)\n"
	"SELECT customer_id, count(*) FILTER (WHERE event_time > $1),\n"
	"       count(*) FILTER (WHERE event_type = 'product_view' AND event_time > $1),\n"
	"       max(event_time)\n"
	"FROM c360.behavioral_events GROUP BY customer_id",
	"INSERT INTO c360.event_sessions (raw_id, session_id, last_event_at)\n"
	"SELECT customer_id, session_id, max(event_time) FROM c360.behavioral_events\n"
	"WHERE session_id IS NOT NULL GROUP BY customer_id, session_id",
};

List *
c360_rollup_insert_events(Datum *columns, const C360Clock *clock, List *ids)
{
	static SPIPlanPtr plan;
	Oid			types[8] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZOID};
	Datum		args[8];

	memcpy(args, columns, sizeof(Datum) * 7);
	args[7] = TimestampTzGetDatum(clock->d30);
	return c360_exec_ids(c360_plan(&plan, insert_sql, 8, types), args, NULL, ids);
}

/* The owners of the raw ids in $1: who must be locked before their events are applied. */
List *
c360_rollup_owners(Datum raw_ids, List *ids)
{
	static SPIPlanPtr plan;
	Oid			types[1] = {TEXTARRAYOID};

	return c360_exec_ids(c360_plan(&plan, "SELECT DISTINCT " OWNER_OF("x")
								   " FROM unnest($1::text[]) x", 1, types),
						 &raw_ids, NULL, ids);
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
	c360_exec(c360_plan(&plan, insert_delta_sql, 9, types), args, NULL);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		isnull;
		bool		written = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 2, &isnull));

		if (written)
			dirty->written = lappend(dirty->written, id);
		else
			dirty->behaviour = lappend(dirty->behaviour, id);
	}
}

List *
c360_rollup_recount(List *raw_ids, const C360Clock *clock, List *ids)
{
	static SPIPlanPtr forget_plan;
	static SPIPlanPtr recount_plan;
	Oid			types[2] = {TEXTARRAYOID, TIMESTAMPTZOID};
	Datum		args[2];

	if (raw_ids == NIL)
		return ids;
	args[0] = c360_text_array(raw_ids);
	args[1] = TimestampTzGetDatum(clock->d30);
	c360_exec(c360_plan(&forget_plan, forget_sql, 1, types), args, NULL);
	return c360_exec_ids(c360_plan(&recount_plan, recount_sql, 2, types), args, NULL, ids);
}

List *
c360_rollup_shift(TimestampTz from_bound, TimestampTz to_bound, List *ids)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2] = {TimestampTzGetDatum(from_bound), TimestampTzGetDatum(to_bound)};

	return c360_exec_ids(c360_plan(&plan, shift_sql, 2, types), args, NULL, ids);
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
c360_rollup_rebuild(const C360Clock *clock)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		bound = TimestampTzGetDatum(clock->d30);

	for (int i = 0; i < lengthof(rebuild_sql); i++)
		if (SPI_execute_with_args(rebuild_sql[i], i == 2 ? 1 : 0, types, &bound, NULL,
								  false, 0) < 0)
			elog(ERROR, "customer360 rebuild failed: %s", rebuild_sql[i]);
}
