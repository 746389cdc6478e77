/*-------------------------------------------------------------------------
 * kafka_sink.c
 *	  The Kafka sink worker: publishes a segment's outbox.  Not in this build yet:
 *	  c360.create_sink refuses while c360_kafka_sink_available is false.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "worker.h"

const bool	c360_kafka_sink_available = false;

void
c360_kafka_sink_main(Datum arg)
{
	elog(ERROR, "the kafka sink worker is not part of this build");
}
