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

#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogdefs.h"
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_type_d.h"
#include "commands/copy.h"
#include "executor/tuptable.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_node.h"
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

#include "core/spi.h"
#include "core/customer360.h"
#include "sources/pgremote.h"
#include "core/shmem.h"
#include "sources/source.h"
#include "source_worker.h"
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

/* The adapter's state: one connection, its slot and origin, the positions. */
typedef struct PgSource
{
	C360SourceWorker *w;		/* the skeleton's: source, status, batch */
	WalReceiverConn *conn;
	pgsocket	fd;				/* the connection's socket, as walrcv_receive tells */
	char	   *slot;
	char	   *sync_slot;		/* a late table's temporary slot, while it copies */
	char	   *publication;
	RepOriginId origin;
	HTAB	   *rels;
	XLogRecPtr	txn_final;		/* the commit LSN of the transaction being received */
	char		txn_position[32];
	XLogRecPtr	pending_end;	/* where the batch's last whole transaction ends */
	TimestampTz pending_commit_at;
	XLogRecPtr	applied;		/* committed locally (origin and c360.source_positions) */
	XLogRecPtr	durable;		/* applied, and its local commit flushed to WAL */
	List	   *unflushed;		/* LocalCommit *, oldest first: committed, maybe not durable */
	XLogRecPtr	received;		/* furthest position the server told us about */
	TimestampTz last_feedback;
} PgSource;

static PgSource ps;

/* The unread rest of the last CopyData message of a snapshot's COPY (copy_data). */
static char *copy_pending;
static int	copy_pending_len;
static bool copy_ended;

static void connect_source(C360SourceWorker *w);
static void resume_position(void);
static void store_position(XLogRecPtr lsn);
static void resume(C360SourceWorker *w);
static void check_slot(void);
static char *snapshot(C360SourceWorker *w, List *tables, bool initial);
static void snapshot_done(C360SourceWorker *w);
static void snapshot_table(C360SourceTable *t);
static void copy_rows(C360SourceTable *t, int *colmap, int ncols);
static int	copy_data(void *outbuf, int minread, int maxread);
static void create_publication(void);
static void publish(List *tables);
static XLogRecPtr since_lsn(C360SourceTable *t);
static List *remote_columns(C360SourceTable *t);
static void stream(C360SourceWorker *w);
static bool read_message(C360SourceWorker *w);
static void handle_message(char *buf, int len);
static void dispatch(StringInfo s);
static void handle_relation(LogicalRepRelation *rel);
static void learn_columns(RemoteRel *r, LogicalRepRelation *rel, const char *remote);
static void add_change(C360Op op, LogicalRepRelId relid, LogicalRepTupleData *old,
					   LogicalRepTupleData *new);
static C360Tuple *decode_tuple(RemoteRel *rel, LogicalRepTupleData *tup);
static bool castable(Oid remote_type, Oid mirror_type);
static const char *type_name(Oid type);
static void save_position(C360SourceWorker *w);
static void committed(C360SourceWorker *w);
static void local_commit(XLogRecPtr remote_end);
static XLogRecPtr durable_position(void);
static void feedback(C360SourceWorker *w);
static void send_feedback(bool force);
static char *position(C360SourceWorker *w);
static pgsocket stream_socket(C360SourceWorker *w);
static void error_context(C360SourceWorker *w, StringInfo buf);
static void close_source(C360SourceWorker *w);

static const C360SourceAdapter adapter = {
	.kind = "PostgreSQL",
	.connect = connect_source,
	.snapshot = snapshot,
	.snapshot_done = snapshot_done,
	.resume = resume,
	.stream = stream,
	.read = read_message,
	.save_position = save_position,
	.committed = committed,
	.position = position,
	.housekeeping = feedback,
	.socket = stream_socket,
	.context = error_context,
	.close = close_source,
};

void
c360_pg_source_main(Datum arg)
{
	c360_source_worker_run(&adapter);
}

/* Find or create the source's replication origin, take it, connect. */
static void
connect_source(C360SourceWorker *w)
{
	const char *name = w->src->name;
	char	   *origin_name = psprintf("c360_%s", name);
	char	   *conninfo;
	HASHCTL		ctl = {.keysize = sizeof(LogicalRepRelId), .entrysize = sizeof(RemoteRel)};

	ps.w = w;
	ps.fd = PGINVALID_SOCKET;
	c360_worker_begin("c360 source setup");
	MemoryContextSwitchTo(TopMemoryContext);
	ps.origin = replorigin_by_name(origin_name, true);
	if (ps.origin == InvalidRepOriginId)
		ps.origin = replorigin_create(origin_name);
	if (strcmp(w->src->phase, "snapshot") != 0)
		resume_position();
	c360_worker_commit();
	MemoryContextSwitchTo(TopMemoryContext);

	conninfo = c360_source_option(w->src, "conninfo", NULL);
	if (conninfo == NULL)
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "source \"%s\" has no \"conninfo\" option", name);
	ps.slot = c360_source_option(w->src, "slot", origin_name);
	ps.publication = c360_source_option(w->src, "publication", origin_name);
	ps.rels = hash_create("c360 remote relations", 64, &ctl, HASH_ELEM | HASH_BLOBS);

	replorigin_session_setup(ps.origin);
	replorigin_session_origin = ps.origin;
	ps.applied = replorigin_session_get_progress(false);
	ps.durable = ps.applied;	/* recovered from WAL: on disk */

	ps.conn = c360_pgremote_connect(conninfo, name);
	elog(LOG, "c360 source \"%s\" connected (%s)", name, w->src->phase);
	create_publication();
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
	char	   *text = c360_source_position(ps.w->src, "lsn");
	XLogRecPtr	stored;
	XLogRecPtr	origin_lsn;
	bool		bad = false;

	/* the lock pg_replication_origin_advance() takes: the origin cannot vanish meanwhile */
	LockRelationOid(ReplicationOriginRelationId, RowExclusiveLock);
	origin_lsn = replorigin_get_progress(ps.origin, false);
	if (text == NULL)
	{
		if (origin_lsn != InvalidXLogRecPtr)
			store_position(origin_lsn);
		return;
	}
	stored = pg_lsn_in_internal(text, &bad);
	if (bad)
		c360_source_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
						  "the stored position \"%s\" of source \"%s\" (c360.source_positions, "
						  "part 'lsn') is not an LSN", text, ps.w->src->name);
	if (stored == origin_lsn)
		return;
	replorigin_advance(ps.origin, stored, InvalidXLogRecPtr, true /* go backward */ ,
					   true /* WAL log */ );
	elog(LOG, "c360 source \"%s\" resumes from its stored position %X/%X (its replication "
		 "origin was at %X/%X: a restored database?)", ps.w->src->name, LSN_FORMAT_ARGS(stored),
		 LSN_FORMAT_ARGS(origin_lsn));
}

/* The position, in the transaction that applies what leads up to it. */
static void
store_position(XLogRecPtr lsn)
{
	char		text[32];

	snprintf(text, sizeof(text), "%X/%X", LSN_FORMAT_ARGS(lsn));
	c360_source_save_position(ps.w->src, "lsn", text);
}

static void
resume(C360SourceWorker *w)
{
	check_slot();
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
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "replication slot \"%s\" no longer exists on the source, so changes since "
					 "position %X/%X may be lost; to take a new snapshot, drop the source with "
					 "c360.drop_source('%s') and create and map it again", ps.slot,
					 LSN_FORMAT_ARGS(ps.applied), ps.w->src->name);
	if (strcmp(status, "lost") == 0)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "replication slot \"%s\" was invalidated on the source (it held more WAL "
					 "than max_slot_wal_keep_size), so changes were lost; to take a new "
					 "snapshot, drop the source with c360.drop_source('%s') and create and map "
					 "it again", ps.slot, ps.w->src->name);
}

/*
 * In the skeleton's snapshot transaction: a REPEATABLE READ transaction on the source
 * that creates a slot with CRS_USE_SNAPSHOT, and a copy of the tables under that
 * snapshot.  The first snapshot's slot is the source's own, and its consistent point is
 * where the stream starts.  Tables mapped later are copied under a temporary slot's
 * snapshot, as core's tablesync does; its consistent point is returned, and the stream
 * skips their changes committed before it (add_change): the copy has them.
 */
static char *
snapshot(C360SourceWorker *w, List *tables, bool initial)
{
	XLogRecPtr	consistent;
	ListCell   *lc;

	publish(tables);
	/* a slot left by an interrupted snapshot has no usable snapshot any more */
	if (initial)
		c360_pgremote_drop_slot(ps.conn, ps.slot);
	ps.sync_slot = initial ? NULL : psprintf("c360_sync_%d", MyProcPid);
	c360_pgremote_exec(ps.conn, "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ", 0, NULL);
	walrcv_create_slot(ps.conn, initial ? ps.slot : ps.sync_slot, !initial, false,
					   CRS_USE_SNAPSHOT, &consistent);
	foreach(lc, tables)
		snapshot_table(lfirst(lc));
	if (!initial)
		return psprintf("%X/%X", LSN_FORMAT_ARGS(consistent));
	ps.pending_end = consistent;
	ps.pending_commit_at = GetCurrentTimestamp();
	return NULL;
}

/* The local transaction committed: end the source's, and drop a temporary slot. */
static void
snapshot_done(C360SourceWorker *w)
{
	c360_pgremote_exec(ps.conn, "COMMIT", 0, NULL);
	if (ps.sync_slot)
		c360_pgremote_exec(ps.conn, psprintf("DROP_REPLICATION_SLOT %s", ps.sync_slot), 0, NULL);
	ps.sync_slot = NULL;
}

/*
 * The source's publication, created (empty) when it does not exist, in a transaction of its
 * own: the mark that the source created it (drop_source drops it then) must not go with a
 * snapshot that fails.
 */
static void
create_publication(void)
{
	Oid			types[1] = {TEXTOID};

	/* remote results land in tuplestores, which need a local transaction */
	c360_worker_begin("c360 source publication");
	if (c360_pgremote_value(c360_pgremote_exec(ps.conn, psprintf("SELECT pubname::text FROM pg_publication "
																	"WHERE pubname = %s",
																	quote_literal_cstr(ps.publication)),
											   1, types), 1) == NULL)
	{
		c360_pgremote_exec(ps.conn, psprintf("CREATE PUBLICATION %s",
											 quote_identifier(ps.publication)), 0, NULL);
		c360_source_mark_created(ps.w->src, "publication");
	}
	c360_worker_commit();
}

/*
 * In the snapshot's transaction: make the publication carry the tables before their
 * snapshot.  One this source created gets them added; a publication of the user's that
 * lacks one is theirs to fix.
 */
static void
publish(List *tables)
{
	Oid			types[1] = {TEXTOID};
	ListCell   *lc;
	bool		ours = c360_source_created(ps.w->src, "publication");
	const char *pub = quote_literal_cstr(ps.publication);

	foreach(lc, tables)
	{
		const char *remote = ((C360SourceTable *) lfirst(lc))->remote;

		if (c360_pgremote_value(c360_pgremote_exec(ps.conn, psprintf(
			"SELECT pubname::text FROM pg_publication_tables WHERE pubname = %s AND "
			"format('%%I.%%I', schemaname, tablename)::regclass = %s::regclass",
			pub, quote_literal_cstr(remote)), 1, types), 1) != NULL)
			continue;
		if (!ours)
			c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
							  "publication \"%s\" does not publish table %s, which source \"%s\" "
							  "maps; run ALTER PUBLICATION %s ADD TABLE %s on the source, then "
							  "c360.resume_source('%s')", ps.publication, remote, ps.w->src->name,
							  quote_identifier(ps.publication), remote, ps.w->src->name);
		c360_pgremote_exec(ps.conn, psprintf("ALTER PUBLICATION %s ADD TABLE %s",
											 quote_identifier(ps.publication), remote), 0, NULL);
	}
}

/*
 * Copy one table with COPY TO STDOUT, c360.batch_size rows a batch: the server goes on
 * streaming rows into the socket while this worker applies the previous batch.
 */
static void
snapshot_table(C360SourceTable *t)
{
	List	   *cols = remote_columns(t);
	const C360Input *in = &c360_inputs[t->input];
	int			ncols = list_length(cols);
	int		   *colmap = palloc(sizeof(int) * ncols);
	Oid			count_type[1] = {TEXTOID};
	StringInfoData sql;
	WalRcvExecResult *res;
	ListCell   *lc;

	initStringInfo(&sql);
	foreach(lc, cols)
	{
		int			c = c360_column_by_name(in, lfirst(lc));

		appendStringInfo(&sql, "%s%s::text", foreach_current_index(lc) ? ", " : "",
						 quote_identifier(c360_source_remote_column(t, c)));
		colmap[foreach_current_index(lc)] = c;
	}
	ps.w->status->snapshot_total += pg_strtoint64(c360_pgremote_value(
		c360_pgremote_exec(ps.conn, psprintf("SELECT CASE WHEN reltuples >= 0 THEN reltuples::bigint "
											 "ELSE (SELECT count(*) FROM %s) END::text "
											 "FROM pg_class WHERE oid = %s::regclass",
											 t->remote, quote_literal_cstr(t->remote)), 1, count_type), 1));

	/*
	 * The snapshot replaces the input's rows, so that a re-snapshot keeps no row deleted
	 * meanwhile; but never the rows another source feeds into the same input.
	 */
	if (c360_source_sole_feed(ps.w->src, t))
	{
		C360Change *truncate = MemoryContextAllocZero(ps.w->batch_cxt, sizeof(C360Change));

		truncate->input = t->input;
		truncate->op = C360_TRUNCATE;
		c360_apply_add(ps.w->batch, truncate);
	}

	res = walrcv_exec(ps.conn, psprintf("COPY (SELECT %s FROM %s) TO STDOUT", sql.data,
										t->remote), 0, NULL);
	if (res->status != WALRCV_OK_COPY_OUT)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the source PostgreSQL server failed to copy %s: %s", t->remote,
						res->err ? res->err : "(no message)")));
	copy_rows(t, colmap, ncols);
	walrcv_clear_result(res);
}

/*
 * The rows of a COPY TO STDOUT, parsed by core's COPY FROM machinery as core's tablesync
 * does (raw fields only: the apply path casts them), each an insert into the batch.  The
 * mirror relation gives COPY its column names.
 */
static void
copy_rows(C360SourceTable *t, int *colmap, int ncols)
{
	const C360Input *in = &c360_inputs[t->input];
	Relation	mirror = table_openrv(makeRangeVar("c360", (char *) in->name, -1), AccessShareLock);
	List	   *names = NIL;
	CopyFromState cstate;
	char	  **fields;
	int			nfields;

	for (int i = 0; i < ncols; i++)
		names = lappend(names, makeString((char *) in->cols[colmap[i]].name));
	copy_pending_len = 0;
	copy_ended = false;
	cstate = BeginCopyFrom(make_parsestate(NULL), mirror, NULL, NULL, false, copy_data, names, NIL);
	while (NextCopyFromRawFields(cstate, &fields, &nfields))
	{
		MemoryContext old = MemoryContextSwitchTo(ps.w->batch_cxt);
		C360Change *ch = palloc0(sizeof(C360Change));

		if (nfields != ncols)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("a row copied from %s has %d columns, not %d", t->remote, nfields, ncols)));
		ch->input = t->input;
		ch->op = C360_INSERT;
		ch->new = palloc0(sizeof(C360Tuple));
		ch->position = "snapshot";
		for (int i = 0; i < ncols; i++)
		{
			ch->new->present[colmap[i]] = true;
			ch->new->values[colmap[i]] = fields[i] ? pstrdup(fields[i]) : NULL;
		}
		c360_apply_add(ps.w->batch, ch);
		MemoryContextSwitchTo(old);
		ps.w->status->snapshot_done++;
		if (ps.w->batch->nchanges >= c360_batch_size)
			c360_source_worker_apply_now(ps.w);
	}
	c360_source_worker_apply_now(ps.w);
	EndCopyFrom(cstate);
	table_close(mirror, AccessShareLock);
}

/*
 * COPY FROM's data source: the bytes of the CopyData messages libpq hands over, one
 * message per walrcv_receive, waiting for the server as long as it takes.  At least
 * minread bytes, unless the data ended; 0 once it has.
 */
static int
copy_data(void *outbuf, int minread, int maxread)
{
	int			done = 0;

	while (done < minread && !copy_ended)
	{
		if (copy_pending_len == 0)
		{
			pgsocket	fd = PGINVALID_SOCKET;
			int			len = walrcv_receive(ps.conn, &copy_pending, &fd);

			if (len < 0)
				copy_ended = true;
			else if (len == 0)
				c360_worker_wait_socket(fd, 1000);
			copy_pending_len = Max(len, 0);
			continue;
		}
		{
			int			n = Min(copy_pending_len, maxread - done);

			memcpy((char *) outbuf + done, copy_pending, n);
			copy_pending += n;
			copy_pending_len -= n;
			done += n;
		}
	}
	return done;
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
		int			c = c360_source_input_column(t, name, false);

		if (c < 0)
			continue;
		if (!castable(type, in->cols[c].type))
			c360_source_error(ERRCODE_DATATYPE_MISMATCH,
							  "column \"%s\" of source table %s has type %s, which does not cast to the "
						 "%s column \"%s\" of input \"%s\"", name, t->remote, type_name(type),
						 type_name(in->cols[c].type), in->cols[c].name, in->name);
		cols = lappend(cols, (char *) in->cols[c].name);
	}
	ExecDropSingleTupleTableSlot(slot);
	for (int c = 0; c < in->ncols; c++)
		c360_source_check_column(ps.w->src, t, cols, c, t->remote);
	c360_source_set_columns(ps.w->src, t, cols);
	return cols;
}

/* Stream from the origin's position: pgoutput, protocol 1, the source's publication. */
static void
stream(C360SourceWorker *w)
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
}

/* One message of the stream, when one is there without waiting. */
static bool
read_message(C360SourceWorker *w)
{
	char	   *buf;
	int			len = walrcv_receive(ps.conn, &buf, &ps.fd);

	if (len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the source ended the replication stream")));
	if (len == 0)
		return false;
	handle_message(buf, len);
	return true;
}

/* Tell the source what is durable, then end the replication connection. */
static void
close_source(C360SourceWorker *w)
{
	send_feedback(true);
	walrcv_disconnect(ps.conn);
}

static pgsocket
stream_socket(C360SourceWorker *w)
{
	return ps.fd;
}

/* Errors say where in the source's WAL: the transaction being read, or the last applied. */
static void
error_context(C360SourceWorker *w, StringInfo buf)
{
	if (w->in_unit)
		appendStringInfo(buf, " in the transaction committed at %s", ps.txn_position);
	else
		appendStringInfo(buf, " at %X/%X", LSN_FORMAT_ARGS(ps.applied));
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
	MemoryContext old = MemoryContextSwitchTo(ps.w->batch_cxt);
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
				ps.w->in_unit = true;
				ps.txn_final = begin.final_lsn;
				snprintf(ps.txn_position, sizeof(ps.txn_position), "%X/%X",
						 LSN_FORMAT_ARGS(begin.final_lsn));
				break;
			}
		case LOGICAL_REP_MSG_COMMIT:
			{
				LogicalRepCommitData commit;

				logicalrep_read_commit(s, &commit);
				ps.pending_end = commit.end_lsn;
				ps.pending_commit_at = commit.committime;
				c360_source_worker_unit_end(ps.w, commit.committime);
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
	r->table = c360_source_table(ps.w->src, remote);
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
		r->colmap[i] = c360_source_input_column(r->table, rel->attnames[i], false);
		if (r->colmap[i] >= 0 && !learning &&
			!castable(rel->atttyps[i], in->cols[r->colmap[i]].type))
			c360_source_error(ERRCODE_DATATYPE_MISMATCH,
							  "column \"%s\" of source table %s changed to type %s, which does not "
						 "cast to the %s column of input \"%s\"", rel->attnames[i], remote,
						 type_name(rel->atttyps[i]), type_name(in->cols[r->colmap[i]].type),
						 in->name);
	}
	if (r->table->columns == NIL)
		learn_columns(r, rel, remote);
	foreach(lc, r->table->columns)
	{
		int			c = c360_column_by_name(in, lfirst(lc));
		bool		found = false;

		/* the remote column that fed the input column at the snapshot */
		for (int i = 0; i < rel->natts && !found; i++)
			found = c >= 0 && r->colmap[i] == c;
		if (!found)
			c360_source_error(ERRCODE_UNDEFINED_COLUMN,
							  "column %s of source table %s was dropped on the source; it feeds "
						 "input \"%s\". Re-add it, or %s, then run c360.resume_source('%s')",
						 c >= 0 ? c360_source_column_desc(r->table, c) : quote_identifier(lfirst(lc)),
						 remote, in->name,
						 c >= 0 && r->table->map[c] ? "map the table without it (c360.map_table)" :
						 "accept its loss", ps.w->src->name);
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
		c360_source_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
						  "the snapshot position \"%s\" of table %s of source \"%s\" "
						  "(c360.source_tables) is not an LSN", t->since, t->remote, ps.w->src->name);
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
		for (int i = 0; i < rel->natts; i++)
			if (r->colmap[i] == c)
			{
				cols = lappend(cols, (char *) in->cols[c].name);
				break;
			}
	for (int c = 0; c < in->ncols; c++)
		c360_source_check_column(ps.w->src, r->table, cols, c, remote);
	c360_worker_begin("c360 source schema");
	c360_source_set_columns(ps.w->src, r->table, cols);
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
	c360_apply_add(ps.w->batch, ch);
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
		case INT8OID:
			return remote_type == INT2OID || remote_type == INT4OID || remote_type == INT8OID ||
				remote_type == NUMERICOID;
		case FLOAT8OID:
			return remote_type == NUMERICOID || remote_type == INT2OID || remote_type == INT4OID ||
				remote_type == INT8OID || remote_type == FLOAT4OID || remote_type == FLOAT8OID;
		case TIMESTAMPTZOID:
			return remote_type == TIMESTAMPTZOID || remote_type == TIMESTAMPOID ||
				remote_type == DATEOID;
		case BOOLOID:
		case DATEOID:
			return remote_type == mirror_type;
		case JSONBOID:
			return remote_type == JSONBOID || remote_type == JSONOID;
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
	const char *mirror = c360_type_name(type);

	if (mirror != NULL)
		return mirror;
	switch (type)
	{
		case VARCHAROID: return "character varying";
		case BPCHAROID: return "character";
		case INT2OID: return "smallint";
		case FLOAT4OID: return "real";
		case TIMESTAMPOID: return "timestamp without time zone";
		case UUIDOID: return "uuid";
		case JSONOID: return "json";
		case BYTEAOID: return "bytea";
	}
	return psprintf("type with OID %u", type);
}

/*
 * In the batch's local transaction: the origin moves to the end of its last whole
 * transaction at commit, and c360.source_positions stores it (one row upsert): the data
 * and the position commit together.
 */
static void
save_position(C360SourceWorker *w)
{
	store_position(ps.pending_end);
	replorigin_session_origin_lsn = ps.pending_end;
	replorigin_session_origin_timestamp = ps.pending_commit_at;
}

static void
committed(C360SourceWorker *w)
{
	local_commit(ps.pending_end);
	send_feedback(false);
}

/*
 * After a local commit that applied the source up to remote_end: remember where that
 * commit's WAL record ends (XactLastCommitEnd), to confirm remote_end only once the local
 * WAL is flushed past it, as core's apply worker does (get_flush_position() in
 * src/backend/replication/logical/worker.c).
 */
static void
local_commit(XLogRecPtr remote_end)
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
	bool		idle = !ps.w->in_unit && ps.w->units == 0;

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
	ps.w->status->caught_up = idle;
	ps.w->status->lag_bytes = idle ? 0 : (int64) (ps.received - ps.applied);
}

/* Between reads: feedback when there is news (sent at most every 10 s otherwise). */
static void
feedback(C360SourceWorker *w)
{
	send_feedback(false);
}

static char *
position(C360SourceWorker *w)
{
	return psprintf("%X/%X", LSN_FORMAT_ARGS(ps.applied));
}
