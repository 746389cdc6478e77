/*-------------------------------------------------------------------------
 * segments.c
 *	  SQL-callable helpers behind the segment API in schema c360.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "core/segment.h"
#include "core/spi.h"

PG_FUNCTION_INFO_V1(c360_check_predicate);

/*
 * c360._check_predicate(predicate text) RETURNS text[]: the profile columns the predicate
 * reads; an error (with its SQLSTATE) when it is not a valid segment predicate.
 */
Datum
c360_check_predicate(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(c360_text_array(c360_segment_predicate_columns(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}
