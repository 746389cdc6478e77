/*-------------------------------------------------------------------------
 * inputs.c
 *	  Users' own inputs (c360.create_input, sql/customer360--0.5--0.6.sql): loaded from
 *	  the catalog c360.inputs and the mirror tables' columns into the slots of c360_inputs
 *	  after the built-in ones.  The rest of the apply path treats every slot alike.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "core/change.h"

static void load_rows(void);
static int	slot_for(const char *name, Oid relid);

/*
 * A user's input is current while its mirror is the table it was loaded from: dropped
 * and created again under the same name, it is another input (other columns) in a new
 * slot.  Built-in inputs are always current.
 */
bool
c360_input_current(C360InputId input)
{
	const C360Input *in = &c360_inputs[input];
	Oid			nsp;

	if (input < C360_BUILTIN_INPUTS)
		return true;
	if (in->name == NULL)
		return false;
	nsp = get_namespace_oid("c360", true);
	return OidIsValid(nsp) && get_relname_relid(in->name, nsp) == in->relid;
}

/*
 * Load users' inputs, in the caller's transaction: new ones get a slot, dropped ones
 * lose theirs (its name), the others keep theirs.  A database at a version before 0.6
 * has none.
 */
void
c360_inputs_load(void)
{
	SPI_connect();
	if (OidIsValid(get_namespace_oid("c360", true)) &&
		OidIsValid(get_relname_relid("inputs", get_namespace_oid("c360", false))))
		load_rows();
	SPI_finish();
}

/* One row per column of every user's input, in column order. */
static void
load_rows(void)
{
	bool		seen[C360_MAX_INPUTS] = {false};
	int			known = c360_ninputs;	/* slots below this have their columns */
	TupleDesc	desc;

	if (SPI_execute("SELECT i.name, c.oid, a.attname, a.atttypid, a.attnotnull,"
					" a.attname = i.key, a.attname = i.customer_column"
					" FROM c360.inputs i"
					" JOIN pg_class c ON c.relname = i.name AND c.relnamespace = 'c360'::regnamespace"
					" JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
					" WHERE NOT i.builtin ORDER BY i.name, a.attnum", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the inputs catalog");
	desc = SPI_tuptable->tupdesc;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		bool		isnull;
		int			slot = slot_for(SPI_getvalue(tup, desc, 1),
									DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull)));
		C360Input  *in = &c360_inputs[slot];
		C360Column *col;

		seen[slot] = true;
		if (slot < known)
			continue;
		if (in->ncols == C360_MAX_COLS)
			elog(ERROR, "input \"%s\" has more than %d columns", in->name, C360_MAX_COLS);
		col = &in->cols[in->ncols];
		col->name = MemoryContextStrdup(TopMemoryContext, SPI_getvalue(tup, desc, 3));
		col->type = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		col->required = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		if (DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull)))
			in->key_col = in->ncols;
		if (DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull)))
			in->customer_col = in->ncols;
		in->ncols++;
	}
	for (int i = C360_BUILTIN_INPUTS; i < c360_ninputs; i++)
		if (!seen[i])
			c360_inputs[i].name = NULL; /* dropped (or created again: a new slot) */
}

/* The slot of the input with this name and mirror: its own, or a new one. */
static int
slot_for(const char *name, Oid relid)
{
	C360Input  *in;

	for (int i = C360_BUILTIN_INPUTS; i < c360_ninputs; i++)
		if (c360_inputs[i].name && c360_inputs[i].relid == relid &&
			strcmp(c360_inputs[i].name, name) == 0)
			return i;
	if (c360_ninputs == C360_MAX_INPUTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("this session has seen %d inputs created, the most one session can use",
						C360_MAX_INPUTS - C360_BUILTIN_INPUTS),
				 errhint("Reconnect: a new session loads only the inputs that exist.")));
	in = &c360_inputs[c360_ninputs];
	memset(in, 0, sizeof(C360Input));
	in->name = MemoryContextStrdup(TopMemoryContext, name);
	in->relid = relid;
	return c360_ninputs++;
}
