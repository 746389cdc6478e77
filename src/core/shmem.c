/*-------------------------------------------------------------------------
 * shmem.c
 *	  Shared memory: the launcher's latch, and live worker status slots read by
 *	  c360.source_status.  Only present when the library is preloaded.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "core/shmem.h"

typedef struct C360Shared
{
	LWLock	   *lock;
	Latch	   *launcher_latch;
	C360WorkerInfo workers[C360_MAX_WORKERS];
} C360Shared;

static C360Shared *shared = NULL;
static bool wake_registered = false;

static void wake_launcher_callback(XactEvent event, void *arg);
static C360WorkerInfo *slot_for(const char *name);
static void worker_detach(int code, Datum arg);

void
c360_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(C360Shared)));
	RequestNamedLWLockTranche("customer360", 1);
}

void
c360_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("customer360", sizeof(C360Shared), &found);
	if (!found)
	{
		memset(shared, 0, sizeof(C360Shared));
		shared->lock = &(GetNamedLWLockTranche("customer360"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

bool
c360_shmem_available(void)
{
	return shared != NULL;
}

void
c360_launcher_register_latch(void)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_latch = MyLatch;
	LWLockRelease(shared->lock);
}

/*
 * Wake the launcher when the current transaction commits: before that it could not see
 * the catalog change it is woken for.
 */
void
c360_launcher_wake_at_commit(void)
{
	if (shared == NULL || wake_registered)
		return;
	RegisterXactCallback(wake_launcher_callback, NULL);
	wake_registered = true;
}

static void
wake_launcher_callback(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT)
		return;
	if (event == XACT_EVENT_COMMIT && shared->launcher_latch != NULL)
		SetLatch(shared->launcher_latch);
	UnregisterXactCallback(wake_launcher_callback, NULL);
	wake_registered = false;
}

/* The named worker's slot, else a free one (cleared and named); caller holds the lock. */
static C360WorkerInfo *
slot_for(const char *name)
{
	C360WorkerInfo *slot = NULL;

	for (int i = 0; i < C360_MAX_WORKERS && slot == NULL; i++)
		if (shared->workers[i].in_use && strcmp(shared->workers[i].name, name) == 0)
			slot = &shared->workers[i];
	for (int i = 0; i < C360_MAX_WORKERS && slot == NULL; i++)
		if (!shared->workers[i].in_use)
		{
			slot = &shared->workers[i];
			memset(slot, 0, sizeof(C360WorkerInfo));
			slot->in_use = true;
			strlcpy(slot->name, name, sizeof(slot->name));
		}
	return slot;
}

/* Claim the status slot of the named worker; it is released when the process exits. */
C360WorkerInfo *
c360_worker_attach(const char *name)
{
	C360WorkerInfo *slot;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = slot_for(name);
	if (slot == NULL)
	{
		LWLockRelease(shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many customer360 workers (at most %d)", C360_MAX_WORKERS)));
	}
	memset(slot, 0, sizeof(C360WorkerInfo));
	slot->in_use = true;
	slot->pid = MyProcPid;
	strlcpy(slot->name, name, sizeof(slot->name));
	LWLockRelease(shared->lock);
	before_shmem_exit(worker_detach, PointerGetDatum(slot));
	return slot;
}

static void
worker_detach(int code, Datum arg)
{
	C360WorkerInfo *slot = (C360WorkerInfo *) DatumGetPointer(arg);

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->in_use = slot->stop_requested_until > GetCurrentTimestamp();
	}
	LWLockRelease(shared->lock);
}

/* A copy of the named worker's slot (pid 0 when it does not run); NULL when unknown. */
C360WorkerInfo *
c360_worker_find(const char *name, C360WorkerInfo *copy)
{
	C360WorkerInfo *found = NULL;

	if (shared == NULL)
		return NULL;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (int i = 0; i < C360_MAX_WORKERS && found == NULL; i++)
		if (shared->workers[i].in_use && strcmp(shared->workers[i].name, name) == 0)
		{
			*copy = shared->workers[i];
			found = copy;
		}
	LWLockRelease(shared->lock);
	return found;
}

/* A copy of status slot i; false when the slot is free. */
bool
c360_worker_find_slot(int i, C360WorkerInfo *copy)
{
	bool		in_use;

	LWLockAcquire(shared->lock, LW_SHARED);
	*copy = shared->workers[i];
	in_use = copy->in_use;
	LWLockRelease(shared->lock);
	return in_use;
}

void
c360_worker_report(C360WorkerInfo *self, const char *state, const char *position)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (state)
		strlcpy(self->state, state, sizeof(self->state));
	if (position)
		strlcpy(self->position, position, sizeof(self->position));
	LWLockRelease(shared->lock);
}

/* Keep the launcher from (re)starting the named worker for a while (drop_source). */
void
c360_worker_hold_off(const char *name, int ms)
{
	C360WorkerInfo *slot;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	slot = slot_for(name);
	if (slot)
		slot->stop_requested_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	LWLockRelease(shared->lock);
}

bool
c360_worker_held_off(const char *name)
{
	C360WorkerInfo info;

	return c360_worker_find(name, &info) != NULL &&
		info.stop_requested_until > GetCurrentTimestamp();
}
