/*-------------------------------------------------------------------------
 * columns.h
 *	  The profile column catalog (docs/ARCHITECTURE.md, "The profile column
 *	  catalog"): every derived column of c360.customer_360 described once, as data.
 *	  The article's columns are its built-in entries (src/core/columns.c); users'
 *	  traits are rows of c360.column_catalog (src/core/traits.c).  The maintainer's
 *	  statements for the article's columns, reference_profile() and verify() are
 *	  generated from the entries.
 *-------------------------------------------------------------------------
 */
#ifndef C360_COLUMNS_H
#define C360_COLUMNS_H

#include "postgres.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "core/change.h"
#include "core/clock.h"

/*
 * One entry of the catalog: a built-in column or a trait.  An entry is a value of the
 * customer row (func "value"), an aggregate over one input's rows of the customer, or
 * an expression over the customer's other columns of the same input ("expression").
 */
typedef struct C360Trait
{
	char	   *name;
	C360InputId input;
	char	   *func;			/* value, expression, count_star, count, count_distinct,
								 * sum, avg, min, max, bool_or, bool_and, mode, first */
	char	   *arg;			/* the aggregated expression (the column, the expression) */
	char	   *order_by;		/* first: the ordering expression */
	bool		descending;
	char	   *filter;			/* NULL: every row */
	Interval   *lookback;		/* NULL: all time */
	char	   *time_column;
	char	   *type;			/* the column's type; NULL while create_trait probes it */
	char	   *fill;			/* the value when no row counts (COALESCE); NULL: NULL */
	char	   *changes_at;		/* expression: the next instant time alone changes it */
	bool		builtin;
	bool		ready;			/* backfilled */
} C360Trait;

/* The maintainer's statements for the article's columns (src/core/maintain.c). */
typedef enum C360ProfileStatement
{
	C360_REFRESH_FULL,			/* whole rows */
	C360_REFRESH_BEHAVIOUR,		/* event columns and what time changes */
	C360_REFRESH_TIME,			/* only what time changes */
	C360_TICK_BAND,				/* rows whose time-dependent expressions a tick changes */
	C360_ROLLUP_INSERT,			/* new events, their owners' event columns by difference */
	C360_ROLLUP_SHIFT,			/* events that left the window, by difference */
	C360_ORDERS_DELTA,			/* new and updated orders, by difference */
	C360_PROFILE_STATEMENTS
} C360ProfileStatement;

extern List *c360_builtin_columns(void);
extern const char *c360_profile_statement(C360ProfileStatement which, bool bulk);
extern const char *c360_profile_statement_name(C360ProfileStatement which);
extern int	c360_profile_bounds(const C360Clock *clock, Datum *args, Oid *types);
extern int	c360_window_args(List *lookbacks, const C360Clock *clock, Datum *args, Oid *types);
extern void c360_column_aggregate(StringInfo s, const C360Trait *t, const char *cond);
extern char *c360_column_condition(const C360Trait *t, bool outer_join, const char *bound);
extern char *c360_reference_sql(List *traits, bool article_only);
extern char *c360_verify_sql(List *traits, bool traits_only, List *parted);
extern char *c360_backfill_sql(List *traits, bool parts, List **lookbacks);
extern char *c360_events_delta_sql(List *traits, bool parts, List **lookbacks);

#endif							/* C360_COLUMNS_H */
