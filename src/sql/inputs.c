/*-------------------------------------------------------------------------
 * inputs.c
 *	  SQL-callable helper behind c360.create_input: the column list of a definition,
 *	  read by Postgres's own grammar, checked before anything is created.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "parser/parse_type.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "core/change.h"

PG_FUNCTION_INFO_V1(c360_input_columns);

static ColumnDef *column_def(Node *elt);
static Oid	column_type(ColumnDef *def);

#define TYPES_HINT "The types are text, numeric, integer, bigint, double precision, boolean, " \
	"timestamptz, date and jsonb."

/*
 * c360._input_columns(columns text) RETURNS SETOF (name text, type regtype): the columns of
 * "name type, ..." in order.  Only names and types: constraints, defaults and collations
 * belong to the mirror, which create_input makes.
 */
Datum
c360_input_columns(PG_FUNCTION_ARGS)
{
	char	   *columns = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *raw = raw_parser(psprintf("CREATE TABLE c360_input (%s)", columns),
								 RAW_PARSE_DEFAULT);
	CreateStmt *stmt;
	List	   *seen = NIL;
	ListCell   *lc;

	stmt = list_length(raw) == 1 && IsA(linitial_node(RawStmt, raw)->stmt, CreateStmt) ?
		(CreateStmt *) linitial_node(RawStmt, raw)->stmt : NULL;
	if (stmt == NULL || stmt->inhRelations != NIL || stmt->partspec != NULL ||
		stmt->options != NIL || stmt->tablespacename != NULL || stmt->accessMethod != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("the columns of an input must be a list of \"name type\", not \"%s\"",
						columns)));
	if (stmt->tableElts == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("an input needs at least one column")));
	if (list_length(stmt->tableElts) > C360_MAX_COLS)
		ereport(ERROR,
				(errcode(ERRCODE_TOO_MANY_COLUMNS),
				 errmsg("an input has at most %d columns, not %d", C360_MAX_COLS,
						list_length(stmt->tableElts))));

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, stmt->tableElts)
	{
		ColumnDef  *def = column_def(lfirst(lc));
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (list_member(seen, makeString(def->colname)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" is named more than once", def->colname)));
		seen = lappend(seen, makeString(def->colname));
		values[0] = CStringGetTextDatum(def->colname);
		values[1] = ObjectIdGetDatum(column_type(def));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * One element of the list as a plain column: a name the generated statements can use as
 * it is (lower case, not a keyword, not the generated statements' own _c360 prefix), a
 * type, nothing else.
 */
static ColumnDef *
column_def(Node *elt)
{
	ColumnDef  *def = IsA(elt, ColumnDef) ? (ColumnDef *) elt : NULL;

	if (def == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the columns of an input are \"name type\" only, without table constraints or LIKE"),
				 errhint("create_input makes the key the primary key.")));
	if (strcmp(quote_identifier(def->colname), def->colname) != 0 ||
		strncmp(def->colname, "_c360", 5) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid column name \"%s\"", def->colname),
				 errhint("Use lower-case letters, digits and underscores, not a reserved word, not starting with _c360.")));
	if (def->constraints != NIL || def->raw_default != NULL || def->collClause != NULL ||
		def->storage != 0 || def->compression != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\" of an input has a name and a type only", def->colname),
				 errhint("Constraints, defaults and collations are not supported; create_input makes the key the primary key.")));
	return def;
}

/* The column's type, one of those the sources and decoders can fill. */
static Oid
column_type(ColumnDef *def)
{
	Oid			type = typenameTypeId(NULL, def->typeName);

	if (def->typeName->typmods != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\" of an input cannot have a type modifier", def->colname),
				 errhint("Leave it out: the mirror keeps values as the source sends them.")));
	if (def->typeName->arrayBounds != NIL || c360_type_name(type) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("column \"%s\" of an input cannot have type %s", def->colname,
						format_type_be(type)),
				 errhint(TYPES_HINT)));
	return type;
}
