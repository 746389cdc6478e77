/*-------------------------------------------------------------------------
 * traits.h
 *	  Computed traits: profile columns users define in SQL (c360.create_trait),
 *	  described as data in c360.column_catalog and maintained by statements
 *	  generated from it (docs/ARCHITECTURE.md, "Computed traits").
 *-------------------------------------------------------------------------
 */
#ifndef C360_TRAITS_H
#define C360_TRAITS_H

#include "postgres.h"
#include "utils/timestamp.h"

#include "core/change.h"
#include "core/clock.h"
#include "core/dirty.h"

/* One row of c360.column_catalog. */
typedef struct C360Trait
{
	char	   *name;
	C360InputId input;
	char	   *func;			/* count_star, count, count_distinct, sum, avg, min, max,
								 * bool_or, bool_and, mode, first */
	char	   *arg;			/* the aggregated expression; NULL for count(*) */
	char	   *order_by;		/* first: the ordering expression */
	bool		descending;
	char	   *filter;			/* NULL: every row */
	Interval   *lookback;		/* NULL: all time */
	char	   *time_column;
	bool		ready;			/* backfilled */
} C360Trait;

extern bool c360_traits_known(void);
extern List *c360_traits_load(const C360Clock *clock);
extern List *c360_traits_refresh(C360Dirty *dirty, const C360Clock *clock, List *changed);
extern void c360_traits_tick(const C360Clock *from, const C360Clock *to, C360Dirty *dirty);
extern List *c360_traits_recompute(C360InputId input, List *ids, const C360Clock *clock,
								   List *changed);
extern List *c360_traits_backfill(List *names, List *ids, const C360Clock *clock);
extern char *c360_traits_statement(C360InputId input, const char *purpose);
extern char *c360_trait_probe_sql(const C360Trait *t);
extern char *c360_traits_verify_sql(void);

#endif							/* C360_TRAITS_H */
