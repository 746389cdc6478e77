/*-------------------------------------------------------------------------
 * mysql_source.c
 *	  The MySQL/MariaDB binlog (mysql-cdc) source worker.  Not in this build yet: c360.create_source
 *	  refuses the kind while c360_mysql_source_available is false.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "worker.h"

const bool	c360_mysql_source_available = false;

void
c360_mysql_source_main(Datum arg)
{
	elog(ERROR, "the mysql source worker is not part of this build");
}
