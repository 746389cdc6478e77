/*-------------------------------------------------------------------------
 * kinds.h
 *	  Every kind of source and sink, and the worker function that runs it.
 *-------------------------------------------------------------------------
 */
#ifndef C360_KINDS_H
#define C360_KINDS_H

typedef struct C360Kind
{
	const char *name;			/* as in c360.sources.kind; 'kafka-sink' for sinks */
	const char *function;		/* the worker's entry point in this library */
	const char *type;			/* its backend_type */
} C360Kind;

extern const C360Kind *c360_kind(const char *name);

#endif							/* C360_KINDS_H */
