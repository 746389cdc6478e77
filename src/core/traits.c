/*-------------------------------------------------------------------------
 * traits.c
 *	  Computed traits (docs/ARCHITECTURE.md, "Computed traits").  Each trait is a
 *	  row of c360.column_catalog: an aggregate over one input, with an optional
 *	  filter and lookback window.  From those rows this file generates, per input,
 *	  the statement that recomputes every trait over that input for a set of
 *	  customers, the statement that finds whose windowed traits a tick changes, and
 *	  the independent reference query verify() compares with.  The generated text is
 *	  what runs; c360.trait_statements() shows it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "core/columns_sql.h"
#include "core/rollup.h"
#include "core/spi.h"
#include "core/traits.h"

/* The generated statements of one input, for the catalog version they were made from. */
typedef struct InputStatements
{
	List	   *traits;			/* C360Trait *, this input's */
	char	   *refresh[2];		/* small and bulk forms */
	SPIPlanPtr	refresh_plan;
	char	   *tick;			/* NULL: no windowed trait */
	SPIPlanPtr	tick_plan;
	List	   *parted;			/* the inputs with a part of next_change_at (0.11 on) */
	char	   *events_delta;	/* events: new events, with the event traits folded in */
	List	   *delta_lookbacks;
	SPIPlanPtr	delta_plan;
} InputStatements;

static MemoryContext traits_cxt;
static Oid	loaded_catalog = InvalidOid;
static int64 loaded_version = -1;
static List *loaded_traits;
static InputStatements statements[C360_MAX_INPUTS];

static List *read_catalog(void);
static void forget(void);
static void forget_on_abort(XactEvent event, void *arg);
static InputStatements *input_statements(const C360Clock *clock, C360InputId input);
static char *refresh_sql(C360InputId input, List *traits, bool bulk, List *parted);
static char *tick_sql(C360InputId input, List *traits);
static List *input_traits(List *traits, C360InputId input, bool ready);
static Datum *window_bounds(List *traits, const C360Clock *clock, Datum *args, Oid *types);
static const char *common_window(List *traits);
static bool named_in(List *names, const char *name);
static int	refresh_args(List *traits, List *ids, const C360Clock *clock, Datum *args,
						 Oid *types);

/* c360.column_catalog, or InvalidOid before version 0.5 */
static Oid
catalog_relid(void)
{
	Oid			nsp = get_namespace_oid("c360", true);

	return OidIsValid(nsp) ? get_relname_relid("column_catalog", nsp) : InvalidOid;
}

bool
c360_traits_known(void)
{
	return OidIsValid(catalog_relid());
}

/*
 * The traits, as of the clock's catalog version, cached per backend: a batch reads the
 * version with the clock, and only a new version (create_trait, drop_trait) reloads.
 * Before version 0.5 there is no catalog and no trait.
 */
List *
c360_traits_load(const C360Clock *clock)
{
	Oid			catalog = catalog_relid();
	MemoryContext old;

	if (!OidIsValid(catalog))
		return NIL;
	if (catalog == loaded_catalog && clock->catalog_version == loaded_version)
		return loaded_traits;
	forget();
	if (traits_cxt == NULL)
	{
		traits_cxt = AllocSetContextCreate(TopMemoryContext, "c360 traits",
										   ALLOCSET_SMALL_SIZES);
		RegisterXactCallback(forget_on_abort, NULL);
	}
	old = MemoryContextSwitchTo(traits_cxt);
	loaded_traits = read_catalog();
	MemoryContextSwitchTo(old);
	loaded_catalog = catalog;
	loaded_version = clock->catalog_version;
	return loaded_traits;
}

/* Every trait, in creation order, allocated in the current memory context. */
static List *
read_catalog(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *traits = NIL;
	/*
	 * Not read-only: a batch that waited on the clock lock for create_trait or drop_trait
	 * must see the catalog that committed meanwhile (a read-only statement would reuse the
	 * snapshot from before the wait), as it sees the catalog version.
	 */
	int			rc = SPI_execute("SELECT name, input, func, arg, order_by, descending, filter,"
								 " lookback, time_column, state = 'ready', type"
								 " FROM c360.column_catalog ORDER BY created_at, name",
								 false, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read c360.column_catalog: %s", SPI_result_code_string(rc));
	/* SPI returns in its own context: the list is the caller's */
	MemoryContextSwitchTo(cxt);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	row = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		C360Trait  *t = MemoryContextAllocZero(cxt, sizeof(C360Trait));
		bool		isnull;
		Datum		lookback;
		char	   *v;

#define FIELD(n) ((v = SPI_getvalue(row, desc, n)) ? MemoryContextStrdup(cxt, v) : NULL)
		t->name = FIELD(1);
		t->input = c360_input_by_name(SPI_getvalue(row, desc, 2));
		t->func = FIELD(3);
		t->arg = FIELD(4);
		t->order_by = FIELD(5);
		t->descending = DatumGetBool(SPI_getbinval(row, desc, 6, &isnull));
		t->filter = FIELD(7);
		lookback = SPI_getbinval(row, desc, 8, &isnull);
		if (!isnull)
		{
			t->lookback = MemoryContextAlloc(cxt, sizeof(Interval));
			memcpy(t->lookback, DatumGetIntervalP(lookback), sizeof(Interval));
		}
		t->time_column = FIELD(9);
		t->ready = DatumGetBool(SPI_getbinval(row, desc, 10, &isnull));
		t->type = FIELD(11);
		/* count gives 0 when there are no rows; every other aggregate NULL */
		t->fill = strncmp(t->func, "count", 5) == 0 ? "0" : NULL;
#undef FIELD
		traits = lappend(traits, t);
	}
	return traits;
}

static void
forget(void)
{
	for (int i = 0; i < c360_ninputs; i++)
	{
		if (statements[i].refresh_plan)
			SPI_freeplan(statements[i].refresh_plan);
		if (statements[i].tick_plan)
			SPI_freeplan(statements[i].tick_plan);
		if (statements[i].delta_plan)
			SPI_freeplan(statements[i].delta_plan);
	}
	memset(statements, 0, sizeof(statements));
	if (traits_cxt)
		MemoryContextReset(traits_cxt);
	loaded_traits = NIL;
	loaded_catalog = InvalidOid;
	loaded_version = -1;
}

/*
 * A catalog version read in a transaction that rolled back (a create_trait that failed)
 * may be handed out again for another catalog: forget what was loaded under it.  Plans are
 * left alone here (no SPI at abort); the next load frees them.
 */
static void
forget_on_abort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		loaded_version = -1;
}

static InputStatements *
input_statements(const C360Clock *clock, C360InputId input)
{
	List	   *traits = c360_traits_load(clock);	/* first: a new version resets statements */
	InputStatements *st = &statements[input];
	ListCell   *lc;
	MemoryContext old;

	if (st->refresh[0] != NULL)
		return st;
	old = MemoryContextSwitchTo(traits_cxt);
	st->traits = NIL;
	foreach(lc, traits)
		if (((C360Trait *) lfirst(lc))->input == input)
			st->traits = lappend(st->traits, lfirst(lc));
	if (st->traits != NIL)
	{
		st->parted = c360_parts_known() ? c360_parted_inputs(traits) : NIL;
		st->refresh[0] = refresh_sql(input, st->traits, false, st->parted);
		st->refresh[1] = refresh_sql(input, st->traits, true, st->parted);
		st->tick = tick_sql(input, st->traits);
	}
	MemoryContextSwitchTo(old);
	return st;
}

/*
 * The statement that inserts a batch's new events and updates their owners by difference,
 * with this catalog version's event traits in the same write (src/core/profile_sql.c,
 * c360_events_delta_sql); NULL when there is no event trait (the built-in statement
 * serves).  *lookbacks are the traits' windows, its last parameters; *plan its plan slot.
 */
const char *
c360_traits_events_delta(const C360Clock *clock, List **lookbacks, SPIPlanPtr **plan)
{
	InputStatements *st;
	MemoryContext old;

	if (c360_traits_load(clock) == NIL)
		return NULL;
	st = input_statements(clock, C360_BEHAVIORAL_EVENTS);
	if (st->traits == NIL)
		return NULL;
	if (st->events_delta == NULL)
	{
		old = MemoryContextSwitchTo(traits_cxt);
		st->events_delta = c360_events_delta_sql(st->traits, c360_parts_known(),
												 &st->delta_lookbacks);
		MemoryContextSwitchTo(old);
	}
	*lookbacks = st->delta_lookbacks;
	*plan = &st->delta_plan;
	return st->events_delta;
}

/*
 * Recompute every trait over one input for the customers in ids, as of the clock, and
 * write the rows whose values changed.  Appends the written customers to changed.
 */
List *
c360_traits_recompute(C360InputId input, List *ids, const C360Clock *clock, List *changed)
{
	InputStatements *st;
	Datum		args[FUNC_MAX_ARGS];
	Oid			types[FUNC_MAX_ARGS];
	int			nargs;

	if (c360_traits_load(clock) == NIL)
		return changed;
	st = input_statements(clock, input);
	if (st->traits == NIL || ids == NIL)
		return changed;
	/* the bulk form does not dedupe: a customer twice would be aggregated twice */
	ids = c360_distinct_ids(ids, c360_id_set());
	nargs = refresh_args(st->traits, ids, clock, args, types);
	return c360_exec_sized(&st->refresh_plan, (const char *const *) st->refresh,
						   list_length(ids), nargs, types, args, changed);
}

/*
 * Compute the named traits (those backfilling) for the customers in ids (distinct, in
 * customer_id order), all in one statement that reads each input's rows of the ids'
 * range (src/core/reference.c, c360_backfill_sql).  Returns the customers written.
 */
List *
c360_traits_backfill(List *names, List *ids, const C360Clock *clock)
{
	List	   *traits = NIL;
	List	   *lookbacks;
	ListCell   *lc;
	Datum		args[FUNC_MAX_ARGS];
	Oid			types[FUNC_MAX_ARGS] = {TEXTARRAYOID, TEXTOID, TEXTOID, TEXTOID};
	int			nargs;
	char	   *sql;

	if (ids == NIL)
		return NIL;
	foreach(lc, c360_traits_load(clock))
		if (named_in(names, ((C360Trait *) lfirst(lc))->name))
		traits = lappend(traits, lfirst(lc));
	if (traits == NIL)
		return NIL;
	sql = c360_backfill_sql(traits, c360_parts_known(), &lookbacks);
	args[0] = c360_text_array(ids);
	args[1] = CStringGetTextDatum(linitial(ids));
	args[2] = CStringGetTextDatum(llast(ids));
	args[3] = CStringGetTextDatum(clock->time_zone);
	nargs = 4 + c360_window_args(lookbacks, clock, &args[4], &types[4]);
	return c360_exec_bulk(sql, nargs, types, args, NIL);
}

static bool
named_in(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

/*
 * The parameters of a refresh statement: the customers, each windowed trait's bound, the
 * earliest bound when every trait has a window on one column, and the profile's zone.
 * Returns their number.
 */
static int
refresh_args(List *traits, List *ids, const C360Clock *clock, Datum *args, Oid *types)
{
	int			nargs;

	args[0] = c360_text_array(ids);
	types[0] = TEXTARRAYOID;
	nargs = 1 + (window_bounds(traits, clock, &args[1], &types[1]) - &args[1]);
	if (common_window(traits) != NULL)
	{
		args[nargs] = args[1];
		for (int i = 2; i < nargs; i++)
			args[nargs] = TimestampTzGetDatum(Min(DatumGetTimestampTz(args[nargs]),
												  DatumGetTimestampTz(args[i])));
		types[nargs++] = TIMESTAMPTZOID;
	}
	args[nargs] = CStringGetTextDatum(clock->time_zone);
	types[nargs++] = TEXTOID;
	return nargs;
}

/*
 * The time column every trait over the input counts from, when every one of them has a
 * window: then only rows later than the earliest bound can count, and the statement reads
 * no other (through the input's index on (customer, time), where there is one).
 */
static const char *
common_window(List *traits)
{
	const char *tc = NULL;
	ListCell   *lc;

	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);

		if (t->lookback == NULL || (tc != NULL && strcmp(tc, t->time_column) != 0))
			return NULL;
		tc = t->time_column;
	}
	return tc;
}

/*
 * Each windowed trait's bound as of the clock (as_of - lookback in the profile's zone),
 * in trait order, into args; returns the end of what it filled.
 */
static Datum *
window_bounds(List *traits, const C360Clock *clock, Datum *args, Oid *types)
{
	ListCell   *lc;

	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);

		if (t->lookback == NULL)
			continue;
		*types++ = TIMESTAMPTZOID;
		*args++ = TimestampTzGetDatum(c360_timestamp_shift(clock->as_of, t->lookback, true,
														   clock->time_zone));
	}
	return args;
}

/*
 * The traits of the dirty customers, input by input: an input's traits are recomputed for
 * the customers whose rows of that input changed, and for those whose customer row did
 * (a new profile row has every trait to compute).  Event traits also follow the
 * re-attributed customers (dirty->behaviour).  A batch that touches none of a trait's
 * input costs that trait nothing.
 */
List *
c360_traits_refresh(C360Dirty *dirty, const C360Clock *clock, List *changed)
{
	if (c360_traits_load(clock) == NIL)
		return changed;
	for (int i = 0; i < c360_ninputs; i++)
	{
		List	   *ids;

		if (input_statements(clock, i)->traits == NIL)
			continue;
		ids = list_concat_copy(dirty->inputs[i], dirty->inputs[C360_CUSTOMERS]);
		if (i == C360_BEHAVIORAL_EVENTS)
			ids = list_concat(ids, dirty->behaviour);
		if (dirty->truncated[i])
		{
			/* everyone, as of now: with the rows this transaction wrote (not read-only) */
			if (SPI_execute("SELECT customer_id FROM c360.customer_360", false, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not read the profile's customer ids");
			ids = c360_collect_ids(ids);
		}
		changed = c360_traits_recompute(i, ids, clock, changed);
	}
	return changed;
}

/*
 * The clock moves from `from` to `to`: the rows of each input whose time lies between a
 * windowed trait's old and new bound (whichever way it moved: a DST fall-back moves it
 * back) entered or left that trait's window.  Their customers' traits over that input are
 * recomputed.
 */
void
c360_traits_tick(const C360Clock *from, const C360Clock *to, C360Dirty *dirty)
{
	if (c360_traits_load(to) == NIL)
		return;
	for (int i = 0; i < c360_ninputs; i++)
	{
		InputStatements *st = input_statements(to, i);
		Datum		old_bounds[FUNC_MAX_ARGS];
		Datum		new_bounds[FUNC_MAX_ARGS];
		Datum		args[FUNC_MAX_ARGS];
		Oid			types[FUNC_MAX_ARGS];
		int			n;

		if (st->tick == NULL)
			continue;
		n = window_bounds(st->traits, from, old_bounds, types) - old_bounds;
		window_bounds(st->traits, to, new_bounds, types);
		for (int b = 0; b < n; b++)
		{
			TimestampTz x = DatumGetTimestampTz(old_bounds[b]);
			TimestampTz y = DatumGetTimestampTz(new_bounds[b]);

			args[2 * b] = TimestampTzGetDatum(Min(x, y));
			args[2 * b + 1] = TimestampTzGetDatum(Max(x, y));
			types[2 * b] = types[2 * b + 1] = TIMESTAMPTZOID;
		}
		dirty->inputs[i] = c360_exec_ids(c360_plan(&st->tick_plan, st->tick, 2 * n, types),
										 args, NULL, dirty->inputs[i]);
	}
}

/*
 * The statement that recomputes the traits over one input for the customers in $1:
 *
 *   WITH d AS (the customers), v AS (one aggregate per trait, over the customers' rows of
 *   the input, each filtered by its own filter and window; a customer with no row gets
 *   count 0 and NULL otherwise, as SQL's aggregates over no rows)
 *   UPDATE the profile rows whose values differ (by binary image, so that a numeric's
 *   scale counts, as verify() sees it).
 *
 * $2.. are the windowed traits' bounds, in trait order, then the common window's bound
 * and the zone (refresh_args).  The customers' own columns are prefixed _c360_ so that a
 * trait's expressions, written over the input's columns, can name any of them
 * unqualified.  With parts (parted: the inputs that have one), v also computes the
 * input's part of next_change_at, written with the traits.
 */
static char *
refresh_sql(C360InputId input, List *traits, bool bulk, List *parted)
{
	StringInfoData s;
	int			param = 2;
	List	   *bounds = NIL;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfo(&s, "WITH d AS (SELECT %sx AS _c360_id FROM unnest($1::text[]) x),\n",
					 bulk ? "" : "DISTINCT ");
	if (input == C360_BEHAVIORAL_EVENTS)
		appendStringInfoString(&s, "raw AS (\n" RAW_OF("d") "),\n");
	appendStringInfoString(&s, "v AS (\n  SELECT d._c360_id");
	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);
		char	   *bound = t->lookback ? psprintf("$%d", param++) : NULL;

		appendStringInfoString(&s, ",\n         ");
		c360_column_aggregate(&s, t, c360_column_condition(t, true, bound));
		appendStringInfo(&s, " AS %s", quote_identifier(t->name));
		if (bound)
			bounds = lappend(bounds, bound);
	}
	if (list_member_int(parted, input))
		appendStringInfo(&s, ",\n         %s AS _c360_change_%s",
						 c360_part_aggregate(traits, input, bounds,
											 psprintf("$%d", param + (common_window(traits) != NULL)),
											 true),
						 c360_inputs[input].name);
	if (input == C360_BEHAVIORAL_EVENTS)
		appendStringInfo(&s, "\n  FROM d LEFT JOIN (SELECT raw._c360_id AS _c360_owner, i.* FROM %s) i\n"
						 "    ON i._c360_owner = d._c360_id", c360_col_events_of("raw", "raw", bulk));
	else
		appendStringInfo(&s, "\n  FROM d LEFT JOIN c360.%s i ON i.%s = d._c360_id",
						 c360_inputs[input].name, c360_col_customer_column(input));
	if (common_window(traits) != NULL)
		appendStringInfo(&s, " AND i.%s > $%d", quote_identifier(common_window(traits)), param);
	appendStringInfoString(&s, "\n  GROUP BY d._c360_id)\n");
	c360_col_append_trait_update(&s, traits, NULL, parted, false);
	return s.data;
}

/*
 * The customers some of whose rows of the input lie between a windowed trait's old bound
 * ($1, $3, ...) and new bound ($2, $4, ...) and pass its filter: their traits change.
 * NULL when no trait over the input has a window.
 */
static char *
tick_sql(C360InputId input, List *traits)
{
	StringInfoData s;
	int			param = 1;
	ListCell   *lc;

	initStringInfo(&s);
	appendStringInfo(&s, "SELECT DISTINCT %s FROM c360.%s i WHERE ",
					 input == C360_BEHAVIORAL_EVENTS ? OWNER_OF("i.customer_id") :
					 psprintf("i.%s", c360_col_customer_column(input)), c360_inputs[input].name);
	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);
		const char *tc;

		if (t->lookback == NULL)
			continue;
		tc = quote_identifier(t->time_column);
		appendStringInfo(&s, "%s(i.%s > $%d AND i.%s <= $%d", param > 1 ? "\n   OR " : "", tc,
						 param, tc, param + 1);
		if (t->filter)
			appendStringInfo(&s, " AND (%s)", t->filter);
		appendStringInfoChar(&s, ')');
		param += 2;
	}
	return param > 1 ? s.data : NULL;
}

/* The traits over one input (-1: any), of those given (ready ones only when ready). */
static List *
input_traits(List *traits, C360InputId input, bool ready)
{
	List	   *mine = NIL;
	ListCell   *lc;

	foreach(lc, traits)
	{
		C360Trait  *t = lfirst(lc);

		if ((t->input == input || input < 0) && (t->ready || !ready))
			mine = lappend(mine, t);
	}
	return mine;
}

/*
 * verify()'s part for the traits that are ready (a trait still backfilling has rows not
 * computed yet), as versions 0.5 and 0.6 call it: one query, $1 the instant.
 */
char *
c360_traits_verify_sql(void)
{
	return c360_verify_sql(input_traits(read_catalog(), -1, true), true, NIL);
}

/*
 * A generated statement, as it runs: purpose is "refresh", "bulk refresh", "tick" or, for
 * the events, "events by difference" (new events with the event traits folded in).
 */
char *
c360_traits_statement(C360InputId input, const char *purpose)
{
	List	   *all = read_catalog();
	List	   *mine = input_traits(all, input, false);
	List	   *parted = c360_parts_known() ? c360_parted_inputs(all) : NIL;

	if (mine == NIL)
		return NULL;
	if (strcmp(purpose, "refresh") == 0)
		return refresh_sql(input, mine, false, parted);
	if (strcmp(purpose, "bulk refresh") == 0)
		return refresh_sql(input, mine, true, parted);
	if (strcmp(purpose, "tick") == 0)
		return tick_sql(input, mine);
	if (strcmp(purpose, "events by difference") == 0 && input == C360_BEHAVIORAL_EVENTS)
	{
		List	   *lookbacks;

		return c360_events_delta_sql(mine, parted != NIL, &lookbacks);
	}
	return NULL;
}

/* verify()'s query for the ready traits and the article's columns ($1: the instant). */
char *
c360_profile_verify_sql(void)
{
	List	   *all = read_catalog();
	List	   *ready = input_traits(all, -1, true);

	/* the parts, when every trait is ready (a backfilling one has rows not computed) */
	return c360_verify_sql(ready, false, c360_parts_known() &&
						   list_length(ready) == list_length(all) ? c360_parted_inputs(all) : NIL);
}

/* reference_profile()'s query ($1: the instant): the article's columns. */
char *
c360_profile_reference_sql(void)
{
	return c360_reference_sql(NIL, true);
}

/*
 * A query whose one column is the trait's aggregate over the whole input: analyzed, it
 * says the trait's type, and type errors (sum of text) surface with Postgres's messages.
 */
char *
c360_trait_probe_sql(const C360Trait *t)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoString(&s, "SELECT ");
	c360_column_aggregate(&s, t, c360_column_condition(t, false, t->lookback ? "now()" : NULL));
	appendStringInfo(&s, " FROM c360.%s i", c360_inputs[t->input].name);
	return s.data;
}
