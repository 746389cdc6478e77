/*-------------------------------------------------------------------------
 * debezium_decode.c
 *	  A Debezium change event as a change record of the input its topic is mapped
 *	  to (Kafka source option "format": "debezium").
 *
 *	  The value is Debezium's envelope, as Kafka Connect's JSON converter writes it:
 *	  {"schema": ..., "payload": {"before", "after", "op", "source", "ts_ms"}} with
 *	  schemas enabled, the bare payload without.  op c (create) and r (snapshot read)
 *	  are inserts (an existing key is upserted), u an update, d a delete, t a
 *	  truncate of the input.  The key is the JSON document of the row's primary key;
 *	  it is read only when the row images lack the input's key column (a delete
 *	  whose before is null).  The null value that follows a delete (a tombstone, for
 *	  log compaction) is skipped.
 *
 *	  Values follow Debezium's encodings: decimals (decimal.handling.mode precise:
 *	  base64 of the unscaled two's-complement bytes, scale in the schema; or
 *	  VariableScaleDecimal; or string and double, which are plain JSON), and the
 *	  temporal semantic types (days, milliseconds, microseconds, nanoseconds since
 *	  1970; ISO text).  The field's schema names its semantic type; without one the
 *	  target column's type decides (see value_text).  As in kafka_decode.c, casting
 *	  is left to the apply path, which dead-letters what does not cast.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <jansson.h>

#include "catalog/pg_type_d.h"
#include "common/base64.h"

#include "decode/debezium_decode.h"

/*
 * What Debezium sends in place of an unchanged TOASTed value (its default
 * unavailable.value.placeholder), as text and as base64 bytes: the column is left
 * out of the row image, so the mirror keeps its stored value.
 */
#define UNAVAILABLE			"__debezium_unavailable_value"
#define UNAVAILABLE_BASE64	"X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="

/* Days since 1970 of 0001-01-01 and 9999-12-31 */
#define MIN_EPOCH_DAYS		(-719162)
#define MAX_EPOCH_DAYS		2932896

/* PostgreSQL's +-infinity timestamps, as Debezium's PostgreSQL connector sends them */
#define INFINITY_STAMP		INT64CONST(9223372036825200000)
#define NEG_INFINITY_STAMP	INT64CONST(-9223372036832400000)

/* The largest precise decimal decoded: 1,024 bytes (some 2,460 digits), scale +-1,000 */
#define MAX_DECIMAL_BYTES	1024
#define MAX_DECIMAL_SCALE	1000

/* The semantic types whose values need decoding; others are read as they are. */
typedef enum Semantic
{
	PLAIN,
	DECIMAL,					/* base64 unscaled bytes, scale in the schema */
	VARIABLE_DECIMAL,			/* {"scale": s, "value": base64 unscaled bytes} */
	EPOCH_DAYS,
	EPOCH_MS,
	EPOCH_US,
	EPOCH_NS
} Semantic;

static const struct
{
	const char *name;
	Semantic	semantic;
}			semantics[] =
{
	{"org.apache.kafka.connect.data.Decimal", DECIMAL},
	{"io.debezium.data.VariableScaleDecimal", VARIABLE_DECIMAL},
	{"io.debezium.time.Date", EPOCH_DAYS},
	{"org.apache.kafka.connect.data.Date", EPOCH_DAYS},
	{"io.debezium.time.Timestamp", EPOCH_MS},
	{"org.apache.kafka.connect.data.Timestamp", EPOCH_MS},
	{"io.debezium.time.MicroTimestamp", EPOCH_US},
	{"io.debezium.time.NanoTimestamp", EPOCH_NS},
};

/* Per epoch unit: its name and how many make a second (days: seconds per day, negated). */
static const struct
{
	const char *name;
	int64		per_second;
}			units[] =
{
	[EPOCH_DAYS] = {"days", -86400},
	[EPOCH_MS] = {"milliseconds", 1000},
	[EPOCH_US] = {"microseconds", 1000000},
	[EPOCH_NS] = {"nanoseconds", 1000000000},
};

/*
 * What the decoder reads of a value, each a reference of its own (or NULL): the
 * envelope's members and the field schemas of its row struct.
 */
typedef struct Envelope
{
	json_t	   *op;
	json_t	   *before;
	json_t	   *after;
	json_t	   *fields;
} Envelope;

static bool parsed_value(const char *payload, size_t len, size_t max_bytes, Envelope *e,
						 char **error);
static bool quick_value(const char *payload, size_t len, size_t max_bytes, Envelope *e);
static const char *known_schema(const char *p, const char *end, json_t **fields);
static bool read_members(const char *p, const char *end, Envelope *e);
static void release(Envelope *e);
static const char *skip_space(const char *p, const char *end);
static const char *token(const char *p, const char *end, const char *tok);
static const char *skip_value(const char *p, const char *end);
static bool envelope_change(const C360Input *in, Envelope *e, const char *key, size_t keylen,
							char *const *paths, C360Change *ch, char **error);
static bool read_op(json_t *v, C360Op *op, char **error);
static bool row_image(json_t *v, const char *name, json_t **image, char **error);
static json_t *row_schema(json_t *schema);
static json_t *field_schema(json_t *fields, const char *path);
static bool row_tuple(const C360Input *in, json_t *image, json_t *fields, char *const *paths,
					  bool whole, C360Tuple **t, char **error);
static bool unavailable(json_t *v);
static bool value_text(const C360Input *in, int col, const char *field, json_t *v, json_t *schema,
					   char **text, char **error);
static Semantic semantic_of(json_t *schema);
static bool temporal_text(const char *field, json_t *v, Semantic unit, bool guessed, Oid type,
						  char **text, char **error);
static Semantic unit_by_magnitude(int64 n);
static bool decimal_text(const char *field, json_t *v, json_t *schema, char **text, char **error);
static bool variable_decimal_text(const char *field, json_t *v, char **text, char **error);
static bool unscaled_text(const char *field, const char *b64, size_t len, int64 scale,
						  char **text, char **error);
static char *twos_complement_digits(unsigned char *bytes, int n, bool *negative);
static char *with_scale(const char *digits, bool negative, int scale);
static bool base64_not_number(json_t *v);
static bool key_filled(const C360Input *in, C360Change *ch, const char *key, size_t keylen,
					   char *const *paths, char **error);
static bool key_text(const C360Input *in, const char *key, size_t keylen, char *const *paths,
					 char **text, char **error);
static bool key_value(const C360Input *in, json_t *doc, char *const *paths, char **text,
					  char **error);
static bool keys_not_null(const C360Input *in, const C360Change *ch, char **error);

/*
 * Decode one message of the input's topic: a change (*out set), a tombstone to skip,
 * or a dead letter (*error set to the reason).  key may be NULL (no key), payload NULL
 * (a tombstone).  paths as for c360_kafka_decode: per input column, the field of the
 * row images that feeds it, or NULL for the field of the column's name.
 */
C360KafkaOutcome
c360_debezium_decode(C360InputId input, const char *key, size_t keylen,
					 const char *payload, size_t len, size_t max_bytes,
					 char *const *paths, C360Change **out, char **error)
{
	const C360Input *in = &c360_inputs[input];
	Envelope	e = {0};
	bool		ok;

	*out = NULL;
	*error = NULL;
	/* the delete before it did the work; the tombstone is for Kafka's log compaction */
	if (payload == NULL)
		return C360_KAFKA_SKIP;
	if (!quick_value(payload, len, max_bytes, &e) && !parsed_value(payload, len, max_bytes, &e, error))
		return C360_KAFKA_DEAD_LETTER;
	*out = palloc0(sizeof(C360Change));
	(*out)->input = input;
	ok = envelope_change(in, &e, key, keylen, paths, *out, error);
	release(&e);
	if (!ok)
	{
		*out = NULL;
		return C360_KAFKA_DEAD_LETTER;
	}
	return C360_KAFKA_CHANGE;
}

/*
 * The value parsed whole: the envelope in the schema/payload wrapper or bare.  False
 * with *error set when it is no JSON object, or its payload none.
 */
static bool
parsed_value(const char *payload, size_t len, size_t max_bytes, Envelope *e, char **error)
{
	json_t	   *root = c360_kafka_parse_object(payload, len, max_bytes, error);
	json_t	   *env = root;

	if (root == NULL)
		return false;
	if (json_object_get(root, "payload") != NULL)
	{
		env = json_object_get(root, "payload");
		e->fields = json_incref(row_schema(json_object_get(root, "schema")));
	}
	if (!json_is_object(env))
	{
		c360_kafka_fail(error, "the value's payload is a JSON %s, not a Debezium change event",
						c360_kafka_json_type_name(env));
		json_decref(root);
		release(e);
		return false;
	}
	e->op = json_incref(json_object_get(env, "op"));
	e->before = json_incref(json_object_get(env, "before"));
	e->after = json_incref(json_object_get(env, "after"));
	json_decref(root);
	return true;
}

/*
 * The value parsed the quick way, or false (then it is parsed whole, which gives the
 * same change, or the reason it has none).  Two things cost most and are not needed:
 *
 * - The JSON converter repeats the value's schema in every message, and parsing it
 *   costs several times what the payload does.  The schema of a table's events is the
 *   same text from one message to the next, so its row struct is kept with that text,
 *   and a value {"schema": <that text>, "payload": ...} has only its payload parsed.
 * - Of the envelope, the decoder reads op, before and after.  The rest (source, half
 *   of what remains, and ts_ms) is passed over by its brackets and strings, not parsed
 *   (read_members).
 */
static bool
quick_value(const char *payload, size_t len, size_t max_bytes, Envelope *e)
{
	const char *end = payload + len;
	const char *p;

	if (len > max_bytes)
		return false;
	if ((p = token(payload, end, "{")) && (p = token(p, end, "\"schema\"")) && (p = token(p, end, ":")))
	{
		/* the wrapper: its payload, up to the value's closing brace */
		if ((p = known_schema(skip_space(p, end), end, &e->fields)) && (p = token(p, end, ",")) &&
			(p = token(p, end, "\"payload\"")) && (p = token(p, end, ":")))
		{
			payload = skip_space(p, end);
			while (end > payload && end[-1] != '\0' && strchr(" \t\n\r", end[-1]))
				end--;
			end--;
		}
		if (p == NULL || end <= payload || *end != '}')
		{
			release(e);
			return false;
		}
	}
	return read_members(payload, end, e);
}

/*
 * Past the schema at p, with *fields its row struct (a new reference): the one kept
 * from the last message when its text is the same, else this one parsed and kept.
 * NULL when it is no JSON value.
 */
static const char *
known_schema(const char *p, const char *end, json_t **fields)
{
	static char *text;			/* malloc'd: kept across batches */
	static size_t len;
	static json_t *row;
	const char *schema_end;
	json_error_t jerr;
	json_t	   *root;

	if (text && (size_t) (end - p) > len && memcmp(p, text, len) == 0)
	{
		*fields = json_incref(row);
		return p + len;
	}
	if (!(schema_end = skip_value(p, end)) ||
		!(root = json_loadb(p, schema_end - p, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr)))
		return NULL;
	json_decref(row);
	free(text);
	row = json_incref(row_schema(root));
	json_decref(root);
	len = schema_end - p;
	if ((text = malloc(len)) != NULL)
		memcpy(text, p, len);
	*fields = json_incref(row);
	return schema_end;
}

/*
 * The members op, before and after of the envelope object in text p..end, each parsed
 * from its own text.  The others are passed over by their brackets and strings.  False
 * (and e released) when the text is no object whose members this finds, names a
 * member with an escape, one it reads twice, or "payload" (a wrapper whose members
 * come in another order): then the whole value is parsed.
 */
static bool
read_members(const char *p, const char *end, Envelope *e)
{
	json_error_t jerr;
	bool		closed;

	if (!(p = token(p, end, "{")))
		return false;
	p = skip_space(p, end);
	closed = p < end && *p == '}';
	while (!closed)
	{
		const char *key = p;
		const char *key_end;
		const char *value;
		const char *value_end;
		json_t	  **member = NULL;
		size_t		n;

		if (p >= end || *key != '"' || !(key_end = skip_value(key, end)) ||
			memchr(key, '\\', key_end - key) || !(p = token(key_end, end, ":")) ||
			!(value_end = skip_value(value = skip_space(p, end), end)))
			break;
		n = key_end - key;
		if (n == 4 && memcmp(key, "\"op\"", 4) == 0)
			member = &e->op;
		else if (n == 8 && memcmp(key, "\"before\"", 8) == 0)
			member = &e->before;
		else if (n == 7 && memcmp(key, "\"after\"", 7) == 0)
			member = &e->after;
		else if (n == 9 && memcmp(key, "\"payload\"", 9) == 0)
			break;
		if (member && (*member != NULL ||
					   !(*member = json_loadb(value, value_end - value,
											  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr))))
			break;
		/* a comma and the next member, or the end of the object */
		if ((p = token(value_end, end, ",")) != NULL)
			p = skip_space(p, end);
		else
		{
			p = skip_space(value_end, end);
			closed = true;
		}
	}
	if (closed && p < end && *p == '}' && skip_space(p + 1, end) == end)
		return true;
	release(e);
	return false;
}

static void
release(Envelope *e)
{
	json_decref(e->op);
	json_decref(e->before);
	json_decref(e->after);
	json_decref(e->fields);
	memset(e, 0, sizeof(Envelope));
}

/* Past the spaces JSON allows between tokens. */
static const char *
skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* Past the spaces and the token, or NULL when the token is not next. */
static const char *
token(const char *p, const char *end, const char *tok)
{
	size_t		n = strlen(tok);

	p = skip_space(p, end);
	return (size_t) (end - p) >= n && memcmp(p, tok, n) == 0 ? p + n : NULL;
}

/*
 * Past one JSON value, by its brackets and strings alone, or NULL.  What it passes over
 * is parsed afterwards (or is the text of a schema parsed before), so it only needs to
 * find where a valid value ends.
 */
static const char *
skip_value(const char *p, const char *end)
{
	const char *start = p;
	int			depth = 0;

	if (p < end && *p != '{' && *p != '[' && *p != '"')
	{
		/* a number, true, false or null: up to what may follow it */
		while (p < end && strchr(",}] \t\n\r", *p) == NULL)
			p++;
		return p > start ? p : NULL;
	}
	for (; p < end; p++)
	{
		if (*p == '"')
		{
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			if (p >= end)
				return NULL;
			if (depth == 0)
				return p + 1;
		}
		else if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
	}
	return NULL;
}

/*
 * The envelope as ch's op and row images.  The after image of a create or update must
 * carry every mapped field; the before image holds what the source table's replica
 * identity gives (often only the key).
 */
static bool
envelope_change(const C360Input *in, Envelope *e, const char *key, size_t keylen,
				char *const *paths, C360Change *ch, char **error)
{
	json_t	   *before;
	json_t	   *after;

	if (!read_op(e->op, &ch->op, error))
		return false;
	if (ch->op == C360_TRUNCATE)
		return true;
	if (!row_image(e->before, "before", &before, error) || !row_image(e->after, "after", &after, error))
		return false;
	if (ch->op != C360_DELETE && after == NULL)
		return c360_kafka_fail(error, "a Debezium %s event needs an after row, and its after is null or missing",
							   ch->op == C360_INSERT ? "create or read" : "update");
	if (ch->op != C360_DELETE && !row_tuple(in, after, e->fields, paths, true, &ch->new, error))
		return false;
	if (ch->op != C360_INSERT && before != NULL &&
		!row_tuple(in, before, e->fields, paths, false, &ch->old, error))
		return false;
	if (!key_filled(in, ch, key, keylen, paths, error) || !keys_not_null(in, ch, error))
		return false;
	return ch->op != C360_INSERT || c360_kafka_required_present(in, ch->new, error);
}

/* Debezium's op: c, r, u, d or t. */
static bool
read_op(json_t *v, C360Op *op, char **error)
{
	const char *s = json_string_value(v);

	if (v == NULL)
		return c360_kafka_fail(error, "the value has no \"op\" field: not a Debezium change event");
	if (s == NULL)
		return c360_kafka_fail(error, "field \"op\" is a JSON %s, not one of c, r, u, d, t",
							   c360_kafka_json_type_name(v));
	if (json_string_length(v) == 1)
		switch (s[0])
		{
			case 'c':
			case 'r':
				*op = C360_INSERT;
				return true;
			case 'u':
				*op = C360_UPDATE;
				return true;
			case 'd':
				*op = C360_DELETE;
				return true;
			case 't':
				*op = C360_TRUNCATE;
				return true;
			case 'm':
				return c360_kafka_fail(error, "op \"m\" is a logical decoding message, not a row change");
		}
	return c360_kafka_fail(error, "unknown op \"%.20s\": Debezium's ops are c, r, u, d and t", s);
}

/* The envelope's member name, v: a row object, or NULL when it is null or missing. */
static bool
row_image(json_t *v, const char *name, json_t **image, char **error)
{
	*image = NULL;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_object(v))
		return c360_kafka_fail(error, "field \"%s\" is a JSON %s, not a row object", name,
							   c360_kafka_json_type_name(v));
	*image = v;
	return true;
}

/* The field schemas of the row struct (the envelope's before/after), or NULL. */
static json_t *
row_schema(json_t *schema)
{
	size_t		i;
	json_t	   *f;

	json_array_foreach(json_object_get(schema, "fields"), i, f)
	{
		const char *name = json_string_value(json_object_get(f, "field"));

		if (name && (strcmp(name, "after") == 0 || strcmp(name, "before") == 0))
			return json_object_get(f, "fields");
	}
	return NULL;
}

/* The schema of the field at a dot-separated path of struct fields, or NULL. */
static json_t *
field_schema(json_t *fields, const char *path)
{
	const char *p = path;

	for (;;)
	{
		const char *dot = strchr(p, '.');
		size_t		n = dot ? (size_t) (dot - p) : strlen(p);
		json_t	   *found = NULL;
		size_t		i;
		json_t	   *f;

		json_array_foreach(fields, i, f)
		{
			json_t	   *name = json_object_get(f, "field");

			if (json_is_string(name) && json_string_length(name) == n &&
				memcmp(json_string_value(name), p, n) == 0)
			{
				found = f;
				break;
			}
		}
		if (found == NULL || dot == NULL)
			return found;
		fields = json_object_get(found, "fields");
		p = dot + 1;
	}
}

/*
 * A row image as a tuple of the input's columns, fed by the fields the mapping names
 * (or of the columns' names).  whole: a mapped field the image lacks is an error (the
 * mapping is wrong), else it is just absent, as most columns of a before image are.
 */
static bool
row_tuple(const C360Input *in, json_t *image, json_t *fields, char *const *paths, bool whole,
		  C360Tuple **t, char **error)
{
	*t = palloc0(sizeof(C360Tuple));
	for (int col = 0; col < in->ncols; col++)
	{
		const char *field;
		json_t	   *v = c360_kafka_column_value(in, image, paths, col, &field);

		if (v == NULL)
		{
			if (whole && paths && paths[col])
				return c360_kafka_fail(error, "no field %s in the after row, which input column %s is mapped to",
									   field, in->cols[col].name);
			continue;
		}
		if (unavailable(v))
			continue;
		(*t)->present[col] = true;
		if (!value_text(in, col, field, v, field_schema(fields, field), &(*t)->values[col], error))
			return false;
	}
	return true;
}

static bool
unavailable(json_t *v)
{
	const char *s = json_string_value(v);

	return s && (strcmp(s, UNAVAILABLE) == 0 || strcmp(s, UNAVAILABLE_BASE64) == 0);
}

/*
 * A field's value as the text its column's input function reads.  The field's schema
 * names its semantic type.  Without one (no schema, or a plain type) the column's type
 * decides: an integer in a timestamp or date column is days, milliseconds,
 * microseconds or nanoseconds since 1970 by its magnitude (unit_by_magnitude); an
 * object in a numeric column is a VariableScaleDecimal; a base64 string there is a
 * precise decimal, which cannot be read without its schema's scale.  The rest is read
 * as format json reads it.
 */
static bool
value_text(const C360Input *in, int col, const char *field, json_t *v, json_t *schema,
		   char **text, char **error)
{
	Oid			type = in->cols[col].type;
	Semantic	semantic = semantic_of(schema);

	*text = NULL;
	if (json_is_null(v))
		return true;
	switch (semantic)
	{
		case DECIMAL:
			return decimal_text(field, v, schema, text, error);
		case VARIABLE_DECIMAL:
			return variable_decimal_text(field, v, text, error);
		case EPOCH_DAYS:
		case EPOCH_MS:
		case EPOCH_US:
		case EPOCH_NS:
			return temporal_text(field, v, semantic, false, type, text, error);
		case PLAIN:
			break;
	}
	if ((type == TIMESTAMPTZOID || type == TIMESTAMPOID || type == DATEOID) && json_is_integer(v))
		return temporal_text(field, v, unit_by_magnitude(json_integer_value(v)), true, type, text,
							 error);
	if (type == NUMERICOID && json_is_object(v))
		return variable_decimal_text(field, v, text, error);
	if (type == NUMERICOID && base64_not_number(v))
		return c360_kafka_fail(error, "field \"%s\" is \"%.40s\", a decimal as base64 bytes "
							   "(decimal.handling.mode precise) whose scale is only in the message's "
							   "schema, which names no Decimal for it; enable the converter's "
							   "schemas or use decimal.handling.mode string or double", field,
							   json_string_value(v));
	return c360_kafka_scalar_text(in, col, field, v, text, error);
}

static Semantic
semantic_of(json_t *schema)
{
	const char *name = json_string_value(json_object_get(schema, "name"));

	for (size_t i = 0; name && i < lengthof(semantics); i++)
		if (strcmp(semantics[i].name, name) == 0)
			return semantics[i].semantic;
	return PLAIN;
}

/*
 * An integer count of unit since 1970-01-01 as UTC text: a date alone ('YYYY-MM-DD')
 * for days into a column that is not a timestamp, else a timestamp at UTC.
 */
static bool
temporal_text(const char *field, json_t *v, Semantic unit, bool guessed, Oid type,
			  char **text, char **error)
{
	int64		per = units[unit].per_second;
	int64		n;
	int64		seconds;
	int64		frac;

	if (!json_is_integer(v))
		return c360_kafka_fail(error, "field \"%s\" holds %s since 1970 but is a JSON %s, not an integer",
							   field, units[unit].name, c360_kafka_json_type_name(v));
	n = json_integer_value(v);
	if (unit != EPOCH_DAYS && (n == INFINITY_STAMP || n == NEG_INFINITY_STAMP))
	{
		*text = pstrdup(n > 0 ? "infinity" : "-infinity");
		return true;
	}
	if (per < 0)
	{
		/* out of range: any number of seconds that the check below refuses */
		seconds = n < MIN_EPOCH_DAYS || n > MAX_EPOCH_DAYS ? C360_MAX_EPOCH_SECONDS + 1 : n * -per;
		frac = 0;
	}
	else
	{
		seconds = n / per;
		frac = n % per;
		if (frac < 0)
		{
			frac += per;
			seconds--;
		}
	}
	if (seconds < C360_MIN_EPOCH_SECONDS || seconds > C360_MAX_EPOCH_SECONDS)
		return c360_kafka_fail(error, "field \"%s\" is " INT64_FORMAT " %s since 1970, out of range (years 1 to 9999)%s",
							   field, n, units[unit].name,
							   guessed ? "; with no schema naming its type the unit is taken from the magnitude" : "");
	*text = c360_kafka_utc_text(seconds, (int32) (frac * (1000000000 / Max(per, 1))));
	if (unit == EPOCH_DAYS && type != TIMESTAMPTZOID && type != TIMESTAMPOID)
		(*text)[10] = '\0';
	return true;
}

/*
 * The unit of an integer in a timestamp column when no schema names it, by magnitude:
 * up to 9999-12-31 in days, else in milliseconds, else in microseconds, else
 * nanoseconds.  Right for days in years 1..9999, milliseconds outside 1969-12-31
 * 23:11:08..1970-01-01 00:48:52, and microseconds and nanoseconds outside 1961-12-21
 * 02:28:20..1978-01-11 21:31:40 (the README's Debezium section states the rule).
 */
static Semantic
unit_by_magnitude(int64 n)
{
	uint64		a = n < 0 ? (uint64) (-(n + 1)) + 1 : (uint64) n;

	if (a <= MAX_EPOCH_DAYS)
		return EPOCH_DAYS;
	if (a <= (uint64) C360_MAX_EPOCH_SECONDS * 1000 + 999)
		return EPOCH_MS;
	if (a <= (uint64) C360_MAX_EPOCH_SECONDS * 1000000 + 999999)
		return EPOCH_US;
	return EPOCH_NS;
}

/* A Decimal: base64 unscaled bytes, the scale in the schema's parameters (text or number). */
static bool
decimal_text(const char *field, json_t *v, json_t *schema, char **text, char **error)
{
	json_t	   *scale = json_object_get(json_object_get(schema, "parameters"), "scale");
	int64		s;
	char	   *end;

	if (json_is_integer(scale))
		s = json_integer_value(scale);
	else if (json_is_string(scale) && json_string_length(scale) > 0)
	{
		s = strtol(json_string_value(scale), &end, 10);
		if (*end != '\0')
			scale = NULL;
	}
	else
		scale = NULL;
	if (scale == NULL)
		return c360_kafka_fail(error, "the schema of field \"%s\" (a Decimal) has no integer parameters.scale",
							   field);
	if (!json_is_string(v))
		return c360_kafka_fail(error, "field \"%s\" is a Decimal but a JSON %s, not base64 text", field,
							   c360_kafka_json_type_name(v));
	return unscaled_text(field, json_string_value(v), json_string_length(v), s, text, error);
}

/* A VariableScaleDecimal: {"scale": s, "value": base64 unscaled bytes}. */
static bool
variable_decimal_text(const char *field, json_t *v, char **text, char **error)
{
	json_t	   *scale = json_object_get(v, "scale");
	json_t	   *value = json_object_get(v, "value");

	if (!json_is_integer(scale) || !json_is_string(value))
		return c360_kafka_fail(error, "field \"%s\" is a JSON %s, not a VariableScaleDecimal "
							   "({\"scale\": integer, \"value\": base64 text})", field,
							   c360_kafka_json_type_name(v));
	return unscaled_text(field, json_string_value(value), json_string_length(value),
						 json_integer_value(scale), text, error);
}

/* The base64 of an unscaled value's big-endian two's-complement bytes, with its scale. */
static bool
unscaled_text(const char *field, const char *b64, size_t len, int64 scale, char **text,
			  char **error)
{
	unsigned char *bytes;
	int			n;
	char	   *digits;
	bool		negative;

	if (scale < -MAX_DECIMAL_SCALE || scale > MAX_DECIMAL_SCALE)
		return c360_kafka_fail(error, "field \"%s\" has decimal scale " INT64_FORMAT ", beyond +-%d",
							   field, scale, MAX_DECIMAL_SCALE);
	if (len > (MAX_DECIMAL_BYTES / 3 + 1) * 4)
		return c360_kafka_fail(error, "field \"%s\" is a decimal of more than %d bytes", field,
							   MAX_DECIMAL_BYTES);
	bytes = palloc(pg_b64_dec_len((int) len) + 1);
	n = len == 0 ? 0 : pg_b64_decode(b64, (int) len, (char *) bytes, pg_b64_dec_len((int) len));
	if (n <= 0)
		return c360_kafka_fail(error, "field \"%s\" is \"%.40s\", not the base64 of a decimal's unscaled bytes",
							   field, b64);
	digits = twos_complement_digits(bytes, n, &negative);
	*text = with_scale(digits, negative, (int) scale);
	return true;
}

/* The magnitude of a big-endian two's-complement integer in decimal digits. */
static char *
twos_complement_digits(unsigned char *bytes, int n, bool *negative)
{
	uint32	   *limbs = palloc0(sizeof(uint32) * (n * 8 / 29 + 2));	/* base 10^9 */
	int			nlimbs = 0;
	StringInfoData buf;

	*negative = (bytes[0] & 0x80) != 0;
	if (*negative)
	{
		/* negate: invert every byte, then add one */
		for (int i = 0; i < n; i++)
			bytes[i] = ~bytes[i];
		for (int i = n - 1; i >= 0 && ++bytes[i] == 0; i--)
			;
	}
	for (int i = 0; i < n; i++)
	{
		uint64		carry = bytes[i];

		for (int j = 0; j < nlimbs; j++)
		{
			uint64		x = (uint64) limbs[j] * 256 + carry;

			limbs[j] = (uint32) (x % 1000000000);
			carry = x / 1000000000;
		}
		if (carry > 0)
			limbs[nlimbs++] = (uint32) carry;
	}
	initStringInfo(&buf);
	appendStringInfo(&buf, "%u", nlimbs > 0 ? limbs[nlimbs - 1] : 0);
	for (int j = nlimbs - 2; j >= 0; j--)
		appendStringInfo(&buf, "%09u", limbs[j]);
	return buf.data;
}

/* Digits of an unscaled value with the decimal point moved scale places left. */
static char *
with_scale(const char *digits, bool negative, int scale)
{
	int			len = strlen(digits);
	int			nzeros = scale < 0 ? -scale : Max(scale - len, 0);
	char	   *zeros = palloc(nzeros + 1);
	const char *sign = negative ? "-" : "";

	memset(zeros, '0', nzeros);
	zeros[nzeros] = '\0';
	if (scale == 0 || (scale < 0 && strcmp(digits, "0") == 0))
		return psprintf("%s%s", sign, digits);
	if (scale < 0)
		return psprintf("%s%s%s", sign, digits, zeros);
	if (len <= scale)
		return psprintf("%s0.%s%s", sign, zeros, digits);
	return psprintf("%s%.*s.%s", sign, len - scale, digits, digits + len - scale);
}

/* A string that is no number but reads as base64: a precise decimal without its scale. */
static bool
base64_not_number(json_t *v)
{
	const char *s = json_string_value(v);
	size_t		len = json_string_length(v);
	char	   *end;
	char	   *bytes;

	if (s == NULL || len == 0 || len > (MAX_DECIMAL_BYTES / 3 + 1) * 4)
		return false;
	(void) strtod(s, &end);
	while (*end == ' ')
		end++;
	if (end != s && *end == '\0')
		return false;
	bytes = palloc(pg_b64_dec_len((int) len) + 1);
	return pg_b64_decode(s, (int) len, bytes, pg_b64_dec_len((int) len)) > 0;
}

/*
 * The input's key column, when the row images lack it, from the message key.  An
 * update needs it in one image, a delete in its old one (a delete whose before is
 * null, as a table with REPLICA IDENTITY NOTHING gives, has only the message key).
 */
static bool
key_filled(const C360Input *in, C360Change *ch, const char *key, size_t keylen,
		   char *const *paths, char **error)
{
	int			kc = in->key_col;
	C360Tuple  *t;

	if (ch->op == C360_DELETE && ch->old == NULL)
		ch->old = palloc0(sizeof(C360Tuple));
	t = ch->op == C360_DELETE ? ch->old : ch->new;
	if (t->present[kc] || (ch->op == C360_UPDATE && ch->old && ch->old->present[kc]))
		return true;
	t->present[kc] = true;
	return key_text(in, key, keylen, paths, &t->values[kc], error);
}

/* The key column's value from the message key: a JSON object, wrapped or bare. */
static bool
key_text(const C360Input *in, const char *key, size_t keylen, char *const *paths, char **text,
		 char **error)
{
	const char *name = in->cols[in->key_col].name;
	json_error_t jerr;
	json_t	   *doc;
	bool		ok;

	if (key == NULL)
		return c360_kafka_fail(error, "neither row image has the key column %s, and the message has no key",
							   name);
	doc = json_loadb(key, keylen, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL)
		return c360_kafka_fail(error, "neither row image has the key column %s, and the message key is not "
							   "JSON (%s): a Debezium key is a JSON object of the primary key's fields",
							   name, jerr.text);
	ok = key_value(in, doc, paths, text, error);
	json_decref(doc);
	return ok;
}

/*
 * The key column's field of a key document: the field the mapping names (or of the
 * column's name), else the one field of a single-column primary key.
 */
static bool
key_value(const C360Input *in, json_t *doc, char *const *paths, char **text, char **error)
{
	json_t	   *fields = json_object_get(json_object_get(doc, "schema"), "fields");
	json_t	   *obj = json_object_get(doc, "payload") ? json_object_get(doc, "payload") : doc;
	const char *field;
	json_t	   *v;

	if (!json_is_object(obj))
		return c360_kafka_fail(error, "neither row image has the key column %s, and the message key is a JSON %s, "
							   "not an object of the primary key's fields",
							   in->cols[in->key_col].name, c360_kafka_json_type_name(obj));
	v = c360_kafka_column_value(in, obj, paths, in->key_col, &field);
	if (v == NULL && json_object_size(obj) == 1)
	{
		void	   *it = json_object_iter(obj);

		field = json_object_iter_key(it);
		v = json_object_iter_value(it);
	}
	if (v == NULL)
		return c360_kafka_fail(error, "neither row image has the key column %s, and the message key has no "
							   "field %s", in->cols[in->key_col].name, field);
	return value_text(in, in->key_col, field, v, field_schema(fields, field), text, error);
}

/* A key sent as null would leave the row unaddressable. */
static bool
keys_not_null(const C360Input *in, const C360Change *ch, char **error)
{
	int			kc = in->key_col;

	if ((ch->old && ch->old->present[kc] && ch->old->values[kc] == NULL) ||
		(ch->new && ch->new->present[kc] && ch->new->values[kc] == NULL))
		return c360_kafka_fail(error, "the key column %s is null", in->cols[kc].name);
	return true;
}
