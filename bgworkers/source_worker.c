/*-------------------------------------------------------------------------
 * source_worker.c
 *	  The one source-worker skeleton (docs/ARCHITECTURE.md, "Source workers"): the
 *	  main loop every kind of source runs, with an adapter for its wire
 *	  (pg_source.c, mysql_source.c, kafka_source.c).  One behaviour for each case:
 *
 *	  - nothing mapped yet: wait in state 'unmapped', looking every second;
 *	  - first start: one snapshot of every mapped table, in one local transaction
 *	    with the stream's start position; a table mapped later is copied alone
 *	    before the stream goes on (its changes up to its own snapshot skipped);
 *	  - a batch is whole source units (transactions or messages) up to
 *	    c360.batch_size changes or c360.batch_ms; its dead letters, its changes
 *	    and its position commit in one local transaction;
 *	  - errors end the process: SQLSTATEs of trouble that passes (connection,
 *	    resources, deadlock) restart it from the committed position, any other
 *	    parks the source in 'error' until c360.resume_source().
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "core/customer360.h"
#include "core/clock.h"
#include "source_worker.h"
#include "worker.h"

#define MAPPING_CHECK_MS	1000
#define IDLE_WAIT_MS		1000

static C360SourceWorker sw;

static void run(const char *name);
static C360Source *load_mapped(const char *name);
static void snapshot(List *tables, bool initial);
static void copy_new_tables(void);
static void stream(void);
static void new_batch(void);
static void wait_for_data(void);
static void check_mapping(void);
static void failed(const char *name) pg_attribute_noreturn();
static void error_context(void *arg);

/*
 * The body of every source worker: its name comes in bgw_extra.  Returns only by
 * exiting the process.
 */
void
c360_source_worker_run(const C360SourceAdapter *adapter)
{
	char		name[BGW_EXTRALEN];
	ErrorContextCallback ctx = {.callback = error_context};

	memcpy(name, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	c360_worker_init(name);
	sw.status = c360_worker_attach(name);
	sw.adapter = adapter;
	sw.batch_cxt = AllocSetContextCreate(TopMemoryContext, "c360 batch", ALLOCSET_DEFAULT_SIZES);
	new_batch();
	ctx.previous = error_context_stack;
	error_context_stack = &ctx;
	PG_TRY();
	{
		run(name);
	}
	PG_CATCH();
	{
		failed(name);
	}
	PG_END_TRY();
	proc_exit(0);
}

static void
run(const char *name)
{
	sw.src = load_mapped(name);
	sw.adapter->connect(&sw);
	if (strcmp(sw.src->phase, "snapshot") == 0)
		snapshot(sw.src->tables, true);
	else
		sw.adapter->resume(&sw);
	copy_new_tables();
	stream();
}

/* The worker's shared state, for adapters' callbacks that get no argument. */
C360SourceWorker *
c360_source_worker(void)
{
	return &sw;
}

/*
 * The named source, loaded in TopMemoryContext once it maps a table.  A source created
 * and mapped in separate statements starts in between: it then waits quietly in state
 * 'unmapped' (map_table's first table arrives within a second).
 */
static C360Source *
load_mapped(const char *name)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "c360 source",
											  ALLOCSET_SMALL_SIZES);

	for (;;)
	{
		C360Source *src;

		c360_worker_begin("c360 source setup");
		MemoryContextSwitchTo(cxt);
		src = c360_source_load(name);
		c360_worker_commit();
		MemoryContextSwitchTo(TopMemoryContext);
		if (src->tables != NIL)
			return src;
		c360_worker_report(sw.status, "unmapped", NULL);
		MemoryContextReset(cxt);
		c360_worker_wait(MAPPING_CHECK_MS);
	}
}

/*
 * One snapshot, in one local transaction alone on the clock (the maintainer runs once at
 * its end): the adapter copies the tables, and the tables are marked copied with the
 * position their changes apply from.  The first one also stores the stream's start and
 * leaves phase 'snapshot'.  A crash anywhere rolls all of it back; the next start
 * begins again, so the snapshot and the stream meet exactly.
 */
static void
snapshot(List *tables, bool initial)
{
	char	   *since;
	ListCell   *lc;

	c360_worker_begin(initial ? "c360 snapshot" : "c360 snapshot of newly mapped tables");
	c360_clock_lock_alone();
	c360_apply_defer();
	c360_source_worker_report(&sw, "snapshot");
	since = sw.adapter->snapshot(&sw, tables, initial);
	c360_source_worker_apply_now(&sw);
	c360_apply_flush();
	/* a table mapped meanwhile is not in the list: copy_new_tables() copies it next */
	foreach(lc, tables)
		c360_source_set_since(sw.src, lfirst(lc), since ? since : "");
	if (initial)
	{
		sw.adapter->save_position(&sw);
		c360_source_set_phase(sw.src, "streaming");
	}
	c360_worker_commit();
	sw.adapter->snapshot_done(&sw);
	if (initial)
		sw.adapter->committed(&sw);
	elog(LOG, "c360 source \"%s\" %s done: " INT64_FORMAT " rows of %d tables%s%s",
		 sw.src->name, initial ? "snapshot" : "snapshot of newly mapped tables",
		 sw.status->snapshot_done, list_length(tables),
		 since && since[0] ? ", streamed from " : "", since ? since : "");
}

/* Tables mapped after the source's snapshot, or while it ran, each not copied yet. */
static void
copy_new_tables(void)
{
	List	   *tables = NIL;
	ListCell   *lc;

	sw.src = load_mapped(sw.src->name);
	foreach(lc, sw.src->tables)
		if (((C360SourceTable *) lfirst(lc))->since == NULL)
			tables = lappend(tables, lfirst(lc));
	if (tables != NIL)
		snapshot(tables, false);
}

/*
 * Read, apply and wait for ever.  A batch is applied when it is due, and, for kinds whose
 * units are whole transactions, as soon as the stream goes quiet (for freshness).
 */
static void
stream(void)
{
	sw.adapter->stream(&sw);
	c360_source_worker_report(&sw, "streaming");
	for (;;)
	{
		bool		more = sw.adapter->read(&sw);

		if (!sw.in_unit)
		{
			if (c360_source_worker_batch_due(&sw) ||
				(!more && (sw.units > 0 || sw.moved)))
				c360_source_worker_flush();
			check_mapping();
		}
		if (sw.adapter->housekeeping)
			sw.adapter->housekeeping(&sw);
		if (!more)
			wait_for_data();
		else
			c360_worker_interrupts();	/* a long backlog never waits */
	}
}

/* A whole source unit (a transaction, a message) is in the batch. */
void
c360_source_worker_unit_end(C360SourceWorker *w, TimestampTz commit_at)
{
	w->in_unit = false;
	w->units++;
	w->commit_at = Max(w->commit_at, commit_at);
	if (w->batch_started == 0)
		w->batch_started = GetCurrentTimestamp();
}

bool
c360_source_worker_batch_due(C360SourceWorker *w)
{
	return (w->units > 0 || w->moved) &&
		(Max(w->units, w->batch->nchanges) >= c360_batch_size ||
		 TimestampDifferenceExceeds(w->batch_started, GetCurrentTimestamp(), c360_batch_ms));
}

/*
 * Apply the batch's dead letters, its changes and its position in one local transaction:
 * all of it commits, or none.  Adapters call it too, before a position jumps (a Kafka
 * offset out of range).
 */
void
c360_source_worker_flush(void)
{
	ListCell   *lc;

	if (sw.units == 0 && !sw.moved)
		return;
	c360_worker_begin("c360 apply");
	foreach(lc, sw.dead)
	{
		C360DeadLetter *d = lfirst(lc);

		c360_source_dead_letter(sw.src, d->position, d->payload, d->error);
	}
	if (sw.units > 0)
		(void) c360_source_apply(sw.src, sw.batch, sw.commit_at);
	sw.adapter->save_position(&sw);
	c360_worker_commit();

	sw.adapter->committed(&sw);
	if (sw.commit_at != 0)
		sw.status->last_source_commit_at = sw.commit_at;
	new_batch();
	c360_source_worker_report(&sw, "streaming");
}

/* In a snapshot's transaction: apply what the batch holds now, and start a new one. */
void
c360_source_worker_apply_now(C360SourceWorker *w)
{
	ListCell   *lc;

	foreach(lc, w->dead)
	{
		C360DeadLetter *d = lfirst(lc);

		c360_source_dead_letter(w->src, d->position, d->payload, d->error);
	}
	if (w->batch->nchanges > 0)
		(void) c360_source_apply(w->src, w->batch, 0);
	new_batch();
	CHECK_FOR_INTERRUPTS();
}

/* Keep a row or message that could not be decoded, for the dead letters of its batch. */
void
c360_source_worker_dead_letter(C360SourceWorker *w, const char *position, const char *payload,
							   const char *error)
{
	MemoryContext old = MemoryContextSwitchTo(w->batch_cxt);
	C360DeadLetter *d = palloc(sizeof(C360DeadLetter));

	d->position = position ? pstrdup(position) : NULL;
	d->payload = payload ? pstrdup(payload) : NULL;
	d->error = pstrdup(error);
	w->dead = lappend(w->dead, d);
	MemoryContextSwitchTo(old);
}

/* An empty batch; everything of the last one, its change records included, is freed. */
static void
new_batch(void)
{
	MemoryContext old;

	MemoryContextReset(sw.batch_cxt);
	old = MemoryContextSwitchTo(sw.batch_cxt);
	sw.batch = c360_apply_begin();
	MemoryContextSwitchTo(old);
	sw.dead = NIL;
	sw.units = 0;
	sw.moved = false;
	sw.batch_started = 0;
	sw.commit_at = 0;
}

/*
 * Sleep until the adapter's socket has data, the latch is set, the batch is due or a
 * second passes (for feedback, lag, trouble and the mapping check).
 */
static void
wait_for_data(void)
{
	long		timeout = IDLE_WAIT_MS;
	pgsocket	fd = sw.adapter->socket(&sw);

	if (sw.units > 0)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(),
							TimestampTzPlusMilliseconds(sw.batch_started, c360_batch_ms), &secs, &usecs);
		timeout = Min(timeout, secs * 1000 + usecs / 1000 + 1);
	}
	c360_worker_wait_socket(fd, timeout);
}

/*
 * Once a second, between source units: a table mapped (or moved to another input) since
 * the worker loaded its source needs its own snapshot, which the next start takes.  Exit:
 * the launcher starts the worker again, streaming from the committed position.
 */
static void
check_mapping(void)
{
	static TimestampTz checked = 0;
	bool		moved;

	if (!TimestampDifferenceExceeds(checked, GetCurrentTimestamp(), MAPPING_CHECK_MS))
		return;
	checked = GetCurrentTimestamp();
	c360_worker_begin("c360 source mapping");
	moved = c360_source_mapping_moved(sw.src);
	c360_worker_commit();
	if (!moved)
		return;
	elog(LOG, "c360 source \"%s\": a table was mapped; restarting to copy it", sw.src->name);
	sw.adapter->close(&sw);
	proc_exit(0);
}

void
c360_source_worker_report(C360SourceWorker *w, const char *state)
{
	c360_worker_report(w->status, state, w->src ? w->adapter->position(w) : NULL);
}

/*
 * Whether an error needs the user (parks the source in 'error', its position kept), as
 * core's apply worker does for disable_on_error; trouble that passes by itself (a lost
 * connection, a deadlock, resources, a crash-restart, a lock timeout) restarts the worker
 * from its committed position instead.
 */
bool
c360_source_error_parks(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_SYSTEM_ERROR:
		case ERRCODE_INTERNAL_ERROR:
			return false;
	}
	return sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE && sqlerrcode != ERRCODE_OBJECT_IN_USE;
}

/* Record the failure where the user sees it (c360.sources.last_error) and exit. */
static void
failed(const char *name)
{
	ErrorData  *edata = c360_worker_take_error();
	bool		park = c360_source_error_parks(edata->sqlerrcode);

	c360_source_record_error(name, edata->message, park);
	proc_exit(park ? 0 : 1);
}

/* Every error of a source worker says which source, and where the adapter is. */
static void
error_context(void *arg)
{
	StringInfoData buf;

	if (sw.src == NULL)
		return;
	initStringInfo(&buf);
	if (sw.adapter->context)
		sw.adapter->context(&sw, &buf);
	errcontext("%s source \"%s\"%s", sw.adapter->kind, sw.src->name, buf.data);
}
