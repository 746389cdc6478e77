/*-------------------------------------------------------------------------
 * spi.c
 *	  Small SPI helpers every module shares (plans prepared once per backend, ids
 *	  collected from results) and sets of customer ids.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "core/spi.h"

/*
 * Whether the extension's table c360.<relname> has the column: the library serves every
 * version, and a later version's update adds columns it then uses.
 */
bool
c360_column_known(const char *relname, const char *column)
{
	Oid			nsp = get_namespace_oid("c360", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	return OidIsValid(rel) && get_attnum(rel, column) != InvalidAttrNumber;
}

/*
 * Which text each plan slot was prepared from.  A generated statement has one text per
 * form (src/core/profile_sql.c keeps each form's for the process), so a slot asked for
 * another text, the profile table's form having changed under this backend (ALTER
 * EXTENSION UPDATE), prepares that one.
 */
#define MAX_SLOTS 128
static struct
{
	SPIPlanPtr *cache;
	const char *sql;
}			slots[MAX_SLOTS];
static int	nslots;

/* Prepare a statement once per backend (per text, for a slot) and keep it. */
SPIPlanPtr
c360_plan(SPIPlanPtr *cache, const char *sql, int nargs, const Oid *types)
{
	int			i;

	for (i = 0; i < nslots && slots[i].cache != cache; i++)
		;
	if (*cache != NULL && i < nslots && slots[i].sql != sql)
	{
		SPI_freeplan(*cache);
		*cache = NULL;
	}
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, (Oid *) types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s: %s", SPI_result_code_string(SPI_result), sql);
		SPI_keepplan(plan);
		*cache = plan;
		if (i == nslots && nslots < MAX_SLOTS)
			slots[nslots++].cache = cache;
		if (i < nslots)
			slots[i].sql = sql;
	}
	return *cache;
}

void
c360_exec(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
}

/* Execute a statement whose first result column is a customer id; append the ids. */
List *
c360_exec_ids(SPIPlanPtr plan, Datum *values, const char *nulls, List *ids)
{
	c360_exec(plan, values, nulls);
	return c360_collect_ids(ids);
}

/* Append the first column of the last statement's rows, customer ids, to ids. */
List *
c360_collect_ids(List *ids)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (id != NULL)
			ids = lappend(ids, id);
	}
	return ids;
}

/* A set of C string ids, for c360_distinct_ids. */
HTAB *
c360_id_set(void)
{
	HASHCTL		ctl = {.keysize = sizeof(char *), .entrysize = sizeof(char *),
	.hash = c360_id_hash, .match = c360_id_match, .hcxt = CurrentMemoryContext};

	return hash_create("c360 ids", 1024, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* The ids not in seen yet, each once; adds them to seen. */
List *
c360_distinct_ids(List *ids, HTAB *seen)
{
	List	   *out = NIL;
	ListCell   *lc;

	foreach(lc, ids)
	{
		char	   *id = lfirst(lc);
		bool		found;

		hash_search(seen, &id, HASH_ENTER, &found);
		if (!found)
			out = lappend(out, id);
	}
	return out;
}

/* Hash and match for hash tables keyed by a C string pointer. */
uint32
c360_id_hash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, strlen(s));
}

int
c360_id_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* A List of C strings as a text[] Datum. */
Datum
c360_text_array(List *ids)
{
	int			n = list_length(ids);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;

	foreach(lc, ids)
		elems[foreach_current_index(lc)] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Run one of a statement's two forms: the prepared one for a batch's few hundred customers,
 * or, for a bulk set, one planned for these values.
 */
List *
c360_exec_sized(SPIPlanPtr *plan, const char *const sql[2], int n, int nargs, Oid *types,
				Datum *args, List *ids)
{
	if (n < C360_BULK_IDS)
		return c360_exec_ids(c360_plan(plan, sql[0], nargs, types), args, NULL, ids);
	return c360_exec_bulk(sql[1], nargs, types, args, ids);
}

/* A statement over a set of customers, planned for these values (a bulk set, a backfill chunk). */
List *
c360_exec_bulk(const char *sql, int nargs, Oid *types, Datum *args, List *ids)
{
	int			rc;
	int			guc_level;

	/*
	 * A bulk plan's cost is far above jit_above_cost, and compiling this statement's many
	 * expressions takes longer than running them: seconds, for nothing.
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true,
							 0, false);
	rc = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);
	AtEOXact_GUC(true, guc_level);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	return c360_collect_ids(ids);
}
