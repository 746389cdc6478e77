/*-------------------------------------------------------------------------
 * segment_decode.h
 *	  A Segment (or RudderStack) spec call, a Kafka message of format "segment", as
 *	  a change record: track, page and screen calls become behavioural events,
 *	  identify and alias calls identity links.  Plain code with no SPI and no
 *	  ereport, like kafka_decode.h, so that it runs in a test program too.
 *-------------------------------------------------------------------------
 */
#ifndef C360_SEGMENT_DECODE_H
#define C360_SEGMENT_DECODE_H

#include "decode/kafka_decode.h"

extern C360KafkaOutcome c360_segment_decode(const char *payload, size_t len, size_t max_bytes,
											 char *const *paths, C360Change **out,
											 char **reason);
extern bool c360_segment_check_paths(char *const *paths, char **error);

#endif							/* C360_SEGMENT_DECODE_H */
