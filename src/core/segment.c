/*-------------------------------------------------------------------------
 * segment.c
 *	  Segments: boolean predicates over c360.customer_360, validated at creation and
 *	  maintained for the profile rows each batch really changed.  Enter, exit and
 *	  update go to the outbox c360.segment_changes in the same transaction.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parser.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "core/spi.h"
#include "core/clock.h"
#include "core/expr.h"
#include "core/segment.h"

/*
 * The statement that maintains every segment at once, prepared once per backend for the
 * segments it was built from and again only when their definitions change.
 */
static SPIPlanPtr segments_plan = NULL;
static char *segments_definition = NULL;	/* names, predicates and columns, in order */

static Query *analyze_predicate(const char *predicate);
static List *predicate_columns(Query *query);
static SPIPlanPtr segments_statement(void);
static char *maintain_sql(int nsegments);

/*
 * Bring every segment's membership up to date for the given (changed) customers, with one
 * set-based statement over the batch's changed rows for all segments.
 */
void
c360_segments_refresh(List *changed)
{
	SPIPlanPtr	plan;
	Datum		arg;

	if (changed == NIL)
		return;
	plan = segments_statement();
	if (plan == NULL)
		return;

	/*
	 * Outbox rows must commit in seq order, or a sink that has read seq N could later see
	 * a smaller seq commit and never publish it.  Holding this lock from before the first
	 * seq is drawn until commit makes seq order the commit order.
	 */
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(C360_LOCK_OUTBOX),
						Int32GetDatum(0));

	arg = c360_text_array(changed);
	c360_exec(plan, &arg, NULL);
}

/*
 * The maintenance statement for the segments defined now, or NULL when there is none.
 * Segments change only under the clock lock, which every caller holds: the list read here
 * stays true until the batch commits.
 */
static SPIPlanPtr
segments_statement(void)
{
	static SPIPlanPtr list_plan;
	static SPIPlanPtr payload_plan;
	Oid			argtype = TEXTARRAYOID;
	StringInfoData definition;
	int			nsegments;
	SPIPlanPtr	plan;
	char	   *sql;

	c360_exec(c360_plan(&list_plan, "SELECT name, predicate, columns::text "
						"FROM c360.segments ORDER BY name", 0, NULL), NULL, NULL);
	nsegments = SPI_processed;
	if (nsegments == 0)
		return NULL;
	initStringInfo(&definition);
	for (int i = 0; i < nsegments; i++)
		for (int col = 1; col <= 3; col++)
			appendStringInfo(&definition, "%s%c",
							 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, col),
							 col == 3 ? '\n' : '\t');
	if (segments_plan != NULL && strcmp(segments_definition, definition.data) == 0)
		return segments_plan;

	c360_exec(c360_plan(&payload_plan, "SELECT quote_literal(name), predicate, "
						"c360._segment_payload(columns) FROM c360.segments ORDER BY name",
						0, NULL), NULL, NULL);
	if (SPI_processed != nsegments)
		elog(ERROR, "c360.segments changed while the clock lock was held");
	sql = maintain_sql(nsegments);
	/*
	 * A generic plan: the same index lookups suit a batch of any size, and it is planned
	 * once, not for every batch.
	 */
	plan = SPI_prepare_cursor(sql, 1, &argtype, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s: %s", SPI_result_code_string(SPI_result), sql);
	SPI_keepplan(plan);
	if (segments_plan != NULL)
	{
		SPI_freeplan(segments_plan);
		pfree(segments_definition);
	}
	segments_plan = plan;
	segments_definition = MemoryContextStrdup(TopMemoryContext, definition.data);
	return segments_plan;
}

/*
 * Membership of every segment for the customers in $1: who is in now (each segment's
 * predicate over their profile rows), who was, and the outbox rows for the difference
 * (update: a member whose carried columns changed).  The segments, in name order, are
 * the rows of SPI_tuptable: quoted name, predicate, payload expression; segment_ord
 * numbers them.  Outbox rows are written segment by segment in that order, customers by
 * id (the order one statement per segment gave).
 *
 * Each profile row is read once and gives one array of payloads, NULL where the predicate
 * does not hold: each predicate is evaluated once per row and its payload built only where
 * it holds, and the expressions are compiled once per execution (a LATERAL VALUES list
 * would compile them again for every row).  The array is unnested in the select list,
 * in step with the segment numbers: a LATERAL unnest would store every row's elements in
 * a tuplestore first.  The members are read through the index on customer_id alone
 * (materialized, so that stale statistics cannot turn the lookup into one probe of the
 * primary key per segment and customer).  Customers are locked (or the clock is held
 * exclusively) and segments cannot change meanwhile, so "enter" rows are new members and
 * "update" rows existing ones (no ON CONFLICT is needed), and the member rows read are
 * still the current ones when they are updated or deleted: by ctid, with no second lookup
 * of the primary key.
 */
static char *
maintain_sql(int nsegments)
{
	StringInfoData payloads;
	StringInfoData numbers;
	StringInfoData names;

	initStringInfo(&payloads);
	initStringInfo(&numbers);
	initStringInfo(&names);
	for (int i = 0; i < nsegments; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tuple, desc, 1);

		appendStringInfo(&payloads, "%s\n    CASE WHEN (%s) THEN %s END", i == 0 ? "" : ",",
						 SPI_getvalue(tuple, desc, 2), SPI_getvalue(tuple, desc, 3));
		appendStringInfo(&numbers, "%s(%s, %d)", i == 0 ? "" : ", ", name, i + 1);
		appendStringInfo(&names, "%s%s", i == 0 ? "" : ", ", name);
	}
	return psprintf(
					"WITH now_in AS (\n"
					"  SELECT segment_ord, customer_id, payload FROM (\n"
					"    SELECT p.customer_id, unnest(ARRAY[%s\n"
					"      ]) AS payload, generate_series(1, %d) AS segment_ord\n"
					"    FROM c360.customer_360 p WHERE p.customer_id = ANY($1)) s\n"
					"  WHERE payload IS NOT NULL),\n"
					"members AS MATERIALIZED (\n"
					"  SELECT ctid AS tid, segment, customer_id, payload FROM c360.segment_members\n"
					"  WHERE customer_id = ANY($1)),\n"
					"was_in AS (\n"
					"  SELECT s.segment_ord, m.customer_id, m.payload, m.tid\n"
					"  FROM members m JOIN (VALUES %s) s(segment, segment_ord) ON s.segment = m.segment),\n"
					"diff AS (\n"
					"  SELECT segment_ord, (ARRAY[%s])[segment_ord] AS segment, customer_id,\n"
					"         CASE WHEN w.customer_id IS NULL THEN 'enter'\n"
					"              WHEN n.customer_id IS NULL THEN 'exit' ELSE 'update' END AS change,\n"
					"         COALESCE(n.payload, w.payload) AS payload, w.tid\n"
					"  FROM now_in n FULL JOIN was_in w USING (segment_ord, customer_id)\n"
					"  WHERE n.customer_id IS NULL OR w.customer_id IS NULL\n"
					"     OR n.payload IS DISTINCT FROM w.payload),\n"
					"gone AS (\n"
					"  DELETE FROM c360.segment_members m USING diff d\n"
					"  WHERE d.change = 'exit' AND m.ctid = d.tid),\n"
					"entered AS (\n"
					"  INSERT INTO c360.segment_members (segment, customer_id, entered_at, payload)\n"
					"  SELECT segment, customer_id, clock_timestamp(), payload FROM diff\n"
					"  WHERE change = 'enter' ORDER BY segment_ord, customer_id COLLATE \"C\"),\n"
					"updated AS (\n"
					"  UPDATE c360.segment_members m SET payload = d.payload FROM diff d\n"
					"  WHERE d.change = 'update' AND m.ctid = d.tid),\n"
					"outbox AS (\n"
					"  INSERT INTO c360.segment_changes (segment, customer_id, change, payload)\n"
					"  SELECT segment, customer_id, change, payload FROM diff\n"
					"  ORDER BY segment_ord, customer_id COLLATE \"C\"\n"
					"  RETURNING segment, customer_id, change)\n"
					"SELECT count(pg_notify('c360_segments', segment || ':' || customer_id || ':' || change))\n"
					"FROM outbox",
					payloads.data, nsegments, numbers.data, names.data);
}

/*
 * Analyze "SELECT (predicate) FROM c360.customer_360" (src/core/expr.c: unknown columns and
 * type errors surface with Postgres's own messages); the rest is checked on the tree.
 */
static Query *
analyze_predicate(const char *predicate)
{
	Query	   *query = c360_analyze_expression(psprintf("SELECT (%s) FROM c360.customer_360",
														 predicate),
												strlen("SELECT ("), predicate,
												"segment predicate", "a segment predicate",
												"c360.customer_360 columns");
	Node	   *expr = (Node *) ((TargetEntry *) linitial(query->targetList))->expr;

	if (query->hasSubLinks)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment predicate may not contain subqueries"),
				 errhint("Membership is maintained per changed profile row; a subquery would read other rows.")));
	if (query->hasAggs || query->hasWindowFuncs || query->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment predicate may not contain aggregates, window or set-returning functions")));
	if (contain_mutable_functions(expr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment predicate may only call immutable functions"),
				 errhint("Membership is re-evaluated only when the profile row changes, so now(), random() and the like would go stale; compare profile columns with constants.")));
	if (exprType(expr) != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("a segment predicate must be boolean, not %s", format_type_be(exprType(expr)))));
	return query;
}

/* The profile columns a predicate reads, in table order. */
static List *
predicate_columns(Query *query)
{
	Bitmapset  *attrs = NULL;
	RangeTblEntry *rte = rt_fetch(1, query->rtable);
	List	   *names = NIL;
	int			a = -1;

	pull_varattnos((Node *) query->targetList, 1, &attrs);
	while ((a = bms_next_member(attrs, a)) >= 0)
	{
		AttrNumber	attno = a + FirstLowInvalidHeapAttributeNumber;

		if (attno > 0)
			names = lappend(names, get_attname(rte->relid, attno, false));
	}
	return names;
}

/* The profile columns a segment predicate reads, once it is checked (errors otherwise). */
List *
c360_segment_predicate_columns(const char *predicate)
{
	return predicate_columns(analyze_predicate(predicate));
}
