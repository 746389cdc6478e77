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
#include "parser/analyze.h"
#include "parser/parser.h"
#include "parser/parsetree.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "maintain.h"
#include "segment.h"

/* A segment's maintenance statement, prepared once per backend per definition. */
typedef struct SegmentPlan
{
	char		name[NAMEDATALEN];
	char	   *definition;		/* predicate + columns it was built from */
	SPIPlanPtr	plan;
} SegmentPlan;

static HTAB *segment_plans = NULL;

static Query *analyze_predicate(const char *predicate);
static void predicate_error_callback(void *arg);
static List *predicate_columns(Query *query);
static char *maintain_sql(const char *predicate, const char *payload);
static SPIPlanPtr segment_plan(const char *name, const char *predicate, const char *payload);

PG_FUNCTION_INFO_V1(c360_check_predicate);

/*
 * Bring every segment's membership up to date for the given (changed) customers.  One
 * statement per segment, set-based over the batch's changed rows.
 */
void
c360_segments_refresh(List *changed)
{
	static SPIPlanPtr list_plan;
	Datum		args[2];
	int			nsegments;
	char	  **names;
	char	  **predicates;
	char	  **payloads;

	if (changed == NIL)
		return;
	c360_exec(c360_plan(&list_plan, "SELECT name, predicate, c360._segment_payload(columns) "
						"FROM c360.segments ORDER BY name", 0, NULL), NULL, NULL);
	nsegments = SPI_processed;
	if (nsegments == 0)
		return;
	names = palloc(sizeof(char *) * nsegments);
	predicates = palloc(sizeof(char *) * nsegments);
	payloads = palloc(sizeof(char *) * nsegments);
	for (int i = 0; i < nsegments; i++)
	{
		names[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		predicates[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		payloads[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
	}

	/*
	 * Outbox rows must commit in seq order, or a sink that has read seq N could later see
	 * a smaller seq commit and never publish it.  Holding this lock from before the first
	 * seq is drawn until commit makes seq order the commit order.
	 */
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(C360_LOCK_OUTBOX),
						Int32GetDatum(0));

	args[0] = c360_text_array(changed);
	for (int i = 0; i < nsegments; i++)
	{
		args[1] = CStringGetTextDatum(names[i]);
		c360_exec(segment_plan(names[i], predicates[i], payloads[i]), args, NULL);
	}
}

/*
 * Membership for the customers in $1 of segment $2: who is in now, who was, and the
 * outbox rows for the difference (update: a member whose carried columns changed).
 */
static char *
maintain_sql(const char *predicate, const char *payload)
{
	return psprintf(
					"WITH now_in AS (\n"
					"  SELECT p.customer_id, %s AS payload FROM c360.customer_360 p\n"
					"  WHERE p.customer_id = ANY($1) AND (%s) IS TRUE),\n"
					"was_in AS (\n"
					"  SELECT m.customer_id, m.payload FROM c360.segment_members m\n"
					"  WHERE m.segment = $2 AND m.customer_id = ANY($1)),\n"
					"diff AS (\n"
					"  SELECT COALESCE(n.customer_id, w.customer_id) AS customer_id,\n"
					"         CASE WHEN w.customer_id IS NULL THEN 'enter'\n"
					"              WHEN n.customer_id IS NULL THEN 'exit' ELSE 'update' END AS change,\n"
					"         COALESCE(n.payload, w.payload) AS payload\n"
					"  FROM now_in n FULL JOIN was_in w USING (customer_id)\n"
					"  WHERE n.customer_id IS NULL OR w.customer_id IS NULL\n"
					"     OR n.payload IS DISTINCT FROM w.payload),\n"
					"gone AS (\n"
					"  DELETE FROM c360.segment_members m USING diff d\n"
					"  WHERE m.segment = $2 AND m.customer_id = d.customer_id AND d.change = 'exit'),\n"
					"kept AS (\n"
					"  INSERT INTO c360.segment_members AS m (segment, customer_id, entered_at, payload)\n"
					"  SELECT $2, customer_id, clock_timestamp(), payload FROM diff WHERE change <> 'exit'\n"
					"  ORDER BY customer_id COLLATE \"C\"\n"
					"  ON CONFLICT (segment, customer_id) DO UPDATE SET payload = excluded.payload),\n"
					"outbox AS (\n"
					"  INSERT INTO c360.segment_changes (segment, customer_id, change, payload)\n"
					"  SELECT $2, customer_id, change, payload FROM diff ORDER BY customer_id COLLATE \"C\"\n"
					"  RETURNING customer_id, change)\n"
					"SELECT count(pg_notify('c360_segments', $2 || ':' || customer_id || ':' || change))\n"
					"FROM outbox",
					payload, predicate);
}

static SPIPlanPtr
segment_plan(const char *name, const char *predicate, const char *payload)
{
	Oid			types[2] = {TEXTARRAYOID, TEXTOID};
	char	   *definition = psprintf("%s\n%s", predicate, payload);
	SegmentPlan *sp;
	bool		found;

	if (segment_plans == NULL)
	{
		HASHCTL		ctl = {.keysize = NAMEDATALEN, .entrysize = sizeof(SegmentPlan)};

		segment_plans = hash_create("c360 segment plans", 16, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	sp = hash_search(segment_plans, name, HASH_ENTER, &found);
	if (found && strcmp(sp->definition, definition) == 0)
		return sp->plan;
	if (found)
	{
		SPI_freeplan(sp->plan);
		pfree(sp->definition);
	}
	sp->plan = NULL;
	sp->definition = MemoryContextStrdup(TopMemoryContext, definition);
	return c360_plan(&sp->plan, maintain_sql(predicate, payload), 2, types);
}

/*
 * Parse and analyze "SELECT (predicate) FROM c360.customer_360": unknown columns and type
 * errors surface here with Postgres's own messages; the rest is checked on the tree.
 */
static Query *
analyze_predicate(const char *predicate)
{
	char	   *sql = psprintf("SELECT (%s) FROM c360.customer_360", predicate);
	ErrorContextCallback errcallback = {.callback = predicate_error_callback,
	.arg = (void *) predicate, .previous = error_context_stack};
	List	   *raw;
	Query	   *query;
	Node	   *expr;

	error_context_stack = &errcallback;
	raw = pg_parse_query(sql);

	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment predicate must be one expression")));
	query = parse_analyze_fixedparams(linitial(raw), sql, NULL, 0, NULL);
	error_context_stack = errcallback.previous;
	if (query->commandType != CMD_SELECT || list_length(query->targetList) != 1 ||
		list_length(query->rtable) != 1 || query->limitCount || query->sortClause ||
		query->setOperations || query->groupClause || query->jointree->quals)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment predicate must be one expression over c360.customer_360 columns")));
	expr = (Node *) ((TargetEntry *) linitial(query->targetList))->expr;
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

/*
 * Point a parse error into the predicate, not into the caller's statement (as Postgres
 * does for the body of a SQL function).
 */
static void
predicate_error_callback(void *arg)
{
	const char *predicate = arg;
	int			pos = geterrposition();
	int			prefix = strlen("SELECT (");

	if (pos > prefix)
	{
		errposition(0);
		internalerrposition(pos - prefix);
		internalerrquery(predicate);
	}
	errcontext("segment predicate \"%s\"", predicate);
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

/*
 * c360._check_predicate(predicate text) RETURNS text[]: validate a segment predicate and
 * return the columns it reads.
 */
Datum
c360_check_predicate(PG_FUNCTION_ARGS)
{
	Query	   *query = analyze_predicate(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	PG_RETURN_DATUM(c360_text_array(predicate_columns(query)));
}
