# customer360: PGXS build, regression suites, and the two commands (test, demo) plus bench.

MODULE_big = customer360
OBJS = \
	src/customer360.o src/change.o src/apply.o src/maintain.o src/rollup.o src/sqlfuncs.o \
	src/shmem.o src/source.o src/sourcefuncs.o src/pgremote.o \
	bgworkers/worker.o bgworkers/launcher.o bgworkers/ticker.o bgworkers/pg_source.o
PGFILEDESC = "customer360 - real-time Customer 360 profile"

EXTENSION = customer360
DATA = $(wildcard sql/customer360--*.sql)

REGRESS = $(patsubst sql/%.sql,%,$(filter-out sql/customer360--%,$(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=customer360

PG_CONFIG ?= $(shell test -x /usr/lib/postgresql/15/bin/pg_config && echo /usr/lib/postgresql/15/bin/pg_config || echo pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs)
PG_CPPFLAGS = -Isrc
# No JIT bitcode: it would need clang on every machine that builds the extension.
override with_llvm = no
include $(PGXS)

.PHONY: test demo bench
test:
	bash test/run.sh

demo:
	bash test/demo.sh

bench:
	bash bench/run.sh
