/*-------------------------------------------------------------------------
 * columns_sql.h
 *	  What the generators of SQL from the profile column catalog share
 *	  (src/core/columns.c): the entries' kinds, window bounds, and the pieces
 *	  every generated statement is made of.  Used by src/core/profile_sql.c (the
 *	  maintainer's statements), src/core/orders_sql.c (orders by difference),
 *	  src/core/reference.c (reference, verify, backfill)
 *	  and src/core/traits.c (the traits' own refresh and tick); nothing else
 *	  includes it.
 *-------------------------------------------------------------------------
 */
#ifndef C360_COLUMNS_SQL_H
#define C360_COLUMNS_SQL_H

#include "core/columns.h"

/* The windows the maintainer's statements take as parameters $2.., in this order. */
#define C360_NWINDOWS 3
extern const char *const c360_windows[C360_NWINDOWS];

/*
 * The window bounds a statement reads, by the lookback's text ("30 days"): the
 * maintainer's are parameters (c360_windows, then any that grow after them); the
 * reference's are columns of its CTE b, one per distinct lookback, added as they are met.
 */
typedef struct Bounds
{
	List	   *texts;
	List	   *refs;
	bool		grow;
	int			next_param;		/* grow: a new bound is this parameter (0: a column of b) */
	const char *zone;
	bool		parts;			/* agg_<input> adds the input's part (_c360_change) */
} Bounds;

/*
 * The customers' own ids ($1), and the raw ids (identity values) whose events are theirs.
 * RAW_OF's two arms cannot meet: identity values are unique in identity_resolved, and the
 * customer's own id is added only when it is no identity value at all; so UNION ALL, which
 * spares every customer a sort.
 */
#define IDS_SMALL "SELECT DISTINCT x AS _c360_id FROM unnest($1::text[]) x"
#define IDS_BULK "SELECT x AS _c360_id FROM unnest($1::text[]) x"
#define RAW_OF(src) \
"  SELECT " src "._c360_id, r._c360_raw FROM " src " CROSS JOIN LATERAL (\n" \
"    SELECT ir.identity_value FROM c360.identity_resolved ir WHERE ir.customer_id = " src "._c360_id\n" \
"    UNION ALL\n" \
"    SELECT " src "._c360_id WHERE NOT EXISTS\n" \
"      (SELECT 1 FROM c360.identity_resolved ir WHERE ir.identity_value = " src "._c360_id)\n" \
"  ) r(_c360_raw)"

/*
 * A customer id grouped in byte order: a backfill chunk sorts a mirror's rows by customer
 * for its aggregates, and "C" compares without the database collation's strcoll (the same
 * groups: equal ids are equal bytes).  Whatever joins such an id must name the collation
 * too: a join clause between two collations can be neither hashed nor merged.
 */
#define C360_BYTE_ORDER " COLLATE \"C\""

/* an entry's kind */
extern bool c360_col_is_value(const C360Trait *t);
extern bool c360_col_is_expression(const C360Trait *t);
extern bool c360_col_is_aggregate(const C360Trait *t);
extern bool c360_col_is_timed(const C360Trait *t);
extern bool c360_col_is_latest(const C360Trait *t);
extern bool c360_col_is_event(const C360Trait *t);
extern bool c360_col_is_event_count(const C360Trait *t);
extern bool c360_col_is_any(const C360Trait *t);
extern bool c360_col_any_of(List *cols, C360InputId input);
extern bool c360_col_any(List *cols, C360InputId input, bool (*keep) (const C360Trait *));

/* windows */
extern char *c360_col_interval_text(const Interval *span);
extern Interval *c360_col_parse_interval(const char *text);
extern Bounds *c360_col_param_bounds(int first);
extern const char *c360_col_bound_ref(Bounds *b, const char *text);
extern char *c360_col_render(const char *text, Bounds *b);

/* pieces of statements */
extern char *c360_col_key_column(C360InputId input);
extern const char *c360_col_customer_column(C360InputId input);
extern char *c360_col_events_of(const char *src, const char *alias, bool bulk);
extern void c360_col_append_each(StringInfo s, List *cols, bool (*keep) (const C360Trait *),
							const char *fmt, const char *sep);
extern void c360_col_append_profile_columns(StringInfo s, List *cols, const char *prefix,
											bool parts);
extern const char *c360_col_article(bool parts);
extern char *c360_col_filled(const C360Trait *t, const char *value);
extern char *c360_col_agg_value(const C360Trait *t);
extern void c360_col_append_agg_joins(StringInfo s, List *cols, const char *id);
extern void c360_col_append_trait_update(StringInfo s, List *traits,
										 const char *range, List *parted, bool lower);
extern char *c360_col_time_change(List *cols, Bounds *b);
extern void c360_col_append_expiry(StringInfo s, List *cols, Bounds *b);
extern char *c360_orders_delta_sql(List *cols, bool parts);
extern void c360_col_append_input_aggregates(StringInfo s, List *cols, C360InputId input,
										const char *id, const char *from, Bounds *b,
										const char *common);

/* next_change_at's parts (src/core/change_parts.c) */
extern bool c360_parts_known(void);
extern const char *c360_part_column(C360InputId input);
extern bool c360_input_has_part(List *traits, C360InputId input);
extern List *c360_parted_inputs(List *traits);
extern char *c360_part_aggregate(List *traits, C360InputId input, List *bounds,
								 const char *zone, bool outer_join);
extern void c360_append_part_sets(StringInfo s, List *parted, List *mine, List *new,
								  bool lower, const char *article);
extern char *c360_part_changed(List *mine, List *new, bool lower);

#endif							/* C360_COLUMNS_SQL_H */
