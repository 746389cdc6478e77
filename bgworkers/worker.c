/*-------------------------------------------------------------------------
 * worker.c
 *	  The pieces every customer360 worker loop repeats: signal set-up, the
 *	  worker_spi transaction sandwich, and the latch wait with config reload.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "../src/customer360.h"
#include "../src/shmem.h"
#include "../src/source.h"
#include "worker.h"

static bool stop_on_error = false;	/* the failure needs the user: phase 'error' */
static C360WorkerInfo *source_status = NULL;

static void source_failed(const char *name) pg_attribute_noreturn();

void
c360_worker_init(const char *appname)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(c360_database, NULL, 0);
	pgstat_report_appname(appname);

	/*
	 * Each statement sees what committed before it, whatever the server's default: a
	 * snapshot's end must see a map_table that committed while it copied.
	 */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
}

void
c360_worker_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
c360_worker_commit(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Sleep until the latch is set or timeout_ms passes; true when the config was reloaded. */
bool
c360_worker_wait(long timeout_ms)
{
	bool		reloaded = false;

	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		reloaded = true;
	}
	return reloaded;
}

/*
 * The body of every source worker: its name comes in bgw_extra; run() streams until an
 * error, which source_failed() records.
 */
void
c360_source_worker_main(c360_source_run run)
{
	char		name[BGW_EXTRALEN];

	memcpy(name, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	c360_worker_init(name);
	source_status = c360_worker_attach(name);
	PG_TRY();
	{
		run(name);
	}
	PG_CATCH();
	{
		source_failed(name);
	}
	PG_END_TRY();
	proc_exit(0);
}

/*
 * The named source, loaded in TopMemoryContext once it maps a table.  A source created
 * and mapped in separate statements starts in between: every kind then waits quietly in
 * state 'unmapped' (map_table's first table arrives within a second).
 */
C360Source *
c360_source_worker_load(const char *name)
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
		c360_worker_report(source_status, "unmapped", NULL);
		MemoryContextReset(cxt);
		c360_worker_wait(1000);
	}
}

/*
 * Once a second, between source transactions: a table mapped (or moved to another input)
 * since the worker loaded its source needs its own snapshot, which the next start takes.
 * Exit: the launcher starts the worker again, streaming from the committed position.
 */
void
c360_source_worker_check_mapping(C360Source *src)
{
	static TimestampTz checked = 0;
	bool		moved;

	if (!TimestampDifferenceExceeds(checked, GetCurrentTimestamp(), 1000))
		return;
	checked = GetCurrentTimestamp();
	c360_worker_begin("c360 source mapping");
	moved = c360_source_mapping_moved(src);
	c360_worker_commit();
	if (!moved)
		return;
	elog(LOG, "c360 source \"%s\": a table was mapped; restarting to copy it", src->name);
	proc_exit(0);
}

/* The running source worker's live status slot (for snapshot progress, lag, position). */
C360WorkerInfo *
c360_source_worker_status(void)
{
	return source_status;
}

/*
 * In a worker's PG_CATCH: log the error, leave the failed transaction, and return the
 * error (in TopMemoryContext) for the worker to record where the user will see it.
 */
ErrorData *
c360_worker_take_error(void)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(TopMemoryContext);
	edata = CopyErrorData();
	EmitErrorReport();
	AbortOutOfAnyTransaction();
	FlushErrorState();
	RESUME_INTERRUPTS();
	return edata;
}

/*
 * Record the failure and exit, as core's apply worker does for disable_on_error: a
 * failure that needs the user (schema drift, a lost slot or binlog) parks the source in
 * 'error'; anything else exits non-zero and the launcher restarts the worker from the
 * committed position.
 */
static void
source_failed(const char *name)
{
	ErrorData  *edata = c360_worker_take_error();

	c360_source_record_error(name, edata->message, stop_on_error);
	proc_exit(stop_on_error ? 0 : 1);
}

/* An error the user must fix: the source stops in state 'error', its position kept. */
void
c360_source_error(const char *fmt,...)
{
	va_list		ap;
	char		msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	stop_on_error = true;
	ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE), errmsg_internal("%s", msg)));
}
