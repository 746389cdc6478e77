/*-------------------------------------------------------------------------
 * columns.c
 *	  SQL-callable entry points of the profile column catalog (version 0.7): its
 *	  built-in entries, and the statements generated from it (src/core/columns.c,
 *	  src/core/profile_sql.c, src/core/reference.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "core/columns.h"
#include "core/traits.h"

PG_FUNCTION_INFO_V1(c360_builtin_columns_srf);
PG_FUNCTION_INFO_V1(c360_profile_statements);
PG_FUNCTION_INFO_V1(c360_generated_sql);

static Datum text_or_null(const char *s, bool *isnull);

/*
 * c360._builtin_columns() RETURNS TABLE (name, input, aggregate, filter, lookback,
 * time_column, type): the article's columns as catalog entries, for c360.profile_columns.
 */
Datum
c360_builtin_columns_srf(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, c360_builtin_columns())
	{
		C360Trait  *t = lfirst(lc);
		Datum		values[7];
		bool		nulls[7] = {0};
		StringInfoData agg;

		initStringInfo(&agg);
		if (strcmp(t->func, "value") == 0 || strcmp(t->func, "expression") == 0)
			appendStringInfoString(&agg, t->arg);
		else
			c360_column_aggregate(&agg, t, NULL);
		values[0] = CStringGetTextDatum(t->name);
		values[1] = CStringGetTextDatum(c360_inputs[t->input].name);
		values[2] = CStringGetTextDatum(agg.data);
		values[3] = text_or_null(t->filter, &nulls[3]);
		values[4] = t->lookback ? IntervalPGetDatum(t->lookback) : (Datum) 0;
		nulls[4] = t->lookback == NULL;
		values[5] = text_or_null(t->time_column, &nulls[5]);
		values[6] = CStringGetTextDatum(t->type);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = s == NULL;
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * c360.profile_statements() RETURNS TABLE (purpose text, statement text): the
 * maintainer's statements for the article's columns (each in its batch form; the bulk
 * form differs only in not deduplicating $1), reference_profile()'s and verify()'s
 * queries, as they run.  The traits' own are c360.trait_statements().
 */
Datum
c360_profile_statements(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		nulls[2] = {false, false};
	Datum		values[2];

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < C360_PROFILE_STATEMENTS; i++)
	{
		values[0] = CStringGetTextDatum(c360_profile_statement_name(i));
		values[1] = CStringGetTextDatum(c360_profile_statement(i, false));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_connect();
	values[0] = CStringGetTextDatum("reference");
	values[1] = CStringGetTextDatum(c360_profile_reference_sql());
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	values[0] = CStringGetTextDatum("verify");
	values[1] = CStringGetTextDatum(c360_profile_verify_sql());
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	SPI_finish();
	return (Datum) 0;
}

/*
 * c360._generated_sql(purpose text) RETURNS text: the query reference_profile(),
 * verify() and _verify_columns() run ('reference', 'verify', 'verify article'; $1 is the
 * instant).
 */
Datum
c360_generated_sql(PG_FUNCTION_ARGS)
{
	char	   *purpose = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext caller = CurrentMemoryContext;
	char	   *sql;

	SPI_connect();
	if (strcmp(purpose, "reference") == 0)
		sql = c360_profile_reference_sql();
	else if (strcmp(purpose, "verify") == 0)
		sql = c360_profile_verify_sql();
	else if (strcmp(purpose, "verify article") == 0)
		sql = c360_verify_sql(NIL, false, NIL);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown generated statement \"%s\"", purpose),
				 errhint("Use 'reference', 'verify' or 'verify article'.")));
	sql = MemoryContextStrdup(caller, sql);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(sql));
}
