/*-------------------------------------------------------------------------
 * segment_decode.c
 *	  A Segment spec call (RudderStack writes the same spec) as a change record.
 *	  Every call has a type, a messageId, a userId or anonymousId and an ISO-8601
 *	  timestamp (Segment's "Spec: Common fields"):
 *
 *	  - track, page and screen are behavioural events: event_id the messageId,
 *	    customer_id the userId (the anonymousId before the user is known),
 *	    event_type the track's event name, page_view or screen_view, event_time the
 *	    timestamp; session_id, product_id and category_id at the paths the topic's
 *	    column mapping names, or by default context.sessionId,
 *	    properties.product_id and properties.category;
 *	  - identify with both a userId and an anonymousId, and alias (previousId to
 *	    userId), are identity links: events under the anonymous or previous id then
 *	    belong to the user.  The link's identity_id is made of its type and that id
 *	    ("segment:anonymous_id:<anonymousId>", "segment:alias:<previousId>"), so the
 *	    same call again rewrites the one link and a later one for the same id moves it;
 *	  - group calls, identify calls with nothing to link and types the spec may add
 *	    are skipped;
 *	  - what is none of these well formed is a dead letter, with the reason.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include <jansson.h>

#include "decode/segment_decode.h"

/* The event columns a mapping may place, and where they are when it does not. */
static const struct
{
	const char *column;
	const char *path;
}			placed[] = {
	{"session_id", "context.sessionId"},
	{"product_id", "properties.product_id"},
	{"category_id", "properties.category"},
};

static bool decode_call(json_t *root, char *const *paths, C360Change **out, char **reason);
static bool event(json_t *root, const char *type, char *message_id, char *const *paths,
				  C360Change **out, char **reason);
static bool placed_columns(json_t *root, char *const *paths, C360Tuple *t, char **reason);
static bool identify(json_t *root, C360Change **out, char **reason);
static bool alias(json_t *root, C360Change **out, char **reason);
static C360Change *link(const char *type, char *value, char *user, char *at);
static bool user_of(json_t *root, char **user, char **reason);
static bool id_field(json_t *root, const char *field, char **text, char **reason);
static bool timestamp_field(json_t *root, char **text, char **reason);
static bool iso8601(const char *s);
static bool digits(const char **p, int n, int *value);
static void set(const C360Input *in, C360Tuple *t, const char *column, char *value);
static C360Change *insert_of(C360InputId input, C360Tuple *t);

/*
 * Decode one message: C360_KAFKA_CHANGE with *out set, C360_KAFKA_SKIP, or
 * C360_KAFKA_DEAD_LETTER with *reason set.  paths has an entry per column of behavioral_events
 * (NULL: the default place), or is NULL for no mapping at all.
 */
C360KafkaOutcome
c360_segment_decode(const char *payload, size_t len, size_t max_bytes, char *const *paths,
					C360Change **out, char **reason)
{
	json_t	   *root;
	bool		ok;

	*out = NULL;
	*reason = NULL;
	if (payload == NULL)
	{
		c360_kafka_fail(reason, "a message with a null value (a tombstone) is no Segment call");
		return C360_KAFKA_DEAD_LETTER;
	}
	if ((root = c360_kafka_parse_object(payload, len, max_bytes, reason)) == NULL)
		return C360_KAFKA_DEAD_LETTER;
	ok = decode_call(root, paths, out, reason);
	json_decref(root);
	if (!ok)
		return C360_KAFKA_DEAD_LETTER;
	return *out ? C360_KAFKA_CHANGE : C360_KAFKA_SKIP;
}

/*
 * A mapping may place only session_id, product_id and category_id: the call itself says
 * which message, user, kind of event and instant it is.
 */
bool
c360_segment_check_paths(char *const *paths, char **error)
{
	const C360Input *in = &c360_inputs[C360_BEHAVIORAL_EVENTS];

	for (int col = 0; paths != NULL && col < in->ncols; col++)
	{
		bool		mappable = false;

		for (int i = 0; i < lengthof(placed); i++)
			mappable |= strcmp(in->cols[col].name, placed[i].column) == 0;
		if (paths[col] != NULL && !mappable)
			return c360_kafka_fail(error, "format segment takes input column %s from the call "
								   "itself; a column mapping may name paths for session_id, "
								   "product_id and category_id only", in->cols[col].name);
	}
	return true;
}

/* The common fields every call has, then the call by its type; *out NULL: skipped. */
static bool
decode_call(json_t *root, char *const *paths, C360Change **out, char **reason)
{
	json_t	   *type = json_object_get(root, "type");
	const char *t;
	char	   *message_id;

	if (type == NULL || json_is_null(type))
		return c360_kafka_fail(reason, "no field \"type\": a Segment call names its type "
							   "(track, page, screen, identify, alias, group)");
	if (!json_is_string(type))
		return c360_kafka_fail(reason, "field \"type\" is a JSON %s, not a string",
							   c360_kafka_json_type_name(type));
	if (!id_field(root, "messageId", &message_id, reason))
		return false;
	if (message_id == NULL)
		return c360_kafka_fail(reason, "no field \"messageId\": every Segment call has one");

	t = json_string_value(type);
	if (strcmp(t, "track") == 0 || strcmp(t, "page") == 0 || strcmp(t, "screen") == 0)
		return event(root, t, message_id, paths, out, reason);
	if (strcmp(t, "identify") == 0)
		return identify(root, out, reason);
	if (strcmp(t, "alias") == 0)
		return alias(root, out, reason);
	return true;
}

/* A track, page or screen call as a behavioural event. */
static bool
event(json_t *root, const char *type, char *message_id, char *const *paths, C360Change **out,
	  char **reason)
{
	const C360Input *in = &c360_inputs[C360_BEHAVIORAL_EVENTS];
	C360Tuple  *t = palloc0(sizeof(C360Tuple));
	char	   *user;
	char	   *at;
	char	   *event_type;

	if (!user_of(root, &user, reason) || !timestamp_field(root, &at, reason))
		return false;
	if (strcmp(type, "track") != 0)
		event_type = strcmp(type, "page") == 0 ? "page_view" : "screen_view";
	else
	{
		json_t	   *name = json_object_get(root, "event");

		if (name == NULL || json_is_null(name) ||
			(json_is_string(name) && json_string_length(name) == 0))
			return c360_kafka_fail(reason, "a track call without an event name (field \"event\")");
		if (!json_is_string(name))
			return c360_kafka_fail(reason, "field \"event\" is a JSON %s, not a string",
								   c360_kafka_json_type_name(name));
		event_type = pnstrdup(json_string_value(name), json_string_length(name));
	}
	set(in, t, "event_id", message_id);
	set(in, t, "customer_id", user);
	set(in, t, "event_type", event_type);
	set(in, t, "event_time", at);
	if (!placed_columns(root, paths, t, reason))
		return false;
	*out = insert_of(C360_BEHAVIORAL_EVENTS, t);
	return true;
}

/*
 * session_id, product_id and category_id from their paths.  Calls carry different
 * properties (a page has no product), so a path the call lacks is a null here, where the
 * json format dead-letters the message.
 */
static bool
placed_columns(json_t *root, char *const *paths, C360Tuple *t, char **reason)
{
	const C360Input *in = &c360_inputs[C360_BEHAVIORAL_EVENTS];

	for (int i = 0; i < lengthof(placed); i++)
	{
		int			col = c360_column_by_name(in, placed[i].column);
		const char *path = paths && paths[col] ? paths[col] : placed[i].path;
		json_t	   *v = c360_kafka_path_value(root, path);

		if (v != NULL && !c360_kafka_scalar_text(in, col, path, v, &t->values[col], reason))
			return false;
		t->present[col] = true;
	}
	return true;
}

/* An identify call links its anonymousId to its userId; without both it is skipped. */
static bool
identify(json_t *root, C360Change **out, char **reason)
{
	char	   *user;
	char	   *anonymous;
	char	   *at;

	if (!id_field(root, "userId", &user, reason) ||
		!id_field(root, "anonymousId", &anonymous, reason))
		return false;
	if (user == NULL && anonymous == NULL)
		return c360_kafka_fail(reason, "neither userId nor anonymousId: a Segment call names its "
							   "user by one of them");
	if (user == NULL || anonymous == NULL)
		return true;
	if (!timestamp_field(root, &at, reason))
		return false;
	*out = link("anonymous_id", anonymous, user, at);
	return true;
}

/* An alias call links its previousId to its userId. */
static bool
alias(json_t *root, C360Change **out, char **reason)
{
	char	   *user;
	char	   *previous;
	char	   *at;

	if (!id_field(root, "userId", &user, reason) ||
		!id_field(root, "previousId", &previous, reason))
		return false;
	if (user == NULL || previous == NULL)
		return c360_kafka_fail(reason, "an alias call needs both a previousId and a userId");
	if (!timestamp_field(root, &at, reason))
		return false;
	*out = link("alias", previous, user, at);
	return true;
}

/* An identity link whose key says what it links: the same id's next link replaces it. */
static C360Change *
link(const char *type, char *value, char *user, char *at)
{
	const C360Input *in = &c360_inputs[C360_IDENTITY_GRAPH];
	C360Tuple  *t = palloc0(sizeof(C360Tuple));

	set(in, t, "identity_id", psprintf("segment:%s:%s", type, value));
	set(in, t, "customer_id", user);
	set(in, t, "identity_type", pstrdup(type));
	set(in, t, "identity_value", value);
	set(in, t, "created_at", at);
	return insert_of(C360_IDENTITY_GRAPH, t);
}

/* The user an event belongs to: its userId, or its anonymousId before the user is known. */
static bool
user_of(json_t *root, char **user, char **reason)
{
	if (!id_field(root, "userId", user, reason))
		return false;
	if (*user == NULL && !id_field(root, "anonymousId", user, reason))
		return false;
	if (*user == NULL)
		return c360_kafka_fail(reason, "neither userId nor anonymousId: a Segment call names its "
							   "user by one of them");
	return true;
}

/*
 * An id field as text: a string, or an integer some libraries send.  Missing, null and
 * the empty string are no id (*text NULL); anything else is an error.
 */
static bool
id_field(json_t *root, const char *field, char **text, char **reason)
{
	json_t	   *v = json_object_get(root, field);

	*text = NULL;
	if (v == NULL || json_is_null(v))
		return true;
	if (json_is_string(v))
	{
		if (json_string_length(v) > 0)
			*text = pnstrdup(json_string_value(v), json_string_length(v));
		return true;
	}
	if (json_is_integer(v))
	{
		*text = psprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return true;
	}
	return c360_kafka_fail(reason, "field \"%s\" is a JSON %s; a Segment id is a string", field,
						   c360_kafka_json_type_name(v));
}

/* The call's timestamp, checked here so that a bad one is a dead letter of this message. */
static bool
timestamp_field(json_t *root, char **text, char **reason)
{
	json_t	   *v = json_object_get(root, "timestamp");

	if (v == NULL || json_is_null(v))
		return c360_kafka_fail(reason, "no field \"timestamp\": the call's time is needed");
	if (!json_is_string(v))
		return c360_kafka_fail(reason, "field \"timestamp\" is a JSON %s, not an ISO-8601 string",
							   c360_kafka_json_type_name(v));
	if (!iso8601(json_string_value(v)))
		return c360_kafka_fail(reason, "field \"timestamp\" is \"%.100s\", not an ISO-8601 date and "
							   "time with its offset (such as 2024-05-01T10:00:00.000Z)",
							   json_string_value(v));
	*text = pstrdup(json_string_value(v));
	return true;
}

/*
 * Whether s is an ISO-8601 date and time with its offset, as Segment's libraries write
 * them: YYYY-MM-DD, T or a space, hh:mm[:ss[.fraction]], then Z or +hh[[:]mm] or
 * -hh[[:]mm].  Without an offset it would be read in the worker's time zone, so it is
 * refused; Postgres's timestamptz input reads every accepted form as it is.  Postgres
 * would also take words ("now", "infinity"): those are refused too.
 */
static bool
iso8601(const char *s)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p = s;
	int			year,
				month,
				day,
				hour,
				minute,
				second = 0,
				offset_hour,
				offset_minute;
	bool		leap;

	if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &month) || *p++ != '-' ||
		!digits(&p, 2, &day) || (*p != 'T' && *p != ' '))
		return false;
	p++;
	if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &minute))
		return false;
	if (*p == ':')
	{
		p++;
		if (!digits(&p, 2, &second))
			return false;
		if (*p == '.')
		{
			if (!isdigit((unsigned char) *++p))
				return false;
			while (isdigit((unsigned char) *p))
				p++;
		}
	}
	leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (year < 1 || month < 1 || month > 12 || day < 1 ||
		day > days[month - 1] + (month == 2 && leap) || hour > 23 || minute > 59 || second > 59)
		return false;
	if (*p == 'Z')
		return p[1] == '\0';
	if (*p != '+' && *p != '-')
		return false;
	p++;
	/* Postgres takes offsets up to 15:59 */
	if (!digits(&p, 2, &offset_hour) || offset_hour > 15)
		return false;
	if (*p == '\0')
		return true;
	if (*p == ':')
		p++;
	return digits(&p, 2, &offset_minute) && offset_minute <= 59 && *p == '\0';
}

/* n decimal digits at *p, moved past them. */
static bool
digits(const char **p, int n, int *value)
{
	*value = 0;
	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) (*p)[i]))
			return false;
		*value = *value * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return true;
}

static void
set(const C360Input *in, C360Tuple *t, const char *column, char *value)
{
	int			col = c360_column_by_name(in, column);

	t->present[col] = true;
	t->values[col] = value;
}

/* An insert: an event is new, a link of an existing identity_id an upsert. */
static C360Change *
insert_of(C360InputId input, C360Tuple *t)
{
	C360Change *ch = palloc0(sizeof(C360Change));

	ch->input = input;
	ch->op = C360_INSERT;
	ch->new = t;
	return ch;
}
