/*-------------------------------------------------------------------------
 * maintain.c
 *	  The incremental maintainer.  The dirty customers of a batch are locked in one
 *	  fixed order, their profile rows are recomputed by one set-based statement from
 *	  the indexed mirrors, and only rows that really differ are written.  Also tick
 *	  (the clock moves forward) and rebuild.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "core/clock.h"
#include "core/columns.h"
#include "core/customer360.h"
#include "core/maintain.h"
#include "core/rollup.h"
#include "core/segment.h"
#include "core/spi.h"
#include "core/traits.h"

/*
 * A batch of at most this many customers locks each of them; a larger one (a snapshot, a
 * backfill chunk) locks all customers at once.  It bounds the entries a batch takes in the
 * server's shared lock table (README, "How it works", Concurrency).
 */
#define C360_CUSTOMER_LOCKS	1024

static int	cmp_int(const void *a, const void *b);
static char *rebuild_chunk(const char *last, const C360Clock *clock, int64 *changed);
static void split_dirty(const C360Dirty *dirty, List **full, List **recount, List **behaviour,
						List **timed);

static SPIPlanPtr lock_ids_plan;

/*
 * Order changes by difference (src/core/orders_sql.c), once their customers are locked:
 * adds the rows written to changed, and the customers it could not bring up to date
 * exactly to dirty->full.  After a truncation of orders every customer is recomputed.
 */
static List *
orders_delta(C360Dirty *dirty, const C360Clock *clock, List *changed)
{
	static SPIPlanPtr plan;
	const C360Input *in = &c360_inputs[C360_ORDERS];
	Oid			types[FUNC_MAX_ARGS] = {TEXTARRAYOID};
	Datum		args[FUNC_MAX_ARGS];
	int			nargs;

	if (dirty->order_ids == NIL)
		return changed;
	if (dirty->truncated[C360_ORDERS])
	{
		dirty->full = list_concat(dirty->full, dirty->order_ids);
		return changed;
	}
	/* $1 the customers recomputed in full anyway, $2.. the windows' bounds and the zone,
	 * then the images */
	args[0] = c360_text_array(dirty->full);
	nargs = 1 + c360_profile_bounds(clock, &args[1], &types[1]);
	for (int col = 0; col < in->ncols; col++)
		for (int img = 0; img < 2; img++)
		{
			args[nargs] = dirty->order_images[2 * col + img];
			types[nargs++] = get_array_type(in->cols[col].type);
		}
	c360_exec(c360_plan(&plan, c360_profile_statement(C360_ORDERS_DELTA, false), nargs, types),
			  args, NULL);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		char	   *id = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull)))
			changed = lappend(changed, id);
		else
			dirty->full = lappend(dirty->full, id);
	}
	return changed;
}

/* One of the maintainer's statements (src/core/profile_sql.c), in its small or bulk form. */
static List *
exec_profile(SPIPlanPtr *plan, C360ProfileStatement which, int n, int nargs, Oid *types,
			 Datum *args, List *changed)
{
	const char *sql[2] = {c360_profile_statement(which, false),
	c360_profile_statement(which, true)};

	return c360_exec_sized(plan, sql, n, nargs, types, args, changed);
}

/*
 * Bring the profile rows of the dirty customers up to date.  Unless the caller holds the
 * clock lock exclusively, lock the customers first, in one global order, so that two
 * concurrent batches touching the same customer recompute one after the other and the
 * second sees the first's committed rows.  Segments then see only the rows that really
 * changed.  Returns the number of profile rows written or deleted.
 */
int64
c360_maintain_refresh(C360Dirty *dirty, const C360Clock *clock, bool exclusive)
{
	static SPIPlanPtr plans[3];
	Oid			types[FUNC_MAX_ARGS] = {TEXTARRAYOID};
	Datum		args[FUNC_MAX_ARGS];
	int			nargs;
	List	   *changed = dirty->written;
	List	   *full = NIL;
	List	   *recount = NIL;
	List	   *behaviour = NIL;
	List	   *timed = NIL;
	List	   *traits = NIL;	/* customers whose traits over some input may change */

	for (int i = 0; i < c360_ninputs; i++)
		traits = list_concat(traits, dirty->inputs[i]);
	if (dirty->full == NIL && dirty->behaviour == NIL && dirty->timed == NIL &&
		dirty->written == NIL && traits == NIL)
		return 0;
	if (!exclusive && !dirty->locked)
		c360_maintain_lock(c360_text_array(list_concat(list_concat(list_concat_copy(dirty->full,
																					dirty->behaviour),
																   dirty->timed), traits)));
	changed = orders_delta(dirty, clock, changed);
	split_dirty(dirty, &full, &recount, &behaviour, &timed);

	/* $1 the customers, then the windows' bounds and the zone, then (full) the recounted */
	nargs = 1 + c360_profile_bounds(clock, &args[1], &types[1]);
	if (full != NIL)
	{
		args[0] = c360_text_array(full);
		args[nargs] = c360_text_array(recount);
		types[nargs] = TEXTARRAYOID;
		changed = exec_profile(&plans[0], C360_REFRESH_FULL, list_length(full), nargs + 1,
							   types, args, changed);
	}
	if (behaviour != NIL)
	{
		args[0] = c360_text_array(behaviour);
		changed = exec_profile(&plans[1], C360_REFRESH_BEHAVIOUR, list_length(behaviour), nargs,
							   types, args, changed);
	}
	if (timed != NIL)
	{
		args[0] = c360_text_array(timed);
		changed = exec_profile(&plans[2], C360_REFRESH_TIME, list_length(timed), nargs,
							   types, args, changed);
	}
	changed = c360_traits_refresh(dirty, clock, changed);
	/* a row written by difference may have been refreshed as well: count it once */
	changed = c360_distinct_ids(changed, c360_id_set());
	c360_segments_refresh(changed);
	return list_length(changed);
}

/*
 * The dirty customers, each once: those recomputed in full, those of them whose behaviour
 * must be recounted too, those that need only their behaviour recomputed, and those for
 * whom only time passed.  A timed customer that is also recomputed in full is recounted
 * (a full recompute trusts the stored event expiry, which time may have moved).
 */
static void
split_dirty(const C360Dirty *dirty, List **full, List **recount, List **behaviour,
			List **timed)
{
	HTAB	   *full_set = c360_id_set();
	HTAB	   *behaviour_set = c360_id_set();
	ListCell   *lc;

	*full = c360_distinct_ids(dirty->full, full_set);
	foreach(lc, c360_distinct_ids(dirty->behaviour, behaviour_set))
	{
		char	   *id = lfirst(lc);

		if (hash_search(full_set, &id, HASH_FIND, NULL) != NULL)
			*recount = lappend(*recount, id);
		else
			*behaviour = lappend(*behaviour, id);
	}
	foreach(lc, c360_distinct_ids(dirty->timed, c360_id_set()))
	{
		char	   *id = lfirst(lc);

		if (hash_search(behaviour_set, &id, HASH_FIND, NULL) != NULL)
			continue;			/* recounted already */
		if (hash_search(full_set, &id, HASH_FIND, NULL) != NULL)
			*recount = lappend(*recount, id);
		else
			*timed = lappend(*timed, id);
	}
}

/*
 * Customer locks are advisory so that they also cover customers with no profile row yet.
 * Two levels, so that a batch of any size takes a bounded number of entries: every batch
 * takes the all-customers lock, shared by a batch of at most C360_CUSTOMER_LOCKS customers,
 * which then locks each of them (by a 32-bit hash of the id), and exclusively by a larger
 * one, which takes nothing more.  Batches of different customers so run side by side (two
 * sources on a topic's partitions, keyed by customer).  Taken in one order, the
 * all-customers lock first and then ascending hashes: two batches can wait on each other
 * only in one direction.
 */
void
c360_maintain_lock(Datum ids)
{
	Oid			types[1] = {TEXTARRAYOID};
	int		   *keys;
	int			n;

	c360_exec(c360_plan(&lock_ids_plan, "SELECT DISTINCT x FROM unnest($1::text[]) x", 1, types),
			  &ids, NULL);
	n = SPI_processed;
	if (n > C360_CUSTOMER_LOCKS)
	{
		DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(C360_LOCK_CUSTOMERS),
							Int32GetDatum(0));
		return;
	}
	DirectFunctionCall2(pg_advisory_xact_lock_shared_int4, Int32GetDatum(C360_LOCK_CUSTOMERS),
						Int32GetDatum(0));
	keys = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
	{
		char	   *id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		keys[i] = id ? (int) hash_bytes((const unsigned char *) id, strlen(id)) : 0;
	}
	qsort(keys, n, sizeof(int), cmp_int);
	for (int i = 0; i < n; i++)
		if (i == 0 || keys[i] != keys[i - 1])
			DirectFunctionCall2(pg_advisory_xact_lock_int4,
								Int32GetDatum(C360_LOCK_CUSTOMER), Int32GetDatum(keys[i]));
}

static int
cmp_int(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return (x > y) - (x < y);
}

/*
 * Move the clock to `to` and bring every time-dependent column up to date.  A `to` before
 * the clock is an error when strict, else (the ticker, behind a test's explicit clock) a
 * no-op.  Window
 * membership is not monotone in time (a DST fall-back moves as_of - 30 days back by an
 * hour), so the rows to recompute are found exactly: the events and last orders lying
 * between the old and the new bound of each window, whichever way it moved.
 */
int64
c360_maintain_tick(TimestampTz to, bool strict)
{
	static SPIPlanPtr set_plan;
	static SPIPlanPtr band_plan;
	Oid			set_types[1] = {TIMESTAMPTZOID};
	Oid			band_types[FUNC_MAX_ARGS];
	Datum		old_bounds[FUNC_MAX_ARGS];
	Datum		new_bounds[FUNC_MAX_ARGS];
	int			nbounds;
	C360Clock	from;
	C360Clock	clock;
	Datum		args[FUNC_MAX_ARGS];
	C360Dirty	dirty = {0};
	int64		changed;

	SPI_connect();
	c360_clock_lock(true, &from);
	if (to < from.as_of && strict)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot move the profile clock back from %s to %s",
						pstrdup(timestamptz_to_str(from.as_of)), pstrdup(timestamptz_to_str(to))),
				 errhint("c360.tick() only moves forward; c360.as_of() is the current instant.")));
	if (to <= from.as_of)
	{
		SPI_finish();
		return 0;
	}
	clock = from;
	clock.as_of = to;
	c360_clock_bounds(&clock);

	args[0] = TimestampTzGetDatum(to);
	c360_exec(c360_plan(&set_plan, "UPDATE c360.clock SET as_of = $1", 1, set_types), args, NULL);

	c360_rollup_shift(from.d30, clock.d30, &dirty);

	/* rows whose stage a window's bound crossed: only time passed for those customers */
	nbounds = c360_profile_bounds(&from, old_bounds, band_types) - 1;
	c360_profile_bounds(&clock, new_bounds, band_types);
	for (int w = 0; w < nbounds; w++)
	{
		args[2 * w] = TimestampTzGetDatum(Min(DatumGetTimestampTz(old_bounds[w]),
											  DatumGetTimestampTz(new_bounds[w])));
		args[2 * w + 1] = TimestampTzGetDatum(Max(DatumGetTimestampTz(old_bounds[w]),
												  DatumGetTimestampTz(new_bounds[w])));
		band_types[2 * w] = band_types[2 * w + 1] = TIMESTAMPTZOID;
	}
	dirty.timed = c360_exec_ids(c360_plan(&band_plan, c360_profile_statement(C360_TICK_BAND, false),
										  2 * nbounds, band_types),
								args, NULL, dirty.timed);

	c360_traits_tick(&from, &clock, &dirty);

	changed = c360_maintain_refresh(&dirty, &clock, true);
	SPI_finish();
	return changed;
}

/* Recompute every derived row from the mirrors; returns the profile rows that changed. */
int64
c360_maintain_rebuild(void)
{
	C360Clock	clock;
	int64		changed = 0;
	char	   *last = NULL;

	SPI_connect();
	c360_clock_lock(true, &clock);
	c360_rollup_rebuild();
	do
		last = rebuild_chunk(last, &clock, &changed);
	while (last != NULL);
	SPI_finish();
	return changed;
}

/*
 * Recompute the customers after `last` (NULL: from the first), at most c360.rebuild_chunk
 * of c360.customers and the profile rows between them, in an SPI connection of its own, so
 * that a rebuild's memory stays that of one chunk (a single statement over 10,000,000
 * customers took 14 GB).  A chunk's statement is planned for its size, which for a large
 * one means passes over the mirrors and the profile (hash joins, a hashed = ANY), so chunks
 * are large: about 1.4 KB of memory a customer, against one more pass over the tables.
 * Returns the last customer done, in the caller's memory, or NULL after the last chunk.
 */
static char *
rebuild_chunk(const char *last, const C360Clock *clock, int64 *changed)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	const char *after = last ? "customer_id > $1" : "customer_id >= $1";
	char	   *bound = NULL;
	char	   *range;
	C360Dirty	all = {0};

	SPI_connect();
	args[0] = CStringGetTextDatum(last ? last : "");
	c360_exec_bulk(psprintf("SELECT customer_id FROM c360.customers WHERE %s"
							" ORDER BY customer_id OFFSET %d LIMIT 1", after, c360_rebuild_chunk - 1),
				   1, types, args, NIL);
	if (SPI_processed == 1)
	{
		bound = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 1));
		args[1] = CStringGetTextDatum(bound);
	}
	/* the last chunk also takes the profile rows past the last customer */
	range = bound ? psprintf("%s AND customer_id <= $2", after) : pstrdup(after);
	all.full = c360_exec_bulk(psprintf("SELECT customer_id FROM c360.customers WHERE %1$s"
									   " UNION SELECT customer_id FROM c360.customer_360 WHERE %1$s",
									   range), bound ? 2 : 1, types, args, NIL);
	all.behaviour = all.full;	/* the stored behaviour is what a rebuild distrusts */
	all.inputs[C360_CUSTOMERS] = all.full;	/* and every trait */
	*changed += c360_maintain_refresh(&all, clock, true);
	SPI_finish();
	return bound;
}

/*
 * A backfill chunk holds its customers' locks (all customers', for a chunk of more than
 * C360_CUSTOMER_LOCKS), so sources wait for it: its size adapts, per process (the ticker,
 * a session running CALL backfill_traits()), so that a chunk takes about CHUNK_MS, as a
 * source's batch does, and is at most c360.trait_backfill_chunk rows.
 */
#define CHUNK_MS 100
static int	chunk_rows;			/* 0: no chunk measured yet */

/*
 * Backfill the traits still backfilling, all in one pass: the next chunk of profile rows
 * (sized as above) in customer_id order after the
 * least-advanced trait's last one, or, when all_at_once (create_trait on a small profile, holding the
 * clock), every row.  Only the backfilling traits are computed, in one statement
 * (src/core/reference.c, c360_backfill_sql).  A
 * chunk holds the clock shared and its customers' locks, as one batch does, so sources and
 * the ticker wait for at most about one batch.  Rows a batch touches meanwhile get the
 * traits from the maintainer, which maintains backfilling traits too.  Returns the rows
 * computed, or -1 when no trait is backfilling.
 */
int64
c360_maintain_backfill(bool all_at_once)
{
	static SPIPlanPtr lock_plan;
	static SPIPlanPtr cursor_plan;
	static SPIPlanPtr first_plan;
	static SPIPlanPtr next_plan;
	static SPIPlanPtr done_plan;
	Oid			types[4] = {TEXTOID, INT4OID, BOOLOID, INT8OID};
	Datum		args[4];
	C360Clock	clock;
	char	   *through;
	List	   *names;
	List	   *ids;
	int64		n;
	int			rows;
	TimestampTz start = GetCurrentTimestamp();

	SPI_connect();
	if (!c360_traits_known())
	{
		SPI_finish();
		return -1;
	}
	c360_clock_lock(all_at_once, &clock);
	/* one backfill at a time: the ticker's and a CALL backfill_traits() wait for each other */
	c360_exec(c360_plan(&lock_plan, "SELECT 1 FROM c360.column_catalog WHERE state = 'backfilling'"
						" FOR UPDATE", 0, NULL), NULL, NULL);
	/* the least-advanced trait first: the chunk starts after its last row */
	names = c360_exec_ids(c360_plan(&cursor_plan, "SELECT name, backfilled_through"
									" FROM c360.column_catalog WHERE state = 'backfilling'"
									" ORDER BY backfilled_through NULLS FIRST", 0, NULL),
						  NULL, NULL, NIL);
	if (names == NIL)
	{
		SPI_finish();
		return -1;
	}
	through = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	/* the first chunk is c360.trait_backfill_chunk trait values, whatever the traits */
	rows = chunk_rows > 0 ? chunk_rows :
		Max(C360_MIN_CHUNK, c360_trait_backfill_chunk / list_length(names));

	args[0] = through ? CStringGetTextDatum(through) : (Datum) 0;
	args[1] = Int32GetDatum(all_at_once ? INT_MAX : rows);
	if (through == NULL)
		ids = c360_exec_ids(c360_plan(&first_plan, "SELECT customer_id FROM c360.customer_360"
									  " ORDER BY customer_id LIMIT $2", 2, types), args, NULL, NIL);
	else
		ids = c360_exec_ids(c360_plan(&next_plan, "SELECT customer_id FROM c360.customer_360"
									  " WHERE customer_id > $1 ORDER BY customer_id LIMIT $2",
									  2, types), args, NULL, NIL);
	n = list_length(ids);
	if (!all_at_once && ids != NIL)
		c360_maintain_lock(c360_text_array(ids));
	c360_segments_refresh(c360_traits_backfill(names, ids, &clock));

	/*
	 * Each trait counts the rows past its own last one (all of them, unless it is ahead
	 * of the chunk's first id: only then are the ids compared); at the end, all are ready.
	 */
	args[0] = c360_text_array(ids);
	args[1] = ids != NIL ? CStringGetTextDatum(llast(ids)) : CStringGetTextDatum("");
	args[2] = BoolGetDatum(all_at_once || n < rows);
	args[3] = Int64GetDatum(n);
	types[0] = TEXTARRAYOID;
	types[1] = TEXTOID;
	c360_exec(c360_plan(&done_plan, "UPDATE c360.column_catalog SET"
						" backfilled = backfilled + CASE WHEN backfilled_through IS NULL"
						"   OR backfilled_through < $1[1] THEN $4"
						"   ELSE (SELECT count(*) FROM unnest($1::text[]) x WHERE x > backfilled_through) END,"
						" backfilled_through = CASE WHEN $3 THEN NULL"
						"   ELSE greatest(backfilled_through, $2) END,"
						" state = CASE WHEN $3 THEN 'ready' ELSE state END"
						" WHERE state = 'backfilling'", 4, types), args, NULL);
	SPI_finish();
	if (!all_at_once && n > 0)
	{
		long		ms = Max(1, (GetCurrentTimestamp() - start) / 1000);

		chunk_rows = Max(C360_MIN_CHUNK, Min(c360_trait_backfill_chunk, (int) (n * CHUNK_MS / ms)));
	}
	return n;
}
