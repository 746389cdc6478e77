/*-------------------------------------------------------------------------
 * traits.c
 *	  SQL-callable helpers behind c360.create_trait and friends: the checks of a
 *	  trait's definition (its aggregate's form, each expression over the input),
 *	  backfill, the generated statements, and window bounds.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "core/clock.h"
#include "core/expr.h"
#include "core/maintain.h"
#include "core/traits.h"

PG_FUNCTION_INFO_V1(c360_trait_form);
PG_FUNCTION_INFO_V1(c360_trait_expression);
PG_FUNCTION_INFO_V1(c360_trait_type);
PG_FUNCTION_INFO_V1(c360_trait_backfill);
PG_FUNCTION_INFO_V1(c360_traits_verify);
PG_FUNCTION_INFO_V1(c360_trait_statements);
PG_FUNCTION_INFO_V1(c360_shift_back);
PG_FUNCTION_INFO_V1(c360_shift);
PG_FUNCTION_INFO_V1(c360_trait_changes);

static const char *aggregate_form(Node *val);
static Query *analyze_expression(const char *sql, int prefix, const char *text, const char *what);
static void put_statement(ReturnSetInfo *rsinfo, const char *input, const char *purpose,
						  const char *sql);

/* Which aggregates a trait may use, by name: each takes one argument. */
static const char *const plain_aggregates[] = {"count", "sum", "avg", "min", "max", "bool_or",
"bool_and"};

#define UNSUPPORTED_HINT "Use count(*), count(expr), count(DISTINCT expr), sum, avg, min, max, " \
	"bool_or, bool_and (expr), mode() WITHIN GROUP (ORDER BY expr), or " \
	"(array_agg(expr ORDER BY expr2 [ASC|DESC]))[1]; put conditions in the filter argument."

/*
 * c360._trait_form(aggregate text) RETURNS text: which of the supported forms the aggregate
 * is (count_star, count, count_distinct, sum, avg, min, max, bool_or, bool_and, mode,
 * first), read from Postgres's own parse tree; 0A000 for anything else.
 */
Datum
c360_trait_form(PG_FUNCTION_ARGS)
{
	char	   *aggregate = text_to_cstring(PG_GETARG_TEXT_PP(0));
	List	   *raw = raw_parser(psprintf("SELECT %s", aggregate), RAW_PARSE_DEFAULT);
	SelectStmt *select;
	const char *form = NULL;

	if (list_length(raw) == 1 && IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
	{
		select = (SelectStmt *) linitial_node(RawStmt, raw)->stmt;
		if (list_length(select->targetList) == 1 && select->fromClause == NIL &&
			select->whereClause == NULL && select->op == SETOP_NONE &&
			((ResTarget *) linitial(select->targetList))->name == NULL)
			form = aggregate_form(((ResTarget *) linitial(select->targetList))->val);
	}
	if (form == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("unsupported trait aggregate \"%s\"", aggregate),
				 errhint(UNSUPPORTED_HINT)));
	PG_RETURN_TEXT_P(cstring_to_text(form));
}

static bool
named(FuncCall *fc, const char *name)
{
	return strcmp(strVal(llast(fc->funcname)), name) == 0 &&
		(list_length(fc->funcname) == 1 ||
		 (list_length(fc->funcname) == 2 && strcmp(strVal(linitial(fc->funcname)), "pg_catalog") == 0));
}

static const char *
aggregate_form(Node *val)
{
	FuncCall   *fc;

	if (IsA(val, A_Indirection))
	{
		A_Indirection *ind = (A_Indirection *) val;
		A_Indices  *idx = list_length(ind->indirection) == 1 ? linitial(ind->indirection) : NULL;
		SortBy	   *sort;

		if (idx == NULL || !IsA(idx, A_Indices) || idx->is_slice || idx->uidx == NULL ||
			!IsA(idx->uidx, A_Const) || ((A_Const *) idx->uidx)->isnull ||
			!IsA(&((A_Const *) idx->uidx)->val, Integer) ||
			intVal(&((A_Const *) idx->uidx)->val) != 1 || !IsA(ind->arg, FuncCall))
			return NULL;
		fc = (FuncCall *) ind->arg;
		if (!named(fc, "array_agg") || list_length(fc->args) != 1 ||
			list_length(fc->agg_order) != 1 || fc->agg_distinct || fc->agg_filter ||
			fc->over || fc->agg_within_group || fc->func_variadic)
			return NULL;
		sort = linitial(fc->agg_order);
		if (sort->sortby_dir == SORTBY_USING || sort->sortby_nulls != SORTBY_NULLS_DEFAULT)
			return NULL;
		return "first";
	}
	if (!IsA(val, FuncCall))
		return NULL;
	fc = (FuncCall *) val;
	if (fc->agg_filter || fc->over || fc->func_variadic)
		return NULL;
	if (named(fc, "mode"))
		return fc->agg_within_group && fc->args == NIL && list_length(fc->agg_order) == 1 &&
			((SortBy *) linitial(fc->agg_order))->sortby_dir == SORTBY_DEFAULT &&
			((SortBy *) linitial(fc->agg_order))->sortby_nulls == SORTBY_NULLS_DEFAULT ? "mode" : NULL;
	if (fc->agg_within_group || fc->agg_order != NIL)
		return NULL;
	if (named(fc, "count") && fc->agg_star)
		return "count_star";
	if (fc->agg_star || list_length(fc->args) != 1)
		return NULL;
	if (named(fc, "count") && fc->agg_distinct)
		return "count_distinct";
	if (fc->agg_distinct)
		return NULL;
	for (int i = 0; i < lengthof(plain_aggregates); i++)
		if (named(fc, plain_aggregates[i]))
			return plain_aggregates[i];
	return NULL;
}

/*
 * c360._trait_expression(input text, expr text, what text) RETURNS regtype: check one of a
 * trait's expressions over the input's columns, as a segment predicate is checked: one
 * expression (unknown columns fail here with 42703), no subquery, aggregate, window or
 * set-returning function, immutable functions only.  Returns its type.
 */
Datum
c360_trait_expression(PG_FUNCTION_ARGS)
{
	C360InputId input = c360_input_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *what = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *sql = psprintf("SELECT (%s) FROM c360.%s", expr, c360_inputs[input].name);
	Query	   *query = analyze_expression(sql, strlen("SELECT ("), expr, what);
	Node	   *node = (Node *) ((TargetEntry *) linitial(query->targetList))->expr;

	if (query->hasSubLinks)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a trait's %s may not contain subqueries", what),
				 errhint("A trait reads only its customer's rows of its input.")));
	if (query->hasAggs || query->hasWindowFuncs || query->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a trait's %s may not contain aggregates, window or set-returning functions",
						what)));
	if (contain_mutable_functions(node))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a trait's %s may only call immutable functions", what),
				 errhint("A trait is maintained as rows change and as the clock moves; now() and "
						 "the like would go stale.  Use the lookback argument for time windows.")));
	PG_RETURN_OID(exprType(node));
}

/*
 * c360._trait_type(input, func, arg, order_by, descending) RETURNS text: the type of the
 * trait's aggregate, as a column type.
 */
Datum
c360_trait_type(PG_FUNCTION_ARGS)
{
	C360Trait	t = {0};
	char	   *sql;
	Query	   *query;
	Node	   *node;

	t.input = c360_input_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	t.func = text_to_cstring(PG_GETARG_TEXT_PP(1));
	t.arg = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	t.order_by = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	t.descending = PG_GETARG_BOOL(4);
	sql = c360_trait_probe_sql(&t);
	query = analyze_expression(sql, 0, sql, "aggregate");
	node = (Node *) ((TargetEntry *) linitial(query->targetList))->expr;
	PG_RETURN_TEXT_P(cstring_to_text(format_type_with_typemod(exprType(node), exprTypmod(node))));
}

/* One of a trait's expressions (what: "filter", "aggregate argument", ...), analyzed. */
static Query *
analyze_expression(const char *sql, int prefix, const char *text, const char *what)
{
	return c360_analyze_expression(sql, prefix, text, psprintf("trait %s", what),
								   psprintf("a trait's %s", what), "its input's columns");
}

/*
 * c360._trait_backfill(all_at_once boolean) RETURNS bigint: backfill every trait still
 * backfilling by one chunk, or wholly; the rows computed, or -1 when none is backfilling.
 */
Datum
c360_trait_backfill(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(c360_maintain_backfill(PG_GETARG_BOOL(0)));
}

/* c360._traits_verify_sql() RETURNS text: verify()'s query for the ready traits ($1: as_of). */
Datum
c360_traits_verify(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *sql;

	SPI_connect();
	sql = MemoryContextStrdup(caller, c360_traits_verify_sql());
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(sql));
}

/*
 * c360.trait_statements() RETURNS TABLE (input text, purpose text, statement text): the
 * statements generated from the catalog, as they run: per input with traits, the
 * maintainer's refresh (and its bulk form) and the tick's; for the events, the statement
 * that applies new events with the event traits in the same write.
 */
Datum
c360_trait_statements(PG_FUNCTION_ARGS)
{
	static const char *const purposes[] = {"refresh", "bulk refresh", "tick",
	"events by difference"};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	for (int i = 0; i < c360_ninputs; i++)
		for (int p = 0; p < lengthof(purposes); p++)
			put_statement(rsinfo, c360_inputs[i].name, purposes[p],
						  c360_traits_statement(i, purposes[p]));
	SPI_finish();
	return (Datum) 0;
}

static void
put_statement(ReturnSetInfo *rsinfo, const char *input, const char *purpose, const char *sql)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (sql == NULL)
		return;
	values[0] = CStringGetTextDatum(input);
	values[1] = CStringGetTextDatum(purpose);
	values[2] = CStringGetTextDatum(sql);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* c360._shift_back(ts timestamptz, span interval, tz text): ts - span in zone tz. */
Datum
c360_shift_back(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(c360_timestamp_shift(PG_GETARG_TIMESTAMPTZ(0), PG_GETARG_INTERVAL_P(1),
											   true, text_to_cstring(PG_GETARG_TEXT_PP(2))));
}

/* c360._shift(ts timestamptz, span interval, tz text): ts + span in zone tz. */
Datum
c360_shift(PG_FUNCTION_ARGS)
{
	text	   *zone = PG_GETARG_TEXT_PP(2);

	PG_RETURN_TIMESTAMPTZ(c360_timestamp_shift_in(PG_GETARG_TIMESTAMPTZ(0), PG_GETARG_INTERVAL_P(1),
												  false, VARDATA_ANY(zone), VARSIZE_ANY_EXHDR(zone)));
}

/*
 * c360._trait_changes(input text) RETURNS bigint: recompute the input's part of
 * next_change_at, and next_change_at, for every profile row (src/core/change_parts.c).
 */
Datum
c360_trait_changes(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(c360_parts_recompute(c360_input_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}
