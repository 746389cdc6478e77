/*-------------------------------------------------------------------------
 * kafka_decode.c
 *	  A Kafka message as a change record.  The value is a JSON object whose fields
 *	  are named like the input's columns (other fields are ignored), or that holds
 *	  them at the paths the table's column mapping names ("properties.product_id":
 *	  field product_id of the object in field properties).  A keyed input
 *	  (all but behavioral_events) takes its key column from the message key, and a
 *	  message with a null value, a tombstone, deletes that key.  What cannot become
 *	  a change comes back as a reason for the dead letter; casting the values is
 *	  left to the apply path, which dead-letters what does not cast.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <time.h>

#include <jansson.h>

#include "catalog/pg_type_d.h"
#include "mb/pg_wchar.h"

#include "decode/kafka_decode.h"

/* Epoch milliseconds of 0001-01-01 and 9999-12-31 23:59:59.999 UTC: what renders as a year. */
#define MIN_EPOCH_MS	(C360_MIN_EPOCH_SECONDS * 1000)
#define MAX_EPOCH_MS	(C360_MAX_EPOCH_SECONDS * 1000 + 999)

/* What a dead letter keeps of a message that is too big to keep whole. */
#define OVERSIZE_KEEP	1024

static bool tombstone(const C360Input *in, C360InputId input, char *key, C360Change **out,
					  char **error);
static bool object_tuple(const C360Input *in, json_t *root, char *const *paths, C360Tuple *t,
						 char **error);
static bool path_claimed(const C360Input *in, char *const *paths, const char *field);
static char *real_text(double d);
static bool epoch_ms_text(const char *field, double ms, char **text, char **error);
static bool key_from_message(const C360Input *in, C360Tuple *t, char *key, char **error);
static bool valid_text(const char *s, size_t len);

/*
 * Decode one message of the input's topic.  True with *out set, or false with *error
 * set to the reason.  key may be NULL (no key), payload NULL (a tombstone).  paths, when
 * not NULL, has an entry per input column: the dot-separated path of the field that
 * feeds it, or NULL for the top-level field of the column's name.
 */
bool
c360_kafka_decode(C360InputId input, const char *key, size_t keylen,
				  const char *payload, size_t len, size_t max_bytes,
				  char *const *paths, C360Change **out, char **error)
{
	const C360Input *in = &c360_inputs[input];
	char	   *keytext = NULL;
	json_t	   *root;
	C360Tuple  *t;
	bool		ok;

	*out = NULL;
	*error = NULL;
	/* events are keyed by whatever the producer partitions by (often the customer) */
	if (input != C360_BEHAVIORAL_EVENTS && key != NULL)
	{
		if (!valid_text(key, keylen))
			return c360_kafka_fail(error, "the message key is not valid UTF-8 text");
		keytext = pnstrdup(key, keylen);
	}
	if (payload == NULL)
		return tombstone(in, input, keytext, out, error);
	if ((root = c360_kafka_parse_object(payload, len, max_bytes, error)) == NULL)
		return false;
	t = palloc0(sizeof(C360Tuple));
	ok = object_tuple(in, root, paths, t, error);
	json_decref(root);
	if (!ok || !key_from_message(in, t, keytext, error) || !c360_kafka_required_present(in, t, error))
		return false;

	/* an insert of a keyed input's existing key is an upsert in the apply path */
	*out = palloc0(sizeof(C360Change));
	(*out)->input = input;
	(*out)->op = C360_INSERT;
	(*out)->new = t;
	return true;
}

/*
 * The message value as a JSON object (the caller decrefs it), or NULL with *error set:
 * over max_bytes, not JSON, or JSON but not an object.
 */
json_t *
c360_kafka_parse_object(const char *payload, size_t len, size_t max_bytes, char **error)
{
	json_error_t jerr;
	json_t	   *root;

	if (len > max_bytes)
	{
		c360_kafka_fail(error, "the message value has %zu bytes, more than the %zu allowed (option max_message_bytes)",
						len, max_bytes);
		return NULL;
	}
	root = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
	{
		c360_kafka_fail(error, "bad JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(root))
	{
		c360_kafka_fail(error, "the message value is a JSON %s, not an object",
						c360_kafka_json_type_name(root));
		json_decref(root);
		return NULL;
	}
	return root;
}

/*
 * The value as a dead letter keeps it: the text itself when it is valid UTF-8, else its
 * bytes in hex (\x...); of a message over max_bytes only the first bytes.  NULL for a
 * tombstone.
 */
char *
c360_kafka_payload_text(const char *payload, size_t len, size_t max_bytes)
{
	size_t		n = len > max_bytes ? Min(len, OVERSIZE_KEEP) : len;
	const char *more;
	int			valid;
	char	   *hex;

	if (payload == NULL)
		return NULL;
	more = n < len ? psprintf("... (%zu bytes in all)", len) : "";
	valid = pg_encoding_verifymbstr(PG_UTF8, payload, (int) n);
	/* a cut through the last character is not a bad byte */
	if ((size_t) valid == n || (n < len && n - valid < 4 && memchr(payload, '\0', n) == NULL))
		return psprintf("%.*s%s", valid, payload, more);

	hex = palloc(2 * n + 1);
	for (size_t i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", (unsigned char) payload[i]);
	return psprintf("\\x%s%s", hex, more);
}

/* The message formats of option "format", by name. */
static const struct
{
	const char *name;
	C360KafkaFormat format;
}			formats[] =
{
	{"json", C360_KAFKA_JSON},
	{"debezium", C360_KAFKA_DEBEZIUM},
	{"segment", C360_KAFKA_SEGMENT},
};

/* The format of this name; false when there is none (C360_KAFKA_FORMAT_NAMES lists them). */
bool
c360_kafka_format_by_name(const char *name, C360KafkaFormat *format)
{
	for (size_t i = 0; i < lengthof(formats); i++)
		if (strcmp(formats[i].name, name) == 0)
		{
			*format = formats[i].format;
			return true;
		}
	return false;
}

/* Set *error to the reason, for the dead letter; returns false. */
bool
c360_kafka_fail(char **error, const char *fmt,...)
{
	va_list		ap;
	char		buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	*error = pstrdup(buf);
	return false;
}

/* A null value deletes the key it was sent with. */
static bool
tombstone(const C360Input *in, C360InputId input, char *key, C360Change **out, char **error)
{
	C360Tuple  *t;

	if (input == C360_BEHAVIORAL_EVENTS)
		return c360_kafka_fail(error, "a message with a null value (a tombstone) cannot delete from input "
							   "\"%s\", which is append-only", in->name);
	if (key == NULL)
		return c360_kafka_fail(error, "a message with a null value (a tombstone) needs a key: the %s to delete",
							   in->cols[in->key_col].name);
	t = palloc0(sizeof(C360Tuple));
	t->present[in->key_col] = true;
	t->values[in->key_col] = key;
	*out = palloc0(sizeof(C360Change));
	(*out)->input = input;
	(*out)->op = C360_DELETE;
	(*out)->old = t;
	return true;
}

/*
 * The object's fields that feed columns of the input, as text: the field of the column's
 * name, or the one at the path the mapping names.  A mapped path that is not in the
 * message is an error: the mapping, or the message, is wrong.  As for the other kinds of
 * source, a field a mapping names feeds only the column mapped to it.
 */
static bool
object_tuple(const C360Input *in, json_t *root, char *const *paths, C360Tuple *t, char **error)
{
	for (int col = 0; col < in->ncols; col++)
	{
		const char *field;
		json_t	   *v = c360_kafka_column_value(in, root, paths, col, &field);

		if (v == NULL)
		{
			if (paths && paths[col])
				return c360_kafka_fail(error, "no field %s, which input column %s is mapped to", field,
									   in->cols[col].name);
			continue;
		}
		t->present[col] = true;
		if (!c360_kafka_scalar_text(in, col, field, v, &t->values[col], error))
			return false;
	}
	return true;
}

/*
 * The value in object root that feeds input column col, or NULL when there is none:
 * the field at the path the mapping names, else the top-level field of the column's
 * name unless a mapping names that field for another column.  *field is set to the
 * path or name, for messages.
 */
json_t *
c360_kafka_column_value(const C360Input *in, json_t *root, char *const *paths, int col,
						const char **field)
{
	const char *path = paths ? paths[col] : NULL;

	*field = path ? path : in->cols[col].name;
	if (path)
		return c360_kafka_path_value(root, path);
	if (paths != NULL && path_claimed(in, paths, in->cols[col].name))
		return NULL;
	return json_object_get(root, in->cols[col].name);
}

/* Whether a mapping names field (a top-level one) for some column. */
static bool
path_claimed(const C360Input *in, char *const *paths, const char *field)
{
	for (int c = 0; c < in->ncols; c++)
		if (paths[c] && strcmp(paths[c], field) == 0)
			return true;
	return false;
}

/* The value at a dot-separated path of object fields, or NULL when it is not there. */
json_t *
c360_kafka_path_value(json_t *root, const char *path)
{
	const char *p = path;
	json_t	   *v = root;

	for (;;)
	{
		const char *dot = strchr(p, '.');
		size_t		n = dot ? (size_t) (dot - p) : strlen(p);

		if (!json_is_object(v))
			return NULL;
		v = json_object_getn(v, p, n);
		if (v == NULL || dot == NULL)
			return v;
		p = dot + 1;
	}
}

/*
 * A JSON scalar as the text the column's input function reads; a number in a timestamp
 * column is epoch milliseconds.  Objects and arrays are refused, but in a jsonb column.
 */
bool
c360_kafka_scalar_text(const C360Input *in, int col, const char *field, json_t *v, char **text,
					   char **error)
{
	bool		is_time = in->cols[col].type == TIMESTAMPTZOID;

	*text = NULL;
	if (in->cols[col].type == JSONBOID && !json_is_null(v))
	{
		/* a jsonb column takes any JSON value, as JSON text */
		char	   *dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		*text = pstrdup(dumped);
		free(dumped);
		return true;
	}
	switch (json_typeof(v))
	{
		case JSON_NULL:
			return true;
		case JSON_STRING:
			*text = pnstrdup(json_string_value(v), json_string_length(v));
			return true;
		case JSON_INTEGER:
			if (is_time)
				return epoch_ms_text(field, (double) json_integer_value(v), text, error);
			*text = psprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
			return true;
		case JSON_REAL:
			if (is_time)
				return epoch_ms_text(field, json_real_value(v), text, error);
			*text = real_text(json_real_value(v));
			return true;
		case JSON_TRUE:
		case JSON_FALSE:
			*text = pstrdup(json_is_true(v) ? "true" : "false");
			return true;
		default:
			return c360_kafka_fail(error, "field \"%s\" is a JSON %s; input \"%s\" needs a string, number, "
								   "boolean or null there", field, c360_kafka_json_type_name(v), in->name);
	}
}

/* The shortest rendering that reads back as the same double, as float8out does. */
static char *
real_text(double d)
{
	char		buf[64];

	for (int prec = 15; prec <= 17; prec++)
	{
		snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return pstrdup(buf);
}

/*
 * Epoch milliseconds as a UTC timestamp text.  Doubles hold every millisecond of years
 * 1 to 9999 exactly, so integers lose nothing on the way through.
 */
static bool
epoch_ms_text(const char *field, double ms, char **text, char **error)
{
	int64		us;
	int64		secs;
	int			frac;

	if (!isfinite(ms) || ms < (double) MIN_EPOCH_MS || ms > (double) MAX_EPOCH_MS)
		return c360_kafka_fail(error, "field \"%s\" is %g, out of range for epoch milliseconds (years 1 to 9999)",
							   field, ms);
	us = (int64) llround(ms * 1000.0);
	secs = us / 1000000;
	frac = (int) (us % 1000000);
	if (frac < 0)
	{
		frac += 1000000;
		secs--;
	}
	*text = c360_kafka_utc_text(secs, frac * 1000);
	return true;
}

/*
 * An instant as UTC timestamp text: seconds since 1970-01-01 (within
 * C360_MIN_EPOCH_SECONDS..C360_MAX_EPOCH_SECONDS, which the caller checks) and
 * nanoseconds (0..999,999,999).  Six fractional digits, nine when the nanoseconds need
 * them (the column's input function rounds them to microseconds).
 */
char *
c360_kafka_utc_text(int64 seconds, int32 nanos)
{
	time_t		tt = (time_t) seconds;
	struct tm	tm;

	gmtime_r(&tt, &tm);
	if (nanos % 1000 == 0)
		return psprintf("%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900, tm.tm_mon + 1,
						tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nanos / 1000);
	return psprintf("%04d-%02d-%02d %02d:%02d:%02d.%09d+00", tm.tm_year + 1900, tm.tm_mon + 1,
					tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nanos);
}

/*
 * A keyed input's key column comes from the message key; a value that names the key
 * too must name the same one, or the message is ambiguous.
 */
static bool
key_from_message(const C360Input *in, C360Tuple *t, char *key, char **error)
{
	int			kc = in->key_col;

	if (key == NULL)
		return true;
	if (t->present[kc] && t->values[kc] != NULL)
	{
		if (strcmp(t->values[kc], key) != 0)
			return c360_kafka_fail(error, "field \"%s\" is \"%.100s\" but the message key is \"%.100s\"",
								   in->cols[kc].name, t->values[kc], key);
		return true;
	}
	t->present[kc] = true;
	t->values[kc] = key;
	return true;
}

bool
c360_kafka_required_present(const C360Input *in, const C360Tuple *t, char **error)
{
	for (int c = 0; c < in->ncols; c++)
	{
		if (!in->cols[c].required)
			continue;
		if (!t->present[c])
			return c360_kafka_fail(error, "required field \"%s\" is missing", in->cols[c].name);
		if (t->values[c] == NULL)
			return c360_kafka_fail(error, "required field \"%s\" is null", in->cols[c].name);
	}
	return true;
}

/* UTF-8 without NUL bytes: what a text parameter can carry. */
static bool
valid_text(const char *s, size_t len)
{
	return len < PG_INT32_MAX && pg_encoding_verifymbstr(PG_UTF8, s, (int) len) == (int) len;
}

const char *
c360_kafka_json_type_name(const json_t *v)
{
	switch (json_typeof(v))
	{
		case JSON_OBJECT:
			return "object";
		case JSON_ARRAY:
			return "array";
		case JSON_STRING:
			return "string";
		case JSON_INTEGER:
		case JSON_REAL:
			return "number";
		case JSON_TRUE:
		case JSON_FALSE:
			return "boolean";
		case JSON_NULL:
			return "null";
	}
	return "value";
}
