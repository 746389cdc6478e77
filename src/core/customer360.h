/*-------------------------------------------------------------------------
 * customer360.h
 *	  Settings (GUCs) and process-wide state of the customer360 extension.
 *-------------------------------------------------------------------------
 */
#ifndef CUSTOMER360_H
#define CUSTOMER360_H

#include "postgres.h"

extern char *c360_database;
extern int	c360_batch_size;
extern int	c360_batch_ms;
extern int	c360_tick_interval_ms;
extern int	c360_trait_backfill_chunk;
extern int	c360_rebuild_chunk;
extern bool c360_loaded_at_startup;

#endif							/* CUSTOMER360_H */
