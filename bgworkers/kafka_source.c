/*-------------------------------------------------------------------------
 * kafka_source.c
 *	  The Kafka (kafka) source worker.  Not in this build yet: c360.create_source
 *	  refuses the kind while c360_kafka_source_available is false.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "worker.h"

const bool	c360_kafka_source_available = false;

void
c360_kafka_source_main(Datum arg)
{
	elog(ERROR, "the kafka source worker is not part of this build");
}
