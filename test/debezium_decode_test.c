/*
 * test/debezium_decode_test.c: the Debezium change event decoder (src/decode/debezium_decode.c)
 * without a server, on messages shaped as Debezium's documentation shows them for its
 * PostgreSQL and MySQL connectors, every op, with and without schemas, every value encoding,
 * and bad envelopes.  Built and run by test/t_debezium.sh as test/kafka_decode_test.c is:
 *
 *   gcc -DFRONTEND -ffunction-sections -fdata-sections -Isrc -I$(pg_config --includedir-server) \
 *       test/debezium_decode_test.c src/decode/debezium_decode.c src/decode/kafka_decode.c \
 *       src/core/change.c -L$(pg_config --pkglibdir) -lpgcommon -lpgport -ljansson -lm \
 *       -Wl,--gc-sections
 *
 * Exit 0 = every case passed.
 */
#include "postgres.h"

#include "decode/debezium_decode.h"

#define MAXB C360_KAFKA_MAX_MESSAGE_BYTES

static int	failures = 0;
static char *map[C360_MAX_COLS];	/* the column mapping decodes use; NULL entries: by name */
static C360InputId input;		/* the input decodes feed */

static void
check(bool cond, const char *what, const char *detail)
{
	if (!cond)
	{
		failures++;
		printf("FAIL: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	}
}

static C360KafkaOutcome
decode(const char *key, const char *value, C360Change **ch, char **error)
{
	return c360_debezium_decode(input, key, key ? strlen(key) : 0, value, value ? strlen(value) : 0,
								MAXB, map, ch, error);
}

/* Decode and expect a change of op; returns it. */
static C360Change *
ok(const char *key, const char *value, C360Op op)
{
	C360Change *ch;
	char	   *error;
	C360KafkaOutcome r = decode(key, value, &ch, &error);

	check(r == C360_KAFKA_CHANGE, psprintf("change from %.300s", value), error);
	if (r != C360_KAFKA_CHANGE)
		return NULL;
	check(ch->op == op && ch->input == input, psprintf("op of %.200s", value),
		  psprintf("got op %d, want %d", ch->op, op));
	return ch;
}

/* Decode and expect a dead letter whose reason contains want. */
static void
bad(const char *key, const char *value, const char *want)
{
	C360Change *ch;
	char	   *error;
	C360KafkaOutcome r = decode(key, value, &ch, &error);

	check(r == C360_KAFKA_DEAD_LETTER && ch == NULL,
		  psprintf("expected a dead letter for %.300s", value ? value : "(null)"), NULL);
	if (r == C360_KAFKA_DEAD_LETTER)
		check(strstr(error, want) != NULL, psprintf("reason for %.200s", value),
			  psprintf("got \"%s\", want \"%s\"", error, want));
}

/* A column's value in the new image (old: the old one); want NULL: present and null. */
static void
image_is(C360Change *ch, bool old, const char *col, const char *want)
{
	const C360Input *in;
	C360Tuple  *t;
	int			c;

	if (ch == NULL)
		return;
	in = &c360_inputs[ch->input];
	c = c360_column_by_name(in, col);
	t = old ? ch->old : ch->new;
	if (t == NULL)
	{
		check(false, psprintf("%s image of %s", old ? "old" : "new", col), "no such image");
		return;
	}
	if (want == NULL)
		check(t->present[c] && t->values[c] == NULL, psprintf("%s is null", col), NULL);
	else
		check(t->present[c] && t->values[c] != NULL && strcmp(t->values[c], want) == 0,
			  psprintf("%s %s", old ? "old" : "new", col),
			  psprintf("got \"%s\", want \"%s\"",
					   t->present[c] ? (t->values[c] ? t->values[c] : "NULL") : "(absent)", want));
}

static void
new_is(C360Change *ch, const char *col, const char *want)
{
	image_is(ch, false, col, want);
}

static void
absent(C360Change *ch, bool old, const char *col)
{
	C360Tuple  *t;

	if (ch == NULL)
		return;
	t = old ? ch->old : ch->new;
	check(t && !t->present[c360_column_by_name(&c360_inputs[ch->input], col)],
		  psprintf("%s absent from the %s image", col, old ? "old" : "new"), NULL);
}

static void
use(C360InputId in, const char *const *pairs)
{
	input = in;
	memset(map, 0, sizeof(map));
	for (int i = 0; pairs && pairs[i]; i += 2)
		map[c360_column_by_name(&c360_inputs[in], pairs[i])] = (char *) pairs[i + 1];
}

/* ---- Debezium's PostgreSQL connector documentation: table customers (id, first_name, last_name, email) */

#define PG_ROW_FIELDS \
	"{\"type\": \"int32\", \"optional\": false, \"field\": \"id\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"first_name\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"last_name\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"email\"}"

#define PG_SCHEMA \
	"{\"type\": \"struct\", \"fields\": [" \
	"{\"type\": \"struct\", \"fields\": [" PG_ROW_FIELDS "], \"optional\": true, " \
	"\"name\": \"PostgreSQL_server.inventory.customers.Value\", \"field\": \"before\"}, " \
	"{\"type\": \"struct\", \"fields\": [" PG_ROW_FIELDS "], \"optional\": true, " \
	"\"name\": \"PostgreSQL_server.inventory.customers.Value\", \"field\": \"after\"}, " \
	"{\"type\": \"struct\", \"fields\": [" \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"version\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"connector\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"name\"}, " \
	"{\"type\": \"int64\", \"optional\": false, \"field\": \"ts_ms\"}, " \
	"{\"type\": \"int64\", \"optional\": false, \"field\": \"ts_us\"}, " \
	"{\"type\": \"int64\", \"optional\": false, \"field\": \"ts_ns\"}, " \
	"{\"type\": \"boolean\", \"optional\": true, \"default\": false, \"field\": \"snapshot\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"db\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"schema\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"table\"}, " \
	"{\"type\": \"int64\", \"optional\": true, \"field\": \"txId\"}, " \
	"{\"type\": \"int64\", \"optional\": true, \"field\": \"lsn\"}, " \
	"{\"type\": \"int64\", \"optional\": true, \"field\": \"xmin\"}], " \
	"\"optional\": false, \"name\": \"io.debezium.connector.postgresql.Source\", \"field\": \"source\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"op\"}, " \
	"{\"type\": \"int64\", \"optional\": true, \"field\": \"ts_ms\"}, " \
	"{\"type\": \"int64\", \"optional\": true, \"field\": \"ts_us\"}, " \
	"{\"type\": \"int64\", \"optional\": true, \"field\": \"ts_ns\"}], " \
	"\"optional\": false, \"name\": \"PostgreSQL_server.inventory.customers.Envelope\"}"

#define PG_SOURCE(ts, snapshot, lsn) \
	"{\"version\": \"2.7.0.Final\", \"connector\": \"postgresql\", \"name\": \"PostgreSQL_server\", " \
	"\"ts_ms\": " ts ", \"ts_us\": " ts "123, \"ts_ns\": " ts "123000, \"snapshot\": " snapshot ", " \
	"\"db\": \"postgres\", \"sequence\": \"[\\\"24023119\\\",\\\"24023128\\\"]\", \"schema\": \"public\", " \
	"\"table\": \"customers\", \"txId\": 555, \"lsn\": " lsn ", \"xmin\": null}"

#define PG_CREATE_PAYLOAD \
	"{\"before\": null, \"after\": {\"id\": 1, \"first_name\": \"Anne\", \"last_name\": \"Kretchmar\", " \
	"\"email\": \"annek@noanswer.org\"}, \"source\": " PG_SOURCE("1559033904863", "true", "24023128") ", " \
	"\"op\": \"c\", \"ts_ms\": 1559033904863, \"ts_us\": 1559033904863841, \"ts_ns\": 1559033904863841257}"

#define PG_UPDATE_PAYLOAD \
	"{\"before\": {\"id\": 1}, \"after\": {\"id\": 1, \"first_name\": \"Anne Marie\", \"last_name\": \"Kretchmar\", " \
	"\"email\": \"annek@noanswer.org\"}, \"source\": " PG_SOURCE("1559033904863", "false", "24023128") ", " \
	"\"op\": \"u\", \"ts_ms\": 1465584025523, \"ts_us\": 1465584025523514, \"ts_ns\": 1465584025523514964}"

#define PG_DELETE_PAYLOAD \
	"{\"before\": {\"id\": 1}, \"after\": null, \"source\": " PG_SOURCE("1559033904863", "false", "46523128") ", " \
	"\"op\": \"d\", \"ts_ms\": 1465581902461, \"ts_us\": 1465581902461496, \"ts_ns\": 1465581902461496187}"

#define PG_TRUNCATE_PAYLOAD \
	"{\"source\": " PG_SOURCE("1559033904863", "false", "46523128") ", \"op\": \"t\", " \
	"\"ts_ms\": 1559033904961, \"ts_us\": 1559033904961654, \"ts_ns\": 1559033904961654789}"

#define PG_MESSAGE_PAYLOAD \
	"{\"source\": " PG_SOURCE("1559033904863", "false", "46523128") ", \"op\": \"m\", " \
	"\"ts_ms\": 1559033904961, \"message\": {\"prefix\": \"foo\", \"content\": \"Ymfy\"}}"

/* the key as the PostgreSQL page shows it (index and optional as strings, the id as text) */
#define PG_KEY \
	"{\"schema\": {\"type\": \"struct\", \"name\": \"PostgreSQL_server.public.customers.Key\", " \
	"\"optional\": false, \"fields\": [{\"name\": \"id\", \"index\": \"0\", " \
	"\"schema\": {\"type\": \"INT32\", \"optional\": \"false\"}}]}, \"payload\": {\"id\": \"1\"}}"

#define WRAP(schema, payload) "{\"schema\": " schema ", \"payload\": " payload "}"

static void
postgresql_docs(void)
{
	static const char *const cust[] = {"customer_id", "id", NULL};
	C360Change *ch;
	char	   *error;

	use(C360_CUSTOMERS, cust);

	/* create, with the schema and without (schemas.enable=false) */
	ch = ok(PG_KEY, WRAP(PG_SCHEMA, PG_CREATE_PAYLOAD), C360_INSERT);
	check(ch && ch->old == NULL, "a create has no old image", NULL);
	new_is(ch, "customer_id", "1");
	new_is(ch, "first_name", "Anne");
	new_is(ch, "last_name", "Kretchmar");
	new_is(ch, "email", "annek@noanswer.org");
	absent(ch, false, "phone");
	ch = ok("{\"id\": 1}", PG_CREATE_PAYLOAD, C360_INSERT);
	new_is(ch, "customer_id", "1");
	new_is(ch, "email", "annek@noanswer.org");

	/* snapshot read: an insert (an upsert of an existing key) */
	ch = ok(PG_KEY, WRAP(PG_SCHEMA, "{\"before\": null, \"after\": {\"id\": 2, \"first_name\": \"B\", "
							"\"last_name\": \"C\", \"email\": \"b@c\"}, \"source\": "
							PG_SOURCE("1559033904863", "true", "24023128") ", \"op\": \"r\", \"ts_ms\": 1}"),
			C360_INSERT);
	new_is(ch, "customer_id", "2");

	/* update: REPLICA IDENTITY DEFAULT gives the key alone as before */
	ch = ok(PG_KEY, WRAP(PG_SCHEMA, PG_UPDATE_PAYLOAD), C360_UPDATE);
	image_is(ch, true, "customer_id", "1");
	absent(ch, true, "first_name");
	new_is(ch, "first_name", "Anne Marie");
	ch = ok("{\"id\": 1}", PG_UPDATE_PAYLOAD, C360_UPDATE);
	new_is(ch, "first_name", "Anne Marie");

	/* update whose before is null (REPLICA IDENTITY NOTHING): named by the after row's key */
	ch = ok("{\"id\": 1}", "{\"before\": null, \"after\": {\"id\": 1, \"first_name\": \"Anne Marie\", "
			"\"last_name\": \"K\", \"email\": \"a@b\"}, \"op\": \"u\", \"ts_ms\": 1}", C360_UPDATE);
	check(ch && ch->old == NULL, "update without before has no old image", NULL);
	new_is(ch, "customer_id", "1");

	/* delete, then its tombstone (skipped, not dead-lettered) */
	ch = ok(PG_KEY, WRAP(PG_SCHEMA, PG_DELETE_PAYLOAD), C360_DELETE);
	check(ch && ch->new == NULL, "a delete has no new image", NULL);
	image_is(ch, true, "customer_id", "1");
	ch = ok("{\"id\": 1}", PG_DELETE_PAYLOAD, C360_DELETE);
	image_is(ch, true, "customer_id", "1");
	check(decode(PG_KEY, NULL, &ch, &error) == C360_KAFKA_SKIP && ch == NULL && error == NULL,
		  "the tombstone after a delete is skipped", NULL);
	check(decode(NULL, NULL, &ch, &error) == C360_KAFKA_SKIP, "a tombstone without a key is skipped", NULL);

	/* a delete whose before is null (REPLICA IDENTITY NOTHING): the message key names the row */
	ch = ok(PG_KEY, WRAP(PG_SCHEMA, "{\"before\": null, \"after\": null, \"op\": \"d\", \"ts_ms\": 1}"),
			C360_DELETE);
	image_is(ch, true, "customer_id", "1");

	/* truncate: no key, no rows */
	ch = ok(NULL, WRAP(PG_SCHEMA, PG_TRUNCATE_PAYLOAD), C360_TRUNCATE);
	check(ch && ch->old == NULL && ch->new == NULL, "a truncate has no row images", NULL);
	ok(NULL, PG_TRUNCATE_PAYLOAD, C360_TRUNCATE);

	/* a logical decoding message is no row change */
	bad(NULL, WRAP(PG_SCHEMA, PG_MESSAGE_PAYLOAD), "logical decoding message");
}

/* ---- Debezium's MySQL connector documentation: customers (id, first_name, last_name, email) */

#define MY_SOURCE(ts, ts_us, ts_ns, pos, query) \
	"{\"version\": \"2.7.0.Final\", \"connector\": \"mysql\", \"name\": \"mysql-server-1\", " \
	"\"ts_ms\": " ts ", \"ts_us\": " ts_us ", \"ts_ns\": " ts_ns ", \"snapshot\": false, " \
	"\"db\": \"inventory\", \"table\": \"customers\", \"server_id\": 223344, \"gtid\": null, " \
	"\"file\": \"mysql-bin.000003\", \"pos\": " pos ", \"row\": 0, \"thread\": 7, \"query\": \"" query "\"}"

#define MY_SCHEMA \
	"{\"type\": \"struct\", \"fields\": [" \
	"{\"type\": \"struct\", \"fields\": [" PG_ROW_FIELDS "], \"optional\": true, " \
	"\"name\": \"mysql-server-1.inventory.customers.Value\", \"field\": \"before\"}, " \
	"{\"type\": \"struct\", \"fields\": [" PG_ROW_FIELDS "], \"optional\": true, " \
	"\"name\": \"mysql-server-1.inventory.customers.Value\", \"field\": \"after\"}, " \
	"{\"type\": \"struct\", \"fields\": [" \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"version\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"connector\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"name\"}, " \
	"{\"type\": \"int64\", \"optional\": false, \"field\": \"ts_ms\"}, " \
	"{\"type\": \"boolean\", \"optional\": true, \"default\": false, \"field\": \"snapshot\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"db\"}, " \
	"{\"type\": \"string\", \"optional\": true, \"field\": \"table\"}, " \
	"{\"type\": \"int64\", \"optional\": false, \"field\": \"server_id\"}, " \
	"{\"type\": \"string\", \"optional\": true, \"field\": \"gtid\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"file\"}, " \
	"{\"type\": \"int64\", \"optional\": false, \"field\": \"pos\"}, " \
	"{\"type\": \"int32\", \"optional\": false, \"field\": \"row\"}, " \
	"{\"type\": \"int64\", \"optional\": true, \"field\": \"thread\"}, " \
	"{\"type\": \"string\", \"optional\": true, \"field\": \"query\"}], " \
	"\"optional\": false, \"name\": \"io.debezium.connector.mysql.Source\", \"field\": \"source\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"op\"}, " \
	"{\"type\": \"int64\", \"optional\": true, \"field\": \"ts_ms\"}], " \
	"\"optional\": false, \"name\": \"mysql-server-1.inventory.customers.Envelope\"}"

#define MY_KEY \
	"{\"schema\": {\"type\": \"struct\", \"name\": \"mysql-server-1.inventory.customers.Key\", " \
	"\"optional\": false, \"fields\": [{\"field\": \"id\", \"type\": \"int32\", \"optional\": false}]}, " \
	"\"payload\": {\"id\": 1004}}"

#define MY_ANNE "{\"id\": 1004, \"first_name\": \"Anne\", \"last_name\": \"Kretchmar\", \"email\": \"annek@noanswer.org\"}"
#define MY_ANNE_MARIE "{\"id\": 1004, \"first_name\": \"Anne Marie\", \"last_name\": \"Kretchmar\", \"email\": \"annek@noanswer.org\"}"

static void
mysql_docs(void)
{
	static const char *const cust[] = {"customer_id", "id", NULL};
	const char *create = "{\"op\": \"c\", \"ts_ms\": 1465491411815, \"before\": null, \"after\": " MY_ANNE ", "
		"\"source\": " MY_SOURCE("0", "0", "0", "154", "INSERT INTO customers (first_name, last_name, email) VALUES ('Anne', 'Kretchmar', 'annek@noanswer.org')") "}";
	const char *update = "{\"before\": " MY_ANNE ", \"after\": " MY_ANNE_MARIE ", "
		"\"source\": " MY_SOURCE("1465581029100", "1465581029100000", "1465581029100000000", "484", "UPDATE customers SET first_name='Anne Marie' WHERE id=1004") ", "
		"\"op\": \"u\", \"ts_ms\": 1465581029523}";
	const char *delete = "{\"before\": " MY_ANNE_MARIE ", \"after\": null, "
		"\"source\": " MY_SOURCE("1465581902300", "1465581902300000", "1465581902300000000", "805", "DELETE FROM customers WHERE id=1004") ", "
		"\"op\": \"d\", \"ts_ms\": 1465581902461}";
	const char *truncate = "{\"source\": " MY_SOURCE("1465581029100", "1465581029100000", "1465581029100000000", "484", "") ", \"op\": \"t\", \"ts_ms\": 1465581029523}";
	C360Change *ch;

	use(C360_CUSTOMERS, cust);
	ch = ok(MY_KEY, psprintf("{\"schema\": %s, \"payload\": %s}", MY_SCHEMA, create), C360_INSERT);
	new_is(ch, "customer_id", "1004");
	new_is(ch, "first_name", "Anne");
	ch = ok("{\"id\": 1004}", create, C360_INSERT);
	new_is(ch, "customer_id", "1004");

	/* update: binlog_row_image FULL gives the whole before row */
	ch = ok(MY_KEY, psprintf("{\"schema\": %s, \"payload\": %s}", MY_SCHEMA, update), C360_UPDATE);
	image_is(ch, true, "first_name", "Anne");
	new_is(ch, "first_name", "Anne Marie");
	ch = ok("{\"id\": 1004}", update, C360_UPDATE);
	image_is(ch, true, "customer_id", "1004");

	ch = ok(MY_KEY, psprintf("{\"schema\": %s, \"payload\": %s}", MY_SCHEMA, delete), C360_DELETE);
	image_is(ch, true, "customer_id", "1004");
	image_is(ch, true, "first_name", "Anne Marie");
	ok("{\"id\": 1004}", delete, C360_DELETE);

	ok(NULL, psprintf("{\"schema\": %s, \"payload\": %s}", MY_SCHEMA, truncate), C360_TRUNCATE);
	ok(NULL, truncate, C360_TRUNCATE);
}

/* ---- value encodings, on orders (order_id, customer_id, order_status, total_amount numeric,
 * item_count int, channel, created_at, updated_at timestamptz) */

/* A message of table public.orders with the given row field schemas and after row. */
static char *
orders_event(const char *fields, const char *after)
{
	const char *row = psprintf("{\"type\": \"struct\", \"fields\": [%s], \"optional\": true, "
							   "\"name\": \"srv.public.orders.Value\", \"field\": \"%%s\"}", fields);

	return psprintf("{\"schema\": {\"type\": \"struct\", \"fields\": [%s, %s, "
					"{\"type\": \"string\", \"optional\": false, \"field\": \"op\"}, "
					"{\"type\": \"int64\", \"optional\": true, \"field\": \"ts_ms\"}], "
					"\"optional\": false, \"name\": \"srv.public.orders.Envelope\"}, "
					"\"payload\": {\"before\": null, \"after\": %s, \"op\": \"c\", \"ts_ms\": 1}}",
					psprintf(row, "before"), psprintf(row, "after"), after);
}

static char *
bare_event(const char *after)
{
	return psprintf("{\"before\": null, \"after\": %s, \"op\": \"r\", \"ts_ms\": 1}", after);
}

#define KEYS "{\"type\": \"string\", \"optional\": false, \"field\": \"order_id\"}, " \
	"{\"type\": \"string\", \"optional\": false, \"field\": \"customer_id\"}, "
#define FIELD(type, name, field) \
	"{\"type\": \"" type "\", \"optional\": true, \"name\": \"" name "\", \"version\": 1, \"field\": \"" field "\"}"
#define DECIMAL(scale, field) \
	"{\"type\": \"bytes\", \"optional\": true, \"name\": \"org.apache.kafka.connect.data.Decimal\", " \
	"\"version\": 1, \"parameters\": {\"scale\": \"" scale "\", \"connect.decimal.precision\": \"12\"}, " \
	"\"field\": \"" field "\"}"
#define IDS "\"order_id\": \"o1\", \"customer_id\": \"c1\", "

/* total_amount of an order event with this schema and value */
static void
amount_is(const char *field_schema, const char *value, const char *want)
{
	new_is(ok("{\"order_id\": \"o1\"}", orders_event(psprintf(KEYS "%s", field_schema),
												   psprintf("{" IDS "\"total_amount\": %s}", value)),
			  C360_INSERT), "total_amount", want);
}

static void
created_is(const char *field_schema, const char *value, const char *want)
{
	new_is(ok("{\"order_id\": \"o1\"}", orders_event(psprintf(KEYS "%s", field_schema),
												   psprintf("{" IDS "\"created_at\": %s}", value)),
			  C360_INSERT), "created_at", want);
}

static void
decimals(void)
{
	use(C360_ORDERS, NULL);

	/* precise: base64 of the unscaled two's-complement bytes, the scale in the schema */
	amount_is(DECIMAL("2", "total_amount"), "\"BOI=\"", "12.50");
	amount_is(DECIMAL("2", "total_amount"), "\"+x4=\"", "-12.50");
	amount_is(DECIMAL("2", "total_amount"), "\"AA==\"", "0.00");
	amount_is(DECIMAL("0", "total_amount"), "\"AIA=\"", "128");
	amount_is(DECIMAL("0", "total_amount"), "\"gA==\"", "-128");
	amount_is(DECIMAL("0", "total_amount"), "\"/4A=\"", "-128");
	amount_is(DECIMAL("3", "total_amount"), "\"/w==\"", "-0.001");
	amount_is(DECIMAL("4", "total_amount"), "\"BQ==\"", "0.0005");
	amount_is(DECIMAL("-3", "total_amount"), "\"BQ==\"", "5000");
	amount_is(DECIMAL("4", "total_amount"), "\"AY7pD/bDc+DuTj8K0g==\"", "12345678901234567890123456.7890");
	amount_is(DECIMAL("4", "total_amount"), "\"/nEW8Ak8jB8RscD1Lg==\"", "-12345678901234567890123456.7890");
	amount_is(DECIMAL("0", "total_amount"), "\"AIAAAAAAAAAA\"", "9223372036854775808");
	/* the scale as a number works too */
	amount_is("{\"type\": \"bytes\", \"name\": \"org.apache.kafka.connect.data.Decimal\", "
			  "\"parameters\": {\"scale\": 2}, \"field\": \"total_amount\"}", "\"AYag\"", "1000.00");
	/* PostgreSQL's NUMERIC without scale: VariableScaleDecimal, with or without its schema */
	amount_is("{\"type\": \"struct\", \"fields\": [{\"type\": \"int32\", \"optional\": false, \"field\": \"scale\"}, "
			  "{\"type\": \"bytes\", \"optional\": false, \"field\": \"value\"}], \"optional\": true, "
			  "\"name\": \"io.debezium.data.VariableScaleDecimal\", \"version\": 1, \"field\": \"total_amount\"}",
			  "{\"scale\": 3, \"value\": \"AYaf\"}", "99.999");
	new_is(ok(NULL, bare_event("{" IDS "\"total_amount\": {\"scale\": 1, \"value\": \"AYag\"}}"), C360_INSERT),
		   "total_amount", "10000.0");
	/* decimal.handling.mode string and double */
	amount_is("{\"type\": \"string\", \"optional\": true, \"field\": \"total_amount\"}", "\"12.50\"", "12.50");
	amount_is("{\"type\": \"double\", \"optional\": true, \"field\": \"total_amount\"}", "12.5", "12.5");
	amount_is("{\"type\": \"double\", \"optional\": true, \"field\": \"total_amount\"}", "0.1", "0.1");
	new_is(ok(NULL, bare_event("{" IDS "\"total_amount\": \"12.50\"}"), C360_INSERT), "total_amount", "12.50");
	new_is(ok(NULL, bare_event("{" IDS "\"total_amount\": \"NAN\"}"), C360_INSERT), "total_amount", "NAN");
	new_is(ok(NULL, bare_event("{" IDS "\"total_amount\": 99.99}"), C360_INSERT), "total_amount", "99.99");
	new_is(ok(NULL, bare_event("{" IDS "\"total_amount\": 1e3}"), C360_INSERT), "total_amount", "1000");
	new_is(ok(NULL, bare_event("{" IDS "\"total_amount\": null}"), C360_INSERT), "total_amount", NULL);

	/* a precise decimal without its schema cannot be read: no scale */
	bad("{\"order_id\": \"o1\"}", bare_event("{" IDS "\"total_amount\": \"BOI=\"}"), "whose scale is only in the message's schema");
	bad(NULL, bare_event("{" IDS "\"total_amount\": \"AYag\"}"), "decimal.handling.mode precise");
	/* ... and neither with a schema that names no Decimal */
	bad(NULL, orders_event(KEYS "{\"type\": \"bytes\", \"optional\": true, \"field\": \"total_amount\"}",
						   "{" IDS "\"total_amount\": \"BOI=\"}"), "decimal as base64 bytes");
	bad(NULL, orders_event(KEYS "{\"type\": \"bytes\", \"name\": \"org.apache.kafka.connect.data.Decimal\", "
						   "\"field\": \"total_amount\"}", "{" IDS "\"total_amount\": \"BOI=\"}"),
		"has no integer parameters.scale");
	bad(NULL, orders_event(KEYS DECIMAL("2", "total_amount"), "{" IDS "\"total_amount\": \"not base64!\"}"),
		"not the base64 of a decimal's unscaled bytes");
	bad(NULL, orders_event(KEYS DECIMAL("2", "total_amount"), "{" IDS "\"total_amount\": \"\"}"),
		"not the base64");
	bad(NULL, orders_event(KEYS DECIMAL("2", "total_amount"), "{" IDS "\"total_amount\": 12.5}"),
		"is a Decimal but a JSON number, not base64 text");
	bad(NULL, orders_event(KEYS DECIMAL("5000", "total_amount"), "{" IDS "\"total_amount\": \"BOI=\"}"),
		"decimal scale 5000");
	bad(NULL, bare_event("{" IDS "\"total_amount\": {\"scale\": \"x\", \"value\": \"BOI=\"}}"),
		"not a VariableScaleDecimal");
	bad(NULL, bare_event("{" IDS "\"total_amount\": [1]}"), "JSON array");
}

static void
temporals(void)
{
	use(C360_ORDERS, NULL);

	/* io.debezium.time.Timestamp / MicroTimestamp / NanoTimestamp: ms, us, ns since 1970 (UTC) */
	created_is(FIELD("int64", "io.debezium.time.Timestamp", "created_at"), "1714557600123",
			   "2024-05-01 10:00:00.123000+00");
	created_is(FIELD("int64", "org.apache.kafka.connect.data.Timestamp", "created_at"), "1714557600123",
			   "2024-05-01 10:00:00.123000+00");
	created_is(FIELD("int64", "io.debezium.time.MicroTimestamp", "created_at"), "1714557600123456",
			   "2024-05-01 10:00:00.123456+00");
	created_is(FIELD("int64", "io.debezium.time.NanoTimestamp", "created_at"), "1714557600123456789",
			   "2024-05-01 10:00:00.123456789+00");
	created_is(FIELD("int64", "io.debezium.time.MicroTimestamp", "created_at"), "-1",
			   "1969-12-31 23:59:59.999999+00");
	created_is(FIELD("int64", "io.debezium.time.MicroTimestamp", "created_at"), "-315619200000000",
			   "1960-01-01 00:00:00.000000+00");
	/* the documentation's example: DATETIME 2018-06-20 06:37:03 */
	created_is(FIELD("int64", "io.debezium.time.Timestamp", "created_at"), "1529476623000",
			   "2018-06-20 06:37:03.000000+00");
	/* the TIMESTAMP example, 2018-06-20 15:13:16.945104 */
	created_is(FIELD("int64", "io.debezium.time.MicroTimestamp", "created_at"), "1529507596945104",
			   "2018-06-20 15:13:16.945104+00");
	/* io.debezium.time.Date and Kafka's Date: days since 1970, midnight UTC */
	created_is(FIELD("int32", "io.debezium.time.Date", "created_at"), "19844", "2024-05-01 00:00:00.000000+00");
	created_is(FIELD("int32", "org.apache.kafka.connect.data.Date", "created_at"), "-1",
			   "1969-12-31 00:00:00.000000+00");
	/* io.debezium.time.ZonedTimestamp: ISO-8601 text, as it is */
	created_is(FIELD("string", "io.debezium.time.ZonedTimestamp", "created_at"), "\"2018-06-20T13:37:03Z\"",
			   "2018-06-20T13:37:03Z");
	created_is(FIELD("string", "io.debezium.time.ZonedTimestamp", "created_at"), "\"2024-05-01T10:00:00.123456Z\"",
			   "2024-05-01T10:00:00.123456Z");
	/* PostgreSQL's infinity */
	created_is(FIELD("int64", "io.debezium.time.MicroTimestamp", "created_at"), "9223372036825200000", "infinity");
	created_is(FIELD("int64", "io.debezium.time.MicroTimestamp", "created_at"), "-9223372036832400000", "-infinity");
	/* a date into a text column is the date alone */
	new_is(ok(NULL, orders_event(KEYS FIELD("int32", "io.debezium.time.Date", "channel"),
								 "{" IDS "\"channel\": 19844}"), C360_INSERT), "channel", "2024-05-01");

	/* without a schema: by magnitude (days, ms, us, ns) into a timestamp column */
	new_is(ok(NULL, bare_event("{" IDS "\"created_at\": 19844}"), C360_INSERT), "created_at",
		   "2024-05-01 00:00:00.000000+00");
	new_is(ok(NULL, bare_event("{" IDS "\"created_at\": 1714557600123}"), C360_INSERT), "created_at",
		   "2024-05-01 10:00:00.123000+00");
	new_is(ok(NULL, bare_event("{" IDS "\"created_at\": 1714557600123456}"), C360_INSERT), "created_at",
		   "2024-05-01 10:00:00.123456+00");
	new_is(ok(NULL, bare_event("{" IDS "\"created_at\": 1714557600123456789}"), C360_INSERT), "created_at",
		   "2024-05-01 10:00:00.123456789+00");
	new_is(ok(NULL, bare_event("{" IDS "\"created_at\": -315619200000000}"), C360_INSERT), "created_at",
		   "1960-01-01 00:00:00.000000+00");
	new_is(ok(NULL, bare_event("{" IDS "\"created_at\": \"2024-05-01T10:00:00Z\"}"), C360_INSERT), "created_at",
		   "2024-05-01T10:00:00Z");
	/* a number with a fraction: epoch milliseconds, as format json reads it */
	new_is(ok(NULL, bare_event("{" IDS "\"created_at\": 1714557600123.5}"), C360_INSERT), "created_at",
		   "2024-05-01 10:00:00.123500+00");
	/* an integer into a text column is the integer */
	new_is(ok(NULL, bare_event("{" IDS "\"channel\": 1714557600123}"), C360_INSERT), "channel", "1714557600123");

	bad(NULL, orders_event(KEYS FIELD("int64", "io.debezium.time.Timestamp", "created_at"),
						   "{" IDS "\"created_at\": \"2024-05-01\"}"), "holds milliseconds since 1970 but is a JSON string");
	bad(NULL, orders_event(KEYS FIELD("int32", "io.debezium.time.Date", "created_at"),
						   "{" IDS "\"created_at\": 3000000}"), "3000000 days since 1970, out of range (years 1 to 9999)");
	bad(NULL, orders_event(KEYS FIELD("int64", "io.debezium.time.Timestamp", "created_at"),
						   "{" IDS "\"created_at\": 253402300800000}"), "out of range");
	bad(NULL, orders_event(KEYS FIELD("int64", "io.debezium.time.MicroTimestamp", "created_at"),
						   "{" IDS "\"created_at\": -62135596800000001}"), "out of range");
	bad(NULL, bare_event("{" IDS "\"created_at\": -2900000}"), "the unit is taken from the magnitude");
}

/* booleans and integers of every width; the TOAST placeholder */
static void
scalars(void)
{
	static const char *const renamed[] = {"order_status", "status", "item_count", "qty", "channel", "gift", NULL};
	C360Change *ch;

	use(C360_ORDERS, renamed);
	ch = ok(NULL, orders_event(KEYS "{\"type\": \"string\", \"optional\": true, \"field\": \"status\"}, "
							   "{\"type\": \"int16\", \"optional\": true, \"field\": \"qty\"}, "
							   "{\"type\": \"boolean\", \"optional\": true, \"field\": \"gift\"}",
							   "{" IDS "\"status\": \"paid\", \"qty\": 3, \"gift\": true}"), C360_INSERT);
	new_is(ch, "order_status", "paid");
	new_is(ch, "item_count", "3");
	new_is(ch, "channel", "true");
	ch = ok(NULL, bare_event("{" IDS "\"status\": \"x\", \"qty\": -128, \"gift\": false}"), C360_INSERT);
	new_is(ch, "item_count", "-128");
	new_is(ch, "channel", "false");
	new_is(ok(NULL, orders_event(KEYS "{\"type\": \"int8\", \"field\": \"qty\"}", "{" IDS "\"qty\": 127, \"status\": \"s\", \"gift\": null}"),
			  C360_INSERT), "item_count", "127");
	new_is(ok(NULL, orders_event(KEYS "{\"type\": \"int32\", \"field\": \"qty\"}", "{" IDS "\"qty\": 2147483647, \"status\": \"s\", \"gift\": null}"),
			  C360_INSERT), "item_count", "2147483647");
	/* int64: exact beyond a double's 53 bits (the apply path refuses it for an int column) */
	new_is(ok(NULL, orders_event(KEYS "{\"type\": \"int64\", \"field\": \"qty\"}", "{" IDS "\"qty\": 9223372036854775807, \"status\": \"s\", \"gift\": null}"),
			  C360_INSERT), "item_count", "9223372036854775807");
	/* an int64 order id into the text key column */
	use(C360_ORDERS, NULL);
	new_is(ok(NULL, orders_event("{\"type\": \"int64\", \"optional\": false, \"field\": \"order_id\"}",
								 "{\"order_id\": -9223372036854775808, \"customer_id\": \"c\"}"), C360_INSERT),
		   "order_id", "-9223372036854775808");

	/* a mapped field missing from the after row: the mapping is wrong */
	use(C360_ORDERS, renamed);
	bad(NULL, bare_event("{" IDS "\"status\": \"x\", \"qty\": 1}"), "no field gift in the after row, which input column channel is mapped to");
	/* a field a mapping names feeds only its column */
	ch = ok(NULL, bare_event("{" IDS "\"status\": \"x\", \"qty\": 1, \"gift\": true, \"order_status\": \"no\", \"item_count\": 9}"), C360_INSERT);
	new_is(ch, "order_status", "x");
	new_is(ch, "item_count", "1");

	/* an unchanged TOASTed value (Debezium's placeholder) keeps the stored one */
	use(C360_ORDERS, NULL);
	ch = ok(NULL, "{\"before\": {\"order_id\": \"o1\"}, \"after\": {" IDS "\"order_status\": \"__debezium_unavailable_value\", "
			"\"channel\": \"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==\", \"item_count\": 2}, \"op\": \"u\"}", C360_UPDATE);
	absent(ch, false, "order_status");
	absent(ch, false, "channel");
	new_is(ch, "item_count", "2");
}

/* the message key supplies the key column when the row images lack it */
static void
keys(void)
{
	static const char *const renamed[] = {"order_id", "id", NULL};
	const char *del = "{\"before\": null, \"after\": null, \"op\": \"d\"}";
	C360Change *ch;

	use(C360_ORDERS, renamed);
	image_is(ok("{\"id\": \"o7\"}", del, C360_DELETE), true, "order_id", "o7");
	image_is(ok("{\"schema\": {\"type\": \"struct\", \"fields\": [{\"type\": \"int64\", \"optional\": false, "
				"\"field\": \"id\"}]}, \"payload\": {\"id\": 77}}", del, C360_DELETE), true, "order_id", "77");
	/* a single-column key of another name is still the key */
	image_is(ok("{\"ORDER_NO\": \"o8\"}", del, C360_DELETE), true, "order_id", "o8");
	/* a before row without the key column (a partial replica identity) */
	ch = ok("{\"id\": \"o9\"}", "{\"before\": {\"customer_id\": \"c1\"}, \"after\": null, \"op\": \"d\"}", C360_DELETE);
	image_is(ch, true, "order_id", "o9");
	image_is(ch, true, "customer_id", "c1");
	/* an update whose after lacks the key (a partial image) and whose before is null */
	use(C360_ORDERS, NULL);
	ch = ok("{\"order_id\": \"o10\"}", "{\"before\": null, \"after\": {\"customer_id\": \"c1\", \"order_status\": \"x\"}, \"op\": \"u\"}",
			C360_UPDATE);
	new_is(ch, "order_id", "o10");
	/* the row images' key wins: the message key is not read */
	use(C360_ORDERS, renamed);
	image_is(ok("not json", "{\"before\": {\"id\": \"o11\"}, \"after\": null, \"op\": \"d\"}", C360_DELETE), true,
			 "order_id", "o11");

	bad(NULL, del, "neither row image has the key column order_id, and the message has no key");
	bad("not json", del, "the message key is not JSON");
	bad("[1]", del, "the message key is a JSON array");
	bad("{\"a\": 1, \"b\": 2}", del, "the message key has no field id");
	bad("{\"id\": null}", del, "the key column order_id is null");
	bad("{\"id\": \"o1\"}", "{\"before\": {\"id\": null}, \"after\": null, \"op\": \"d\"}", "the key column order_id is null");
	bad(NULL, "{\"before\": null, \"after\": {\"id\": null, \"customer_id\": \"c\"}, \"op\": \"c\"}",
		"the key column order_id is null");
}

static void
bad_envelopes(void)
{
	char	   *big;

	use(C360_ORDERS, NULL);
	bad(NULL, "{\"before\": null,", "bad JSON");
	bad(NULL, "", "bad JSON");
	bad(NULL, "[1, 2]", "a JSON array, not an object");
	bad(NULL, "{\"order_id\": \"o1\", \"customer_id\": \"c1\"}", "no \"op\" field: not a Debezium change event");
	bad(NULL, "{\"schema\": null, \"payload\": null}", "the value's payload is a JSON null");
	bad(NULL, "{\"schema\": {}, \"payload\": \"text\"}", "the value's payload is a JSON string");
	bad(NULL, "{\"op\": 1, \"after\": {}}", "field \"op\" is a JSON number");
	bad(NULL, "{\"op\": \"x\", \"after\": {}}", "unknown op \"x\"");
	bad(NULL, "{\"op\": \"cc\", \"after\": {}}", "unknown op \"cc\"");
	bad(NULL, "{\"op\": \"\", \"after\": {}}", "unknown op \"\"");
	bad(NULL, "{\"op\": \"c\", \"before\": null}", "needs an after row");
	bad(NULL, "{\"op\": \"c\", \"after\": null}", "needs an after row");
	bad(NULL, "{\"op\": \"u\", \"before\": {\"order_id\": \"o\"}}", "update event needs an after row");
	bad(NULL, "{\"op\": \"c\", \"after\": \"o1\"}", "field \"after\" is a JSON string, not a row object");
	bad(NULL, "{\"op\": \"d\", \"before\": [1]}", "field \"before\" is a JSON array");
	bad(NULL, "{\"op\": \"c\", \"after\": {\"order_id\": \"o1\"}}", "required field \"customer_id\" is missing");
	bad(NULL, "{\"op\": \"c\", \"after\": {\"order_id\": \"o1\", \"customer_id\": null}}", "required field \"customer_id\" is null");
	bad(NULL, "{\"op\": \"c\", \"after\": {\"order_id\": \"o1\", \"customer_id\": {\"a\": 1}}}", "is a JSON object");
	bad(NULL, "{\"op\": \"c\", \"op\": \"d\"}", "duplicate");
	big = psprintf("{\"op\": \"c\", \"after\": {\"order_id\": \"o\", \"customer_id\": \"%0*d\"}}", 2 * MAXB, 0);
	bad(NULL, big, "more than the");
}

/*
 * The decoder's shortcuts (a schema kept from the message before, the envelope's source
 * passed over) give what parsing the whole value gives.
 */
static void
shortcuts(void)
{
	const char *row = "{" IDS "\"total_amount\": \"BOI=\"}";
	char	   *v;

	use(C360_ORDERS, NULL);
	/* the same schema text twice, then another scale for the same field: the new one counts */
	amount_is(DECIMAL("2", "total_amount"), "\"BOI=\"", "12.50");
	amount_is(DECIMAL("2", "total_amount"), "\"BOI=\"", "12.50");
	amount_is(DECIMAL("3", "total_amount"), "\"BOI=\"", "1.250");
	amount_is(DECIMAL("2", "total_amount"), "\"BOI=\"", "12.50");
	/* the wrapper's members the other way round, pretty-printed, with spaces */
	v = orders_event(KEYS DECIMAL("1", "total_amount"), row);
	new_is(ok(NULL, psprintf("{\"payload\": %.*s, \"schema\": %.*s}",
							 (int) (strlen(strstr(v, "\"payload\": ") + 11) - 1), strstr(v, "\"payload\": ") + 11,
							 (int) (strstr(v, ", \"payload\"") - (v + 11)), v + 11), C360_INSERT),
		   "total_amount", "125.0");
	new_is(ok(NULL, psprintf(" \n{ \"schema\" :\n%.*s ,\n \"payload\" : %.*s\n}\n ",
							 (int) (strstr(v, ", \"payload\"") - (v + 11)), v + 11,
							 (int) (strlen(strstr(v, "\"payload\": ") + 11) - 1), strstr(v, "\"payload\": ") + 11),
			  C360_INSERT), "total_amount", "125.0");
	/* a source whose strings hold brackets, quotes and commas; sources in other places */
	new_is(ok(NULL, "{\"source\": {\"query\": \"INSERT INTO t VALUES ('}', \\\"{[,\\\", ']')\", \"a\": [1, {\"b\": null}]}, "
			  "\"before\": null, \"after\": {" IDS "\"channel\": \"web\"}, \"op\": \"c\"}", C360_INSERT),
		   "channel", "web");
	new_is(ok(NULL, "{\"op\": \"c\", \"after\": {" IDS "\"channel\": \"app\", \"source\": \"x\"}, \"source\": 1}", C360_INSERT),
		   "channel", "app");
	/* what the whole value's parse refuses is refused the same */
	bad(NULL, psprintf("%.*s, \"after\": {\"order_id\": \"o\", \"order_id\": \"p\"}}", (int) strlen(v) - 2, v),
		"duplicate");
	bad(NULL, psprintf("%.*s{\"op\": \"c\", \"after\": {\"order_id\": \"o\",}}}", (int) (strstr(v, "\"payload\": ") + 11 - v), v),
		"bad JSON");
	bad(NULL, psprintf("%.*snull}", (int) (strstr(v, "\"payload\": ") + 11 - v), v), "the value's payload is a JSON null");
	bad(NULL, psprintf("%s x", v), "bad JSON");
	bad(NULL, "{\"source\": {}, \"op\": \"t\", \"op\": \"c\"}", "duplicate");
	bad(NULL, "{\"op\": \"c\", \"after\": {\"order_id\": \"o\"}, \"after\": {\"order_id\": \"o\"}}", "duplicate");
	bad(NULL, "{\"source\": {}, \"op\": \"t\",}", "bad JSON");
	bad(NULL, "{\"source\": {}, \"op\": \"t\"} {}", "bad JSON");
	bad(NULL, "{\"source\": {\"a\": [}, \"op\": \"t\"}", "bad JSON");
	/* a member's name with an escape is read as the whole value's parse reads it */
	ok(NULL, "{\"source\": {}, \"\\u006fp\": \"t\"}", C360_TRUNCATE);
	{
		/* bytes after a NUL are bytes too */
		static const char nul[] = "{\"source\": {}, \"op\": \"t\"}\0}";
		C360Change *ch;
		char	   *error;

		check(c360_debezium_decode(input, NULL, 0, nul, sizeof(nul) - 1, MAXB, map, &ch, &error) ==
			  C360_KAFKA_DEAD_LETTER && strstr(error, "bad JSON"), "a NUL and more after the envelope", error);
	}
	bad(NULL, "{\"source\": {\"a\": 1}, \"op\": \"c\", \"after\": {\"order_id\": \"o\", \"customer_id\": \"\xff\"}}", "bad JSON");
}

/* option "format" by name */
static void
formats(void)
{
	C360KafkaFormat f;

	check(c360_kafka_format_by_name("json", &f) && f == C360_KAFKA_JSON, "format json", NULL);
	check(c360_kafka_format_by_name("debezium", &f) && f == C360_KAFKA_DEBEZIUM, "format debezium", NULL);
	check(c360_kafka_format_by_name("segment", &f) && f == C360_KAFKA_SEGMENT, "format segment", NULL);
	check(!c360_kafka_format_by_name("avro", &f), "format avro is unknown", NULL);
	check(!c360_kafka_format_by_name("Debezium", &f), "format names are lower case", NULL);
}

int
main(void)
{
	postgresql_docs();
	mysql_docs();
	decimals();
	temporals();
	scalars();
	keys();
	bad_envelopes();
	shortcuts();
	formats();
	if (failures > 0)
	{
		printf("%d decoder checks failed\n", failures);
		return 1;
	}
	printf("ok - debezium_decode_test\n");
	return 0;
}
