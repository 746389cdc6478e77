/*-------------------------------------------------------------------------
 * sources.c
 *	  SQL-callable helpers behind the source and sink API in schema c360: which
 *	  kinds exist, waking the launcher at commit, stopping a worker, the live worker
 *	  status that c360.source_status shows, and dropping what a PostgreSQL source
 *	  created on its server.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "core/shmem.h"
#include "sources/kinds.h"
#include "sources/pgremote.h"

PG_FUNCTION_INFO_V1(c360_wake_launcher);
PG_FUNCTION_INFO_V1(c360_stop_worker);
PG_FUNCTION_INFO_V1(c360_worker_status);
PG_FUNCTION_INFO_V1(c360_release_worker);
PG_FUNCTION_INFO_V1(c360_kind_available);
PG_FUNCTION_INFO_V1(c360_pg_drop_remote);

/* c360._kind_available(kind text): whether there is a worker for the source or sink kind */
Datum
c360_kind_available(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(c360_kind(text_to_cstring(PG_GETARG_TEXT_PP(0))) != NULL);
}

/* c360._pg_drop_remote(conninfo text, slot text, publication text) */
Datum
c360_pg_drop_remote(PG_FUNCTION_ARGS)
{
	c360_pgremote_drop(text_to_cstring(PG_GETARG_TEXT_PP(0)),
					   text_to_cstring(PG_GETARG_TEXT_PP(1)),
					   PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)));
	PG_RETURN_VOID();
}

/* c360._release_worker(name text): a new source or sink may start at once under this name */
Datum
c360_release_worker(PG_FUNCTION_ARGS)
{
	c360_worker_hold_off(text_to_cstring(PG_GETARG_TEXT_PP(0)), 0);
	PG_RETURN_VOID();
}

/* c360._wake_launcher(): the launcher re-reads the catalog when this transaction commits */
Datum
c360_wake_launcher(PG_FUNCTION_ARGS)
{
	c360_launcher_wake_at_commit();
	PG_RETURN_VOID();
}

/*
 * c360._stop_worker(name text): keep the launcher away from the worker for a minute, stop
 * it, and wait (up to 30 s) until it is gone, so that its remote slot can be dropped.
 */
Datum
c360_stop_worker(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	C360WorkerInfo info;

	if (!c360_shmem_available())
		PG_RETURN_VOID();
	c360_worker_hold_off(name, 60000);
	for (int i = 0; i < 300; i++)
	{
		if (c360_worker_find(name, &info) == NULL || info.pid == 0)
			PG_RETURN_VOID();
		if (kill(info.pid, SIGTERM) != 0 && errno == ESRCH)
			PG_RETURN_VOID();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_IN_USE),
			 errmsg("the worker of source \"%s\" did not stop within 30 seconds", name)));
	PG_RETURN_VOID();
}

/* c360.worker_status(): one row per running source or sink worker */
Datum
c360_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();

	InitMaterializedSRF(fcinfo, 0);
	if (!c360_shmem_available())
		return (Datum) 0;
	for (int i = 0; i < C360_MAX_WORKERS; i++)
	{
		C360WorkerInfo info;
		Datum		values[9];
		bool		nulls[9] = {0};

		if (!c360_worker_find_slot(i, &info) || info.pid == 0)
			continue;
		values[0] = CStringGetTextDatum(info.name);
		values[1] = Int32GetDatum(info.pid);
		values[2] = CStringGetTextDatum(info.state);
		values[3] = CStringGetTextDatum(info.position);
		nulls[3] = info.position[0] == '\0';
		values[4] = Int64GetDatum(info.lag_bytes);
		values[5] = Float8GetDatum(info.caught_up || info.last_source_commit_at == 0 ? 0.0 :
								   (double) (now - info.last_source_commit_at) / USECS_PER_SEC);
		values[6] = Int64GetDatum(info.snapshot_done);
		values[7] = Int64GetDatum(info.snapshot_total);
		values[8] = Int64GetDatum(info.lag_messages);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
