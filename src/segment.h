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

#endif							/* C360_SEGMENT_H */
