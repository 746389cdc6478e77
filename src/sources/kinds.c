/*-------------------------------------------------------------------------
 * kinds.c
 *	  Every kind of source and sink, and the background worker function that runs
 *	  it: the launcher starts workers from this list, and create_source and
 *	  create_sink accept only kinds in it.  A new kind of source is an adapter file
 *	  in bgworkers/ (docs/ARCHITECTURE.md, "Source workers") and a line here.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "sources/kinds.h"

static const C360Kind kinds[] = {
	{"postgres-cdc", "c360_pg_source_main", "c360 source"},
	{"mysql-cdc", "c360_mysql_source_main", "c360 source"},
	{"kafka", "c360_kafka_source_main", "c360 source"},
	{"kafka-sink", "c360_kafka_sink_main", "c360 sink"},
};

/* The named kind, or NULL. */
const C360Kind *
c360_kind(const char *name)
{
	for (int i = 0; i < lengthof(kinds); i++)
		if (strcmp(kinds[i].name, name) == 0)
			return &kinds[i];
	return NULL;
}
