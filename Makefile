# customer360: PGXS build, regression suites, and the two commands (test, demo) plus bench.

MODULE_big = customer360
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*/*.c bgworkers/*.c)))
SHLIB_LINK = -lmariadb -lrdkafka -ljansson
PGFILEDESC = "customer360 - real-time Customer 360 profile"

EXTENSION = customer360
DATA = $(wildcard sql/customer360--*.sql)

REGRESS = $(patsubst sql/%.sql,%,$(filter-out sql/customer360--%,$(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=customer360

PG_CONFIG ?= $(shell test -x /usr/lib/postgresql/15/bin/pg_config && echo /usr/lib/postgresql/15/bin/pg_config || echo pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
PG_CPPFLAGS = -Isrc -I/usr/include/mariadb
# No JIT bitcode: it would need clang on every machine that builds the extension.
override with_llvm = no
include $(PGXS)

# PGXS tracks no header dependencies here: a struct changed in a header must rebuild every
# object, or objects built against the old layout crash at run time.
$(OBJS): $(wildcard src/*/*.h bgworkers/*.h)

# The suites need a server that preloads customer360: on any other, CREATE EXTENSION adds its
# "not in shared_preload_libraries" NOTICE to every suite's output and every suite fails with a
# wall of diffs.  So before PGXS's installcheck runs pg_regress, ask the same server
# (PGHOST, PGPORT, PGUSER, as pg_regress will; database postgres, as pg_regress does) and stop
# with one clear message.  The same for c360.database naming the database pg_regress drops and
# re-creates (the launcher would keep it open).  installcheck itself stays the PGXS rule.
installcheck: installcheck-preloaded

.PHONY: installcheck-preloaded
installcheck-preloaded:
	@server="host $${PGHOST:-(default socket)}, port $${PGPORT:-(default)}, user $${PGUSER:-$$(id -un)}"; \
	libs=$$('$(bindir)/psql' -X -A -t -q -d postgres -c 'SHOW shared_preload_libraries') || { \
		echo "make installcheck: cannot query the server ($$server): start it, or set PGHOST, PGPORT and PGUSER for it." >&2; \
		exit 1; }; \
	case ",$$(printf '%s' "$$libs" | tr -d " \"'")," in \
	*,customer360,* | *,customer360.so,* | */customer360,* | */customer360.so,*) ;; \
	*)	echo "make installcheck: the server ($$server) does not preload customer360 (shared_preload_libraries = '$$libs'): no suite was run." >&2; \
		echo "Fix: in that server's postgresql.conf set" >&2; \
		echo "    shared_preload_libraries = 'customer360'" >&2; \
		echo "    c360.database = 'c360'    # any database but $(CONTRIB_TESTDB), which pg_regress drops and re-creates" >&2; \
		echo "then restart the server and run make installcheck again (README, \"Install\")." >&2; \
		exit 1 ;; \
	esac; \
	db=$$('$(bindir)/psql' -X -A -t -q -d postgres -c 'SHOW c360.database') || exit 1; \
	if [ "$$db" = '$(CONTRIB_TESTDB)' ]; then \
		echo "make installcheck: the server ($$server) has c360.database = '$$db', the database pg_regress drops and re-creates: its workers would hold it open and tick its clock; no suite was run." >&2; \
		echo "Fix: set c360.database to another database in that server's postgresql.conf, restart the server, then run make installcheck again." >&2; \
		exit 1; \
	fi

.PHONY: test demo bench bench-index bench-orders bench-scale
test:
	bash test/run.sh

demo:
	bash test/demo.sh

bench:
	bash bench/run.sh

# which index serves the stage queries at 1,000,000 customers (about 15 minutes)
bench-index:
	bash bench/index.sh

# order inserts and updates against plain COPY and UPDATE, 1,000,000 orders (about 3 minutes)
bench-orders:
	bash bench/orders.sh

# the same shop at 100,000 and 10,000,000 customers (about two hours; bench/sizes.sh)
bench-scale:
	bash bench/sizes.sh

# The Kafka-protocol test broker (librdkafka's mock cluster) used by tests, demo and bench.
test/kafka_broker: test/kafka_broker.c
	$(CC) -O2 -Wall -o $@ $< -lrdkafka
