/*-------------------------------------------------------------------------
 * profile_sql.c
 *	  The maintainer's statements for the article's columns, generated from the
 *	  profile column catalog's built-in entries (src/core/columns.c): the recompute
 *	  of whole rows, of the event columns and of what time changes, the tick's band,
 *	  and new and expiring events by difference (with the event traits folded in).
 *	  c360.profile_statements() shows them.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "core/columns_sql.h"
#include "core/rollup.h"

/* by statement, bulk form, and whether the profile keeps next_change_at's parts (0.11) */
static const char *statements[C360_PROFILE_STATEMENTS][2][2];

static void append_base_columns(StringInfo s, List *cols);
static void append_fresh_columns(StringInfo s, List *cols, Bounds *b);
static bool is_event_or_timed(const C360Trait *t);
static bool is_session_count(const C360Trait *t);
static bool is_row_count(const C360Trait *t);
static bool is_event_delta(const C360Trait *t);

/*
 * The window every counted event column has (the hot path reads only it).  The built-in
 * entries have one, of whole days.
 */
static const Interval *
event_window(List *cols)
{
	const Interval *w = NULL;
	ListCell   *lc;

	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (!c360_col_is_event_count(t))
			continue;
		if (t->lookback == NULL || t->lookback->month != 0 || t->lookback->time != 0 ||
			(w && w->day != t->lookback->day))
			elog(ERROR, "the event columns must share one window of whole days");
		w = t->lookback;
	}
	if (w == NULL)
		elog(ERROR, "no event column has a window");
	return w;
}

/*
 * The event columns of the customers in src (rows _c360_id, _c360_raw), counted from the
 * event mirror: agg_behavioral_events reads only the window (the counted columns share
 * it), latest one index probe per raw id.
 */
static void
append_event_ctes(StringInfo s, List *cols, const char *src, Bounds *b, bool bulk)
{
	const char *window = c360_col_interval_text(event_window(cols));

	c360_col_append_input_aggregates(s, cols, C360_BEHAVIORAL_EVENTS, "r._c360_id",
							psprintf("FROM %s AND i.event_time > %s", c360_col_events_of(src, "r", bulk),
									 c360_col_bound_ref(b, window)), b, window);
	appendStringInfo(s, ",\nlatest AS (\n  SELECT r._c360_id");
	c360_col_append_each(s, cols, c360_col_is_latest, "%1$s, max(l.event_time) AS %2$s", "");
	appendStringInfo(s, "\n  FROM %s r CROSS JOIN LATERAL (\n"
					 "    SELECT i.event_time FROM c360.behavioral_events i WHERE i.customer_id = r._c360_raw\n"
					 "    ORDER BY i.event_time DESC LIMIT 1) l\n"
					 "  GROUP BY r._c360_id)", src);
}

/*
 * expiry(_c360_id, _c360_change): when the oldest in-window event of the customers in
 * raw leaves the window, and their event columns next change with time alone.
 */
void
c360_col_append_expiry(StringInfo s, List *cols, Bounds *b)
{
	const Interval *window = event_window(cols);

	appendStringInfo(s, "expiry AS (\n"
					 "  SELECT r._c360_id, c360.shift_days(min(e.event_time), %d, %s) AS _c360_change\n"
					 "  FROM raw r CROSS JOIN LATERAL (\n"
					 "    SELECT i.event_time FROM c360.behavioral_events i\n"
					 "    WHERE i.customer_id = r._c360_raw AND i.event_time > %s\n"
					 "    ORDER BY i.event_time LIMIT 1) e\n"
					 "  GROUP BY r._c360_id)", window->day, b->zone,
					 c360_col_bound_ref(b, c360_col_interval_text(window)));
}

/* the timed expressions' next change (the least), over columns named as in their text */
char *
c360_col_time_change(List *cols, Bounds *b)
{
	List	   *changes = NIL;
	ListCell   *lc;
	StringInfoData s;

	foreach(lc, cols)
		if (((C360Trait *) lfirst(lc))->changes_at)
		changes = lappend(changes, c360_col_render(((C360Trait *) lfirst(lc))->changes_at, b));
	if (changes == NIL)
		return "NULL::timestamptz";
	if (list_length(changes) == 1)
		return linitial(changes);
	initStringInfo(&s);
	foreach(lc, changes)
		appendStringInfo(&s, "%s%s", foreach_current_index(lc) ? ", " : "least(",
						 (char *) lfirst(lc));
	appendStringInfoChar(&s, ')');
	return s.data;
}

/*
 * Recompute whole profile rows of the customers in $1 as of the clock.  Every input's
 * columns come from its aggregates over the indexed mirror (agg_<input>).  The event
 * columns are recounted only for the customers in the last parameter (their events or
 * links changed) and those without a profile row; the others' stored ones are exact as
 * of the clock (events update profiles by difference, src/core/rollup.c).  So is their
 * stored next_change_at where it is before the next change of the timed expressions:
 * there it is the event expiry itself, and only elsewhere is the event index looked up.
 * A row is written only when its binary image differs from the stored one; rows whose
 * customer is gone are deleted.  Which those are comes from dd and base, not from a
 * NOT EXISTS over c360.customers: the planner hashed the whole customer mirror for that,
 * 45 of 145 ms of a batch of 1,000 at 100,000 customers (bench/orders.sh).
 */
static char *
refresh_full_sql(List *cols, bool bulk, bool parts)
{
	Bounds	   *b = c360_col_param_bounds(2);
	const char *art = c360_col_article(parts);
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "WITH d AS (%s),\n", bulk ? IDS_BULK : IDS_SMALL);
	appendStringInfoString(&s, "dd AS (\n  SELECT d._c360_id, x.recount");
	c360_col_append_each(&s, cols, c360_col_is_event, "%1$s, sp.%2$s", "");
	appendStringInfoString(&s, ",\n         CASE WHEN sp.customer_id IS NOT NULL THEN ROW(");
	c360_col_append_profile_columns(&s, cols, "sp.", parts);
	appendStringInfo(&s, ") END AS stored,\n"
					 "         x.recount OR COALESCE(sp.%1$s = x.time_change, false) AS lookup,\n"
					 "         CASE WHEN x.time_change IS NULL OR sp.%1$s < x.time_change\n"
					 "              THEN sp.%1$s END AS stored_expiry\n"
					 "  FROM d LEFT JOIN c360.customer_360 sp ON sp.customer_id = d._c360_id\n"
					 "  LEFT JOIN unnest(%2$s::text[]) b(x) ON b.x = d._c360_id\n"
					 "  CROSS JOIN LATERAL (SELECT sp.customer_id IS NULL OR b.x IS NOT NULL AS recount,\n"
					 "    %3$s AS time_change) x),\n",
					 art, psprintf("$%d", (int) C360_NWINDOWS + 3), c360_col_time_change(cols, b));
	for (C360InputId in = 0; in < C360_BUILTIN_INPUTS; in++)
	{
		const char *c = c360_col_customer_column(in);

		if (in == C360_BEHAVIORAL_EVENTS || !c360_col_any_of(cols, in))
			continue;
		c360_col_append_input_aggregates(&s, cols, in, psprintf("i.%s", c),
								psprintf("FROM c360.%s i WHERE i.%s = ANY($1)",
										 c360_inputs[in].name, c), b, NULL);
		appendStringInfoString(&s, ",\n");
	}
	appendStringInfoString(&s, "looked_up AS (SELECT _c360_id FROM dd WHERE lookup),\n"
						   "raw AS (\n" RAW_OF("looked_up") "),\n"
						   "recounted AS (SELECT raw.* FROM raw JOIN dd USING (_c360_id) WHERE dd.recount),\n");
	append_event_ctes(&s, cols, "recounted", b, bulk);
	appendStringInfoString(&s, ",\n");
	c360_col_append_expiry(&s, cols, b);
	appendStringInfoString(&s, ",\nbase AS (\n  SELECT c.customer_id");
	append_base_columns(&s, cols);
	appendStringInfoString(&s, ",\n         CASE WHEN dd.lookup THEN expiry._c360_change ELSE dd.stored_expiry END\n"
						   "           AS _c360_expiry,\n"
						   "         dd.stored\n"
						   "  FROM c360.customers c JOIN dd ON dd._c360_id = c.customer_id");
	c360_col_append_agg_joins(&s, cols, "c.customer_id");
	appendStringInfoString(&s, "\n  LEFT JOIN latest ON latest._c360_id = c.customer_id\n"
						   "  LEFT JOIN expiry ON expiry._c360_id = c.customer_id),\n"
						   "fresh AS (\n  SELECT customer_id");
	append_fresh_columns(&s, cols, b);
	appendStringInfo(&s, ",\n         least(_c360_expiry, %s) AS %s, stored\n"
					 "  FROM base),\n"
					 "changed AS (\n  SELECT ", c360_col_time_change(cols, b), art);
	c360_col_append_profile_columns(&s, cols, "f.", parts);
	appendStringInfoString(&s, " FROM fresh f\n  WHERE f.stored IS NULL OR NOT (ROW(");
	c360_col_append_profile_columns(&s, cols, "f.", parts);
	appendStringInfoString(&s, ") *= f.stored)),\n"
						   "written AS (\n  INSERT INTO c360.customer_360 AS p (");
	c360_col_append_profile_columns(&s, cols, "", parts);
	appendStringInfo(&s, "%s, profile_updated_at)\n"
					 "  SELECT changed.*%s, clock_timestamp() FROM changed\n"
					 "  ON CONFLICT (customer_id) DO UPDATE SET\n    ",
					 parts ? ", next_change_at" : "", parts ? ", changed.article_change_at" : "");
	c360_col_append_each(&s, cols, c360_col_is_any, "%1$s%2$s = excluded.%2$s", ",\n    ");
	appendStringInfo(&s, ",\n    %1$s = excluded.%1$s,\n", art);
	if (parts)
		appendStringInfoString(&s, "    next_change_at = least(excluded.article_change_at, p.traits_change_at),\n");
	appendStringInfoString(&s, "    profile_updated_at = excluded.profile_updated_at\n"
						   "  RETURNING customer_id),\n"
						   "gone AS (\n"
						   "  DELETE FROM c360.customer_360 p USING (\n"
						   "    SELECT _c360_id FROM dd WHERE NOT (dd.stored IS NULL)\n"
						   "    EXCEPT SELECT customer_id FROM base) g\n"
						   "  WHERE p.customer_id = g._c360_id\n"
						   "  RETURNING p.customer_id)\n"
						   "SELECT customer_id FROM written UNION ALL SELECT customer_id FROM gone");
	return s.data;
}


/*
 * base's columns: each value and aggregate entry with its fill applied; the event
 * columns recounted where dd says so, else as stored.
 */
static void
append_base_columns(StringInfo s, List *cols)
{
	ListCell   *lc;

	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *q = quote_identifier(t->name);

		appendStringInfoString(s, ",\n         ");
		if (c360_col_is_value(t))
			appendStringInfo(s, "c.%s AS %s", quote_identifier(t->arg), q);
		else if (c360_col_is_latest(t))
			appendStringInfo(s, "CASE WHEN dd.recount THEN latest.%s ELSE dd.%s END AS %s", q, q, q);
		else if (c360_col_is_event(t))
			appendStringInfo(s, "CASE WHEN dd.recount THEN %s ELSE dd.%s END AS %s",
							 c360_col_filled(t, psprintf("agg_behavioral_events.%s", q)), q, q);
		else if (c360_col_is_aggregate(t))
			appendStringInfo(s, "%s AS %s", c360_col_agg_value(t), q);
		else
			s->len -= strlen(",\n         ");	/* an expression: fresh computes it */
	}
}

/* fresh's columns: base's, and the expressions over them */
static void
append_fresh_columns(StringInfo s, List *cols, Bounds *b)
{
	ListCell   *lc;

	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (c360_col_is_expression(t))
			appendStringInfo(s, ",\n         %s AS %s", c360_col_render(t->arg, b),
							 quote_identifier(t->name));
		else
			appendStringInfo(s, ", %s", quote_identifier(t->name));
	}
}

/*
 * Recompute, for the customers in $1 with a profile row, what time alone changes (the
 * timed expressions, from the stored columns they read, and next_change_at) and, when
 * events, their event columns too (their events or identity links changed).
 */
static char *
refresh_part_sql(List *cols, bool events, bool bulk, bool parts)
{
	Bounds	   *b = c360_col_param_bounds(2);
	const char *art = c360_col_article(parts);
	bool		(*set) (const C360Trait *) = events ? is_event_or_timed : c360_col_is_timed;
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfo(&s, "WITH d AS (%s),\nraw AS (\n" RAW_OF("d") "),\n",
					 bulk ? IDS_BULK : IDS_SMALL);
	if (events)
	{
		append_event_ctes(&s, cols, "raw", b, bulk);
		appendStringInfoString(&s, ",\n");
	}
	c360_col_append_expiry(&s, cols, b);
	appendStringInfoString(&s, ",\nfresh AS (\n  SELECT p.customer_id");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *q = quote_identifier(t->name);

		if (c360_col_is_timed(t))
			appendStringInfo(&s, ",\n         %s AS %s", c360_col_render(t->arg, b), q);
		else if (events && c360_col_is_latest(t))
			appendStringInfo(&s, ",\n         latest.%s", q);
		else if (events && c360_col_is_event(t))
			appendStringInfo(&s, ",\n         %s AS %s",
							 c360_col_filled(t, psprintf("agg_behavioral_events.%s", q)), q);
	}
	appendStringInfo(&s, ",\n         least(expiry._c360_change, %s) AS %s\n"
					 "  FROM c360.customer_360 p JOIN d ON d._c360_id = p.customer_id\n",
					 c360_col_time_change(cols, b), art);
	if (events)
		appendStringInfoString(&s, "  LEFT JOIN agg_behavioral_events ON agg_behavioral_events._c360_id = p.customer_id\n"
							   "  LEFT JOIN latest ON latest._c360_id = p.customer_id\n");
	appendStringInfoString(&s, "  LEFT JOIN expiry ON expiry._c360_id = p.customer_id),\n"
						   "written AS (\n  UPDATE c360.customer_360 p SET\n    ");
	c360_col_append_each(&s, cols, set, "%1$s%2$s = f.%2$s", ", ");
	appendStringInfo(&s, ", %1$s = f.%1$s,\n", art);
	if (parts)
		appendStringInfoString(&s, "    next_change_at = least(f.article_change_at, p.traits_change_at),\n");
	appendStringInfoString(&s, "    profile_updated_at = clock_timestamp()\n"
						   "  FROM fresh f\n  WHERE p.customer_id = f.customer_id\n    AND (");
	c360_col_append_each(&s, cols, set, "%1$sp.%2$s", ", ");
	appendStringInfo(&s, ", p.%s) IS DISTINCT FROM\n        (", art);
	c360_col_append_each(&s, cols, set, "%1$sf.%2$s", ", ");
	appendStringInfo(&s, ", f.%s)\n  RETURNING p.customer_id)\n", art);
	appendStringInfoString(&s, "SELECT customer_id FROM written");
	return s.data;
}

/*
 * The profile rows whose timed expressions a tick changes: their time column lies
 * between the old and the new bound of a window they read ($1 and $2 for c360_windows[0], $3
 * and $4 for c360_windows[1], ...; the lower first: a DST fall-back moves a bound back).
 */
static char *
tick_band_sql(List *cols)
{
	StringInfoData s;
	ListCell   *lc;
	const char *sep = "";

	initStringInfo(&s);
	appendStringInfoString(&s, "SELECT customer_id FROM c360.customer_360 WHERE");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *tc;

		if (!c360_col_is_timed(t))
			continue;
		tc = quote_identifier(t->time_column);
		for (int w = 0; w < C360_NWINDOWS; w++)
			if (strstr(t->arg, psprintf("{%s}", c360_windows[w])))
			{
				appendStringInfo(&s, "%s\n  (%s > $%d AND %s <= $%d)", sep, tc, 2 * w + 1, tc,
								 2 * w + 2);
				sep = " OR";
			}
	}
	return s.data;
}

/*
 * Whether the events' difference to an event column is exact: a count of the window's
 * rows, the window's distinct sessions (through the "was this session in the window
 * already" probe), or the latest event.
 */
static bool
is_event_delta(const C360Trait *t)
{
	return c360_col_is_latest(t) || is_row_count(t) || is_session_count(t);
}

/*
 * per_session's column for an event column: the batch's new events of one owner and
 * session, each counted once (a session counts when it entered the window: it was not in
 * seen, when the statement has it, or the mirror's probe finds no event of it there).
 */
static char *
session_delta(const C360Trait *t, const char *bound, bool seen)
{
	char	   *cond;

	if (c360_col_is_latest(t))
		return "max(event_time)";
	if (strcmp(t->func, "count_distinct") == 0)
		return psprintf("session_id IS NOT NULL AND max(event_time) > %s\n"
						"           AND %s", bound,
						seen ? "count(seen._c360_seen_owner) = 0" :
						psprintf("NOT " SESSION_SEEN_AFTER("%s"), bound));
	cond = t->filter ? psprintf("(%s)%s", t->filter, bound ? psprintf(" AND event_time > %s", bound) : "") :
		bound ? psprintf("event_time > %s", bound) : NULL;
	return psprintf("%s%s", strcmp(t->func, "count") == 0 ? psprintf("count(%s)", t->arg) : "count(*)",
					cond ? psprintf(" FILTER (WHERE %s)", cond) : "");
}

/* An event trait kept by difference: a ready count over event_time's window, or all time. */
static bool
is_trait_delta(const C360Trait *t)
{
	return t->ready && is_row_count(t) &&
		(t->lookback == NULL || strcmp(t->time_column, "event_time") == 0);
}

/*
 * The batch's owners' events in the mirror (was, read as before this statement's insert),
 * for the recomputed event traits, and the sessions they had in the event window (seen).
 * Read once, they serve both: per_session finds a session that was in the window already
 * in seen, instead of probing the mirror once per session.  When every trait has a window
 * on event_time, only the widest of them and the event window is read.
 */
static void
append_stored_events(StringInfo s, List *traits, Bounds *b, const char *bound)
{
	StringInfoData window;
	ListCell   *lc;

	initStringInfo(&window);
	appendStringInfo(&window, " AND i.event_time > least(%s", bound);
	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);

		if (t->lookback == NULL || strcmp(t->time_column, "event_time") != 0)
		{
			resetStringInfo(&window);
			break;
		}
		appendStringInfo(&window, ", %s", c360_col_bound_ref(b, c360_col_interval_text(t->lookback)));
	}
	if (window.len)
		appendStringInfoChar(&window, ')');
	appendStringInfo(s, "owners AS (SELECT DISTINCT owner AS _c360_id FROM ev),\n"
					 "raw AS (\n" RAW_OF("owners") "),\n"
					 "was AS MATERIALIZED (\n"
					 "  SELECT raw._c360_id, i.* FROM %s%s),\n"
					 "seen AS (\n"
					 "  SELECT DISTINCT _c360_id AS _c360_seen_owner, session_id AS _c360_seen_session FROM was\n"
					 "  WHERE session_id IS NOT NULL AND event_time > %s),\n",
					 c360_col_events_of("raw", "raw", false), window.data, bound);
}

/*
 * The recomputed event traits of the batch's owners: tv(_c360_id, one column per trait),
 * each aggregated over the owner's events, those in the mirror (was) and the new ones in
 * ev.
 */
static void
append_trait_recompute(StringInfo s, List *traits, Bounds *b)
{
	const C360Input *in = &c360_inputs[C360_BEHAVIORAL_EVENTS];

	appendStringInfoString(s, ",\ntrows AS (\n  SELECT * FROM was\n  UNION ALL\n  SELECT owner");
	for (int c = 0; c < in->ncols; c++)
		appendStringInfo(s, ", %s", quote_identifier(in->cols[c].name));
	appendStringInfoString(s, " FROM ev),\n");
	c360_col_append_input_aggregates(s, traits, C360_BEHAVIORAL_EVENTS, "i._c360_id",
							"FROM trows i", b, NULL);
}

/*
 * New events by difference (src/core/rollup.c, c360_rollup_insert_events_delta): the
 * events ($1..$7, the mirror's columns) are inserted, and each owner's event columns
 * move by the new events alone: counts by the new in-window rows, sessions by those that
 * entered the window (no event of the session and owner was in it before: the probe
 * reads the mirror as before this statement's insert), the latest event by max, and
 * next_change_at by the oldest new in-window event's expiry.  An event so costs the same
 * whatever its customer's history.  The event traits go in the same write: ready counts
 * by difference too, the others recomputed over the owner's events and the new ones.
 * New events only add rows, so the parts of next_change_at (parts: from 0.11 on) only
 * fall: each is least()ed with the new events' (tp, for the traits).  Owners without a
 * profile row are left to the recount that creates it.  $8.. are the windows' bounds and
 * the zone, then the traits' bounds (*lookbacks, in order).
 */
char *
c360_events_delta_sql(List *traits, bool parts, List **lookbacks)
{
	List	   *cols = c360_builtin_columns();
	List	   *delta = NIL;
	List	   *recomputed = NIL;
	Bounds	   *b = c360_col_param_bounds(8);
	const Interval *window = event_window(cols);
	const char *bound = c360_col_bound_ref(b, c360_col_interval_text(window));
	bool		parted = parts && c360_input_has_part(traits, C360_BEHAVIORAL_EVENTS);
	List	   *part_bounds = NIL;
	char	   *expiry;
	StringInfoData s;
	ListCell   *lc;

	b->grow = true;				/* the traits' windows follow the built-in ones */
	foreach(lc, traits)
		if (((C360Trait *) lfirst(lc))->input == C360_BEHAVIORAL_EVENTS)
		{
			if (is_trait_delta(lfirst(lc)))
				delta = lappend(delta, lfirst(lc));
			else
				recomputed = lappend(recomputed, lfirst(lc));
		}
	initStringInfo(&s);
	appendStringInfo(&s, "%s,\n"
					 "ev AS MATERIALIZED (SELECT ins.*, " OWNER_OF("ins.customer_id") " AS owner FROM ins),\n",
					 recomputed || delta ? INSERT_EVENTS_CTES_RETURNING("*") :
					 INSERT_EVENTS_CTES_RETURNING("customer_id, session_id, event_type, event_time"));
	if (recomputed)
		append_stored_events(&s, recomputed, b, bound);
	appendStringInfoString(&s, "per_session AS (\n  SELECT owner");
	foreach(lc, list_concat_copy(cols, delta))
	{
		C360Trait  *t = lfirst(lc);

		if (!c360_col_is_event(t))
			continue;
		if (!is_event_delta(t))
			elog(ERROR, "built-in column %s cannot be kept by difference", t->name);
		appendStringInfo(&s, ",\n         %s AS %s",
						 session_delta(t, t->lookback == NULL ? NULL :
									   c360_col_bound_ref(b, c360_col_interval_text(t->lookback)),
									   recomputed != NIL),
						 quote_identifier(t->name));
	}
	appendStringInfo(&s, ",\n         min(event_time) FILTER (WHERE event_time > %s) AS _c360_first_in\n"
					 "  FROM ev%s GROUP BY owner, session_id),\n"
					 "per_owner AS (\n  SELECT owner", bound,
					 recomputed ? " LEFT JOIN seen ON seen._c360_seen_owner = ev.owner"
					 " AND seen._c360_seen_session = ev.session_id" : "");
	c360_col_append_each(&s, cols, c360_col_is_latest, "%1$s, max(%2$s) AS %2$s", "");
	c360_col_append_each(&s, cols, is_session_count, "%1$s, count(*) FILTER (WHERE %2$s) AS %2$s", "");
	c360_col_append_each(&s, list_concat_copy(cols, delta), is_row_count, "%1$s, sum(%2$s)::bigint AS %2$s", "");
	appendStringInfoString(&s, ", min(_c360_first_in) AS _c360_first_in\n"
						   "  FROM per_session GROUP BY owner)");
	if (recomputed)
		append_trait_recompute(&s, recomputed, b);
	if (parted)
	{
		foreach(lc, traits)
			if (((C360Trait *) lfirst(lc))->input == C360_BEHAVIORAL_EVENTS &&
				((C360Trait *) lfirst(lc))->lookback)
			part_bounds = lappend(part_bounds, (char *) c360_col_bound_ref(b,
																		   c360_col_interval_text(((C360Trait *) lfirst(lc))->lookback)));
		appendStringInfo(&s, ",\ntp AS (\n  SELECT owner, %s AS _c360_change\n  FROM ev i GROUP BY owner)",
						 c360_part_aggregate(traits, C360_BEHAVIORAL_EVENTS, part_bounds, b->zone, false));
	}
	appendStringInfoString(&s, "\nUPDATE c360.customer_360 p SET\n  ");
	c360_col_append_each(&s, cols, c360_col_is_latest, "%1$s%2$s = greatest(p.%2$s, r.%2$s)", ",\n  ");
	c360_col_append_each(&s, list_concat_copy(cols, delta), c360_col_is_event_count, "%1$s,\n  %2$s = p.%2$s + r.%2$s", "");
	foreach(lc, recomputed)
		appendStringInfo(&s, ",\n  %s = %s", quote_identifier(((C360Trait *) lfirst(lc))->name),
						 c360_col_filled(lfirst(lc), psprintf("tv.%s", quote_identifier(((C360Trait *) lfirst(lc))->name))));
	expiry = psprintf("c360.shift_days(r._c360_first_in, %d, %s)", window->day, b->zone);
	if (parted)
		c360_append_part_sets(&s, NIL, list_make1_int(C360_BEHAVIORAL_EVENTS), list_make1("tp._c360_change"),
							  true, psprintf("least(p.article_change_at, %s)", expiry));
	else
		appendStringInfo(&s, ",\n  next_change_at = least(p.next_change_at, %s)", expiry);
	if (parts)
		appendStringInfo(&s, ",\n  article_change_at = least(p.article_change_at, %s)", expiry);
	appendStringInfo(&s, ",\n  profile_updated_at = clock_timestamp()\n"
					 "FROM per_owner r%s%s\n"
					 "WHERE p.customer_id = r.owner\n  AND (",
					 recomputed ? " JOIN agg_behavioral_events tv ON tv._c360_id = r.owner" : "",
					 parted ? " JOIN tp ON tp.owner = r.owner" : "");
	c360_col_append_each(&s, list_concat_copy(cols, delta), c360_col_is_event_count, "%1$sr.%2$s > 0", " OR ");
	c360_col_append_each(&s, cols, c360_col_is_latest, "%1$s OR p.%2$s IS NULL OR r.%2$s > p.%2$s", "");
	if (recomputed)
	{
		appendStringInfoString(&s, "\n       OR NOT record_image_eq(ROW(");
		c360_col_append_each(&s, recomputed, c360_col_is_any, "%1$sp.%2$s", ", ");
		appendStringInfoString(&s, "), ROW(");
		foreach(lc, recomputed)
			appendStringInfo(&s, "%s%s", foreach_current_index(lc) ? ", " : "",
							 c360_col_filled(lfirst(lc), psprintf("tv.%s", quote_identifier(((C360Trait *) lfirst(lc))->name))));
		appendStringInfoString(&s, "))");
	}
	if (parted)
		appendStringInfo(&s, "\n       OR %s", c360_part_changed(list_make1_int(C360_BEHAVIORAL_EVENTS),
														  list_make1("tp._c360_change"), true));
	appendStringInfoString(&s, ")\nRETURNING p.customer_id");
	*lookbacks = NIL;
	foreach(lc, b->texts)
		if (foreach_current_index(lc) >= C360_NWINDOWS)
			*lookbacks = lappend(*lookbacks, c360_col_parse_interval(lfirst(lc)));
	return s.data;
}

/*
 * The clock moved the event window's bound forward from $1 to $2: the events between
 * them left the window, and their owners' counts drop by difference (a session leaves
 * with its last in-window event).  Stage and expiry are left to the caller.  Returns the
 * owners.
 */
static char *
rollup_shift_sql(List *cols)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfoString(&s, "WITH ev AS MATERIALIZED (\n"
						   "  SELECT " OWNER_OF("e.customer_id") " AS owner, e.*\n"
						   "  FROM c360.behavioral_events e WHERE e.event_time > $1 AND e.event_time <= $2),\n"
						   "per_session AS (\n  SELECT owner");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (!c360_col_is_event_count(t))
			continue;
		if (strcmp(t->func, "count_distinct") == 0)
			appendStringInfo(&s, ",\n         session_id IS NOT NULL AND NOT " SESSION_SEEN_AFTER("$2")
							 " AS %s", quote_identifier(t->name));
		else
			appendStringInfo(&s, ",\n         %s%s AS %s", strcmp(t->func, "count") == 0 ?
							 psprintf("count(%s)", t->arg) : "count(*)",
							 t->filter ? psprintf(" FILTER (WHERE %s)", t->filter) : "",
							 quote_identifier(t->name));
	}
	appendStringInfoString(&s, "\n  FROM ev GROUP BY owner, session_id),\n"
						   "per_owner AS (\n  SELECT owner");
	c360_col_append_each(&s, cols, is_session_count, "%1$s, count(*) FILTER (WHERE %2$s) AS %2$s", "");
	c360_col_append_each(&s, cols, is_row_count, "%1$s, sum(%2$s)::bigint AS %2$s", "");
	appendStringInfoString(&s, "\n  FROM per_session GROUP BY owner)\n"
						   "UPDATE c360.customer_360 p SET\n  ");
	c360_col_append_each(&s, cols, c360_col_is_event_count, "%1$s%2$s = p.%2$s - r.%2$s", ",\n  ");
	appendStringInfoString(&s, ",\n  profile_updated_at = clock_timestamp()\n"
						   "FROM per_owner r WHERE p.customer_id = r.owner\n"
						   "RETURNING p.customer_id");
	return s.data;
}

/* the window's distinct sessions, counted by the "was it in the window already" probe */
static bool
is_session_count(const C360Trait *t)
{
	return c360_col_is_event_count(t) && strcmp(t->func, "count_distinct") == 0 &&
		strcmp(t->arg, "session_id") == 0;
}

/* a count of the window's (or all) rows */
static bool
is_row_count(const C360Trait *t)
{
	return c360_col_is_event_count(t) &&
		(strcmp(t->func, "count_star") == 0 || strcmp(t->func, "count") == 0);
}

static bool
is_event_or_timed(const C360Trait *t)
{
	return c360_col_is_event(t) || c360_col_is_timed(t);
}

const char *
c360_profile_statement_name(C360ProfileStatement which)
{
	static const char *const names[] = {"refresh", "refresh behaviour", "refresh time",
	"tick band", "events by difference", "tick events by difference", "orders by difference"};

	return names[which];
}

/*
 * The maintainer's statement for the article's columns (bulk: the form planned for a
 * bulk set), generated once per process from the built-in entries, for the profile
 * table as it is: an ALTER EXTENSION UPDATE to 0.11 in this session brings the parts'
 * form (a new text, so c360_plan prepares it anew).
 */
const char *
c360_profile_statement(C360ProfileStatement which, bool bulk)
{
	bool		parts = c360_parts_known();
	const char **st = &statements[which][bulk][parts];
	List	   *cols = c360_builtin_columns();
	List	   *none;
	MemoryContext old;

	if (*st != NULL)
		return *st;
	old = MemoryContextSwitchTo(TopMemoryContext);
	switch (which)
	{
		case C360_REFRESH_FULL:
			*st = refresh_full_sql(cols, bulk, parts);
			break;
		case C360_REFRESH_BEHAVIOUR:
		case C360_REFRESH_TIME:
			*st = refresh_part_sql(cols, which == C360_REFRESH_BEHAVIOUR, bulk, parts);
			break;
		case C360_TICK_BAND:
			*st = tick_band_sql(cols);
			break;
		case C360_ROLLUP_INSERT:
			*st = c360_events_delta_sql(NIL, parts, &none);
			break;
		case C360_ORDERS_DELTA:
			*st = c360_orders_delta_sql(cols, parts);
			break;
		default:
			*st = rollup_shift_sql(cols);
	}
	MemoryContextSwitchTo(old);
	return *st;
}

/*
 * The maintainer's statements' window bounds as of the clock (as_of - each of
 * c360_windows[], in the profile's zone) and the zone, into args; returns how many.
 */
int
c360_profile_bounds(const C360Clock *clock, Datum *args, Oid *types)
{
	static List *spans;			/* c360_windows, parsed once per process */

	if (spans == NIL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		for (int w = 0; w < C360_NWINDOWS; w++)
			spans = lappend(spans, c360_col_parse_interval(c360_windows[w]));
		MemoryContextSwitchTo(old);
	}
	c360_window_args(spans, clock, args, types);
	types[C360_NWINDOWS] = TEXTOID;
	args[C360_NWINDOWS] = CStringGetTextDatum(clock->time_zone);
	return C360_NWINDOWS + 1;
}

