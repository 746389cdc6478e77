# bench/scale.sh: the scale knobs bench/run.sh and bench/traits.sh share (sourced), so that
# both measure the same generated shop.  Environment overrides each default.
CUSTOMERS=${BENCH_CUSTOMERS:-100000}
BASE_ORDERS=${BENCH_BASE_ORDERS:-200000}
BASE_EVENTS=${BENCH_BASE_EVENTS:-300000}
EVENTS=${BENCH_EVENTS:-200000}
ORDER_CHANGES=${BENCH_ORDER_CHANGES:-100000}
BATCH=${BENCH_BATCH:-1000}
EXPLAIN=${BENCH_EXPLAIN:-1}
