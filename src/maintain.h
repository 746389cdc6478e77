/*-------------------------------------------------------------------------
 * maintain.h
 *	  The profile's clock and the incremental maintainer: lock the dirty customers,
 *	  recompute their profile rows set-based, write only real changes.
 *-------------------------------------------------------------------------
 */
#ifndef C360_MAINTAIN_H
#define C360_MAINTAIN_H

#include "postgres.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/*
 * Advisory lock keys (the two-int4 form).  The clock lock is taken shared by every apply
 * batch and exclusively by tick, rebuild, segment creation and batches that re-attribute
 * events; customer locks are striped; the outbox lock orders segment_changes commits.
 */
#define C360_LOCK_CLOCK		0x63333630	/* "c360" */
#define C360_LOCK_CUSTOMER	0x63333631
#define C360_LOCK_OUTBOX	0x63333632

/* The clock as one batch sees it: as_of and its window bounds, in the profile's zone. */
typedef struct C360Clock
{
	TimestampTz as_of;
	char	   *time_zone;
	TimestampTz d30;
	TimestampTz d90;
	TimestampTz d365;
} C360Clock;

extern void c360_clock_lock(bool exclusive, C360Clock *clock);
extern void c360_clock_bounds(C360Clock *clock);
extern void c360_clock_lock_alone(void);
extern bool c360_clock_held_alone(void);
extern TimestampTz c360_timestamp_shift_days(TimestampTz ts, int days, const char *time_zone);

/*
 * The customers a batch touched: full ones need every summary recomputed; behaviour ones
 * only the event columns (and the time-dependent stage), from their stored profile row;
 * timed ones only the stage and next_change_at.
 */
typedef struct C360Dirty
{
	List	   *full;
	List	   *behaviour;
	List	   *timed;			/* only time passed: counters exact, stage and expiry not */
	List	   *written;		/* profile rows already brought up to date (by difference) */
	bool		by_difference;	/* the batch may update profiles by difference */
	bool		locked;			/* the batch already holds its customers' locks */
} C360Dirty;

extern int64 c360_maintain_refresh(C360Dirty *dirty, const C360Clock *clock, bool exclusive);
extern void c360_maintain_lock(Datum ids);
extern int64 c360_maintain_tick(TimestampTz to, bool strict);
extern int64 c360_maintain_rebuild(void);

/* Sets of customer ids (C strings), each id once. */
extern HTAB *c360_id_set(void);
extern List *c360_distinct_ids(List *ids, HTAB *seen);
extern uint32 c360_id_hash(const void *key, Size keysize);
extern int	c360_id_match(const void *a, const void *b, Size keysize);

/* Small SPI helpers shared by the maintainer modules. */
extern SPIPlanPtr c360_plan(SPIPlanPtr *cache, const char *sql, int nargs, const Oid *types);
extern void c360_exec(SPIPlanPtr plan, Datum *values, const char *nulls);
extern List *c360_exec_ids(SPIPlanPtr plan, Datum *values, const char *nulls, List *ids);
extern Datum c360_text_array(List *ids);

#endif							/* C360_MAINTAIN_H */
