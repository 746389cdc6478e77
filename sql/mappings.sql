-- mappings: c360.map_table's column mappings (input column -> remote column, or for Kafka a
-- path into the message), checked when the mapping is made, each refusal with its SQLSTATE;
-- stored in c360.source_tables.column_map and shown by c360.source_mappings.  No source
-- runs here (the sources are paused rows; the launcher serves another database).
SET client_min_messages = warning;
INSERT INTO c360.sources (name, kind, enabled, phase, options) VALUES
    ('m_pg', 'postgres-cdc', false, 'snapshot', '{"conninfo": "host=127.0.0.1 port=1"}'),
    ('m_my', 'mysql-cdc', false, 'snapshot', '{}'),
    ('m_kafka', 'kafka', false, 'snapshot', '{"topic": "events"}');
RESET client_min_messages;

-- good mappings, one per kind; three arguments still work
SELECT c360.map_table('m_pg', 'shop_orders', 'orders',
                      '{"total_amount": "amount", "created_at": "placed_at", "customer_id": "buyer"}');
SELECT c360.map_table('m_my', 'crm.clients', 'customers', columns => '{"customer_id": "ClientId", "email": "Mail"}');
SELECT c360.map_table('m_my', 'crm.tickets', 'support_tickets');
SELECT c360.map_table('m_kafka', 'events', 'behavioral_events',
                      '{"event_id": "messageId", "customer_id": "userId", "event_time": "timestamp", "product_id": "properties.product_id"}');
SELECT * FROM c360.source_mappings ORDER BY source, remote;
SELECT source, remote, column_map FROM c360.source_tables ORDER BY 1, 2;

-- refusals: nothing changes
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '["amount"]');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '"amount"');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '{"amount": "total_amount"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '{"Total_Amount": "amount"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '{"total_amount": 5}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '{"total_amount": ""}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '{"total_amount": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '{"total_amount": {"a": 1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'orders', '{"total_amount": "amount", "item_count": "amount"}');
\echo :LAST_ERROR_SQLSTATE
-- MySQL names compare without regard to case
SELECT c360.map_table('m_my', 'crm.clients', 'customers', '{"customer_id": "Id", "email": "ID"}');
\echo :LAST_ERROR_SQLSTATE
-- the keys are columns of the input named, not of another input
SELECT c360.map_table('m_kafka', 'events', 'behavioral_events', '{"order_id": "id"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('nope', 'events', 'behavioral_events', '{"event_id": "id"}');
\echo :LAST_ERROR_SQLSTATE
SELECT c360.map_table('m_pg', 'shop_orders', 'nope', '{"event_id": "id"}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM c360.source_mappings ORDER BY source, remote;

-- a table copied: mapped again with the same columns (in any key order) it stays copied;
-- with other columns, or none, it is copied again (its mirror rows came from other columns)
UPDATE c360.source_tables SET snapshot_position = '0/16B3748', columns = '{order_id,customer_id}';
SELECT c360.map_table('m_pg', 'public.shop_orders', 'orders',
                      '{"customer_id": "buyer", "created_at": "placed_at", "total_amount": "amount"}');
SELECT c360.map_table('m_my', 'crm.tickets', 'support_tickets', NULL);
SELECT c360.map_table('m_my', 'crm.clients', 'customers', '{"customer_id": "ClientId", "email": "email_address"}');
SELECT c360.map_table('m_kafka', 'events', 'behavioral_events');
SELECT source, remote, columns, column_map, quote_nullable(snapshot_position) AS snapshot_position
FROM c360.source_tables ORDER BY 1, 2;
-- an empty object, or a JSON null, is no mapping
UPDATE c360.source_tables SET snapshot_position = '';
SELECT c360.map_table('m_kafka', 'events', 'behavioral_events', '{}');
SELECT c360.map_table('m_my', 'crm.tickets', 'support_tickets', 'null');
SELECT source, remote, column_map, quote_nullable(snapshot_position) AS snapshot_position
FROM c360.source_tables WHERE source IN ('m_kafka', 'm_my') ORDER BY 1, 2;

-- a Kafka source that started reading refuses mappings, new columns or not
UPDATE c360.sources SET phase = 'streaming' WHERE name = 'm_kafka';
SELECT c360.map_table('m_kafka', 'events', 'behavioral_events', '{"event_id": "messageId"}');
\echo :LAST_ERROR_SQLSTATE

-- only the owner maps tables; the view is for roles granted it, like c360.source_status
SELECT has_function_privilege('public', 'c360.map_table(text, text, text, jsonb)', 'execute') AS public_may_map,
       has_table_privilege('public', 'c360.source_mappings', 'select') AS public_may_read;
SELECT count(*) AS three_argument_map_table FROM pg_proc
WHERE proname = 'map_table' AND pronamespace = 'c360'::regnamespace AND pronargs = 3;

DELETE FROM c360.sources WHERE name LIKE 'm\_%';
