/*-------------------------------------------------------------------------
 * change.c
 *	  The catalog of profile inputs and the decoding of JSON row images into
 *	  change records (the SQL entry points and the Kafka source both use it).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type_d.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "core/change.h"

static char *jsonb_scalar_text(const C360Input *in, const char *col, JsonbValue *v);
static void tuple_json(StringInfo buf, const C360Input *in, const C360Tuple *t);

/*
 * The built-in inputs; column order is the mirror tables' order in
 * sql/customer360--0.1.sql.  Users' inputs fill the slots after them (src/core/inputs.c).
 */
C360Input	c360_inputs[C360_MAX_INPUTS] = {
	[C360_CUSTOMERS] = {"customers", 9, {
			{"customer_id", TEXTOID, true}, {"email", TEXTOID}, {"first_name", TEXTOID},
			{"last_name", TEXTOID}, {"phone", TEXTOID}, {"acquisition_channel", TEXTOID},
			{"signup_date", TIMESTAMPTZOID}, {"loyalty_tier", TEXTOID},
			{"last_updated", TIMESTAMPTZOID}}, 0, 0},
	[C360_ORDERS] = {"orders", 8, {
			{"order_id", TEXTOID, true}, {"customer_id", TEXTOID, true},
			{"order_status", TEXTOID}, {"total_amount", NUMERICOID}, {"item_count", INT4OID},
			{"channel", TEXTOID}, {"created_at", TIMESTAMPTZOID},
			{"updated_at", TIMESTAMPTZOID}}, 0, 1},
	[C360_SUPPORT_TICKETS] = {"support_tickets", 6, {
			{"ticket_id", TEXTOID, true}, {"customer_id", TEXTOID, true}, {"status", TEXTOID},
			{"category", TEXTOID}, {"created_at", TIMESTAMPTZOID},
			{"resolved_at", TIMESTAMPTZOID}}, 0, 1},
	[C360_BEHAVIORAL_EVENTS] = {"behavioral_events", 7, {
			{"event_id", TEXTOID, true}, {"customer_id", TEXTOID, true},
			{"session_id", TEXTOID}, {"event_type", TEXTOID}, {"product_id", TEXTOID},
			{"category_id", TEXTOID}, {"event_time", TIMESTAMPTZOID, true}}, 0, 1},
	[C360_IDENTITY_GRAPH] = {"identity_graph", 5, {
			{"identity_id", TEXTOID, true}, {"customer_id", TEXTOID, true},
			{"identity_type", TEXTOID}, {"identity_value", TEXTOID, true},
			{"created_at", TIMESTAMPTZOID}}, 0, 1},
};
int			c360_ninputs = C360_BUILTIN_INPUTS;

/*
 * An input by name.  A name this process does not know, or whose mirror was dropped and
 * created again since it was loaded, loads users' inputs from the catalog first.
 */
int
c360_input_by_name(const char *name)
{
	for (int pass = 0; pass < 2; pass++)
	{
		for (int i = 0; i < c360_ninputs; i++)
			if (name && c360_inputs[i].name && strcmp(c360_inputs[i].name, name) == 0 &&
				c360_input_current(i))
				return i;
		if (pass == 0 && name)
			c360_inputs_load();
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown input \"%s\"", name ? name : "(null)"),
			 errhint("The inputs are customers, orders, support_tickets, behavioral_events, identity_graph and those of c360.create_input (c360.inputs).")));
	return -1;					/* keep compiler quiet */
}

/*
 * A mirror column's type for messages, with no catalog access (source workers report
 * column problems between transactions); NULL for a type no input's column may have
 * (create_input's check).
 */
const char *
c360_type_name(Oid type)
{
	switch (type)
	{
		case TEXTOID: return "text";
		case NUMERICOID: return "numeric";
		case INT4OID: return "integer";
		case INT8OID: return "bigint";
		case FLOAT8OID: return "double precision";
		case BOOLOID: return "boolean";
		case TIMESTAMPTZOID: return "timestamp with time zone";
		case DATEOID: return "date";
		case JSONBOID: return "jsonb";
	}
	return NULL;
}

C360Op
c360_op_by_name(const char *name)
{
	if (name && strcmp(name, "insert") == 0)
		return C360_INSERT;
	if (name && strcmp(name, "update") == 0)
		return C360_UPDATE;
	if (name && strcmp(name, "delete") == 0)
		return C360_DELETE;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown op \"%s\"", name ? name : "(null)"),
			 errhint("The ops are insert, update and delete.")));
	return C360_INSERT;			/* keep compiler quiet */
}

int
c360_column_by_name(const C360Input *in, const char *name)
{
	for (int i = 0; i < in->ncols; i++)
		if (strcmp(in->cols[i].name, name) == 0)
			return i;
	return -1;
}

/*
 * Decode a JSON object into a row image.  Keys that are not columns of the input are
 * ignored, as a source table may carry more columns than the profile needs.
 */
C360Tuple *
c360_tuple_from_jsonb(const C360Input *in, Jsonb *jb, const char *what)
{
	C360Tuple  *t = palloc0(sizeof(C360Tuple));
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s row of input \"%s\" must be a JSON object", what, in->name)));

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		int			col;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		col = c360_column_by_name(in, key);
		if (col < 0)
			continue;
		t->present[col] = true;
		if (in->cols[col].type == JSONBOID && v.type != jbvNull)
		{
			/* a jsonb column takes any JSON value, as JSON text */
			Jsonb	   *value = JsonbValueToJsonb(&v);

			t->values[col] = JsonbToCString(NULL, &value->root, VARSIZE(value));
		}
		else
			t->values[col] = jsonb_scalar_text(in, key, &v);
	}
	return t;
}

static char *
jsonb_scalar_text(const C360Input *in, const char *col, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" of input \"%s\" must be a JSON scalar, not an object or array",
							col, in->name)));
	}
	return NULL;				/* keep compiler quiet */
}

/* The key of the old (or new) image, NULL when that image does not carry it. */
const char *
c360_change_key(const C360Change *ch, bool old_image)
{
	const C360Tuple *t = old_image ? ch->old : ch->new;
	int			k = c360_inputs[ch->input].key_col;

	if (t == NULL || !t->present[k])
		return NULL;
	return t->values[k];
}

/* Reject a change whose images cannot say which row it is about. */
void
c360_change_check(const C360Change *ch)
{
	const C360Input *in = &c360_inputs[ch->input];
	const char *key_col = in->cols[in->key_col].name;

	if (ch->op == C360_TRUNCATE)
		return;
	if (ch->op != C360_DELETE && ch->new == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an %s on input \"%s\" needs a new row", ch->op == C360_INSERT ? "insert" : "update",
						in->name)));
	if (ch->op == C360_DELETE && ch->old == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a delete on input \"%s\" needs an old row", in->name)));

	if (ch->op == C360_DELETE ? c360_change_key(ch, true) == NULL :
		ch->op == C360_INSERT ? c360_change_key(ch, false) == NULL :
		c360_change_key(ch, true) == NULL && c360_change_key(ch, false) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("key column \"%s\" of input \"%s\" is missing or null", key_col, in->name)));
	/* a key sent as null is not an absent key: it would make the row unaddressable */
	if ((ch->old && ch->old->present[in->key_col] && ch->old->values[in->key_col] == NULL) ||
		(ch->new && ch->new->present[in->key_col] && ch->new->values[in->key_col] == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("key column \"%s\" of input \"%s\" is missing or null", key_col, in->name)));
}

/* The change as JSON text, in apply_changes' format: what a dead letter keeps. */
char *
c360_change_json(const C360Change *ch)
{
	static const char *const ops[] = {"insert", "update", "delete", "truncate"};
	const C360Input *in = &c360_inputs[ch->input];
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"input\": \"%s\", \"op\": \"%s\"", in->name, ops[ch->op]);
	if (ch->old)
	{
		appendStringInfoString(&buf, ", \"old\": ");
		tuple_json(&buf, in, ch->old);
	}
	if (ch->new)
	{
		appendStringInfoString(&buf, ", \"new\": ");
		tuple_json(&buf, in, ch->new);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

static void
tuple_json(StringInfo buf, const C360Input *in, const C360Tuple *t)
{
	bool		first = true;

	appendStringInfoChar(buf, '{');
	for (int c = 0; c < in->ncols; c++)
	{
		if (!t->present[c])
			continue;
		appendStringInfoString(buf, first ? "" : ", ");
		escape_json(buf, in->cols[c].name);
		appendStringInfoString(buf, ": ");
		if (t->values[c] == NULL)
			appendStringInfoString(buf, "null");
		else
			escape_json(buf, t->values[c]);
		first = false;
	}
	appendStringInfoChar(buf, '}');
}
