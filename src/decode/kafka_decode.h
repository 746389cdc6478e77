/*-------------------------------------------------------------------------
 * kafka_decode.h
 *	  A Kafka message (key, JSON value) as a change record of one input.  Plain
 *	  code with no SPI and no ereport, so that it runs in a test program too.
 *-------------------------------------------------------------------------
 */
#ifndef C360_KAFKA_DECODE_H
#define C360_KAFKA_DECODE_H

#include "core/change.h"

/* The largest message value decoded unless the source's max_message_bytes says otherwise. */
#define C360_KAFKA_MAX_MESSAGE_BYTES (1024 * 1024)

extern bool c360_kafka_decode(C360InputId input, const char *key, size_t keylen,
							  const char *payload, size_t len, size_t max_bytes,
							  char *const *paths, C360Change **out, char **error);
extern char *c360_kafka_payload_text(const char *payload, size_t len, size_t max_bytes);

#endif							/* C360_KAFKA_DECODE_H */
