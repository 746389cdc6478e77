/*-------------------------------------------------------------------------
 * ticker.c
 *	  The ticker worker: every c360.tick_interval it moves the profile clock to now(),
 *	  which brings the time-dependent profile columns up to date (c360.tick()).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#include "core/customer360.h"
#include "core/maintain.h"
#include "worker.h"

/*
 * Between ticks, backfill new traits one chunk per transaction (each sized to take about
 * as long as a source's batch: src/core/maintain.c), for at most one tick interval.
 * Returns whether a trait is still backfilling.
 */
static bool
backfill_traits(void)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), c360_tick_interval_ms);
	int64		n = 0;

	while (n >= 0 && GetCurrentTimestamp() < until)
	{
		CHECK_FOR_INTERRUPTS();
		c360_worker_begin("c360 trait backfill");
		n = c360_maintain_backfill(false);
		c360_worker_commit();
	}
	return n >= 0;
}

void
c360_ticker_main(Datum arg)
{
	c360_worker_init("c360 ticker");
	elog(LOG, "c360 ticker started, every %d ms", c360_tick_interval_ms);

	for (;;)
	{
		if (c360_tick_interval_ms <= 0)
		{
			elog(LOG, "c360 ticker stopping: c360.tick_interval is 0");
			proc_exit(0);
		}
		c360_worker_begin("c360 tick");
		if (!OidIsValid(get_extension_oid("customer360", true)))
		{
			/* dropped since the launcher last looked: nothing to tick, not a failure */
			c360_worker_commit();
			elog(LOG, "c360 ticker stopping: extension customer360 was dropped");
			proc_exit(0);
		}
		c360_maintain_tick(GetCurrentTimestamp(), false);
		c360_worker_commit();
		c360_worker_wait(backfill_traits() ? 0 : c360_tick_interval_ms);
	}
}
