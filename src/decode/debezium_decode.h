/*-------------------------------------------------------------------------
 * debezium_decode.h
 *	  A Debezium change event (Kafka key and value, JSON converter) as a change
 *	  record of one input.  Plain code with no SPI and no ereport, so that it runs
 *	  in a test program too (test/debezium_decode_test.c).
 *-------------------------------------------------------------------------
 */
#ifndef C360_DEBEZIUM_DECODE_H
#define C360_DEBEZIUM_DECODE_H

#include "decode/kafka_decode.h"

extern C360KafkaOutcome c360_debezium_decode(C360InputId input, const char *key, size_t keylen,
											 const char *payload, size_t len, size_t max_bytes,
											 char *const *paths, C360Change **out, char **error);

#endif							/* C360_DEBEZIUM_DECODE_H */
