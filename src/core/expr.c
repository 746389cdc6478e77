/*-------------------------------------------------------------------------
 * expr.c
 *	  A user's SQL expression (a segment predicate, a trait's filter or argument),
 *	  analyzed by Postgres before it goes into generated SQL: unknown columns and type
 *	  errors surface with Postgres's own messages, pointing into the user's text.
 *	  What the expression may contain (subqueries, aggregates, volatile functions) is
 *	  for the caller to check on the tree, with its own messages.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "parser/analyze.h"
#include "tcop/tcopprot.h"

#include "core/expr.h"

typedef struct ExpressionContext
{
	const char *text;
	const char *label;
	int			prefix;
} ExpressionContext;

static void expression_context(void *arg);

/*
 * Parse and analyze sql, which the caller built as "SELECT (<text>) FROM <relation>" with
 * the text at offset prefix (0: the text is the whole sql, positions are left alone).  It
 * must be one plain expression over that one relation: otherwise an error "<what> must be
 * one expression[ over <over>]".  Errors say errcontext("<label> \"<text>\"").
 */
Query *
c360_analyze_expression(const char *sql, int prefix, const char *text, const char *label,
						const char *what, const char *over)
{
	ExpressionContext cxt = {.text = text, .label = label, .prefix = prefix};
	ErrorContextCallback errcallback = {.callback = expression_context,
	.arg = (void *) &cxt, .previous = error_context_stack};
	List	   *raw;
	Query	   *query;

	error_context_stack = &errcallback;
	raw = pg_parse_query(sql);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be one expression", what)));
	query = parse_analyze_fixedparams(linitial(raw), sql, NULL, 0, NULL);
	error_context_stack = errcallback.previous;
	if (query->commandType != CMD_SELECT || list_length(query->targetList) != 1 ||
		list_length(query->rtable) != 1 || query->limitCount || query->sortClause ||
		query->setOperations || query->groupClause || query->jointree->quals ||
		query->havingQual || query->distinctClause)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be one expression over %s", what, over)));
	return query;
}

/*
 * Point a parse error into the user's text, not into the caller's statement (as Postgres
 * does for the body of a SQL function).
 */
static void
expression_context(void *arg)
{
	const ExpressionContext *cxt = arg;
	int			pos = geterrposition();

	if (cxt->prefix > 0 && pos > cxt->prefix)
	{
		errposition(0);
		internalerrposition(pos - cxt->prefix);
		internalerrquery(cxt->text);
	}
	errcontext("%s \"%s\"", cxt->label, cxt->text);
}
