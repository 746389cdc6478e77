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
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "core/change.h"
#include "core/clock.h"
#include "core/columns.h"
#include "core/dirty.h"

extern bool c360_traits_known(void);
extern List *c360_traits_load(const C360Clock *clock);
extern List *c360_traits_refresh(C360Dirty *dirty, const C360Clock *clock, List *changed);
extern void c360_traits_tick(const C360Clock *from, const C360Clock *to, C360Dirty *dirty);
extern List *c360_traits_recompute(C360InputId input, List *ids, const C360Clock *clock,
								   List *changed);
extern const char *c360_traits_events_delta(const C360Clock *clock, List **lookbacks,
											 SPIPlanPtr **plan);
extern List *c360_traits_backfill(List *names, List *ids, const C360Clock *clock);
extern char *c360_traits_statement(C360InputId input, const char *purpose);
extern int64 c360_parts_recompute(C360InputId input);
extern char *c360_trait_probe_sql(const C360Trait *t);
extern char *c360_traits_verify_sql(void);
extern char *c360_profile_verify_sql(void);
extern char *c360_profile_reference_sql(void);

#endif							/* C360_TRAITS_H */
