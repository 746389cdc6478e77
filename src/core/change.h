/*-------------------------------------------------------------------------
 * change.h
 *	  The common change record every source decodes into, and the catalog of the
 *	  profile inputs (their mirror tables, columns and keys): the article's five, built
 *	  in, and users' own (c360.create_input), loaded by src/core/inputs.c.
 *-------------------------------------------------------------------------
 */
#ifndef C360_CHANGE_H
#define C360_CHANGE_H

#include "postgres.h"
#include "utils/jsonb.h"

/* The most columns an input has (c360.create_input refuses more). */
#define C360_MAX_COLS 32

/*
 * Slots of c360_inputs: the built-in inputs first, then users' own in the order this
 * process first saw them.  A slot is never reused while the process lives (plans and
 * statements are cached per slot), so a session that sees more than the slots left of
 * inputs created gets an error and must reconnect.
 */
#define C360_MAX_INPUTS 128

typedef enum C360BuiltinInput
{
	C360_CUSTOMERS,
	C360_ORDERS,
	C360_SUPPORT_TICKETS,
	C360_BEHAVIORAL_EVENTS,
	C360_IDENTITY_GRAPH,
	C360_BUILTIN_INPUTS
} C360BuiltinInput;

typedef int C360InputId;		/* a slot of c360_inputs */

typedef enum C360Op
{
	C360_INSERT,
	C360_UPDATE,
	C360_DELETE,
	C360_TRUNCATE				/* every row of the input goes (a source TRUNCATE) */
} C360Op;

typedef struct C360Column
{
	const char *name;
	Oid			type;
	bool		required;		/* NOT NULL in the mirror */
} C360Column;

typedef struct C360Input
{
	const char *name;			/* input name = mirror table name in schema c360; NULL: a
								 * slot not in use, or whose input was dropped */
	int			ncols;
	C360Column	cols[C360_MAX_COLS];
	int			key_col;		/* single-column text primary key */
	int			customer_col;	/* the column naming the customer (or raw id) */
	Oid			relid;			/* users' inputs: the mirror table it was loaded from */
} C360Input;

extern C360Input c360_inputs[C360_MAX_INPUTS];
extern int	c360_ninputs;		/* slots in use or used: loops over inputs stop here */

/*
 * A row image as text, the way every wire format can produce it: present[i] false means the
 * source did not send column i (an unchanged TOASTed value, a partial image); a present
 * column with value NULL is SQL NULL.
 */
typedef struct C360Tuple
{
	bool		present[C360_MAX_COLS];
	char	   *values[C360_MAX_COLS];
} C360Tuple;

typedef struct C360Change
{
	C360InputId input;
	C360Op		op;
	C360Tuple  *old;			/* NULL for insert; may hold only the key */
	C360Tuple  *new;			/* NULL for delete */
	const char *position;		/* where the source had it, for dead letters; may be NULL */
} C360Change;

extern int	c360_input_by_name(const char *name);
extern const char *c360_type_name(Oid type);
extern void c360_inputs_load(void);	/* src/core/inputs.c */
extern bool c360_input_current(C360InputId input);	/* src/core/inputs.c */
extern C360Op c360_op_by_name(const char *name);
extern int	c360_column_by_name(const C360Input *in, const char *name);
extern C360Tuple *c360_tuple_from_jsonb(const C360Input *in, Jsonb *jb, const char *what);
extern void c360_change_check(const C360Change *ch);
extern const char *c360_change_key(const C360Change *ch, bool old_image);
extern char *c360_change_json(const C360Change *ch);

#endif							/* C360_CHANGE_H */
