/*-------------------------------------------------------------------------
 * kafka_client.h
 *	  What the Kafka source and the Kafka sink share: the user's librdkafka
 *	  settings, applied over ours, and a client whose threads take no signal.
 *-------------------------------------------------------------------------
 */
#ifndef C360_KAFKA_CLIENT_H
#define C360_KAFKA_CLIENT_H

#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "nodes/pg_list.h"

extern List *c360_kafka_setting(List *settings, const char *name, const char *value);
extern const char *c360_kafka_apply_settings(rd_kafka_conf_t *conf, List *settings,
											 char *errstr, size_t errlen);
extern rd_kafka_t *c360_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf,
								  char *errstr, size_t errlen);

#endif							/* C360_KAFKA_CLIENT_H */
