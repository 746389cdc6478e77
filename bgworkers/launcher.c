/*-------------------------------------------------------------------------
 * launcher.c
 *	  The static launcher: connects to c360.database and keeps the dynamic workers
 *	  running, the ticker and one per enabled source, restarting a worker that dies
 *	  with back-off.  Catalog changes wake it (c360._wake_launcher at commit).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "core/customer360.h"
#include "core/shmem.h"
#include "sources/kinds.h"
#include "utils/snapmgr.h"
#include "worker.h"

#define MAX_BACKOFF_MS	60000

/* One dynamic worker the launcher owns. */
typedef struct WorkerSlot
{
	char		name[C360_NAME_LEN];
	const char *function;
	const char *type;			/* backend_type in pg_stat_activity */
	bool		wanted;
	BackgroundWorkerHandle *handle;
	TimestampTz started_at;
	TimestampTz next_start;
	int			failures;		/* consecutive quick deaths, for the back-off */
} WorkerSlot;

static WorkerSlot sources[C360_MAX_WORKERS];

static bool extension_installed(void);
static void want_sources(void);
static WorkerSlot *source_slot(const char *name);
static void keep_running(WorkerSlot *slot, bool wanted);
static bool slot_running(WorkerSlot *slot);
static void slot_start(WorkerSlot *slot);

void
c360_launcher_main(Datum arg)
{
	WorkerSlot	ticker = {"c360 ticker", "c360_ticker_main", "c360 ticker"};

	c360_worker_init("c360 launcher");
	c360_launcher_register_latch();
	elog(LOG, "c360 launcher started in database \"%s\"", c360_database);

	for (;;)
	{
		bool		installed = extension_installed();

		keep_running(&ticker, installed && c360_tick_interval_ms > 0);
		for (int i = 0; i < C360_MAX_WORKERS; i++)
			sources[i].wanted = false;
		if (installed)
			want_sources();
		for (int i = 0; i < C360_MAX_WORKERS; i++)
			if (sources[i].name[0] != '\0')
				keep_running(&sources[i], sources[i].wanted && !c360_worker_held_off(sources[i].name));
		c360_worker_wait(1000);
	}
}

/* Mark the slot of every source that should run (enabled, not parked in 'error'). */
static void
want_sources(void)
{
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	/* sinks share the launcher's slots, under "sink:<name>" */
	if (SPI_execute("SELECT name, kind FROM c360.sources WHERE enabled AND phase <> 'error'"
					" UNION ALL SELECT 'sink:' || name, 'kafka-sink' FROM c360.sinks WHERE enabled"
					" ORDER BY 1", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read c360.sources and c360.sinks");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1);
		char	   *kind = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
		WorkerSlot *slot = source_slot(name);
		const C360Kind *k = c360_kind(kind);

		if (slot == NULL || k == NULL)
			continue;
		slot->function = k->function;
		slot->type = k->type;
		slot->wanted = true;
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static WorkerSlot *
source_slot(const char *name)
{
	WorkerSlot *free_slot = NULL;

	for (int i = 0; i < C360_MAX_WORKERS; i++)
	{
		if (strcmp(sources[i].name, name) == 0)
			return &sources[i];
		if (free_slot == NULL && sources[i].name[0] == '\0')
			free_slot = &sources[i];
	}
	if (free_slot != NULL)
	{
		memset(free_slot, 0, sizeof(WorkerSlot));
		strlcpy(free_slot->name, name, sizeof(free_slot->name));
		free_slot->type = "c360 source";
	}
	return free_slot;
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
		elog(LOG, "%s \"%s\" stopped by the launcher", slot->type, slot->name);
	}
	else if (!running && !wanted && strcmp(slot->type, "c360 ticker") != 0)
		slot->name[0] = '\0';	/* a source or sink gone from the catalog frees its slot */
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
	elog(LOG, "%s \"%s\" exited; restarting in %ld ms", slot->type, slot->name, backoff_ms);
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
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s %s", slot->type, slot->name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", slot->type);
	strlcpy(worker.bgw_extra, slot->name, BGW_EXTRALEN);

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
