/*-------------------------------------------------------------------------
 * dirty.h
 *	  The customers a batch touched, as the apply path hands them to the rollups
 *	  and the maintainer.
 *-------------------------------------------------------------------------
 */
#ifndef C360_DIRTY_H
#define C360_DIRTY_H

#include "postgres.h"
#include "nodes/pg_list.h"

#include "core/change.h"

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
	/* per input, the customers whose rows of it changed: whose traits over it to recompute */
	List	   *inputs[C360_MAX_INPUTS];
	bool		truncated[C360_MAX_INPUTS]; /* every customer's traits over it */
	bool		by_difference;	/* the batch may update profiles by difference */
	/* changed orders to apply by difference (src/core/orders_sql.c): their customers, and
	 * per column of the input an array of their stored images, then one of their new ones */
	List	   *order_ids;
	Datum		order_images[2 * C360_MAX_COLS];
	bool		locked;			/* the batch already holds its customers' locks */
} C360Dirty;

#endif							/* C360_DIRTY_H */
