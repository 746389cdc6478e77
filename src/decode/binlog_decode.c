/*-------------------------------------------------------------------------
 * binlog_decode.c
 *	  The binlog row-image decoder: TABLE_MAP column types, metadata and optional
 *	  metadata (names, signedness, charsets, ENUM/SET labels), and the row images
 *	  of WRITE/UPDATE/DELETE_ROWS events, as text the way MariaDB prints each value.
 *	  Plain C with caller-supplied memory, so a test program can run it on the bytes
 *	  a real server sent.  Connector/C's own row extraction is not used: it mis-reads
 *	  CHAR/ENUM/SET, signed ints narrower than BIGINT and partial images.
 *-------------------------------------------------------------------------
 */
#include "decode/binlog_decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* MySQL column type codes (mysql_com.h enum_field_types), as they appear in TABLE_MAP. */
#define T_DECIMAL		0
#define T_TINY			1
#define T_SHORT			2
#define T_LONG			3
#define T_FLOAT			4
#define T_DOUBLE		5
#define T_NULL			6
#define T_TIMESTAMP		7
#define T_LONGLONG		8
#define T_INT24			9
#define T_DATE			10
#define T_TIME			11
#define T_DATETIME		12
#define T_YEAR			13
#define T_NEWDATE		14
#define T_VARCHAR		15
#define T_BIT			16
#define T_TIMESTAMP2	17
#define T_DATETIME2		18
#define T_TIME2			19
#define T_JSON			245
#define T_NEWDECIMAL	246
#define T_ENUM			247
#define T_SET			248
#define T_TINY_BLOB		249
#define T_MEDIUM_BLOB	250
#define T_LONG_BLOB		251
#define T_BLOB			252
#define T_VAR_STRING	253
#define T_STRING		254
#define T_GEOMETRY		255

/* Optional metadata field types (binlog_row_metadata). */
#define OM_SIGNEDNESS		1
#define OM_DEFAULT_CHARSET	2
#define OM_COLUMN_CHARSET	3
#define OM_COLUMN_NAME		4
#define OM_SET_STR_VALUE	5
#define OM_ENUM_STR_VALUE	6
#define OM_ENUM_SET_DEFAULT_CHARSET 10
#define OM_ENUM_SET_COLUMN_CHARSET 11

/* A bounds-checked reader over one event body; any overrun sets failed. */
typedef struct Reader
{
	const uint8_t *p;
	const uint8_t *end;
	bool		failed;
} Reader;

/* A growing output string in decoder memory. */
typedef struct Out
{
	BinlogDecoder *d;
	char	   *buf;
	size_t		len;
	size_t		cap;
} Out;

static bool fail(BinlogDecoder *d, const char *fmt,...) __attribute__((format(printf, 2, 3)));
static const uint8_t *take(Reader *r, size_t n);
static uint64_t le(Reader *r, int n);
static uint64_t be(Reader *r, int n);
static uint64_t lenenc(Reader *r);
static char *dup_bytes(BinlogDecoder *d, const uint8_t *p, size_t n);
static char *take_string(BinlogDecoder *d, Reader *r, size_t n);
static bool read_column_meta(Reader *r, BinlogColumn *c);
static void resolve_string_type(BinlogColumn *c);
static void set_kind(BinlogColumn *c);
static bool is_numeric(const BinlogColumn *c);
static bool is_character(const BinlogColumn *c);
static bool is_enum_or_set(const BinlogColumn *c);
static bool read_optional_metadata(BinlogDecoder *d, Reader *r, BinlogTableMap *tm);
static void read_charsets(Reader *r, BinlogTableMap *tm, bool (*applies) (const BinlogColumn *),
						  bool per_column);
static void read_labels(BinlogDecoder *d, Reader *r, BinlogTableMap *tm, uint8_t type);
static bool read_image(BinlogDecoder *d, Reader *r, const BinlogTableMap *tm,
					   const uint8_t *columns, BinlogRow *row);
static bool decode_value(BinlogDecoder *d, Reader *r, const BinlogColumn *c, char **value,
						 const char **error);
static bool decode_number(BinlogDecoder *d, Reader *r, const BinlogColumn *c, Out *o);
static bool decode_temporal(Reader *r, const BinlogColumn *c, Out *o);
static bool decode_enum_set(Reader *r, const BinlogColumn *c, Out *o, const char **error);
static bool decode_bytes(BinlogDecoder *d, Reader *r, const BinlogColumn *c, Out *o,
						 const char **error);
static void put(Out *o, const char *s, size_t n);
static void putf(Out *o, const char *fmt,...) __attribute__((format(printf, 2, 3)));
static char *finish(Out *o);
static void decode_decimal(Reader *r, const BinlogColumn *c, Out *o);
static void decode_float(double v, int max_digits, bool is_float, Out *o);
static void put_fraction(Out *o, uint32_t micro, int fsp);
static uint32_t read_fraction(Reader *r, int fsp);
static void decode_datetime2(Reader *r, const BinlogColumn *c, Out *o);
static void decode_timestamp2(Reader *r, const BinlogColumn *c, Out *o);
static void decode_time2(Reader *r, const BinlogColumn *c, Out *o);
static void decode_old_temporal(Reader *r, const BinlogColumn *c, Out *o);
static void decode_set(Reader *r, const BinlogColumn *c, Out *o);
static const char *decode_string(BinlogDecoder *d, const BinlogColumn *c, const uint8_t *p,
								 size_t n, Out *o);
static bool valid_utf8(const uint8_t *p, size_t n);

static const int dig2bytes[10] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};

/* Code points of cp1252 0x80..0x9F, which MySQL calls latin1; 0 where undefined. */
static const uint16_t cp1252_high[32] = {
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178
};

bool
binlog_is_rows_event(int event_type)
{
	return (event_type >= BINLOG_WRITE_ROWS_V1 && event_type <= BINLOG_DELETE_ROWS_V1) ||
		(event_type >= BINLOG_WRITE_ROWS_V2 && event_type <= BINLOG_DELETE_ROWS_V2);
}

const char *
binlog_kind_name(BinlogKind kind)
{
	static const char *const names[] = {"string", "integer", "decimal", "float", "date",
	"datetime", "timestamp", "time", "enum", "set", "other"};

	return names[kind];
}

static bool
fail(BinlogDecoder *d, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
	return false;
}

/* The next n bytes, or NULL (and failed set) when the body has fewer. */
static const uint8_t *
take(Reader *r, size_t n)
{
	const uint8_t *p = r->p;

	if (r->failed || (size_t) (r->end - r->p) < n)
	{
		r->failed = true;
		r->p = r->end;
		return NULL;
	}
	r->p += n;
	return p;
}

/* A little-endian integer of n <= 8 bytes; 0 past the end. */
static uint64_t
le(Reader *r, int n)
{
	const uint8_t *p = take(r, n);
	uint64_t	v = 0;

	for (int i = n - 1; p && i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t
be(Reader *r, int n)
{
	const uint8_t *p = take(r, n);
	uint64_t	v = 0;

	for (int i = 0; p && i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* n bytes as a NUL-terminated string; "" past the end. */
static char *
take_string(BinlogDecoder *d, Reader *r, size_t n)
{
	const uint8_t *p = take(r, n);

	return p ? dup_bytes(d, p, n) : dup_bytes(d, (const uint8_t *) "", 0);
}

/* The protocol's length-encoded integer. */
static uint64_t
lenenc(Reader *r)
{
	uint8_t		first = (uint8_t) le(r, 1);

	if (first < 0xfb)
		return first;
	if (first == 0xfc)
		return le(r, 2);
	if (first == 0xfd)
		return le(r, 3);
	if (first == 0xfe)
		return le(r, 8);
	r->failed = true;			/* 0xfb is NULL, 0xff an error: neither belongs here */
	return 0;
}

static char *
dup_bytes(BinlogDecoder *d, const uint8_t *p, size_t n)
{
	char	   *s = d->alloc(d->ctx, n + 1);

	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/*
 * TABLE_MAP: table id, names, column types, their metadata, nullability, and the optional
 * metadata binlog_row_metadata adds.
 */
bool
binlog_decode_table_map(BinlogDecoder *d, const uint8_t *body, size_t len, BinlogTableMap *tm)
{
	Reader		r = {body, body + len, false};
	size_t		n;
	size_t		meta_len;
	const uint8_t *types;
	const uint8_t *nulls;
	Reader		meta;

	memset(tm, 0, sizeof(*tm));
	tm->table_id = le(&r, 6);
	(void) le(&r, 2);			/* flags */
	n = (size_t) le(&r, 1);
	tm->db = take_string(d, &r, n);
	(void) take(&r, 1);			/* NUL */
	n = (size_t) le(&r, 1);
	tm->table = take_string(d, &r, n);
	(void) take(&r, 1);
	tm->ncols = (int) lenenc(&r);
	if (r.failed || tm->ncols <= 0 || tm->ncols > 4096)
		return fail(d, "malformed TABLE_MAP event");
	types = take(&r, tm->ncols);
	meta_len = (size_t) lenenc(&r);
	meta.p = take(&r, meta_len);
	meta.end = meta.p ? meta.p + meta_len : NULL;
	meta.failed = r.failed;
	nulls = take(&r, (tm->ncols + 7) / 8);
	if (r.failed || types == NULL || nulls == NULL)
		return fail(d, "malformed TABLE_MAP event for %s.%s", tm->db, tm->table);

	tm->cols = d->alloc(d->ctx, sizeof(BinlogColumn) * tm->ncols);
	memset(tm->cols, 0, sizeof(BinlogColumn) * tm->ncols);
	for (int i = 0; i < tm->ncols; i++)
	{
		BinlogColumn *c = &tm->cols[i];

		c->type = types[i];
		c->collation = -1;
		c->nullable = (nulls[i / 8] >> (i % 8)) & 1;
		if (!read_column_meta(&meta, c))
			return fail(d, "unsupported column type %d in TABLE_MAP event for %s.%s",
						types[i], tm->db, tm->table);
		resolve_string_type(c);
		set_kind(c);
	}
	if (meta.failed)
		return fail(d, "malformed column metadata in TABLE_MAP event for %s.%s", tm->db, tm->table);
	return read_optional_metadata(d, &r, tm);
}

/* The per-type metadata of one column, as TABLE_MAP packs it. */
static bool
read_column_meta(Reader *r, BinlogColumn *c)
{
	switch (c->type)
	{
		case T_FLOAT:
		case T_DOUBLE:
		case T_BLOB:
		case T_TINY_BLOB:
		case T_MEDIUM_BLOB:
		case T_LONG_BLOB:
		case T_GEOMETRY:
		case T_JSON:
		case T_TIMESTAMP2:
		case T_DATETIME2:
		case T_TIME2:
			c->meta = (uint16_t) le(r, 1);
			return true;
		case T_VARCHAR:
		case T_VAR_STRING:
			c->meta = (uint16_t) le(r, 2);
			return true;
		case T_NEWDECIMAL:
		case T_STRING:
		case T_ENUM:
		case T_SET:
		case T_BIT:
			c->meta = (uint16_t) be(r, 2);	/* first byte high: type/precision/bits */
			return true;
		case T_DECIMAL:
		case T_TINY:
		case T_SHORT:
		case T_LONG:
		case T_NULL:
		case T_TIMESTAMP:
		case T_LONGLONG:
		case T_INT24:
		case T_DATE:
		case T_TIME:
		case T_DATETIME:
		case T_YEAR:
		case T_NEWDATE:
			c->meta = 0;
			return true;
	}
	return false;
}

/*
 * CHAR, ENUM and SET all travel as STRING; the metadata's first byte says which.  CHAR
 * lengths above 255 borrow two bits of that byte.
 */
static void
resolve_string_type(BinlogColumn *c)
{
	uint8_t		real;

	if (c->type != T_STRING && c->type != T_ENUM && c->type != T_SET)
		return;
	real = c->meta >> 8;
	if (real == T_ENUM || real == T_SET)
	{
		c->type = real;
		c->meta &= 0xff;		/* pack length: 1 or 2 (ENUM), 1..4 or 8 (SET) */
		return;
	}
	if ((real & 0x30) != 0x30)
	{
		c->meta = (uint16_t) ((c->meta & 0xff) | (((real & 0x30) ^ 0x30) << 4));
		real |= 0x30;
	}
	else
		c->meta &= 0xff;
	c->type = T_STRING;
}

static void
set_kind(BinlogColumn *c)
{
	static const struct
	{
		uint8_t		type;
		BinlogKind	kind;
		const char *name;
	}			types[] = {
		{T_TINY, BINLOG_KIND_INTEGER, "tinyint"}, {T_SHORT, BINLOG_KIND_INTEGER, "smallint"},
		{T_INT24, BINLOG_KIND_INTEGER, "mediumint"}, {T_LONG, BINLOG_KIND_INTEGER, "int"},
		{T_LONGLONG, BINLOG_KIND_INTEGER, "bigint"}, {T_YEAR, BINLOG_KIND_INTEGER, "year"},
		{T_BIT, BINLOG_KIND_INTEGER, "bit"}, {T_NEWDECIMAL, BINLOG_KIND_DECIMAL, "decimal"},
		{T_FLOAT, BINLOG_KIND_FLOAT, "float"}, {T_DOUBLE, BINLOG_KIND_FLOAT, "double"},
		{T_DATE, BINLOG_KIND_DATE, "date"}, {T_NEWDATE, BINLOG_KIND_DATE, "date"},
		{T_DATETIME, BINLOG_KIND_DATETIME, "datetime"}, {T_DATETIME2, BINLOG_KIND_DATETIME, "datetime"},
		{T_TIMESTAMP, BINLOG_KIND_TIMESTAMP, "timestamp"},
		{T_TIMESTAMP2, BINLOG_KIND_TIMESTAMP, "timestamp"},
		{T_TIME, BINLOG_KIND_TIME, "time"}, {T_TIME2, BINLOG_KIND_TIME, "time"},
		{T_ENUM, BINLOG_KIND_ENUM, "enum"}, {T_SET, BINLOG_KIND_SET, "set"},
		{T_VARCHAR, BINLOG_KIND_STRING, "varchar"}, {T_VAR_STRING, BINLOG_KIND_STRING, "varchar"},
		{T_STRING, BINLOG_KIND_STRING, "char"}, {T_BLOB, BINLOG_KIND_STRING, "text/blob"},
		{T_TINY_BLOB, BINLOG_KIND_STRING, "text/blob"},
		{T_MEDIUM_BLOB, BINLOG_KIND_STRING, "text/blob"},
		{T_LONG_BLOB, BINLOG_KIND_STRING, "text/blob"},
		{T_GEOMETRY, BINLOG_KIND_OTHER, "geometry"}, {T_JSON, BINLOG_KIND_OTHER, "json"},
	};

	c->kind = BINLOG_KIND_OTHER;
	c->type_name = "unsupported type";
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == c->type)
		{
			c->kind = types[i].kind;
			c->type_name = types[i].name;
			return;
		}
}

/* The columns SIGNEDNESS has a bit for. */
static bool
is_numeric(const BinlogColumn *c)
{
	switch (c->type)
	{
		case T_TINY:
		case T_SHORT:
		case T_INT24:
		case T_LONG:
		case T_LONGLONG:
		case T_NEWDECIMAL:
		case T_DECIMAL:
		case T_FLOAT:
		case T_DOUBLE:
			return true;
	}
	return false;
}

/* The columns DEFAULT_CHARSET/COLUMN_CHARSET describe, in their order. */
static bool
is_character(const BinlogColumn *c)
{
	return c->kind == BINLOG_KIND_STRING;
}

static bool
is_enum_or_set(const BinlogColumn *c)
{
	return c->type == T_ENUM || c->type == T_SET;
}

/*
 * The optional metadata: type, length, value triples.  Fields this decoder does not use
 * (geometry types, primary keys) are skipped by their length.
 */
static bool
read_optional_metadata(BinlogDecoder *d, Reader *r, BinlogTableMap *tm)
{
	while (r->p < r->end && !r->failed)
	{
		uint8_t		type = (uint8_t) le(r, 1);
		size_t		len = (size_t) lenenc(r);
		Reader		f;

		f.p = take(r, len);
		if (f.p == NULL)
			break;
		f.end = f.p + len;
		f.failed = false;
		switch (type)
		{
			case OM_SIGNEDNESS:
				{
					int			bit = 0;

					for (int i = 0; i < tm->ncols; i++)
						if (is_numeric(&tm->cols[i]))
						{
							if (bit / 8 < (int) len)
								tm->cols[i].is_unsigned = (f.p[bit / 8] >> (7 - bit % 8)) & 1;
							bit++;
						}
					break;
				}
			case OM_DEFAULT_CHARSET:
			case OM_COLUMN_CHARSET:
				read_charsets(&f, tm, is_character, type == OM_COLUMN_CHARSET);
				break;
			case OM_ENUM_SET_DEFAULT_CHARSET:
			case OM_ENUM_SET_COLUMN_CHARSET:
				read_charsets(&f, tm, is_enum_or_set, type == OM_ENUM_SET_COLUMN_CHARSET);
				break;
			case OM_COLUMN_NAME:
				for (int i = 0; i < tm->ncols && !f.failed; i++)
				{
					tm->cols[i].name = take_string(d, &f, (size_t) lenenc(&f));
				}
				tm->has_names = !f.failed;
				break;
			case OM_SET_STR_VALUE:
			case OM_ENUM_STR_VALUE:
				read_labels(d, &f, tm, type == OM_SET_STR_VALUE ? T_SET : T_ENUM);
				break;
		}
		if (f.failed)
			return fail(d, "malformed optional metadata (field %d) in TABLE_MAP event for %s.%s",
						type, tm->db, tm->table);
	}
	if (r->failed)
		return fail(d, "malformed optional metadata in TABLE_MAP event for %s.%s", tm->db, tm->table);
	return true;
}

/*
 * Collations of the columns applies() selects: either one per column, or a default followed
 * by (index among those columns, collation) pairs for the exceptions.
 */
static void
read_charsets(Reader *r, BinlogTableMap *tm, bool (*applies) (const BinlogColumn *),
			  bool per_column)
{
	int			dflt = per_column ? -1 : (int) lenenc(r);
	int			k = 0;

	for (int i = 0; i < tm->ncols; i++)
		if (applies(&tm->cols[i]))
			tm->cols[i].collation = per_column ? (int) lenenc(r) : dflt;
	while (!per_column && r->p < r->end && !r->failed)
	{
		int			index = (int) lenenc(r);
		int			collation = (int) lenenc(r);

		k = 0;
		for (int i = 0; i < tm->ncols; i++)
			if (applies(&tm->cols[i]) && k++ == index)
				tm->cols[i].collation = collation;
	}
}

/* SET_STR_VALUE / ENUM_STR_VALUE: for each such column, a count and its labels. */
static void
read_labels(BinlogDecoder *d, Reader *r, BinlogTableMap *tm, uint8_t type)
{
	for (int i = 0; i < tm->ncols && !r->failed; i++)
	{
		BinlogColumn *c = &tm->cols[i];

		if (c->type != type)
			continue;
		c->nlabels = (int) lenenc(r);
		if (r->failed || c->nlabels > 65535)
		{
			r->failed = true;
			return;
		}
		c->labels = d->alloc(d->ctx, sizeof(char *) * (c->nlabels + 1));
		for (int j = 0; j < c->nlabels; j++)
		{
			c->labels[j] = take_string(d, r, (size_t) lenenc(r));
		}
	}
}

/* The table id of a rows event, to find its TABLE_MAP before decoding it. */
uint64_t
binlog_rows_table_id(const uint8_t *body, size_t len)
{
	Reader		r = {body, body + len, false};

	return le(&r, 6);
}

/*
 * A rows event: post-header, (v2) extra data, the column count and columns-present bitmaps,
 * then row images until the end of the body (one image per row; two for an update).
 */
bool
binlog_decode_rows(BinlogDecoder *d, int event_type, const uint8_t *body, size_t len,
				   const BinlogTableMap *tm, BinlogRows *rows)
{
	Reader		r = {body, body + len, false};
	bool		v2 = event_type >= BINLOG_WRITE_ROWS_V2;
	int			op = v2 ? event_type - BINLOG_WRITE_ROWS_V2 : event_type - BINLOG_WRITE_ROWS_V1;
	const uint8_t *before_cols;
	const uint8_t *after_cols;
	int			cap = 16;
	int			ncols;

	memset(rows, 0, sizeof(*rows));
	rows->event_type = event_type;
	rows->table_id = le(&r, 6);
	rows->flags = (uint16_t) le(&r, 2);
	if (v2)
	{
		size_t		extra = (size_t) le(&r, 2);

		if (extra < 2)
			return fail(d, "malformed rows event (extra data length %zu)", extra);
		(void) take(&r, extra - 2);
	}
	ncols = (int) lenenc(&r);
	if (r.failed || ncols != tm->ncols)
		return fail(d, "rows event for %s.%s has %d columns, its TABLE_MAP %d",
					tm->db, tm->table, ncols, tm->ncols);
	before_cols = take(&r, (ncols + 7) / 8);
	after_cols = op == 1 ? take(&r, (ncols + 7) / 8) : before_cols;
	if (r.failed || op < 0 || op > 2)
		return fail(d, "malformed rows event for %s.%s", tm->db, tm->table);

	if (op != 0)
		rows->before = d->alloc(d->ctx, sizeof(BinlogRow) * cap);
	if (op != 2)
		rows->after = d->alloc(d->ctx, sizeof(BinlogRow) * cap);
	while (r.p < r.end)
	{
		if (rows->nrows == cap)
		{
			BinlogRow  *b = rows->before;
			BinlogRow  *a = rows->after;

			cap *= 2;
			if (b)
			{
				rows->before = d->alloc(d->ctx, sizeof(BinlogRow) * cap);
				memcpy(rows->before, b, sizeof(BinlogRow) * rows->nrows);
			}
			if (a)
			{
				rows->after = d->alloc(d->ctx, sizeof(BinlogRow) * cap);
				memcpy(rows->after, a, sizeof(BinlogRow) * rows->nrows);
			}
		}
		if (rows->before && !read_image(d, &r, tm, before_cols, &rows->before[rows->nrows]))
			return false;
		if (rows->after && !read_image(d, &r, tm, after_cols, &rows->after[rows->nrows]))
			return false;
		rows->nrows++;
	}
	return true;
}

/* One row image: a NULL bitmap over the present columns, then their values. */
static bool
read_image(BinlogDecoder *d, Reader *r, const BinlogTableMap *tm, const uint8_t *columns,
		   BinlogRow *row)
{
	int			npresent = 0;
	int			k = 0;
	const uint8_t *nulls;

	for (int i = 0; i < tm->ncols; i++)
		npresent += (columns[i / 8] >> (i % 8)) & 1;
	nulls = take(r, (npresent + 7) / 8);
	if (nulls == NULL)
		return fail(d, "row image of %s.%s ends early", tm->db, tm->table);
	row->present = d->alloc(d->ctx, sizeof(bool) * tm->ncols);
	row->values = d->alloc(d->ctx, sizeof(char *) * tm->ncols);
	row->error = NULL;
	for (int i = 0; i < tm->ncols; i++)
	{
		const BinlogColumn *c = &tm->cols[i];
		const char *error = NULL;

		row->values[i] = NULL;
		row->present[i] = (columns[i / 8] >> (i % 8)) & 1;
		if (!row->present[i])
			continue;
		if ((nulls[k / 8] >> (k % 8)) & 1)
		{
			k++;
			continue;
		}
		k++;
		if (!decode_value(d, r, c, &row->values[i], &error))
			return false;
		if (error && !row->error)
		{
			char	   *msg = d->alloc(d->ctx, 300);

			snprintf(msg, 300, "column %s of %s.%s: %s", c->name ? c->name : "?",
					 tm->db, tm->table, error);
			row->error = msg;
		}
	}
	if (r->failed)
		return fail(d, "row image of %s.%s ends early", tm->db, tm->table);
	return true;
}

/*
 * One value as the text MariaDB would print for it.  False when the image itself is
 * broken (the rest cannot be found); *error when only this value could not become text.
 */
static bool
decode_value(BinlogDecoder *d, Reader *r, const BinlogColumn *c, char **value, const char **error)
{
	Out			o = {d, NULL, 0, 0};
	bool		ok;

	if (c->type == T_NULL)
		return true;
	switch (c->kind)
	{
		case BINLOG_KIND_INTEGER:
		case BINLOG_KIND_DECIMAL:
		case BINLOG_KIND_FLOAT:
			ok = decode_number(d, r, c, &o);
			break;
		case BINLOG_KIND_DATE:
		case BINLOG_KIND_DATETIME:
		case BINLOG_KIND_TIMESTAMP:
		case BINLOG_KIND_TIME:
			ok = decode_temporal(r, c, &o);
			break;
		case BINLOG_KIND_ENUM:
		case BINLOG_KIND_SET:
			ok = decode_enum_set(r, c, &o, error);
			break;
		default:
			ok = decode_bytes(d, r, c, &o, error);
			break;
	}
	if (!ok)
		return false;
	if (r->failed)
		return fail(d, "row image ends inside a %s value", c->type_name);
	*value = finish(&o);
	return true;
}

/* Integers (signed or not), YEAR, BIT (as its number), DECIMAL, FLOAT and DOUBLE. */
static bool
decode_number(BinlogDecoder *d, Reader *r, const BinlogColumn *c, Out *o)
{
	static const int sizes[] = {[T_TINY] = 1, [T_SHORT] = 2, [T_INT24] = 3, [T_LONG] = 4,
	[T_LONGLONG] = 8};
	uint64_t	v;
	size_t		n;

	switch (c->type)
	{
		case T_TINY:
		case T_SHORT:
		case T_INT24:
		case T_LONG:
		case T_LONGLONG:
			v = le(r, sizes[c->type]);
			if (c->is_unsigned)
				putf(o, "%llu", (unsigned long long) v);
			else
			{
				int			shift = 64 - 8 * sizes[c->type];

				putf(o, "%lld", (long long) ((int64_t) (v << shift) >> shift));
			}
			return true;
		case T_YEAR:
			v = le(r, 1);
			putf(o, "%04u", v == 0 ? 0 : 1900 + (unsigned) v);
			return true;
		case T_BIT:
			n = (c->meta & 0xff) + ((c->meta >> 8) ? 1 : 0);
			if (n > 8)
				return fail(d, "bit column too wide (%zu bytes)", n);
			putf(o, "%llu", (unsigned long long) be(r, (int) n));
			return true;
		case T_NEWDECIMAL:
			decode_decimal(r, c, o);
			return true;
		case T_FLOAT:
			{
				uint32_t	bits = (uint32_t) le(r, 4);
				float		f;

				memcpy(&f, &bits, 4);
				decode_float(f, 9, true, o);
				return true;
			}
		case T_DOUBLE:
			{
				uint64_t	bits = le(r, 8);
				double		f;

				memcpy(&f, &bits, 8);
				decode_float(f, 17, false, o);
				return true;
			}
	}
	return fail(d, "cannot decode column type %d", c->type);
}

/* DATE, DATETIME(0-6), TIMESTAMP(0-6) in UTC, TIME(0-6), and their pre-5.6 formats. */
static bool
decode_temporal(Reader *r, const BinlogColumn *c, Out *o)
{
	uint32_t	v;

	switch (c->type)
	{
		case T_DATE:
		case T_NEWDATE:
			v = (uint32_t) le(r, 3);
			putf(o, "%04u-%02u-%02u", v >> 9, (v >> 5) & 15, v & 31);
			break;
		case T_DATETIME2:
			decode_datetime2(r, c, o);
			break;
		case T_TIMESTAMP2:
			decode_timestamp2(r, c, o);
			break;
		case T_TIME2:
			decode_time2(r, c, o);
			break;
		default:
			decode_old_temporal(r, c, o);
	}
	return true;
}

/* ENUM: its label (0, what an invalid insert stores, is ''); SET: its labels joined by ','. */
static bool
decode_enum_set(Reader *r, const BinlogColumn *c, Out *o, const char **error)
{
	unsigned	i;

	if (c->type == T_SET)
	{
		if (c->labels != NULL)
			decode_set(r, c, o);
		else
		{
			(void) take(r, c->meta);
			*error = "SET value without its labels (binlog_row_metadata is not FULL)";
		}
		return true;
	}
	i = (unsigned) le(r, c->meta == 2 ? 2 : 1);
	if (i == 0)
		put(o, "", 0);
	else if (c->labels == NULL || (int) i > c->nlabels)
		*error = "ENUM value without its label (binlog_row_metadata is not FULL)";
	else
		put(o, c->labels[i - 1], strlen(c->labels[i - 1]));
	return true;
}

/*
 * Length-prefixed bytes: CHAR/VARCHAR (1 or 2 length bytes, by the column's byte length),
 * TEXT/BLOB (1-4, from the metadata) as text; GEOMETRY and MySQL's binary JSON skipped.
 */
static bool
decode_bytes(BinlogDecoder *d, Reader *r, const BinlogColumn *c, Out *o, const char **error)
{
	size_t		n;
	const uint8_t *p;

	switch (c->type)
	{
		case T_VARCHAR:
		case T_VAR_STRING:
		case T_STRING:
			n = (size_t) le(r, c->meta > 255 ? 2 : 1);
			break;
		case T_BLOB:
		case T_TINY_BLOB:
		case T_MEDIUM_BLOB:
		case T_LONG_BLOB:
		case T_GEOMETRY:
		case T_JSON:
			if (c->meta < 1 || c->meta > 4)
				return fail(d, "%s column with length size %d", c->type_name, c->meta);
			n = (size_t) le(r, c->meta);
			break;
		default:
			return fail(d, "cannot decode column type %d", c->type);
	}
	p = take(r, n);
	if (p == NULL)
		return true;			/* the caller reports the short image */
	if (c->kind == BINLOG_KIND_OTHER)
		*error = "geometry and MySQL JSON values are not decoded";
	else
		*error = decode_string(d, c, p, n, o);
	return true;
}

static void
put(Out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap)
	{
		size_t		cap = o->cap ? o->cap * 2 : 32;
		char	   *buf;

		while (cap < o->len + n + 1)
			cap *= 2;
		buf = o->d->alloc(o->d->ctx, cap);
		if (o->len)
			memcpy(buf, o->buf, o->len);
		o->buf = buf;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void
putf(Out *o, const char *fmt,...)
{
	char		buf[128];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	put(o, buf, n < (int) sizeof(buf) ? (size_t) n : sizeof(buf) - 1);
}

static char *
finish(Out *o)
{
	if (o->buf == NULL)
		put(o, "", 0);
	return o->buf;
}

/*
 * DECIMAL(p,s): groups of 9 digits in 4 big-endian bytes, shorter groups at the outer
 * ends; the first bit is the sign (set when positive) and a negative value has every
 * byte inverted.
 */
static void
decode_decimal(Reader *r, const BinlogColumn *c, Out *o)
{
	int			precision = c->meta >> 8;
	int			scale = c->meta & 0xff;
	int			intg = precision - scale;
	int			intg0 = intg / 9;
	int			intg0x = intg % 9;
	int			frac0 = scale / 9;
	int			frac0x = scale % 9;
	int			size = intg0 * 4 + dig2bytes[intg0x] + frac0 * 4 + dig2bytes[frac0x];
	const uint8_t *src = take(r, size);
	uint8_t		buf[64];
	Reader		b;
	bool		negative;
	uint32_t	mask;
	bool		leading = true;

	if (src == NULL || size > (int) sizeof(buf) || size == 0)
	{
		r->failed = true;
		return;
	}
	memcpy(buf, src, size);
	negative = (buf[0] & 0x80) == 0;
	buf[0] ^= 0x80;
	mask = negative ? 0xffffffff : 0;
	b.p = buf;
	b.end = buf + size;
	b.failed = false;
	if (negative)
		put(o, "-", 1);
	if (intg0x)
	{
		uint32_t	v = ((uint32_t) be(&b, dig2bytes[intg0x]) ^ mask) &
			(dig2bytes[intg0x] == 4 ? 0xffffffff : ((1u << (8 * dig2bytes[intg0x])) - 1));

		if (v)
		{
			putf(o, "%u", v);
			leading = false;
		}
	}
	for (int i = 0; i < intg0; i++)
	{
		uint32_t	v = (uint32_t) be(&b, 4) ^ mask;

		if (leading && v == 0)
			continue;
		putf(o, leading ? "%u" : "%09u", v);
		leading = false;
	}
	if (leading)
		put(o, "0", 1);
	if (scale > 0)
		put(o, ".", 1);
	for (int i = 0; i < frac0; i++)
		putf(o, "%09u", (uint32_t) be(&b, 4) ^ mask);
	if (frac0x)
	{
		uint32_t	v = ((uint32_t) be(&b, dig2bytes[frac0x]) ^ mask) &
			(dig2bytes[frac0x] == 4 ? 0xffffffff : ((1u << (8 * dig2bytes[frac0x])) - 1));

		putf(o, "%0*u", frac0x, v);
	}
}

/*
 * The shortest decimal that reads back as the same float or double, printed the way
 * MariaDB does: plain digits for moderate exponents, else 1.5e20 / 1e-7.
 */
static void
decode_float(double v, int max_digits, bool is_float, Out *o)
{
	char		buf[64];
	int			digits;
	int			exp10;
	char	   *e;

	for (digits = 1; digits < max_digits; digits++)
	{
		snprintf(buf, sizeof(buf), "%.*e", digits - 1, v);
		if (is_float ? strtof(buf, NULL) == (float) v : strtod(buf, NULL) == v)
			break;
	}
	snprintf(buf, sizeof(buf), "%.*e", digits - 1, v);
	e = strchr(buf, 'e');
	exp10 = atoi(e + 1);
	if (exp10 >= -5 && exp10 < 15)
	{
		int			decimals = digits - 1 - exp10;

		snprintf(buf, sizeof(buf), "%.*f", decimals > 0 ? decimals : 0, v);
		put(o, buf, strlen(buf));
		return;
	}
	*e = '\0';
	if (strchr(buf, '.'))
	{
		char	   *end = buf + strlen(buf) - 1;

		while (*end == '0')
			*end-- = '\0';
		if (*end == '.')
			*end = '\0';
	}
	putf(o, "%se%d", buf, exp10);
}

/* Fractional seconds: (fsp + 1) / 2 big-endian bytes, scaled to microseconds. */
static uint32_t
read_fraction(Reader *r, int fsp)
{
	switch (fsp)
	{
		case 1:
		case 2:
			return (uint32_t) be(r, 1) * 10000;
		case 3:
		case 4:
			return (uint32_t) be(r, 2) * 100;
		case 5:
		case 6:
			return (uint32_t) be(r, 3);
	}
	return 0;
}

static void
put_fraction(Out *o, uint32_t micro, int fsp)
{
	static const uint32_t div[7] = {1000000, 100000, 10000, 1000, 100, 10, 1};

	if (fsp > 0 && fsp <= 6)
		putf(o, ".%0*u", fsp, micro / div[fsp]);
}

/*
 * DATETIME2: 5 big-endian bytes, offset by 2^39: year*13+month in 17 bits, day 5, hour 5,
 * minute 6, second 6; then the fraction.
 */
static void
decode_datetime2(Reader *r, const BinlogColumn *c, Out *o)
{
	int64_t		v = (int64_t) be(r, 5) - 0x8000000000LL;
	uint32_t	micro = read_fraction(r, c->meta);
	int64_t		ymd;
	int64_t		hms;

	if (v < 0)
		v = -v;					/* only from corrupt data; keep the output well-formed */
	ymd = v >> 17;
	hms = v % (1 << 17);
	putf(o, "%04d-%02d-%02d %02d:%02d:%02d", (int) ((ymd >> 5) / 13), (int) ((ymd >> 5) % 13),
		 (int) (ymd % 32), (int) (hms >> 12), (int) ((hms >> 6) % 64), (int) (hms % 64));
	put_fraction(o, micro, c->meta);
}

/* TIMESTAMP2: big-endian epoch seconds (UTC), then the fraction; 0 is the zero timestamp. */
static void
decode_timestamp2(Reader *r, const BinlogColumn *c, Out *o)
{
	time_t		secs = (time_t) be(r, 4);
	uint32_t	micro = read_fraction(r, c->meta);
	struct tm	tm;

	if (secs == 0 && micro == 0)
		put(o, "0000-00-00 00:00:00", 19);
	else
	{
		gmtime_r(&secs, &tm);
		putf(o, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec);
	}
	put_fraction(o, micro, c->meta);
}

/*
 * TIME2: 3 big-endian bytes offset by 2^23 (hour 10 bits, minute 6, second 6), then the
 * fraction; a negative time borrows from the integer part when the fraction is not zero.
 */
static void
decode_time2(Reader *r, const BinlogColumn *c, Out *o)
{
	int64_t		packed;
	int64_t		intpart;
	int64_t		hms;
	int64_t		frac = 0;

	switch (c->meta)
	{
		case 1:
		case 2:
			intpart = (int64_t) be(r, 3) - 0x800000;
			frac = (int64_t) be(r, 1);
			if (intpart < 0 && frac != 0)
			{
				intpart++;
				frac -= 0x100;
			}
			packed = intpart * (1LL << 24) + frac * 10000;
			break;
		case 3:
		case 4:
			intpart = (int64_t) be(r, 3) - 0x800000;
			frac = (int64_t) be(r, 2);
			if (intpart < 0 && frac != 0)
			{
				intpart++;
				frac -= 0x10000;
			}
			packed = intpart * (1LL << 24) + frac * 100;
			break;
		case 5:
		case 6:
			packed = (int64_t) be(r, 6) - 0x800000000000LL;
			break;
		default:
			packed = ((int64_t) be(r, 3) - 0x800000) * (1LL << 24);
	}
	if (packed < 0)
	{
		put(o, "-", 1);
		packed = -packed;
	}
	hms = packed >> 24;
	putf(o, "%02d:%02d:%02d", (int) ((hms >> 12) % (1 << 10)), (int) ((hms >> 6) % 64),
		 (int) (hms % 64));
	put_fraction(o, (uint32_t) (packed % (1LL << 24)), c->meta);
}

/* The pre-5.6 temporal formats, still found in tables created long ago. */
static void
decode_old_temporal(Reader *r, const BinlogColumn *c, Out *o)
{
	if (c->type == T_DATETIME)
	{
		uint64_t	v = le(r, 8);
		uint64_t	d = v / 1000000;
		uint64_t	t = v % 1000000;

		putf(o, "%04d-%02d-%02d %02d:%02d:%02d", (int) (d / 10000), (int) (d / 100 % 100),
			 (int) (d % 100), (int) (t / 10000), (int) (t / 100 % 100), (int) (t % 100));
	}
	else if (c->type == T_TIMESTAMP)
	{
		BinlogColumn c2 = *c;
		uint8_t		bytes[4];
		uint32_t	v = (uint32_t) le(r, 4);
		Reader		b = {bytes, bytes + 4, false};

		bytes[0] = v >> 24;
		bytes[1] = v >> 16;
		bytes[2] = v >> 8;
		bytes[3] = v;
		c2.meta = 0;
		decode_timestamp2(&b, &c2, o);
	}
	else
	{
		int32_t		v = (int32_t) le(r, 3);

		if (v & 0x800000)
			v |= ~0xffffff;
		if (v < 0)
		{
			put(o, "-", 1);
			v = -v;
		}
		putf(o, "%02d:%02d:%02d", v / 10000, v / 100 % 100, v % 100);
	}
}

static void
decode_set(Reader *r, const BinlogColumn *c, Out *o)
{
	uint64_t	bits = le(r, c->meta);
	bool		first = true;

	put(o, "", 0);
	for (int i = 0; i < c->nlabels && i < 64; i++)
		if (bits & ((uint64_t) 1 << i))
		{
			if (!first)
				put(o, ",", 1);
			put(o, c->labels[i], strlen(c->labels[i]));
			first = false;
		}
}

/*
 * String bytes as UTF-8 text.  Returns why not when they cannot be: a character set other
 * than utf8/ascii/latin1/binary, invalid UTF-8, or a NUL byte (text cannot hold it); the
 * value then shows as \x-escaped bytes so that the dead letter still tells what it was.
 */
static const char *
decode_string(BinlogDecoder *d, const BinlogColumn *c, const uint8_t *p, size_t n, Out *o)
{
	BinlogCharset cs = c->collation < 0 || d->charset_of == NULL ? BINLOG_CS_UTF8 :
	d->charset_of(d->ctx, c->collation);
	const char *error = NULL;

	if (cs == BINLOG_CS_LATIN1)
	{
		put(o, "", 0);
		for (size_t i = 0; i < n; i++)
		{
			uint32_t	cp = p[i] >= 0x80 && p[i] < 0xa0 ? cp1252_high[p[i] - 0x80] : p[i];
			char		u[4];

			if (cp == 0)
				return "a NUL character, which text cannot hold";
			if (cp < 0x80)
				put(o, (char *) &p[i], 1);
			else if (cp < 0x800)
			{
				u[0] = 0xc0 | (cp >> 6);
				u[1] = 0x80 | (cp & 0x3f);
				put(o, u, 2);
			}
			else
			{
				u[0] = 0xe0 | (cp >> 12);
				u[1] = 0x80 | ((cp >> 6) & 0x3f);
				u[2] = 0x80 | (cp & 0x3f);
				put(o, u, 3);
			}
		}
		return NULL;
	}
	if (cs == BINLOG_CS_OTHER || cs == BINLOG_CS_UNKNOWN)
		error = "a character set other than utf8mb4, utf8mb3, ascii, latin1 or binary";
	else if (memchr(p, 0, n) != NULL)
		error = "a NUL character, which text cannot hold";
	else if (!valid_utf8(p, n))
		error = "bytes that are not valid UTF-8";
	if (error == NULL)
	{
		put(o, (const char *) p, n);
		return NULL;
	}
	put(o, "", 0);
	for (size_t i = 0; i < n; i++)
	{
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			put(o, (const char *) &p[i], 1);
		else
			putf(o, "\\x%02x", p[i]);
	}
	return error;
}

/* Well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static bool
valid_utf8(const uint8_t *p, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		uint8_t		b = p[i];
		int			len;
		uint32_t	cp;

		if (b < 0x80)
		{
			i++;
			continue;
		}
		if ((b & 0xe0) == 0xc0)
			len = 2, cp = b & 0x1f;
		else if ((b & 0xf0) == 0xe0)
			len = 3, cp = b & 0x0f;
		else if ((b & 0xf8) == 0xf0)
			len = 4, cp = b & 0x07;
		else
			return false;
		if (i + len > n)
			return false;
		for (int k = 1; k < len; k++)
		{
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
			cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* ROTATE: the position in the next file, then its name (the rest of the body). */
bool
binlog_decode_rotate(BinlogDecoder *d, const uint8_t *body, size_t len, uint64_t *position,
					 char **file)
{
	Reader		r = {body, body + len, false};

	*position = le(&r, 8);
	if (r.failed || len <= 8 || len - 8 > 512)
		return fail(d, "malformed ROTATE event");
	*file = dup_bytes(d, body + 8, len - 8);
	return true;
}

/* MariaDB's GTID event: sequence number, domain id, flags; the server id is the header's. */
bool
binlog_decode_gtid(const uint8_t *body, size_t len, uint32_t server_id, char *gtid,
				   size_t gtid_len, uint8_t *flags)
{
	Reader		r = {body, body + len, false};
	uint64_t	seq = le(&r, 8);
	uint32_t	domain = (uint32_t) le(&r, 4);

	*flags = (uint8_t) le(&r, 1);
	if (r.failed)
		return false;
	snprintf(gtid, gtid_len, "%u-%u-%llu", domain, server_id, (unsigned long long) seq);
	return true;
}

/* QUERY: the default database and the statement text. */
bool
binlog_decode_query(BinlogDecoder *d, const uint8_t *body, size_t len, char **db, char **query)
{
	Reader		r = {body, body + len, false};
	size_t		db_len;
	size_t		status_len;
	const uint8_t *p;

	(void) le(&r, 4);			/* thread id */
	(void) le(&r, 4);			/* execution time */
	db_len = (size_t) le(&r, 1);
	(void) le(&r, 2);			/* error code */
	status_len = (size_t) le(&r, 2);
	(void) take(&r, status_len);
	p = take(&r, db_len + 1);
	if (r.failed)
		return fail(d, "malformed QUERY event");
	*db = dup_bytes(d, p, db_len);
	*query = dup_bytes(d, r.p, r.end - r.p);
	return true;
}
