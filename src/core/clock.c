/*-------------------------------------------------------------------------
 * clock.c
 *	  The profile's clock (docs/ARCHITECTURE.md, "The clock and the locks"): the
 *	  clock lock every batch takes, the as-of instant read under it, and window
 *	  bounds computed with Postgres's own arithmetic in the profile's time zone.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgtime.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "core/clock.h"
#include "core/spi.h"

static SPIPlanPtr clock_plan[2];

/* Whether c360.clock has its catalog version (version 0.5 on). */
static bool
versioned_clock(void)
{
	return c360_column_known("clock", "catalog_version");
}

/*
 * Take the clock lock and read the clock with a fresh snapshot (under READ COMMITTED a new
 * statement sees every tick committed before the lock was granted).
 */
void
c360_clock_lock(bool exclusive, C360Clock *clock)
{
	bool		isnull;
	bool		versioned = versioned_clock();

	if (exclusive)
		DirectFunctionCall2(pg_advisory_xact_lock_int4,
							Int32GetDatum(C360_LOCK_CLOCK), Int32GetDatum(0));
	else
		DirectFunctionCall2(pg_advisory_xact_lock_shared_int4,
							Int32GetDatum(C360_LOCK_CLOCK), Int32GetDatum(0));

	c360_exec(c360_plan(&clock_plan[versioned],
						versioned ? "SELECT as_of, time_zone, catalog_version FROM c360.clock" :
						"SELECT as_of, time_zone, 0::bigint FROM c360.clock", 0, NULL),
			  NULL, NULL);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the customer360 clock (table c360.clock) must hold exactly one row")));
	clock->as_of = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull));
	clock->time_zone = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	clock->catalog_version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 3, &isnull));
	c360_clock_bounds(clock);
}

/*
 * Run the rest of this transaction alone: for transactions that apply several batches
 * (a source's snapshot), whose customer locks would otherwise pile up out of order.
 */
void
c360_clock_lock_alone(void)
{
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(C360_LOCK_CLOCK),
						Int32GetDatum(0));
}

/* Whether this transaction holds the clock exclusively: no other batch can run. */
bool
c360_clock_held_alone(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, C360_LOCK_CLOCK, 0, 2);
	return LockHeldByMe(&tag, ExclusiveLock);
}

void
c360_clock_bounds(C360Clock *clock)
{
	clock->d30 = c360_timestamp_shift_days(clock->as_of, -30, clock->time_zone);
	clock->d90 = c360_timestamp_shift_days(clock->as_of, -90, clock->time_zone);
	clock->d365 = c360_timestamp_shift_days(clock->as_of, -365, clock->time_zone);
}

/* ts + days, as c360_timestamp_shift does it */
TimestampTz
c360_timestamp_shift_days(TimestampTz ts, int days, const char *time_zone)
{
	Interval	span = {.time = 0, .day = days, .month = 0};

	return c360_timestamp_shift(ts, &span, false, time_zone);
}

/*
 * The zone of that name (len bytes, not terminated), looked up once for as long as the
 * same name keeps coming: c360._shift runs once per customer and window in a statement.
 */
static pg_tz *
zone_named(const char *name, int len)
{
	static char *last_name;
	static int	last_len = -1;
	static pg_tz *last_tz;
	char	   *z;

	if (last_tz != NULL && len == last_len && memcmp(name, last_name, len) == 0)
		return last_tz;
	z = pnstrdup(name, len);
	last_tz = pg_tzset(z);
	if (last_tz == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" not recognized", z)));
	if (last_name)
		pfree(last_name);
	last_name = MemoryContextStrdup(TopMemoryContext, z);
	last_len = len;
	return last_tz;
}

/*
 * ts + span (or ts - span when back), with Postgres's own timestamptz +/- interval
 * arithmetic as if the session's TimeZone were time_zone: every backend, whatever its own
 * TimeZone, gets the same bounds.
 */
TimestampTz
c360_timestamp_shift(TimestampTz ts, const Interval *span, bool back, const char *time_zone)
{
	return c360_timestamp_shift_in(ts, span, back, time_zone, strlen(time_zone));
}

/* As c360_timestamp_shift, the zone's name len bytes long (not terminated). */
TimestampTz
c360_timestamp_shift_in(TimestampTz ts, const Interval *span, bool back, const char *zone,
						int len)
{
	pg_tz	   *saved = session_timezone;
	pg_tz	   *tz = zone_named(zone, len);
	TimestampTz result = 0;

	session_timezone = tz;
	PG_TRY();
	{
		result = DatumGetTimestampTz(DirectFunctionCall2(back ? timestamptz_mi_interval :
														 timestamptz_pl_interval,
														 TimestampTzGetDatum(ts),
														 IntervalPGetDatum(span)));
	}
	PG_FINALLY();
	{
		session_timezone = saved;
	}
	PG_END_TRY();
	return result;
}
