-- customer360 0.8 -> 0.9: orders by difference (issue 19; src/core/orders_sql.c,
-- docs/ARCHITECTURE.md "Orders by difference").  New orders, and updates that keep an
-- order's customer, change the customer's order columns by what changed, without reading
-- all of the customer's orders.  Two partial indexes make that possible:
--   - orders_customer_channel_idx holds (customer_id, channel), so that the preferred
--     channel (the most frequent) of a customer whose new order has another channel is
--     counted from the index alone (an index-only scan);
--   - orders_recompute_idx holds the orders the difference cannot take: a NULL creation
--     time (it sorts first, so it is the "last" order) or a pair too long for the first
--     index.  A customer with one is recomputed as before.  It holds nothing while no
--     order is like that.  (A NULL amount, which an average leaves out, shows in the
--     stored row instead: no index names the amount, so that amount updates stay HOT.)
-- A btree entry holds at most about 2,700 bytes: the first index leaves out pairs of more
-- than 2,000 (src/core/orders_sql.c, C360_ORDERS_INDEXED_BYTES), so that no order is
-- refused for a long channel.
-- Released scripts are never edited; this one is open until 0.9 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.9'" to load this file. \quit

CREATE INDEX orders_customer_channel_idx ON c360.orders (customer_id, channel)
    WHERE octet_length(customer_id) + octet_length(channel) <= 2000;
CREATE INDEX orders_recompute_idx ON c360.orders (customer_id)
    WHERE created_at IS NULL OR octet_length(customer_id) + octet_length(channel) > 2000;
