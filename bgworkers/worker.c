/*-------------------------------------------------------------------------
 * worker.c
 *	  The pieces every customer360 worker repeats: signal set-up, the worker_spi
 *	  transaction sandwich, the latch wait with config reload, and taking an error
 *	  in PG_CATCH.  Source workers run on the skeleton in source_worker.c.
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

#include "core/customer360.h"
#include "core/shmem.h"
#include "sources/source.h"
#include "worker.h"


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

/*
 * Sleep until the latch is set, the socket (if valid) is readable, or timeout_ms passes;
 * then serve interrupts and a config reload.
 */
void
c360_worker_wait_socket(pgsocket fd, long timeout_ms)
{
	int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;

	if (fd != PGINVALID_SOCKET)
		events |= WL_SOCKET_READABLE;
	(void) WaitLatchOrSocket(MyLatch, events, fd, timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	c360_worker_interrupts();
}

void
c360_worker_wait(long timeout_ms)
{
	c360_worker_wait_socket(PGINVALID_SOCKET, timeout_ms);
}

/*
 * Serve a pending interrupt (SIGTERM ends the worker) and reload the config on SIGHUP:
 * in every wait, and also between units of work that never wait (a long backlog).
 */
void
c360_worker_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
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
