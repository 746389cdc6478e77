/*-------------------------------------------------------------------------
 * customer360.c
 *	  Module entry point: GUCs, and the static launcher registered when the library
 *	  is in shared_preload_libraries.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#include "core/customer360.h"
#include "core/shmem.h"

PG_MODULE_MAGIC;

char	   *c360_database = NULL;
int			c360_batch_size = 1000;
int			c360_batch_ms = 100;
int			c360_tick_interval_ms = 1000;
int			c360_trait_backfill_chunk = 10000;
int			c360_rebuild_chunk = 1000000;
bool		c360_loaded_at_startup = false;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	c360_shmem_request();
}

static void
shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	c360_shmem_startup();
}

void
_PG_init(void)
{
	BackgroundWorker worker;

	/* PGC_POSTMASTER only while preloading: loaded later, it would be a FATAL error */
	DefineCustomStringVariable("c360.database",
							   "Database in which the customer360 workers run.",
							   NULL, &c360_database, "postgres",
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0, NULL, NULL, NULL);
	DefineCustomIntVariable("c360.batch_size",
							"Most changes a source worker applies in one transaction.",
							NULL, &c360_batch_size, 1000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("c360.batch_ms",
							"Longest a source worker collects changes before applying them.",
							NULL, &c360_batch_ms, 100, 1, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("c360.trait_backfill_chunk",
							"Size of a trait backfill chunk: the first is this many trait values, later ones take about 100 ms and are at most this many rows.",
							"c360.create_trait computes a trait at once on a profile of at most this many rows.",
							&c360_trait_backfill_chunk, 10000, 10, 10000000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("c360.rebuild_chunk",
							"Most customers c360.rebuild() recomputes in one statement.",
							"A rebuild's memory is that of one chunk; all chunks run in one transaction.",
							&c360_rebuild_chunk, 1000000, 1, 100000000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("c360.tick_interval",
							"How often the ticker moves the profile clock to now(); 0 stops it.",
							NULL, &c360_tick_interval_ms, 1000, 0, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	MarkGUCPrefixReserved("c360");

	if (!process_shared_preload_libraries_in_progress)
		return;
	c360_loaded_at_startup = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "customer360");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "c360_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "c360 launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "c360 launcher");
	RegisterBackgroundWorker(&worker);
}
