-- customer360 0.8 -> 0.9: orders by difference (issue 19; src/core/orders_sql.c,
-- docs/ARCHITECTURE.md "Orders by difference").  New orders, and updates that keep an
-- order's customer, change the customer's order columns by what changed, without reading
-- all of the customer's orders.  Two indexes make that possible:
--   - the order mirror's customer index also holds the channel, so that the preferred
--     channel (the most frequent) is counted from the index alone where a new order's
--     channel is not the stored one (an index-only scan; it serves every lookup by
--     customer, as the index it replaces did);
--   - a partial index on the orders with a NULL amount or creation time, which the
--     difference probes: where a customer has one, the average and the latest order
--     cannot be kept by difference, and the customer is recomputed as before.  It holds
--     nothing while no order has such a NULL, and costs nothing to keep then.
-- Released scripts are never edited; this one is open until 0.9 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.9'" to load this file. \quit

DROP INDEX c360.orders_customer_id_idx;
CREATE INDEX orders_customer_id_idx ON c360.orders (customer_id, channel);
CREATE INDEX orders_nulls_idx ON c360.orders (customer_id)
    WHERE total_amount IS NULL OR created_at IS NULL;
