/*-------------------------------------------------------------------------
 * erase.h
 *	  Tombstones of erased customers: late changes for them are dropped, counted.
 *-------------------------------------------------------------------------
 */
#ifndef C360_ERASE_H
#define C360_ERASE_H

#include "core/apply.h"

extern int64 c360_erase_filter(C360Batch *batch);
extern bool c360_erase_names_erased(const char *payload, const char *error);

#endif							/* C360_ERASE_H */
