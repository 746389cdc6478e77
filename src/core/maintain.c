/*-------------------------------------------------------------------------
 * maintain.c
 *	  The incremental maintainer.  The dirty customers of a batch are locked in one
 *	  fixed order, their profile rows are recomputed by one set-based statement from
 *	  the indexed mirrors, and only rows that really differ are written.  Also tick
 *	  (the clock moves forward) and rebuild.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "core/clock.h"
#include "core/customer360.h"
#include "core/maintain.h"
#include "core/rollup.h"
#include "core/segment.h"
#include "core/spi.h"
#include "core/traits.h"

/* Customer locks are striped: a batch never needs more than this many lock entries. */
#define C360_STRIPES		1024

static int	cmp_int(const void *a, const void *b);
static void split_dirty(const C360Dirty *dirty, List **full, List **recount, List **behaviour,
						List **timed);

static SPIPlanPtr lock_ids_plan;

/*
 * The raw ids of the customers in src: the ids that resolve to the customer (itself, unless
 * it is an identity value linked elsewhere, plus its linked values).
 */
#define RAW_CTE(src) \
"raw AS (\n" \
"  SELECT " src ".customer_id, r.raw_id FROM " src " CROSS JOIN LATERAL (\n" \
"    SELECT ir.identity_value FROM c360.identity_resolved ir\n" \
"    WHERE ir.customer_id = " src ".customer_id\n" \
"    UNION\n" \
"    SELECT " src ".customer_id WHERE NOT EXISTS\n" \
"      (SELECT 1 FROM c360.identity_resolved ir WHERE ir.identity_value = " src ".customer_id)\n" \
"  ) r(raw_id))"

/*
 * The behaviour of the customers in src (rows of raw), counted from the event mirror: the
 * in-window events of their raw ids, distinct sessions across them, and the latest event.
 * $2 is the 30-day bound.  Only a customer's window is read, and its latest event through
 * the index; the hot path never recounts (events update profiles by difference).
 */
#define BEHAVIOUR_CTES(src) \
"beh AS (\n" \
"  SELECT " src ".customer_id, count(e.event_id) AS events_30d,\n" \
"         count(e.event_id) FILTER (WHERE e.event_type = 'product_view') AS product_views_30d,\n" \
"         count(DISTINCT e.session_id) AS sessions_30d\n" \
"  FROM " src " JOIN c360.behavioral_events e\n" \
"    ON e.customer_id = " src ".raw_id AND e.event_time > $2\n" \
"  GROUP BY " src ".customer_id),\n" \
"latest AS (\n" \
"  SELECT " src ".customer_id, max(l.event_time) AS last_active_at\n" \
"  FROM " src " CROSS JOIN LATERAL (\n" \
"    SELECT event_time FROM c360.behavioral_events e WHERE e.customer_id = " src ".raw_id\n" \
"    ORDER BY event_time DESC LIMIT 1) l\n" \
"  GROUP BY " src ".customer_id)"

/* The oldest in-window event of the customers in d: when their counts next change. */
#define EXPIRY_CTE \
"expiry AS (\n" \
"  SELECT raw.customer_id, min(e.event_time) AS first_in_window\n" \
"  FROM raw CROSS JOIN LATERAL (\n" \
"    SELECT event_time FROM c360.behavioral_events e\n" \
"    WHERE e.customer_id = raw.raw_id AND e.event_time > $2 ORDER BY event_time LIMIT 1) e\n" \
"  GROUP BY raw.customer_id)"

/*
 * The dirty customers ($1, distinct).  A batch's few hundred are planned once, for index
 * probes per customer (DISTINCT keeps the generic plan's estimate small); a bulk set (a
 * snapshot's, a rebuild's) is planned for its real size, for hash joins over the tables.
 */
#define IDS_SMALL "SELECT DISTINCT x AS customer_id FROM unnest($1::text[]) x"
#define IDS_BULK "SELECT x AS customer_id FROM unnest($1::text[]) x"

/*
 * lifecycle_stage from a last order date, the next instant it changes, and next_change_at:
 * the earlier of that and when the oldest in-window event leaves the window.  $2..$4 are
 * the bounds, $5 the zone.
 */
#define STAGE(lod) \
"CASE WHEN " lod " > $2 THEN 'active' WHEN " lod " > $3 THEN 'at_risk'\n" \
"     WHEN " lod " > $4 THEN 'lapsing' WHEN " lod " IS NOT NULL THEN 'churned'\n" \
"     ELSE 'prospect' END"
#define STAGE_CHANGE(lod) \
"CASE WHEN " lod " > $2 THEN c360.shift_days(" lod ", 30, $5)\n" \
"     WHEN " lod " > $3 THEN c360.shift_days(" lod ", 90, $5)\n" \
"     WHEN " lod " > $4 THEN c360.shift_days(" lod ", 365, $5) END"
#define EXPIRY_CHANGE "c360.shift_days(expiry.first_in_window, 30, $5)"
#define NEXT_CHANGE(expiry_change, lod) \
"least(" expiry_change ",\n" STAGE_CHANGE(lod) ")"

/* The profile's columns of row r, in table order, but profile_updated_at. */
#define PROFILE_COLUMNS(r) \
r ".customer_id, " r ".email, " r ".first_name, " \
r ".last_name, " r ".loyalty_tier, " r ".acquisition_channel, " \
r ".signup_date, " r ".total_orders, " r ".lifetime_value, " \
r ".avg_order_value, " r ".first_order_date, " r ".last_order_date, " \
r ".last_order_status, " r ".preferred_channel, " r ".open_support_tickets, " \
r ".total_support_tickets, " r ".last_ticket_at, " r ".events_last_30d, " \
r ".product_views_last_30d, " r ".sessions_last_30d, " r ".last_active_at, " \
r ".lifecycle_stage, " r ".has_open_support_issue, " r ".next_change_at"

/*
 * Recompute the whole profile rows of the given customers ($1) as of the clock.  Orders
 * and tickets use the reference query's own aggregates over the indexed mirrors.  The
 * behaviour columns are recounted from the event mirror for the customers in $6 (their
 * events or links changed) and those without a profile row; the others' stored ones are
 * exact as of the clock.  So is their stored next_change_at, the earlier of the event
 * expiry and the stage change of the stored last order: where it is before that stage
 * change (or there is none), it is the event expiry itself; only where the two coincide
 * is the event index looked up.
 * A row is written only when its binary image differs from the stored one; rows whose
 * customer is gone are deleted.
 */
#define REFRESH_SQL(ids) \
"WITH d AS (" ids "),\n" \
"dd AS (\n" \
"  SELECT d.customer_id, x.recount,\n" \
"         sp.events_last_30d, sp.product_views_last_30d, sp.sessions_last_30d, sp.last_active_at,\n" \
"         CASE WHEN sp.customer_id IS NOT NULL THEN ROW(" PROFILE_COLUMNS("sp") ") END AS stored,\n" \
"         x.recount OR COALESCE(sp.next_change_at = x.stage_change, false) AS lookup,\n" \
"         CASE WHEN x.stage_change IS NULL OR sp.next_change_at < x.stage_change\n" \
"              THEN sp.next_change_at END AS stored_expiry\n" \
"  FROM d LEFT JOIN c360.customer_360 sp USING (customer_id)\n" \
"  LEFT JOIN unnest($6::text[]) b(x) ON b.x = d.customer_id\n" \
"  CROSS JOIN LATERAL (SELECT sp.customer_id IS NULL OR b.x IS NOT NULL AS recount,\n" \
"                             " STAGE_CHANGE("sp.last_order_date") " AS stage_change) x),\n" \
"ord AS (\n" \
"  SELECT customer_id, count(*) AS total_orders, sum(total_amount) AS total_spend,\n" \
"         avg(total_amount) AS avg_order_value, min(created_at) AS first_order_date,\n" \
"         max(created_at) AS last_order_date,\n" \
"         (array_agg(order_status ORDER BY created_at DESC, order_id DESC))[1] AS last_order_status,\n" \
"         mode() WITHIN GROUP (ORDER BY channel) AS preferred_channel\n" \
"  FROM c360.orders WHERE customer_id = ANY($1) GROUP BY customer_id),\n" \
"sup AS (\n" \
"  SELECT customer_id, count(*) FILTER (WHERE status = 'open') AS open_tickets,\n" \
"         count(*) AS total_tickets, max(created_at) AS last_ticket_at\n" \
"  FROM c360.support_tickets WHERE customer_id = ANY($1) GROUP BY customer_id),\n" \
"looked_up AS (SELECT customer_id FROM dd WHERE lookup),\n" \
RAW_CTE("looked_up") ",\n" \
"recounted AS (SELECT raw.* FROM raw JOIN dd USING (customer_id) WHERE dd.recount),\n" \
BEHAVIOUR_CTES("recounted") ",\n" \
EXPIRY_CTE ",\n" \
"fresh AS (\n" \
"  SELECT c.customer_id, c.email, c.first_name, c.last_name, c.loyalty_tier,\n" \
"         c.acquisition_channel, c.signup_date,\n" \
"         COALESCE(ord.total_orders, 0) AS total_orders,\n" \
"         COALESCE(ord.total_spend, 0) AS lifetime_value,\n" \
"         COALESCE(ord.avg_order_value, 0) AS avg_order_value,\n" \
"         ord.first_order_date, ord.last_order_date, ord.last_order_status,\n" \
"         ord.preferred_channel,\n" \
"         COALESCE(sup.open_tickets, 0) AS open_support_tickets,\n" \
"         COALESCE(sup.total_tickets, 0) AS total_support_tickets,\n" \
"         sup.last_ticket_at,\n" \
"         CASE WHEN dd.recount THEN COALESCE(beh.events_30d, 0)\n" \
"              ELSE dd.events_last_30d END AS events_last_30d,\n" \
"         CASE WHEN dd.recount THEN COALESCE(beh.product_views_30d, 0)\n" \
"              ELSE dd.product_views_last_30d END AS product_views_last_30d,\n" \
"         CASE WHEN dd.recount THEN COALESCE(beh.sessions_30d, 0)\n" \
"              ELSE dd.sessions_last_30d END AS sessions_last_30d,\n" \
"         CASE WHEN dd.recount THEN latest.last_active_at ELSE dd.last_active_at END\n" \
"           AS last_active_at,\n" \
"         " STAGE("ord.last_order_date") " AS lifecycle_stage,\n" \
"         COALESCE(sup.open_tickets, 0) > 0 AS has_open_support_issue,\n" \
"         " NEXT_CHANGE("CASE WHEN dd.lookup THEN " EXPIRY_CHANGE " ELSE dd.stored_expiry END", \
					   "ord.last_order_date") " AS next_change_at,\n" \
"         dd.stored\n" \
"  FROM c360.customers c JOIN dd USING (customer_id)\n" \
"  LEFT JOIN ord USING (customer_id) LEFT JOIN sup USING (customer_id)\n" \
"  LEFT JOIN beh USING (customer_id) LEFT JOIN latest USING (customer_id)\n" \
"  LEFT JOIN expiry USING (customer_id)),\n" \
"changed AS (\n" \
"  SELECT " PROFILE_COLUMNS("f") " FROM fresh f\n" \
"  WHERE f.stored IS NULL OR NOT (ROW(" PROFILE_COLUMNS("f") ") *= f.stored)),\n" \
"written AS (\n" \
"  INSERT INTO c360.customer_360 AS p (customer_id, email, first_name, last_name,\n" \
"    loyalty_tier, acquisition_channel, signup_date, total_orders, lifetime_value,\n" \
"    avg_order_value, first_order_date, last_order_date, last_order_status, preferred_channel,\n" \
"    open_support_tickets, total_support_tickets, last_ticket_at, events_last_30d,\n" \
"    product_views_last_30d, sessions_last_30d, last_active_at, lifecycle_stage,\n" \
"    has_open_support_issue, next_change_at, profile_updated_at)\n" \
"  SELECT changed.*, clock_timestamp() FROM changed\n" \
"  ON CONFLICT (customer_id) DO UPDATE SET\n" \
"    email = excluded.email, first_name = excluded.first_name, last_name = excluded.last_name,\n" \
"    loyalty_tier = excluded.loyalty_tier, acquisition_channel = excluded.acquisition_channel,\n" \
"    signup_date = excluded.signup_date, total_orders = excluded.total_orders,\n" \
"    lifetime_value = excluded.lifetime_value, avg_order_value = excluded.avg_order_value,\n" \
"    first_order_date = excluded.first_order_date, last_order_date = excluded.last_order_date,\n" \
"    last_order_status = excluded.last_order_status,\n" \
"    preferred_channel = excluded.preferred_channel,\n" \
"    open_support_tickets = excluded.open_support_tickets,\n" \
"    total_support_tickets = excluded.total_support_tickets,\n" \
"    last_ticket_at = excluded.last_ticket_at, events_last_30d = excluded.events_last_30d,\n" \
"    product_views_last_30d = excluded.product_views_last_30d,\n" \
"    sessions_last_30d = excluded.sessions_last_30d, last_active_at = excluded.last_active_at,\n" \
"    lifecycle_stage = excluded.lifecycle_stage,\n" \
"    has_open_support_issue = excluded.has_open_support_issue,\n" \
"    next_change_at = excluded.next_change_at,\n" \
"    profile_updated_at = excluded.profile_updated_at\n" \
"  RETURNING customer_id),\n" \
"gone AS (\n" \
"  DELETE FROM c360.customer_360 p WHERE p.customer_id = ANY($1)\n" \
"    AND NOT EXISTS (SELECT 1 FROM c360.customers c WHERE c.customer_id = p.customer_id)\n" \
"  RETURNING customer_id)\n" \
"SELECT customer_id FROM written UNION ALL SELECT customer_id FROM gone"

/*
 * Recompute only the behaviour columns (and the time-dependent stage, from the stored last
 * order date) of customers ($1) whose events or identity links changed.  Customers without
 * a profile row have no customer row: there is nothing to write for them.
 */
#define REFRESH_BEHAVIOUR_SQL(ids) \
"WITH d AS (" ids "),\n" \
RAW_CTE("d") ",\n" \
BEHAVIOUR_CTES("raw") ",\n" \
EXPIRY_CTE ",\n" \
"fresh AS (\n" \
"  SELECT p.customer_id,\n" \
"         COALESCE(beh.events_30d, 0) AS events_last_30d,\n" \
"         COALESCE(beh.product_views_30d, 0) AS product_views_last_30d,\n" \
"         COALESCE(beh.sessions_30d, 0) AS sessions_last_30d,\n" \
"         latest.last_active_at,\n" \
"         " STAGE("p.last_order_date") " AS lifecycle_stage,\n" \
"         " NEXT_CHANGE(EXPIRY_CHANGE, "p.last_order_date") " AS next_change_at\n" \
"  FROM c360.customer_360 p JOIN d USING (customer_id)\n" \
"  LEFT JOIN beh USING (customer_id) LEFT JOIN latest USING (customer_id)\n" \
"  LEFT JOIN expiry USING (customer_id)),\n" \
"written AS (\n" \
"  UPDATE c360.customer_360 p SET\n" \
"    events_last_30d = f.events_last_30d, product_views_last_30d = f.product_views_last_30d,\n" \
"    sessions_last_30d = f.sessions_last_30d, last_active_at = f.last_active_at,\n" \
"    lifecycle_stage = f.lifecycle_stage, next_change_at = f.next_change_at,\n" \
"    profile_updated_at = clock_timestamp()\n" \
"  FROM fresh f\n" \
"  WHERE p.customer_id = f.customer_id\n" \
"    AND (p.events_last_30d, p.product_views_last_30d, p.sessions_last_30d, p.last_active_at,\n" \
"         p.lifecycle_stage, p.next_change_at) IS DISTINCT FROM\n" \
"        (f.events_last_30d, f.product_views_last_30d, f.sessions_last_30d, f.last_active_at,\n" \
"         f.lifecycle_stage, f.next_change_at)\n" \
"  RETURNING p.customer_id)\n" \
"SELECT customer_id FROM written"

/*
 * Only time passed for these customers ($1): their counters are exact as of the clock (a
 * tick has taken the events that left the window off them), but their stage and when
 * their profile next changes may have moved.  The stage comes from the stored last order
 * date, the event expiry from one index probe per raw id.
 */
#define REFRESH_TIME_SQL(ids) \
"WITH d AS (" ids "),\n" \
RAW_CTE("d") ",\n" \
EXPIRY_CTE ",\n" \
"fresh AS (\n" \
"  SELECT p.customer_id, " STAGE("p.last_order_date") " AS lifecycle_stage,\n" \
"         " NEXT_CHANGE(EXPIRY_CHANGE, "p.last_order_date") " AS next_change_at\n" \
"  FROM c360.customer_360 p JOIN d USING (customer_id) LEFT JOIN expiry USING (customer_id)),\n" \
"written AS (\n" \
"  UPDATE c360.customer_360 p SET\n" \
"    lifecycle_stage = f.lifecycle_stage, next_change_at = f.next_change_at,\n" \
"    profile_updated_at = clock_timestamp()\n" \
"  FROM fresh f\n" \
"  WHERE p.customer_id = f.customer_id\n" \
"    AND (p.lifecycle_stage, p.next_change_at) IS DISTINCT FROM (f.lifecycle_stage, f.next_change_at)\n" \
"  RETURNING p.customer_id)\n" \
"SELECT customer_id FROM written"

static const char *refresh_sql[2] = {REFRESH_SQL(IDS_SMALL), REFRESH_SQL(IDS_BULK)};
static const char *refresh_behaviour_sql[2] = {REFRESH_BEHAVIOUR_SQL(IDS_SMALL),
REFRESH_BEHAVIOUR_SQL(IDS_BULK)};
static const char *refresh_time_sql[2] = {REFRESH_TIME_SQL(IDS_SMALL), REFRESH_TIME_SQL(IDS_BULK)};

/*
 * Bring the profile rows of the dirty customers up to date.  Unless the caller holds the
 * clock lock exclusively, lock the customers first, in one global order, so that two
 * concurrent batches touching the same customer recompute one after the other and the
 * second sees the first's committed rows.  Segments then see only the rows that really
 * changed.  Returns the number of profile rows written or deleted.
 */
int64
c360_maintain_refresh(C360Dirty *dirty, const C360Clock *clock, bool exclusive)
{
	static SPIPlanPtr plans[3];
	Oid			types[6] = {TEXTARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TEXTOID, TEXTARRAYOID};
	Datum		args[6];
	List	   *changed = dirty->written;
	List	   *full = NIL;
	List	   *recount = NIL;
	List	   *behaviour = NIL;
	List	   *timed = NIL;
	List	   *traits = NIL;	/* customers whose traits over some input may change */

	for (int i = 0; i < c360_ninputs; i++)
		traits = list_concat(traits, dirty->inputs[i]);
	if (dirty->full == NIL && dirty->behaviour == NIL && dirty->timed == NIL &&
		dirty->written == NIL && traits == NIL)
		return 0;
	split_dirty(dirty, &full, &recount, &behaviour, &timed);
	if (!exclusive && !dirty->locked)
		c360_maintain_lock(c360_text_array(list_concat(list_concat(list_concat_copy(full, behaviour),
																   timed), traits)));

	args[1] = TimestampTzGetDatum(clock->d30);
	args[2] = TimestampTzGetDatum(clock->d90);
	args[3] = TimestampTzGetDatum(clock->d365);
	args[4] = CStringGetTextDatum(clock->time_zone);
	if (full != NIL)
	{
		args[0] = c360_text_array(full);
		args[5] = c360_text_array(recount);
		changed = c360_exec_sized(&plans[0], refresh_sql, list_length(full), 6, types, args,
							 changed);
	}
	if (behaviour != NIL)
	{
		args[0] = c360_text_array(behaviour);
		changed = c360_exec_sized(&plans[1], refresh_behaviour_sql, list_length(behaviour), 5,
							 types, args, changed);
	}
	if (timed != NIL)
	{
		args[0] = c360_text_array(timed);
		changed = c360_exec_sized(&plans[2], refresh_time_sql, list_length(timed), 5,
							 types, args, changed);
	}
	changed = c360_traits_refresh(dirty, clock, changed);
	/* a row written by difference may have been refreshed as well: count it once */
	changed = c360_distinct_ids(changed, c360_id_set());
	c360_segments_refresh(changed);
	return list_length(changed);
}

/*
 * The dirty customers, each once: those recomputed in full, those of them whose behaviour
 * must be recounted too, those that need only their behaviour recomputed, and those for
 * whom only time passed.  A timed customer that is also recomputed in full is recounted
 * (a full recompute trusts the stored event expiry, which time may have moved).
 */
static void
split_dirty(const C360Dirty *dirty, List **full, List **recount, List **behaviour,
			List **timed)
{
	HTAB	   *full_set = c360_id_set();
	HTAB	   *behaviour_set = c360_id_set();
	ListCell   *lc;

	*full = c360_distinct_ids(dirty->full, full_set);
	foreach(lc, c360_distinct_ids(dirty->behaviour, behaviour_set))
	{
		char	   *id = lfirst(lc);

		if (hash_search(full_set, &id, HASH_FIND, NULL) != NULL)
			*recount = lappend(*recount, id);
		else
			*behaviour = lappend(*behaviour, id);
	}
	foreach(lc, c360_distinct_ids(dirty->timed, c360_id_set()))
	{
		char	   *id = lfirst(lc);

		if (hash_search(behaviour_set, &id, HASH_FIND, NULL) != NULL)
			continue;			/* recounted already */
		if (hash_search(full_set, &id, HASH_FIND, NULL) != NULL)
			*recount = lappend(*recount, id);
		else
			*timed = lappend(*timed, id);
	}
}

/*
 * Customer locks are advisory so that they also cover customers with no profile row yet,
 * and striped so that a batch of any size takes a bounded number of them.  Taken in
 * ascending stripe order: two batches can wait on each other only in one direction.
 */
void
c360_maintain_lock(Datum ids)
{
	Oid			types[1] = {TEXTARRAYOID};
	int		   *stripes;
	int			n;

	c360_exec(c360_plan(&lock_ids_plan, "SELECT DISTINCT x FROM unnest($1::text[]) x", 1, types),
			  &ids, NULL);
	n = SPI_processed;
	stripes = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		stripes[i] = id ? hash_bytes((const unsigned char *) id, strlen(id)) % C360_STRIPES : 0;
	}
	qsort(stripes, n, sizeof(int), cmp_int);
	for (int i = 0; i < n; i++)
		if (i == 0 || stripes[i] != stripes[i - 1])
			DirectFunctionCall2(pg_advisory_xact_lock_int4,
								Int32GetDatum(C360_LOCK_CUSTOMER), Int32GetDatum(stripes[i]));
}

static int
cmp_int(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return (x > y) - (x < y);
}

/*
 * Move the clock to `to` and bring every time-dependent column up to date.  A `to` before
 * the clock is an error when strict, else (the ticker, behind a test's explicit clock) a
 * no-op.  Window
 * membership is not monotone in time (a DST fall-back moves as_of - 30 days back by an
 * hour), so the rows to recompute are found exactly: the events and last orders lying
 * between the old and the new bound of each window, whichever way it moved.
 */
int64
c360_maintain_tick(TimestampTz to, bool strict)
{
	static SPIPlanPtr set_plan;
	static SPIPlanPtr band_plan;
	Oid			set_types[1] = {TIMESTAMPTZOID};
	Oid			band_types[6] = {TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	C360Clock	from;
	C360Clock	clock;
	Datum		args[6];
	C360Dirty	dirty = {0};
	int64		changed;

	SPI_connect();
	c360_clock_lock(true, &from);
	if (to < from.as_of && strict)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot move the profile clock back from %s to %s",
						pstrdup(timestamptz_to_str(from.as_of)), pstrdup(timestamptz_to_str(to))),
				 errhint("c360.tick() only moves forward; c360.as_of() is the current instant.")));
	if (to <= from.as_of)
	{
		SPI_finish();
		return 0;
	}
	clock = from;
	clock.as_of = to;
	c360_clock_bounds(&clock);

	args[0] = TimestampTzGetDatum(to);
	c360_exec(c360_plan(&set_plan, "UPDATE c360.clock SET as_of = $1", 1, set_types), args, NULL);

	c360_rollup_shift(from.d30, clock.d30, &dirty);

	args[0] = TimestampTzGetDatum(Min(from.d30, clock.d30));
	args[1] = TimestampTzGetDatum(Max(from.d30, clock.d30));
	args[2] = TimestampTzGetDatum(Min(from.d90, clock.d90));
	args[3] = TimestampTzGetDatum(Max(from.d90, clock.d90));
	args[4] = TimestampTzGetDatum(Min(from.d365, clock.d365));
	args[5] = TimestampTzGetDatum(Max(from.d365, clock.d365));
	/* last orders crossing a stage bound: only time passed for those customers */
	dirty.timed = c360_exec_ids(c360_plan(&band_plan,
										  "SELECT customer_id FROM c360.customer_360 WHERE"
										  " (last_order_date > $1 AND last_order_date <= $2) OR"
										  " (last_order_date > $3 AND last_order_date <= $4) OR"
										  " (last_order_date > $5 AND last_order_date <= $6)",
										  6, band_types),
								args, NULL, dirty.timed);

	c360_traits_tick(&from, &clock, &dirty);

	changed = c360_maintain_refresh(&dirty, &clock, true);
	SPI_finish();
	return changed;
}

/* Recompute every derived row from the mirrors; returns the profile rows that changed. */
int64
c360_maintain_rebuild(void)
{
	static SPIPlanPtr all_plan;
	C360Clock	clock;
	C360Dirty	all = {0};
	int64		changed;

	SPI_connect();
	c360_clock_lock(true, &clock);
	c360_rollup_rebuild();
	all.full = c360_exec_ids(c360_plan(&all_plan,
								  "SELECT customer_id FROM c360.customers UNION "
								  "SELECT customer_id FROM c360.customer_360", 0, NULL),
							 NULL, NULL, NIL);
	all.behaviour = all.full;	/* the stored behaviour is what a rebuild distrusts */
	all.inputs[C360_CUSTOMERS] = all.full;	/* and every trait */
	changed = c360_maintain_refresh(&all, &clock, true);
	SPI_finish();
	return changed;
}

/*
 * Backfill the traits still backfilling, all in one pass: the next chunk of `rows` profile
 * rows (0: c360.trait_backfill_chunk trait values' worth) in customer_id order after the
 * least-advanced trait's last one, or, when all_at_once (create_trait on a small profile, holding the
 * clock), every row.  Only the backfilling traits are computed, one statement per input.  A
 * chunk holds the clock shared and its customers' locks, as one batch does, so sources and
 * the ticker wait for at most about one batch.  Rows a batch touches meanwhile get the
 * traits from the maintainer, which maintains backfilling traits too.  Returns the rows
 * computed, or -1 when no trait is backfilling.
 */
int64
c360_maintain_backfill(bool all_at_once, int rows)
{
	static SPIPlanPtr lock_plan;
	static SPIPlanPtr cursor_plan;
	static SPIPlanPtr first_plan;
	static SPIPlanPtr next_plan;
	static SPIPlanPtr done_plan;
	Oid			types[3] = {TEXTOID, INT4OID, BOOLOID};
	Datum		args[3];
	C360Clock	clock;
	char	   *through;
	List	   *names;
	List	   *ids;
	int64		n;

	SPI_connect();
	if (!c360_traits_known())
	{
		SPI_finish();
		return -1;
	}
	c360_clock_lock(all_at_once, &clock);
	/* one backfill at a time: the ticker's and a CALL backfill_traits() wait for each other */
	c360_exec(c360_plan(&lock_plan, "SELECT 1 FROM c360.column_catalog WHERE state = 'backfilling'"
						" FOR UPDATE", 0, NULL), NULL, NULL);
	/* the least-advanced trait first: the chunk starts after its last row */
	names = c360_exec_ids(c360_plan(&cursor_plan, "SELECT name, backfilled_through"
									" FROM c360.column_catalog WHERE state = 'backfilling'"
									" ORDER BY backfilled_through NULLS FIRST", 0, NULL),
						  NULL, NULL, NIL);
	if (names == NIL)
	{
		SPI_finish();
		return -1;
	}
	through = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	/* by default a chunk is c360.trait_backfill_chunk trait values, whatever the traits */
	if (rows <= 0)
		rows = Max(C360_MIN_CHUNK, c360_trait_backfill_chunk / list_length(names));

	args[0] = through ? CStringGetTextDatum(through) : (Datum) 0;
	args[1] = Int32GetDatum(all_at_once ? INT_MAX : rows);
	if (through == NULL)
		ids = c360_exec_ids(c360_plan(&first_plan, "SELECT customer_id FROM c360.customer_360"
									  " ORDER BY customer_id LIMIT $2", 2, types), args, NULL, NIL);
	else
		ids = c360_exec_ids(c360_plan(&next_plan, "SELECT customer_id FROM c360.customer_360"
									  " WHERE customer_id > $1 ORDER BY customer_id LIMIT $2",
									  2, types), args, NULL, NIL);
	n = list_length(ids);
	if (!all_at_once && ids != NIL)
		c360_maintain_lock(c360_text_array(ids));
	c360_segments_refresh(c360_traits_backfill(names, ids, &clock));

	/* each trait counts the rows past its own last one; at the end, all are ready */
	args[0] = c360_text_array(ids);
	args[1] = ids != NIL ? CStringGetTextDatum(llast(ids)) : CStringGetTextDatum("");
	args[2] = BoolGetDatum(all_at_once || n < rows);
	types[0] = TEXTARRAYOID;
	types[1] = TEXTOID;
	c360_exec(c360_plan(&done_plan, "UPDATE c360.column_catalog SET"
						" backfilled = backfilled + (SELECT count(*) FROM unnest($1::text[]) x"
						"   WHERE backfilled_through IS NULL OR x > backfilled_through),"
						" backfilled_through = CASE WHEN $3 THEN NULL"
						"   ELSE greatest(backfilled_through, $2) END,"
						" state = CASE WHEN $3 THEN 'ready' ELSE state END"
						" WHERE state = 'backfilling'", 3, types), args, NULL);
	SPI_finish();
	return n;
}
