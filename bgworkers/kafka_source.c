/*-------------------------------------------------------------------------
 * kafka_source.c
 *	  The Kafka source worker: reads one topic with librdkafka, assigning its
 *	  partitions itself (no consumer group), decodes each JSON message (in the
 *	  source's format) into a change, and applies batches through the one apply path.
 *	  The next offset of every partition is stored in c360.source_positions in the
 *	  same local transaction as the batch, and the consumer starts from there.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "core/spi.h"
#include "core/customer360.h"
#include "sources/kafka_client.h"
#include "decode/debezium_decode.h"
#include "decode/kafka_decode.h"
#include "decode/segment_decode.h"
#include "core/shmem.h"
#include "sources/source.h"
#include "source_worker.h"
#include "worker.h"

#define KAFKA_TIMEOUT_MS		10000	/* metadata and watermark look-ups */
#define LAG_REFRESH_MS			2000
#define PARTITION_REFRESH_MS	30000
#define TROUBLE_REPORT_MS		3000	/* broker trouble shorter than this is not news */
#define READ_AT_ONCE			1000

/* One partition of the topic this source reads. */
typedef struct KafkaPartition
{
	int32		id;
	int64		next;			/* next offset to read; -1: from the earliest retained */
	int64		committed;		/* next offset as committed locally; -1: none yet */
} KafkaPartition;

/* The adapter's state: one topic, one consumer, its partitions' positions. */
typedef struct KafkaSource
{
	C360SourceWorker *w;		/* the skeleton's: source, status, batch */
	C360SourceTable *table;		/* the topic's mapping */
	char	   *topic;
	char	   *startup;
	List	   *only_partitions;	/* the partitions option (int list); NIL: all */
	List	   *conf;			/* librdkafka settings: alternating name, value */
	size_t		max_bytes;
	C360KafkaFormat format;		/* how messages are decoded */
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	rd_kafka_queue_t *queue;
	int			wake_fd[2];		/* librdkafka writes to [1] when the queue fills */
	int			nparts;
	KafkaPartition *parts;
	int64		skipped;		/* messages of the pending batch skipped by design */
	MemoryContext source_cxt;	/* options */
	TimestampTz lag_refreshed;
	TimestampTz partitions_refreshed;
	bool		trouble_recorded;	/* last_error holds broker trouble we recorded */
	TimestampTz trouble_probed;

	/* written by librdkafka's callbacks, which run on this thread inside its calls */
	char		trouble[512];
	TimestampTz trouble_since;
	bool		fatal;
} KafkaSource;

static KafkaSource ks;

static void connect_source(C360SourceWorker *w);
static void read_options(void);
static void read_option(const char *key, JsonbValue *v);
static void read_partitions(JsonbValue *v);
static void read_format(JsonbValue *v);
static char *option_text(const char *key, JsonbValue *v);
static void check_format(void);
static void find_mapping(void);
static void consumer_create(void);
static rd_kafka_conf_t *consumer_conf(void);
static void discover_partitions(void);
static bool wanted_partition(int32 id);
static KafkaPartition *find_partition(int32 id);
static void load_positions(void);
static char *first_start(C360SourceWorker *w, List *tables, bool initial);
static void first_start_done(C360SourceWorker *w);
static void resume(C360SourceWorker *w);
static void assign(bool reassign);
static void stream(C360SourceWorker *w);
static bool read_messages(C360SourceWorker *w);
static void handle_message(rd_kafka_message_t *m);
static void add_message(KafkaPartition *p, rd_kafka_message_t *m);
static C360KafkaOutcome decode_message(rd_kafka_message_t *m, C360Change **ch, char **error);
static void consumer_error(rd_kafka_message_t *m);
static void offset_out_of_range(int32 partition);
static char *out_of_range_message(KafkaPartition *p, int64 low, int64 high);
static void save_positions(C360SourceWorker *w);
static void save_skipped(C360SourceWorker *w);
static void committed(C360SourceWorker *w);
static void housekeeping(C360SourceWorker *w);
static pgsocket wake_socket(C360SourceWorker *w);
static void refresh_lag(bool force);
static void refresh_partitions(void);
static void check_trouble(void);
static void set_phase_streaming(void);
static char *position(C360SourceWorker *w);
static void error_context(C360SourceWorker *w, StringInfo buf);
static void close_source(C360SourceWorker *w);

static const C360SourceAdapter adapter = {
	.kind = "Kafka",
	.connect = connect_source,
	.snapshot = first_start,
	.snapshot_done = first_start_done,
	.resume = resume,
	.stream = stream,
	.read = read_messages,
	.save_position = save_positions,
	.committed = committed,
	.position = position,
	.housekeeping = housekeeping,
	.socket = wake_socket,
	.context = error_context,
	.close = close_source,
};
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

void
c360_kafka_source_main(Datum arg)
{
	c360_source_worker_run(&adapter);
}

/* The source's options and topic, the consumer, the partitions and their positions. */
static void
connect_source(C360SourceWorker *w)
{
	ks.w = w;
	ks.source_cxt = AllocSetContextCreate(TopMemoryContext, "c360 source", ALLOCSET_DEFAULT_SIZES);
	ks.wake_fd[0] = ks.wake_fd[1] = -1;
	ks.max_bytes = C360_KAFKA_MAX_MESSAGE_BYTES;
	ks.startup = "latest";
	find_mapping();
	read_options();
	check_format();

	/* jansson hands out UTF-8, which only these databases store as it is */
	if (GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII)
		c360_source_error(ERRCODE_FEATURE_NOT_SUPPORTED,
						  "the Kafka source needs a database in encoding UTF8, not %s",
						  GetDatabaseEncodingName());
	elog(LOG, "c360 source \"%s\" reading topic \"%s\" into input \"%s\"",
		 w->src->name, ks.topic, c360_inputs[ks.table->input].name);
	consumer_create();
	discover_partitions();
	load_positions();
}

/* The source reads one topic, its "topic" option, which its mapping must name. */
static void
find_mapping(void)
{
	C360Source *src = ks.w->src;
	MemoryContext old = MemoryContextSwitchTo(ks.source_cxt);

	ks.topic = c360_source_option(src, "topic", NULL);
	MemoryContextSwitchTo(old);
	if (ks.topic == NULL)
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "source \"%s\" has no \"topic\" option", src->name);
	ks.table = c360_source_table(src, ks.topic);
	if (ks.table == NULL)
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "source \"%s\" reads topic \"%s\", but its mappings name another "
						  "topic; map this one with c360.map_table('%s', '%s', '<input>')",
						  src->name, ks.topic, src->name, ks.topic);
}

/* Walk the options object: the source's own options and the librdkafka properties. */
static void
read_options(void)
{
	MemoryContext old = MemoryContextSwitchTo(ks.source_cxt);
	JsonbIterator *it = JsonbIteratorInit(&ks.w->src->options->root);
	JsonbIteratorToken tok;
	JsonbValue	v;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		read_option(key, &v);
	}
	MemoryContextSwitchTo(old);
}

static void
read_option(const char *key, JsonbValue *v)
{
	if (strcmp(key, "bootstrap.servers") == 0)
		ks.conf = c360_kafka_setting(ks.conf, key, option_text(key, v));
	else if (strcmp(key, "topic") == 0)
		return;
	else if (strcmp(key, "startup") == 0)
		ks.startup = option_text(key, v);
	else if (strcmp(key, "format") == 0)
		read_format(v);
	else if (strncmp(key, "properties.", 11) == 0 && key[11] != '\0')
		ks.conf = c360_kafka_setting(ks.conf, key + 11, option_text(key, v));
	else if (strcmp(key, "max_message_bytes") == 0)
	{
		int64		n = v->type == jbvNumeric ? pg_strtoint64(option_text(key, v)) : 0;

		if (n < 1)
			c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
							  "option \"max_message_bytes\" of source \"%s\" must be a positive integer",
							  ks.w->src->name);
		ks.max_bytes = (size_t) n;
	}
	else if (strcmp(key, "partitions") == 0)
		read_partitions(v);
	else
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "unknown option \"%s\" of kafka source \"%s\"; the options are "
						  "bootstrap.servers, topic, startup, format, partitions, max_message_bytes and "
						  "properties.<librdkafka setting>", key, ks.w->src->name);
}

/*
 * A format other than json may skip a message by design (a Debezium tombstone, a Segment
 * group call): source_status counts those in a column of version 0.6.  Format segment
 * also feeds behavioral_events only (and identity_graph, from identify and alias calls),
 * and its mapping may place only some columns.
 */
static void
check_format(void)
{
	C360Source *src = ks.w->src;
	char	   *error;
	bool		counted;

	if (ks.format == C360_KAFKA_JSON)
		return;
	c360_worker_begin("c360 source setup");
	counted = get_attnum(get_relname_relid("source_progress", get_namespace_oid("c360", false)),
						 "skipped_messages") != InvalidAttrNumber;
	c360_worker_commit();
	if (!counted)
		c360_source_error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
						  "format %s of source \"%s\" needs customer360 0.6: run ALTER "
						  "EXTENSION customer360 UPDATE, then c360.resume_source('%s')",
						  ks.format == C360_KAFKA_SEGMENT ? "segment" : "debezium",
						  src->name, src->name);
	if (ks.format != C360_KAFKA_SEGMENT)
		return;
	if (ks.table->input != C360_BEHAVIORAL_EVENTS)
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "source \"%s\" reads Segment calls (format segment), which feed input "
						  "behavioral_events, but topic \"%s\" is mapped to input \"%s\"",
						  src->name, ks.topic, c360_inputs[ks.table->input].name);
	if (!c360_segment_check_paths(ks.table->map, &error))
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE, "source \"%s\", topic \"%s\": %s",
						  src->name, ks.topic, error);
}

/* The format option: how the topic's messages are decoded. */
static void
read_format(JsonbValue *v)
{
	char	   *name = option_text("format", v);

	if (!c360_kafka_format_by_name(name, &ks.format))
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "option \"format\" of kafka source \"%s\" must be " C360_KAFKA_FORMAT_NAMES
						  ", not \"%s\"", ks.w->src->name, name);
}

/* The partitions option: a non-empty array of partition numbers. */
static void
read_partitions(JsonbValue *v)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	e;

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
		JsonContainerSize(v->val.binary.data) == 0)
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "option \"partitions\" of source \"%s\" must be a non-empty array of "
						  "partition numbers", ks.w->src->name);
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		char	   *text;
		char	   *end;
		long		id;

		if (tok != WJB_ELEM)
			continue;
		text = e.type == jbvNumeric ? option_text("partitions", &e) : "";
		id = strtol(text, &end, 10);
		if (*text == '\0' || *end != '\0' || id < 0 || id > PG_INT32_MAX)
			c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
							  "option \"partitions\" of source \"%s\" must hold partition numbers, "
							  "not \"%s\"", ks.w->src->name, text);
		ks.only_partitions = lappend_int(ks.only_partitions, (int) id);
	}
}

/* An option as text: strings as they are, numbers and booleans as JSON writes them. */
static char *
option_text(const char *key, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
							  "option \"%s\" of source \"%s\" must be a string", key, ks.w->src->name);
	}
}

/*
 * The consumer.  Its logs and errors come through the consumer queue and are served on
 * this thread; librdkafka writes to a pipe when the queue fills, so that the wait can
 * watch the latch and the queue at once.
 */
static void
consumer_create(void)
{
	rd_kafka_conf_t *conf = consumer_conf();
	char		errstr[512];

	ks.rk = c360_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (ks.rk == NULL)
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "source \"%s\": could not create the Kafka consumer: %s", ks.w->src->name, errstr);

	rd_kafka_set_log_queue(ks.rk, NULL);
	rd_kafka_poll_set_consumer(ks.rk);
	ks.queue = rd_kafka_queue_get_consumer(ks.rk);
	ks.rkt = rd_kafka_topic_new(ks.rk, ks.topic, NULL);
	if (pipe(ks.wake_fd) != 0 ||
		fcntl(ks.wake_fd[0], F_SETFL, O_NONBLOCK) != 0 ||
		fcntl(ks.wake_fd[1], F_SETFL, O_NONBLOCK) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create a pipe for the Kafka consumer: %m")));
	rd_kafka_queue_io_event_enable(ks.queue, ks.wake_fd[1], "k", 1);
}

/*
 * The consumer's settings: ours, then the source's properties, then what no property may
 * change.  Offsets live in our table, so librdkafka commits and stores none, and an offset
 * the broker no longer has comes as an error event rather than a silent reset.
 */
static rd_kafka_conf_t *
consumer_conf(void)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	const char *bad;

	rd_kafka_conf_set(conf, "client.id", psprintf("c360-source-%s", ks.w->src->name), NULL, 0);
	/* rd_kafka_assign needs one; no group is joined and nothing is committed to it */
	rd_kafka_conf_set(conf, "group.id", psprintf("c360-%s", ks.w->src->name), NULL, 0);
	rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "2000", NULL, 0);
	/*
	 * Prefetch a few batches, not librdkafka's 100,000 messages per partition.  Once the
	 * queue holds either much, librdkafka (before 2.1) waits a second before it fetches
	 * again: the bytes must hold more than a second's work, or big messages starve the
	 * worker.  20,000 Debezium messages with their schemas are about 48 MB.
	 */
	rd_kafka_conf_set(conf, "queued.min.messages", "20000", NULL, 0);
	rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "65536", NULL, 0);
	if ((bad = c360_kafka_apply_settings(conf, ks.conf, errstr, sizeof(errstr))) != NULL)
	{
		rd_kafka_conf_destroy(conf);
		c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
						  "source \"%s\": bad Kafka setting \"%s\": %s", ks.w->src->name, bad, errstr);
	}
	rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
	rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", NULL, 0);
	rd_kafka_conf_set(conf, "auto.offset.reset", "error", NULL, 0);
	rd_kafka_conf_set(conf, "enable.partition.eof", "false", NULL, 0);
	rd_kafka_conf_set(conf, "log.queue", "true", NULL, 0);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	return conf;
}

/* The topic's partitions (those of the partitions option, if set), from the broker. */
static void
discover_partitions(void)
{
	const struct rd_kafka_metadata *md;
	const rd_kafka_metadata_topic_t *t;
	rd_kafka_resp_err_t err;
	ListCell   *lc;

	err = rd_kafka_metadata(ks.rk, 0, ks.rkt, &md, KAFKA_TIMEOUT_MS);
	CHECK_FOR_INTERRUPTS();
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the metadata of topic \"%s\": %s", ks.topic, rd_kafka_err2str(err))));
	t = &md->topics[0];
	if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partition_cnt == 0)
	{
		char	   *why = pstrdup(rd_kafka_err2str(t->err));

		rd_kafka_metadata_destroy(md);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" is not available: %s", ks.topic, why),
				 errhint("Create the topic; the source retries.")));
	}

	ks.parts = MemoryContextAllocZero(TopMemoryContext, sizeof(KafkaPartition) * t->partition_cnt);
	ks.nparts = 0;
	for (int i = 0; i < t->partition_cnt; i++)
	{
		if (!wanted_partition(t->partitions[i].id))
			continue;
		ks.parts[ks.nparts].id = t->partitions[i].id;
		ks.parts[ks.nparts].next = -1;
		ks.parts[ks.nparts].committed = -1;
		ks.nparts++;
	}
	rd_kafka_metadata_destroy(md);

	foreach(lc, ks.only_partitions)
		if (find_partition(lfirst_int(lc)) == NULL)
			c360_source_error(ERRCODE_INVALID_PARAMETER_VALUE,
							  "option \"partitions\" of source \"%s\" names partition %d, which topic "
							  "\"%s\" does not have", ks.w->src->name, lfirst_int(lc), ks.topic);
	ks.partitions_refreshed = GetCurrentTimestamp();
}

static bool
wanted_partition(int32 id)
{
	return ks.only_partitions == NIL || list_member_int(ks.only_partitions, id);
}

static KafkaPartition *
find_partition(int32 id)
{
	for (int i = 0; i < ks.nparts; i++)
		if (ks.parts[i].id == id)
			return &ks.parts[i];
	return NULL;
}

/* The next offsets committed with the data, for the partitions this source reads. */
static void
load_positions(void)
{
	ListCell   *lc;

	foreach(lc, ks.w->src->positions)
	{
		C360SourcePosition *stored = lfirst(lc);
		char	   *end;
		long		id = strtol(stored->part, &end, 10);
		long long	offset;
		KafkaPartition *p;

		if (*end != '\0' || (p = find_partition((int32) id)) == NULL)
			continue;			/* a partition this source does not read (any more) */
		offset = strtoll(stored->position, &end, 10);
		if (*end != '\0' || offset < 0)
			c360_source_error(ERRCODE_INVALID_TEXT_REPRESENTATION,
							  "stored position \"%s\" of partition %s of source \"%s\" is not an offset",
							  stored->position, stored->part, ks.w->src->name);
		p->next = p->committed = offset;
	}
}

/*
 * The very first start, in the skeleton's snapshot transaction: there is nothing to copy.
 * With startup 'latest' the current end of every partition is stored as its position
 * before anything is read, so that a restart goes on from there and never skips what was
 * produced while the worker was down.  Either way the source leaves phase 'snapshot':
 * from now on a partition without a position (one added to the topic later) is read from
 * its beginning.
 */
static char *
first_start(C360SourceWorker *w, List *tables, bool initial)
{
	bool		latest = strcmp(ks.startup, "latest") == 0;

	for (int i = 0; initial && latest && i < ks.nparts; i++)
	{
		KafkaPartition *p = &ks.parts[i];
		int64_t		low;
		int64_t		high;
		rd_kafka_resp_err_t err;

		if (p->committed >= 0)
			continue;
		err = rd_kafka_query_watermark_offsets(ks.rk, ks.topic, p->id, &low, &high, KAFKA_TIMEOUT_MS);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not look up the end of partition %d of topic \"%s\": %s",
							p->id, ks.topic, rd_kafka_err2str(err))));
		c360_source_save_position(w->src, psprintf("%d", p->id), psprintf(INT64_FORMAT, (int64) high));
		p->next = p->committed = high;
	}
	elog(LOG, "c360 source \"%s\" first start: reading topic \"%s\" from its %s",
		 w->src->name, ks.topic, latest ? "end" : "beginning");
	return NULL;
}

/*
 * The end offsets just stored must survive a crash before anything is read: with
 * synchronous_commit = off a lost first start would run again and store later ends,
 * skipping what was produced in between.
 */
static void
first_start_done(C360SourceWorker *w)
{
	XLogFlush(XactLastCommitEnd);
}

/* The positions were loaded with the partitions. */
static void
resume(C360SourceWorker *w)
{
}

/*
 * Hand librdkafka the exact offsets to read from: assigning at the beginning and seeking
 * afterwards would race with the first fetch.  A new assignment replaces the old one;
 * messages fetched for the old one are dropped by handle_message if they come anyway.
 */
static void
assign(bool reassign)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(ks.nparts);
	rd_kafka_resp_err_t err;

	for (int i = 0; i < ks.nparts; i++)
		rd_kafka_topic_partition_list_add(list, ks.topic, ks.parts[i].id)->offset =
			ks.parts[i].next >= 0 ? ks.parts[i].next : RD_KAFKA_OFFSET_BEGINNING;
	if (reassign)
		(void) rd_kafka_assign(ks.rk, NULL);
	err = rd_kafka_assign(ks.rk, list);
	rd_kafka_topic_partition_list_destroy(list);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not assign the partitions of topic \"%s\": %s", ks.topic,
						rd_kafka_err2str(err))));
	c360_source_worker_report(ks.w, "streaming");
}

/* Read from the committed positions. */
static void
stream(C360SourceWorker *w)
{
	assign(false);
	refresh_lag(true);
}

/*
 * Take what the consumer queue holds, up to the end of the batch; false when it is empty
 * (librdkafka writes to the wake pipe when it fills again).
 */
static bool
read_messages(C360SourceWorker *w)
{
	rd_kafka_message_t *msgs[READ_AT_ONCE];
	char		buf[64];

	while (read(ks.wake_fd[0], buf, sizeof(buf)) > 0)
		;
	if (ks.fatal)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the Kafka consumer failed: %s", ks.trouble)));
	for (;;)
	{
		size_t		want = Min(READ_AT_ONCE, Max(c360_batch_size - w->units, 1));
		ssize_t		n = rd_kafka_consume_batch_queue(ks.queue, 0, msgs, want);

		if (n < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not read from the Kafka consumer: %s",
							rd_kafka_err2str(rd_kafka_last_error()))));
		for (ssize_t i = 0; i < n; i++)
		{
			handle_message(msgs[i]);
			rd_kafka_message_destroy(msgs[i]);
		}
		if (n == 0)
			return false;
		if (c360_source_worker_batch_due(w))
			return true;
	}
}

static void
handle_message(rd_kafka_message_t *m)
{
	KafkaPartition *p;

	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		consumer_error(m);
		return;
	}
	p = find_partition(m->partition);

	/*
	 * Below the next offset: fetched for an assignment since replaced, or already in the
	 * batch.  Applying it would apply it twice.
	 */
	if (p == NULL || m->offset < p->next)
		return;
	add_message(p, m);
}

/*
 * Decode one message into the batch (a change of any input), skip it (a Debezium
 * tombstone, a Segment call that carries no change: counted), or keep it for the dead
 * letters.  Either way it is consumed: the next offset moves past it.
 */
static void
add_message(KafkaPartition *p, rd_kafka_message_t *m)
{
	MemoryContext old = MemoryContextSwitchTo(ks.w->batch_cxt);
	char	   *position = psprintf("%s[%d]@" INT64_FORMAT, ks.topic, p->id, (int64) m->offset);
	C360Change *ch;
	char	   *error;
	int64_t		ms = rd_kafka_message_timestamp(m, NULL);

	switch (decode_message(m, &ch, &error))
	{
		case C360_KAFKA_CHANGE:
			ch->position = position;
			c360_apply_add(ks.w->batch, ch);
			break;
		case C360_KAFKA_SKIP:
			ks.skipped++;
			break;
		case C360_KAFKA_DEAD_LETTER:
			c360_source_worker_dead_letter(ks.w, position,
										   c360_kafka_payload_text(m->payload, m->len, ks.max_bytes),
										   error);
			break;
	}
	MemoryContextSwitchTo(old);

	p->next = m->offset + 1;
	c360_source_worker_unit_end(ks.w, ms <= 0 ? 0 : (TimestampTz) ms * 1000 -
								(TimestampTz) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
}

/* The message in the source's format. */
static C360KafkaOutcome
decode_message(rd_kafka_message_t *m, C360Change **ch, char **error)
{
	switch (ks.format)
	{
		case C360_KAFKA_DEBEZIUM:
			return c360_debezium_decode(ks.table->input, m->key, m->key_len, m->payload, m->len,
										ks.max_bytes, ks.table->map, ch, error);
		case C360_KAFKA_SEGMENT:
			return c360_segment_decode(m->payload, m->len, ks.max_bytes, ks.table->map, ch, error);
		case C360_KAFKA_JSON:
			break;
	}
	return c360_kafka_decode(ks.table->input, m->key, m->key_len, m->payload, m->len,
							 ks.max_bytes, ks.table->map, ch, error) ?
		C360_KAFKA_CHANGE : C360_KAFKA_DEAD_LETTER;
}

/* An error event of the consumer queue. */
static void
consumer_error(rd_kafka_message_t *m)
{
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return;
	if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && m->rkt != NULL)
	{
		offset_out_of_range(m->partition);
		return;
	}
	/* librdkafka retries the rest itself; say so if it lasts */
	on_error(ks.rk, m->err, rd_kafka_message_errstr(m), NULL);
}

/*
 * The broker does not have the offset this source was to read next: retention deleted
 * messages before they were read, or the topic was recreated.  Nothing can bring those
 * messages back; go on from the earliest offset the broker has, store it, and say what
 * was lost in last_error and the log.
 */
static void
offset_out_of_range(int32 partition)
{
	KafkaPartition *p = find_partition(partition);
	int64_t		low;
	int64_t		high;
	rd_kafka_resp_err_t err;
	char	   *message;

	if (p == NULL)
		return;
	/* the broker just answered the fetch, so this does not wait for long */
	err = rd_kafka_query_watermark_offsets(ks.rk, ks.topic, p->id, &low, &high, KAFKA_TIMEOUT_MS);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("offset " INT64_FORMAT " of partition %d of topic \"%s\" is out of range, and "
						"its range could not be looked up: %s", p->next, p->id, ks.topic,
						rd_kafka_err2str(err))));
	if (p->next >= low && p->next <= high)
	{
		/* in range again (a leader change): read on from where we were */
		assign(true);
		return;
	}
	message = out_of_range_message(p, low, high);
	c360_source_worker_flush();
	p->next = low;
	c360_worker_begin("c360 source offset reset");
	c360_source_save_position(ks.w->src, psprintf("%d", p->id), psprintf(INT64_FORMAT, (int64) low));
	c360_worker_commit();
	p->committed = low;
	c360_source_record_trouble(ks.w->src->name, message);
	pfree(message);
	ks.trouble_recorded = false;
	assign(true);
}

/* What an offset out of [low, high] means, for last_error and the log. */
static char *
out_of_range_message(KafkaPartition *p, int64 low, int64 high)
{
	if (p->next < low)
		return psprintf("messages " INT64_FORMAT " to " INT64_FORMAT " of partition %d of topic "
						"\"%s\" were deleted by the broker before this source read them; they "
						"are missing from the profile. Reading on from offset " INT64_FORMAT,
						p->next, low - 1, p->id, ks.topic, low);
	return psprintf("offset " INT64_FORMAT " of partition %d of topic \"%s\" is past its end "
					"(" INT64_FORMAT "): the topic was recreated or truncated. Reading it "
					"again from its earliest offset " INT64_FORMAT, p->next, p->id, ks.topic,
					high, low);
}

/* In the batch's transaction: each partition's next offset, where it moved. */
static void
save_positions(C360SourceWorker *w)
{
	for (int i = 0; i < ks.nparts; i++)
		if (ks.parts[i].next != ks.parts[i].committed)
			c360_source_save_position(w->src, psprintf("%d", ks.parts[i].id),
									  psprintf(INT64_FORMAT, ks.parts[i].next));
	if (ks.skipped > 0)
		save_skipped(w);
}

/*
 * In the batch's transaction, with the offsets: the messages it skipped by design, which
 * source_status shows as skipped_messages (exact across crashes, like the offsets).
 */
static void
save_skipped(C360SourceWorker *w)
{
	static SPIPlanPtr plan;
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		args[2] = {CStringGetTextDatum(w->src->name), Int64GetDatum(ks.skipped)};

	SPI_connect();
	c360_exec(c360_plan(&plan, "UPDATE c360.source_progress"
						" SET skipped_messages = skipped_messages + $2 WHERE source = $1",
						2, types), args, NULL);
	SPI_finish();
}

static void
committed(C360SourceWorker *w)
{
	ks.skipped = 0;
	for (int i = 0; i < ks.nparts; i++)
		ks.parts[i].committed = ks.parts[i].next;
	refresh_lag(true);			/* cheap (cached watermarks): exact after every batch */
}

/* Between reads: the lag, partitions added to the topic, broker trouble. */
static void
housekeeping(C360SourceWorker *w)
{
	refresh_lag(false);
	refresh_partitions();
	check_trouble();
}

/* No group, no commits to the broker: the consumer just goes. */
static void
close_source(C360SourceWorker *w)
{
	rd_kafka_queue_destroy(ks.queue);
	rd_kafka_topic_destroy(ks.rkt);
	rd_kafka_destroy(ks.rk);
}

/* librdkafka writes to this pipe when the consumer queue fills again. */
static pgsocket
wake_socket(C360SourceWorker *w)
{
	return ks.wake_fd[0];
}

/*
 * lag_messages: the messages on the broker past the committed positions, summed over the
 * partitions.  The high watermarks come cached with every fetch response, so this never
 * waits for the broker (rd_kafka_query_watermark_offsets would, for up to
 * socket.timeout.ms while it is down); a partition not fetched yet does not count.
 */
static void
refresh_lag(bool force)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		lag = 0;

	if (!force && !TimestampDifferenceExceeds(ks.lag_refreshed, now, LAG_REFRESH_MS))
		return;
	ks.lag_refreshed = now;
	for (int i = 0; i < ks.nparts; i++)
	{
		KafkaPartition *p = &ks.parts[i];
		int64_t		low = RD_KAFKA_OFFSET_INVALID;
		int64_t		high = RD_KAFKA_OFFSET_INVALID;

		(void) rd_kafka_get_watermark_offsets(ks.rk, ks.topic, p->id, &low, &high);
		if (high < 0)
			continue;
		lag += Max(0, high - (p->committed >= 0 ? p->committed : Max(low, 0)));
	}
	ks.w->status->lag_messages = lag;
	ks.w->status->caught_up = lag == 0;
}

/*
 * Partitions added to the topic while the worker runs: read them from their beginning
 * (every message in them is newer than this source's first start).
 */
static void
refresh_partitions(void)
{
	const struct rd_kafka_metadata *md;
	int			known = ks.nparts;
	KafkaPartition *parts;

	if (!TimestampDifferenceExceeds(ks.partitions_refreshed, GetCurrentTimestamp(), PARTITION_REFRESH_MS))
		return;
	ks.partitions_refreshed = GetCurrentTimestamp();
	if (ks.w->units > 0 || rd_kafka_metadata(ks.rk, 0, ks.rkt, &md, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	parts = MemoryContextAllocZero(TopMemoryContext,
								   sizeof(KafkaPartition) * (ks.nparts + md->topics[0].partition_cnt));
	memcpy(parts, ks.parts, sizeof(KafkaPartition) * ks.nparts);
	for (int i = 0; md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && i < md->topics[0].partition_cnt; i++)
	{
		int32		id = md->topics[0].partitions[i].id;
		bool		found = false;

		for (int j = 0; j < ks.nparts && !found; j++)
			found = parts[j].id == id;
		if (found || !wanted_partition(id))
			continue;
		parts[ks.nparts].id = id;
		parts[ks.nparts].next = parts[ks.nparts].committed = -1;
		ks.nparts++;
	}
	rd_kafka_metadata_destroy(md);
	pfree(ks.parts);
	ks.parts = parts;
	if (ks.nparts == known)
		return;
	elog(LOG, "c360 source \"%s\": topic \"%s\" has %d new partitions, read from their beginning",
		 ks.w->src->name, ks.topic, ks.nparts - known);
	assign(true);
}

/*
 * Broker trouble that outlasts librdkafka's quick retries shows as state 'retrying' and
 * in last_error.  It is over when the broker answers a metadata request (a probe bounded
 * by a short timeout, made only while in trouble); messages are no sign, as they may come
 * from what librdkafka fetched before the trouble.
 */
static void
check_trouble(void)
{
	TimestampTz now = GetCurrentTimestamp();
	const struct rd_kafka_metadata *md;

	if (ks.trouble_since == 0 && !ks.trouble_recorded)
		return;
	if (ks.trouble_since != 0 && TimestampDifferenceExceeds(ks.trouble_probed, now, LAG_REFRESH_MS))
	{
		ks.trouble_probed = now;
		if (rd_kafka_metadata(ks.rk, 0, ks.rkt, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			if (md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
				ks.trouble_since = 0;
			rd_kafka_metadata_destroy(md);
		}
	}
	if (ks.trouble_since != 0 && !ks.trouble_recorded &&
		TimestampDifferenceExceeds(ks.trouble_since, now, TROUBLE_REPORT_MS))
	{
		char	   *message = psprintf("Kafka: %s (retrying)", ks.trouble);

		c360_source_record_trouble(ks.w->src->name, message);
		pfree(message);
		ks.trouble_recorded = true;
		c360_source_worker_report(ks.w, "retrying");
	}
	else if (ks.trouble_since == 0 && ks.trouble_recorded)
	{
		c360_worker_begin("c360 source recovered");
		set_phase_streaming();
		c360_worker_commit();
		ks.trouble_recorded = false;
		elog(LOG, "c360 source \"%s\": Kafka reachable again", ks.w->src->name);
		c360_source_worker_report(ks.w, "streaming");
	}
}

/* Phase 'streaming', last_error cleared; the catalog entry keeps the new phase. */
static void
set_phase_streaming(void)
{
	MemoryContext old = MemoryContextSwitchTo(ks.source_cxt);

	c360_source_set_phase(ks.w->src, "streaming");
	MemoryContextSwitchTo(old);
}

/* The committed next offset of every partition ("0=123, 1=456"). */
static char *
position(C360SourceWorker *w)
{
	StringInfoData buf;

	if (ks.nparts == 0)
		return NULL;
	initStringInfo(&buf);
	for (int i = 0; i < ks.nparts; i++)
	{
		if (ks.parts[i].committed >= 0)
			appendStringInfo(&buf, "%s%d=" INT64_FORMAT, buf.len ? ", " : "", ks.parts[i].id,
							 ks.parts[i].committed);
		else
			appendStringInfo(&buf, "%s%d=start", buf.len ? ", " : "", ks.parts[i].id);
	}
	return buf.data;
}

/* Errors say which topic and, while a batch is pending, which offsets it holds. */
static void
error_context(C360SourceWorker *w, StringInfo buf)
{
	appendStringInfo(buf, ", topic \"%s\"", ks.topic ? ks.topic : "?");
	for (int i = 0; w->units > 0 && i < ks.nparts; i++)
		if (ks.parts[i].next != ks.parts[i].committed)
			appendStringInfo(buf, "%s%d@" INT64_FORMAT ".." INT64_FORMAT, i ? ", " : " batch ",
							 ks.parts[i].id, Max(ks.parts[i].committed, 0), ks.parts[i].next - 1);
}

/*
 * librdkafka's client errors (a broker down, a refused connection) are transient: it
 * retries them itself.  Remember the reason and since when; a fatal error ends the
 * worker (never ereport here: this runs inside librdkafka's code).
 */
static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	strlcpy(ks.trouble, reason, sizeof(ks.trouble));
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		ks.fatal = true;
	if (ks.trouble_since == 0)
		ks.trouble_since = GetCurrentTimestamp();
}

/* librdkafka's log lines, in the server log with the source's name. */
static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (level <= 4)				/* syslog warning and worse */
		ereport(LOG, (errmsg_internal("c360 source \"%s\": Kafka %s: %s", ks.w->src->name, fac, buf)));
}
