/*-------------------------------------------------------------------------
 * worker.h
 *	  What the customer360 background workers share: their entry points and the
 *	  transaction sandwich around one unit of work.
 *-------------------------------------------------------------------------
 */
#ifndef C360_WORKER_H
#define C360_WORKER_H

#include "postgres.h"

extern PGDLLEXPORT void c360_launcher_main(Datum arg);
extern PGDLLEXPORT void c360_ticker_main(Datum arg);
extern PGDLLEXPORT void c360_pg_source_main(Datum arg);
extern PGDLLEXPORT void c360_mysql_source_main(Datum arg);
extern PGDLLEXPORT void c360_kafka_source_main(Datum arg);
extern PGDLLEXPORT void c360_kafka_sink_main(Datum arg);

extern void c360_worker_init(const char *appname);
extern void c360_worker_begin(const char *activity);
extern void c360_worker_commit(void);
extern void c360_worker_wait(long timeout_ms);
extern void c360_worker_wait_socket(pgsocket fd, long timeout_ms);
extern void c360_worker_interrupts(void);
extern ErrorData *c360_worker_take_error(void);

#endif							/* C360_WORKER_H */
