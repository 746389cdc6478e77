/*-------------------------------------------------------------------------
 * pgremote.h
 *	  Talking to a source PostgreSQL server over a logical replication connection
 *	  (libpqwalreceiver, as core's apply workers do).
 *-------------------------------------------------------------------------
 */
#ifndef C360_PGREMOTE_H
#define C360_PGREMOTE_H

#include "postgres.h"
#include "replication/walreceiver.h"

extern WalReceiverConn *c360_pgremote_connect(const char *conninfo, const char *appname);
extern WalRcvExecResult *c360_pgremote_exec(WalReceiverConn *conn, const char *sql,
											int nret, const Oid *types);
extern char *c360_pgremote_value(WalRcvExecResult *res, int col);
extern char *c360_pgremote_slot_status(WalReceiverConn *conn, const char *slot);
extern void c360_pgremote_drop_slot(WalReceiverConn *conn, const char *slot);
extern void c360_pgremote_drop(const char *conninfo, const char *slot, const char *publication);

#endif							/* C360_PGREMOTE_H */
