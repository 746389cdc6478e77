/*-------------------------------------------------------------------------
 * kafka_sink.c
 *	  The Kafka sink worker: publishes one segment's changes to a Kafka topic with
 *	  an idempotent librdkafka producer.  First the members snapshotted by
 *	  c360.create_sink (one 'enter' each), then the outbox c360.segment_changes in
 *	  seq order; the position advances only after the broker acknowledged a batch.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"


#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "core/spi.h"
#include "core/customer360.h"
#include "sources/kafka_client.h"
#include "core/shmem.h"
#include "worker.h"

#define SINK_ERROR_LEN		512
#define MAX_BACKOFF_MS		30000
#define POLL_MS				100

/*
 * The message: compact JSON with the keys in this order (json_build_object would space
 * them out, jsonb would sort them).  Every value is rendered by to_json or jsonb output.
 */
#define MESSAGE_FORMAT \
	"'{\"segment\":%s,\"customer_id\":%s,\"change\":%s,\"seq\":%s,\"at\":%s,\"profile\":%s}'"

/* One message of a batch, rendered by SQL; seq is what the header carries. */
typedef struct SinkMessage
{
	int64		seq;
	char	   *key;
	char	   *value;
} SinkMessage;

/* The batch being published: snapshot rows or outbox rows, never both. */
typedef struct SinkBatch
{
	bool		snapshot;
	int			n;
	SinkMessage *msgs;
	int64		last_seq;		/* outbox: the position once delivered */
} SinkBatch;

/* The worker's whole state: one sink, one producer. */
typedef struct KafkaSink
{
	char	   *name;
	char	   *segment;
	char	   *topic;
	List	   *conf;			/* librdkafka settings: alternating name, value */
	C360WorkerInfo *status;
	rd_kafka_t *rk;
	MemoryContext batch_cxt;
	bool		error_recorded; /* c360.sinks.last_error is set */
	char		recorded[SINK_ERROR_LEN];	/* to what, when this worker set it */
	int			backoff_ms;

	/* written by the librdkafka callbacks (served on this thread by rd_kafka_poll) */
	int			in_flight;
	int			failed;
	bool		fatal;
	bool		broker_trouble;
	char		error[SINK_ERROR_LEN];
} KafkaSink;

static KafkaSink ks;

static void run(void);
static void setup(void);
static void add_option(const char *key, const char *value);
static void producer_create(void);
static void producer_destroy(void);
static bool load_batch(SinkBatch *batch);
static int	fetch_messages(SinkBatch *batch, SPIPlanPtr plan, Datum *args);
static bool publish(SinkBatch *batch);
static void produce(SinkMessage *msg);
static bool await_delivery(void);
static void commit_batch(SinkBatch *batch);
static void prune_outbox(void);
static void retry_later(void);
static void record_error(const char *message);
static void commit(void);
static void report(const char *state, int64 position);
static void sink_gone(void) pg_attribute_noreturn();
static void sink_failed(void) pg_attribute_noreturn();
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque);
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/*
 * Entry point.  bgw_extra is "sink:<name>", the name of the status slot; the sink's own
 * name is the application_name.  An error that is not the broker's (SQL, bad options) is
 * recorded in c360.sinks.last_error and ends the worker; the launcher restarts it with
 * back-off and it carries on from the stored position.
 */
void
c360_kafka_sink_main(Datum arg)
{
	char		slot[BGW_EXTRALEN];

	memcpy(slot, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	if (strncmp(slot, "sink:", 5) != 0)
		elog(FATAL, "c360 sink worker started for \"%s\", not a sink", slot);
	ks.name = MemoryContextStrdup(TopMemoryContext, slot + 5);
	c360_worker_init(ks.name);
	ks.status = c360_worker_attach(slot);
	PG_TRY();
	{
		run();
	}
	PG_CATCH();
	{
		sink_failed();
	}
	PG_END_TRY();
	proc_exit(0);
}

/*
 * Publish batch after batch.  A batch the broker did not acknowledge entirely is published
 * again from the stored position after a back-off, for as long as it takes: the sink never
 * skips a change.
 */
static void
run(void)
{
	SinkBatch	batch;

	setup();
	for (;;)
	{
		MemoryContextReset(ks.batch_cxt);
		MemoryContextSwitchTo(ks.batch_cxt);
		CHECK_FOR_INTERRUPTS();
		if (!load_batch(&batch))
		{
			report("streaming", -1);
			if (ks.rk)
				rd_kafka_poll(ks.rk, 0);
			c360_worker_wait(c360_batch_ms);
			continue;
		}
		if (publish(&batch))
		{
			commit_batch(&batch);
			ks.backoff_ms = 0;
		}
		else
			retry_later();
	}
}

/* Read the sink's catalog entry and options, then start the producer. */
static void
setup(void)
{
	static SPIPlanPtr plan;
	Oid			types[1] = {TEXTOID};
	Datum		arg = CStringGetTextDatum(ks.name);

	ks.batch_cxt = AllocSetContextCreate(TopMemoryContext, "c360 sink batch",
										 ALLOCSET_DEFAULT_SIZES);
	c360_worker_begin("c360 sink setup");
	SPI_connect();
	c360_exec(c360_plan(&plan, "SELECT k.segment, k.last_error IS NOT NULL, e.key, e.value #>> '{}' "
						"FROM c360.sinks k LEFT JOIN LATERAL jsonb_each(k.options) e ON true "
						"WHERE k.name = $1 ORDER BY e.key", 1, types), &arg, NULL);
	if (SPI_processed == 0)
		sink_gone();
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *key = SPI_getvalue(tup, desc, 3);
		bool		isnull;

		ks.segment = MemoryContextStrdup(TopMemoryContext, SPI_getvalue(tup, desc, 1));
		ks.error_recorded = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		if (key != NULL)		/* NULL: a sink without options */
			add_option(key, SPI_getvalue(tup, desc, 4));
	}
	SPI_finish();
	c360_worker_commit();
	if (ks.topic == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sink \"%s\" has no \"topic\" option", ks.name)));
	producer_create();
	elog(LOG, "c360 sink \"%s\" publishing segment \"%s\" to topic \"%s\"",
		 ks.name, ks.segment, ks.topic);
}

/* One option of the sink: the topic, or a librdkafka setting ("properties." stripped). */
static void
add_option(const char *key, const char *value)
{
	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" of sink \"%s\" is null", key, ks.name)));
	if (strcmp(key, "topic") == 0)
		ks.topic = MemoryContextStrdup(TopMemoryContext, value);
	else if (strcmp(key, "bootstrap.servers") == 0)
		ks.conf = c360_kafka_setting(ks.conf, key, value);
	else if (strncmp(key, "properties.", 11) == 0 && key[11] != '\0')
		ks.conf = c360_kafka_setting(ks.conf, key + 11, value);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown option \"%s\" of sink \"%s\"", key, ks.name),
				 errhint("A kafka sink takes \"bootstrap.servers\", \"topic\" and "
						 "\"properties.<librdkafka setting>\".")));
}

/*
 * A new producer.  Local message timeouts are off unless the options set one: while the
 * broker is away librdkafka keeps retrying, and the idempotent producer keeps the retries
 * from writing a message twice or out of order.
 */
static void
producer_create(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	const char *bad;

	rd_kafka_conf_set(conf, "message.timeout.ms", "0", NULL, 0);
	rd_kafka_conf_set(conf, "client.id", psprintf("c360-sink-%s", ks.name), NULL, 0);
	if ((bad = c360_kafka_apply_settings(conf, ks.conf, errstr, sizeof(errstr))) != NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sink \"%s\": bad Kafka setting \"%s\": %s", ks.name, bad, errstr)));
	}
	/* last, so that no option can turn it off: order and no duplicates depend on it */
	rd_kafka_conf_set(conf, "enable.idempotence", "true", NULL, 0);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_error);

	ks.rk = c360_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (ks.rk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sink \"%s\": could not create the Kafka producer: %s", ks.name, errstr)));
}

/* Drop the producer and whatever it still holds: the batch will be published again. */
static void
producer_destroy(void)
{
	if (ks.rk == NULL)
		return;
	rd_kafka_purge(ks.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(ks.rk, 0);
	rd_kafka_destroy(ks.rk);
	ks.rk = NULL;
	ks.in_flight = 0;
}

/*
 * The next batch, in a short transaction: the snapshot rows while any are left (each an
 * 'enter' whose seq is the sink's starting position), else the outbox rows after the
 * position.  Because outbox rows commit in seq order, nothing can later appear behind a
 * seq read here.  False when there is nothing to publish.
 */
static bool
load_batch(SinkBatch *batch)
{
	static SPIPlanPtr snapshot_plan;
	static SPIPlanPtr outbox_plan;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		args[2] = {CStringGetTextDatum(ks.name), Int32GetDatum(c360_batch_size)};

	memset(batch, 0, sizeof(SinkBatch));
	c360_worker_begin("c360 sink read");
	SPI_connect();
	batch->snapshot = true;
	fetch_messages(batch, c360_plan(&snapshot_plan,
									"SELECT p.seq, s.customer_id, format(" MESSAGE_FORMAT ", "
									"to_json(k.segment), to_json(s.customer_id), to_json('enter'::text), "
									"p.seq, to_json(k.created_at), s.payload) "
									"FROM c360.sinks k JOIN c360.sink_positions p ON p.sink = k.name "
									"JOIN c360.sink_snapshot s ON s.sink = k.name "
									"WHERE k.name = $1 ORDER BY s.customer_id LIMIT $2",
									2, types), args);
	if (batch->n == 0)
	{
		batch->snapshot = false;
		fetch_messages(batch, c360_plan(&outbox_plan,
										"SELECT c.seq, c.customer_id, format(" MESSAGE_FORMAT ", "
										"to_json(c.segment), to_json(c.customer_id), to_json(c.change), "
										"c.seq, to_json(c.at), c.payload) "
										"FROM c360.sinks k JOIN c360.sink_positions p ON p.sink = k.name "
										"JOIN c360.segment_changes c ON c.segment = k.segment AND c.seq > p.seq "
										"WHERE k.name = $1 ORDER BY c.seq LIMIT $2",
										2, types), args);
	}
	SPI_finish();
	commit();
	if (batch->n == 0)
		return false;

	/*
	 * Publish only what a crash cannot take back.  The rows read were committed by
	 * transactions whose commit records end before the current insert position; with
	 * synchronous_commit = off they may still be in WAL buffers, and a crash would undo
	 * the changes after the broker had them, then hand out their seq numbers again.
	 * Walsenders likewise send only flushed WAL.  Usually flushed already: then free.
	 */
	XLogFlush(GetXLogInsertRecPtr());
	report(batch->snapshot ? "snapshot" : "streaming", batch->msgs[0].seq);
	return true;
}

/* Run a batch query (seq, key, value) and keep its rows in the batch context. */
static int
fetch_messages(SinkBatch *batch, SPIPlanPtr plan, Datum *args)
{
	c360_exec(plan, args, NULL);
	batch->n = SPI_processed;
	batch->msgs = MemoryContextAlloc(ks.batch_cxt, sizeof(SinkMessage) * Max(batch->n, 1));
	for (int i = 0; i < batch->n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		batch->msgs[i].seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		batch->msgs[i].key = MemoryContextStrdup(ks.batch_cxt, SPI_getvalue(tup, desc, 2));
		batch->msgs[i].value = MemoryContextStrdup(ks.batch_cxt, SPI_getvalue(tup, desc, 3));
		batch->last_seq = batch->msgs[i].seq;
	}
	return batch->n;
}

/* Hand every message of the batch to the producer and wait for all delivery reports. */
static bool
publish(SinkBatch *batch)
{
	if (ks.rk == NULL)
		producer_create();
	ks.failed = 0;
	ks.fatal = false;
	ks.broker_trouble = false;
	ks.error[0] = '\0';
	pgstat_report_activity(STATE_RUNNING, "c360 sink publish");
	for (int i = 0; i < batch->n && !ks.fatal; i++)
		produce(&batch->msgs[i]);
	return await_delivery();
}

/* Produce one message (key customer_id, header "seq"), waiting while the queue is full. */
static void
produce(SinkMessage *msg)
{
	char		seq[32];
	rd_kafka_resp_err_t err;

	snprintf(seq, sizeof(seq), INT64_FORMAT, msg->seq);
	for (;;)
	{
		err = rd_kafka_producev(ks.rk,
								RD_KAFKA_V_TOPIC(ks.topic),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_KEY(msg->key, strlen(msg->key)),
								RD_KAFKA_V_VALUE(msg->value, strlen(msg->value)),
								RD_KAFKA_V_HEADER("seq", seq, -1),
								RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		rd_kafka_poll(ks.rk, POLL_MS);
		CHECK_FOR_INTERRUPTS();
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		/* not queued: the batch cannot be delivered whole, so it is published again */
		ks.fatal = true;
		snprintf(ks.error, sizeof(ks.error), "could not produce to topic \"%s\": %s",
				 ks.topic, rd_kafka_err2str(err));
		return;
	}
	ks.in_flight++;
}

/*
 * Serve delivery reports until every message of the batch has one.  While the broker is
 * away this waits (librdkafka retries), and says why in c360.sinks.last_error.
 */
static bool
await_delivery(void)
{
	while (ks.in_flight > 0 && !ks.fatal)
	{
		rd_kafka_poll(ks.rk, POLL_MS);
		if (!PostmasterIsAlive())
			proc_exit(1);
		c360_worker_interrupts();
		if (ks.broker_trouble && ks.in_flight > 0)
		{
			ks.broker_trouble = false;
			report("retrying", -1);
			record_error(ks.error);
		}
	}
	return ks.failed == 0 && !ks.fatal;
}

/*
 * The batch is on the broker: advance the position (or drop the delivered snapshot rows),
 * clear a recorded error, and prune the outbox, all in one transaction.  A crash before
 * this commits publishes the batch again: at-least-once.
 */
static void
commit_batch(SinkBatch *batch)
{
	static SPIPlanPtr position_plan;
	static SPIPlanPtr snapshot_plan;
	static SPIPlanPtr clear_plan;
	Oid			position_types[2] = {TEXTOID, INT8OID};
	Oid			snapshot_types[2] = {TEXTOID, TEXTARRAYOID};
	Oid			clear_types[1] = {TEXTOID};
	Datum		args[2] = {CStringGetTextDatum(ks.name), Int64GetDatum(batch->last_seq)};

	c360_worker_begin("c360 sink commit");
	SPI_connect();
	if (batch->snapshot)
	{
		List	   *ids = NIL;

		for (int i = 0; i < batch->n; i++)
			ids = lappend(ids, batch->msgs[i].key);
		args[1] = c360_text_array(ids);
		c360_exec(c360_plan(&snapshot_plan, "DELETE FROM c360.sink_snapshot "
							"WHERE sink = $1 AND customer_id = ANY($2)", 2, snapshot_types),
				  args, NULL);
	}
	else
	{
		c360_exec(c360_plan(&position_plan, "UPDATE c360.sink_positions SET seq = $2 "
							"WHERE sink = $1", 2, position_types), args, NULL);
		if (SPI_processed != 1)
			sink_gone();
		prune_outbox();
	}
	if (ks.error_recorded)
		c360_exec(c360_plan(&clear_plan, "UPDATE c360.sinks SET last_error = NULL WHERE name = $1",
							1, clear_types), args, NULL);
	ks.error_recorded = false;
	SPI_finish();
	commit();
	report(batch->snapshot ? "snapshot" : "streaming", batch->snapshot ? -1 : batch->last_seq);
}

/*
 * Delete the segment's outbox rows every one of its sinks has passed.  A sink being
 * created meanwhile cannot need them: c360.create_sink holds the clock lock, so no outbox
 * row commits between its position and its commit, and its position is the newest seq.
 */
static void
prune_outbox(void)
{
	static SPIPlanPtr plan;
	Oid			types[1] = {TEXTOID};
	Datum		arg = CStringGetTextDatum(ks.segment);

	c360_exec(c360_plan(&plan, "DELETE FROM c360.segment_changes WHERE segment = $1 AND seq <= "
						"(SELECT min(p.seq) FROM c360.sinks k "
						"JOIN c360.sink_positions p ON p.sink = k.name WHERE k.segment = $1)",
						1, types), &arg, NULL);
}

/*
 * A batch was not acknowledged whole: say why, start over with a new producer (the old
 * one's idempotence state is spent), and wait 1 s doubling up to 30 s first.
 */
static void
retry_later(void)
{
	char	   *why = pstrdup(ks.error[0] ? ks.error : "delivery failed");

	producer_destroy();
	ks.backoff_ms = Min(Max(ks.backoff_ms * 2, 1000), MAX_BACKOFF_MS);
	elog(LOG, "c360 sink \"%s\": %s; publishing again from the stored position in %d ms",
		 ks.name, why, ks.backoff_ms);
	report("retrying", -1);
	record_error(why);
	c360_worker_wait(ks.backoff_ms);
}

/* Set c360.sinks.last_error in a transaction of its own. */
static void
record_error(const char *message)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2] = {CStringGetTextDatum(ks.name), CStringGetTextDatum(message)};

	/* librdkafka repeats itself on every reconnection attempt: write only news */
	if (ks.error_recorded && strcmp(ks.recorded, message) == 0)
		return;
	c360_worker_begin("c360 sink error");
	SPI_connect();
	c360_exec(c360_plan(&plan, "UPDATE c360.sinks SET last_error = $2 WHERE name = $1", 2, types),
			  args, NULL);
	SPI_finish();
	commit();
	ks.error_recorded = true;
	strlcpy(ks.recorded, message, sizeof(ks.recorded));
}

/*
 * End a transaction of the publishing loop.  Commit leaves CurrentMemoryContext at
 * TopMemoryContext; back to the batch context, so that nothing the loop allocates
 * outlives its batch.
 */
static void
commit(void)
{
	c360_worker_commit();
	MemoryContextSwitchTo(ks.batch_cxt);
}

/* Report the state and, when position >= 0, the position in the status slot. */
static void
report(const char *state, int64 position)
{
	char		pos[32];

	snprintf(pos, sizeof(pos), INT64_FORMAT, position);
	c360_worker_report(ks.status, state, position >= 0 ? pos : NULL);
}

/* The sink was dropped under us: nothing to publish, not a failure. */
static void
sink_gone(void)
{
	elog(LOG, "c360 sink \"%s\" stopping: it no longer exists", ks.name);
	proc_exit(0);
}

/*
 * An error that is not the broker's: record it and exit non-zero, so that the launcher
 * restarts the worker with back-off from the stored position.
 */
static void
sink_failed(void)
{
	ErrorData  *edata = c360_worker_take_error();
	Datum		args[2];
	Oid			types[2] = {TEXTOID, TEXTOID};

	args[0] = CStringGetTextDatum(ks.name);
	args[1] = CStringGetTextDatum(edata->message);
	c360_worker_begin("c360 sink error");
	SPI_connect();
	if (SPI_execute_with_args("UPDATE c360.sinks SET last_error = $2 WHERE name = $1",
							  2, types, args, NULL, false, 0) < 0)
		elog(WARNING, "could not record the error of sink \"%s\"", ks.name);
	SPI_finish();
	c360_worker_commit();
	elog(LOG, "c360 sink \"%s\" failed: %s", ks.name, edata->message);
	proc_exit(1);
}

/* Delivery report: one message acknowledged, or failed for good. */
static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	ks.in_flight--;
	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (ks.failed++ == 0)
		snprintf(ks.error, sizeof(ks.error), "delivery to topic \"%s\" failed: %s",
				 ks.topic, rd_kafka_err2str(msg->err));
}

/*
 * librdkafka's errors are mostly transient (broker down, connection refused) and it
 * retries them itself; remember the reason for last_error.  A fatal error ends the
 * producer: the batch is published again with a new one.
 */
static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		char		fatal[SINK_ERROR_LEN];

		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		snprintf(ks.error, sizeof(ks.error), "Kafka producer failed: %s", fatal);
		ks.fatal = true;
		return;
	}
	snprintf(ks.error, sizeof(ks.error), "Kafka: %s", reason);
	ks.broker_trouble = true;
}
