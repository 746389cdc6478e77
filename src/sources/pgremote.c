/*-------------------------------------------------------------------------
 * pgremote.c
 *	  A logical replication connection to a source PostgreSQL server: connect,
 *	  run SQL and replication commands, drop what a source created there.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "sources/pgremote.h"

WalReceiverConn *
c360_pgremote_connect(const char *conninfo, const char *appname)
{
	WalReceiverConn *conn;
	char	   *err = NULL;

	if (WalReceiverFunctions == NULL)
		load_file("libpqwalreceiver", false);
	conn = walrcv_connect(conninfo, true, appname, &err);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not connect to the source PostgreSQL server: %s", err)));
	return conn;
}

/* Run one command; an error on the source is an error here, with its message. */
WalRcvExecResult *
c360_pgremote_exec(WalReceiverConn *conn, const char *sql, int nret, const Oid *types)
{
	WalRcvExecResult *res = walrcv_exec(conn, sql, nret, (Oid *) types);

	if (res->status != WALRCV_OK_COMMAND && res->status != WALRCV_OK_TUPLES)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the source PostgreSQL server failed \"%s\": %s", sql,
						res->err ? res->err : "(no message)")));
	return res;
}

/* Column col (1-based) of the first row of a one-row result, NULL when none. */
char *
c360_pgremote_value(WalRcvExecResult *res, int col)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
	char	   *value = NULL;

	if (tuplestore_gettupleslot(res->tuplestore, true, false, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, col, &isnull);

		if (!isnull)
			value = TextDatumGetCString(d);
	}
	ExecDropSingleTupleTableSlot(slot);
	return value;
}

/* The slot's wal_status ("lost" once invalidated), or NULL when it does not exist. */
char *
c360_pgremote_slot_status(WalReceiverConn *conn, const char *slot)
{
	Oid			types[1] = {TEXTOID};

	return c360_pgremote_value(c360_pgremote_exec(conn,
												  psprintf("SELECT COALESCE(wal_status, 'reserved') "
														   "FROM pg_replication_slots WHERE slot_name = %s",
														   quote_literal_cstr(slot)), 1, types), 1);
}

/* Drop the slot if it exists, waiting for a walsender still using it to go. */
void
c360_pgremote_drop_slot(WalReceiverConn *conn, const char *slot)
{
	if (c360_pgremote_slot_status(conn, slot) != NULL)
		c360_pgremote_exec(conn, psprintf("DROP_REPLICATION_SLOT %s WAIT", quote_identifier(slot)),
						   0, NULL);
}

/* Drop the source's slot and, if given, its publication. */
void
c360_pgremote_drop(const char *conninfo, const char *slot, const char *publication)
{
	WalReceiverConn *conn = c360_pgremote_connect(conninfo, "c360 drop_source");

	c360_pgremote_drop_slot(conn, slot);
	if (publication != NULL)
		c360_pgremote_exec(conn, psprintf("DROP PUBLICATION IF EXISTS %s",
										  quote_identifier(publication)), 0, NULL);
	walrcv_disconnect(conn);
}
