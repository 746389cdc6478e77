/*-------------------------------------------------------------------------
 * kafka_decode.h
 *	  A Kafka message (key, JSON value) as a change record of one input.  Plain
 *	  code with no SPI and no ereport, so that it runs in a test program too.
 *-------------------------------------------------------------------------
 */
#ifndef C360_KAFKA_DECODE_H
#define C360_KAFKA_DECODE_H

#include "core/change.h"

/*
 * jansson's value, declared here rather than by including jansson.h: its json_object()
 * clashes with the backend's SQL function of that name, which kafka_source.c sees.
 */
struct json_t;

/* The largest message value decoded unless the source's max_message_bytes says otherwise. */
#define C360_KAFKA_MAX_MESSAGE_BYTES (1024 * 1024)

/*
 * What a message of a format that carries more than changes becomes: a change (of any
 * input), nothing by design (counted as skipped, its offset still stored), or a dead
 * letter with the reason.
 */
typedef enum C360DecodeOutcome
{
	C360_DECODE_CHANGE,
	C360_DECODE_SKIP,
	C360_DECODE_BAD
} C360DecodeOutcome;

extern bool c360_kafka_decode(C360InputId input, const char *key, size_t keylen,
							  const char *payload, size_t len, size_t max_bytes,
							  char *const *paths, C360Change **out, char **error);
extern char *c360_kafka_payload_text(const char *payload, size_t len, size_t max_bytes);

/* The JSON helpers every format's decoder shares (src/decode/kafka_decode.c). */
extern bool c360_kafka_fail(char **error, const char *fmt,...) pg_attribute_printf(2, 3);
extern struct json_t *c360_kafka_parse_object(const char *payload, size_t len, size_t max_bytes,
											  char **error);
extern struct json_t *c360_kafka_path_value(struct json_t *root, const char *path);
extern bool c360_kafka_scalar_text(const C360Input *in, int col, const char *field,
								   struct json_t *v, char **text, char **error);
extern const char *c360_kafka_json_type_name(const struct json_t *v);

#endif							/* C360_KAFKA_DECODE_H */
