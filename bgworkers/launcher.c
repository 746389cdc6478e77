/*-------------------------------------------------------------------------
 * launcher.c
 *	  The static launcher: connects to c360.database and keeps the dynamic workers
 *	  running (today the ticker), restarting a worker that dies with back-off.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/timestamp.h"

#include "../src/customer360.h"
#include "worker.h"

#define MAX_BACKOFF_MS	60000

/* One dynamic worker the launcher owns. */
typedef struct WorkerSlot
{
	const char *name;
	const char *function;
	BackgroundWorkerHandle *handle;
	TimestampTz started_at;
	TimestampTz next_start;
	int			failures;		/* consecutive quick deaths, for the back-off */
} WorkerSlot;

static bool extension_installed(void);
static void keep_running(WorkerSlot *slot, bool wanted);
static bool slot_running(WorkerSlot *slot);
static void slot_start(WorkerSlot *slot);

void
c360_launcher_main(Datum arg)
{
	WorkerSlot	ticker = {"c360 ticker", "c360_ticker_main"};

	c360_worker_init("c360 launcher");
	elog(LOG, "c360 launcher started in database \"%s\"", c360_database);

	for (;;)
	{
		bool		installed = extension_installed();

		keep_running(&ticker, installed && c360_tick_interval_ms > 0);
		c360_worker_wait(1000);
	}
}

static bool
extension_installed(void)
{
	bool		installed;

	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("customer360", true));
	CommitTransactionCommand();
	return installed;
}

/* Start the slot's worker if it should run and is not running; stop it if it should not. */
static void
keep_running(WorkerSlot *slot, bool wanted)
{
	bool		running = slot_running(slot);

	if (running && !wanted)
	{
		TerminateBackgroundWorker(slot->handle);
		elog(LOG, "%s stopped by the launcher", slot->name);
	}
	else if (!running && wanted && GetCurrentTimestamp() >= slot->next_start)
		slot_start(slot);
}

/*
 * Whether the slot's worker is alive.  A worker that died within a minute of its start
 * counts as a failure and doubles the wait before the next start (1 s up to 60 s).
 */
static bool
slot_running(WorkerSlot *slot)
{
	pid_t		pid;
	long		backoff_ms;

	if (slot->handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(slot->handle, &pid) != BGWH_STOPPED)
		return true;

	pfree(slot->handle);
	slot->handle = NULL;
	if (TimestampDifferenceExceeds(slot->started_at, GetCurrentTimestamp(), 60000))
		slot->failures = 0;
	else
		slot->failures++;
	backoff_ms = Min((long) 1000 << Min(slot->failures, 6), MAX_BACKOFF_MS);
	slot->next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
	elog(LOG, "%s exited; restarting in %ld ms", slot->name, backoff_ms);
	return false;
}

static void
slot_start(WorkerSlot *slot)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "customer360");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", slot->function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", slot->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", slot->name);

	slot->started_at = GetCurrentTimestamp();
	if (!RegisterDynamicBackgroundWorker(&worker, &slot->handle))
	{
		slot->handle = NULL;
		slot->next_start = TimestampTzPlusMilliseconds(slot->started_at, 10000);
		ereport(WARNING,
				(errmsg("could not start %s: no free background worker slot", slot->name),
				 errhint("Raise max_worker_processes.")));
	}
}
