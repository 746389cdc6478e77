/*-------------------------------------------------------------------------
 * change_parts.c
 *	  next_change_at's parts (docs/ARCHITECTURE.md, "next_change_at and its parts";
 *	  sql/customer360--0.10--0.11.sql).  A profile row keeps apart
 *
 *	    article_change_at           the article's columns' next change (the stage
 *	                                crossing a window, the oldest event of the last
 *	                                30 days leaving it)
 *	    <input>_traits_change_at    per input with a windowed trait: when the earliest
 *	                                row that counts in one of those traits leaves its
 *	                                window
 *	    traits_change_at            the least of the inputs' parts
 *
 *	  and next_change_at is the least of all.  Each statement recomputes only the parts
 *	  of what it read and takes the others as stored, so a part that rises (a row
 *	  deleted, re-timed, filtered out) never needs the others looked up.  Here: the
 *	  pieces of SQL that compute and write the traits' parts.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/value.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "core/clock.h"
#include "core/columns_sql.h"
#include "core/spi.h"
#include "core/traits.h"

/*
 * Whether c360.customer_360 keeps the parts (version 0.11 on).  The library serves every
 * version: before 0.11, next_change_at is the article's part alone.
 */
bool
c360_parts_known(void)
{
	return c360_column_known("customer_360", "article_change_at");
}

/* The column of an input's part; named as c360._column_catalog_sync() names it. */
const char *
c360_part_column(C360InputId input)
{
	return quote_identifier(psprintf("%s_traits_change_at", c360_inputs[input].name));
}

/* Whether a trait has a part: a user's trait with a window. */
static bool
has_part(const C360Trait *t)
{
	return !t->builtin && t->lookback != NULL;
}

/* Whether some of the traits over the input have a part. */
bool
c360_input_has_part(List *traits, C360InputId input)
{
	return c360_col_any(traits, input, has_part);
}

/* The inputs with a part (a column), of the catalog's traits, as an integer list. */
List *
c360_parted_inputs(List *traits)
{
	List	   *inputs = NIL;
	ListCell   *lc;

	foreach(lc, traits)
		if (has_part(lfirst(lc)))
		inputs = list_append_unique_int(inputs, ((C360Trait *) lfirst(lc))->input);
	return inputs;
}

/*
 * An input's part as an aggregate over its rows (as i): the least, over its windowed
 * traits, of when the earliest row that counts leaves the trait's window (the row's time
 * plus the lookback, with Postgres's arithmetic in the profile's zone, as the bounds are
 * computed).  bounds are the windowed traits' bounds, in order; NULL when none has one.
 */
char *
c360_part_aggregate(List *traits, C360InputId input, List *bounds, const char *zone,
					bool outer_join)
{
	StringInfoData s;
	ListCell   *lc;
	List	   *parts = NIL;
	char	   *one;
	int			n = 0;

	initStringInfo(&s);
	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);

		if (t->input != input || !has_part(t))
			continue;
		one = psprintf("c360._shift(min(i.%s) FILTER (WHERE %s), '%s', %s)",
					   quote_identifier(t->time_column),
					   c360_column_condition(t, outer_join, list_nth(bounds, n++)),
					   c360_col_interval_text(t->lookback), zone);
		if (!list_member(parts, makeString(one)))	/* traits alike in window and filter */
			parts = lappend(parts, makeString(one));
	}
	foreach(lc, parts)
		appendStringInfo(&s, "%s%s", foreach_current_index(lc) ? ",\n           " : "", strVal(lfirst(lc)));
	if (parts == NIL)
		return NULL;
	return list_length(parts) == 1 ? s.data : psprintf("least(%s)", s.data);
}

/*
 * The SET items that write the parts of the inputs in `mine` (new: their new values, in
 * order), traits_change_at and next_change_at.  Exact new values (a refresh of every
 * trait over an input) take the other inputs' parts (parted) as stored; lower ones (a
 * backfill adds traits, new events add rows) are least()ed with the stored parts, and
 * traits_change_at with its stored value.  article: the article's part as this statement
 * leaves it (NULL: as stored).
 */
void
c360_append_part_sets(StringInfo s, List *parted, List *mine, List *new, bool lower,
					  const char *article)
{
	StringInfoData all;
	ListCell   *lc;

	initStringInfo(&all);
	if (lower)
		appendStringInfoString(&all, "p.traits_change_at");
	foreach(lc, lower ? mine : parted)
	{
		int			in = lfirst_int(lc);
		const char *col = c360_part_column(in);
		int			at = -1;
		char	   *value;

		for (int k = 0; k < list_length(mine); k++)
			if (list_nth_int(mine, k) == in)
				at = k;
		value = at < 0 ? psprintf("p.%s", col) : list_nth(new, at);

		if (at >= 0)
		{
			if (lower)
				value = psprintf("least(p.%s, %s)", col, value);
			appendStringInfo(s, ",\n    %s = %s", col, value);
		}
		appendStringInfo(&all, "%s%s", all.len ? ", " : "", lower ? (char *) list_nth(new, at) : value);
	}
	appendStringInfo(s, ",\n    traits_change_at = least(%1$s),\n"
					 "    next_change_at = least(%2$s, %1$s)", all.data,
					 article ? article : "p.article_change_at");
}

/* Whether a part of mine changes: for the written-only-when-different test. */
char *
c360_part_changed(List *mine, List *new, bool lower)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	foreach(lc, mine)
	{
		const char *col = c360_part_column(lfirst_int(lc));
		char	   *value = list_nth(new, foreach_current_index(lc));

		appendStringInfo(&s, "%sp.%s IS DISTINCT FROM %s", s.len ? " OR " : "", col,
						 lower ? psprintf("least(p.%s, %s)", col, value) : value);
	}
	return s.len ? s.data : NULL;
}

/*
 * After drop_trait (a part may rise, or lose its column) and the update to 0.11 (no part
 * is computed yet): recompute the input's part for every profile row (the refresh of its
 * traits computes it), then traits_change_at and next_change_at from the parts there are.
 * One statement each over the whole profile, like the rest of drop_trait.  Returns the
 * rows written.
 */
int64
c360_parts_recompute(C360InputId input)
{
	C360Clock	clock;
	List	   *parted;
	List	   *written = NIL;
	StringInfoData s;
	ListCell   *lc;

	SPI_connect();
	c360_clock_lock(true, &clock);
	parted = c360_parted_inputs(c360_traits_load(&clock));
	if (list_member_int(parted, input))
	{
		if (SPI_execute("SELECT customer_id FROM c360.customer_360", false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the profile's customer ids");
		written = c360_traits_recompute(input, c360_collect_ids(NIL), &clock, NIL);
	}
	initStringInfo(&s);
	foreach(lc, parted)
		appendStringInfo(&s, "%sp.%s", s.len ? ", " : "", c360_part_column(lfirst_int(lc)));
	if (s.len == 0)
		appendStringInfoString(&s, "NULL::timestamptz");
	written = c360_exec_bulk(psprintf("UPDATE c360.customer_360 p SET traits_change_at = least(%1$s),\n"
									  "    next_change_at = least(p.article_change_at, %1$s)\n"
									  "WHERE (p.traits_change_at, p.next_change_at) IS DISTINCT FROM\n"
									  "      (least(%1$s), least(p.article_change_at, %1$s))\n"
									  "RETURNING p.customer_id", s.data),
							 0, NULL, NULL, written);
	SPI_finish();
	return list_length(written);
}
