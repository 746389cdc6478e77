/*-------------------------------------------------------------------------
 * source_worker.h
 *	  The one source-worker skeleton and the adapter each kind of source plugs into
 *	  it (docs/ARCHITECTURE.md, "Source workers").
 *
 *	  The skeleton owns the process: it waits for a mapping, starts the adapter,
 *	  copies tables mapped late, and then loops: read what is ready, apply whole
 *	  source units (transactions, messages) in batches with their position in the
 *	  same local transaction, report status, wait, reload the config, check the
 *	  mapping.  Errors end the process; their SQLSTATE decides whether the source
 *	  parks in 'error' or the launcher restarts it (c360_source_error_parks).
 *
 *	  An adapter knows its wire: how to connect, take a snapshot, read changes into
 *	  the batch, and write and encode its position.
 *-------------------------------------------------------------------------
 */
#ifndef C360_SOURCE_WORKER_H
#define C360_SOURCE_WORKER_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "core/apply.h"
#include "core/shmem.h"
#include "sources/source.h"

struct C360SourceAdapter;

/* A row or message that could not be decoded: a dead letter written with its batch. */
typedef struct C360DeadLetter
{
	char	   *position;
	char	   *payload;
	const char *error;
} C360DeadLetter;

/* The worker's state that every kind shares; the adapter keeps its own beside it. */
typedef struct C360SourceWorker
{
	C360Source *src;
	C360WorkerInfo *status;
	const struct C360SourceAdapter *adapter;

	/* the pending batch: whole source units, their dead letters, in batch_cxt */
	MemoryContext batch_cxt;
	C360Batch  *batch;
	List	   *dead;			/* C360DeadLetter * */
	int64		units;			/* whole transactions (or messages) in the batch */
	bool		moved;			/* the position moved with nothing to apply */
	bool		in_unit;		/* inside a source transaction: never flush here */
	TimestampTz batch_started;
	TimestampTz commit_at;		/* newest source commit time in the batch, or 0 */
} C360SourceWorker;

/*
 * What a kind of source supplies.  Each function runs outside any local transaction
 * unless said otherwise; errors are ereport()s with their SQLSTATE.
 */
typedef struct C360SourceAdapter
{
	const char *kind;			/* as in errcontext: "PostgreSQL", "MySQL", "Kafka" */

	/* open the connections (the source and its mapping are loaded) */
	void		(*connect) (C360SourceWorker *w);

	/*
	 * Inside the snapshot's local transaction (alone on the clock): copy tables into the
	 * profile with c360_source_worker_apply_now().  initial: the source's first snapshot,
	 * which also stores the stream's start position (save_position); otherwise the
	 * tables were mapped late, and the position of their own snapshot is returned (the
	 * stream skips their changes up to it), NULL if the kind has none.
	 */
	char	   *(*snapshot) (C360SourceWorker *w, List *tables, bool initial);

	/* the snapshot's local transaction committed: end the remote one */
	void		(*snapshot_done) (C360SourceWorker *w);

	/* a later start: the stored position must still be readable */
	void		(*resume) (C360SourceWorker *w);

	/* start reading from the committed position */
	void		(*stream) (C360SourceWorker *w);

	/*
	 * Read what is ready into the batch, marking units with c360_source_worker_unit_end.
	 * Returns false when nothing more is ready now (the skeleton then waits).
	 */
	bool		(*read) (C360SourceWorker *w);

	/* in the batch's local transaction: store the position the batch ends at */
	void		(*save_position) (C360SourceWorker *w);

	/* the batch committed locally: its position is now the committed one */
	void		(*committed) (C360SourceWorker *w);

	/* the position as source_status shows it ("encode position") */
	char	   *(*position) (C360SourceWorker *w);

	/* between reads: feedback, lag, broker trouble; may be NULL */
	void		(*housekeeping) (C360SourceWorker *w);

	/* the socket to wait on (PGINVALID_SOCKET: the latch alone) */
	pgsocket	(*socket) (C360SourceWorker *w);

	/* what the error context adds after the source's name (position, relation); may be NULL */
	void		(*context) (C360SourceWorker *w, StringInfo buf);

	/* close the connections before a planned exit (the process ends on errors) */
	void		(*close) (C360SourceWorker *w);
} C360SourceAdapter;

/*
 * An error only the user can fix: any SQLSTATE but those of trouble that passes parks the
 * source in 'error' (c360_source_error_parks).  Plain ereport(), named for the reader.
 */
#define c360_source_error(code, ...) \
	ereport(ERROR, (errcode(code), errmsg(__VA_ARGS__)))

extern void c360_source_worker_run(const C360SourceAdapter *adapter) pg_attribute_noreturn();
extern C360SourceWorker *c360_source_worker(void);
extern void c360_source_worker_unit_end(C360SourceWorker *w, TimestampTz commit_at);
extern bool c360_source_worker_batch_due(C360SourceWorker *w);
extern void c360_source_worker_flush(void);
extern void c360_source_worker_apply_now(C360SourceWorker *w);
extern void c360_source_worker_dead_letter(C360SourceWorker *w, const char *position,
										   const char *payload, const char *error);
extern void c360_source_worker_report(C360SourceWorker *w, const char *state);
extern bool c360_source_error_parks(int sqlerrcode);

#endif							/* C360_SOURCE_WORKER_H */
