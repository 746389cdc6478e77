/*-------------------------------------------------------------------------
 * kafka_decode.h
 *	  A Kafka message (key, JSON value) as a change record of one input.  Plain
 *	  code with no SPI and no ereport, so that it runs in a test program too.
 *	  Besides the plain JSON format's decoder, the pieces other formats' decoders
 *	  (debezium_decode.c, segment_decode.c) share: parsing, paths and mapped column
 *	  values, scalars as text, instants as UTC text, the required-columns check.
 *-------------------------------------------------------------------------
 */
#ifndef C360_KAFKA_DECODE_H
#define C360_KAFKA_DECODE_H

#include "core/change.h"

/*
 * jansson's value, declared rather than included: jansson.h clashes with the backend's
 * fmgrprotos.h (json_object), which the worker includes.  For the same reason no
 * decoder calls jansson's json_object(): in the backend the name binds to the SQL
 * function json_object of the server itself (a crash that the test programs, which
 * run without the server, cannot show).
 */
struct json_t;

/* The largest message value decoded unless the source's max_message_bytes says otherwise. */
#define C360_KAFKA_MAX_MESSAGE_BYTES (1024 * 1024)

/* Seconds since 1970 of 0001-01-01 00:00:00 and 9999-12-31 23:59:59 UTC: what renders as a year. */
#define C360_MIN_EPOCH_SECONDS	INT64CONST(-62135596800)
#define C360_MAX_EPOCH_SECONDS	INT64CONST(253402300799)

/* A Kafka source's message format, its option "format". */
typedef enum C360KafkaFormat
{
	C360_KAFKA_JSON,			/* an object of the input's columns (the default) */
	C360_KAFKA_DEBEZIUM,		/* Debezium's change event envelope */
	C360_KAFKA_SEGMENT			/* Segment's track/identify calls */
} C360KafkaFormat;

#define C360_KAFKA_FORMAT_NAMES "json, debezium or segment"

/*
 * What a message becomes: a change (of any input: a Segment identify is an identity link
 * from an events topic), nothing by design (a Debezium tombstone, a Segment group call:
 * its offset is stored all the same), or a dead letter with the reason.
 */
typedef enum C360KafkaOutcome
{
	C360_KAFKA_CHANGE,
	C360_KAFKA_SKIP,
	C360_KAFKA_DEAD_LETTER		/* the reason is in *error */
} C360KafkaOutcome;

extern bool c360_kafka_format_by_name(const char *name, C360KafkaFormat *format);
extern bool c360_kafka_decode(C360InputId input, const char *key, size_t keylen,
							  const char *payload, size_t len, size_t max_bytes,
							  char *const *paths, C360Change **out, char **error);
extern char *c360_kafka_payload_text(const char *payload, size_t len, size_t max_bytes);

/* shared by the decoders of every format */
extern bool c360_kafka_fail(char **error, const char *fmt,...) pg_attribute_printf(2, 3);
extern struct json_t *c360_kafka_parse_object(const char *payload, size_t len, size_t max_bytes,
											  char **error);
extern struct json_t *c360_kafka_path_value(struct json_t *root, const char *path);
extern struct json_t *c360_kafka_column_value(const C360Input *in, struct json_t *root,
											  char *const *paths, int col, const char **field);
extern bool c360_kafka_scalar_text(const C360Input *in, int col, const char *field,
								   struct json_t *v, char **text, char **error);
extern char *c360_kafka_utc_text(int64 seconds, int32 nanos);
extern bool c360_kafka_required_present(const C360Input *in, const C360Tuple *t, char **error);
extern const char *c360_kafka_json_type_name(const struct json_t *v);

#endif							/* C360_KAFKA_DECODE_H */
