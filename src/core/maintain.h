/*-------------------------------------------------------------------------
 * maintain.h
 *	  The incremental maintainer: lock the dirty customers, recompute their profile
 *	  rows set-based, write only real changes; tick and rebuild.
 *-------------------------------------------------------------------------
 */
#ifndef C360_MAINTAIN_H
#define C360_MAINTAIN_H

#include "postgres.h"

#include "core/clock.h"
#include "core/dirty.h"



extern int64 c360_maintain_refresh(C360Dirty *dirty, const C360Clock *clock, bool exclusive);
extern void c360_maintain_lock(Datum ids);
extern int64 c360_maintain_tick(TimestampTz to, bool strict);
extern int64 c360_maintain_rebuild(void);
/* the fewest profile rows a backfill chunk computes */
#define C360_MIN_CHUNK 100
extern int64 c360_maintain_backfill(bool all_at_once);

#endif							/* C360_MAINTAIN_H */
