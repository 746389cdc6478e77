/*-------------------------------------------------------------------------
 * columns.c
 *	  The profile column catalog's built-in entries, the article's columns, as data;
 *	  and what is generated from the catalog for them (docs/ARCHITECTURE.md, "The
 *	  profile column catalog"): the maintainer's recompute statements, the tick's
 *	  band, and the reference that reference_profile() returns and verify()
 *	  compares with (traits included).  c360.profile_statements() shows the text.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "core/columns.h"
#include "core/rollup.h"

/*
 * The article's columns, in the profile table's order (sql/customer360--0.1.sql), each
 * as its defining query computes it.  An expression reads the entries before it, of its
 * input, by name, with their fills applied; {N days} is the bound as_of - N days in the
 * profile's zone, {zone} the zone.  The windows of the expressions and of the event
 * columns are the clock's (30, 90 and 365 days).
 */
typedef struct Builtin
{
	const char *name;
	C360InputId input;
	const char *func;
	const char *arg;
	const char *filter;
	const char *lookback;
	const char *type;
	const char *fill;
} Builtin;

static const Builtin builtins[] = {
	{"email", C360_CUSTOMERS, "value", "email", NULL, NULL, "text"},
	{"first_name", C360_CUSTOMERS, "value", "first_name", NULL, NULL, "text"},
	{"last_name", C360_CUSTOMERS, "value", "last_name", NULL, NULL, "text"},
	{"loyalty_tier", C360_CUSTOMERS, "value", "loyalty_tier", NULL, NULL, "text"},
	{"acquisition_channel", C360_CUSTOMERS, "value", "acquisition_channel", NULL, NULL, "text"},
	{"signup_date", C360_CUSTOMERS, "value", "signup_date", NULL, NULL, "timestamptz"},
	{"total_orders", C360_ORDERS, "count_star", NULL, NULL, NULL, "bigint", "0"},
	{"lifetime_value", C360_ORDERS, "sum", "total_amount", NULL, NULL, "numeric", "0"},
	{"avg_order_value", C360_ORDERS, "avg", "total_amount", NULL, NULL, "numeric", "0"},
	{"first_order_date", C360_ORDERS, "min", "created_at", NULL, NULL, "timestamptz"},
	{"last_order_date", C360_ORDERS, "max", "created_at", NULL, NULL, "timestamptz"},
	/* ties broken by order_id, descending, as the article's own spelling does */
	{"last_order_status", C360_ORDERS, "first", "order_status", NULL, NULL, "text"},
	{"preferred_channel", C360_ORDERS, "mode", "channel", NULL, NULL, "text"},
	{"open_support_tickets", C360_SUPPORT_TICKETS, "count_star", NULL, "status = 'open'", NULL,
	"bigint", "0"},
	{"total_support_tickets", C360_SUPPORT_TICKETS, "count_star", NULL, NULL, NULL, "bigint", "0"},
	{"last_ticket_at", C360_SUPPORT_TICKETS, "max", "created_at", NULL, NULL, "timestamptz"},
	{"events_last_30d", C360_BEHAVIORAL_EVENTS, "count_star", NULL, NULL, "30 days", "bigint", "0"},
	{"product_views_last_30d", C360_BEHAVIORAL_EVENTS, "count_star", NULL,
	"event_type = 'product_view'", "30 days", "bigint", "0"},
	{"sessions_last_30d", C360_BEHAVIORAL_EVENTS, "count_distinct", "session_id", NULL, "30 days",
	"bigint", "0"},
	{"last_active_at", C360_BEHAVIORAL_EVENTS, "max", "event_time", NULL, NULL, "timestamptz"},
	{"lifecycle_stage", C360_ORDERS, "expression",
		"CASE WHEN last_order_date > {30 days} THEN 'active'\n"
		"     WHEN last_order_date > {90 days} THEN 'at_risk'\n"
		"     WHEN last_order_date > {365 days} THEN 'lapsing'\n"
		"     WHEN last_order_date IS NOT NULL THEN 'churned' ELSE 'prospect' END",
	NULL, NULL, "text"},
	{"has_open_support_issue", C360_SUPPORT_TICKETS, "expression", "open_support_tickets > 0",
	NULL, NULL, "boolean"},
};

/* When lifecycle_stage next changes with time alone: its last order crosses a bound. */
#define STAGE_CHANGES_AT \
	"CASE WHEN last_order_date > {30 days} THEN c360.shift_days(last_order_date, 30, {zone})\n" \
	"     WHEN last_order_date > {90 days} THEN c360.shift_days(last_order_date, 90, {zone})\n" \
	"     WHEN last_order_date > {365 days} THEN c360.shift_days(last_order_date, 365, {zone}) END"

/* The windows the maintainer's statements take as parameters $2.., in this order. */
static const char *const windows[] = {"30 days", "90 days", "365 days"};

/* The customers' own ids, and the raw ids (identity values) whose events are theirs. */
#define IDS_SMALL "SELECT DISTINCT x AS _c360_id FROM unnest($1::text[]) x"
#define IDS_BULK "SELECT x AS _c360_id FROM unnest($1::text[]) x"
#define RAW_OF(src) \
"  SELECT " src "._c360_id, r._c360_raw FROM " src " CROSS JOIN LATERAL (\n" \
"    SELECT ir.identity_value FROM c360.identity_resolved ir WHERE ir.customer_id = " src "._c360_id\n" \
"    UNION\n" \
"    SELECT " src "._c360_id WHERE NOT EXISTS\n" \
"      (SELECT 1 FROM c360.identity_resolved ir WHERE ir.identity_value = " src "._c360_id)\n" \
"  ) r(_c360_raw)"

static List *builtin_list;
static const char *statements[C360_PROFILE_STATEMENTS][2];

/*
 * The window bounds a statement reads, by the lookback's text ("30 days"): the
 * maintainer's are the parameters $2.. (windows[]); the reference's are columns of its
 * CTE b, one per distinct lookback, added as they are met.
 */
typedef struct Bounds
{
	List	   *texts;
	List	   *refs;
	bool		grow;
	int			next_param;		/* grow: a new bound is this parameter (0: a column of b) */
	const char *zone;
} Bounds;

static Bounds *param_bounds(int first);
static const char *bound_ref(Bounds *b, const char *text);
static char *render(const char *text, Bounds *b);
static Interval *parse_interval(const char *text);
static bool any_of(List *cols, C360InputId input);
static void append_base_columns(StringInfo s, List *cols);
static void append_fresh_columns(StringInfo s, List *cols, Bounds *b);
static bool is_event_or_timed(const C360Trait *t);
static bool is_session_count(const C360Trait *t);
static bool is_row_count(const C360Trait *t);
static bool is_event_delta(const C360Trait *t);

/*
 * The built-in entries as catalog entries, made once per process.
 */
List *
c360_builtin_columns(void)
{
	MemoryContext old;

	if (builtin_list != NIL)
		return builtin_list;
	old = MemoryContextSwitchTo(TopMemoryContext);
	for (int i = 0; i < lengthof(builtins); i++)
	{
		const Builtin *b = &builtins[i];
		C360Trait  *t = palloc0(sizeof(C360Trait));

		t->name = pstrdup(b->name);
		t->input = b->input;
		t->func = pstrdup(b->func);
		t->arg = b->arg ? pstrdup(b->arg) : NULL;
		t->filter = b->filter ? pstrdup(b->filter) : NULL;
		t->type = pstrdup(b->type);
		t->fill = b->fill ? pstrdup(b->fill) : NULL;
		t->builtin = t->ready = true;
		if (strcmp(b->name, "last_order_status") == 0)
		{
			t->order_by = pstrdup("created_at");
			t->descending = true;
		}
		if (b->lookback)
		{
			t->lookback = parse_interval(b->lookback);
			t->time_column = pstrdup("event_time");
		}
		if (strcmp(b->name, "lifecycle_stage") == 0)
		{
			/* the column its bounds compare: where a tick looks for rows it changes */
			t->time_column = pstrdup("last_order_date");
			t->changes_at = pstrdup(STAGE_CHANGES_AT);
		}
		builtin_list = lappend(builtin_list, t);
	}
	MemoryContextSwitchTo(old);
	return builtin_list;
}


static bool
is_value(const C360Trait *t)
{
	return strcmp(t->func, "value") == 0;
}

static bool
is_expression(const C360Trait *t)
{
	return strcmp(t->func, "expression") == 0;
}

static bool
is_aggregate(const C360Trait *t)
{
	return !is_value(t) && !is_expression(t);
}

/* An expression that time alone changes: it reads a window's bound. */
static bool
is_timed(const C360Trait *t)
{
	return is_expression(t) && strchr(t->arg, '{') != NULL;
}

/*
 * The latest event's time, read through the (customer, time) index: the hot path never
 * reads an event history whole.
 */
static bool
is_latest(const C360Trait *t)
{
	return t->input == C360_BEHAVIORAL_EVENTS && strcmp(t->func, "max") == 0 &&
		t->filter == NULL && t->lookback == NULL && strcmp(t->arg, "event_time") == 0;
}

static bool
is_event(const C360Trait *t)
{
	return t->input == C360_BEHAVIORAL_EVENTS && is_aggregate(t);
}

static bool
is_event_count(const C360Trait *t)
{
	return is_event(t) && !is_latest(t);
}

static bool
is_any(const C360Trait *t)
{
	return true;
}

/*
 * A window's key, and its literal in generated SQL: the same whatever IntervalStyle the
 * session has.
 */
static char *
interval_text(const Interval *span)
{
	StringInfoData s;

	initStringInfo(&s);
	if (span->month)
		appendStringInfo(&s, "%d mons ", span->month);
	if (span->day || (span->month == 0 && span->time == 0))
		appendStringInfo(&s, "%d days ", span->day);
	if (span->time)
		appendStringInfo(&s, INT64_FORMAT " microseconds ", span->time);
	s.data[--s.len] = '\0';
	return s.data;
}

static Interval *
parse_interval(const char *text)
{
	return DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(text),
												 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

static char *
key_column(C360InputId input)
{
	return psprintf("i.%s",
					quote_identifier(c360_inputs[input].cols[c360_inputs[input].key_col].name));
}

static const char *
customer_column(C360InputId input)
{
	return quote_identifier(c360_inputs[input].cols[c360_inputs[input].customer_col].name);
}

/* The maintainer's bounds: windows[] as $first.., and the zone after them. */
static Bounds *
param_bounds(int first)
{
	Bounds	   *b = palloc0(sizeof(Bounds));

	for (int w = 0; w < lengthof(windows); w++)
	{
		b->texts = lappend(b->texts, interval_text(parse_interval(windows[w])));
		b->refs = lappend(b->refs, psprintf("$%d", first + w));
	}
	b->zone = psprintf("$%d", first + (int) lengthof(windows));
	b->next_param = first + (int) lengthof(windows) + 1;	/* for callers that let it grow */
	return b;
}

static const char *
bound_ref(Bounds *b, const char *text)
{
	ListCell   *lt;
	ListCell   *lr;

	forboth(lt, b->texts, lr, b->refs)
		if (strcmp(lfirst(lt), text) == 0)
		return lfirst(lr);
	if (!b->grow)
		elog(ERROR, "no bound for a window of %s", text);
	b->texts = lappend(b->texts, pstrdup(text));
	b->refs = lappend(b->refs, b->next_param ? psprintf("$%d", b->next_param++) :
					  psprintf("b._c360_w%d", list_length(b->texts)));
	return llast(b->refs);
}

/* text with each {N days} replaced by that window's bound and {zone} by the zone. */
static char *
render(const char *text, Bounds *b)
{
	StringInfoData s;

	initStringInfo(&s);
	while (*text)
	{
		const char *end = strchr(text, '}');
		char	   *token;

		if (*text != '{' || end == NULL)
		{
			appendStringInfoChar(&s, *text++);
			continue;
		}
		token = pnstrdup(text + 1, end - text - 1);
		appendStringInfoString(&s, strcmp(token, "zone") == 0 ? b->zone :
							   bound_ref(b, interval_text(parse_interval(token))));
		text = end + 1;
	}
	return s.data;
}

/*
 * Each entry of cols that keep accepts, as fmt makes it of the separator (%1$s: empty
 * before the first) and its quoted name (%2$s, which fmt may repeat).
 */
static void
append_each(StringInfo s, List *cols, bool (*keep) (const C360Trait *), const char *fmt,
			const char *sep)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *q = quote_identifier(t->name);

		if (!keep(t))
			continue;
		appendStringInfo(s, fmt, first ? "" : sep, q);
		first = false;
	}
}

/* The profile's columns: customer_id, the entries, next_change_at; each prefixed. */
static void
append_profile_columns(StringInfo s, List *cols, const char *prefix)
{
	appendStringInfo(s, "%scustomer_id", prefix);
	append_each(s, cols, is_any, psprintf("%%1$s, %s%%2$s", prefix), "");
	appendStringInfo(s, ", %snext_change_at", prefix);
}

/* value COALESCEd with the entry's fill */
static char *
filled(const C360Trait *t, const char *value)
{
	return t->fill ? psprintf("COALESCE(%s, %s)", value, t->fill) : pstrdup(value);
}

/*
 * A column's aggregate, filtered by cond (NULL: every row).  first/last values break
 * ties by the input's key, descending, as the article's last_order_status does.
 */
void
c360_column_aggregate(StringInfo s, const C360Trait *t, const char *cond)
{
	bool		first = strcmp(t->func, "first") == 0;

	if (strcmp(t->func, "count_star") == 0)
		appendStringInfoString(s, "count(*)");
	else if (strcmp(t->func, "count_distinct") == 0)
		appendStringInfo(s, "count(DISTINCT (%s))", t->arg);
	else if (strcmp(t->func, "mode") == 0)
		appendStringInfo(s, "mode() WITHIN GROUP (ORDER BY (%s))", t->arg);
	else if (first)
		appendStringInfo(s, "(array_agg((%s) ORDER BY (%s)%s, %s DESC)", t->arg, t->order_by,
						 t->descending ? " DESC" : "", key_column(t->input));
	else if ((strcmp(t->func, "min") == 0 || strcmp(t->func, "max") == 0) &&
			 (t->type == NULL || strcmp(t->type, "numeric") == 0 ||
			  strcmp(t->type, "double precision") == 0 || strcmp(t->type, "real") == 0))

		/*
		 * Equal values may differ in how they print (numeric 87.35 and 87.350, float 0
		 * and -0): which one min() keeps depends on the order rows come in, so the order
		 * is fixed, by key.  Other types' equal values are the same bytes.
		 */
		appendStringInfo(s, "%s((%s) ORDER BY %s)", t->func, t->arg, key_column(t->input));
	else
		appendStringInfo(s, "%s((%s))", t->func, t->arg);
	if (cond != NULL)
		appendStringInfo(s, " FILTER (WHERE %s)", cond);
	if (first)
		appendStringInfoString(s, ")[1]");
}

/*
 * Which rows of the input a column counts: present (a customer with no row meets one
 * NULL-extended row), passing the filter, and later than bound (NULL: no window, or one
 * the statement's join applies already).  NULL when that is every row.
 */
char *
c360_column_condition(const C360Trait *t, bool outer_join, const char *bound)
{
	StringInfoData c;

	initStringInfo(&c);
	if (outer_join)
		appendStringInfo(&c, "%s IS NOT NULL", key_column(t->input));
	if (t->filter)
		appendStringInfo(&c, "%s(%s)", c.len ? " AND " : "", t->filter);
	if (bound)
		appendStringInfo(&c, "%si.%s > %s", c.len ? " AND " : "",
						 quote_identifier(t->time_column), bound);
	return c.len ? c.data : NULL;
}

/*
 * One input's aggregates over the customers' rows, as CTE agg_<input>(_c360_id, one
 * column per entry).  from reads the rows as i, id is the customer's; a window that
 * from applies already (common) is not filtered again.
 */
static void
append_input_aggregates(StringInfo s, List *cols, C360InputId input, const char *id,
						const char *from, Bounds *b, const char *common)
{
	ListCell   *lc;

	appendStringInfo(s, "agg_%s AS (\n  SELECT %s AS _c360_id", c360_inputs[input].name, id);
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *bound = NULL;

		if (t->input != input || !is_aggregate(t) || (common && is_latest(t)))
			continue;
		if (t->lookback && (common == NULL || strcmp(common, interval_text(t->lookback)) != 0))
			bound = bound_ref(b, interval_text(t->lookback));
		appendStringInfoString(s, ",\n         ");
		c360_column_aggregate(s, t, c360_column_condition(t, false, bound));
		appendStringInfo(s, " AS %s", quote_identifier(t->name));
	}
	appendStringInfo(s, "\n  %s\n  GROUP BY %s)", from, id);
}

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

		if (!is_event_count(t))
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
append_event_ctes(StringInfo s, List *cols, const char *src, Bounds *b)
{
	const char *window = interval_text(event_window(cols));

	append_input_aggregates(s, cols, C360_BEHAVIORAL_EVENTS, "r._c360_id",
							psprintf("FROM %s r JOIN c360.behavioral_events i\n"
									 "    ON i.customer_id = r._c360_raw AND i.event_time > %s",
									 src, bound_ref(b, window)), b, window);
	appendStringInfo(s, ",\nlatest AS (\n  SELECT r._c360_id");
	append_each(s, cols, is_latest, "%1$s, max(l.event_time) AS %2$s", "");
	appendStringInfo(s, "\n  FROM %s r CROSS JOIN LATERAL (\n"
					 "    SELECT i.event_time FROM c360.behavioral_events i WHERE i.customer_id = r._c360_raw\n"
					 "    ORDER BY i.event_time DESC LIMIT 1) l\n"
					 "  GROUP BY r._c360_id)", src);
}

/*
 * expiry(_c360_id, _c360_change): when the oldest in-window event of the customers in
 * raw leaves the window, and their event columns next change with time alone.
 */
static void
append_expiry_cte(StringInfo s, List *cols, Bounds *b)
{
	const Interval *window = event_window(cols);

	appendStringInfo(s, "expiry AS (\n"
					 "  SELECT r._c360_id, c360.shift_days(min(e.event_time), %d, %s) AS _c360_change\n"
					 "  FROM raw r CROSS JOIN LATERAL (\n"
					 "    SELECT i.event_time FROM c360.behavioral_events i\n"
					 "    WHERE i.customer_id = r._c360_raw AND i.event_time > %s\n"
					 "    ORDER BY i.event_time LIMIT 1) e\n"
					 "  GROUP BY r._c360_id)", window->day, b->zone,
					 bound_ref(b, interval_text(window)));
}

/* the timed expressions' next change (the least), over columns named as in their text */
static char *
time_change(List *cols, Bounds *b)
{
	List	   *changes = NIL;
	ListCell   *lc;
	StringInfoData s;

	foreach(lc, cols)
		if (((C360Trait *) lfirst(lc))->changes_at)
		changes = lappend(changes, render(((C360Trait *) lfirst(lc))->changes_at, b));
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
 * customer is gone are deleted.
 */
static char *
refresh_full_sql(List *cols, bool bulk)
{
	Bounds	   *b = param_bounds(2);
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfo(&s, "WITH d AS (%s),\n", bulk ? IDS_BULK : IDS_SMALL);
	appendStringInfoString(&s, "dd AS (\n  SELECT d._c360_id, x.recount");
	append_each(&s, cols, is_event, "%1$s, sp.%2$s", "");
	appendStringInfoString(&s, ",\n         CASE WHEN sp.customer_id IS NOT NULL THEN ROW(");
	append_profile_columns(&s, cols, "sp.");
	appendStringInfo(&s, ") END AS stored,\n"
					 "         x.recount OR COALESCE(sp.next_change_at = x.time_change, false) AS lookup,\n"
					 "         CASE WHEN x.time_change IS NULL OR sp.next_change_at < x.time_change\n"
					 "              THEN sp.next_change_at END AS stored_expiry\n"
					 "  FROM d LEFT JOIN c360.customer_360 sp ON sp.customer_id = d._c360_id\n"
					 "  LEFT JOIN unnest(%s::text[]) b(x) ON b.x = d._c360_id\n"
					 "  CROSS JOIN LATERAL (SELECT sp.customer_id IS NULL OR b.x IS NOT NULL AS recount,\n"
					 "    %s AS time_change) x),\n",
					 psprintf("$%d", (int) lengthof(windows) + 3), time_change(cols, b));
	for (C360InputId in = 0; in < C360_BUILTIN_INPUTS; in++)
	{
		const char *c = customer_column(in);

		if (in == C360_BEHAVIORAL_EVENTS || !any_of(cols, in))
			continue;
		append_input_aggregates(&s, cols, in, psprintf("i.%s", c),
								psprintf("FROM c360.%s i WHERE i.%s = ANY($1)",
										 c360_inputs[in].name, c), b, NULL);
		appendStringInfoString(&s, ",\n");
	}
	appendStringInfoString(&s, "looked_up AS (SELECT _c360_id FROM dd WHERE lookup),\n"
						   "raw AS (\n" RAW_OF("looked_up") "),\n"
						   "recounted AS (SELECT raw.* FROM raw JOIN dd USING (_c360_id) WHERE dd.recount),\n");
	append_event_ctes(&s, cols, "recounted", b);
	appendStringInfoString(&s, ",\n");
	append_expiry_cte(&s, cols, b);
	appendStringInfoString(&s, ",\nbase AS (\n  SELECT c.customer_id");
	append_base_columns(&s, cols);
	appendStringInfoString(&s, ",\n         CASE WHEN dd.lookup THEN expiry._c360_change ELSE dd.stored_expiry END\n"
						   "           AS _c360_expiry,\n"
						   "         dd.stored\n"
						   "  FROM c360.customers c JOIN dd ON dd._c360_id = c.customer_id");
	for (C360InputId in = C360_ORDERS; in < C360_BUILTIN_INPUTS; in++)
		if (any_of(cols, in))
			appendStringInfo(&s, "\n  LEFT JOIN agg_%1$s ON agg_%1$s._c360_id = c.customer_id",
							 c360_inputs[in].name);
	appendStringInfoString(&s, "\n  LEFT JOIN latest ON latest._c360_id = c.customer_id\n"
						   "  LEFT JOIN expiry ON expiry._c360_id = c.customer_id),\n"
						   "fresh AS (\n  SELECT customer_id");
	append_fresh_columns(&s, cols, b);
	appendStringInfo(&s, ",\n         least(_c360_expiry, %s) AS next_change_at, stored\n"
					 "  FROM base),\n"
					 "changed AS (\n  SELECT ", time_change(cols, b));
	append_profile_columns(&s, cols, "f.");
	appendStringInfoString(&s, " FROM fresh f\n  WHERE f.stored IS NULL OR NOT (ROW(");
	append_profile_columns(&s, cols, "f.");
	appendStringInfoString(&s, ") *= f.stored)),\n"
						   "written AS (\n  INSERT INTO c360.customer_360 AS p (");
	append_profile_columns(&s, cols, "");
	appendStringInfoString(&s, ", profile_updated_at)\n"
						   "  SELECT changed.*, clock_timestamp() FROM changed\n"
						   "  ON CONFLICT (customer_id) DO UPDATE SET\n    ");
	append_each(&s, cols, is_any, "%1$s%2$s = excluded.%2$s", ",\n    ");
	appendStringInfoString(&s, ",\n    next_change_at = excluded.next_change_at,\n"
						   "    profile_updated_at = excluded.profile_updated_at\n"
						   "  RETURNING customer_id),\n"
						   "gone AS (\n"
						   "  DELETE FROM c360.customer_360 p WHERE p.customer_id = ANY($1)\n"
						   "    AND NOT EXISTS (SELECT 1 FROM c360.customers c WHERE c.customer_id = p.customer_id)\n"
						   "  RETURNING customer_id)\n"
						   "SELECT customer_id FROM written UNION ALL SELECT customer_id FROM gone");
	return s.data;
}

/* Whether an input other than the events has aggregate entries: it gets agg_<input>. */
static bool
any_of(List *cols, C360InputId input)
{
	ListCell   *lc;

	foreach(lc, cols)
		if (((C360Trait *) lfirst(lc))->input == input && is_aggregate(lfirst(lc)))
		return true;
	return false;
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
		if (is_value(t))
			appendStringInfo(s, "c.%s AS %s", quote_identifier(t->arg), q);
		else if (is_latest(t))
			appendStringInfo(s, "CASE WHEN dd.recount THEN latest.%s ELSE dd.%s END AS %s", q, q, q);
		else if (is_event(t))
			appendStringInfo(s, "CASE WHEN dd.recount THEN %s ELSE dd.%s END AS %s",
							 filled(t, psprintf("agg_behavioral_events.%s", q)), q, q);
		else if (is_aggregate(t))
			appendStringInfo(s, "%s AS %s",
							 filled(t, psprintf("agg_%s.%s", c360_inputs[t->input].name, q)), q);
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

		if (is_expression(t))
			appendStringInfo(s, ",\n         %s AS %s", render(t->arg, b),
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
refresh_part_sql(List *cols, bool events, bool bulk)
{
	Bounds	   *b = param_bounds(2);
	bool		(*set) (const C360Trait *) = events ? is_event_or_timed : is_timed;
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfo(&s, "WITH d AS (%s),\nraw AS (\n" RAW_OF("d") "),\n",
					 bulk ? IDS_BULK : IDS_SMALL);
	if (events)
	{
		append_event_ctes(&s, cols, "raw", b);
		appendStringInfoString(&s, ",\n");
	}
	append_expiry_cte(&s, cols, b);
	appendStringInfoString(&s, ",\nfresh AS (\n  SELECT p.customer_id");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *q = quote_identifier(t->name);

		if (is_timed(t))
			appendStringInfo(&s, ",\n         %s AS %s", render(t->arg, b), q);
		else if (events && is_latest(t))
			appendStringInfo(&s, ",\n         latest.%s", q);
		else if (events && is_event(t))
			appendStringInfo(&s, ",\n         %s AS %s",
							 filled(t, psprintf("agg_behavioral_events.%s", q)), q);
	}
	appendStringInfo(&s, ",\n         least(expiry._c360_change, %s) AS next_change_at\n"
					 "  FROM c360.customer_360 p JOIN d ON d._c360_id = p.customer_id\n",
					 time_change(cols, b));
	if (events)
		appendStringInfoString(&s, "  LEFT JOIN agg_behavioral_events ON agg_behavioral_events._c360_id = p.customer_id\n"
							   "  LEFT JOIN latest ON latest._c360_id = p.customer_id\n");
	appendStringInfoString(&s, "  LEFT JOIN expiry ON expiry._c360_id = p.customer_id),\n"
						   "written AS (\n  UPDATE c360.customer_360 p SET\n    ");
	append_each(&s, cols, set, "%1$s%2$s = f.%2$s", ", ");
	appendStringInfoString(&s, ", next_change_at = f.next_change_at,\n"
						   "    profile_updated_at = clock_timestamp()\n"
						   "  FROM fresh f\n  WHERE p.customer_id = f.customer_id\n    AND (");
	append_each(&s, cols, set, "%1$sp.%2$s", ", ");
	appendStringInfoString(&s, ", p.next_change_at) IS DISTINCT FROM\n        (");
	append_each(&s, cols, set, "%1$sf.%2$s", ", ");
	appendStringInfoString(&s, ", f.next_change_at)\n  RETURNING p.customer_id)\n"
						   "SELECT customer_id FROM written");
	return s.data;
}

/*
 * The profile rows whose timed expressions a tick changes: their time column lies
 * between the old and the new bound of a window they read ($1 and $2 for windows[0], $3
 * and $4 for windows[1], ...; the lower first: a DST fall-back moves a bound back).
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

		if (!is_timed(t))
			continue;
		tc = quote_identifier(t->time_column);
		for (int w = 0; w < lengthof(windows); w++)
			if (strstr(t->arg, psprintf("{%s}", windows[w])))
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
	return is_latest(t) || is_row_count(t) || is_session_count(t);
}

/*
 * per_session's column for an event column: the batch's new events of one owner and
 * session, each counted once (a session counts when it entered the window).
 */
static char *
session_delta(const C360Trait *t, const char *bound)
{
	char	   *cond;

	if (is_latest(t))
		return "max(event_time)";
	if (strcmp(t->func, "count_distinct") == 0)
		return psprintf("session_id IS NOT NULL AND max(event_time) > %s\n"
						"           AND NOT " SESSION_SEEN_AFTER("%s"), bound, bound);
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
 * The recomputed event traits of the batch's owners: tv(_c360_id, one column per trait),
 * each aggregated over the owner's events, those in the mirror (read as before this
 * statement's insert) and the new ones in ev.
 */
static void
append_trait_recompute(StringInfo s, List *traits, Bounds *b)
{
	const C360Input *in = &c360_inputs[C360_BEHAVIORAL_EVENTS];
	StringInfoData window;
	ListCell   *lc;

	/* when every one has a window on event_time, only the widest is read */
	initStringInfo(&window);
	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);

		if (t->lookback == NULL || strcmp(t->time_column, "event_time") != 0)
		{
			resetStringInfo(&window);
			break;
		}
		appendStringInfo(&window, "%s%s", window.len ? ", " : " AND i.event_time > least(",
						 bound_ref(b, interval_text(t->lookback)));
	}
	if (window.len)
		appendStringInfoChar(&window, ')');
	appendStringInfo(s, ",\nowners AS (SELECT DISTINCT owner AS _c360_id FROM ev),\n"
					 "raw AS (\n" RAW_OF("owners") "),\n"
					 "trows AS (\n"
					 "  SELECT raw._c360_id, i.* FROM raw JOIN c360.behavioral_events i\n"
					 "    ON i.customer_id = raw._c360_raw%s\n"
					 "  UNION ALL\n"
					 "  SELECT owner", window.data);
	for (int c = 0; c < in->ncols; c++)
		appendStringInfo(s, ", %s", quote_identifier(in->cols[c].name));
	appendStringInfoString(s, " FROM ev),\n");
	append_input_aggregates(s, list_copy(traits), C360_BEHAVIORAL_EVENTS, "i._c360_id",
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
 * Owners without a profile row are left to the recount that creates it.  $8.. are the
 * windows' bounds and the zone, then the traits' bounds (*lookbacks, in order).
 */
char *
c360_events_delta_sql(List *traits, List **lookbacks)
{
	List	   *cols = c360_builtin_columns();
	List	   *delta = NIL;
	List	   *recomputed = NIL;
	Bounds	   *b = param_bounds(8);
	const Interval *window = event_window(cols);
	const char *bound = bound_ref(b, interval_text(window));
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
					 "ev AS MATERIALIZED (SELECT ins.*, " OWNER_OF("ins.customer_id") " AS owner FROM ins),\n"
					 "per_session AS (\n  SELECT owner",
					 recomputed || delta ? INSERT_EVENTS_CTES_RETURNING("*") :
					 INSERT_EVENTS_CTES_RETURNING("customer_id, session_id, event_type, event_time"));
	foreach(lc, list_concat_copy(cols, delta))
	{
		C360Trait  *t = lfirst(lc);

		if (!is_event(t))
			continue;
		if (!is_event_delta(t))
			elog(ERROR, "built-in column %s cannot be kept by difference", t->name);
		appendStringInfo(&s, ",\n         %s AS %s",
						 session_delta(t, t->lookback == NULL ? NULL :
									   bound_ref(b, interval_text(t->lookback))),
						 quote_identifier(t->name));
	}
	appendStringInfo(&s, ",\n         min(event_time) FILTER (WHERE event_time > %s) AS _c360_first_in\n"
					 "  FROM ev GROUP BY owner, session_id),\n"
					 "per_owner AS (\n  SELECT owner", bound);
	append_each(&s, cols, is_latest, "%1$s, max(%2$s) AS %2$s", "");
	append_each(&s, cols, is_session_count, "%1$s, count(*) FILTER (WHERE %2$s) AS %2$s", "");
	append_each(&s, list_concat_copy(cols, delta), is_row_count, "%1$s, sum(%2$s)::bigint AS %2$s", "");
	appendStringInfoString(&s, ", min(_c360_first_in) AS _c360_first_in\n"
						   "  FROM per_session GROUP BY owner)");
	if (recomputed)
		append_trait_recompute(&s, recomputed, b);
	appendStringInfoString(&s, "\nUPDATE c360.customer_360 p SET\n  ");
	append_each(&s, cols, is_latest, "%1$s%2$s = greatest(p.%2$s, r.%2$s)", ",\n  ");
	append_each(&s, list_concat_copy(cols, delta), is_event_count, "%1$s,\n  %2$s = p.%2$s + r.%2$s", "");
	foreach(lc, recomputed)
		appendStringInfo(&s, ",\n  %s = %s", quote_identifier(((C360Trait *) lfirst(lc))->name),
						 filled(lfirst(lc), psprintf("tv.%s", quote_identifier(((C360Trait *) lfirst(lc))->name))));
	appendStringInfo(&s, ",\n  next_change_at = least(p.next_change_at, c360.shift_days(r._c360_first_in, %d, %s)),\n"
					 "  profile_updated_at = clock_timestamp()\n"
					 "FROM per_owner r%s\n"
					 "WHERE p.customer_id = r.owner\n  AND (", window->day, b->zone,
					 recomputed ? " JOIN agg_behavioral_events tv ON tv._c360_id = r.owner" : "");
	append_each(&s, list_concat_copy(cols, delta), is_event_count, "%1$sr.%2$s > 0", " OR ");
	append_each(&s, cols, is_latest, "%1$s OR p.%2$s IS NULL OR r.%2$s > p.%2$s", "");
	if (recomputed)
	{
		appendStringInfoString(&s, "\n       OR NOT record_image_eq(ROW(");
		append_each(&s, recomputed, is_any, "%1$sp.%2$s", ", ");
		appendStringInfoString(&s, "), ROW(");
		foreach(lc, recomputed)
			appendStringInfo(&s, "%s%s", foreach_current_index(lc) ? ", " : "",
							 filled(lfirst(lc), psprintf("tv.%s", quote_identifier(((C360Trait *) lfirst(lc))->name))));
		appendStringInfoString(&s, "))");
	}
	appendStringInfoString(&s, ")\nRETURNING p.customer_id");
	*lookbacks = NIL;
	foreach(lc, b->texts)
		if (foreach_current_index(lc) >= lengthof(windows))
			*lookbacks = lappend(*lookbacks, parse_interval(lfirst(lc)));
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

		if (!is_event_count(t))
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
	append_each(&s, cols, is_session_count, "%1$s, count(*) FILTER (WHERE %2$s) AS %2$s", "");
	append_each(&s, cols, is_row_count, "%1$s, sum(%2$s)::bigint AS %2$s", "");
	appendStringInfoString(&s, "\n  FROM per_session GROUP BY owner)\n"
						   "UPDATE c360.customer_360 p SET\n  ");
	append_each(&s, cols, is_event_count, "%1$s%2$s = p.%2$s - r.%2$s", ",\n  ");
	appendStringInfoString(&s, ",\n  profile_updated_at = clock_timestamp()\n"
						   "FROM per_owner r WHERE p.customer_id = r.owner\n"
						   "RETURNING p.customer_id");
	return s.data;
}

/* the window's distinct sessions, counted by the "was it in the window already" probe */
static bool
is_session_count(const C360Trait *t)
{
	return is_event_count(t) && strcmp(t->func, "count_distinct") == 0 &&
		strcmp(t->arg, "session_id") == 0;
}

/* a count of the window's (or all) rows */
static bool
is_row_count(const C360Trait *t)
{
	return is_event_count(t) &&
		(strcmp(t->func, "count_star") == 0 || strcmp(t->func, "count") == 0);
}

static bool
is_event_or_timed(const C360Trait *t)
{
	return is_event(t) || is_timed(t);
}

const char *
c360_profile_statement_name(C360ProfileStatement which)
{
	static const char *const names[] = {"refresh", "refresh behaviour", "refresh time",
	"tick band", "events by difference", "tick events by difference"};

	return names[which];
}

/*
 * The maintainer's statement for the article's columns (bulk: the form planned for a
 * bulk set), generated once per process from the built-in entries.
 */
const char *
c360_profile_statement(C360ProfileStatement which, bool bulk)
{
	MemoryContext old;

	if (statements[which][bulk] != NULL)
		return statements[which][bulk];
	old = MemoryContextSwitchTo(TopMemoryContext);
	switch (which)
	{
		case C360_REFRESH_FULL:
			statements[which][bulk] = refresh_full_sql(c360_builtin_columns(), bulk);
			break;
		case C360_REFRESH_BEHAVIOUR:
		case C360_REFRESH_TIME:
			statements[which][bulk] = refresh_part_sql(c360_builtin_columns(),
													   which == C360_REFRESH_BEHAVIOUR, bulk);
			break;
		case C360_TICK_BAND:
			statements[which][bulk] = tick_band_sql(c360_builtin_columns());
			break;
		case C360_ROLLUP_INSERT:
			{
				List	   *none;

				statements[which][bulk] = c360_events_delta_sql(NIL, &none);
				break;
			}
		default:
			statements[which][bulk] = rollup_shift_sql(c360_builtin_columns());
	}
	MemoryContextSwitchTo(old);
	return statements[which][bulk];
}

/*
 * The maintainer's statements' window bounds as of the clock (as_of - each of
 * windows[], in the profile's zone) and the zone, into args; returns how many.
 */
int
c360_profile_bounds(const C360Clock *clock, Datum *args, Oid *types)
{
	for (int w = 0; w < lengthof(windows); w++)
	{
		Interval   *span = parse_interval(windows[w]);

		types[w] = TIMESTAMPTZOID;
		args[w] = TimestampTzGetDatum(c360_timestamp_shift(clock->as_of, span, true,
														   clock->time_zone));
	}
	types[lengthof(windows)] = TEXTOID;
	args[lengthof(windows)] = CStringGetTextDatum(clock->time_zone);
	return lengthof(windows) + 1;
}

/*
 * The reference: every column of cols the way its definition reads, over the whole of
 * each input (events attributed through the winning identity links, as the defining
 * query does), each window's bound c360.window_start($1, lookback).  Columns:
 * customer_id and cols, in order.
 */
static char *
reference_sql(List *cols)
{
	Bounds	   *b = palloc0(sizeof(Bounds));
	StringInfoData body;
	StringInfoData bounds;
	ListCell   *lc;

	b->grow = true;
	b->zone = "c360.time_zone()";
	initStringInfo(&body);
	for (C360InputId in = 0; in < c360_ninputs; in++)
	{
		if (!any_of(cols, in))
			continue;
		append_input_aggregates(&body, cols, in,
								in == C360_BEHAVIORAL_EVENTS ? "i._c360_id" : psprintf("i.%s", customer_column(in)),
								psprintf("FROM %s i CROSS JOIN b", in == C360_BEHAVIORAL_EVENTS ?
										 "attributed_events" : psprintf("c360.%s", c360_inputs[in].name)),
								b, NULL);
		appendStringInfoString(&body, ",\n");
	}
	appendStringInfoString(&body, "base AS (\n  SELECT c.customer_id");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (is_value(t))
			appendStringInfo(&body, ",\n         c.%s AS %s", quote_identifier(t->arg),
							 quote_identifier(t->name));
		else if (is_aggregate(t))
			appendStringInfo(&body, ",\n         %s AS %s",
							 filled(t, psprintf("agg_%s.%s", c360_inputs[t->input].name,
												quote_identifier(t->name))),
							 quote_identifier(t->name));
	}
	appendStringInfoString(&body, "\n  FROM c360.customers c");
	for (C360InputId in = 0; in < c360_ninputs; in++)
		if (any_of(cols, in))
			appendStringInfo(&body, "\n  LEFT JOIN agg_%1$s ON agg_%1$s._c360_id = c.customer_id",
							 c360_inputs[in].name);
	appendStringInfoString(&body, ")\nSELECT customer_id");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		appendStringInfo(&body, ",\n       %s%s", is_expression(t) ? render(t->arg, b) : "",
						 is_expression(t) ? psprintf(" AS %s", quote_identifier(t->name)) :
						 quote_identifier(t->name));
	}
	appendStringInfoString(&body, "\nFROM base CROSS JOIN b");

	initStringInfo(&bounds);
	foreach(lc, b->texts)
		appendStringInfo(&bounds, "%sc360.window_start($1, %s::interval) AS _c360_w%d",
						 foreach_current_index(lc) ? ", " : "",
						 quote_literal_cstr(lfirst(lc)), foreach_current_index(lc) + 1);
	return psprintf("WITH b AS (SELECT %s),\n"
					"resolved AS (\n"
					"  SELECT DISTINCT ON (identity_value) identity_value, customer_id\n"
					"  FROM c360.identity_graph\n"
					"  ORDER BY identity_value, created_at DESC NULLS LAST, identity_id DESC),\n"
					"attributed_events AS (\n"
					"  SELECT COALESCE(ri.customer_id, e.customer_id) AS _c360_id, e.*\n"
					"  FROM c360.behavioral_events e\n"
					"  LEFT JOIN resolved ri ON ri.identity_value = e.customer_id),\n%s",
					bounds.len ? bounds.data : "", body.data);
}

/* The article's columns and the given traits, as one list of entries. */
static List *
with_traits(List *traits)
{
	return list_concat_copy(c360_builtin_columns(), traits);
}

/*
 * reference_profile($1)'s query: the article's columns (article_only) or every column
 * of the catalog, the traits given included.
 */
char *
c360_reference_sql(List *traits, bool article_only)
{
	return reference_sql(article_only ? c360_builtin_columns() : with_traits(traits));
}

/*
 * verify($1)'s query: every difference between the profile and the reference, column by
 * column, compared as text so that even a numeric's scale counts.  A missing or extra
 * profile row is one row, column_name 'customer_id'.  traits: the ready ones.  Versions
 * 0.5 and 0.6 ask for the traits' differences alone (traits_only), on rows in both.
 */
char *
c360_verify_sql(List *traits, bool traits_only)
{
	List	   *cols = traits_only ? traits : with_traits(traits);
	StringInfoData s;
	ListCell   *lc;

	if (cols == NIL)
		return "SELECT NULL::text, NULL::text, NULL::text, NULL::text WHERE false";

	initStringInfo(&s);
	appendStringInfo(&s, "SELECT COALESCE(p.customer_id, r.customer_id) AS customer_id,\n"
					 "       v.column_name, v.profile_value, v.reference_value\n"
					 "FROM c360.customer_360 p\n"
					 "FULL JOIN (\n%s\n) r ON r.customer_id = p.customer_id\n"
					 "CROSS JOIN LATERAL (VALUES\n"
					 "    ('customer_id', p.customer_id, r.customer_id)", reference_sql(cols));
	foreach(lc, cols)
	{
		const char *name = ((C360Trait *) lfirst(lc))->name;

		appendStringInfo(&s, ",\n    (%s, p.%s::text, r.%s::text)", quote_literal_cstr(name),
						 quote_identifier(name), quote_identifier(name));
	}
	appendStringInfoString(&s, "\n) AS v(column_name, profile_value, reference_value)\n");
	if (traits_only)
		appendStringInfoString(&s, "WHERE p.customer_id IS NOT NULL AND r.customer_id IS NOT NULL\n"
							   "  AND v.column_name <> 'customer_id'\n"
							   "  AND v.profile_value IS DISTINCT FROM v.reference_value");
	else
		appendStringInfoString(&s, "WHERE (p.customer_id IS NULL OR r.customer_id IS NULL) = (v.column_name = 'customer_id')\n"
							   "  AND v.profile_value IS DISTINCT FROM v.reference_value\n"
							   "ORDER BY 1, 2");
	return s.data;
}

/*
 * The rows of an input whose customer lies in [$2, $3], as i with _c360_id the
 * customer: read through the input's customer index, so that the chunks of a backfill
 * together read each input about once.  An event's customer is its owner: its own raw id
 * in the range (unless linked elsewhere), or an identity value linked to a customer in
 * the range.
 */
static char *
range_rows(C360InputId input)
{
	if (input == C360_BEHAVIORAL_EVENTS)
		return "(SELECT COALESCE(ir.customer_id, e.customer_id) AS _c360_id, e.*\n"
			"     FROM c360.behavioral_events e\n"
			"     LEFT JOIN c360.identity_resolved ir ON ir.identity_value = e.customer_id\n"
			"     WHERE e.customer_id >= $2 AND e.customer_id <= $3\n"
			"   UNION ALL\n"
			"   SELECT ir.customer_id, e.*\n"
			"     FROM c360.identity_resolved ir\n"
			"     JOIN c360.behavioral_events e ON e.customer_id = ir.identity_value\n"
			"     WHERE ir.customer_id >= $2 AND ir.customer_id <= $3\n"
			"       AND NOT (ir.identity_value >= $2 AND ir.identity_value <= $3)) i";
	return psprintf("(SELECT i.%1$s AS _c360_id, i.* FROM c360.%2$s i\n"
					"     WHERE i.%1$s >= $2 AND i.%1$s <= $3) i",
					customer_column(input), c360_inputs[input].name);
}

/*
 * One chunk of a trait backfill: the traits' values for the customers in $1 (distinct,
 * in customer_id order: $2 the first, $3 the last), each input's traits aggregated over
 * its rows in that range, and one write per profile row whose values differ (by binary
 * image).  $4.. are the windows' bounds, whose lookbacks *lookbacks returns in order.
 */
char *
c360_backfill_sql(List *traits, List **lookbacks)
{
	Bounds	   *b = palloc0(sizeof(Bounds));
	StringInfoData s;
	ListCell   *lc;

	b->grow = true;
	b->next_param = 4;
	initStringInfo(&s);
	appendStringInfoString(&s, "WITH d AS (SELECT x AS _c360_id FROM unnest($1::text[]) x),\n");
	for (C360InputId in = 0; in < c360_ninputs; in++)
	{
		if (!any_of(traits, in))
			continue;
		append_input_aggregates(&s, traits, in, "i._c360_id",
								psprintf("FROM %s", range_rows(in)), b, NULL);
		appendStringInfoString(&s, ",\n");
	}
	appendStringInfoString(&s, "v AS (\n  SELECT d._c360_id");
	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);

		appendStringInfo(&s, ",\n         %s AS %s",
						 filled(t, psprintf("agg_%s.%s", c360_inputs[t->input].name,
											quote_identifier(t->name))),
						 quote_identifier(t->name));
	}
	appendStringInfoString(&s, "\n  FROM d");
	for (C360InputId in = 0; in < c360_ninputs; in++)
		if (any_of(traits, in))
			appendStringInfo(&s, "\n  LEFT JOIN agg_%1$s ON agg_%1$s._c360_id = d._c360_id",
							 c360_inputs[in].name);
	appendStringInfoString(&s, ")\nUPDATE c360.customer_360 p SET ");
	append_each(&s, traits, is_any, "%1$s%2$s = v.%2$s", ", ");
	appendStringInfoString(&s, ", profile_updated_at = clock_timestamp()\n"
						   "FROM v WHERE p.customer_id = v._c360_id\n  AND NOT record_image_eq(ROW(");
	append_each(&s, traits, is_any, "%1$sp.%2$s", ", ");
	appendStringInfoString(&s, "), ROW(");
	append_each(&s, traits, is_any, "%1$sv.%2$s", ", ");
	appendStringInfoString(&s, "))\nRETURNING p.customer_id");
	*lookbacks = NIL;
	foreach(lc, b->texts)
		*lookbacks = lappend(*lookbacks, parse_interval(lfirst(lc)));
	return s.data;
}
