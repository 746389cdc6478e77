/*-------------------------------------------------------------------------
 * apply.h
 *	  The one apply path: a batch of change records becomes mirror rows and profile
 *	  rows in the caller's transaction.
 *-------------------------------------------------------------------------
 */
#ifndef C360_APPLY_H
#define C360_APPLY_H

#include "core/change.h"
#include "nodes/pg_list.h"

typedef struct C360Batch
{
	List	   *changes[C360_MAX_INPUTS];	/* C360Change *, in arrival order */
	int64		nchanges;
} C360Batch;

extern C360Batch *c360_apply_begin(void);
extern void c360_apply_add(C360Batch *batch, C360Change *change);
extern int64 c360_apply_finish(C360Batch *batch);
extern void c360_apply_defer(void);
extern int64 c360_apply_flush(void);

#endif							/* C360_APPLY_H */
