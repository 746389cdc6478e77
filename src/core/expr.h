/*-------------------------------------------------------------------------
 * expr.h
 *	  A user's SQL expression (a segment predicate, a trait's filter or argument),
 *	  analyzed by Postgres over one relation before it goes into generated SQL.
 *-------------------------------------------------------------------------
 */
#ifndef C360_EXPR_H
#define C360_EXPR_H

#include "postgres.h"
#include "nodes/parsenodes.h"

extern Query *c360_analyze_expression(const char *sql, int prefix, const char *text,
									  const char *label, const char *what, const char *over);

#endif							/* C360_EXPR_H */
