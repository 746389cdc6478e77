/*-------------------------------------------------------------------------
 * spi.h
 *	  Small SPI helpers shared by every module, and sets of customer ids.
 *-------------------------------------------------------------------------
 */
#ifndef C360_SPI_H
#define C360_SPI_H

#include "postgres.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"

/* Sets of customer ids (C strings), each id once. */
extern HTAB *c360_id_set(void);
extern List *c360_distinct_ids(List *ids, HTAB *seen);
extern uint32 c360_id_hash(const void *key, Size keysize);
extern int	c360_id_match(const void *a, const void *b, Size keysize);

/* Plans prepared once per backend; results as lists of customer ids. */
extern bool c360_column_known(const char *relname, const char *column);
extern SPIPlanPtr c360_plan(SPIPlanPtr *cache, const char *sql, int nargs, const Oid *types);
extern void c360_exec(SPIPlanPtr plan, Datum *values, const char *nulls);
extern List *c360_exec_ids(SPIPlanPtr plan, Datum *values, const char *nulls, List *ids);
extern List *c360_collect_ids(List *ids);
extern Datum c360_text_array(List *ids);

/*
 * A statement over a set of customers ($1) comes in two forms: a batch's few hundred are
 * planned once, for index probes per customer; a bulk set (a snapshot's, a rebuild's, a
 * backfill's) of at least C360_BULK_IDS is planned for its real size.
 */
#define C360_BULK_IDS 5000
extern List *c360_exec_sized(SPIPlanPtr *plan, const char *const sql[2], int n, int nargs,
							 Oid *types, Datum *args, List *ids);
extern List *c360_exec_bulk(const char *sql, int nargs, Oid *types, Datum *args, List *ids);

#endif							/* C360_SPI_H */
