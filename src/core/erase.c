/*-------------------------------------------------------------------------
 * erase.c
 *	  Tombstones of erased customers (c360.erase_customer, docs/ARCHITECTURE.md "Erase"):
 *	  every batch drops, before it touches a mirror, the changes that would bring
 *	  an erased customer back, and counts them on the tombstone.
 *
 *	  A tombstone holds only a salted hash of the id, so the check hashes the
 *	  batch's ids; it runs only while c360.erased has a row at all.  Data too bad to
 *	  become a change (a dead letter) is checked word by word.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "core/spi.h"
#include "core/apply.h"
#include "core/erase.h"

static List *batch_ids(C360Batch *batch);
static int	change_ids(const C360Change *ch, const char *ids[2]);
static bool tombstones_possible(void);
static const char *erased_id(List *erased, const C360Change *ch);

/*
 * Remove from the batch the changes whose resulting row names an erased customer (a
 * customer row, an order, a ticket, an event, or an identity link on either side), and
 * count them.  Called with the clock lock held, so an erase that committed before this
 * batch began is seen.  Returns the number dropped.
 */
int64
c360_erase_filter(C360Batch *batch)
{
	static SPIPlanPtr find_plan;
	static SPIPlanPtr count_plan;
	Oid			types[1] = {TEXTARRAYOID};
	Datum		arg;
	List	   *ids;
	List	   *hits;
	int64		dropped = 0;
	ListCell   *lc;

	if (!tombstones_possible())
		return 0;
	ids = batch_ids(batch);
	if (ids == NIL)
		return 0;

	arg = c360_text_array(ids);
	hits = c360_exec_ids(c360_plan(&find_plan,
								   "SELECT DISTINCT id FROM unnest($1) AS id"
								   " WHERE EXISTS (SELECT FROM c360.erased)"
								   " AND c360._erase_hash(id) IN (SELECT id_hash FROM c360.erased)",
								   1, types), &arg, NULL, NIL);
	if (hits == NIL)
		return 0;

	/* the dropped changes' ids, once per change, so that the counts add up */
	ids = NIL;
	for (int i = 0; i < c360_ninputs; i++)
	{
		List	   *kept = NIL;

		foreach(lc, batch->changes[i])
		{
			C360Change *ch = lfirst(lc);
			const char *id = erased_id(hits, ch);

			if (id == NULL)
			{
				kept = lappend(kept, ch);
				continue;
			}
			ids = lappend(ids, (char *) id);
			dropped++;
		}
		batch->changes[i] = kept;
	}
	batch->nchanges -= dropped;

	arg = c360_text_array(ids);
	c360_exec(c360_plan(&count_plan,
						"UPDATE c360.erased e SET late_dropped = e.late_dropped + n.n,"
						" last_dropped_at = clock_timestamp()"
						" FROM (SELECT c360._erase_hash(id) AS h, count(*) AS n"
						"       FROM unnest($1) AS id GROUP BY 1) n"
						" WHERE e.id_hash = n.h", 1, types), &arg, NULL);
	/* the count only: the log must not name an erased customer */
	elog(LOG, "c360: dropped " INT64_FORMAT " late changes for erased customers", dropped);
	return dropped;
}

/*
 * Whether a dead letter's payload or error names an erased customer, as a whole token (the
 * separators of c360._token_pattern); if so its tombstones count it and the caller keeps
 * nothing of it.
 */
bool
c360_erase_names_erased(const char *payload, const char *error)
{
	static SPIPlanPtr plan;
	Oid			types[1] = {TEXTOID};
	Datum		arg;
	bool		named;

	if (!tombstones_possible())
		return false;
	arg = CStringGetTextDatum(psprintf("%s %s", payload ? payload : "", error ? error : ""));
	SPI_connect();
	c360_exec(c360_plan(&plan,
						"UPDATE c360.erased e SET late_dropped = e.late_dropped + 1,"
						" last_dropped_at = clock_timestamp()"
						" WHERE EXISTS (SELECT FROM c360.erased) AND e.id_hash IN"
						" (SELECT c360._erase_hash(w)"
						"  FROM regexp_split_to_table($1, '[^[:alnum:]_@.+-]+') AS w WHERE w <> '')",
						1, types), &arg, NULL);
	named = SPI_processed > 0;
	SPI_finish();
	if (named)
		elog(LOG, "c360: dropped a dead letter that names an erased customer");
	return named;
}

/* A database still at version 0.1 has no tombstone table. */
static bool
tombstones_possible(void)
{
	return OidIsValid(get_relname_relid("erased", get_namespace_oid("c360", false)));
}

/* Every customer id the batch's resulting rows name (duplicates and all). */
static List *
batch_ids(C360Batch *batch)
{
	List	   *ids = NIL;

	for (int i = 0; i < c360_ninputs; i++)
	{
		ListCell   *lc;

		foreach(lc, batch->changes[i])
		{
			const char *named[2];
			int			n = change_ids(lfirst(lc), named);

			for (int k = 0; k < n; k++)
				ids = lappend(ids, (char *) named[k]);
		}
	}
	return ids;
}

/*
 * The ids the row a change leaves (the new image, or the deleted one) names: its customer,
 * and for an identity link also the linked value.  Returns how many it put in ids.
 */
static int
change_ids(const C360Change *ch, const char *ids[2])
{
	const C360Input *in = &c360_inputs[ch->input];
	C360Tuple  *t = ch->new ? ch->new : ch->old;
	int			cols[2] = {in->customer_col, -1};
	int			n = 0;

	if (ch->input == C360_IDENTITY_GRAPH)
		cols[1] = c360_column_by_name(in, "identity_value");
	for (int i = 0; i < 2 && t != NULL; i++)
		if (cols[i] >= 0 && t->present[cols[i]] && t->values[cols[i]] != NULL)
			ids[n++] = t->values[cols[i]];
	return n;
}

/* The erased id the change names, if any; hits are the few erased ids of this batch. */
static const char *
erased_id(List *hits, const C360Change *ch)
{
	const char *named[2];
	int			n = change_ids(ch, named);
	ListCell   *lc;

	foreach(lc, hits)
		for (int k = 0; k < n; k++)
			if (strcmp(named[k], lfirst(lc)) == 0)
				return named[k];
	return NULL;
}
