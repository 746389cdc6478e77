/*-------------------------------------------------------------------------
 * pg_source.c
 *	  The PostgreSQL CDC source worker: a consistent snapshot of the mapped tables
 *	  under the slot's exported snapshot, then pgoutput streaming.  Each batch of
 *	  whole source transactions is applied through the one apply path, and the
 *	  replication origin advances in the same local transaction.  That transaction also
 *	  stores the position in c360.source_positions (part 'lsn'): the origin is
 *	  cluster-wide and pg_dump does not carry it, the table is dumped with the data it
 *	  describes, so on start the table's position is the one that counts.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogdefs.h"
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_type_d.h"
#include "executor/tuptable.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/logicalproto.h"
#include "replication/origin.h"
#include "replication/walreceiver.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "../src/customer360.h"
#include "../src/maintain.h"
#include "../src/pgremote.h"
#include "../src/shmem.h"
#include "../src/source.h"
#include "worker.h"

/* A remote relation as the last Relation message described it. */
typedef struct RemoteRel
{
	LogicalRepRelId relid;
	C360SourceTable *table;		/* NULL: not mapped, its changes are skipped */
	int			natts;
	int		   *colmap;			/* remote attribute -> input column, or -1 */
	XLogRecPtr	since;			/* its changes in transactions committed before are in
								 * its own snapshot (c360.source_tables.snapshot_position) */
} RemoteRel;

/*
 * A batch committed locally: the source position it ends at, and where its local commit
 * record ends.  With synchronous_commit = off the commit may still be in WAL buffers;
 * until the local WAL is flushed past it, the source must not be told it is done.
 */
typedef struct LocalCommit
{
	XLogRecPtr	remote_end;
	XLogRecPtr	local_end;
} LocalCommit;

/* The worker's whole state: one source, one connection, one pending batch. */
typedef struct PgSource
{
	C360Source *src;
	C360WorkerInfo *status;
	WalReceiverConn *conn;
	char	   *slot;
	char	   *publication;
	RepOriginId origin;
	HTAB	   *rels;
	MemoryContext batch_cxt;
	C360Batch  *batch;
	bool		in_txn;
	XLogRecPtr	txn_final;		/* the commit LSN of the transaction being received */
	char		txn_position[32];
	int			pending_txns;	/* whole source transactions in the batch */
	XLogRecPtr	pending_end;	/* end of the last of them */
	TimestampTz pending_commit_at;
	TimestampTz batch_started;
	XLogRecPtr	applied;		/* committed locally (origin and c360.source_positions) */
	XLogRecPtr	durable;		/* applied, and its local commit flushed to WAL */
	List	   *unflushed;		/* LocalCommit *, oldest first: committed, maybe not durable */
	XLogRecPtr	received;		/* furthest position the server told us about */
	TimestampTz last_feedback;
} PgSource;

static PgSource ps;

static void run(const char *name);
static void setup(const char *name);
static void resume_position(void);
static void save_position(XLogRecPtr lsn);
static void check_slot(void);
static void snapshot(void);
static int64 snapshot_table(C360SourceTable *t, int64 done);
static int	next_copy_row(char **row);
static void copy_row_fields(char *row, int len, char **fields, int ncols, const char *table);
static void publish(List *tables);
static void snapshot_new_tables(void);
static XLogRecPtr since_lsn(C360SourceTable *t);
static List *remote_columns(C360SourceTable *t);
static void stream(void);
static void handle_message(char *buf, int len);
static void dispatch(StringInfo s);
static void handle_relation(LogicalRepRelation *rel);
static void learn_columns(RemoteRel *r, LogicalRepRelation *rel, const char *remote);
static void add_change(C360Op op, LogicalRepRelId relid, LogicalRepTupleData *old,
					   LogicalRepTupleData *new);
static C360Tuple *decode_tuple(RemoteRel *rel, LogicalRepTupleData *tup);
static bool castable(Oid remote_type, Oid mirror_type);
static const char *type_name(Oid type);
static void flush(void);
static bool batch_due(void);
static void new_batch(void);
static void committed(XLogRecPtr remote_end);
static XLogRecPtr durable_position(void);
static void send_feedback(bool force);
static void report(const char *state);

void
c360_pg_source_main(Datum arg)
{
	c360_source_worker_main(run);
}

static void
run(const char *name)
{
	ps.status = c360_source_worker_status();
	setup(name);
	if (strcmp(ps.src->phase, "snapshot") == 0)
		snapshot();
	else
		check_slot();
	snapshot_new_tables();
	stream();
}

/* Load the source, find or create its replication origin, connect. */
static void
setup(const char *name)
{
	char	   *origin_name = psprintf("c360_%s", name);
	char	   *conninfo;
	HASHCTL		ctl = {.keysize = sizeof(LogicalRepRelId), .entrysize = sizeof(RemoteRel)};

	ps.src = c360_source_worker_load(name);
	c360_worker_begin("c360 source setup");
	MemoryContextSwitchTo(TopMemoryContext);
	ps.origin = replorigin_by_name(origin_name, true);
	if (ps.origin == InvalidRepOriginId)
		ps.origin = replorigin_create(origin_name);
	if (strcmp(ps.src->phase, "snapshot") != 0)
		resume_position();
	c360_worker_commit();
	MemoryContextSwitchTo(TopMemoryContext);

	conninfo = c360_source_option(ps.src, "conninfo", NULL);
	if (conninfo == NULL)
		c360_source_error("source \"%s\" has no \"conninfo\" option", name);
	ps.slot = c360_source_option(ps.src, "slot", origin_name);
	ps.publication = c360_source_option(ps.src, "publication", origin_name);
	ps.rels = hash_create("c360 remote relations", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	ps.batch_cxt = AllocSetContextCreate(TopMemoryContext, "c360 batch", ALLOCSET_DEFAULT_SIZES);
	new_batch();

	replorigin_session_setup(ps.origin);
	replorigin_session_origin = ps.origin;
	ps.applied = replorigin_session_get_progress(false);
	ps.durable = ps.applied;	/* recovered from WAL: on disk */

	ps.conn = c360_pgremote_connect(conninfo, name);
	elog(LOG, "c360 source \"%s\" connected (%s)", name, ps.src->phase);
}

/*
 * Bring the origin to the position stored in c360.source_positions, which commits with
 * the data it describes.  They differ only when the data did not come with the origin: a
 * database restored by pg_restore (the origin is missing in a new cluster, or still at
 * where the dumped database went on to), or a source streamed by a version that kept
 * its position in the origin alone (then the origin's is copied into the table).  Runs
 * before the session takes the origin: replorigin_advance refuses an origin in use.
 */
static void
resume_position(void)
{
	static SPIPlanPtr plan;
	Oid			types[1] = {TEXTOID};
	Datum		arg = CStringGetTextDatum(ps.src->name);
	char	   *text = NULL;
	XLogRecPtr	stored;
	XLogRecPtr	origin_lsn;
	bool		bad = false;

	SPI_connect();
	c360_exec(c360_plan(&plan, "SELECT position FROM c360.source_positions"
						" WHERE source = $1 AND part = 'lsn'", 1, types), &arg, NULL);
	if (SPI_processed == 1)
		text = MemoryContextStrdup(TopMemoryContext,
								   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	SPI_finish();

	/* the lock pg_replication_origin_advance() takes: the origin cannot vanish meanwhile */
	LockRelationOid(ReplicationOriginRelationId, RowExclusiveLock);
	origin_lsn = replorigin_get_progress(ps.origin, false);
	if (text == NULL)
	{
		if (origin_lsn != InvalidXLogRecPtr)
			save_position(origin_lsn);
		return;
	}
	stored = pg_lsn_in_internal(text, &bad);
	if (bad)
		c360_source_error("the stored position \"%s\" of source \"%s\" (c360.source_positions, "
						  "part 'lsn') is not an LSN", text, ps.src->name);
	if (stored == origin_lsn)
		return;
	replorigin_advance(ps.origin, stored, InvalidXLogRecPtr, true /* go backward */ ,
					   true /* WAL log */ );
	elog(LOG, "c360 source \"%s\" resumes from its stored position %X/%X (its replication "
		 "origin was at %X/%X: a restored database?)", ps.src->name, LSN_FORMAT_ARGS(stored),
		 LSN_FORMAT_ARGS(origin_lsn));
}

/* The position, in the transaction that applies what leads up to it. */
static void
save_position(XLogRecPtr lsn)
{
	char		text[32];

	snprintf(text, sizeof(text), "%X/%X", LSN_FORMAT_ARGS(lsn));
	c360_source_save_position(ps.src, "lsn", text);
}

/* A streaming source needs its slot: a dropped or invalidated slot lost changes. */
static void
check_slot(void)
{
	char	   *status;

	c360_worker_begin("c360 source check");
	status = c360_pgremote_slot_status(ps.conn, ps.slot);
	status = status ? MemoryContextStrdup(TopMemoryContext, status) : NULL;
	c360_worker_commit();
	if (status == NULL)
		c360_source_error("replication slot \"%s\" no longer exists on the source, so changes since "
					 "position %X/%X may be lost; to take a new snapshot, drop the source with "
					 "c360.drop_source('%s') and create and map it again", ps.slot,
					 LSN_FORMAT_ARGS(ps.applied), ps.src->name);
	if (strcmp(status, "lost") == 0)
		c360_source_error("replication slot \"%s\" was invalidated on the source (it held more WAL "
					 "than max_slot_wal_keep_size), so changes were lost; to take a new "
					 "snapshot, drop the source with c360.drop_source('%s') and create and map "
					 "it again", ps.slot, ps.src->name);
}

/*
 * First start: create the slot with CRS_USE_SNAPSHOT inside a REPEATABLE READ transaction
 * on the source and copy every mapped table under that snapshot, all in one local
 * transaction that also sets the origin to the slot's consistent point and the phase to
 * streaming.  A crash anywhere rolls all of it back and the next start begins again: the
 * snapshot and the stream meet exactly, with nothing missed or applied twice.
 */
static void
snapshot(void)
{
	XLogRecPtr	consistent;
	ListCell   *lc;
	int64		done = 0;

	publish(ps.src->tables);

	/* a slot left by an interrupted snapshot has no usable snapshot any more */
	c360_worker_begin("c360 snapshot setup");
	c360_pgremote_drop_slot(ps.conn, ps.slot);
	c360_worker_commit();

	c360_worker_begin("c360 snapshot");
	c360_clock_lock_alone();
	c360_apply_defer();
	c360_pgremote_exec(ps.conn, "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ", 0, NULL);
	walrcv_create_slot(ps.conn, ps.slot, false, false, CRS_USE_SNAPSHOT, &consistent);
	report("snapshot");
	foreach(lc, ps.src->tables)
		done = snapshot_table(lfirst(lc), done);
	c360_apply_flush();

	/* a table mapped meanwhile is not marked: snapshot_new_tables() copies it next */
	foreach(lc, ps.src->tables)
		c360_source_set_since(ps.src, lfirst(lc), "");
	replorigin_session_origin_lsn = consistent;
	replorigin_session_origin_timestamp = GetCurrentTimestamp();
	save_position(consistent);
	c360_source_set_phase(ps.src, "streaming");
	c360_worker_commit();
	c360_pgremote_exec(ps.conn, "COMMIT", 0, NULL);

	committed(consistent);
	elog(LOG, "c360 source \"%s\" snapshot done: %lld rows, streaming from %X/%X",
		 ps.src->name, (long long) done, LSN_FORMAT_ARGS(consistent));
}

/*
 * Make the publication carry the tables before their snapshot: one this source created
 * gets them added; a publication of the user's that lacks one is theirs to fix.
 */
static void
publish(List *tables)
{
	Oid			types[1] = {TEXTOID};
	ListCell   *lc;
	bool		ours;
	const char *pub = quote_literal_cstr(ps.publication);

	/* remote results land in tuplestores, which need a local transaction */
	c360_worker_begin("c360 snapshot setup");
	if (c360_pgremote_value(c360_pgremote_exec(ps.conn, psprintf("SELECT pubname::text FROM pg_publication "
																	"WHERE pubname = %s", pub),
											   1, types), 1) == NULL)
	{
		c360_pgremote_exec(ps.conn, psprintf("CREATE PUBLICATION %s",
											 quote_identifier(ps.publication)), 0, NULL);
		c360_source_mark_created(ps.src, "publication");
	}
	ours = c360_source_created(ps.src, "publication");
	foreach(lc, tables)
	{
		const char *remote = ((C360SourceTable *) lfirst(lc))->remote;

		if (c360_pgremote_value(c360_pgremote_exec(ps.conn, psprintf(
			"SELECT pubname::text FROM pg_publication_tables WHERE pubname = %s AND "
			"format('%%I.%%I', schemaname, tablename)::regclass = %s::regclass",
			pub, quote_literal_cstr(remote)), 1, types), 1) != NULL)
			continue;
		if (!ours)
			c360_source_error("publication \"%s\" does not publish table %s, which source \"%s\" "
							  "maps; run ALTER PUBLICATION %s ADD TABLE %s on the source, then "
							  "c360.resume_source('%s')", ps.publication, remote, ps.src->name,
							  quote_identifier(ps.publication), remote, ps.src->name);
		c360_pgremote_exec(ps.conn, psprintf("ALTER PUBLICATION %s ADD TABLE %s",
											 quote_identifier(ps.publication), remote), 0, NULL);
	}
	c360_worker_commit();
}

/*
 * Tables mapped after the source's snapshot, copied alone before streaming on, as core's
 * tablesync does: a temporary slot's snapshot, whose consistent point the stream then
 * uses for them (add_change skips their changes committed before it: the copy has them).
 * The copy and that point commit together; a crash redoes both.
 */
static void
snapshot_new_tables(void)
{
	List	   *tables = NIL;
	ListCell   *lc;
	XLogRecPtr	consistent;
	int64		done = 0;
	char	   *slot = psprintf("c360_sync_%d", MyProcPid);

	ps.src = c360_source_worker_load(ps.src->name);
	foreach(lc, ps.src->tables)
		if (((C360SourceTable *) lfirst(lc))->since == NULL)
			tables = lappend(tables, lfirst(lc));
	if (tables == NIL)
		return;
	publish(tables);

	c360_worker_begin("c360 snapshot");
	c360_clock_lock_alone();
	c360_apply_defer();
	c360_pgremote_exec(ps.conn, "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ", 0, NULL);
	walrcv_create_slot(ps.conn, slot, true, false, CRS_USE_SNAPSHOT, &consistent);
	report("snapshot");
	foreach(lc, tables)
		done = snapshot_table(lfirst(lc), done);
	c360_apply_flush();
	foreach(lc, tables)
		c360_source_set_since(ps.src, lfirst(lc), psprintf("%X/%X", LSN_FORMAT_ARGS(consistent)));
	c360_worker_commit();
	c360_pgremote_exec(ps.conn, "COMMIT", 0, NULL);
	c360_pgremote_exec(ps.conn, psprintf("DROP_REPLICATION_SLOT %s", slot), 0, NULL);
	elog(LOG, "c360 source \"%s\" copied %d newly mapped tables: %lld rows, streamed from %X/%X on",
		 ps.src->name, list_length(tables), (long long) done, LSN_FORMAT_ARGS(consistent));
}

/*
 * Copy one table with COPY TO STDOUT, c360.batch_size rows a batch: the server goes on
 * streaming rows into the socket while this worker applies the previous batch.
 */
static int64
snapshot_table(C360SourceTable *t, int64 done)
{
	List	   *cols = remote_columns(t);
	const C360Input *in = &c360_inputs[t->input];
	int			ncols = list_length(cols);
	int		   *colmap = palloc(sizeof(int) * ncols);
	char	  **fields = palloc(sizeof(char *) * ncols);
	Oid			count_type[1] = {TEXTOID};
	StringInfoData sql;
	WalRcvExecResult *res;
	ListCell   *lc;
	int64		n = 0;

	initStringInfo(&sql);
	foreach(lc, cols)
	{
		appendStringInfo(&sql, "%s%s::text", foreach_current_index(lc) ? ", " : "",
						 quote_identifier(lfirst(lc)));
		colmap[foreach_current_index(lc)] = c360_column_by_name(in, lfirst(lc));
	}
	ps.status->snapshot_total += pg_strtoint64(c360_pgremote_value(
		c360_pgremote_exec(ps.conn, psprintf("SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint "
											 "ELSE (SELECT count(*) FROM %s) END::text "
											 "FROM pg_class WHERE oid = %s::regclass",
											 t->remote, quote_literal_cstr(t->remote)), 1, count_type), 1));

	/*
	 * The snapshot replaces the input's rows, so that a re-snapshot keeps no row deleted
	 * meanwhile; but never the rows another source feeds into the same input.
	 */
	if (c360_source_sole_feed(ps.src, t))
	{
		C360Change *truncate = MemoryContextAllocZero(ps.batch_cxt, sizeof(C360Change));

		truncate->input = t->input;
		truncate->op = C360_TRUNCATE;
		c360_apply_add(ps.batch, truncate);
	}

	res = walrcv_exec(ps.conn, psprintf("COPY (SELECT %s FROM %s) TO STDOUT", sql.data,
										t->remote), 0, NULL);
	if (res->status != WALRCV_OK_COPY_OUT)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the source PostgreSQL server failed to copy %s: %s", t->remote,
						res->err ? res->err : "(no message)")));
	for (;;)
	{
		char	   *row;
		int			len = next_copy_row(&row);
		MemoryContext old;
		C360Change *ch;

		if (len >= 0)
		{
			copy_row_fields(row, len, fields, ncols, t->remote);
			old = MemoryContextSwitchTo(ps.batch_cxt);
			ch = palloc0(sizeof(C360Change));
			ch->input = t->input;
			ch->op = C360_INSERT;
			ch->new = palloc0(sizeof(C360Tuple));
			ch->position = "snapshot";
			for (int i = 0; i < ncols; i++)
			{
				ch->new->present[colmap[i]] = true;
				ch->new->values[colmap[i]] = fields[i] ? pstrdup(fields[i]) : NULL;
			}
			c360_apply_add(ps.batch, ch);
			MemoryContextSwitchTo(old);
			n++;
		}
		if (n == c360_batch_size || (len < 0 && ps.batch->nchanges > 0))
		{
			c360_source_apply(ps.src, ps.batch, 0);
			new_batch();
			done += n;
			n = 0;
			ps.status->snapshot_done = done;
			CHECK_FOR_INTERRUPTS();
		}
		if (len < 0)
			break;
	}
	walrcv_clear_result(res);
	return done;
}

/*
 * The next row of a COPY TO STDOUT, which libpq hands over whole, one row per call: its
 * length, or -1 at the end of the data.  Waits for the server as long as it takes.
 */
static int
next_copy_row(char **row)
{
	for (;;)
	{
		pgsocket	fd = PGINVALID_SOCKET;
		int			len = walrcv_receive(ps.conn, row, &fd);

		if (len != 0)
			return len;
		(void) WaitLatchOrSocket(MyLatch, WL_SOCKET_READABLE | WL_LATCH_SET | WL_TIMEOUT |
								 WL_EXIT_ON_PM_DEATH, fd, 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Split a row of COPY's text format into its ncols fields, in place: tab-separated,
 * \N for NULL, and backslash escapes for backslash and control characters.
 */
static void
copy_row_fields(char *row, int len, char **fields, int ncols, const char *table)
{
	char	   *end = row + len;
	char	   *p = row;
	char	   *out = row;
	int			n = 0;

	if (end > row && end[-1] == '\n')
		end--;
	for (;;)
	{
		bool		last;

		if (n == ncols)
			break;
		if (end - p >= 2 && p[0] == '\\' && p[1] == 'N' && (p + 2 == end || p[2] == '\t'))
		{
			fields[n++] = NULL;
			p += 2;
		}
		else
		{
			fields[n++] = out;
			while (p < end && *p != '\t')
			{
				if (*p == '\\' && p + 1 < end)
				{
					p++;
					*out++ = *p == 'b' ? '\b' : *p == 'f' ? '\f' : *p == 'n' ? '\n' :
						*p == 'r' ? '\r' : *p == 't' ? '\t' : *p == 'v' ? '\v' : *p;
					p++;
				}
				else
					*out++ = *p++;
			}
		}
		last = p >= end;
		if (fields[n - 1] != NULL)
			*out++ = '\0';		/* may overwrite the tab at p: read before */
		if (last)
			break;
		p++;
	}
	if (n != ncols || p < end)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("a row copied from %s does not have %d columns", table, ncols)));
}

/*
 * The input columns the remote table has, checked for drift: every required column must be
 * there and every column must cast into its mirror column.  Remembered with the mapping,
 * so that a later Relation message that lacks one of them is drift.
 */
static List *
remote_columns(C360SourceTable *t)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	const C360Input *in = &c360_inputs[t->input];
	WalRcvExecResult *res;
	TupleTableSlot *slot;
	List	   *cols = NIL;

	res = c360_pgremote_exec(ps.conn, psprintf("SELECT attname::text, atttypid FROM pg_attribute "
											   "WHERE attrelid = %s::regclass AND attnum > 0 "
											   "AND NOT attisdropped ORDER BY attnum",
											   quote_literal_cstr(t->remote)), 2, types);
	slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	while (tuplestore_gettupleslot(res->tuplestore, true, false, slot))
	{
		bool		isnull;
		char	   *name = TextDatumGetCString(slot_getattr(slot, 1, &isnull));
		Oid			type = DatumGetObjectId(slot_getattr(slot, 2, &isnull));
		int			c = c360_column_by_name(in, name);

		if (c < 0)
			continue;
		if (!castable(type, in->cols[c].type))
			c360_source_error("column \"%s\" of source table %s has type %s, which does not cast to the "
						 "%s column of input \"%s\"", name, t->remote, type_name(type),
						 type_name(in->cols[c].type), in->name);
		cols = lappend(cols, name);
	}
	ExecDropSingleTupleTableSlot(slot);
	for (int c = 0; c < in->ncols; c++)
	{
		ListCell   *lc;
		bool		found = false;

		foreach(lc, cols)
			found |= strcmp(lfirst(lc), in->cols[c].name) == 0;
		if (in->cols[c].required && !found)
			c360_source_error("source table %s has no column \"%s\", which input \"%s\" requires",
						 t->remote, in->cols[c].name, in->name);
	}
	c360_source_set_columns(ps.src, t, cols);
	return cols;
}

/* Stream from the origin's position; apply whole transactions in batches. */
static void
stream(void)
{
	WalRcvStreamOptions options = {0};

	options.logical = true;
	options.slotname = ps.slot;
	options.startpoint = ps.applied;
	options.proto.logical.proto_version = 1;
	options.proto.logical.publication_names = list_make1(makeString(ps.publication));
	if (!walrcv_startstreaming(ps.conn, &options))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the source refused to stream from slot \"%s\"", ps.slot)));
	report("streaming");

	for (;;)
	{
		char	   *buf;
		pgsocket	fd = PGINVALID_SOCKET;
		int			len;

		while ((len = walrcv_receive(ps.conn, &buf, &fd)) > 0)
		{
			handle_message(buf, len);
			if (!ps.in_txn && batch_due())
				flush();
			if (!ps.in_txn)
				c360_source_worker_check_mapping(ps.src);
		}
		if (len < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the source ended the replication stream")));

		/* the stream went quiet: apply what is complete now, for freshness */
		if (!ps.in_txn && ps.pending_txns > 0)
			flush();
		send_feedback(false);
		c360_source_worker_check_mapping(ps.src);

		(void) WaitLatchOrSocket(MyLatch, WL_SOCKET_READABLE | WL_LATCH_SET | WL_TIMEOUT |
								 WL_EXIT_ON_PM_DEATH, fd, 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/* A CopyData message of the replication stream: XLogData ('w') or keepalive ('k'). */
static void
handle_message(char *buf, int len)
{
	StringInfoData s = {.data = buf, .len = len, .maxlen = len, .cursor = 0};
	char		kind = pq_getmsgbyte(&s);

	if (kind == 'w')
	{
		XLogRecPtr	start = pq_getmsgint64(&s);
		XLogRecPtr	end = pq_getmsgint64(&s);

		(void) pq_getmsgint64(&s);	/* send time */
		ps.received = Max(ps.received, Max(start, end));
		dispatch(&s);
	}
	else if (kind == 'k')
	{
		XLogRecPtr	end = pq_getmsgint64(&s);
		bool		reply;

		(void) pq_getmsgint64(&s);
		reply = pq_getmsgbyte(&s);
		ps.received = Max(ps.received, end);
		send_feedback(reply);
	}
}

/* One pgoutput message. */
static void
dispatch(StringInfo s)
{
	char		action = pq_getmsgbyte(s);
	MemoryContext old = MemoryContextSwitchTo(ps.batch_cxt);
	LogicalRepTupleData oldtup;
	LogicalRepTupleData newtup;
	bool		has_old;
	LogicalRepRelId relid;

	switch (action)
	{
		case LOGICAL_REP_MSG_BEGIN:
			{
				LogicalRepBeginData begin;

				logicalrep_read_begin(s, &begin);
				ps.in_txn = true;
				ps.txn_final = begin.final_lsn;
				snprintf(ps.txn_position, sizeof(ps.txn_position), "%X/%X",
						 LSN_FORMAT_ARGS(begin.final_lsn));
				break;
			}
		case LOGICAL_REP_MSG_COMMIT:
			{
				LogicalRepCommitData commit;

				logicalrep_read_commit(s, &commit);
				ps.in_txn = false;
				ps.pending_txns++;
				ps.pending_end = commit.end_lsn;
				ps.pending_commit_at = commit.committime;
				if (ps.batch_started == 0)
					ps.batch_started = GetCurrentTimestamp();
				break;
			}
		case LOGICAL_REP_MSG_RELATION:
			MemoryContextSwitchTo(TopMemoryContext);
			handle_relation(logicalrep_read_rel(s));
			break;
		case LOGICAL_REP_MSG_INSERT:
			relid = logicalrep_read_insert(s, &newtup);
			add_change(C360_INSERT, relid, NULL, &newtup);
			break;
		case LOGICAL_REP_MSG_UPDATE:
			relid = logicalrep_read_update(s, &has_old, &oldtup, &newtup);
			add_change(C360_UPDATE, relid, has_old ? &oldtup : NULL, &newtup);
			break;
		case LOGICAL_REP_MSG_DELETE:
			relid = logicalrep_read_delete(s, &oldtup);
			add_change(C360_DELETE, relid, &oldtup, NULL);
			break;
		case LOGICAL_REP_MSG_TRUNCATE:
			{
				bool		cascade;
				bool		restart;
				ListCell   *lc;

				foreach(lc, logicalrep_read_truncate(s, &cascade, &restart))
					add_change(C360_TRUNCATE, lfirst_oid(lc), NULL, NULL);
				break;
			}
		case LOGICAL_REP_MSG_TYPE:
		case LOGICAL_REP_MSG_ORIGIN:
		case LOGICAL_REP_MSG_MESSAGE:
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("unexpected pgoutput message type \"%c\"", action)));
	}
	MemoryContextSwitchTo(old);
}

/*
 * A Relation message: map its columns onto the input and check drift.  A column the
 * mapping had that is gone, or that changed to a type that does not cast, stops the
 * source in 'error' before any of this transaction is applied: the position stays put.
 */
static void
handle_relation(LogicalRepRelation *rel)
{
	char	   *remote = psprintf("%s.%s", rel->nspname, rel->relname);
	RemoteRel  *r = hash_search(ps.rels, &rel->remoteid, HASH_ENTER, NULL);
	const C360Input *in;
	bool		learning;
	ListCell   *lc;

	r->relid = rel->remoteid;
	r->table = c360_source_table(ps.src, remote);
	if (r->table == NULL)
		return;
	in = &c360_inputs[r->table->input];
	r->since = since_lsn(r->table);
	learning = r->table->columns == NIL;
	r->natts = rel->natts;
	r->colmap = palloc(sizeof(int) * rel->natts);
	for (int i = 0; i < rel->natts; i++)
	{
		/*
		 * After resume_source the stream replays what was written under the schema the user
		 * accepted: a retyped column's values are cast one by one (dead letters for those
		 * that do not fit) until the next schema change shows up.
		 */
		r->colmap[i] = c360_column_by_name(in, rel->attnames[i]);
		if (r->colmap[i] >= 0 && !learning &&
			!castable(rel->atttyps[i], in->cols[r->colmap[i]].type))
			c360_source_error("column \"%s\" of source table %s changed to type %s, which does not "
						 "cast to the %s column of input \"%s\"", rel->attnames[i], remote,
						 type_name(rel->atttyps[i]), type_name(in->cols[r->colmap[i]].type),
						 in->name);
	}
	if (r->table->columns == NIL)
		learn_columns(r, rel, remote);
	foreach(lc, r->table->columns)
	{
		bool		found = false;

		for (int i = 0; i < rel->natts && !found; i++)
			found = strcmp(rel->attnames[i], lfirst(lc)) == 0;
		if (!found)
			c360_source_error("column \"%s\" of source table %s was dropped on the source; it feeds "
						 "input \"%s\". Re-add it, or accept its loss, then run "
						 "c360.resume_source('%s')", (char *) lfirst(lc), remote, in->name,
						 ps.src->name);
	}
}

/* Where the table's changes start to apply: "" is the start of the stream. */
static XLogRecPtr
since_lsn(C360SourceTable *t)
{
	bool		bad = false;
	XLogRecPtr	lsn;

	if (t->since == NULL || t->since[0] == '\0')
		return InvalidXLogRecPtr;
	lsn = pg_lsn_in_internal(t->since, &bad);
	if (bad)
		c360_source_error("the snapshot position \"%s\" of table %s of source \"%s\" "
						  "(c360.source_tables) is not an LSN", t->since, t->remote, ps.src->name);
	return lsn;
}

/*
 * After c360.resume_source the mapping's columns are learned again from the schema the
 * stream shows (the user accepted it): the required ones must be there, and from now on
 * the ones present are watched for drift.
 */
static void
learn_columns(RemoteRel *r, LogicalRepRelation *rel, const char *remote)
{
	const C360Input *in = &c360_inputs[r->table->input];
	List	   *cols = NIL;

	for (int c = 0; c < in->ncols; c++)
	{
		bool		found = false;

		for (int i = 0; i < rel->natts && !found; i++)
			found = r->colmap[i] == c;
		if (found)
			cols = lappend(cols, (char *) in->cols[c].name);
		else if (in->cols[c].required)
			c360_source_error("source table %s has no column \"%s\", which input \"%s\" requires",
							  remote, in->cols[c].name, in->name);
	}
	c360_worker_begin("c360 source schema");
	c360_source_set_columns(ps.src, r->table, cols);
	c360_worker_commit();
	MemoryContextSwitchTo(TopMemoryContext);
}

static void
add_change(C360Op op, LogicalRepRelId relid, LogicalRepTupleData *old, LogicalRepTupleData *new)
{
	RemoteRel  *r = hash_search(ps.rels, &relid, HASH_FIND, NULL);
	C360Change *ch;

	if (r == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("change for relation %u before its Relation message", relid)));
	if (r->table == NULL || ps.txn_final < r->since)
		return;
	ch = palloc0(sizeof(C360Change));
	ch->input = r->table->input;
	ch->op = op;
	ch->old = old ? decode_tuple(r, old) : NULL;
	ch->new = new ? decode_tuple(r, new) : NULL;
	ch->position = pstrdup(ps.txn_position);
	c360_apply_add(ps.batch, ch);
}

/*
 * A pgoutput tuple as a row image: NULLs are present and null, an unchanged TOASTed
 * value is absent (the mirror keeps its stored value).  No SPI here.
 */
static C360Tuple *
decode_tuple(RemoteRel *rel, LogicalRepTupleData *tup)
{
	C360Tuple  *t = palloc0(sizeof(C360Tuple));

	for (int i = 0; i < tup->ncols && i < rel->natts; i++)
	{
		int			c = rel->colmap[i];

		if (c < 0 || tup->colstatus[i] == LOGICALREP_COLUMN_UNCHANGED)
			continue;
		t->present[c] = true;
		if (tup->colstatus[i] == LOGICALREP_COLUMN_TEXT)
			t->values[c] = pnstrdup(tup->colvalues[i].data, tup->colvalues[i].len);
	}
	return t;
}

/* Which remote column types the mirror column's input function accepts as text. */
static bool
castable(Oid remote_type, Oid mirror_type)
{
	switch (mirror_type)
	{
		case TEXTOID:
			return true;
		case NUMERICOID:
			return remote_type == NUMERICOID || remote_type == INT2OID || remote_type == INT4OID ||
				remote_type == INT8OID || remote_type == FLOAT4OID || remote_type == FLOAT8OID;
		case INT4OID:
			return remote_type == INT2OID || remote_type == INT4OID || remote_type == INT8OID ||
				remote_type == NUMERICOID;
		case TIMESTAMPTZOID:
			return remote_type == TIMESTAMPTZOID || remote_type == TIMESTAMPOID ||
				remote_type == DATEOID;
	}
	return false;
}

/*
 * A type's name without the catalog: Relation messages arrive between transactions, where
 * a catalog lookup is not allowed.  Remote types are the source's OIDs anyway.
 */
static const char *
type_name(Oid type)
{
	switch (type)
	{
		case TEXTOID: return "text";
		case VARCHAROID: return "character varying";
		case BPCHAROID: return "character";
		case NUMERICOID: return "numeric";
		case INT2OID: return "smallint";
		case INT4OID: return "integer";
		case INT8OID: return "bigint";
		case FLOAT4OID: return "real";
		case FLOAT8OID: return "double precision";
		case BOOLOID: return "boolean";
		case DATEOID: return "date";
		case TIMESTAMPOID: return "timestamp without time zone";
		case TIMESTAMPTZOID: return "timestamp with time zone";
		case UUIDOID: return "uuid";
		case JSONBOID: return "jsonb";
		case BYTEAOID: return "bytea";
	}
	return psprintf("type with OID %u", type);
}

static bool
batch_due(void)
{
	return ps.pending_txns > 0 &&
		(ps.batch->nchanges >= c360_batch_size ||
		 TimestampDifferenceExceeds(ps.batch_started, GetCurrentTimestamp(), c360_batch_ms));
}

/*
 * Apply the pending whole transactions in one local transaction that also moves the
 * origin to the end of the last of them, and stores that position (one row upsert): the
 * data and the position commit together.
 */
static void
flush(void)
{
	c360_worker_begin("c360 apply");
	c360_source_apply(ps.src, ps.batch, ps.pending_commit_at);
	save_position(ps.pending_end);
	replorigin_session_origin_lsn = ps.pending_end;
	replorigin_session_origin_timestamp = ps.pending_commit_at;
	c360_worker_commit();

	committed(ps.pending_end);
	ps.status->last_source_commit_at = ps.pending_commit_at;
	new_batch();
	report("streaming");
	send_feedback(false);
}

static void
new_batch(void)
{
	MemoryContextReset(ps.batch_cxt);
	ps.batch = MemoryContextAllocZero(ps.batch_cxt, sizeof(C360Batch));
	ps.pending_txns = 0;
	ps.batch_started = 0;
}

/*
 * After a local commit that applied the source up to remote_end: remember where that
 * commit's WAL record ends (XactLastCommitEnd), to confirm remote_end only once the local
 * WAL is flushed past it, as core's apply worker does (get_flush_position() in
 * src/backend/replication/logical/worker.c).
 */
static void
committed(XLogRecPtr remote_end)
{
	LocalCommit *c = MemoryContextAlloc(TopMemoryContext, sizeof(LocalCommit));

	c->remote_end = remote_end;
	c->local_end = XactLastCommitEnd;
	ps.unflushed = lappend(ps.unflushed, c);
	ps.applied = remote_end;
}

/*
 * The furthest source position whose local commit is flushed to WAL: what a crash of
 * this server cannot take back.  Commits flush in order, so the list is consumed from
 * its head.
 */
static XLogRecPtr
durable_position(void)
{
	XLogRecPtr	flushed = GetFlushRecPtr(NULL);

	while (ps.unflushed != NIL)
	{
		LocalCommit *c = linitial(ps.unflushed);

		if (c->local_end > flushed)
			break;
		ps.durable = c->remote_end;
		ps.unflushed = list_delete_first(ps.unflushed);
		pfree(c);
	}
	return ps.durable;
}

/*
 * Standby status update.  Flush is what is committed locally and flushed to the local
 * WAL: the slot's confirmed_flush_lsn moves to it, and the source never sends anything
 * before it again.  When nothing is in flight and every local commit is durable, the
 * whole received stream is done, so an idle source does not hold WAL back on the server.
 */
static void
send_feedback(bool force)
{
	static XLogRecPtr last_flush = InvalidXLogRecPtr;
	TimestampTz now = GetCurrentTimestamp();
	XLogRecPtr	flush_pos = durable_position();
	StringInfoData buf;
	bool		idle = !ps.in_txn && ps.batch->nchanges == 0 && ps.pending_txns == 0;

	if (idle && ps.unflushed == NIL)
		flush_pos = Max(flush_pos, ps.received);
	if (!force && flush_pos == last_flush &&
		!TimestampDifferenceExceeds(ps.last_feedback, now, 10000))
		return;

	initStringInfo(&buf);
	pq_sendbyte(&buf, 'r');
	pq_sendint64(&buf, Max(ps.received, flush_pos));	/* write */
	pq_sendint64(&buf, flush_pos);	/* flush */
	pq_sendint64(&buf, flush_pos);	/* apply */
	pq_sendint64(&buf, now);
	pq_sendbyte(&buf, false);
	walrcv_send(ps.conn, buf.data, buf.len);
	pfree(buf.data);

	last_flush = flush_pos;
	ps.last_feedback = now;
	ps.status->caught_up = idle;
	ps.status->lag_bytes = idle ? 0 : (int64) (ps.received - ps.applied);
}

static void
report(const char *state)
{
	char		position[32];

	snprintf(position, sizeof(position), "%X/%X", LSN_FORMAT_ARGS(ps.applied));
	c360_worker_report(ps.status, state, position);
}
