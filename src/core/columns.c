/*-------------------------------------------------------------------------
 * columns.c
 *	  The profile column catalog's built-in entries, the article's columns, as data
 *	  (docs/ARCHITECTURE.md, "The profile column catalog"), and the pieces every
 *	  statement generated from the catalog is made of (src/core/columns_sql.h):
 *	  src/core/profile_sql.c makes the maintainer's statements of them,
 *	  src/core/reference.c the reference, verify() and the trait backfill.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "core/columns_sql.h"

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

const char *const c360_windows[C360_NWINDOWS] = {"30 days", "90 days", "365 days"};


static List *builtin_list;

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
			t->lookback = c360_col_parse_interval(b->lookback);
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


bool
c360_col_is_value(const C360Trait *t)
{
	return strcmp(t->func, "value") == 0;
}

bool
c360_col_is_expression(const C360Trait *t)
{
	return strcmp(t->func, "expression") == 0;
}

/*
 * Each window's bound as of the clock (as_of - lookback in the profile's zone), the
 * lookbacks in order, into args and types; returns how many.
 */
int
c360_window_args(List *lookbacks, const C360Clock *clock, Datum *args, Oid *types)
{
	ListCell   *lc;

	foreach(lc, lookbacks)
	{
		types[foreach_current_index(lc)] = TIMESTAMPTZOID;
		args[foreach_current_index(lc)] =
			TimestampTzGetDatum(c360_timestamp_shift(clock->as_of, lfirst(lc), true,
													 clock->time_zone));
	}
	return list_length(lookbacks);
}

bool
c360_col_is_aggregate(const C360Trait *t)
{
	return !c360_col_is_value(t) && !c360_col_is_expression(t);
}

/* An expression that time alone changes: it reads a window's bound. */
bool
c360_col_is_timed(const C360Trait *t)
{
	return c360_col_is_expression(t) && strchr(t->arg, '{') != NULL;
}

/*
 * The latest event's time, read through the (customer, time) index: the hot path never
 * reads an event history whole.
 */
bool
c360_col_is_latest(const C360Trait *t)
{
	return t->input == C360_BEHAVIORAL_EVENTS && strcmp(t->func, "max") == 0 &&
		t->filter == NULL && t->lookback == NULL && strcmp(t->arg, "event_time") == 0;
}

bool
c360_col_is_event(const C360Trait *t)
{
	return t->input == C360_BEHAVIORAL_EVENTS && c360_col_is_aggregate(t);
}

bool
c360_col_is_event_count(const C360Trait *t)
{
	return c360_col_is_event(t) && !c360_col_is_latest(t);
}

bool
c360_col_is_any(const C360Trait *t)
{
	return true;
}

/*
 * A window's key, and its literal in generated SQL: the same whatever IntervalStyle the
 * session has.
 */
char *
c360_col_interval_text(const Interval *span)
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

Interval *
c360_col_parse_interval(const char *text)
{
	return DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(text),
												 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

char *
c360_col_key_column(C360InputId input)
{
	return psprintf("i.%s",
					quote_identifier(c360_inputs[input].cols[c360_inputs[input].key_col].name));
}

const char *
c360_col_customer_column(C360InputId input)
{
	return quote_identifier(c360_inputs[input].cols[c360_inputs[input].customer_col].name);
}

/*
 * The event mirror's rows (i) of the raw ids in CTE src (rows _c360_id, _c360_raw), joined
 * to src as alias.  For a batch, one index scan reads them all (a bitmap, in block order),
 * not one scan per raw id: a batch's owners' events share pages, and a thousand index
 * scans restarted cost more than the rows (bench/traits.sh: events with ten traits 0.657x
 * to 0.702x).  A bulk statement (a rebuild's chunk, a snapshot's maintainer) leaves the
 * join to the planner, which sees its size: an array of every raw id there was not
 * measured.
 */
char *
c360_col_events_of(const char *src, const char *alias, bool bulk)
{
	return psprintf("c360.behavioral_events i JOIN %1$s%3$s ON %2$s._c360_raw = i.customer_id%4$s",
					src, alias, strcmp(src, alias) == 0 ? "" : psprintf(" %s", alias),
					bulk ? "" : psprintf("\n    AND i.customer_id = ANY ((SELECT array_agg(_c360_raw) FROM %s)::text[])", src));
}

/* The maintainer's bounds: c360_windows[] as $first.., and the zone after them. */
Bounds *
c360_col_param_bounds(int first)
{
	Bounds	   *b = palloc0(sizeof(Bounds));

	for (int w = 0; w < C360_NWINDOWS; w++)
	{
		b->texts = lappend(b->texts, c360_col_interval_text(c360_col_parse_interval(c360_windows[w])));
		b->refs = lappend(b->refs, psprintf("$%d", first + w));
	}
	b->zone = psprintf("$%d", first + (int) C360_NWINDOWS);
	b->next_param = first + (int) C360_NWINDOWS + 1;	/* for callers that let it grow */
	return b;
}

const char *
c360_col_bound_ref(Bounds *b, const char *text)
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
char *
c360_col_render(const char *text, Bounds *b)
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
							   c360_col_bound_ref(b, c360_col_interval_text(c360_col_parse_interval(token))));
		text = end + 1;
	}
	return s.data;
}

/*
 * Each entry of cols that keep accepts, as fmt makes it of the separator (%1$s: empty
 * before the first) and its quoted name (%2$s, which fmt may repeat).
 */
void
c360_col_append_each(StringInfo s, List *cols, bool (*keep) (const C360Trait *), const char *fmt,
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

/* The profile's columns: customer_id, the entries, the article's part; each prefixed. */
void
c360_col_append_profile_columns(StringInfo s, List *cols, const char *prefix, bool parts)
{
	appendStringInfo(s, "%scustomer_id", prefix);
	c360_col_append_each(s, cols, c360_col_is_any, psprintf("%%1$s, %s%%2$s", prefix), "");
	appendStringInfo(s, ", %s%s", prefix, c360_col_article(parts));
}

/*
 * The column that holds the article's part of next_change_at: its own from 0.11 on
 * (src/core/change_parts.c), next_change_at itself before.
 */
const char *
c360_col_article(bool parts)
{
	return parts ? "article_change_at" : "next_change_at";
}

/*
 * The statement's last part for traits computed in CTE v (v._c360_id, one column per
 * trait, and v._c360_change_<input> per input of theirs with a part): an UPDATE of the
 * profile rows whose values or parts differ (values by binary image, so that a numeric's
 * scale counts, as verify() sees it), returning the customers written.  range, unless
 * NULL, is a further condition on p.  parted: the inputs with a part (NIL before 0.11);
 * lower: v's parts only lower the stored ones (src/core/change_parts.c).
 */
void
c360_col_append_trait_update(StringInfo s, List *traits, const char *range, List *parted,
							 bool lower)
{
	List	   *mine = NIL;
	List	   *new = NIL;
	ListCell   *lc;
	char	   *changed;

	foreach(lc, parted)
		if (c360_input_has_part(traits, lfirst_int(lc)))
		{
			mine = lappend_int(mine, lfirst_int(lc));
			new = lappend(new, psprintf("v._c360_change_%s", c360_inputs[lfirst_int(lc)].name));
		}
	changed = c360_part_changed(mine, new, lower);
	appendStringInfoString(s, "UPDATE c360.customer_360 p SET ");
	c360_col_append_each(s, traits, c360_col_is_any, "%1$s%2$s = v.%2$s", ", ");
	if (mine != NIL)
		c360_append_part_sets(s, parted, mine, new, lower, NULL);
	appendStringInfoString(s, ", profile_updated_at = clock_timestamp()\n"
						   "FROM v WHERE p.customer_id = v._c360_id\n");
	if (range)
		appendStringInfo(s, "  AND %s\n", range);
	/* the parts first: comparing timestamps spares building two records per row */
	appendStringInfo(s, "  AND (%s%sNOT record_image_eq(ROW(", changed ? changed : "",
					 changed ? "\n       OR " : "");
	c360_col_append_each(s, traits, c360_col_is_any, "%1$sp.%2$s", ", ");
	appendStringInfoString(s, "), ROW(");
	c360_col_append_each(s, traits, c360_col_is_any, "%1$sv.%2$s", ", ");
	appendStringInfoString(s, ")))\nRETURNING p.customer_id");
}

/* value COALESCEd with the entry's fill */
char *
c360_col_filled(const C360Trait *t, const char *value)
{
	return t->fill ? psprintf("COALESCE(%s, %s)", value, t->fill) : pstrdup(value);
}

/* An aggregate entry's value from its input's CTE agg_<input>, filled. */
char *
c360_col_agg_value(const C360Trait *t)
{
	return c360_col_filled(t, psprintf("agg_%s.%s", c360_inputs[t->input].name,
							  quote_identifier(t->name)));
}

/* LEFT JOIN each input's agg_<input> CTE (of those cols has aggregates over) on id. */
void
c360_col_append_agg_joins(StringInfo s, List *cols, const char *id)
{
	for (C360InputId in = 0; in < c360_ninputs; in++)
		if (c360_col_any_of(cols, in))
			appendStringInfo(s, "\n  LEFT JOIN agg_%1$s ON agg_%1$s._c360_id = %2$s",
							 c360_inputs[in].name, id);
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
						 t->descending ? " DESC" : "", c360_col_key_column(t->input));
	else if ((strcmp(t->func, "min") == 0 || strcmp(t->func, "max") == 0) &&
			 (t->type == NULL || strcmp(t->type, "numeric") == 0 ||
			  strcmp(t->type, "double precision") == 0 || strcmp(t->type, "real") == 0))

		/*
		 * Equal values may differ in how they print (numeric 87.35 and 87.350, float 0
		 * and -0): which one min() keeps depends on the order rows come in, so the order
		 * is fixed, by key.  Other types' equal values are the same bytes.
		 */
		appendStringInfo(s, "%s((%s) ORDER BY %s)", t->func, t->arg, c360_col_key_column(t->input));
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
		appendStringInfo(&c, "%s IS NOT NULL", c360_col_key_column(t->input));
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
void
c360_col_append_input_aggregates(StringInfo s, List *cols, C360InputId input, const char *id,
						const char *from, Bounds *b, const char *common)
{
	List	   *bounds = NIL;
	ListCell   *lc;

	appendStringInfo(s, "agg_%s AS (\n  SELECT %s AS _c360_id", c360_inputs[input].name, id);
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *bound = NULL;

		if (t->input != input || !c360_col_is_aggregate(t) || (common && c360_col_is_latest(t)))
			continue;
		if (t->lookback && (common == NULL || strcmp(common, c360_col_interval_text(t->lookback)) != 0))
			bound = c360_col_bound_ref(b, c360_col_interval_text(t->lookback));
		appendStringInfoString(s, ",\n         ");
		c360_column_aggregate(s, t, c360_column_condition(t, false, bound));
		appendStringInfo(s, " AS %s", quote_identifier(t->name));
		if (b->parts && t->lookback && !t->builtin)
			bounds = lappend(bounds, (char *) c360_col_bound_ref(b, c360_col_interval_text(t->lookback)));
	}
	if (bounds != NIL)
		appendStringInfo(s, ",\n         %s AS _c360_change",
						 c360_part_aggregate(cols, input, bounds, b->zone, false));
	appendStringInfo(s, "\n  %s\n  GROUP BY %s)", from, id);
}

/* Whether cols have aggregate entries over the input: it gets a CTE agg_<input>. */
bool
c360_col_any_of(List *cols, C360InputId input)
{
	return c360_col_any(cols, input, c360_col_is_aggregate);
}

/* Whether cols have entries over the input that keep says yes to. */
bool
c360_col_any(List *cols, C360InputId input, bool (*keep) (const C360Trait *))
{
	ListCell   *lc;

	foreach(lc, cols)
		if (((C360Trait *) lfirst(lc))->input == input && keep(lfirst(lc)))
		return true;
	return false;
}
