/*-------------------------------------------------------------------------
 * reference.c
 *	  What is generated from the whole profile column catalog, the article's
 *	  columns and the traits alike (src/core/columns.c): the reference query
 *	  reference_profile() returns, verify()'s comparison with it, and one chunk of
 *	  a trait backfill.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "core/columns_sql.h"

/*
 * The reference: every column of cols the way its definition reads, over the whole of
 * each input (events attributed through the winning identity links, as the defining
 * query does), each window's bound c360.window_start($1, lookback).  Columns:
 * customer_id and cols, in order.
 */
static char *
reference_sql(List *cols, List *parted)
{
	Bounds	   *b = palloc0(sizeof(Bounds));
	StringInfoData body;
	StringInfoData bounds;
	ListCell   *lc;

	b->grow = true;
	b->zone = "c360.time_zone()";
	b->parts = parted != NIL;
	initStringInfo(&body);
	for (C360InputId in = 0; in < c360_ninputs; in++)
	{
		if (!c360_col_any_of(cols, in))
			continue;
		c360_col_append_input_aggregates(&body, cols, in,
								in == C360_BEHAVIORAL_EVENTS ? "i._c360_id" : psprintf("i.%s", c360_col_customer_column(in)),
								psprintf("FROM %s i CROSS JOIN b", in == C360_BEHAVIORAL_EVENTS ?
										 "attributed_events" : psprintf("c360.%s", c360_inputs[in].name)),
								b, NULL);
		appendStringInfoString(&body, ",\n");
	}
	appendStringInfoString(&body, "base AS (\n  SELECT c.customer_id");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (c360_col_is_value(t))
			appendStringInfo(&body, ",\n         c.%s AS %s", quote_identifier(t->arg),
							 quote_identifier(t->name));
		else if (c360_col_is_aggregate(t))
			appendStringInfo(&body, ",\n         %s AS %s", c360_col_agg_value(t),
							 quote_identifier(t->name));
	}
	foreach(lc, parted)
		appendStringInfo(&body, ",\n         agg_%s._c360_change AS %s", c360_inputs[lfirst_int(lc)].name,
						 c360_part_column(lfirst_int(lc)));
	appendStringInfoString(&body, "\n  FROM c360.customers c");
	c360_col_append_agg_joins(&body, cols, "c.customer_id");
	appendStringInfoString(&body, ")\nSELECT customer_id");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		appendStringInfo(&body, ",\n       %s%s", c360_col_is_expression(t) ? c360_col_render(t->arg, b) : "",
						 c360_col_is_expression(t) ? psprintf(" AS %s", quote_identifier(t->name)) :
						 quote_identifier(t->name));
	}
	foreach(lc, parted)
		appendStringInfo(&body, ",\n       %s", c360_part_column(lfirst_int(lc)));
	foreach(lc, parted)
		appendStringInfo(&body, "%s%s", foreach_current_index(lc) ? ", " : ",\n       least(",
						 c360_part_column(lfirst_int(lc)));
	if (parted)
		appendStringInfoString(&body, ") AS traits_change_at");
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
	return reference_sql(article_only ? c360_builtin_columns() : with_traits(traits), NIL);
}

/*
 * verify($1)'s query: every difference between the profile and the reference, column by
 * column, compared as text so that even a numeric's scale counts.  A missing or extra
 * profile row is one row, column_name 'customer_id'.  traits: the ready ones.  Versions
 * 0.5 and 0.6 ask for the traits' differences alone (traits_only), on rows in both.
 * parted: the inputs whose parts of next_change_at are compared too (every windowed
 * trait ready), and then next_change_at with the least of its parts.
 */
char *
c360_verify_sql(List *traits, bool traits_only, List *parted)
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
					 "    ('customer_id', p.customer_id, r.customer_id)", reference_sql(cols, parted));
	foreach(lc, cols)
	{
		const char *name = ((C360Trait *) lfirst(lc))->name;

		appendStringInfo(&s, ",\n    (%s, p.%s::text, r.%s::text)", quote_literal_cstr(name),
						 quote_identifier(name), quote_identifier(name));
	}
	foreach(lc, parted)
		appendStringInfo(&s, ",\n    (%1$s, p.%2$s::text, r.%2$s::text)",
						 quote_literal_cstr(c360_part_column(lfirst_int(lc))), c360_part_column(lfirst_int(lc)));
	if (parted)
		appendStringInfoString(&s, ",\n    ('traits_change_at', p.traits_change_at::text, r.traits_change_at::text),\n"
							   "    ('next_change_at', p.next_change_at::text,\n"
							   "     least(p.article_change_at, p.traits_change_at)::text)");
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
					c360_col_customer_column(input), c360_inputs[input].name);
}

/*
 * One chunk of a trait backfill: the traits' values for the customers in $1 (distinct,
 * in customer_id order: $2 the first, $3 the last), each input's traits aggregated over
 * its rows in that range, and one write per profile row whose values differ (by binary
 * image).  $4 is the profile's zone, $5.. the windows' bounds, whose lookbacks
 * *lookbacks returns in order.  With parts (0.11 on), each input's part of next_change_at
 * comes with its aggregates, and only lowers the stored one: the traits are new.
 */
char *
c360_backfill_sql(List *traits, bool parts, List **lookbacks)
{
	Bounds	   *b = palloc0(sizeof(Bounds));
	List	   *parted = parts ? c360_parted_inputs(traits) : NIL;
	StringInfoData s;
	ListCell   *lc;

	b->grow = true;
	b->parts = parts;
	b->zone = "$4";
	b->next_param = 5;
	initStringInfo(&s);
	appendStringInfoString(&s, "WITH d AS (SELECT x AS _c360_id FROM unnest($1::text[]) x),\n");
	for (C360InputId in = 0; in < c360_ninputs; in++)
	{
		if (!c360_col_any_of(traits, in))
			continue;
		/* in byte order (C360_BYTE_ORDER): bench/traits.sh, about 3% of a chunk */
		c360_col_append_input_aggregates(&s, traits, in, "i._c360_id" C360_BYTE_ORDER,
								psprintf("FROM %s", range_rows(in)), b, NULL);
		appendStringInfoString(&s, ",\n");
	}
	appendStringInfoString(&s, "v AS (\n  SELECT d._c360_id");
	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);

		appendStringInfo(&s, ",\n         %s AS %s", c360_col_agg_value(t), quote_identifier(t->name));
	}
	foreach(lc, parted)
		appendStringInfo(&s, ",\n         agg_%1$s._c360_change AS _c360_change_%1$s",
						 c360_inputs[lfirst_int(lc)].name);
	appendStringInfoString(&s, "\n  FROM d");
	/* joined in byte order too: a clause between two collations gets no hash or merge join */
	c360_col_append_agg_joins(&s, traits, "d._c360_id" C360_BYTE_ORDER);
	appendStringInfoString(&s, ")\n");
	/* the range lets the planner read only the chunk's profile rows, not all of them */
	c360_col_append_trait_update(&s, traits, "p.customer_id >= $2 AND p.customer_id <= $3",
								 parted, true);
	*lookbacks = NIL;
	foreach(lc, b->texts)
		*lookbacks = lappend(*lookbacks, c360_col_parse_interval(lfirst(lc)));
	return s.data;
}
