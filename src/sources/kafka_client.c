/*-------------------------------------------------------------------------
 * kafka_client.c
 *	  What the Kafka source and the Kafka sink share: the user's librdkafka
 *	  settings, applied over ours, and a client whose threads take no signal.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include "utils/memutils.h"

#include "sources/kafka_client.h"

/*
 * Add a name/value pair to a worker's settings, kept for the worker's life (a client is
 * created again after a broker error).
 */
List *
c360_kafka_setting(List *settings, const char *name, const char *value)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	settings = lappend(lappend(settings, pstrdup(name)), pstrdup(value));
	MemoryContextSwitchTo(old);
	return settings;
}

/* Apply the settings in order; the name of the first one librdkafka refuses, else NULL. */
const char *
c360_kafka_apply_settings(rd_kafka_conf_t *conf, List *settings, char *errstr, size_t errlen)
{
	ListCell   *lc;

	for (lc = list_head(settings); lc != NULL; lc = lnext(settings, lnext(settings, lc)))
	{
		const char *name = lfirst(lc);
		const char *value = lfirst(lnext(settings, lc));

		if (rd_kafka_conf_set(conf, name, value, errstr, errlen) != RD_KAFKA_CONF_OK)
			return name;
	}
	return NULL;
}

/*
 * librdkafka's threads inherit the creating thread's signal mask: they start with every
 * signal blocked, so that Postgres's signals (SIGTERM, latch wake-ups) reach this thread.
 */
rd_kafka_t *
c360_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
	sigset_t	all;
	sigset_t	saved;
	rd_kafka_t *rk;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	rk = rd_kafka_new(type, conf, errstr, errlen);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	return rk;
}
