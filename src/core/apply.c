/*-------------------------------------------------------------------------
 * apply.c
 *	  The one apply path.  A batch's changes are replayed in arrival order over the
 *	  stored mirror rows to find each key's final state, written with one statement
 *	  per input and kind, and the customers they touch are handed to the maintainer.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "storage/proc.h"

#include "core/spi.h"
#include "core/apply.h"
#include "core/erase.h"
#include "core/maintain.h"
#include "core/rollup.h"

/* One mirror key's state while the batch is replayed. */
typedef struct KeyState
{
	char	   *key;			/* hash key: points at a palloc'd string */
	bool		stored;			/* a row with this key is in the mirror now */
	bool		exists;			/* ... and after the changes replayed so far */
	ItemPointerData ctid;		/* where the stored row is (locked by this batch) */
	Datum		stored_vals[C360_MAX_COLS];
	bool		stored_nulls[C360_MAX_COLS];
	Datum		vals[C360_MAX_COLS];
	bool		nulls[C360_MAX_COLS];
} KeyState;

/* Per input: the mirror statements, prepared once per backend. */
typedef struct InputPlans
{
	SPIPlanPtr	lock;			/* fetch and lock the stored rows of a key set */
	SPIPlanPtr	delete;
	SPIPlanPtr	upsert;			/* keys not stored when the batch locked its rows */
	SPIPlanPtr	update;			/* stored keys, by the locked rows' ctids */
	SPIPlanPtr	insert;			/* new keys only, for a batch that runs alone */
	SPIPlanPtr	truncate;
} InputPlans;

static InputPlans plans[C360_MAX_INPUTS];

/*
 * A deferred maintainer (c360_apply_defer): the customers the batches of this transaction
 * touched, kept in TopTransactionContext; valid only in the transaction that began it.
 */
static C360Dirty *deferred;
static LocalTransactionId deferred_lxid;

/* Per input, the transaction that emptied it while running alone (see apply_run). */
static LocalTransactionId emptied[C360_MAX_INPUTS];

/* The replay of one input's changes: final rows and the keys' customers. */
typedef struct InputResult
{
	List	   *upserts;		/* KeyState * */
	List	   *deletes;		/* KeyState * */
	List	   *ids;			/* customer ids (raw ids for events, values for identity) */
	List	   *links;			/* identity: the links' customer ids (their traits) */
} InputResult;

static int	apply_order(int n);
static bool needs_exclusive_clock(C360Batch *batch);
static bool insert_only(List *changes);
static bool same_image(Oid type, Datum a, Datum b);
static void apply_input(C360InputId input, List *changes, const C360Clock *clock,
						C360Dirty *dirty);
static void apply_run(C360InputId input, List *changes, const C360Clock *clock,
					  C360Dirty *dirty);
static void truncate_input(C360InputId input, C360Dirty *dirty);
static void attribution_changed(C360InputId input, List *ids, C360Dirty *dirty);
static void insert_events(List *changes, const C360Clock *clock, C360Dirty *dirty);
static HTAB *load_keys(C360InputId input, List *changes, bool stored);
static void replay(C360InputId input, HTAB *keys, List *changes);
static InputResult diff_keys(C360InputId input, HTAB *keys);
static void write_rows(C360InputId input, InputResult *res);
static void write_upserts(const C360Input *in, SPIPlanPtr plan, List *rows);
static void write_updates(const C360Input *in, SPIPlanPtr plan, List *rows);
static void check_no_race(const C360Input *in, List *rows);
static void cast_tuple(const C360Input *in, const C360Tuple *t, Datum *vals, bool *nulls,
					   bool absent_is_null);
static Datum cast_value(const C360Input *in, int col, const char *text);
static void check_required(const C360Input *in, const bool *nulls);
/* Which image of a set of rows an array holds: KeyStates' final or stored, or a flat matrix. */
typedef enum RowImage
{
	IMAGE_FINAL,
	IMAGE_STORED,
	IMAGE_FLAT
} RowImage;

static List *orders_by_difference(const InputResult *res, C360Dirty *dirty);
static Datum column_array(const C360Input *in, int col, List *rows, RowImage image,
						  Datum *vals_by_row, bool *nulls_by_row);
static InputPlans *input_plans(C360InputId input);
static bool deferring(void);
static void defer_dirty(const C360Dirty *dirty);
static void apply_context(void *arg);

C360Batch *
c360_apply_begin(void)
{
	return palloc0(sizeof(C360Batch));
}

void
c360_apply_add(C360Batch *batch, C360Change *change)
{
	c360_change_check(change);
	batch->changes[change->input] = lappend(batch->changes[change->input], change);
	batch->nchanges++;
}

/*
 * Apply the batch in the caller's transaction: mirrors first, in a fixed input order and
 * sorted key order (so concurrent batches lock rows in one order), then the maintainer.
 * Changes for erased customers are dropped first.  Returns the number of changes applied.
 */
int64
c360_apply_finish(C360Batch *batch)
{
	C360Clock	clock;
	C360Dirty	dirty = {0};
	bool		exclusive;

	if (batch->nchanges == 0)
		return 0;

	SPI_connect();
	exclusive = needs_exclusive_clock(batch);
	c360_clock_lock(exclusive, &clock);
	if (c360_erase_filter(batch) > 0 && batch->nchanges == 0)
	{
		SPI_finish();
		return 0;
	}
	/*
	 * A batch that does not hold the clock exclusively changes no identity link and only
	 * inserts events: its events can update their owners' profiles by difference.
	 */
	dirty.by_difference = !exclusive && !deferring();

	for (int n = 0; n < c360_ninputs; n++)
	{
		int			i = apply_order(n);
		ErrorContextCallback ctx = {.callback = apply_context, .arg = (void *) &c360_inputs[i],
		.previous = error_context_stack};

		if (batch->changes[i] == NIL)
			continue;
		error_context_stack = &ctx;
		apply_input(i, batch->changes[i], &clock, &dirty);
		error_context_stack = ctx.previous;
	}

	if (deferring())
		defer_dirty(&dirty);
	else
		c360_maintain_refresh(&dirty, &clock, exclusive);
	SPI_finish();
	return batch->nchanges;
}

/* An error while a batch's changes of one input are applied says which input (mirror). */
static void
apply_context(void *arg)
{
	const C360Input *in = arg;

	errcontext("applying the batch's changes of input \"%s\" (mirror c360.%s)", in->name, in->name);
}

/*
 * For a transaction that applies many batches and runs alone (a source's snapshot, under
 * c360_clock_lock_alone): the maintainer runs once, in c360_apply_flush, over every
 * customer the batches touched, instead of once per batch over customers the next batch
 * touches again.  Nothing may read the profile in between.
 */
void
c360_apply_defer(void)
{
	deferred = MemoryContextAllocZero(TopTransactionContext, sizeof(C360Dirty));
	deferred_lxid = MyProc->lxid;
}

/* Bring the deferred customers' profile rows up to date; returns the rows written. */
int64
c360_apply_flush(void)
{
	C360Dirty	dirty = {0};
	C360Clock	clock;
	int64		written;

	if (!deferring())
		return 0;
	dirty.full = deferred->full;
	dirty.behaviour = deferred->behaviour;
	memcpy(dirty.inputs, deferred->inputs, sizeof(dirty.inputs));
	memcpy(dirty.truncated, deferred->truncated, sizeof(dirty.truncated));
	deferred = NULL;

	SPI_connect();
	c360_clock_lock(true, &clock);
	written = c360_maintain_refresh(&dirty, &clock, true);
	SPI_finish();
	return written;
}

static bool
deferring(void)
{
	return deferred != NULL && deferred_lxid == MyProc->lxid;
}

/* The batch's ids live in SPI memory: copy them into the transaction's. */
static void
defer_dirty(const C360Dirty *dirty)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	ListCell   *lc;

	foreach(lc, dirty->full)
		deferred->full = lappend(deferred->full, pstrdup(lfirst(lc)));
	foreach(lc, dirty->behaviour)
		deferred->behaviour = lappend(deferred->behaviour, pstrdup(lfirst(lc)));
	for (int i = 0; i < c360_ninputs; i++)
	{
		foreach(lc, dirty->inputs[i])
			deferred->inputs[i] = lappend(deferred->inputs[i], pstrdup(lfirst(lc)));
		deferred->truncated[i] |= dirty->truncated[i];
	}
	MemoryContextSwitchTo(old);
}

/*
 * The n-th input to apply.  Inserted events lock their owners, and every customer the
 * batch touched, once (see apply_run): they come after every other input but identity
 * links, which never share a batch that inserts events by difference.  So users' inputs
 * come before the events.
 */
static int
apply_order(int n)
{
	int			users = c360_ninputs - C360_BUILTIN_INPUTS;

	if (n < C360_BEHAVIORAL_EVENTS)
		return n;
	if (n < C360_BEHAVIORAL_EVENTS + users)
		return C360_BUILTIN_INPUTS + n - C360_BEHAVIORAL_EVENTS;
	return n - users;
}

/*
 * Identity changes re-attribute events between customers, and event updates or deletes
 * recount a raw id from scratch: both read state that concurrent batches increment, so they
 * run alone.  Everything else runs side by side with other batches.
 */
static bool
needs_exclusive_clock(C360Batch *batch)
{
	return batch->changes[C360_IDENTITY_GRAPH] != NIL ||
		!insert_only(batch->changes[C360_BEHAVIORAL_EVENTS]);
}

static bool
insert_only(List *changes)
{
	ListCell   *lc;

	foreach(lc, changes)
		if (((C360Change *) lfirst(lc))->op != C360_INSERT)
			return false;
	return true;
}

/* An input's changes, in runs split at truncates (what precedes a truncate is gone). */
static void
apply_input(C360InputId input, List *changes, const C360Clock *clock, C360Dirty *dirty)
{
	List	   *run = NIL;
	ListCell   *lc;

	foreach(lc, changes)
	{
		C360Change *ch = lfirst(lc);

		if (ch->op != C360_TRUNCATE)
		{
			run = lappend(run, ch);
			continue;
		}
		apply_run(input, run, clock, dirty);
		truncate_input(input, dirty);
		run = NIL;
	}
	apply_run(input, run, clock, dirty);
}

static void
apply_run(C360InputId input, List *changes, const C360Clock *clock, C360Dirty *dirty)
{
	HTAB	   *keys;
	InputResult res;
	bool		fresh;

	if (changes == NIL)
		return;
	/* customers are locked only once, with the events, the last input such a batch has */
	Assert(!dirty->locked);
	if (input == C360_BEHAVIORAL_EVENTS && insert_only(changes))
	{
		insert_events(changes, clock, dirty);
		return;
	}

	/*
	 * Inserts into an input this transaction emptied while running alone find no stored
	 * row (a snapshot's).  The mark is off while they are written: should one key come
	 * twice across batches, the insert fails, and the batch and the ones after it are
	 * applied again as upserts.
	 */
	fresh = emptied[input] == MyProc->lxid && insert_only(changes);
	emptied[input] = InvalidLocalTransactionId;
	keys = load_keys(input, changes, !fresh);
	replay(input, keys, changes);
	res = diff_keys(input, keys);
	write_rows(input, &res);
	if (fresh)
		emptied[input] = MyProc->lxid;
	if (input == C360_ORDERS && dirty->by_difference && dirty->order_ids == NIL)
		res.ids = orders_by_difference(&res, dirty);
	attribution_changed(input, res.ids, dirty);
	if (input == C360_IDENTITY_GRAPH)
		dirty->inputs[input] = list_concat(dirty->inputs[input], res.links);
}

static void
truncate_input(C360InputId input, C360Dirty *dirty)
{
	List	   *ids = c360_exec_ids(input_plans(input)->truncate, NULL, NULL, NIL);

	if (c360_clock_held_alone())
		emptied[input] = MyProc->lxid;
	attribution_changed(input, ids, dirty);
	dirty->truncated[input] = true;
}

/*
 * The customers whose profile the changed rows affect.  ids are the rows' customer ids,
 * but raw ids for events (recounted) and identity values for links (re-resolved).  Events
 * and links change only the behaviour columns of a profile, users' inputs only traits.
 */
static void
attribution_changed(C360InputId input, List *ids, C360Dirty *dirty)
{
	if (input == C360_IDENTITY_GRAPH)
		dirty->behaviour = c360_rollup_resolve(ids, dirty->behaviour);
	else if (input >= C360_BUILTIN_INPUTS)
		dirty->inputs[input] = list_concat(dirty->inputs[input], ids);	/* only traits */
	else if (input != C360_BEHAVIORAL_EVENTS)
	{
		dirty->full = list_concat(dirty->full, ids);
		dirty->inputs[input] = list_concat(dirty->inputs[input], ids);
	}
	else if (ids != NIL)
	{
		List	   *owners = c360_rollup_owners(c360_text_array(ids), NIL);

		dirty->behaviour = list_concat(dirty->behaviour, owners);
		dirty->inputs[input] = list_concat(dirty->inputs[input], owners);
	}
}

/*
 * The hot path: events are append-only, so a batch of inserts needs no replay.  Duplicate
 * event ids (a producer retry) are dropped by the mirror's primary key.
 */
static void
insert_events(List *changes, const C360Clock *clock, C360Dirty *dirty)
{
	const C360Input *in = &c360_inputs[C360_BEHAVIORAL_EVENTS];
	int			n = list_length(changes);
	Datum	   *vals = palloc(sizeof(Datum) * n * in->ncols);
	bool	   *nulls = palloc(sizeof(bool) * n * in->ncols);
	Datum		columns[C360_MAX_COLS];
	ListCell   *lc;

	foreach(lc, changes)
	{
		C360Change *ch = lfirst(lc);
		int			row = foreach_current_index(lc);

		cast_tuple(in, ch->new, &vals[row * in->ncols], &nulls[row * in->ncols], true);
		check_required(in, &nulls[row * in->ncols]);
	}
	for (int col = 0; col < in->ncols; col++)
		columns[col] = column_array(in, col, changes, IMAGE_FLAT, vals, nulls);

	/*
	 * New events update their owners' profiles by difference, once the owners are locked.
	 * The other inputs' mirror rows are written already (events come after them, and a
	 * batch that updates by difference has no identity links): every customer the batch
	 * touched is locked now, in one ordered pass, and the maintainer takes no more locks.
	 */
	if (dirty->by_difference)
	{
		List	   *owners = c360_rollup_owners(columns[in->customer_col], NIL);
		List	   *touched = list_concat(list_concat_copy(dirty->full, dirty->behaviour), owners);

		touched = list_concat(touched, dirty->order_ids);

		for (int i = C360_BUILTIN_INPUTS; i < c360_ninputs; i++)
			touched = list_concat(touched, dirty->inputs[i]);
		c360_maintain_lock(c360_text_array(touched));
		dirty->locked = true;
		/* the owners' event traits are in the same write */
		c360_rollup_insert_events_delta(columns, clock, dirty);
		return;
	}
	dirty->behaviour = c360_rollup_insert_events(columns, dirty->behaviour);
}

/*
 * Orders by difference (src/core/orders_sql.c): new orders and updates that keep their
 * customer go, as their stored and final images, to the maintainer, which applies them
 * once the customers are locked (and recomputes those it cannot bring up to date
 * exactly); their customers' traits over orders are recomputed as usual.  Returns the
 * customers of deleted and moved orders, which are recomputed in full.
 */
static List *
orders_by_difference(const InputResult *res, C360Dirty *dirty)
{
	const C360Input *in = &c360_inputs[C360_ORDERS];
	int			cust = in->customer_col;
	List	   *delta = NIL;
	List	   *full = NIL;
	ListCell   *lc;

	foreach(lc, res->upserts)
	{
		KeyState   *ks = lfirst(lc);
		char	   *now = TextDatumGetCString(ks->vals[cust]);
		char	   *was = ks->stored ? TextDatumGetCString(ks->stored_vals[cust]) : NULL;

		if (was == NULL || strcmp(was, now) == 0)
		{
			delta = lappend(delta, ks);
			dirty->order_ids = lappend(dirty->order_ids, now);
		}
		else
			full = lappend(lappend(full, now), was);
		dirty->inputs[C360_ORDERS] = lappend(dirty->inputs[C360_ORDERS], now);
	}
	foreach(lc, res->deletes)
		full = lappend(full, TextDatumGetCString(((KeyState *) lfirst(lc))->stored_vals[cust]));
	for (int col = 0; delta != NIL && col < in->ncols; col++)
	{
		dirty->order_images[2 * col] = column_array(in, col, delta, IMAGE_STORED, NULL, NULL);
		dirty->order_images[2 * col + 1] = column_array(in, col, delta, IMAGE_FINAL, NULL, NULL);
	}
	return full;
}

/* Fetch, locked, the stored rows of every key the changes name (unless none is stored). */
static HTAB *
load_keys(C360InputId input, List *changes, bool stored)
{
	const C360Input *in = &c360_inputs[input];
	HASHCTL		ctl = {.keysize = sizeof(char *), .entrysize = sizeof(KeyState),
	.hash = c360_id_hash, .match = c360_id_match, .hcxt = CurrentMemoryContext};
	HTAB	   *keys = hash_create("c360 batch keys", list_length(changes) * 2, &ctl,
								   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	List	   *names = NIL;
	ListCell   *lc;
	Datum		arg;

	foreach(lc, changes)
	{
		C360Change *ch = lfirst(lc);

		for (int img = 0; img < 2; img++)
		{
			const char *k = c360_change_key(ch, img == 0);
			bool		found;
			KeyState   *ks;

			if (k == NULL)
				continue;
			ks = hash_search(keys, &k, HASH_ENTER, &found);
			if (!found)
			{
				memset(ks, 0, sizeof(KeyState));
				ks->key = pstrdup(k);
				names = lappend(names, ks->key);
			}
		}
	}

	if (!stored)
		return keys;
	arg = c360_text_array(names);
	c360_exec(input_plans(input)->lock, &arg, NULL);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		char	   *k = SPI_getvalue(tup, SPI_tuptable->tupdesc, in->key_col + 1);
		bool		isnull;
		KeyState   *ks = hash_search(keys, &k, HASH_FIND, NULL);

		Assert(ks != NULL);
		ks->stored = ks->exists = true;
		ks->ctid = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, SPI_tuptable->tupdesc, in->ncols + 1,
													  &isnull));
		for (int c = 0; c < in->ncols; c++)
		{
			ks->stored_vals[c] = SPI_getbinval(tup, SPI_tuptable->tupdesc, c + 1,
											   &ks->stored_nulls[c]);
			ks->vals[c] = ks->stored_vals[c];
			ks->nulls[c] = ks->stored_nulls[c];
		}
	}
	return keys;
}

/*
 * Replay the changes in order.  An insert of an existing key is an upsert (an event
 * insert of an existing event id is a duplicate and ignored); an update may move the row
 * to a new key, taking the columns its new image lacks from the old row; a delete of a
 * missing key does nothing.
 */
static void
replay(C360InputId input, HTAB *keys, List *changes)
{
	const C360Input *in = &c360_inputs[input];
	ListCell   *lc;

	foreach(lc, changes)
	{
		C360Change *ch = lfirst(lc);
		const char *oldk = c360_change_key(ch, true);
		const char *newk = c360_change_key(ch, false);
		KeyState   *from;
		KeyState   *to;

		if (ch->op == C360_DELETE)
		{
			from = hash_search(keys, &oldk, HASH_FIND, NULL);
			from->exists = false;
			continue;
		}
		if (ch->op == C360_INSERT)
		{
			to = hash_search(keys, &newk, HASH_FIND, NULL);
			if (input == C360_BEHAVIORAL_EVENTS && to->exists)
			{
				/* a duplicate is dropped, but a bad one is as bad as on the insert path */
				Datum		vals[C360_MAX_COLS];
				bool		nulls[C360_MAX_COLS];

				cast_tuple(in, ch->new, vals, nulls, true);
				check_required(in, nulls);
				continue;
			}
			cast_tuple(in, ch->new, to->vals, to->nulls, true);
			to->exists = true;
			continue;
		}

		/* update */
		from = hash_search(keys, oldk ? &oldk : &newk, HASH_FIND, NULL);
		to = hash_search(keys, newk ? &newk : &oldk, HASH_FIND, NULL);
		if (!from->exists)
		{
			for (int c = 0; c < in->ncols; c++)
				from->nulls[c] = true;
		}
		if (to != from)
		{
			memcpy(to->vals, from->vals, sizeof(to->vals));
			memcpy(to->nulls, from->nulls, sizeof(to->nulls));
			from->exists = false;
		}
		cast_tuple(in, ch->new, to->vals, to->nulls, false);
		to->vals[in->key_col] = CStringGetTextDatum(to->key);
		to->nulls[in->key_col] = false;
		to->exists = true;
	}
}

/* Which keys really change, and the customers on both sides of each change. */
static InputResult
diff_keys(C360InputId input, HTAB *keys)
{
	const C360Input *in = &c360_inputs[input];
	InputResult res = {NIL, NIL, NIL, NIL};
	int			cust = in->customer_col;
	HASH_SEQ_STATUS seq;
	KeyState   *ks;
	int			idcol = input == C360_IDENTITY_GRAPH ?
		c360_column_by_name(in, "identity_value") : in->customer_col;

	hash_seq_init(&seq, keys);
	while ((ks = hash_seq_search(&seq)) != NULL)
	{
		bool		same = ks->stored == ks->exists;

		for (int c = 0; same && ks->exists && c < in->ncols; c++)
			same = ks->nulls[c] == ks->stored_nulls[c] &&
				(ks->nulls[c] || same_image(in->cols[c].type, ks->vals[c], ks->stored_vals[c]));
		if (same)
			continue;
		if (ks->exists)
		{
			check_required(in, ks->nulls);
			res.upserts = lappend(res.upserts, ks);
			res.ids = lappend(res.ids, TextDatumGetCString(ks->vals[idcol]));
			res.links = lappend(res.links, TextDatumGetCString(ks->vals[cust]));
		}
		else
			res.deletes = lappend(res.deletes, ks);
		if (ks->stored)
		{
			res.ids = lappend(res.ids, TextDatumGetCString(ks->stored_vals[idcol]));
			res.links = lappend(res.links, TextDatumGetCString(ks->stored_vals[cust]));
		}
	}
	return res;
}

/*
 * Binary image equality, as REFRESH MATERIALIZED VIEW CONCURRENTLY uses: a numeric whose
 * scale changed is a change.  Varlena headers may differ (a stored short header against a
 * freshly built one), so compare the payloads.
 */
static bool
same_image(Oid type, Datum a, Datum b)
{
	struct varlena *va;
	struct varlena *vb;

	if (type == INT4OID || type == TIMESTAMPTZOID || type == INT8OID || type == FLOAT8OID ||
		type == BOOLOID || type == DATEOID)
		return a == b;			/* the by-value types an input's column may have */
	va = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(a));
	vb = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(b));
	return VARSIZE_ANY_EXHDR(va) == VARSIZE_ANY_EXHDR(vb) &&
		memcmp(VARDATA_ANY(va), VARDATA_ANY(vb), VARSIZE_ANY_EXHDR(va)) == 0;
}

static void
write_rows(C360InputId input, InputResult *res)
{
	const C360Input *in = &c360_inputs[input];
	InputPlans *p = input_plans(input);
	List	   *stored = NIL;
	List	   *fresh = NIL;
	ListCell   *lc;

	if (res->deletes != NIL)
	{
		List	   *names = NIL;
		Datum		arg;

		foreach(lc, res->deletes)
			names = lappend(names, ((KeyState *) lfirst(lc))->key);
		arg = c360_text_array(names);
		c360_exec(p->delete, &arg, NULL);
	}
	if (res->upserts == NIL)
		return;
	foreach(lc, res->upserts)
	{
		KeyState   *k = lfirst(lc);

		if (k->stored)
			stored = lappend(stored, k);
		else
			fresh = lappend(fresh, k);
	}

	/*
	 * A stored key's row is locked since load_keys: it is written where it is, by its
	 * ctid, without the key's index descent and ON CONFLICT's speculative insertion.
	 */
	write_updates(in, p->update, stored);

	/*
	 * Keys not stored when the batch locked its rows cannot appear meanwhile if no other
	 * batch runs: a plain insert then skips ON CONFLICT's speculative insertion (a
	 * snapshot's rows are nearly all new).
	 */
	if (c360_clock_held_alone())
		write_upserts(in, p->insert, fresh);
	else
	{
		write_upserts(in, p->upsert, fresh);
		check_no_race(in, fresh);
	}
}

/*
 * After the upsert of the keys the batch found absent when it locked its rows: a key the
 * upsert updated was inserted meanwhile by a concurrent batch, whose customer this batch
 * never saw and so would not refresh.  The batch fails with 40001 instead: retried (a
 * source worker retries from its position), it finds the row at lock time.  Where the key
 * is the customer (c360.customers), both batches refresh that one customer, under its lock.
 */
static void
check_no_race(const C360Input *in, List *rows)
{
	HTAB	   *fresh = NULL;
	ListCell   *lc;

	if (in->key_col == in->customer_col)
		return;
	foreach(lc, rows)
		if (!((KeyState *) lfirst(lc))->stored)
		{
			if (fresh == NULL)
				fresh = c360_id_set();
			(void) c360_distinct_ids(list_make1(((KeyState *) lfirst(lc))->key), fresh);
		}
	if (fresh == NULL)
		return;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		char	   *key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull)) &&
			hash_search(fresh, &key, HASH_FIND, NULL) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("a concurrent batch inserted key \"%s\" of input %s first", key, in->name),
					 errhint("Apply the batch again: it then sees that row. A source worker does so from its position.")));
	}
}

static void
write_upserts(const C360Input *in, SPIPlanPtr plan, List *rows)
{
	Datum		columns[C360_MAX_COLS];

	if (rows == NIL)
		return;
	for (int col = 0; col < in->ncols; col++)
		columns[col] = column_array(in, col, rows, IMAGE_FINAL, NULL, NULL);
	c360_exec(plan, columns, NULL);
}

/*
 * The stored keys' final rows, written over the rows load_keys locked.  The lock holds
 * them where they are, so every ctid must find its row: one that did not would lose a
 * change, so the batch fails instead.
 */
static void
write_updates(const C360Input *in, SPIPlanPtr plan, List *rows)
{
	Datum		args[C360_MAX_COLS + 1];
	Datum	   *tids;
	ListCell   *lc;
	int			n = list_length(rows);

	if (rows == NIL)
		return;
	tids = palloc(sizeof(Datum) * n);
	foreach(lc, rows)
		tids[foreach_current_index(lc)] = PointerGetDatum(&((KeyState *) lfirst(lc))->ctid);
	args[0] = PointerGetDatum(construct_array(tids, n, TIDOID, sizeof(ItemPointerData), false,
											  TYPALIGN_SHORT));
	for (int col = 0; col < in->ncols; col++)
		args[col + 1] = column_array(in, col, rows, IMAGE_FINAL, NULL, NULL);
	c360_exec(plan, args, NULL);
	if (SPI_processed != (uint64) n)
		elog(ERROR, "mirror c360.%s: %d locked rows to write, %llu found", in->name, n,
			 (unsigned long long) SPI_processed);
}

/*
 * Cast a text row image into mirror column values with the types' own input functions.
 * Columns absent from the image are NULL when absent_is_null, else left as they are.
 */
static void
cast_tuple(const C360Input *in, const C360Tuple *t, Datum *vals, bool *nulls,
		   bool absent_is_null)
{
	for (int c = 0; c < in->ncols; c++)
	{
		if (!t->present[c])
		{
			if (absent_is_null)
				nulls[c] = true;
			continue;
		}
		nulls[c] = t->values[c] == NULL;
		if (!nulls[c])
			vals[c] = cast_value(in, c, t->values[c]);
	}
}

/*
 * The type's input function, with an error that names the input, column and value: the
 * type's own message alone ("invalid input syntax for type numeric") does not say which of
 * a batch's thousand rows was wrong.
 */
static Datum
cast_value(const C360Input *in, int col, const char *text)
{
	static FmgrInfo finfo[C360_MAX_INPUTS][C360_MAX_COLS];
	static Oid	ioparam[C360_MAX_INPUTS][C360_MAX_COLS];
	Oid			type = in->cols[col].type;
	int			input = in - c360_inputs;
	MemoryContext cxt = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	if (type == TEXTOID)
		return CStringGetTextDatum(text);
	if (finfo[input][col].fn_oid == InvalidOid)
	{
		Oid			func;

		getTypeInputInfo(type, &func, &ioparam[input][col]);
		fmgr_info_cxt(func, &finfo[input][col], TopMemoryContext);
	}

	PG_TRY();
	{
		result = InputFunctionCall(&finfo[input][col], (char *) text, ioparam[input][col], -1);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("invalid value for column \"%s\" of input \"%s\": \"%s\"",
						in->cols[col].name, in->name, text),
				 errdetail_internal("%s", edata->message)));
	}
	PG_END_TRY();
	return result;
}

static void
check_required(const C360Input *in, const bool *nulls)
{
	for (int c = 0; c < in->ncols; c++)
		if (in->cols[c].required && nulls[c])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("column \"%s\" of input \"%s\" must not be null",
							in->cols[c].name, in->name)));
}

/*
 * One column of a set of rows as an array parameter.  Rows come either as KeyStates (their
 * final or their stored image; a key not stored has a NULL one) or, on the event fast path,
 * as a flat row-major values/nulls matrix.
 */
static Datum
column_array(const C360Input *in, int col, List *rows, RowImage image,
			 Datum *vals_by_row, bool *nulls_by_row)
{
	int			n = list_length(rows);
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	for (int r = 0; r < n; r++)
	{
		KeyState   *ks = image == IMAGE_FLAT ? NULL : list_nth(rows, r);

		if (image == IMAGE_FLAT)
		{
			elems[r] = vals_by_row[r * in->ncols + col];
			nulls[r] = nulls_by_row[r * in->ncols + col];
		}
		else if (image == IMAGE_STORED)
		{
			elems[r] = ks->stored_vals[col];
			nulls[r] = !ks->stored || ks->stored_nulls[col];
		}
		else
		{
			elems[r] = ks->vals[col];
			nulls[r] = ks->nulls[col];
		}
	}
	get_typlenbyvalalign(in->cols[col].type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, in->cols[col].type,
											  typlen, typbyval, typalign));
}

/* Build an input's mirror statements from the catalog, once per backend. */
static InputPlans *
input_plans(C360InputId input)
{
	const C360Input *in = &c360_inputs[input];
	InputPlans *p = &plans[input];
	const char *key = in->cols[in->key_col].name;
	StringInfoData cols, arrays, sets, usets, sql;
	Oid			types[C360_MAX_COLS];
	Oid			update_types[C360_MAX_COLS + 1] = {TIDARRAYOID};
	Oid			texts[1] = {TEXTARRAYOID};

	if (p->upsert != NULL)
		return p;

	initStringInfo(&cols);
	initStringInfo(&arrays);
	initStringInfo(&sets);
	initStringInfo(&usets);
	initStringInfo(&sql);
	for (int c = 0; c < in->ncols; c++)
	{
		const char *name = in->cols[c].name;

		types[c] = get_array_type(in->cols[c].type);
		appendStringInfo(&cols, "%s%s", c ? ", " : "", name);
		appendStringInfo(&arrays, "%s$%d", c ? ", " : "", c + 1);
		if (c != in->key_col)
		{
			appendStringInfo(&sets, "%s%s = excluded.%s", sets.len ? ", " : "", name, name);
			appendStringInfo(&usets, "%s%s = u.%s", usets.len ? ", " : "", name, name);
		}
	}

	appendStringInfo(&sql, "SELECT %s, ctid FROM c360.%s WHERE %s = ANY($1) "
					 "ORDER BY %s COLLATE \"C\" FOR UPDATE", cols.data, in->name, key, key);
	c360_plan(&p->lock, sql.data, 1, texts);

	resetStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM c360.%s WHERE %s = ANY($1)", in->name, key);
	c360_plan(&p->delete, sql.data, 1, texts);

	resetStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM c360.%s RETURNING %s", in->name,
					 input == C360_IDENTITY_GRAPH ? "identity_value" :
					 in->cols[in->customer_col].name);
	c360_plan(&p->truncate, sql.data, 0, NULL);

	resetStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO c360.%s (%s) SELECT * FROM unnest(%s) AS u(%s) "
					 "ORDER BY %s COLLATE \"C\" ON CONFLICT (%s) DO UPDATE SET %s "
					 "RETURNING %s, xmax <> '0'",
					 in->name, cols.data, arrays.data, cols.data, key, key, sets.data, key);
	c360_plan(&p->upsert, sql.data, in->ncols, types);

	resetStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO c360.%s (%s) SELECT * FROM unnest(%s) AS u(%s) "
					 "ORDER BY %s COLLATE \"C\"", in->name, cols.data, arrays.data, cols.data, key);
	c360_plan(&p->insert, sql.data, in->ncols, types);

	/*
	 * $1 the ctids, then the columns as above, one place further.  ONLY: a ctid names a
	 * row of one table (should a user's mirror get an inheritance child, its rows' ctids
	 * are not found, and write_updates fails the batch rather than write another row).
	 */
	resetStringInfo(&sql);
	if (usets.len == 0)			/* only a key: never written so, but valid SQL */
		appendStringInfo(&usets, "%s = u.%s", key, key);
	appendStringInfo(&sql, "UPDATE ONLY c360.%s m SET %s FROM unnest($1, ", in->name, usets.data);
	for (int c = 0; c < in->ncols; c++)
		appendStringInfo(&sql, "%s$%d", c ? ", " : "", c + 2);
	appendStringInfo(&sql, ") AS u(_c360_ctid, %s) WHERE m.ctid = u._c360_ctid", cols.data);
	memcpy(&update_types[1], types, sizeof(Oid) * in->ncols);
	c360_plan(&p->update, sql.data, in->ncols + 1, update_types);
	return p;
}
