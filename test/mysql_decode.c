/*
 * mysql_decode.c: checks src/decode/binlog_decode.c against a real MariaDB.  Reads the binlog
 * from FILE:POS to its end, decodes every row image of DB.TABLE, and compares each
 * after-image with what SELECT returns for the same primary key (first column), value by
 * value; before-images of updates and deletes are checked against the previous image of
 * that key.  Prints one line per mismatch and "checked N values, M rows" at the end;
 * exits 1 on any mismatch.
 *
 *   mysql_decode HOST PORT USER FILE POS DB TABLE
 *
 * With "count" first it only counts the row changes (one per row image, two images of an
 * update being one change) of the named tables from FILE:POS to the end, across rotations:
 *
 *   mysql_decode count HOST PORT USER FILE POS DB.TABLE...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mysql.h>
#include <mariadb_rpl.h>

#include "decode/binlog_decode.h"

#define MAX_KEYS 10000

static MYSQL *sql;
static int	ncharsets;
static BinlogCharset charsets[4096];
static int	mismatches;
static long checked;

/* The last image seen per key, to check the next before-image against. */
static char *last_key[MAX_KEYS];
static char **last_values[MAX_KEYS];
static int	nkeys;

static void *
alloc(void *ctx, size_t n)
{
	void	   *p = malloc(n ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

static BinlogCharset
charset_of(void *ctx, int collation)
{
	return collation >= 0 && collation < ncharsets ? charsets[collation] : BINLOG_CS_UNKNOWN;
}

static void
die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, mysql_error(sql));
	exit(2);
}

static void
load_charsets(void)
{
	MYSQL_RES  *res;
	MYSQL_ROW	row;

	/* MariaDB 10.10+ lists every charset/collation pair with its id only here */
	if (mysql_query(sql, "SELECT ID, CHARACTER_SET_NAME FROM "
					"information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID IS NOT NULL") &&
		mysql_query(sql, "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS "
					"WHERE ID IS NOT NULL"))
		die("collations");
	res = mysql_store_result(sql);
	while ((row = mysql_fetch_row(res)))
	{
		int			id = atoi(row[0]);
		const char *cs = row[1];

		if (id < 0 || id >= 4096)
			continue;
		charsets[id] = strcmp(cs, "utf8mb4") == 0 || strcmp(cs, "utf8mb3") == 0 ||
			strcmp(cs, "utf8") == 0 || strcmp(cs, "ascii") == 0 ? BINLOG_CS_UTF8 :
			strcmp(cs, "latin1") == 0 ? BINLOG_CS_LATIN1 :
			strcmp(cs, "binary") == 0 ? BINLOG_CS_BINARY : BINLOG_CS_OTHER;
		if (id >= ncharsets)
			ncharsets = id + 1;
	}
	mysql_free_result(res);
}

/* Floats print with the shortest round-trip digits, MariaDB's with its own: same number? */
static int
same(const BinlogColumn *c, const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (c->kind == BINLOG_KIND_FLOAT)
		return c->meta == 4 ? (float) strtod(a, NULL) == (float) strtod(b, NULL) :
			strtod(a, NULL) == strtod(b, NULL);
	return strcmp(a, b) == 0;
}

static void check_v2(BinlogDecoder *d, int type, const uint8_t *body, size_t len,
					 const BinlogTableMap *tm, const BinlogRows *v1);

static void
compare(const BinlogTableMap *tm, const char *what, const char *key, char **decoded,
		char **expected)
{
	for (int i = 0; i < tm->ncols; i++)
	{
		checked++;
		if (!same(&tm->cols[i], decoded[i], expected[i]))
		{
			mismatches++;
			printf("MISMATCH %s key %s column %s (%s): decoded '%s', expected '%s'\n", what, key,
				   tm->cols[i].name, tm->cols[i].type_name,
				   decoded[i] ? decoded[i] : "NULL", expected[i] ? expected[i] : "NULL");
		}
	}
}

static char **
select_row(const BinlogTableMap *tm, const char *key)
{
	char		query[10240];
	char		escaped[512];
	MYSQL_RES  *res;
	MYSQL_ROW	row;
	char	  **values = NULL;

	char		list[8192] = "";

	/* BIT prints as raw bytes; the decoder gives the number */
	for (int i = 0; i < tm->ncols; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list),
				 strcmp(tm->cols[i].type_name, "bit") == 0 ? "%sCAST(`%s` AS UNSIGNED)" : "%s`%s`",
				 i ? ", " : "", tm->cols[i].name);
	mysql_real_escape_string(sql, escaped, key, strlen(key));
	snprintf(query, sizeof(query), "SELECT %s FROM `%s`.`%s` WHERE `%s` = '%s'", list, tm->db,
			 tm->table, tm->cols[0].name, escaped);
	if (mysql_query(sql, query))
		die("select");
	res = mysql_store_result(sql);
	if ((row = mysql_fetch_row(res)))
	{
		unsigned long *lengths = mysql_fetch_lengths(res);

		values = alloc(NULL, sizeof(char *) * tm->ncols);
		for (int i = 0; i < tm->ncols; i++)
		{
			values[i] = row[i] ? alloc(NULL, lengths[i] + 1) : NULL;
			if (row[i])
			{
				memcpy(values[i], row[i], lengths[i]);
				values[i][lengths[i]] = '\0';
			}
		}
	}
	mysql_free_result(res);
	return values;
}

static int
key_index(const char *key)
{
	for (int i = 0; i < nkeys; i++)
		if (strcmp(last_key[i], key) == 0)
			return i;
	if (nkeys == MAX_KEYS)
		abort();
	last_key[nkeys] = strdup(key);
	last_values[nkeys] = NULL;
	return nkeys++;
}

static void
check_rows(const BinlogTableMap *tm, const BinlogRows *rows)
{
	for (int r = 0; r < rows->nrows; r++)
	{
		if (rows->before)
		{
			const char *key = rows->before[r].values[0];
			int			k = key_index(key);

			if (rows->before[r].error)
				printf("ROW ERROR before key %s: %s\n", key, rows->before[r].error);
			if (last_values[k])
				compare(tm, "before-image", key, rows->before[r].values, last_values[k]);
			last_values[k] = NULL;
		}
		if (rows->after)
		{
			const char *key = rows->after[r].values[0];
			int			k = key_index(key);

			if (rows->after[r].error)
				printf("ROW ERROR after key %s: %s\n", key, rows->after[r].error);
			last_values[k] = rows->after[r].values;
		}
	}
}

/* After the stream: the last image of every key that still exists must equal SELECT. */
static void
check_final(const BinlogTableMap *tm)
{
	for (int k = 0; k < nkeys; k++)
	{
		char	  **expected = select_row(tm, last_key[k]);

		if (last_values[k] == NULL && expected == NULL)
			continue;
		if (last_values[k] == NULL || expected == NULL)
		{
			mismatches++;
			printf("MISMATCH key %s: %s\n", last_key[k],
				   expected ? "decoded as deleted, exists" : "exists in the binlog, not in the table");
			continue;
		}
		compare(tm, "after-image", last_key[k], last_values[k], expected);
	}
}

/*
 * MariaDB writes v1 rows events; MySQL writes v2, which differ only by an extra-data block
 * after the post-header.  Rewrite each v1 event as v2 (with 3 bytes of extra data) and
 * check that it decodes to the same rows.
 */
static void
check_v2(BinlogDecoder *d, int type, const uint8_t *body, size_t len, const BinlogTableMap *tm,
		 const BinlogRows *v1)
{
	uint8_t    *v2 = alloc(NULL, len + 5);
	BinlogRows	rows;

	memcpy(v2, body, 8);
	v2[8] = 5;
	v2[9] = 0;
	memcpy(v2 + 10, "xyz", 3);
	memcpy(v2 + 13, body + 8, len - 8);
	if (!binlog_decode_rows(d, type - WRITE_ROWS_EVENT_V1 + WRITE_ROWS_EVENT, v2, len + 5, tm, &rows))
	{
		printf("ROWS v2: %s\n", d->error);
		exit(1);
	}
	for (int r = 0; r < v1->nrows; r++)
		for (int i = 0; i < tm->ncols; i++)
		{
			checked++;
			if ((v1->after && !same(&tm->cols[i], v1->after[r].values[i], rows.after[r].values[i])) ||
				(v1->before && !same(&tm->cols[i], v1->before[r].values[i], rows.before[r].values[i])))
			{
				mismatches++;
				printf("MISMATCH v2 rewrite, row %d column %s\n", r, tm->cols[i].name);
			}
		}
	free(v2);
}

static int
count_changes(int argc, char **argv)
{
	MYSQL	   *repl = mysql_init(NULL);
	MARIADB_RPL *rpl;
	MARIADB_RPL_EVENT *ev = NULL;
	BinlogDecoder d = {alloc, NULL, NULL, ""};
	BinlogTableMap counted[64];
	int			ncounted = 0;
	long		changes = 0;
	bool		checksum = true;

	sql = repl;
	if (!mysql_real_connect(repl, argv[2], argv[4], "", NULL, atoi(argv[3]), NULL, 0) ||
		mysql_query(repl, "SET @master_binlog_checksum = @@global.binlog_checksum") ||
		mysql_query(repl, "SET @mariadb_slave_capability = 4"))
		die("replication connection");
	rpl = mariadb_rpl_init(repl);
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, 4243);
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, argv[5], strlen(argv[5]));
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, (unsigned long) atol(argv[6]));
	mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, MARIADB_RPL_BINLOG_DUMP_NON_BLOCK);
	if (mariadb_rpl_open(rpl))
		die("binlog dump");
	while ((ev = mariadb_rpl_fetch(rpl, ev)) != NULL)
	{
		const uint8_t *body = ev->raw_data + ev->raw_data_ofs + BINLOG_HEADER_LEN;
		size_t		len = ev->event_length - BINLOG_HEADER_LEN - (checksum ? 4 : 0);

		if (ev->event_type == TABLE_MAP_EVENT)
		{
			BinlogTableMap t;
			char		name[512];

			if (!binlog_decode_table_map(&d, body, len, &t))
			{
				printf("TABLE_MAP: %s\n", d.error);
				return 1;
			}
			snprintf(name, sizeof(name), "%s.%s", t.db, t.table);
			for (int i = 7; i < argc; i++)
				if (strcmp(name, argv[i]) == 0)
				{
					int			k = 0;

					while (k < ncounted && counted[k].table_id != t.table_id)
						k++;
					if (k == 64)
						abort();
					counted[k] = t;
					ncounted += k == ncounted;
				}
		}
		else if (binlog_is_rows_event(ev->event_type))
		{
			uint64_t	id = binlog_rows_table_id(body, len);

			/* the row count needs the column layout: decode the event */
			for (int i = 0; i < ncounted; i++)
				if (counted[i].table_id == id)
				{
					BinlogRows	rows;

					if (!binlog_decode_rows(&d, ev->event_type, body, len, &counted[i], &rows))
					{
						printf("ROWS: %s\n", d.error);
						return 1;
					}
					changes += rows.nrows;
					break;
				}
		}
	}
	if (mysql_errno(repl))
		die("fetch");
	printf("%ld\n", changes);
	return 0;
}

int
main(int argc, char **argv)
{
	MARIADB_RPL *rpl;
	MARIADB_RPL_EVENT *ev = NULL;
	BinlogDecoder d = {alloc, NULL, charset_of, ""};
	BinlogTableMap tm = {0};
	bool		have_map = false;
	bool		checksum;
	long		nrows = 0;

	if (argc >= 8 && strcmp(argv[1], "count") == 0)
		return count_changes(argc, argv);
	if (argc != 8)
	{
		fprintf(stderr, "usage: mysql_decode HOST PORT USER FILE POS DB TABLE\n");
		return 2;
	}
	sql = mysql_init(NULL);
	if (!mysql_real_connect(sql, argv[1], argv[3], "", NULL, atoi(argv[2]), NULL, 0))
		die("connect");
	if (mysql_query(sql, "SET NAMES utf8mb4") || mysql_query(sql, "SET time_zone = '+00:00'"))
		die("session");
	load_charsets();
	if (mysql_query(sql, "SELECT @@global.binlog_checksum <> 'NONE'"))
		die("checksum");
	{
		MYSQL_RES  *res = mysql_store_result(sql);

		checksum = atoi(mysql_fetch_row(res)[0]) != 0;
		mysql_free_result(res);
	}

	{
		MYSQL	   *repl = mysql_init(NULL);

		if (!mysql_real_connect(repl, argv[1], argv[3], "", NULL, atoi(argv[2]), NULL, 0) ||
			mysql_query(repl, "SET @master_binlog_checksum = @@global.binlog_checksum") ||
			mysql_query(repl, "SET @mariadb_slave_capability = 4"))
		{
			sql = repl;
			die("replication connection");
		}
		rpl = mariadb_rpl_init(repl);
		mariadb_rpl_optionsv(rpl, MARIADB_RPL_SERVER_ID, 4242);
		mariadb_rpl_optionsv(rpl, MARIADB_RPL_FILENAME, argv[4], strlen(argv[4]));
		mariadb_rpl_optionsv(rpl, MARIADB_RPL_START, (unsigned long) atol(argv[5]));
		mariadb_rpl_optionsv(rpl, MARIADB_RPL_FLAGS, MARIADB_RPL_BINLOG_DUMP_NON_BLOCK);
		if (mariadb_rpl_open(rpl))
		{
			sql = repl;
			die("binlog dump");
		}
		while ((ev = mariadb_rpl_fetch(rpl, ev)) != NULL)
		{
			const uint8_t *body = ev->raw_data + ev->raw_data_ofs + BINLOG_HEADER_LEN;
			size_t		len = ev->event_length - BINLOG_HEADER_LEN - (checksum ? 4 : 0);

			if (ev->event_type == TABLE_MAP_EVENT)
			{
				BinlogTableMap t;

				if (!binlog_decode_table_map(&d, body, len, &t))
				{
					printf("TABLE_MAP: %s\n", d.error);
					return 1;
				}
				if (strcmp(t.db, argv[6]) == 0 && strcmp(t.table, argv[7]) == 0)
				{
					tm = t;
					have_map = true;
				}
			}
			else if (binlog_is_rows_event(ev->event_type) && have_map &&
					 binlog_rows_table_id(body, len) == tm.table_id)
			{
				BinlogRows rows;

				if (!binlog_decode_rows(&d, ev->event_type, body, len, &tm, &rows))
				{
					printf("ROWS: %s\n", d.error);
					return 1;
				}
				check_rows(&tm, &rows);
				nrows += rows.nrows;
				check_v2(&d, ev->event_type, body, len, &tm, &rows);
			}
		}
		if (mysql_errno(repl))
		{
			sql = repl;
			die("fetch");
		}
	}
	if (!have_map)
	{
		printf("no TABLE_MAP for %s.%s\n", argv[6], argv[7]);
		return 1;
	}
	check_final(&tm);
	printf("checked %ld values, %ld rows, %d mismatches\n", checked, nrows, mismatches);
	return mismatches ? 1 : 0;
}
