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

/* Whether this build has a worker for each source kind (create_source refuses the others). */
extern const bool c360_mysql_source_available;
extern const bool c360_kafka_source_available;
extern const bool c360_kafka_sink_available;

extern void c360_worker_init(const char *appname);
extern void c360_worker_begin(const char *activity);
extern void c360_worker_commit(void);
extern bool c360_worker_wait(long timeout_ms);
extern ErrorData *c360_worker_take_error(void);

/* Source workers: run(name) under the shared failure handling. */
typedef void (*c360_source_run) (const char *name);
extern void c360_source_worker_main(c360_source_run run) pg_attribute_noreturn();
extern struct C360WorkerInfo *c360_source_worker_status(void);
extern struct C360Source *c360_source_worker_load(const char *name);
extern void c360_source_worker_check_mapping(struct C360Source *src);
extern void c360_source_error(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

#endif							/* C360_WORKER_H */
