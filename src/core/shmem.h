/*-------------------------------------------------------------------------
 * shmem.h
 *	  Shared memory of customer360: the launcher's latch (so that catalog changes
 *	  wake it) and one live status slot per running source or sink worker.
 *-------------------------------------------------------------------------
 */
#ifndef C360_SHMEM_H
#define C360_SHMEM_H

#include "postgres.h"
#include "datatype/timestamp.h"

#define C360_MAX_WORKERS	64
#define C360_NAME_LEN		64
#define C360_TEXT_LEN		256

/* What a worker reports while it runs; the catalog keeps what must survive a restart. */
typedef struct C360WorkerInfo
{
	bool		in_use;
	pid_t		pid;
	char		name[C360_NAME_LEN];
	char		state[16];		/* snapshot, streaming, ... */
	char		position[C360_TEXT_LEN];
	int64		snapshot_done;
	int64		snapshot_total;
	int64		lag_bytes;
	int64		lag_messages;	/* Kafka: high watermark minus position, summed */
	TimestampTz last_source_commit_at;	/* lag in seconds = now - this, while behind */
	bool		caught_up;
	TimestampTz stop_requested_until;	/* the launcher leaves the source alone until */
} C360WorkerInfo;

extern void c360_shmem_request(void);
extern void c360_shmem_startup(void);
extern bool c360_shmem_available(void);

extern void c360_launcher_register_latch(void);
extern void c360_launcher_wake_at_commit(void);

extern C360WorkerInfo *c360_worker_attach(const char *name);
extern C360WorkerInfo *c360_worker_find(const char *name, C360WorkerInfo *copy);
extern bool c360_worker_find_slot(int i, C360WorkerInfo *copy);
extern void c360_worker_report(C360WorkerInfo *self, const char *state, const char *position);
extern void c360_worker_hold_off(const char *name, int ms);
extern bool c360_worker_held_off(const char *name);

#endif							/* C360_SHMEM_H */
