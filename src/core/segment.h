/*-------------------------------------------------------------------------
 * segment.h
 *	  Segment membership maintained for the profile rows a batch changed.
 *-------------------------------------------------------------------------
 */
#ifndef C360_SEGMENT_H
#define C360_SEGMENT_H

#include "postgres.h"
#include "nodes/pg_list.h"

extern void c360_segments_refresh(List *changed);
extern List *c360_segment_predicate_columns(const char *predicate);

#endif							/* C360_SEGMENT_H */
