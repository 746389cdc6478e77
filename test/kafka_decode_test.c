/*
 * test/kafka_decode_test.c: the Kafka message decoders (src/decode/kafka_decode.c, format
 * json, and src/decode/segment_decode.c, format segment) without a server.  Built and run
 * by test/t_kafka_source.sh and test/t_segment.sh (run_decode_test in test/lib.sh) as a
 * frontend program:
 *
 *   gcc -DFRONTEND -ffunction-sections -fdata-sections -Isrc -I$(pg_config --includedir-server) \
 *       test/kafka_decode_test.c src/decode/kafka_decode.c src/decode/segment_decode.c \
 *       src/core/change.c \
 *       -L$(pg_config --pkglibdir) -lpgcommon -lpgport -ljansson -lm -Wl,--gc-sections
 *
 * (--gc-sections drops the parts of change.c that need the backend; the input catalog and
 * the column lookup it keeps are plain C.)  Exit 0 = every case passed.
 */
#include "postgres.h"

#include "decode/kafka_decode.h"
#include "decode/segment_decode.h"

#define MAXB C360_KAFKA_MAX_MESSAGE_BYTES
#define STRLEN ((size_t) -1)		/* bad(): the payload's strlen */

static int	failures = 0;
static char *const *paths = NULL;	/* the column mapping ok() and bad() decode with */

static void
check(bool cond, const char *what, const char *detail)
{
	if (!cond)
	{
		failures++;
		printf("FAIL: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	}
}

/* Decode and expect a change; returns it. */
static C360Change *
ok(C360InputId input, const char *key, const char *payload)
{
	C360Change *ch;
	char	   *error;
	bool		good = c360_kafka_decode(input, key, key ? strlen(key) : 0, payload,
										 payload ? strlen(payload) : 0, MAXB, paths, &ch, &error);

	check(good, payload ? payload : "(tombstone)", good ? NULL : error);
	return good ? ch : NULL;
}

/* Decode and expect a dead letter whose reason contains want. */
static void
bad(C360InputId input, const char *key, const char *payload, size_t len, size_t max, const char *want)
{
	C360Change *ch;
	char	   *error;
	bool		good;

	if (len == STRLEN)
		len = payload ? strlen(payload) : 0;
	good = c360_kafka_decode(input, key, key ? strlen(key) : 0, payload, len, max, paths, &ch,
							 &error);

	check(!good, psprintf("expected a dead letter for %.80s", payload ? payload : "(tombstone)"), NULL);
	if (!good)
		check(strstr(error, want) != NULL, psprintf("reason for %.60s", payload ? payload : "(null)"),
			  psprintf("got \"%s\", want \"%s\"", error, want));
}

static void
value_is(C360Change *ch, const char *col, const char *want)
{
	const C360Input *in;
	int			c;
	C360Tuple  *t;

	if (ch == NULL)
		return;
	in = &c360_inputs[ch->input];
	c = c360_column_by_name(in, col);
	t = ch->new ? ch->new : ch->old;
	if (want == NULL)
		check(t->present[c] && t->values[c] == NULL, psprintf("%s is null", col), NULL);
	else
		check(t->present[c] && t->values[c] != NULL && strcmp(t->values[c], want) == 0,
			  psprintf("%s", col), psprintf("got \"%s\", want \"%s\"",
										   t->present[c] ? (t->values[c] ? t->values[c] : "NULL") : "(absent)", want));
}

static void
events(void)
{
	C360InputId E = C360_BEHAVIORAL_EVENTS;
	C360Change *ch;
	char	   *big;

	ch = ok(E, "c1", "{\"event_id\": \"e1\", \"customer_id\": \"c1\", \"event_type\": \"page_view\", "
			"\"event_time\": \"2024-05-01T10:00:00Z\", \"unknown\": {\"nested\": [1, 2]}}");
	check(ch && ch->op == C360_INSERT && ch->new && ch->old == NULL, "event is an insert", NULL);
	value_is(ch, "event_id", "e1");
	value_is(ch, "event_time", "2024-05-01T10:00:00Z");
	check(ch && !ch->new->present[c360_column_by_name(&c360_inputs[E], "session_id")], "absent session_id", NULL);

	/* epoch milliseconds, integer and real, before and after 1970 */
	value_is(ok(E, NULL, "{\"event_id\": 1, \"customer_id\": 2, \"event_time\": 1700000000123}"),
			 "event_time", "2023-11-14 22:13:20.123000+00");
	value_is(ok(E, NULL, "{\"event_id\": 1, \"customer_id\": 2, \"event_time\": 0}"),
			 "event_time", "1970-01-01 00:00:00.000000+00");
	value_is(ok(E, NULL, "{\"event_id\": 1, \"customer_id\": 2, \"event_time\": -1}"),
			 "event_time", "1969-12-31 23:59:59.999000+00");
	value_is(ok(E, NULL, "{\"event_id\": 1, \"customer_id\": 2, \"event_time\": 1700000000123.5}"),
			 "event_time", "2023-11-14 22:13:20.123500+00");

	/* numbers and booleans into text columns */
	ch = ok(E, NULL, "{\"event_id\": 12345678901234, \"customer_id\": \"c\", \"event_time\": 1, "
			"\"product_id\": 0.1, \"category_id\": true, \"session_id\": null}");
	value_is(ch, "event_id", "12345678901234");
	value_is(ch, "product_id", "0.1");
	value_is(ch, "category_id", "true");
	value_is(ch, "session_id", NULL);

	/* the dead letters */
	bad(E, NULL, "{\"customer_id\": \"c1\", \"event_time\": 1}", STRLEN, MAXB, "\"event_id\" is missing");
	bad(E, NULL, "{\"event_id\": \"e\", \"event_time\": 1}", STRLEN, MAXB, "\"customer_id\" is missing");
	bad(E, NULL, "{\"event_id\": \"e\", \"customer_id\": null, \"event_time\": 1}", STRLEN, MAXB,
		"\"customer_id\" is null");
	bad(E, NULL, "{\"event_id\": \"e\", \"customer_id\": \"c\"}", STRLEN, MAXB, "\"event_time\" is missing");
	bad(E, NULL, "{\"event_id\": \"e\", \"customer_id\": {\"id\": 1}, \"event_time\": 1}", STRLEN, MAXB,
		"\"customer_id\" is a JSON object");
	bad(E, NULL, "{\"event_id\": [1], \"customer_id\": \"c\", \"event_time\": 1}", STRLEN, MAXB,
		"\"event_id\" is a JSON array");
	bad(E, NULL, "{\"event_id\": \"e\", \"customer_id\": \"c\", \"event_time\": 1e300}", STRLEN, MAXB,
		"out of range");
	bad(E, NULL, "{\"event_id\": \"e\",", STRLEN, MAXB, "bad JSON");
	bad(E, NULL, "", 0, MAXB, "bad JSON");
	bad(E, NULL, "not json at all", STRLEN, MAXB, "bad JSON");
	bad(E, NULL, "[1, 2]", STRLEN, MAXB, "a JSON array, not an object");
	bad(E, NULL, "\"text\"", STRLEN, MAXB, "bad JSON");
	bad(E, NULL, "{\"event_id\": \"a\", \"event_id\": \"b\"}", STRLEN, MAXB, "duplicate");
	bad(E, NULL, "{\"event_id\": \"a\\u0000b\"}", STRLEN, MAXB, "bad JSON");
	bad(E, NULL, "{\"event_id\": \"\xff\xfe\"}", STRLEN, MAXB, "bad JSON");
	bad(E, NULL, "{\"event_id\": 123456789012345678901234567890}", STRLEN, MAXB, "bad JSON");
	bad(E, "c1", NULL, 0, MAXB, "append-only");
	big = psprintf("{\"event_id\": \"e\", \"customer_id\": \"c\", \"event_time\": 1, \"pad\": \"%0*d\"}", 200, 0);
	bad(E, NULL, big, strlen(big), 100, "more than the 100 allowed");
}

static void
identities(void)
{
	C360InputId I = C360_IDENTITY_GRAPH;
	C360Change *ch;

	/* the key is the identity_id */
	ch = ok(I, "id-1", "{\"customer_id\": \"c1\", \"identity_type\": \"cookie\", \"identity_value\": \"ck-1\", "
			"\"created_at\": 1700000000000}");
	check(ch && ch->op == C360_INSERT, "link is an insert (upsert)", NULL);
	value_is(ch, "identity_id", "id-1");
	value_is(ch, "created_at", "2023-11-14 22:13:20.000000+00");
	value_is(ok(I, "id-1", "{\"identity_id\": \"id-1\", \"customer_id\": \"c1\", \"identity_value\": \"v\"}"),
			 "identity_id", "id-1");
	value_is(ok(I, NULL, "{\"identity_id\": \"id-2\", \"customer_id\": \"c1\", \"identity_value\": \"v\"}"),
			 "identity_id", "id-2");

	/* a tombstone deletes the key */
	ch = ok(I, "id-1", NULL);
	check(ch && ch->op == C360_DELETE && ch->old && ch->new == NULL, "tombstone is a delete", NULL);
	value_is(ch, "identity_id", "id-1");

	bad(I, NULL, NULL, 0, MAXB, "needs a key");
	bad(I, "id-1", "{\"identity_id\": \"id-9\", \"customer_id\": \"c1\", \"identity_value\": \"v\"}", STRLEN, MAXB,
		"but the message key is");
	bad(I, "id-1", "{\"customer_id\": \"c1\"}", STRLEN, MAXB, "\"identity_value\" is missing");
	bad(I, NULL, "{\"customer_id\": \"c1\", \"identity_value\": \"v\"}", STRLEN, MAXB, "\"identity_id\" is missing");
	bad(I, "\xff", "{}", STRLEN, MAXB, "key is not valid UTF-8");
}

static void
payload_text(void)
{
	char	   *t;

	check(c360_kafka_payload_text(NULL, 0, MAXB) == NULL, "tombstone payload is NULL", NULL);
	t = c360_kafka_payload_text("{\"a\": \"\xc3\xa9\"}", 11, MAXB);
	check(strcmp(t, "{\"a\": \"\xc3\xa9\"}") == 0, "UTF-8 payload kept as text", t);
	t = c360_kafka_payload_text("a\xff" "b", 3, MAXB);
	check(strcmp(t, "\\x61ff62") == 0, "invalid UTF-8 kept as hex", t);
	t = c360_kafka_payload_text("a\0b", 3, MAXB);
	check(strcmp(t, "\\x610062") == 0, "NUL byte kept as hex", t);
	t = c360_kafka_payload_text(psprintf("%05000d", 7), 5000, 100);
	check(strlen(t) < 1100 && strstr(t, "(5000 bytes in all)") != NULL, "oversized payload cut", t);
}

/* A Segment-style track event mapped onto behavioral_events with paths. */
static void
mapped(void)
{
	const C360Input *in = &c360_inputs[C360_BEHAVIORAL_EVENTS];
	char	   *map[C360_MAX_COLS] = {0};
	C360Change *ch;

	map[c360_column_by_name(in, "event_id")] = "messageId";
	map[c360_column_by_name(in, "customer_id")] = "userId";
	map[c360_column_by_name(in, "event_time")] = "timestamp";
	map[c360_column_by_name(in, "event_type")] = "event";
	map[c360_column_by_name(in, "product_id")] = "properties.product_id";
	map[c360_column_by_name(in, "session_id")] = "context.session.id";
	paths = map;

	ch = ok(C360_BEHAVIORAL_EVENTS, NULL,
			"{\"messageId\": \"m1\", \"userId\": \"u1\", \"event\": \"product_view\", "
			"\"timestamp\": \"2030-01-01T00:00:00Z\", \"category_id\": \"c9\", "
			"\"event_id\": \"not this\", "
			"\"properties\": {\"product_id\": 42}, \"context\": {\"session\": {\"id\": \"s1\"}}}");
	value_is(ch, "event_id", "m1");
	value_is(ch, "customer_id", "u1");
	value_is(ch, "event_type", "product_view");
	value_is(ch, "event_time", "2030-01-01T00:00:00Z");
	value_is(ch, "product_id", "42");
	value_is(ch, "session_id", "s1");
	value_is(ch, "category_id", "c9");	/* unmapped: the top-level field of its name */
	/* a mapped path whose value is null is a null */
	ch = ok(C360_BEHAVIORAL_EVENTS, NULL,
			"{\"messageId\": \"m2\", \"userId\": \"u1\", \"event\": \"x\", "
			"\"timestamp\": 1700000000000, \"properties\": {\"product_id\": null}, "
			"\"context\": {\"session\": {\"id\": \"s1\"}}}");
	value_is(ch, "product_id", NULL);
	value_is(ch, "event_time", "2023-11-14 22:13:20.000000+00");
	bad(C360_BEHAVIORAL_EVENTS, NULL,
		"{\"messageId\": \"m3\", \"userId\": \"u1\", \"event\": \"x\", "
		"\"timestamp\": \"2030-01-01T00:00:00Z\", \"properties\": {}, "
		"\"context\": {\"session\": {\"id\": \"s1\"}}}", STRLEN, MAXB,
		"no field properties.product_id, which input column product_id is mapped to");
	bad(C360_BEHAVIORAL_EVENTS, NULL,
		"{\"messageId\": \"m4\", \"userId\": \"u1\", \"event\": \"x\", "
		"\"timestamp\": \"2030-01-01T00:00:00Z\", \"properties\": \"flat\", "
		"\"context\": {\"session\": {\"id\": \"s1\"}}}", STRLEN, MAXB,
		"no field properties.product_id");
	bad(C360_BEHAVIORAL_EVENTS, NULL,
		"{\"messageId\": \"m5\", \"userId\": \"u1\", \"event\": \"x\", "
		"\"timestamp\": \"2030-01-01T00:00:00Z\", \"properties\": {\"product_id\": [1]}, "
		"\"context\": {\"session\": {\"id\": \"s1\"}}}", STRLEN, MAXB,
		"field \"properties.product_id\" is a JSON array");
	/* a field a mapping names feeds only its column: category_id mapped to the field
	 * event_id, the input column event_id (mapped to messageId) does not read it either */
	map[c360_column_by_name(in, "category_id")] = "event_id";
	ch = ok(C360_BEHAVIORAL_EVENTS, NULL,
			"{\"messageId\": \"m7\", \"userId\": \"u1\", \"event\": \"x\", \"event_id\": \"cat7\", "
			"\"timestamp\": \"2030-01-01T00:00:00Z\", \"properties\": {\"product_id\": 1}, "
			"\"context\": {\"session\": {\"id\": \"s1\"}}}");
	value_is(ch, "category_id", "cat7");
	value_is(ch, "event_id", "m7");
	map[c360_column_by_name(in, "category_id")] = NULL;
	map[c360_column_by_name(in, "event_id")] = NULL;
	map[c360_column_by_name(in, "session_id")] = "event_id";
	bad(C360_BEHAVIORAL_EVENTS, NULL,
		"{\"userId\": \"u1\", \"event\": \"x\", \"event_id\": \"e8\", "
		"\"timestamp\": \"2030-01-01T00:00:00Z\", \"properties\": {\"product_id\": 1}}",
		STRLEN, MAXB, "required field \"event_id\" is missing");
	map[c360_column_by_name(in, "event_id")] = "messageId";
	map[c360_column_by_name(in, "session_id")] = "context.session.id";
	/* a mapped required column that is null is refused as before */
	bad(C360_BEHAVIORAL_EVENTS, NULL,
		"{\"messageId\": \"m6\", \"userId\": null, \"event\": \"x\", "
		"\"timestamp\": \"2030-01-01T00:00:00Z\", \"properties\": {\"product_id\": 1}, "
		"\"context\": {\"session\": {\"id\": \"s1\"}}}", STRLEN, MAXB,
		"required field \"customer_id\" is null");
	paths = NULL;
}

/* Decode a Segment call and expect the outcome; returns the change, if any. */
static C360Change *
seg(C360KafkaOutcome want, const char *payload, const char *reason)
{
	static const char *names[] = {"a change", "skipped", "a dead letter"};
	C360Change *ch;
	char	   *error;
	C360KafkaOutcome got = c360_segment_decode(payload, payload ? strlen(payload) : 0, MAXB,
												paths, &ch, &error);

	check(got == want, psprintf("%.90s", payload ? payload : "(tombstone)"),
		  psprintf("got %s (%s), want %s", names[got], error ? error : "", names[want]));
	if (got == C360_KAFKA_DEAD_LETTER && reason != NULL)
		check(strstr(error, reason) != NULL, psprintf("reason for %.60s", payload ? payload : "(null)"),
			  psprintf("got \"%s\", want \"%s\"", error, reason));
	check((got == C360_KAFKA_CHANGE) == (ch != NULL), "a change comes with its record", NULL);
	return ch;
}

/* Track, page and screen calls: behavioural events. */
static void
segment_events(void)
{
	C360Change *ch;

	ch = seg(C360_KAFKA_CHANGE, "{\"type\": \"track\", \"messageId\": \"m1\", \"userId\": \"u1\", "
			 "\"anonymousId\": \"a1\", \"event\": \"Product Viewed\", \"timestamp\": \"2024-05-01T10:00:00.123Z\", "
			 "\"context\": {\"sessionId\": \"s1\", \"ip\": \"10.0.0.1\"}, "
			 "\"properties\": {\"product_id\": \"p1\", \"category\": \"shoes\", \"price\": 9.5}}", NULL);
	check(ch && ch->input == C360_BEHAVIORAL_EVENTS && ch->op == C360_INSERT, "track is an event insert", NULL);
	value_is(ch, "event_id", "m1");
	value_is(ch, "customer_id", "u1");		/* the userId wins over the anonymousId */
	value_is(ch, "event_type", "Product Viewed");
	value_is(ch, "event_time", "2024-05-01T10:00:00.123Z");
	value_is(ch, "session_id", "s1");
	value_is(ch, "product_id", "p1");
	value_is(ch, "category_id", "shoes");

	/* before login: the anonymousId; ids may be integers; "" is no id */
	ch = seg(C360_KAFKA_CHANGE, "{\"type\": \"page\", \"messageId\": 17, \"anonymousId\": \"a1\", "
			 "\"name\": \"Home\", \"timestamp\": \"2024-05-01 10:00:00+02:00\"}", NULL);
	value_is(ch, "event_id", "17");
	value_is(ch, "customer_id", "a1");
	value_is(ch, "event_type", "page_view");
	value_is(ch, "product_id", NULL);	/* a page has no product: null, not a dead letter */
	value_is(ch, "session_id", NULL);
	value_is(seg(C360_KAFKA_CHANGE, "{\"type\": \"screen\", \"messageId\": \"m3\", \"userId\": \"\", "
				 "\"anonymousId\": 42, \"timestamp\": \"2024-02-29T23:59:59-0800\"}", NULL),
			 "customer_id", "42");
	value_is(seg(C360_KAFKA_CHANGE, "{\"type\": \"screen\", \"messageId\": \"m4\", \"userId\": \"u4\", "
				 "\"timestamp\": \"2024-05-01T10:00+01\"}", NULL),
			 "event_type", "screen_view");
	value_is(seg(C360_KAFKA_CHANGE, "{\"type\": \"track\", \"messageId\": \"m5\", \"userId\": \"u5\", "
				 "\"event\": \"x\", \"timestamp\": \"2024-05-01T10:00:00.123456789+05:30\", "
				 "\"properties\": {\"product_id\": 123, \"category\": null}}", NULL),
			 "product_id", "123");
}

/* Identify and alias calls: identity links; what has nothing to link is skipped. */
static void
segment_links(void)
{
	C360Change *ch;

	ch = seg(C360_KAFKA_CHANGE, "{\"type\": \"identify\", \"messageId\": \"m1\", \"userId\": \"u1\", "
			 "\"anonymousId\": \"a1\", \"traits\": {\"email\": \"x@example.org\"}, "
			 "\"timestamp\": \"2024-05-01T10:00:00Z\"}", NULL);
	check(ch && ch->input == C360_IDENTITY_GRAPH && ch->op == C360_INSERT, "identify is a link upsert", NULL);
	value_is(ch, "identity_id", "segment:anonymous_id:a1");
	value_is(ch, "customer_id", "u1");
	value_is(ch, "identity_type", "anonymous_id");
	value_is(ch, "identity_value", "a1");
	value_is(ch, "created_at", "2024-05-01T10:00:00Z");
	ch = seg(C360_KAFKA_CHANGE, "{\"type\": \"alias\", \"messageId\": \"m2\", \"userId\": \"u2\", "
			 "\"previousId\": \"old-7\", \"timestamp\": \"2024-05-01T10:00:00Z\"}", NULL);
	value_is(ch, "identity_id", "segment:alias:old-7");
	value_is(ch, "customer_id", "u2");
	value_is(ch, "identity_type", "alias");
	value_is(ch, "identity_value", "old-7");

	seg(C360_KAFKA_SKIP, "{\"type\": \"identify\", \"messageId\": \"m3\", \"userId\": \"u1\", "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", NULL);
	seg(C360_KAFKA_SKIP, "{\"type\": \"identify\", \"messageId\": \"m4\", \"anonymousId\": \"a1\", "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", NULL);
	seg(C360_KAFKA_SKIP, "{\"type\": \"group\", \"messageId\": \"m5\", \"userId\": \"u1\", "
		"\"groupId\": \"g1\", \"timestamp\": \"2024-05-01T10:00:00Z\"}", NULL);
	seg(C360_KAFKA_SKIP, "{\"type\": \"something_new\", \"messageId\": \"m6\"}", NULL);
}

/* What no spec call is: dead letters, each with its reason. */
static void
segment_bad(void)
{
	const char *track = "{\"type\": \"track\", \"messageId\": \"m\", \"userId\": \"u\", \"event\": \"e\", "
		"\"timestamp\": \"%s\"}";
	const char *bad_times[] = {"now", "infinity", "2024-05-01T10:00:00", "2024-02-30T00:00:00Z",
		"2023-02-29T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T10:60:00Z", "2024-05-01T10:00:60Z",
		"2024-13-01T10:00:00Z", "0000-01-01T00:00:00Z", "2024-5-1T10:00:00Z", "2024-05-01T10:00:00+05:",
		"2024-05-01T10:00:00+16:00", "2024-05-01T10:00:00.Z", "2024-05-01t10:00:00z",
		"2024-05-01T10:00:00Z trailing", "2024-05-01", ""};

	seg(C360_KAFKA_DEAD_LETTER, NULL, "a tombstone");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\",", "bad JSON");
	seg(C360_KAFKA_DEAD_LETTER, "[1]", "a JSON array, not an object");
	seg(C360_KAFKA_DEAD_LETTER, "{\"messageId\": \"m\", \"userId\": \"u\"}", "no field \"type\"");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": 7, \"messageId\": \"m\"}", "field \"type\" is a JSON number");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"group\"}", "no field \"messageId\"");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\", \"messageId\": {\"id\": 1}}",
		"field \"messageId\" is a JSON object");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\", \"messageId\": \"m\", \"event\": \"e\", "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", "neither userId nor anonymousId");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"page\", \"messageId\": \"m\", \"userId\": true, "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", "field \"userId\" is a JSON boolean");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"identify\", \"messageId\": \"m\", "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", "neither userId nor anonymousId");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\", \"messageId\": \"m\", \"userId\": \"u\", \"event\": \"e\"}",
		"no field \"timestamp\"");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\", \"messageId\": \"m\", \"userId\": \"u\", \"event\": \"e\", "
		"\"timestamp\": 1714557600000}", "field \"timestamp\" is a JSON number");
	for (int i = 0; i < lengthof(bad_times); i++)
		seg(C360_KAFKA_DEAD_LETTER, psprintf(track, bad_times[i]), "not an ISO-8601 date and time");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\", \"messageId\": \"m\", \"userId\": \"u\", "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", "a track call without an event name");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\", \"messageId\": \"m\", \"userId\": \"u\", \"event\": \"\", "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", "a track call without an event name");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\", \"messageId\": \"m\", \"userId\": \"u\", \"event\": [1], "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", "field \"event\" is a JSON array");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"track\", \"messageId\": \"m\", \"userId\": \"u\", \"event\": \"e\", "
		"\"timestamp\": \"2024-05-01T10:00:00Z\", \"properties\": {\"product_id\": {\"sku\": 1}}}",
		"field \"properties.product_id\" is a JSON object");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"alias\", \"messageId\": \"m\", \"userId\": \"u\", "
		"\"timestamp\": \"2024-05-01T10:00:00Z\"}", "an alias call needs both a previousId and a userId");
	seg(C360_KAFKA_DEAD_LETTER, "{\"type\": \"identify\", \"messageId\": \"m\", \"userId\": \"u\", "
		"\"anonymousId\": \"a\", \"timestamp\": \"yesterday\"}", "not an ISO-8601");
}

/* A mapping places session_id, product_id and category_id, and nothing else. */
static void
segment_mapped(void)
{
	const C360Input *in = &c360_inputs[C360_BEHAVIORAL_EVENTS];
	char	   *map[C360_MAX_COLS] = {0};
	char	   *error;
	C360Change *ch;

	map[c360_column_by_name(in, "session_id")] = "context.session.id";
	map[c360_column_by_name(in, "product_id")] = "properties.sku";
	check(c360_segment_check_paths(map, &error), "session_id and product_id may be placed", NULL);
	check(c360_segment_check_paths(NULL, &error), "no mapping at all", NULL);
	paths = map;
	ch = seg(C360_KAFKA_CHANGE, "{\"type\": \"track\", \"messageId\": \"m1\", \"userId\": \"u1\", "
			 "\"event\": \"x\", \"timestamp\": \"2024-05-01T10:00:00Z\", \"context\": {\"sessionId\": \"no\", "
			 "\"session\": {\"id\": \"s9\"}}, \"properties\": {\"product_id\": \"no\", \"sku\": \"k9\", "
			 "\"category\": \"c9\"}}", NULL);
	value_is(ch, "session_id", "s9");
	value_is(ch, "product_id", "k9");
	value_is(ch, "category_id", "c9");	/* unmapped: its default path */
	value_is(seg(C360_KAFKA_CHANGE, "{\"type\": \"page\", \"messageId\": \"m2\", \"userId\": \"u1\", "
				 "\"timestamp\": \"2024-05-01T10:00:00Z\", \"context\": {\"session\": 5}}", NULL),
			 "session_id", NULL);
	paths = NULL;

	map[c360_column_by_name(in, "event_time")] = "receivedAt";
	check(!c360_segment_check_paths(map, &error) && strstr(error, "input column event_time") != NULL,
		  "event_time may not be placed", NULL);
}

int
main(void)
{
	events();
	identities();
	payload_text();
	mapped();
	segment_events();
	segment_links();
	segment_bad();
	segment_mapped();
	if (failures > 0)
	{
		printf("%d decoder checks failed\n", failures);
		return 1;
	}
	printf("ok - kafka_decode_test\n");
	return 0;
}
