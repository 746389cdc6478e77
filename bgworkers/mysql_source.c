/*-------------------------------------------------------------------------
 * mysql_source.c
 *	  The MySQL/MariaDB binlog (mysql-cdc) source worker: a consistent snapshot of
 *	  the mapped tables (START TRANSACTION WITH CONSISTENT SNAPSHOT and the binlog
 *	  position that matches it), then the binlog from exactly that position.  Row
 *	  images are decoded by src/decode/binlog_decode.c; whole source transactions go
 *	  through the one apply path in batches, and the binlog file/position (and
 *	  GTID) commit in the same local transaction as the data they cover.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <poll.h>

/* Connector/C's ma_list.h declares list_* functions that would clash with pg_list.h */
#define list_add mariadb_list_add
#define list_delete mariadb_list_delete
#define list_cons mariadb_list_cons
#define list_reverse mariadb_list_reverse
#define list_free mariadb_list_free
#define list_length mariadb_list_length
#define list_walk mariadb_list_walk
#include <mysql.h>
#include <mysqld_error.h>
#include <errmsg.h>
#include <mariadb_rpl.h>
#include <ma_pvio.h>
#undef list_add
#undef list_delete
#undef list_cons
#undef list_reverse
#undef list_free
#undef list_length
#undef list_walk
#undef list_rest
#undef list_push
#undef list_pop

#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "core/spi.h"
#include "decode/binlog_decode.h"
#include "core/customer360.h"
#include "core/shmem.h"
#include "sources/source.h"
#include "source_worker.h"
#include "worker.h"

#define MAX_COLLATIONS		4096
#define MAX_FILE_NAME		512
#define HEARTBEAT_MS		1000
#define SILENCE_LIMIT_MS	30000	/* no event nor heartbeat for this long: reconnect */
#define MAX_MAPS			1000	/* table maps kept before the cache starts over */

/* A TABLE_MAP as last seen for its table id, resolved against the mapping. */
typedef struct TableMap
{
	uint64		table_id;		/* hash key */
	size_t		raw_len;		/* the event body, to reuse the resolution when it repeats */
	uint8	   *raw;
	BinlogTableMap tm;
	C360SourceTable *table;		/* NULL: not mapped, its rows are skipped undecoded */
	int		   *colmap;			/* binlog column -> input column, or -1 */
} TableMap;

/* A column of a mapped table as information_schema describes it, for the snapshot. */
typedef struct RemoteColumn
{
	char	   *name;			/* as MySQL spells it */
	int			input_col;
	BinlogKind	kind;
	bool		is_bit;			/* selected as a number, as the binlog decoder gives it */
} RemoteColumn;

/* The adapter's state: two connections, the binlog being read, the positions. */
typedef struct MySource
{
	C360SourceWorker *w;		/* the skeleton's: source, status, batch */
	MYSQL	   *conn;			/* queries: checks and the snapshot */
	MYSQL	   *repl;			/* the binlog dump */
	MARIADB_RPL *rpl;
	BinlogDecoder dec;
	BinlogCharset charsets[MAX_COLLATIONS];
	bool		checksum;		/* events end with a CRC32 */
	HTAB	   *maps;
	MemoryContext maps_cxt;
	MemoryContext event_cxt;	/* reset for every event */

	char		file[MAX_FILE_NAME];	/* the binlog file being read */
	bool		txn_standalone; /* GTID group of one statement, no XID/COMMIT */
	char		txn_gtid[64];
	TimestampTz last_received;

	char		pending_file[MAX_FILE_NAME];	/* where the batch ends */
	uint64		pending_pos;
	char		pending_gtid[64];

	char		applied_file[MAX_FILE_NAME];	/* committed locally */
	uint64		applied_pos;
	char		applied_gtid[64];
} MySource;

static MySource ms;

static void connect_source(C360SourceWorker *w);
static MYSQL *connect_mysql(const char *purpose);
static void mysql_failed(MYSQL *m, const char *what) pg_attribute_noreturn();
static MYSQL_RES *query(MYSQL *m, const char *sql, bool use);
static char *query_value(MYSQL *m, const char *sql);
static void check_server(void);
static void load_charsets(void);
static BinlogCharset charset_of(void *ctx, int collation);
static void *decoder_alloc(void *ctx, size_t size);
static void split_remote(C360SourceTable *t, char **db, char **table);
static char *quote_ident_my(const char *name);
static char *quote_literal_my(MYSQL *m, const char *value);
static void resume(C360SourceWorker *w);
static void load_position(void);
static void check_position(void);
static char *snapshot(C360SourceWorker *w, List *tables, bool initial);
static void snapshot_done(C360SourceWorker *w);
static void consistent_snapshot(List *tables);
static bool in_own_snapshot(C360SourceTable *t, uint64 end);
static uint64 binlog_file_no(const char *file);
static void snapshot_table(C360SourceTable *t);
static List *remote_columns(C360SourceTable *t);
static BinlogKind kind_of_data_type(const char *data_type);
static void snapshot_row(C360SourceTable *t, MYSQL_ROW row, unsigned long *lengths, List *cols);
static void stream(C360SourceWorker *w);
static bool read_event(C360SourceWorker *w);
static void housekeeping(C360SourceWorker *w);
static pgsocket binlog_socket(C360SourceWorker *w);
static bool data_ready(void);
static void handle_event(MARIADB_RPL_EVENT *ev);
static void handle_rotate(MARIADB_RPL_EVENT *ev, const uint8 *body, size_t len);
static void handle_query(MARIADB_RPL_EVENT *ev, const uint8 *body, size_t len);
static C360SourceTable *truncated_table(const char *db, const char *sql);
static void handle_table_map(const uint8 *body, size_t len);
static void resolve_map(TableMap *map);
static bool column_seen(const C360Input *in, List *seen, const char *name);
static void handle_rows(MARIADB_RPL_EVENT *ev, const uint8 *body, size_t len);
static C360Tuple *row_tuple(TableMap *map, BinlogRow *row);
static char *to_input_text(const BinlogColumn *c, Oid type, const char *value);
static bool castable(BinlogKind kind, Oid mirror_type);
static void end_transaction(MARIADB_RPL_EVENT *ev);
static void save_position(C360SourceWorker *w);
static void store_position(const char *file, uint64 pos, const char *gtid);
static void committed(C360SourceWorker *w);
static char *position(C360SourceWorker *w);
static void error_context(C360SourceWorker *w, StringInfo buf);
static void close_source(C360SourceWorker *w);

static const C360SourceAdapter adapter = {
	.kind = "MySQL",
	.connect = connect_source,
	.snapshot = snapshot,
	.snapshot_done = snapshot_done,
	.resume = resume,
	.stream = stream,
	.read = read_event,
	.save_position = save_position,
	.committed = committed,
	.position = position,
	.housekeeping = housekeeping,
	.socket = binlog_socket,
	.context = error_context,
	.close = close_source,
};

void
c360_mysql_source_main(Datum arg)
{
	c360_source_worker_run(&adapter);
}

/* Errors say where in the binlog. */
static void
error_context(C360SourceWorker *w, StringInfo buf)
{
	if (ms.file[0] != '\0')
		appendStringInfo(buf, " at binlog %s", ms.file);
}

/* Connect for queries, and check the server's binlog settings. */
static void
connect_source(C360SourceWorker *w)
{
	HASHCTL		ctl = {.keysize = sizeof(uint64), .entrysize = sizeof(TableMap)};

	ms.w = w;
	ms.maps_cxt = AllocSetContextCreate(TopMemoryContext, "c360 table maps", ALLOCSET_DEFAULT_SIZES);
	ms.event_cxt = AllocSetContextCreate(TopMemoryContext, "c360 event", ALLOCSET_DEFAULT_SIZES);
	ctl.hcxt = ms.maps_cxt;
	ms.maps = hash_create("c360 table maps", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ms.dec.alloc = decoder_alloc;
	ms.dec.charset_of = charset_of;

	ms.conn = connect_mysql("queries");
	elog(LOG, "c360 source \"%s\" connected to MySQL %s (%s)", w->src->name,
		 mysql_get_server_info(ms.conn), w->src->phase);
	check_server();
}

/* A later start: the committed position, whose binlog must still be on the server. */
static void
resume(C360SourceWorker *w)
{
	load_position();
	check_position();
}

static void *
decoder_alloc(void *ctx, size_t size)
{
	return palloc(size);
}

/*
 * A connection with the source's options.  Strings come back as utf8mb4 and TIMESTAMPs
 * in UTC, the way the binlog decoder reads them.
 */
static MYSQL *
connect_mysql(const char *purpose)
{
	MYSQL	   *m = mysql_init(NULL);
	char	   *host = c360_source_option(ms.w->src, "host", NULL);
	char	   *port = c360_source_option(ms.w->src, "port", "3306");
	char	   *user = c360_source_option(ms.w->src, "user", NULL);
	char	   *password = c360_source_option(ms.w->src, "password", NULL);
	unsigned int timeout = 10;

	if (m == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("mysql_init failed")));
	mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(m, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
	if (!mysql_real_connect(m, host, user, password, NULL, (unsigned int) atoi(port), NULL, 0))
		mysql_failed(m, psprintf("connect to %s:%s for %s", host, port, purpose));
	return m;
}

/*
 * A MySQL error, verbatim.  Those the user must fix (privileges, a purged or missing
 * binlog) stop the source in 'error'; the rest (a lost connection, a server restart)
 * make the worker exit and the launcher restart it with back-off.
 */
static void
mysql_failed(MYSQL *m, const char *what)
{
	unsigned int err = mysql_errno(m);
	char	   *msg = pstrdup(mysql_error(m));
	int			code = ERRCODE_CONNECTION_FAILURE;	/* the rest passes: retry */

	switch (err)
	{
		case ER_ACCESS_DENIED_ERROR:
		case ER_DBACCESS_DENIED_ERROR:
		case ER_TABLEACCESS_DENIED_ERROR:
		case ER_COLUMNACCESS_DENIED_ERROR:
		case ER_SPECIFIC_ACCESS_DENIED_ERROR:
			code = ERRCODE_INSUFFICIENT_PRIVILEGE;
			break;
		case ER_MASTER_FATAL_ERROR_READING_BINLOG:
			code = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
			break;
		case ER_NO_SUCH_TABLE:
			code = ERRCODE_UNDEFINED_TABLE;
			break;
		case ER_BAD_DB_ERROR:
			code = ERRCODE_UNDEFINED_DATABASE;
			break;
		case ER_BAD_FIELD_ERROR:
			code = ERRCODE_UNDEFINED_COLUMN;
			break;
	}
	ereport(ERROR, (errcode(code), errmsg("MySQL error %u during %s: %s", err, what, msg)));
}

/* Run a query that returns rows; use: stream them (mysql_use_result) instead of storing. */
static MYSQL_RES *
query(MYSQL *m, const char *sql, bool use)
{
	MYSQL_RES  *res;

	if (mysql_query(m, sql) != 0)
		mysql_failed(m, sql);
	res = use ? mysql_use_result(m) : mysql_store_result(m);
	if (res == NULL && mysql_field_count(m) > 0)
		mysql_failed(m, sql);
	return res;
}

/* The first column of the first row, palloc'd; NULL when none or SQL NULL. */
static char *
query_value(MYSQL *m, const char *sql)
{
	MYSQL_RES  *res = query(m, sql, false);
	MYSQL_ROW	row = res ? mysql_fetch_row(res) : NULL;
	char	   *value = row && row[0] ? pstrdup(row[0]) : NULL;

	if (res)
		mysql_free_result(res);
	return value;
}

/*
 * The binlog must hold full row images with their metadata: ROW format, FULL images,
 * FULL row metadata (column names, signedness, ENUM/SET labels), no compressed events.
 */
static void
check_server(void)
{
	MYSQL_RES  *res;
	MYSQL_ROW	row;

	if (mysql_query(ms.conn, "SELECT @@global.log_bin, @@global.binlog_format, "
					"@@global.binlog_row_image, @@global.binlog_row_metadata") != 0)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "the MySQL server cannot tell its binlog settings (%s); the mysql-cdc "
						  "source needs MariaDB 10.5 or later", mysql_error(ms.conn));
	res = mysql_store_result(ms.conn);
	row = res ? mysql_fetch_row(res) : NULL;
	if (row == NULL)
		mysql_failed(ms.conn, "reading the binlog settings");
	if (strcmp(row[0], "1") != 0)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "binary logging is off on the MySQL server: start it with log_bin");
	if (pg_strcasecmp(row[1], "ROW") != 0)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "the MySQL server has binlog_format=%s; the mysql-cdc source needs "
						  "binlog_format=ROW", row[1]);
	if (pg_strcasecmp(row[2], "FULL") != 0)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "the MySQL server has binlog_row_image=%s; the mysql-cdc source needs "
						  "binlog_row_image=FULL", row[2]);
	if (pg_strcasecmp(row[3], "FULL") != 0)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "the MySQL server has binlog_row_metadata=%s; the mysql-cdc source needs "
						  "binlog_row_metadata=FULL (column names and ENUM/SET labels in the binlog)",
						  row[3]);
	mysql_free_result(res);
	if (mysql_query(ms.conn, "SELECT @@global.log_bin_compress") == 0)
	{
		char	   *compress;

		res = mysql_store_result(ms.conn);
		row = res ? mysql_fetch_row(res) : NULL;
		compress = row && row[0] ? pstrdup(row[0]) : NULL;
		if (res)
			mysql_free_result(res);
		if (compress && strcmp(compress, "1") == 0)
			c360_source_error(ERRCODE_FEATURE_NOT_SUPPORTED,
						  "the MySQL server has log_bin_compress=ON; the mysql-cdc source "
							  "cannot read compressed binlog events");
	}
	load_charsets();
}

/* Which character set each collation id belongs to, for the string columns of the binlog. */
static void
load_charsets(void)
{
	MYSQL_RES  *res;
	MYSQL_ROW	row;

	/* MariaDB 10.10+ lists every charset/collation pair with its id only here */
	if (mysql_query(ms.conn, "SELECT ID, CHARACTER_SET_NAME FROM "
					"information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID IS NOT NULL") != 0)
		res = query(ms.conn, "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS "
					"WHERE ID IS NOT NULL", false);
	else
		res = mysql_store_result(ms.conn);
	while (res && (row = mysql_fetch_row(res)) != NULL)
	{
		int			id = atoi(row[0]);
		const char *cs = row[1];

		if (id < 0 || id >= MAX_COLLATIONS)
			continue;
		ms.charsets[id] = strcmp(cs, "utf8mb4") == 0 || strcmp(cs, "utf8mb3") == 0 ||
			strcmp(cs, "utf8") == 0 || strcmp(cs, "ascii") == 0 ? BINLOG_CS_UTF8 :
			strcmp(cs, "latin1") == 0 ? BINLOG_CS_LATIN1 :
			strcmp(cs, "binary") == 0 ? BINLOG_CS_BINARY : BINLOG_CS_OTHER;
	}
	if (res)
		mysql_free_result(res);
}

static BinlogCharset
charset_of(void *ctx, int collation)
{
	return collation >= 0 && collation < MAX_COLLATIONS ? ms.charsets[collation] : BINLOG_CS_UNKNOWN;
}

/* 'db.table' (or 'table' with the source's "database" option). */
static void
split_remote(C360SourceTable *t, char **db, char **table)
{
	char	   *dot = strchr(t->remote, '.');

	if (dot)
	{
		*db = pnstrdup(t->remote, dot - t->remote);
		*table = pstrdup(dot + 1);
		return;
	}
	*db = c360_source_option(ms.w->src, "database", NULL);
	*table = pstrdup(t->remote);
	if (*db == NULL)
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "mapped table \"%s\" has no database: map it as 'database.table' or set "
						  "the source's \"database\" option", t->remote);
}

static char *
quote_ident_my(const char *name)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '`');
	for (const char *p = name; *p; p++)
	{
		if (*p == '`')
			appendStringInfoChar(&buf, '`');
		appendStringInfoChar(&buf, *p);
	}
	appendStringInfoChar(&buf, '`');
	return buf.data;
}

static char *
quote_literal_my(MYSQL *m, const char *value)
{
	size_t		len = strlen(value);
	char	   *buf = palloc(len * 2 + 3);
	unsigned long n;

	buf[0] = '\'';
	n = mysql_real_escape_string(m, buf + 1, value, len);
	buf[n + 1] = '\'';
	buf[n + 2] = '\0';
	return buf;
}

/* The committed position: where the last applied batch (or the snapshot) ended. */
static void
load_position(void)
{
	C360Source *src = ms.w->src;
	char	   *pos = c360_source_position(src, "pos");
	char	   *gtid = c360_source_position(src, "gtid");

	strlcpy(ms.applied_file, c360_source_position(src, "file") ? c360_source_position(src, "file") : "",
			sizeof(ms.applied_file));
	ms.applied_pos = pos ? strtoull(pos, NULL, 10) : 0;
	strlcpy(ms.applied_gtid, gtid ? gtid : "", sizeof(ms.applied_gtid));
	if (ms.applied_file[0] == '\0' || ms.applied_pos < 4)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "source \"%s\" is streaming but has no binlog position; drop it and create "
						  "and map it again to take a new snapshot", ms.w->src->name);
}

/*
 * The binlog file to resume in must still be on the server.  If it was purged, changes
 * after the position are gone: say so and stop, never silently take a new snapshot.
 */
static void
check_position(void)
{
	MYSQL_RES  *res = query(ms.conn, "SHOW BINARY LOGS", false);
	MYSQL_ROW	row;
	bool		found = false;
	char	   *first = NULL;

	while ((row = mysql_fetch_row(res)) != NULL)
	{
		if (first == NULL)
			first = pstrdup(row[0]);
		found |= strcmp(row[0], ms.applied_file) == 0;
	}
	mysql_free_result(res);
	if (!found)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "binlog file %s, where source \"%s\" resumes (position %s:" UINT64_FORMAT
						  "), is no longer on the MySQL server (its oldest is %s): it was purged, so "
						  "changes after that position are lost. To start over with a new snapshot, "
						  "drop the source and create and map it again", ms.applied_file,
						  ms.w->src->name, ms.applied_file, ms.applied_pos, first ? first : "none");
}

/*
 * Inside the skeleton's snapshot transaction: copy the tables under one consistent
 * snapshot on the server.  The first snapshot's binlog position is where the stream
 * starts; a later one's is returned, for the stream to skip the tables' rows events up to
 * it (in_own_snapshot), while the stream goes on from the source's own position.
 */
static char *
snapshot(C360SourceWorker *w, List *tables, bool initial)
{
	char		file[MAX_FILE_NAME];
	uint64		pos = ms.applied_pos;
	char		gtid[64];
	char	   *since;
	ListCell   *lc;

	strlcpy(file, ms.applied_file, sizeof(file));
	strlcpy(gtid, ms.applied_gtid, sizeof(gtid));
	consistent_snapshot(tables);
	foreach(lc, tables)
		snapshot_table(lfirst(lc));
	if (initial)
	{
		strlcpy(ms.pending_file, ms.applied_file, sizeof(ms.pending_file));
		ms.pending_pos = ms.applied_pos;
		strlcpy(ms.pending_gtid, ms.applied_gtid, sizeof(ms.pending_gtid));
		return NULL;
	}
	since = psprintf("%s:" UINT64_FORMAT, ms.applied_file, ms.applied_pos);
	strlcpy(ms.applied_file, file, sizeof(ms.applied_file));
	ms.applied_pos = pos;
	strlcpy(ms.applied_gtid, gtid, sizeof(ms.applied_gtid));
	return since;
}

static void
snapshot_done(C360SourceWorker *w)
{
	(void) query(ms.conn, "COMMIT", false);
}

/*
 * A consistent snapshot on the server, with the binlog position that matches it in
 * ms.applied_*, and the tables' estimated rows added to the progress total.
 */
static void
consistent_snapshot(List *tables)
{
	MYSQL_RES  *res;
	MYSQL_ROW	row;
	ListCell   *lc;
	char	   *gtid;

	foreach(lc, tables)
	{
		char	   *db;
		char	   *table;

		split_remote(lfirst(lc), &db, &table);
		ms.w->status->snapshot_total += pg_strtoint64(
			query_value(ms.conn, psprintf("SELECT COALESCE(MAX(TABLE_ROWS), 0) FROM "
										  "information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
										  "TABLE_NAME = %s", quote_literal_my(ms.conn, db),
										  quote_literal_my(ms.conn, table))));
	}

	(void) query(ms.conn, "SET SESSION net_write_timeout = 3600", false);
	(void) query(ms.conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ", false);
	(void) query(ms.conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", false);
	res = query(ms.conn, "SHOW STATUS LIKE 'binlog_snapshot_%'", false);
	ms.applied_file[0] = '\0';
	while ((row = mysql_fetch_row(res)) != NULL)
	{
		if (pg_strcasecmp(row[0], "Binlog_snapshot_file") == 0)
			strlcpy(ms.applied_file, row[1], sizeof(ms.applied_file));
		else if (pg_strcasecmp(row[0], "Binlog_snapshot_position") == 0)
			ms.applied_pos = strtoull(row[1], NULL, 10);
	}
	mysql_free_result(res);
	if (ms.applied_file[0] == '\0')
		c360_source_error(ERRCODE_FEATURE_NOT_SUPPORTED,
						  "the MySQL server did not report binlog_snapshot_file; the mysql-cdc "
						  "source needs MariaDB 10.5 or later with log_bin");
	gtid = query_value(ms.conn, psprintf("SELECT BINLOG_GTID_POS(%s, " UINT64_FORMAT ")",
										 quote_literal_my(ms.conn, ms.applied_file), ms.applied_pos));
	strlcpy(ms.applied_gtid, gtid ? gtid : "", sizeof(ms.applied_gtid));
}

/*
 * Whether a change whose event ends at end (in the file being read) is in the table's
 * own snapshot, taken after the source's (snapshot_new_tables): its rows events up to
 * that snapshot's position are skipped.
 */
static bool
in_own_snapshot(C360SourceTable *t, uint64 end)
{
	const char *colon;
	uint64		file_no;
	uint64		now_no;

	if (t->since == NULL || t->since[0] == '\0')
		return false;
	colon = strrchr(t->since, ':');
	if (colon == NULL)
		c360_source_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
						  "the snapshot position \"%s\" of table %s of source \"%s\" "
						  "(c360.source_tables) is not a binlog position", t->since, t->remote,
						  ms.w->src->name);
	file_no = binlog_file_no(pnstrdup(t->since, colon - t->since));
	now_no = binlog_file_no(ms.file);
	return now_no < file_no || (now_no == file_no && end <= strtoull(colon + 1, NULL, 10));
}

/* The sequence number of a binlog file: the digits after its name's last dot. */
static uint64
binlog_file_no(const char *file)
{
	const char *dot = strrchr(file, '.');

	return dot ? strtoull(dot + 1, NULL, 10) : 0;
}

/* Stream one table's rows (mysql_use_result) and apply them c360.batch_size at a time. */
static void
snapshot_table(C360SourceTable *t)
{
	List	   *cols = remote_columns(t);
	StringInfoData sql;
	MYSQL_RES  *res;
	MYSQL_ROW	row;
	ListCell   *lc;
	char	   *db;
	char	   *table;

	split_remote(t, &db, &table);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	foreach(lc, cols)
	{
		RemoteColumn *rc = lfirst(lc);

		appendStringInfo(&sql, rc->is_bit ? "%sCAST(%s AS UNSIGNED)" : "%s%s",
						 foreach_current_index(lc) ? ", " : "", quote_ident_my(rc->name));
	}
	appendStringInfo(&sql, " FROM %s.%s", quote_ident_my(db), quote_ident_my(table));

	res = query(ms.conn, sql.data, true);
	while ((row = mysql_fetch_row(res)) != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(ms.w->batch_cxt);

		snapshot_row(t, row, mysql_fetch_lengths(res), cols);
		MemoryContextSwitchTo(old);
		ms.w->status->snapshot_done++;
		if (ms.w->batch->nchanges >= c360_batch_size)
			c360_source_worker_apply_now(ms.w);
	}
	if (mysql_errno(ms.conn) != 0)
		mysql_failed(ms.conn, sql.data);
	mysql_free_result(res);
	c360_source_worker_apply_now(ms.w);
}

/*
 * One snapshot row as an insert.  Values arrive as utf8mb4 text; a value that is not
 * valid UTF-8 (binary bytes) or holds a NUL sends the row to the dead letters.
 */
static void
snapshot_row(C360SourceTable *t, MYSQL_ROW row, unsigned long *lengths, List *cols)
{
	const C360Input *in = &c360_inputs[t->input];
	C360Change *ch = palloc0(sizeof(C360Change));
	const char *error = NULL;
	ListCell   *lc;

	ch->input = t->input;
	ch->op = C360_INSERT;
	ch->new = palloc0(sizeof(C360Tuple));
	ch->position = "snapshot";
	foreach(lc, cols)
	{
		RemoteColumn *rc = lfirst(lc);
		int			i = foreach_current_index(lc);
		BinlogColumn col = {.kind = rc->kind};

		ch->new->present[rc->input_col] = true;
		if (row[i] == NULL)
			continue;
		if (memchr(row[i], '\0', lengths[i]) != NULL ||
			!pg_verify_mbstr(PG_UTF8, row[i], lengths[i], true))
		{
			error = psprintf("column %s of %s: bytes that are not valid UTF-8 text", rc->name,
							 t->remote);
			ch->new->values[rc->input_col] = "(not valid UTF-8)";
			continue;
		}
		/* the row buffer of mysql_use_result is reused by the next fetch: copy */
		ch->new->values[rc->input_col] = to_input_text(&col, in->cols[rc->input_col].type,
													   pnstrdup(row[i], lengths[i]));
	}
	if (error)
		c360_source_worker_dead_letter(ms.w, "snapshot", c360_change_json(ch), error);
	else
		c360_apply_add(ms.w->batch, ch);
}

/*
 * The input columns the remote table has (names matched without regard to case, as MySQL
 * does), checked for drift: every required column there, every one castable.  Remembered
 * with the mapping, so that a later TABLE_MAP that lacks one of them is drift.
 */
static List *
remote_columns(C360SourceTable *t)
{
	const C360Input *in = &c360_inputs[t->input];
	MYSQL_RES  *res;
	MYSQL_ROW	row;
	List	   *cols = NIL;
	List	   *names = NIL;
	char	   *db;
	char	   *table;

	split_remote(t, &db, &table);
	res = query(ms.conn, psprintf("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
								  "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
								  quote_literal_my(ms.conn, db), quote_literal_my(ms.conn, table)),
				false);
	if (mysql_num_rows(res) == 0)
		c360_source_error(ERRCODE_UNDEFINED_TABLE,
						  "mapped table %s does not exist on the MySQL server (or the source's user "
						  "cannot see it)", t->remote);
	while ((row = mysql_fetch_row(res)) != NULL)
	{
		int			c = c360_source_input_column(t, row[0], true);
		RemoteColumn *rc;

		if (c < 0)
			continue;
		rc = palloc(sizeof(RemoteColumn));
		rc->name = pstrdup(row[0]);
		rc->input_col = c;
		rc->kind = kind_of_data_type(row[1]);
		rc->is_bit = pg_strcasecmp(row[1], "bit") == 0;
		if (!castable(rc->kind, in->cols[c].type))
			c360_source_error(ERRCODE_DATATYPE_MISMATCH,
						  "column \"%s\" of source table %s has type %s, which does not cast to "
							  "the %s column \"%s\" of input \"%s\"", row[0], t->remote, row[1],
							  c360_type_name(in->cols[c].type), in->cols[c].name, in->name);
		cols = lappend(cols, rc);
		names = lappend(names, (char *) in->cols[c].name);
	}
	mysql_free_result(res);
	for (int c = 0; c < in->ncols; c++)
		c360_source_check_column(ms.w->src, t, names, c, t->remote);
	c360_source_set_columns(ms.w->src, t, names);
	return cols;
}

/* information_schema.COLUMNS.DATA_TYPE as the decoder's kinds. */
static BinlogKind
kind_of_data_type(const char *t)
{
	static const struct
	{
		const char *name;
		BinlogKind	kind;
	}			types[] = {
		{"char", BINLOG_KIND_STRING}, {"varchar", BINLOG_KIND_STRING},
		{"tinytext", BINLOG_KIND_STRING}, {"text", BINLOG_KIND_STRING},
		{"mediumtext", BINLOG_KIND_STRING}, {"longtext", BINLOG_KIND_STRING},
		{"binary", BINLOG_KIND_STRING}, {"varbinary", BINLOG_KIND_STRING},
		{"tinyblob", BINLOG_KIND_STRING}, {"blob", BINLOG_KIND_STRING},
		{"mediumblob", BINLOG_KIND_STRING}, {"longblob", BINLOG_KIND_STRING},
		{"tinyint", BINLOG_KIND_INTEGER}, {"smallint", BINLOG_KIND_INTEGER},
		{"mediumint", BINLOG_KIND_INTEGER}, {"int", BINLOG_KIND_INTEGER},
		{"bigint", BINLOG_KIND_INTEGER}, {"year", BINLOG_KIND_INTEGER},
		{"bit", BINLOG_KIND_INTEGER}, {"decimal", BINLOG_KIND_DECIMAL},
		{"float", BINLOG_KIND_FLOAT}, {"double", BINLOG_KIND_FLOAT},
		{"date", BINLOG_KIND_DATE}, {"datetime", BINLOG_KIND_DATETIME},
		{"timestamp", BINLOG_KIND_TIMESTAMP}, {"time", BINLOG_KIND_TIME},
		{"enum", BINLOG_KIND_ENUM}, {"set", BINLOG_KIND_SET},
	};

	for (int i = 0; i < lengthof(types); i++)
		if (pg_strcasecmp(t, types[i].name) == 0)
			return types[i].kind;
	return BINLOG_KIND_OTHER;
}

/* Which kinds of MySQL values the mirror column's input function accepts as text. */
static bool
castable(BinlogKind kind, Oid mirror_type)
{
	switch (mirror_type)
	{
		case TEXTOID:
			return kind != BINLOG_KIND_OTHER;
		case NUMERICOID:
		case FLOAT8OID:
			return kind == BINLOG_KIND_INTEGER || kind == BINLOG_KIND_DECIMAL ||
				kind == BINLOG_KIND_FLOAT;
		case INT4OID:
		case INT8OID:
			return kind == BINLOG_KIND_INTEGER || kind == BINLOG_KIND_DECIMAL;
		case BOOLOID:			/* tinyint(1) and bit(1) arrive as 0 and 1 */
			return kind == BINLOG_KIND_INTEGER;
		case TIMESTAMPTZOID:
			return kind == BINLOG_KIND_DATE || kind == BINLOG_KIND_DATETIME ||
				kind == BINLOG_KIND_TIMESTAMP;
		case DATEOID:
			return kind == BINLOG_KIND_DATE;
		case JSONBOID:			/* MariaDB's JSON is text; MySQL's binary JSON is not decoded */
			return kind == BINLOG_KIND_STRING;
	}
	return false;
}

/*
 * A MySQL value as the text the mirror column reads.  DATETIME and DATE carry no zone:
 * customer360 reads them as UTC, like TIMESTAMP (which the binlog holds as UTC), so that
 * the result does not depend on the TimeZone of the worker or of the MySQL server.
 */
static char *
to_input_text(const BinlogColumn *c, Oid type, const char *value)
{
	if (type != TIMESTAMPTZOID)
		return (char *) value;
	if (c->kind == BINLOG_KIND_DATE)
		return psprintf("%s 00:00:00+00", value);
	return psprintf("%s+00", value);
}

/*
 * COM_BINLOG_DUMP from the committed position.  The session variables make the server
 * send checksummed events as they are, GTID events, and a heartbeat when idle.
 */
static void
stream(C360SourceWorker *w)
{
	char	   *server_id = c360_source_option(w->src, "server_id", NULL);

	strlcpy(ms.file, ms.applied_file, sizeof(ms.file));
	strlcpy(ms.pending_file, ms.applied_file, sizeof(ms.pending_file));
	ms.pending_pos = ms.applied_pos;
	strlcpy(ms.pending_gtid, ms.applied_gtid, sizeof(ms.pending_gtid));

	ms.repl = connect_mysql("the binlog");
	ms.checksum = pg_strcasecmp(query_value(ms.repl, "SELECT @@global.binlog_checksum"), "NONE") != 0;
	(void) query(ms.repl, "SET @master_binlog_checksum = @@global.binlog_checksum", false);
	(void) query(ms.repl, "SET @mariadb_slave_capability = 4", false);
	(void) query(ms.repl, psprintf("SET @master_heartbeat_period = %lld",
								   (long long) HEARTBEAT_MS * 1000000), false);
	ms.rpl = mariadb_rpl_init(ms.repl);
	if (ms.rpl == NULL)
		mysql_failed(ms.repl, "mariadb_rpl_init");
	mariadb_rpl_optionsv(ms.rpl, MARIADB_RPL_SERVER_ID, (unsigned int) strtoul(server_id, NULL, 10));
	mariadb_rpl_optionsv(ms.rpl, MARIADB_RPL_FILENAME, ms.applied_file, strlen(ms.applied_file));
	mariadb_rpl_optionsv(ms.rpl, MARIADB_RPL_START, (unsigned long) ms.applied_pos);
	mariadb_rpl_optionsv(ms.rpl, MARIADB_RPL_FLAGS, 0);
	if (mariadb_rpl_open(ms.rpl) != 0)
		mysql_failed(ms.repl, psprintf("starting the binlog dump at %s:" UINT64_FORMAT,
									   ms.applied_file, ms.applied_pos));
	ms.last_received = GetCurrentTimestamp();
	elog(LOG, "c360 source \"%s\" streaming the binlog from %s:" UINT64_FORMAT, w->src->name,
		 ms.applied_file, ms.applied_pos);
}

/* One binlog event, when one can be read without waiting. */
static bool
read_event(C360SourceWorker *w)
{
	MARIADB_RPL_EVENT *ev;
	MemoryContext old;

	if (!data_ready())
		return false;
	ev = mariadb_rpl_fetch(ms.rpl, NULL);
	if (ev == NULL)
		mysql_failed(ms.repl, psprintf("reading the binlog at %s", ms.file));
	ms.last_received = GetCurrentTimestamp();
	MemoryContextReset(ms.event_cxt);
	old = MemoryContextSwitchTo(ms.event_cxt);
	PG_TRY();
	{
		handle_event(ev);
	}
	PG_FINALLY();
	{
		mariadb_free_rpl_event(ev);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Between reads: the lag, and the link's health: heartbeats come every second while the
 * server is idle, so silence means a dead link.
 */
static void
housekeeping(C360SourceWorker *w)
{
	w->status->caught_up = !w->in_unit && w->units == 0;
	if (w->status->caught_up)
		w->status->lag_bytes = 0;
	if (TimestampDifferenceExceeds(ms.last_received, GetCurrentTimestamp(), SILENCE_LIMIT_MS))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("no binlog event or heartbeat from the MySQL server for %d s",
						SILENCE_LIMIT_MS / 1000)));
}

static void
close_source(C360SourceWorker *w)
{
	if (ms.rpl)
		mariadb_rpl_close(ms.rpl);
	if (ms.repl)
		mysql_close(ms.repl);
	mysql_close(ms.conn);
}

static pgsocket
binlog_socket(C360SourceWorker *w)
{
	return mysql_get_socket(ms.repl);
}

/*
 * Whether an event can be read without waiting: bytes left in the client library's
 * read-ahead cache, or on the socket.
 */
static bool
data_ready(void)
{
	MARIADB_PVIO *pvio = ms.repl->net.pvio;
	struct pollfd pfd = {.fd = mysql_get_socket(ms.repl), .events = POLLIN};

	if (pvio != NULL && pvio->cache != NULL && pvio->cache + pvio->cache_size > pvio->cache_pos)
		return true;
	return poll(&pfd, 1, 0) > 0;
}

/* One binlog event.  Its body excludes the header and the trailing checksum. */
static void
handle_event(MARIADB_RPL_EVENT *ev)
{
	const uint8 *body = ev->raw_data + ev->raw_data_ofs + BINLOG_HEADER_LEN;
	size_t		len;

	if (ev->event_length < BINLOG_HEADER_LEN + (ms.checksum ? 4 : 0) ||
		ev->raw_data_size < ev->raw_data_ofs + ev->event_length)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("binlog event of type %d is shorter than its header", ev->event_type)));
	len = ev->event_length - BINLOG_HEADER_LEN - (ms.checksum ? 4 : 0);

	switch (ev->event_type)
	{
		case ROTATE_EVENT:
			handle_rotate(ev, body, len);
			break;
		case FORMAT_DESCRIPTION_EVENT:
			/* the checksum algorithm of this file: the byte before the 4-byte checksum slot */
			if (ev->event_length >= BINLOG_HEADER_LEN + 5)
				ms.checksum = ev->raw_data[ev->raw_data_ofs + ev->event_length - 5] != 0;
			break;
		case GTID_EVENT:
			{
				uint8		flags;

				if (!binlog_decode_gtid(body, len, ev->server_id, ms.txn_gtid,
										sizeof(ms.txn_gtid), &flags))
					ereport(ERROR,
							(errcode(ERRCODE_PROTOCOL_VIOLATION),
							 errmsg("malformed GTID event")));
				ms.w->in_unit = true;
				ms.txn_standalone = (flags & BINLOG_FL_STANDALONE) != 0;
				break;
			}
		case QUERY_EVENT:
			handle_query(ev, body, len);
			break;
		case TABLE_MAP_EVENT:
			handle_table_map(body, len);
			break;
		case XID_EVENT:
		case XA_PREPARE_LOG_EVENT:
			end_transaction(ev);
			break;
		case HEARTBEAT_LOG_EVENT:
			if (strcmp(ms.file, ms.applied_file) == 0 && ev->next_event_pos > ms.applied_pos)
				ms.w->status->lag_bytes = ev->next_event_pos - ms.applied_pos;
			break;
		case WRITE_ROWS_COMPRESSED_EVENT_V1:
		case UPDATE_ROWS_COMPRESSED_EVENT_V1:
		case DELETE_ROWS_COMPRESSED_EVENT_V1:
		case WRITE_ROWS_COMPRESSED_EVENT:
		case UPDATE_ROWS_COMPRESSED_EVENT:
		case DELETE_ROWS_COMPRESSED_EVENT:
		case QUERY_COMPRESSED_EVENT:
			c360_source_error(ERRCODE_FEATURE_NOT_SUPPORTED,
						  "compressed binlog event at %s:%u: the mysql-cdc source needs "
							  "log_bin_compress=OFF", ms.file, ev->next_event_pos);
			break;
		default:
			if (binlog_is_rows_event(ev->event_type))
				handle_rows(ev, body, len);
			break;
	}
}

/*
 * ROTATE: the stream goes on in another file.  The server also sends an artificial one
 * first, naming the file the dump starts in.  Outside a transaction the new file is a
 * position worth keeping: the old file may be purged while this source is idle.
 */
static void
handle_rotate(MARIADB_RPL_EVENT *ev, const uint8 *body, size_t len)
{
	uint64		pos;
	char	   *file;

	if (!binlog_decode_rotate(&ms.dec, body, len, &pos, &file))
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("%s", ms.dec.error)));
	strlcpy(ms.file, file, sizeof(ms.file));
	pfree(file);
	if ((ev->flags & LOG_EVENT_ARTIFICIAL_F) || ms.w->in_unit)
		return;
	strlcpy(ms.pending_file, ms.file, sizeof(ms.pending_file));
	ms.pending_pos = pos;
	ms.w->moved = true;
	if (ms.w->batch_started == 0)
		ms.w->batch_started = GetCurrentTimestamp();
}

/*
 * QUERY: COMMIT ends a transaction on non-transactional tables; a standalone GTID group
 * (DDL) ends with its one statement.  TRUNCATE of a mapped table empties its input.
 */
static void
handle_query(MARIADB_RPL_EVENT *ev, const uint8 *body, size_t len)
{
	char	   *db;
	char	   *sql;
	char	   *p;
	C360SourceTable *t;

	if (!binlog_decode_query(&ms.dec, body, len, &db, &sql))
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("%s", ms.dec.error)));
	p = sql + strspn(sql, " \t\r\n");
	if (pg_strcasecmp(p, "BEGIN") == 0)
		ms.w->in_unit = true;	/* a server without GTIDs */
	else if ((t = truncated_table(db, p)) != NULL && !in_own_snapshot(t, ev->next_event_pos))
	{
		MemoryContext old = MemoryContextSwitchTo(ms.w->batch_cxt);
		C360Change *ch = palloc0(sizeof(C360Change));

		ch->input = t->input;
		ch->op = C360_TRUNCATE;
		ch->position = psprintf("%s:%u", ms.file, ev->next_event_pos);
		c360_apply_add(ms.w->batch, ch);
		MemoryContextSwitchTo(old);
	}
	if (ms.w->in_unit && (ms.txn_standalone || pg_strcasecmp(p, "COMMIT") == 0 ||
					  pg_strcasecmp(p, "ROLLBACK") == 0))
		end_transaction(ev);
}

/* The mapped table a "TRUNCATE [TABLE] [db.]name" statement empties, or NULL. */
static C360SourceTable *
truncated_table(const char *db, const char *sql)
{
	char		name[2 * NAMEDATALEN + 2] = "";
	const char *q;
	int			n = 0;

	if (pg_strncasecmp(sql, "TRUNCATE", 8) != 0 || !isspace((unsigned char) sql[8]))
		return NULL;
	q = sql + 8 + strspn(sql + 8, " \t\r\n");
	if (pg_strncasecmp(q, "TABLE", 5) == 0 && isspace((unsigned char) q[5]))
		q += 5 + strspn(q + 5, " \t\r\n");
	for (; *q && !isspace((unsigned char) *q) && *q != ';' && n < (int) sizeof(name) - 1; q++)
		if (*q != '`')
			name[n++] = *q;
	name[n] = '\0';
	return c360_source_table(ms.w->src, strchr(name, '.') ? name : psprintf("%s.%s", db, name));
}

/*
 * TABLE_MAP: precedes the rows events of each statement.  The same table id usually maps
 * the same bytes again, so the resolution is kept and reused until they change.
 */
static void
handle_table_map(const uint8 *body, size_t len)
{
	uint64		table_id;
	TableMap   *map;
	MemoryContext old;
	bool		ok;

	if (len < 6)
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION), errmsg("malformed TABLE_MAP event")));
	table_id = binlog_rows_table_id(body, len);
	map = hash_search(ms.maps, &table_id, HASH_FIND, NULL);
	if (map && map->raw_len == len && memcmp(map->raw, body, len) == 0)
		return;
	if (map)
	{
		/* the same table id with other bytes (an ALTER): resolve the new map afresh */
		hash_search(ms.maps, &table_id, HASH_REMOVE, NULL);
		map = NULL;
	}
	if (map == NULL && hash_get_num_entries(ms.maps) >= MAX_MAPS)
	{
		/* table ids only grow; start the cache over rather than keep every old one */
		hash_destroy(ms.maps);
		MemoryContextReset(ms.maps_cxt);
		{
			HASHCTL		ctl = {.keysize = sizeof(uint64), .entrysize = sizeof(TableMap),
			.hcxt = ms.maps_cxt};

			ms.maps = hash_create("c360 table maps", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
	}
	map = hash_search(ms.maps, &table_id, HASH_ENTER, NULL);
	old = MemoryContextSwitchTo(ms.maps_cxt);
	map->raw_len = len;
	map->raw = palloc(len);
	memcpy(map->raw, body, len);
	ok = binlog_decode_table_map(&ms.dec, body, len, &map->tm);
	map->table = map->tm.table ?
		c360_source_table(ms.w->src, psprintf("%s.%s", map->tm.db, map->tm.table)) : NULL;
	map->colmap = NULL;
	MemoryContextSwitchTo(old);
	/* a table this decoder cannot read matters only when it is mapped */
	if (!ok && map->table)
		c360_source_error(ERRCODE_FEATURE_NOT_SUPPORTED,
						  "cannot read the binlog of mapped table %s: %s", map->table->remote,
						  ms.dec.error);
	if (!ok)
	{
		map->table = NULL;
		return;
	}
	if (map->table)
		resolve_map(map);
}

/*
 * Map a mapped table's columns onto its input by name, and check drift: a column the
 * mapping had that is gone, or that changed to a type that does not cast, stops the source
 * in 'error' before any of this transaction is applied, so the position stays put.  After
 * c360.resume_source() (columns forgotten) the columns are learned from this map.
 */
static void
resolve_map(TableMap *map)
{
	C360SourceTable *t = map->table;
	const C360Input *in = &c360_inputs[t->input];
	const char *remote = t->remote;
	List	   *seen = NIL;
	ListCell   *lc;

	if (!map->tm.has_names)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "the TABLE_MAP event of %s has no column names: the MySQL server needs "
						  "binlog_row_metadata=FULL", remote);
	if (map->colmap == NULL)
		map->colmap = MemoryContextAlloc(ms.maps_cxt, sizeof(int) * map->tm.ncols);
	for (int i = 0; i < map->tm.ncols; i++)
	{
		const BinlogColumn *c = &map->tm.cols[i];
		map->colmap[i] = c360_source_input_column(t, c->name, true);
		if (map->colmap[i] < 0)
			continue;
		if (!castable(c->kind, in->cols[map->colmap[i]].type))
			c360_source_error(ERRCODE_DATATYPE_MISMATCH,
						  "column \"%s\" of source table %s changed to type %s, which does not "
							  "cast to the %s column of input \"%s\"", c->name, remote, c->type_name,
							  c360_type_name(in->cols[map->colmap[i]].type), in->name);
		seen = lappend(seen, (char *) in->cols[map->colmap[i]].name);
	}
	if (t->columns == NIL)
	{
		for (int c = 0; c < in->ncols; c++)
			c360_source_check_column(ms.w->src, t, seen, c, remote);
		c360_worker_begin("c360 source columns");
		c360_source_set_columns(ms.w->src, t, seen);
		c360_worker_commit();
		return;
	}
	foreach(lc, t->columns)
	{
		int			c = c360_column_by_name(in, lfirst(lc));

		if (!column_seen(in, seen, lfirst(lc)))
			c360_source_error(ERRCODE_UNDEFINED_COLUMN,
						  "column %s of source table %s was dropped on the source; it feeds "
							  "input \"%s\". Re-add it, or %s, then run c360.resume_source('%s')",
							  c >= 0 ? c360_source_column_desc(t, c) : psprintf("\"%s\"", (char *) lfirst(lc)),
							  remote, in->name,
							  c >= 0 && t->map[c] ? "map the table without it (c360.map_table)" :
							  "accept its loss", ms.w->src->name);
	}
	list_free(seen);
}

static bool
column_seen(const C360Input *in, List *seen, const char *name)
{
	int			c = c360_column_by_name(in, name);

	return c >= 0 && list_member_ptr(seen, in->cols[c].name);
}

/* A rows event of a mapped table: one change per row image (pair, for updates). */
static void
handle_rows(MARIADB_RPL_EVENT *ev, const uint8 *body, size_t len)
{
	uint64		table_id = binlog_rows_table_id(body, len);
	TableMap   *map = hash_search(ms.maps, &table_id, HASH_FIND, NULL);
	MemoryContext old;
	BinlogRows	rows;
	char	   *position;

	if (map == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("rows event for table id " UINT64_FORMAT " before its TABLE_MAP", table_id)));
	if (map->table == NULL || in_own_snapshot(map->table, ev->next_event_pos))
		return;
	old = MemoryContextSwitchTo(ms.w->batch_cxt);
	position = psprintf("%s:%u", ms.file, ev->next_event_pos - ev->event_length);
	if (!binlog_decode_rows(&ms.dec, ev->event_type, body, len, &map->tm, &rows))
	{
		c360_source_worker_dead_letter(ms.w, position, NULL,
									   psprintf("could not decode a rows event of %s: %s",
												map->table->remote, ms.dec.error));
		MemoryContextSwitchTo(old);
		return;
	}
	for (int r = 0; r < rows.nrows; r++)
	{
		C360Change *ch = palloc0(sizeof(C360Change));
		const char *error = NULL;

		ch->input = map->table->input;
		ch->op = rows.before == NULL ? C360_INSERT : rows.after == NULL ? C360_DELETE : C360_UPDATE;
		ch->old = rows.before ? row_tuple(map, &rows.before[r]) : NULL;
		ch->new = rows.after ? row_tuple(map, &rows.after[r]) : NULL;
		ch->position = position;
		error = rows.before && rows.before[r].error ? rows.before[r].error :
			rows.after ? rows.after[r].error : NULL;
		if (error == NULL)
			c360_apply_add(ms.w->batch, ch);
		else
			c360_source_worker_dead_letter(ms.w, position, c360_change_json(ch), error);
	}
	MemoryContextSwitchTo(old);
}

/* A decoded row image as the input's tuple: mapped columns only. */
static C360Tuple *
row_tuple(TableMap *map, BinlogRow *row)
{
	C360Tuple  *t = palloc0(sizeof(C360Tuple));
	const C360Input *in = &c360_inputs[map->table->input];

	for (int i = 0; i < map->tm.ncols; i++)
	{
		int			c = map->colmap[i];

		if (c < 0 || !row->present[i])
			continue;
		t->present[c] = true;
		if (row->values[i] != NULL)
			t->values[c] = to_input_text(&map->tm.cols[i], in->cols[c].type, row->values[i]);
	}
	return t;
}

/* XID (or COMMIT, or a standalone statement's end): a whole source transaction. */
static void
end_transaction(MARIADB_RPL_EVENT *ev)
{
	ms.txn_standalone = false;
	strlcpy(ms.pending_file, ms.file, sizeof(ms.pending_file));
	ms.pending_pos = ev->next_event_pos;
	strlcpy(ms.pending_gtid, ms.txn_gtid, sizeof(ms.pending_gtid));
	c360_source_worker_unit_end(ms.w, time_t_to_timestamptz((pg_time_t) ev->timestamp));
}

/* In the batch's transaction: the binlog position (and GTID) the batch ends at. */
static void
save_position(C360SourceWorker *w)
{
	store_position(ms.pending_file, ms.pending_pos, ms.pending_gtid);
}

static void
store_position(const char *file, uint64 pos, const char *gtid)
{
	c360_source_save_position(ms.w->src, "file", file);
	c360_source_save_position(ms.w->src, "pos", psprintf(UINT64_FORMAT, pos));
	if (gtid[0] != '\0')
		c360_source_save_position(ms.w->src, "gtid", gtid);
}

static void
committed(C360SourceWorker *w)
{
	strlcpy(ms.applied_file, ms.pending_file, sizeof(ms.applied_file));
	ms.applied_pos = ms.pending_pos;
	strlcpy(ms.applied_gtid, ms.pending_gtid, sizeof(ms.applied_gtid));
}

static char *
position(C360SourceWorker *w)
{
	return psprintf("%s:" UINT64_FORMAT, ms.applied_file, ms.applied_pos);
}
