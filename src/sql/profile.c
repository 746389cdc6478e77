/*-------------------------------------------------------------------------
 * profile.c
 *	  SQL-callable entry points of the profile: apply_change(s), tick, rebuild,
 *	  shift_days, _preloaded.  Thin wrappers; the work is in src/core/apply.c and
 *	  src/core/maintain.c.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "core/apply.h"
#include "core/customer360.h"
#include "core/maintain.h"

PG_FUNCTION_INFO_V1(c360_apply_change);
PG_FUNCTION_INFO_V1(c360_apply_changes);
PG_FUNCTION_INFO_V1(c360_tick);
PG_FUNCTION_INFO_V1(c360_rebuild);
PG_FUNCTION_INFO_V1(c360_shift_days);
PG_FUNCTION_INFO_V1(c360_preloaded);

static C360Change *change_from_values(const char *input, const char *op, Jsonb *old, Jsonb *new);
static C360Change *change_from_jsonb(JsonbContainer *obj, int64 index);
static char *jsonb_field_text(JsonbContainer *obj, const char *field);
static Jsonb *jsonb_field_object(JsonbContainer *obj, const char *field);

/* c360.apply_change(input text, op text, old jsonb, new jsonb) */
Datum
c360_apply_change(PG_FUNCTION_ARGS)
{
	C360Batch  *batch = c360_apply_begin();

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("input and op must not be null")));
	c360_apply_add(batch, change_from_values(text_to_cstring(PG_GETARG_TEXT_PP(0)),
											 text_to_cstring(PG_GETARG_TEXT_PP(1)),
											 PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2),
											 PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3)));
	c360_apply_finish(batch);
	PG_RETURN_VOID();
}

/* c360.apply_changes(changes jsonb): a JSON array of {input, op, old, new}, one batch */
Datum
c360_apply_changes(PG_FUNCTION_ARGS)
{
	Jsonb	   *changes = PG_GETARG_JSONB_P(0);
	C360Batch  *batch = c360_apply_begin();
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int64		index = 0;

	if (!JB_ROOT_IS_ARRAY(changes) || JB_ROOT_IS_SCALAR(changes))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("c360.apply_changes expects a JSON array of {\"input\", \"op\", \"old\", \"new\"} objects")));

	it = JsonbIteratorInit(&changes->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("change %lld of the batch is not a JSON object", (long long) index)));
		c360_apply_add(batch, change_from_jsonb(v.val.binary.data, index));
		index++;
	}
	PG_RETURN_INT64(c360_apply_finish(batch));
}

static C360Change *
change_from_values(const char *input, const char *op, Jsonb *old, Jsonb *new)
{
	C360Change *ch = palloc0(sizeof(C360Change));
	const C360Input *in;

	ch->input = c360_input_by_name(input);
	ch->op = c360_op_by_name(op);
	in = &c360_inputs[ch->input];
	if (old != NULL && ch->op != C360_INSERT)
		ch->old = c360_tuple_from_jsonb(in, old, "old");
	if (new != NULL && ch->op != C360_DELETE)
		ch->new = c360_tuple_from_jsonb(in, new, "new");
	return ch;
}

static C360Change *
change_from_jsonb(JsonbContainer *obj, int64 index)
{
	char	   *input = jsonb_field_text(obj, "input");
	char	   *op = jsonb_field_text(obj, "op");

	if (input == NULL || op == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("change %lld of the batch lacks \"input\" or \"op\"", (long long) index)));
	return change_from_values(input, op, jsonb_field_object(obj, "old"),
							  jsonb_field_object(obj, "new"));
}

static char *
jsonb_field_text(JsonbContainer *obj, const char *field)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, field, strlen(field), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" of a change must be a JSON string", field)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A change's old/new image as a Jsonb of its own; JSON null or absent is NULL. */
static Jsonb *
jsonb_field_object(JsonbContainer *obj, const char *field)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, field, strlen(field), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" of a change must be a JSON object or null", field)));
	return JsonbValueToJsonb(v);
}

/* c360.tick(as_of timestamptz) */
Datum
c360_tick(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(c360_maintain_tick(PG_GETARG_TIMESTAMPTZ(0), true));
}

/* c360.rebuild() */
Datum
c360_rebuild(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(c360_maintain_rebuild());
}

/* c360.shift_days(ts timestamptz, days integer, tz text) */
Datum
c360_shift_days(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(c360_timestamp_shift_days(PG_GETARG_TIMESTAMPTZ(0), PG_GETARG_INT32(1),
										  text_to_cstring(PG_GETARG_TEXT_PP(2))));
}

/* c360._preloaded(): whether the library came in through shared_preload_libraries */
Datum
c360_preloaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(c360_loaded_at_startup);
}
