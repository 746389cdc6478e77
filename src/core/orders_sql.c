/*-------------------------------------------------------------------------
 * orders_sql.c
 *	  The maintainer's statement for order changes by difference, generated from
 *	  the profile column catalog's built-in order entries (src/core/columns.c):
 *	  new orders, and updates that keep an order's customer, change the customer's
 *	  order columns by what changed instead of a recompute from all the customer's
 *	  orders (docs/ARCHITECTURE.md, "Orders by difference").
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/value.h"
#include "utils/builtins.h"

#include "core/columns_sql.h"

/*
 * The statement reads, per changed order, its stored image (o_<column>, NULL for a new
 * order) and its new one (n_<column>), as arrays $6.., two per column of the input, in
 * the input's column order; $2..$5 are the windows' bounds and the zone; $1 the customers
 * the batch recomputes in full anyway, which it skips (a difference written and then
 * undone by the recompute, as for an order whose key changed, would touch an unchanged
 * row).  It returns each customer whose row it wrote (true) and each it could not bring
 * up to date exactly (false), which the caller recomputes in full.
 *
 * Per customer, x sums up the batch: new orders (_c360_new), and per entry its part of
 * the change (_d_<entry>).  A difference is exact unless
 *   - an update changed a column that orders the customer's rows (a min, max or first
 *     value's), or lowered a summed amount's scale (a numeric sum keeps the largest scale);
 *   - a change brings or takes away an infinite or NaN summed amount;
 *   - the customer has an order with NULL in the column a first value is ordered by (NULL
 *     sorts first; found through a partial index), or with NULL in an averaged column (an
 *     average divides by the non-NULL count; seen in the stored row: its average is not
 *     sum / count, so that no index names the column and amount updates stay HOT);
 *   - a new order ties the latest one, or an update changed the latest order's first
 *     value (ties go by the key, which the stored row does not hold);
 *   - a new or updated order has another value than the stored most frequent one;
 *   - the customer has no profile row.
 * The most frequent value (mode) is kept where every new order's value is the stored one
 * and no update changes one; elsewhere the customer is recomputed: counting the values
 * takes the customer's rows (bench/orders.sh: counting them here cost more than the
 * recompute; an index on (customer, value) that counts without the rows costs every new
 * order an entry, and a long value does not fit a btree entry).
 */

typedef struct OrderEntries
{
	const C360Trait *count;		/* count(*), which an average divides by */
	const C360Trait *sum;		/* sum(arg) of the averaged column */
	const C360Trait *max;		/* max(order_by) of a first value: the latest order */
	List	   *probe;			/* conditions on an order that make a difference inexact */
} OrderEntries;

static bool
is_order_aggregate(const C360Trait *t)
{
	return t->input == C360_ORDERS && !c360_col_is_expression(t);
}

static bool
is_order_column(const C360Trait *t)
{
	return t->input == C360_ORDERS;
}

static bool
is_order_mode(const C360Trait *t)
{
	return t->input == C360_ORDERS && strcmp(t->func, "mode") == 0;
}

static const char *
order_column(const char *arg)
{
	if (c360_column_by_name(&c360_inputs[C360_ORDERS], arg) < 0)
		elog(ERROR, "order entry over \"%s\": not a column of orders", arg);
	return quote_identifier(arg);
}

static OrderEntries
find_entries(List *cols)
{
	OrderEntries e = {0};
	ListCell   *lc;

	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (t->input != C360_ORDERS || c360_col_is_expression(t))
			continue;
		if (t->filter || t->lookback)
			elog(ERROR, "order entry \"%s\": no difference for a filter or window", t->name);
		if (strcmp(t->func, "count_star") == 0)
			e.count = t;
		else if (strcmp(t->func, "sum") == 0)
			e.sum = t;
		else if (strcmp(t->func, "first") == 0)
			e.probe = lappend(e.probe, psprintf("o.%s IS NULL", order_column(t->order_by)));
	}
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (t->input == C360_ORDERS && strcmp(t->func, "max") == 0)
			e.max = t;
	}
	if (e.count == NULL || e.sum == NULL || e.max == NULL)
		elog(ERROR, "the order entries lack the count, sum or max a difference needs");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (t->input == C360_ORDERS && strcmp(t->func, "avg") == 0 &&
			strcmp(t->arg, e.sum->arg) != 0)
			elog(ERROR, "order entry \"%s\": no sum of its column", t->name);
		if (t->input == C360_ORDERS && strcmp(t->func, "first") == 0 &&
			(!t->descending || strcmp(t->order_by, e.max->arg) != 0))
			elog(ERROR, "order entry \"%s\": not the latest by the max's column", t->name);
	}
	return e;
}

/* x's columns: an entry's part of the change (new orders only, but for a sum) */
static void
append_batch_parts(StringInfo s, List *cols, const char *key)
{
	ListCell   *lc;

	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *q = quote_identifier(t->name);

		if (t->input != C360_ORDERS)
			continue;
		if (strcmp(t->func, "sum") == 0)
			appendStringInfo(s, ",\n         COALESCE(sum(v.n_%1$s), 0) - COALESCE(sum(v.o_%1$s), 0) AS _d_%2$s",
							 order_column(t->arg), q);
		else if (strcmp(t->func, "min") == 0 || strcmp(t->func, "max") == 0)
			appendStringInfo(s, ",\n         %s(v.n_%s) FILTER (WHERE v.o_%s IS NULL) AS _d_%s",
							 t->func, order_column(t->arg), key, q);
		else if (strcmp(t->func, "first") == 0)
			appendStringInfo(s, ",\n         (array_agg(v.n_%1$s ORDER BY v.n_%2$s %3$s, v.n_%4$s DESC)"
							 " FILTER (WHERE v.o_%4$s IS NULL))[1] AS _d_%5$s,\n"
							 "         max(v.o_%2$s) FILTER (WHERE v.o_%4$s IS NOT NULL AND"
							 " v.o_%1$s IS DISTINCT FROM v.n_%1$s) AS _t_%5$s",
							 order_column(t->arg), order_column(t->order_by),
							 t->descending ? "DESC" : "ASC", key, q);
		else if (strcmp(t->func, "mode") == 0)
			appendStringInfo(s, ",\n         array_agg(DISTINCT v.n_%2$s) FILTER (WHERE v.o_%1$s IS NULL AND"
							 " v.n_%2$s IS NOT NULL) AS _d_%3$s",
							 key, order_column(t->arg), q);
	}
}

/*
 * A change is exact when it is a new order or an update that keeps what orders rows, a
 * most frequent value's column and a summed column's scale, brings no NULL to an averaged
 * column, and neither brings nor takes away an infinite or NaN summed value.
 */
static char *
update_exact(List *cols)
{
	StringInfoData s;
	List	   *kept = NIL;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfoString(&s, "true");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (t->input != C360_ORDERS)
			continue;
		if (strcmp(t->func, "min") == 0 || strcmp(t->func, "max") == 0 ||
			strcmp(t->func, "mode") == 0)
			kept = list_append_unique(kept, makeString((char *) order_column(t->arg)));
		else if (strcmp(t->func, "first") == 0)
			kept = list_append_unique(kept, makeString((char *) order_column(t->order_by)));
		else if (strcmp(t->func, "sum") == 0)
			appendStringInfo(&s, " AND COALESCE(scale(v.n_%1$s) >= scale(v.o_%1$s), true)",
							 order_column(t->arg));
	}
	foreach(lc, kept)
		appendStringInfo(&s, " AND v.o_%1$s IS NOT DISTINCT FROM v.n_%1$s", strVal(lfirst(lc)));
	appendStringInfoChar(&s, ')');
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		/* an average divides by the non-NULL values: a new NULL makes it inexact */
		if (t->input == C360_ORDERS && strcmp(t->func, "avg") == 0)
			appendStringInfo(&s, " AND v.n_%s IS NOT NULL", order_column(t->arg));

		/*
		 * A sum is kept by difference only over finite values: -Infinity - -Infinity is
		 * NaN, though the sum of the rows that remain is -Infinity still.
		 */
		if (t->input == C360_ORDERS && strcmp(t->func, "sum") == 0)
			appendStringInfo(&s, " AND COALESCE(v.n_%1$s NOT IN %2$s AND v.o_%1$s NOT IN %2$s, true)",
							 order_column(t->arg), "('Infinity'::numeric, '-Infinity', 'NaN')");
	}
	return s.data;
}

/* n's columns: each order entry's new value from the stored one (_p_) and the change */
static void
append_new_values(StringInfo s, List *cols, OrderEntries *e)
{
	const char *count = psprintf("(s._p_%1$s + s._c360_new)", quote_identifier(e->count->name));
	const char *sum = psprintf("(s._p_%1$s + s._d_%1$s)", quote_identifier(e->sum->name));
	const char *max = quote_identifier(e->max->name);
	ListCell   *lc;

	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);
		const char *q = quote_identifier(t->name);

		if (t->input != C360_ORDERS || c360_col_is_expression(t))
			continue;
		appendStringInfoString(s, ",\n         ");
		if (t == e->count)
			appendStringInfo(s, "%s AS %s", count, q);
		else if (t == e->sum)
			appendStringInfo(s, "%s AS %s", sum, q);
		else if (strcmp(t->func, "avg") == 0)
			appendStringInfo(s, "%s / %s::numeric AS %s", sum, count, q);
		else if (strcmp(t->func, "min") == 0 || strcmp(t->func, "max") == 0)
			appendStringInfo(s, "%1$s(s._p_%2$s, s._d_%2$s) AS %2$s",
							 strcmp(t->func, "min") == 0 ? "least" : "greatest", q);
		else if (strcmp(t->func, "first") == 0)
			appendStringInfo(s, "CASE WHEN s._d_%1$s > s._p_%1$s OR s._p_%1$s IS NULL AND s._d_%1$s IS NOT NULL\n"
							 "              THEN s._d_%2$s ELSE s._p_%2$s END AS %2$s", max, q);
		else if (strcmp(t->func, "mode") == 0)
			appendStringInfo(s, "s._p_%1$s AS %1$s", q);
		else
			elog(ERROR, "order entry \"%s\": no difference for %s", t->name, t->func);
	}
}

/* When a difference is not exact (see the top of this file), as s computes it. */
static char *
exact_sql(List *cols, OrderEntries *e, const char *cust)
{
	StringInfoData s;
	ListCell   *lc;
	const char *max = quote_identifier(e->max->name);

	initStringInfo(&s);
	appendStringInfo(&s, "p.customer_id IS NOT NULL AND x._c360_exact");
	if (e->probe != NIL)
	{
		appendStringInfo(&s, "\n           AND (SELECT true FROM c360.orders o WHERE o.%s = x._c360_id AND (", cust);
		foreach(lc, e->probe)
			appendStringInfo(&s, "%s%s", foreach_current_index(lc) ? " OR " : "",
							 (char *) lfirst(lc));
		appendStringInfoString(&s, ") LIMIT 1) IS NULL");
	}
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (t->input == C360_ORDERS && strcmp(t->func, "first") == 0)
			appendStringInfo(&s, "\n           AND NOT COALESCE(x._d_%1$s = p.%1$s OR x._t_%2$s >= p.%1$s, false)",
							 max, quote_identifier(t->name));

		if (is_order_mode(t))
			appendStringInfo(&s, "\n           AND (x._d_%1$s IS NULL OR x._d_%1$s = ARRAY[p.%1$s])",
							 quote_identifier(t->name));

		/*
		 * Whether the stored average divides by every order: sum / count, unless the sum
		 * is 0 (then any count gives 0).  Divided by fewer, non-NULL, values it differs
		 * by at least 1/count of itself, far above numeric division's rounding.
		 */
		if (t->input == C360_ORDERS && strcmp(t->func, "avg") == 0)
			appendStringInfo(&s, "\n           AND (p.%1$s = 0 OR p.%2$s <> 0 AND p.%3$s = p.%2$s / p.%1$s::numeric)",
							 quote_identifier(e->count->name), quote_identifier(e->sum->name),
							 quote_identifier(t->name));
	}
	return s.data;
}

char *
c360_orders_delta_sql(List *cols, bool parts)
{
	const char *art = c360_col_article(parts);
	const C360Input *in = &c360_inputs[C360_ORDERS];
	const char *key = quote_identifier(in->cols[in->key_col].name);
	const char *cust = quote_identifier(in->cols[in->customer_col].name);
	Bounds	   *b = c360_col_param_bounds(2);
	OrderEntries e = find_entries(cols);
	const char *max = quote_identifier(e.max->name);
	char	   *change = c360_col_time_change(cols, b);
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfoString(&s, "WITH v AS (\n  SELECT * FROM unnest(");
	for (int c = 0; c < 2 * in->ncols; c++)
		appendStringInfo(&s, "%s$%d", c ? ", " : "", 6 + c);
	appendStringInfoString(&s, ")\n    AS v(");
	for (int c = 0; c < in->ncols; c++)
		appendStringInfo(&s, "%2$so_%1$s, n_%1$s", quote_identifier(in->cols[c].name), c ? ", " : "");
	appendStringInfo(&s, ")),\n"
					 "x AS (\n  SELECT v.n_%s AS _c360_id,\n"
					 "         count(*) FILTER (WHERE v.o_%s IS NULL) AS _c360_new,\n"
					 "         bool_and((v.o_%s IS NULL OR %s) AS _c360_exact",
					 cust, key, key, update_exact(cols));
	append_batch_parts(&s, cols, key);
	appendStringInfo(&s, "\n  FROM v WHERE NOT EXISTS (SELECT FROM unnest($1::text[]) f(id) WHERE f.id = v.n_%1$s)\n"
					 "  GROUP BY v.n_%1$s),\n", cust);

	/* the stored row (_p_), whether the difference is exact, and the stage's old change */
	appendStringInfoString(&s, "s AS (\n  SELECT x.*");
	c360_col_append_each(&s, cols, is_order_aggregate, "%1$s, p.%2$s AS _p_%2$s", "");
	appendStringInfo(&s, ", p.%s AS _p_next_change_at,\n"
					 "         %s AS _c360_old_change,\n"
					 "         %s AS _c360_exact_row",
					 art, change, exact_sql(cols, &e, cust));
	appendStringInfoString(&s, "\n  FROM x LEFT JOIN c360.customer_360 p ON p.customer_id = x._c360_id),\n");

	/* new values; the event expiry is looked up only where the stored one is ambiguous */
	appendStringInfoString(&s, "n AS (\n  SELECT s._c360_id, s._p_next_change_at");
	append_new_values(&s, cols, &e);
	appendStringInfo(&s, ",\n         COALESCE(s._d_%1$s > s._p_%1$s OR s._p_%1$s IS NULL AND s._d_%1$s IS NOT NULL, false)"
					 " AS _c360_moved,\n"
					 "         COALESCE(s._p_next_change_at = s._c360_old_change, false) AS _c360_lookup\n"
					 "  FROM s WHERE s._c360_exact_row),\n", max);
	appendStringInfoString(&s, "looked_up AS (SELECT _c360_id FROM n WHERE _c360_moved AND _c360_lookup),\n"
						   "raw AS (\n" RAW_OF("looked_up") "),\n");
	c360_col_append_expiry(&s, cols, b);
	appendStringInfoString(&s, ",\nf AS (\n  SELECT n.*");
	foreach(lc, cols)
	{
		C360Trait  *t = lfirst(lc);

		if (t->input == C360_ORDERS && c360_col_is_expression(t))
			appendStringInfo(&s, ",\n         %s AS %s", c360_col_render(t->arg, b),
							 quote_identifier(t->name));
	}
	appendStringInfo(&s, ",\n         CASE WHEN NOT n._c360_moved THEN n._p_next_change_at\n"
					 "              WHEN n._c360_lookup THEN least(expiry._c360_change, %1$s)\n"
					 "              ELSE least(n._p_next_change_at, %1$s) END AS next_change_at\n"
					 "  FROM n LEFT JOIN expiry ON expiry._c360_id = n._c360_id),\n"
					 "g AS (\n  SELECT f.*, ROW(", change);
	c360_col_append_each(&s, cols, is_order_column, "%1$sf.%2$s", ", ");
	appendStringInfoString(&s, ", f.next_change_at) AS _c360_row FROM f),\n");

	/* the rows, written where they differ (binary images: a numeric's scale counts) */
	appendStringInfoString(&s, "written AS (\n  UPDATE c360.customer_360 p SET ");
	c360_col_append_each(&s, cols, is_order_column, "%1$s%2$s = f.%2$s", ", ");
	appendStringInfo(&s, ",\n    %s = f.next_change_at, ", art);
	if (parts)
		appendStringInfoString(&s, "next_change_at = least(f.next_change_at, p.traits_change_at),\n    ");
	appendStringInfoString(&s, "profile_updated_at = clock_timestamp()\n"
						   "  FROM g f WHERE p.customer_id = f._c360_id\n    AND NOT (ROW(");
	c360_col_append_each(&s, cols, is_order_column, "%1$sp.%2$s", ", ");
	appendStringInfo(&s, ", p.%s) *= f._c360_row)\n  RETURNING p.customer_id)\n", art);
	appendStringInfoString(&s, "SELECT customer_id, true FROM written\n"
						   "UNION ALL SELECT _c360_id, false FROM s WHERE NOT s._c360_exact_row");
	return s.data;
}
