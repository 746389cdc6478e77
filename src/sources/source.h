/*-------------------------------------------------------------------------
 * source.h
 *	  What every source worker shares, whatever its wire format: its catalog
 *	  entry, the flush of a decoded batch (poison rows into dead letters, counters
 *	  and position in the same transaction), and its error states.
 *-------------------------------------------------------------------------
 */
#ifndef C360_SOURCE_H
#define C360_SOURCE_H

#include "core/apply.h"
#include "utils/jsonb.h"

typedef struct C360SourceTable
{
	char	   *remote;			/* schema.table or topic */
	C360InputId input;
	List	   *columns;		/* input columns the remote had at snapshot; NIL: learn */
	char	   *since;			/* the table's changes apply from this source position on
								 * (its own snapshot holds those before); "": from the start
								 * of the stream; NULL: not copied yet */
	char	   *map[C360_MAX_COLS]; /* c360.source_tables.column_map: the remote column (for
									 * Kafka the dot-separated path) feeding each input
									 * column; NULL: the remote column of its own name */
} C360SourceTable;

typedef struct C360Source
{
	char	   *name;
	char	   *kind;
	Jsonb	   *options;
	char	   *phase;			/* snapshot, streaming, error */
	bool		enabled;
	bool		had_error;		/* last_error is set: cleared by the first good batch */
	List	   *tables;			/* C360SourceTable * */
	List	   *positions;		/* C360SourcePosition *: what c360.source_positions stores */
} C360Source;

/* A stored position part: 'lsn'; 'file', 'pos', 'gtid'; a Kafka partition's number. */
typedef struct C360SourcePosition
{
	char	   *part;
	char	   *position;
} C360SourcePosition;

extern C360Source *c360_source_load(const char *name);
extern char *c360_source_option(C360Source *src, const char *key, const char *dflt);
extern C360SourceTable *c360_source_table(C360Source *src, const char *remote);
extern const char *c360_source_remote_column(const C360SourceTable *t, int col);
extern int	c360_source_input_column(const C360SourceTable *t, const char *remote, bool nocase);
extern char *c360_source_column_desc(const C360SourceTable *t, int col);
extern char *c360_source_position(C360Source *src, const char *part);
extern void c360_source_check_column(C360Source *src, C360SourceTable *t, List *found, int c,
									 const char *remote);
extern int64 c360_source_apply(C360Source *src, C360Batch *batch, TimestampTz source_commit_at);
extern void c360_source_set_phase(C360Source *src, const char *phase);
extern void c360_source_set_columns(C360Source *src, C360SourceTable *t, List *columns);
extern void c360_source_mark_created(C360Source *src, const char *object);
extern bool c360_source_created(C360Source *src, const char *object);
extern bool c360_source_sole_feed(C360Source *src, C360SourceTable *t);
extern void c360_source_set_since(C360Source *src, C360SourceTable *t, const char *position);
extern bool c360_source_mapping_moved(C360Source *src);
extern void c360_source_save_position(C360Source *src, const char *part, const char *position);
extern void c360_source_dead_letter(C360Source *src, const char *position, const char *payload,
									const char *error);
extern void c360_source_record_error(const char *name, const char *message, bool stop);
extern void c360_source_record_trouble(const char *name, const char *message);

#endif							/* C360_SOURCE_H */
