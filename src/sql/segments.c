/*-------------------------------------------------------------------------
 * segments.c
 *	  SQL-callable helpers behind the segment API in schema c360.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "core/segment.h"
#include "core/spi.h"
#include "core/traits.h"

PG_FUNCTION_INFO_V1(c360_check_predicate);

static void refuse_backfilling(List *columns);

/*
 * c360._check_predicate(predicate text) RETURNS text[]: the profile columns the predicate
 * reads; an error (with its SQLSTATE) when it is not a valid segment predicate, or reads a
 * trait still backfilling.
 */
Datum
c360_check_predicate(PG_FUNCTION_ARGS)
{
	List	   *columns = c360_segment_predicate_columns(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	refuse_backfilling(columns);
	PG_RETURN_DATUM(c360_text_array(columns));
}

/*
 * A trait still backfilling has rows not computed yet: a predicate may not read it (a
 * segment's membership would be wrong until the backfill ends).
 */
static void
refuse_backfilling(List *columns)
{
	Oid			types[1] = {TEXTARRAYOID};
	Datum		arg = c360_text_array(columns);

	if (columns == NIL || !c360_traits_known())
		return;
	SPI_connect();
	if (SPI_execute_with_args("SELECT name FROM c360.column_catalog"
							  " WHERE state <> 'ready' AND name = ANY ($1) ORDER BY name",
							  1, types, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read c360.column_catalog");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trait \"%s\" is still backfilling",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)),
				 errhint("Wait until c360.traits shows it ready.")));
	SPI_finish();
}
