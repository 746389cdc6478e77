/*-------------------------------------------------------------------------
 * clock.h
 *	  The profile's clock and the advisory locks that order batches
 *	  (docs/ARCHITECTURE.md, "The clock and the locks").
 *-------------------------------------------------------------------------
 */
#ifndef C360_CLOCK_H
#define C360_CLOCK_H

#include "postgres.h"
#include "utils/timestamp.h"

/*
 * Advisory lock keys (the two-int4 form).  The clock lock is taken shared by every apply
 * batch and exclusively by tick, rebuild, segment and trait creation and batches that re-attribute
 * events; customer locks have two levels (all customers, then each: src/core/maintain.c,
 * c360_maintain_lock); the outbox lock orders segment_changes commits.
 */
#define C360_LOCK_CLOCK		0x63333630	/* "c360" */
#define C360_LOCK_CUSTOMER	0x63333631
#define C360_LOCK_OUTBOX	0x63333632
#define C360_LOCK_CUSTOMERS	0x63333633	/* all customers (key 0) */

/* The clock as one batch sees it: as_of and its window bounds, in the profile's zone. */
typedef struct C360Clock
{
	TimestampTz as_of;
	char	   *time_zone;
	TimestampTz d30;
	TimestampTz d90;
	TimestampTz d365;
	int64		catalog_version;	/* bumped when a trait is created or dropped (0.5) */
} C360Clock;

extern void c360_clock_lock(bool exclusive, C360Clock *clock);
extern void c360_clock_bounds(C360Clock *clock);
extern void c360_clock_lock_alone(void);
extern bool c360_clock_held_alone(void);
extern TimestampTz c360_timestamp_shift_days(TimestampTz ts, int days, const char *time_zone);
extern TimestampTz c360_timestamp_shift(TimestampTz ts, const Interval *span, bool back,
										const char *time_zone);
extern TimestampTz c360_timestamp_shift_in(TimestampTz ts, const Interval *span, bool back,
										   const char *zone, int len);

#endif							/* C360_CLOCK_H */
