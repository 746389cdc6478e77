# customer360: PGXS build, regression suites, and the two commands (test, demo) plus bench.

MODULE_big = customer360
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c bgworkers/*.c)))
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
$(OBJS): $(wildcard src/*.h bgworkers/*.h)

.PHONY: test demo bench
test:
	bash test/run.sh

demo:
	bash test/demo.sh

bench:
	bash bench/run.sh

# The Kafka-protocol test broker (librdkafka's mock cluster) used by tests, demo and bench.
test/kafka_broker: test/kafka_broker.c
	$(CC) -O2 -Wall -o $@ $< -lrdkafka
