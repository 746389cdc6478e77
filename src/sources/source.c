/*-------------------------------------------------------------------------
 * source.c
 *	  The part of every source worker that does not depend on the wire format: its
 *	  catalog entry, and the flush of a decoded batch through the one apply path,
 *	  with poison rows retried one by one into c360.dead_letters and the counters
 *	  written in the same transaction as the data.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "core/spi.h"
#include "core/erase.h"
#include "sources/source.h"

static int64 apply_one_by_one(C360Source *src, C360Batch *batch);
static bool try_apply(C360Batch *batch, ErrorData **error);
static bool is_data_error(int sqlerrcode);
static void set_last_error(const char *name, const char *message, bool stop);
static void exec_args(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *args,
					  const char *nulls);
static bool exists_args(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types,
						Datum *args);
static bool since_known(void);
static void load_column_map(C360SourceTable *t, const char *json, MemoryContext cxt);

/* The named source and its mapped tables, read in the current transaction. */
C360Source *
c360_source_load(const char *name)
{
	static SPIPlanPtr source_plan;
	static SPIPlanPtr tables_plan[3];	/* by version: a database updated meanwhile */
	static SPIPlanPtr positions_plan;
	MemoryContext cxt = CurrentMemoryContext;
	C360Source *src = palloc0(sizeof(C360Source));
	Oid			types[1] = {TEXTOID};
	Datum		arg = CStringGetTextDatum(name);
	bool		known = since_known();
	int			version = known ? (c360_column_known("source_tables", "column_map") ? 2 : 1) : 0;
	bool		isnull;

	SPI_connect();
	c360_exec(c360_plan(&source_plan, "SELECT kind, options::text, phase, enabled, "
						"last_error IS NOT NULL FROM c360.sources WHERE name = $1", 1, types),
			  &arg, NULL);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("customer360 source \"%s\" does not exist", name)));
	src->name = MemoryContextStrdup(cxt, name);
	src->kind = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	src->phase = MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
	src->enabled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	src->had_error = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	{
		MemoryContext spi = MemoryContextSwitchTo(cxt);

		src->options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														  CStringGetDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2))));
		MemoryContextSwitchTo(spi);
	}

	/* 0.3 has no snapshot_position (all tables stream), no column_map before 0.4 */
	c360_exec(c360_plan(&tables_plan[version], version == 2 ?
						"SELECT remote, input, columns, snapshot_position, column_map::text "
						"FROM c360.source_tables WHERE source = $1 ORDER BY remote" :
						version == 1 ?
						"SELECT remote, input, columns, snapshot_position, NULL::text "
						"FROM c360.source_tables WHERE source = $1 ORDER BY remote" :
						"SELECT remote, input, columns, '', NULL::text FROM c360.source_tables "
						"WHERE source = $1 ORDER BY remote", 1, types), &arg, NULL);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		C360SourceTable *t = MemoryContextAllocZero(cxt, sizeof(C360SourceTable));
		Datum		cols = SPI_getbinval(tup, desc, 3, &isnull);

		t->remote = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 1));
		t->input = c360_input_by_name(SPI_getvalue(tup, desc, 2));
		if (SPI_getvalue(tup, desc, 4) != NULL)
			t->since = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 4));
		if (SPI_getvalue(tup, desc, 5) != NULL)
			load_column_map(t, SPI_getvalue(tup, desc, 5), cxt);
		if (!isnull)
		{
			Datum	   *elems;
			int			n;

			deconstruct_array(DatumGetArrayTypeP(cols), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, NULL, &n);
			for (int i = 0; i < n; i++)
			{
				MemoryContext spi = MemoryContextSwitchTo(cxt);

				t->columns = lappend(t->columns, TextDatumGetCString(elems[i]));
				MemoryContextSwitchTo(spi);
			}
		}
		{
			MemoryContext spi = MemoryContextSwitchTo(cxt);

			src->tables = lappend(src->tables, t);
			MemoryContextSwitchTo(spi);
		}
	}
	c360_exec(c360_plan(&positions_plan, "SELECT part, position FROM c360.source_positions "
						"WHERE source = $1 ORDER BY part", 1, types), &arg, NULL);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		MemoryContext spi = MemoryContextSwitchTo(cxt);
		C360SourcePosition *p = palloc(sizeof(C360SourcePosition));

		p->part = pstrdup(SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1));
		p->position = pstrdup(SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2));
		src->positions = lappend(src->positions, p);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	return src;
}

/*
 * A table's column_map ({"input column": "remote column or path"}) into t->map.  map_table
 * checked it; a key that is no input column (a hand-edited catalog) is refused here too.
 */
static void
load_column_map(C360SourceTable *t, const char *json, MemoryContext cxt)
{
	const C360Input *in = &c360_inputs[t->input];
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			col = -1;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the column mapping of %s (c360.source_tables.column_map) is not a JSON object",
						t->remote)));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *name = pnstrdup(v.val.string.val, v.val.string.len);

			col = c360_column_by_name(in, name);
			if (col < 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("the column mapping of %s names \"%s\", which is no column of input \"%s\"",
								t->remote, name, in->name)));
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString || v.val.string.len == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("the column mapping of %s maps input column \"%s\" to something that is not a column name",
								t->remote, in->cols[col].name)));
			t->map[col] = MemoryContextStrdup(cxt, pnstrdup(v.val.string.val, v.val.string.len));
		}
	}
}

/* The remote column (Kafka: the path) that feeds input column col of the table. */
const char *
c360_source_remote_column(const C360SourceTable *t, int col)
{
	return t->map[col] ? t->map[col] : c360_inputs[t->input].cols[col].name;
}

/*
 * The input column the remote column feeds, or -1.  A column a mapping names feeds the
 * input column mapped to it; an input column that is mapped is fed by nothing else, not
 * even a remote column of its own name.  nocase: names compare without regard to ASCII
 * case (MySQL's column names).
 */
int
c360_source_input_column(const C360SourceTable *t, const char *remote, bool nocase)
{
	const C360Input *in = &c360_inputs[t->input];

	for (int c = 0; c < in->ncols; c++)
		if (t->map[c] && (nocase ? pg_strcasecmp(t->map[c], remote) : strcmp(t->map[c], remote)) == 0)
			return c;
	for (int c = 0; c < in->ncols; c++)
		if (t->map[c] == NULL &&
			(nocase ? pg_strcasecmp(in->cols[c].name, remote) : strcmp(in->cols[c].name, remote)) == 0)
			return c;
	return -1;
}

/* How errors name a remote column: "amount" (mapped to input column "total_amount"). */
char *
c360_source_column_desc(const C360SourceTable *t, int col)
{
	if (t->map[col] == NULL)
		return psprintf("\"%s\"", c360_inputs[t->input].cols[col].name);
	return psprintf("\"%s\" (mapped to input column \"%s\")", t->map[col],
					c360_inputs[t->input].cols[col].name);
}

/*
 * An input column the remote table does not feed (found, the input columns it feeds,
 * lacks it): a mistake when a mapping names it, or when the input requires it.  remote
 * names the table in the message.
 */
void
c360_source_check_column(C360Source *src, C360SourceTable *t, List *found, int c,
						 const char *remote)
{
	const C360Input *in = &c360_inputs[t->input];

	if (list_member_ptr(found, in->cols[c].name))
		return;
	if (t->map[c] != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("input column \"%s\" of input \"%s\" is mapped to column \"%s\", which "
						"source table %s does not have; fix the mapping with c360.map_table(), "
						"then run c360.resume_source('%s')", in->cols[c].name, in->name,
						t->map[c], remote, src->name)));
	if (in->cols[c].required)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("source table %s has no column \"%s\", which input \"%s\" requires",
						remote, in->cols[c].name, in->name)));
}

/* The stored position part as loaded with the source, or NULL. */
char *
c360_source_position(C360Source *src, const char *part)
{
	ListCell   *lc;

	foreach(lc, src->positions)
		if (strcmp(((C360SourcePosition *) lfirst(lc))->part, part) == 0)
			return ((C360SourcePosition *) lfirst(lc))->position;
	return NULL;
}

/* A top-level string option, or dflt when absent. */
char *
c360_source_option(C360Source *src, const char *key, const char *dflt)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&src->options->root, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return dflt ? pstrdup(dflt) : NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" of source \"%s\" must be a string", key, src->name)));
	return NULL;				/* keep compiler quiet */
}

C360SourceTable *
c360_source_table(C360Source *src, const char *remote)
{
	ListCell   *lc;

	foreach(lc, src->tables)
		if (strcmp(((C360SourceTable *) lfirst(lc))->remote, remote) == 0)
			return lfirst(lc);
	return NULL;
}

/*
 * Apply a decoded batch in the current transaction and count it.  A batch that fails on
 * bad data (a value that does not cast, a missing required column) is retried change by
 * change, each in its own subtransaction, and the changes that still fail go to
 * c360.dead_letters with the reason: the stream goes on and loses nothing.  Any other
 * error (lost connection, deadlock) is not the data's fault and propagates.
 */
int64
c360_source_apply(C360Source *src, C360Batch *batch, TimestampTz source_commit_at)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {TEXTOID, INT8OID, TIMESTAMPTZOID};
	Datum		args[3];
	ErrorData  *error;
	int64		n;

	if (try_apply(batch, &error))
		n = batch->nchanges;	/* less what erased customers' tombstones dropped */
	else
		n = apply_one_by_one(src, batch);

	args[0] = CStringGetTextDatum(src->name);
	args[1] = Int64GetDatum(n);
	args[2] = TimestampTzGetDatum(source_commit_at);
	exec_args(&plan,
			  "INSERT INTO c360.source_progress AS p (source, changes_applied, last_applied_at,"
			  " last_source_commit_at) VALUES ($1, $2, clock_timestamp(), $3)"
			  " ON CONFLICT (source) DO UPDATE SET"
			  " changes_applied = p.changes_applied + excluded.changes_applied,"
			  " last_applied_at = excluded.last_applied_at,"
			  " last_source_commit_at = COALESCE(excluded.last_source_commit_at, p.last_source_commit_at)",
			  3, types, args, source_commit_at == 0 ? "  n" : NULL);

	/* the trouble that made the worker restart is over */
	if (src->had_error)
	{
		static SPIPlanPtr clear_plan;

		exec_args(&clear_plan, "UPDATE c360.sources SET last_error = NULL"
				  " WHERE name = $1 AND phase <> 'error'", 1, types, args, NULL);
		src->had_error = false;
	}
	return n;
}

static int64
apply_one_by_one(C360Source *src, C360Batch *batch)
{
	int64		applied = 0;

	for (int i = 0; i < c360_ninputs; i++)
	{
		ListCell   *lc;

		foreach(lc, batch->changes[i])
		{
			C360Change *ch = lfirst(lc);
			C360Batch  *one = c360_apply_begin();
			ErrorData  *error;

			c360_apply_add(one, ch);
			if (try_apply(one, &error))
				applied += one->nchanges;
			else
				c360_source_dead_letter(src, ch->position, c360_change_json(ch), error->message);
		}
	}
	return applied;
}

/* Apply in a subtransaction; false (with the error) when the data was bad. */
static bool
try_apply(C360Batch *batch, ErrorData **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		c360_apply_finish(batch);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		*error = CopyErrorData();
		if (!is_data_error((*error)->sqlerrcode))
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

static bool
is_data_error(int sqlerrcode)
{
	return ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_DATA_EXCEPTION ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION;
}

void
c360_source_dead_letter(C360Source *src, const char *position, const char *payload,
						const char *error)
{
	static SPIPlanPtr plan;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[4] = {CStringGetTextDatum(src->name), position ? CStringGetTextDatum(position) : 0,
	payload ? CStringGetTextDatum(payload) : 0, CStringGetTextDatum(error)};
	char		nulls[5] = {' ', position ? ' ' : 'n', payload ? ' ' : 'n', ' ', '\0'};

	/* late data for an erased customer is dropped, even when it is bad */
	if (c360_erase_names_erased(payload, error))
		return;
	exec_args(&plan, "INSERT INTO c360.dead_letters (source, position, payload, error)"
			  " VALUES ($1, $2, $3, $4)", 4, types, args, nulls);
}

void
c360_source_set_phase(C360Source *src, const char *phase)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2] = {CStringGetTextDatum(src->name), CStringGetTextDatum(phase)};

	exec_args(&plan, "UPDATE c360.sources SET phase = $2, last_error = NULL WHERE name = $1",
			  2, types, args, NULL);
	src->phase = pstrdup(phase);
}

void
c360_source_set_columns(C360Source *src, C360SourceTable *t, List *columns)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTARRAYOID};
	Datum		args[3] = {CStringGetTextDatum(src->name), CStringGetTextDatum(t->remote),
	c360_text_array(columns)};

	MemoryContext old;
	ListCell   *lc;

	exec_args(&plan, "UPDATE c360.source_tables SET columns = $3 WHERE source = $1 AND remote = $2",
			  3, types, args, NULL);

	/* t outlives this transaction: keep the names where t lives */
	old = MemoryContextSwitchTo(GetMemoryChunkContext(t));
	t->columns = NIL;
	foreach(lc, columns)
		t->columns = lappend(t->columns, pstrdup(lfirst(lc)));
	MemoryContextSwitchTo(old);
}

/*
 * Whether nothing but this table feeds its input (no other source, no other table of this
 * one): only then may its snapshot replace all the input's rows.
 */
bool
c360_source_sole_feed(C360Source *src, C360SourceTable *t)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3] = {CStringGetTextDatum(src->name),
		CStringGetTextDatum(c360_inputs[t->input].name), CStringGetTextDatum(t->remote)};

	return !exists_args(&plan, "SELECT 1 FROM c360.source_tables WHERE input = $2"
						" AND (source, remote) <> ($1, $3) LIMIT 1", 3, types, args);
}

/*
 * The table's snapshot is in this transaction: its changes apply from position on.  Only
 * while it still feeds the input that was copied: a map_table that moved it to another
 * input meanwhile (and waited for this row) leaves it to be copied again.
 */
void
c360_source_set_since(C360Source *src, C360SourceTable *t, const char *position)
{
	static SPIPlanPtr plan;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[4] = {CStringGetTextDatum(src->name), CStringGetTextDatum(t->remote),
		CStringGetTextDatum(c360_inputs[t->input].name), CStringGetTextDatum(position)};
	MemoryContext old;

	if (!since_known())
		return;
	exec_args(&plan, "UPDATE c360.source_tables SET snapshot_position = $4"
			  " WHERE source = $1 AND remote = $2 AND input = $3", 4, types, args, NULL);
	old = MemoryContextSwitchTo(GetMemoryChunkContext(t));
	t->since = pstrdup(position);
	MemoryContextSwitchTo(old);
}

/*
 * Whether the source's mapping is no longer the one src holds, as far as a streaming
 * worker must act on it: a table mapped (or moved to another input) since src was
 * loaded, which needs its own snapshot.  Run in a transaction.
 */
bool
c360_source_mapping_moved(C360Source *src)
{
	C360Source *now = c360_source_load(src->name);
	ListCell   *lc;

	foreach(lc, now->tables)
	{
		C360SourceTable *t = lfirst(lc);
		C360SourceTable *had = c360_source_table(src, t->remote);

		if (t->since == NULL || had == NULL || had->input != t->input)
			return true;
	}
	return false;
}

/* A database still at version 0.3 or older has no snapshot_position: all tables stream. */
static bool
since_known(void)
{
	return c360_column_known("source_tables", "snapshot_position");
}

/* Remember that the source created object on the remote side, for drop_source to remove. */
void
c360_source_mark_created(C360Source *src, const char *object)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2] = {CStringGetTextDatum(src->name), CStringGetTextDatum(object)};

	exec_args(&plan, "UPDATE c360.sources SET created_objects = created_objects ||"
			  " jsonb_build_object($2::text, true) WHERE name = $1", 2, types, args, NULL);
}

/* Whether the source created object on the remote side (c360_source_mark_created). */
bool
c360_source_created(C360Source *src, const char *object)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2] = {CStringGetTextDatum(src->name), CStringGetTextDatum(object)};

	return exists_args(&plan, "SELECT 1 FROM c360.sources WHERE name = $1"
					   " AND created_objects ? $2", 2, types, args);
}

void
c360_source_save_position(C360Source *src, const char *part, const char *position)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3] = {CStringGetTextDatum(src->name), CStringGetTextDatum(part),
	CStringGetTextDatum(position)};

	exec_args(&plan, "INSERT INTO c360.source_positions AS p (source, part, position)"
			  " VALUES ($1, $2, $3) ON CONFLICT (source, part) DO UPDATE SET position = excluded.position",
			  3, types, args, NULL);
}

/*
 * Record a worker's failure in its own transaction (the failed one is gone).  With stop,
 * the source goes to phase 'error' and stays there, position unmoved, until
 * c360.resume_source(); without, the launcher restarts the worker with back-off.
 */
void
c360_source_record_error(const char *name, const char *message, bool stop)
{
	set_last_error(name, message, stop);
	elog(LOG, "c360 source \"%s\" %s: %s", name, stop ? "stopped in state error" : "failed", message);
}

/* Trouble the worker works through (a broker away, messages lost to retention): shown only. */
void
c360_source_record_trouble(const char *name, const char *message)
{
	set_last_error(name, message, false);
	elog(LOG, "c360 source \"%s\": %s", name, message);
}

static void
set_last_error(const char *name, const char *message, bool stop)
{
	static SPIPlanPtr plan;
	Oid			types[3] = {TEXTOID, TEXTOID, BOOLOID};
	Datum		args[3];

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	args[0] = CStringGetTextDatum(name);
	args[1] = CStringGetTextDatum(message);
	args[2] = BoolGetDatum(stop);
	exec_args(&plan, "UPDATE c360.sources SET last_error = $2,"
			  " resume_phase = CASE WHEN $3 AND phase <> 'error' THEN phase ELSE resume_phase END,"
			  " phase = CASE WHEN $3 THEN 'error' ELSE phase END WHERE name = $1",
			  3, types, args, NULL);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static void
exec_args(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *args,
		  const char *nulls)
{
	SPI_connect();
	c360_exec(c360_plan(cache, sql, nargs, types), args, nulls);
	SPI_finish();
}

/* Whether the query finds a row. */
static bool
exists_args(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *args)
{
	bool		found;

	SPI_connect();
	c360_exec(c360_plan(cache, sql, nargs, types), args, NULL);
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}
