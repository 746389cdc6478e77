/*-------------------------------------------------------------------------
 * binlog_decode.h
 *	  A MariaDB/MySQL binlog row-image decoder in plain C: TABLE_MAP events into
 *	  column descriptions, WRITE/UPDATE/DELETE_ROWS events (v1 and v2) into rows of
 *	  text values.  No server, no SPI: it runs on captured bytes in a test program.
 *-------------------------------------------------------------------------
 */
#ifndef C360_BINLOG_DECODE_H
#define C360_BINLOG_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Event type codes (the binlog's, see mariadb_rpl.h) this module and its callers use. */
#define BINLOG_QUERY			2
#define BINLOG_ROTATE			4
#define BINLOG_FORMAT_DESC		15
#define BINLOG_XID				16
#define BINLOG_TABLE_MAP		19
#define BINLOG_WRITE_ROWS_V1	23
#define BINLOG_UPDATE_ROWS_V1	24
#define BINLOG_DELETE_ROWS_V1	25
#define BINLOG_HEARTBEAT		27
#define BINLOG_WRITE_ROWS_V2	30
#define BINLOG_UPDATE_ROWS_V2	31
#define BINLOG_DELETE_ROWS_V2	32
#define BINLOG_GTID				162

#define BINLOG_HEADER_LEN		19
#define BINLOG_FL_STANDALONE	0x01	/* GTID event flag: no COMMIT/XID ends the group */

/* What a column's values are, whatever the exact MySQL type: decides what it casts into. */
typedef enum BinlogKind
{
	BINLOG_KIND_STRING,			/* char, varchar, text, blob (binary: bytes as they are) */
	BINLOG_KIND_INTEGER,		/* tinyint..bigint, year, bit */
	BINLOG_KIND_DECIMAL,
	BINLOG_KIND_FLOAT,			/* float, double */
	BINLOG_KIND_DATE,
	BINLOG_KIND_DATETIME,		/* wall clock, no zone */
	BINLOG_KIND_TIMESTAMP,		/* UTC (the binlog holds epoch seconds) */
	BINLOG_KIND_TIME,
	BINLOG_KIND_ENUM,			/* the label */
	BINLOG_KIND_SET,			/* the labels, comma-separated */
	BINLOG_KIND_OTHER			/* geometry, MySQL JSON: skipped, never decoded */
} BinlogKind;

/* The character sets the decoder turns into UTF-8. */
typedef enum BinlogCharset
{
	BINLOG_CS_UNKNOWN = 0,
	BINLOG_CS_UTF8,				/* utf8mb4, utf8mb3, ascii: checked, kept */
	BINLOG_CS_LATIN1,			/* MySQL's latin1 is cp1252: converted */
	BINLOG_CS_BINARY,			/* kept when valid UTF-8 */
	BINLOG_CS_OTHER				/* refused */
} BinlogCharset;

typedef struct BinlogColumn
{
	uint8_t		type;			/* the row image's type code, ENUM/SET/STRING resolved */
	uint16_t	meta;			/* length, fsp, pack length, precision << 8 | scale */
	BinlogKind	kind;
	bool		is_unsigned;
	bool		nullable;
	int			collation;		/* character, ENUM and SET columns; -1 unknown */
	const char *name;			/* NULL unless binlog_row_metadata = FULL */
	int			nlabels;		/* ENUM/SET labels (binlog_row_metadata = FULL) */
	const char **labels;
	const char *type_name;		/* for messages: "varchar", "datetime(3)", ... */
} BinlogColumn;

typedef struct BinlogTableMap
{
	uint64_t	table_id;
	const char *db;
	const char *table;
	int			ncols;
	BinlogColumn *cols;
	bool		has_names;
} BinlogTableMap;

/* One row image: present[i] false when the image left column i out; values NULL = SQL NULL. */
typedef struct BinlogRow
{
	bool	   *present;
	char	  **values;
	const char *error;			/* a value that could not become text; NULL when fine */
} BinlogRow;

typedef struct BinlogRows
{
	int			event_type;		/* BINLOG_WRITE_ROWS_V1 .. BINLOG_DELETE_ROWS_V2 */
	uint64_t	table_id;
	uint16_t	flags;
	int			nrows;
	BinlogRow  *before;			/* update, delete: nrows images; else NULL */
	BinlogRow  *after;			/* write, update: nrows images; else NULL */
} BinlogRows;

/*
 * Where the decoder gets memory (palloc in a backend, malloc in a test; it must not return
 * NULL) and how it learns which character set a collation id belongs to.
 */
typedef struct BinlogDecoder
{
	void	   *(*alloc) (void *ctx, size_t size);
	void	   *ctx;
	BinlogCharset (*charset_of) (void *ctx, int collation);
	char		error[256];		/* why the last call returned false */
} BinlogDecoder;

extern bool binlog_is_rows_event(int event_type);
extern bool binlog_decode_table_map(BinlogDecoder *d, const uint8_t *body, size_t len,
									BinlogTableMap *tm);
extern bool binlog_decode_rows(BinlogDecoder *d, int event_type, const uint8_t *body, size_t len,
							   const BinlogTableMap *tm, BinlogRows *rows);
extern uint64_t binlog_rows_table_id(const uint8_t *body, size_t len);
extern bool binlog_decode_rotate(BinlogDecoder *d, const uint8_t *body, size_t len,
								 uint64_t *position, char **file);
extern bool binlog_decode_gtid(const uint8_t *body, size_t len, uint32_t server_id,
							   char *gtid, size_t gtid_len, uint8_t *flags);
extern bool binlog_decode_query(BinlogDecoder *d, const uint8_t *body, size_t len,
								char **db, char **query);
extern const char *binlog_kind_name(BinlogKind kind);

#endif							/* C360_BINLOG_DECODE_H */
