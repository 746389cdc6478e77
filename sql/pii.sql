-- pii: a role granted SELECT on the non-PII columns of c360.customer_360 runs the article's
-- segment queries and cannot read email, first_name, last_name or phone; the catalog holding
-- source options (passwords) is readable by the extension owner only; a monitoring role that
-- may read the status views sees no password there.
SET client_min_messages = warning;
SET TimeZone = 'UTC';
DROP EXTENSION IF EXISTS customer360;
CREATE EXTENSION customer360;
DROP ROLE IF EXISTS regress_c360_analyst;
DROP ROLE IF EXISTS regress_c360_monitor;
RESET client_min_messages;
SET DateStyle = 'ISO, YMD';
SELECT c360.tick('2030-06-01 00:00+00');
\set SHOW_CONTEXT never

SELECT c360.apply_changes('[
  {"input": "customers", "op": "insert", "new": {"customer_id": "c1", "email": "c1@example.com", "first_name": "Ann", "last_name": "Lee", "phone": "+1 555 0101", "loyalty_tier": "gold", "signup_date": "2028-01-01 00:00+00"}},
  {"input": "customers", "op": "insert", "new": {"customer_id": "c2", "email": "c2@example.com", "first_name": "Bo", "last_name": "Kim", "phone": "+1 555 0102", "loyalty_tier": "platinum", "signup_date": "2028-01-01 00:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o1", "customer_id": "c1", "order_status": "delivered", "total_amount": 2500, "channel": "web", "created_at": "2030-02-01 10:00+00"}},
  {"input": "orders", "op": "insert", "new": {"order_id": "o2", "customer_id": "c2", "order_status": "delivered", "total_amount": 90, "channel": "app", "created_at": "2030-05-25 10:00+00"}},
  {"input": "support_tickets", "op": "insert", "new": {"ticket_id": "t1", "customer_id": "c1", "status": "open", "category": "billing", "created_at": "2030-05-30 09:00+00"}},
  {"input": "behavioral_events", "op": "insert", "new": {"event_id": "e1", "customer_id": "c2", "session_id": "s1", "event_type": "product_view", "event_time": "2030-05-31 10:00+00"}}
]');
-- sources and a sink whose options hold secrets (no worker runs in this database)
SELECT c360.create_source('crm', 'mysql-cdc', '{"host": "127.0.0.1", "port": 3306, "user": "c360", "password": "s3cret-mysql", "database": "crm_db", "server_id": 4242}');
SELECT c360.create_source('shop', 'postgres-cdc', '{"conninfo": "host=127.0.0.1 port=1 dbname=shop user=c360 password=s3cret-pg"}');
SELECT c360.create_segment('vip_at_risk', $$loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing')$$);
SELECT c360.create_sink('vip_out', 'vip_at_risk', 'kafka', '{"bootstrap.servers": "127.0.0.1:9092", "topic": "vip", "properties.sasl.password": "s3cret-kafka"}');

-- The analyst: every profile column but the four PII ones.
CREATE ROLE regress_c360_analyst NOLOGIN;
GRANT USAGE ON SCHEMA c360 TO regress_c360_analyst;
SELECT format('GRANT SELECT (%s) ON c360.customer_360 TO regress_c360_analyst',
              string_agg(quote_ident(attname), ', ' ORDER BY attnum))
FROM pg_attribute
WHERE attrelid = 'c360.customer_360'::regclass AND attnum > 0 AND NOT attisdropped
  AND attname NOT IN ('email', 'first_name', 'last_name', 'phone') \gexec
-- The monitor: the status views only.
CREATE ROLE regress_c360_monitor NOLOGIN;
GRANT USAGE ON SCHEMA c360 TO regress_c360_monitor;
GRANT SELECT ON c360.source_status, c360.sink_status TO regress_c360_monitor;

SET ROLE regress_c360_analyst;
-- the article's queries
SELECT customer_id, lifetime_value, open_support_tickets FROM c360.customer_360
WHERE has_open_support_issue AND lifetime_value > 1000 ORDER BY lifetime_value DESC;
SELECT lifecycle_stage, count(*) AS customers, avg(sessions_last_30d) AS avg_sessions
FROM c360.customer_360 GROUP BY 1 ORDER BY 1;
SELECT customer_id, loyalty_tier, lifecycle_stage FROM c360.customer_360
WHERE loyalty_tier IN ('gold', 'platinum') AND lifecycle_stage IN ('at_risk', 'lapsing') ORDER BY 1;
-- PII columns, the mirrors, the catalogs, dead letters and segment payloads are not theirs
-- (phone is in the customers mirror only: the profile does not carry it)
SELECT email FROM c360.customer_360;
SELECT first_name FROM c360.customer_360;
SELECT last_name FROM c360.customer_360;
SELECT phone FROM c360.customers;
SELECT * FROM c360.customer_360;
SELECT * FROM c360.customers;
SELECT * FROM c360.sources;
SELECT * FROM c360.sinks;
SELECT * FROM c360.dead_letters;
SELECT * FROM c360.segment_changes;
SELECT * FROM c360.source_status;
SELECT c360.erase_customer('c2');
SELECT c360.apply_change('orders', 'insert', NULL, '{"order_id": "x", "customer_id": "c2"}');
RESET ROLE;

-- The monitor sees every source and sink, and no secret anywhere in the views.
SET ROLE regress_c360_monitor;
SELECT name, kind, state FROM c360.source_status ORDER BY 1;
SELECT name, segment, state FROM c360.sink_status ORDER BY 1;
SELECT count(*) AS rows_with_a_secret
FROM (SELECT s::text AS r FROM c360.source_status s UNION ALL SELECT k::text FROM c360.sink_status k) v
WHERE r ~ 's3cret';
SELECT * FROM c360.sources;
RESET ROLE;

-- Only the extension owner (a superuser here) holds privileges on the option catalogs.
SELECT c.relname, c.relacl IS NULL OR NOT EXISTS (
         SELECT FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner) AS owner_only
FROM pg_class c WHERE c.oid IN ('c360.sources'::regclass, 'c360.sinks'::regclass) ORDER BY 1;

-- the profile the analyst read is exact
SELECT * FROM c360.verify();

SELECT c360.drop_sink('vip_out');
SELECT c360.drop_source('crm');
-- the source server is not there: drop_source says how to drop the source anyway
\set VERBOSITY default
SELECT c360.drop_source('shop');
SELECT c360.drop_source('shop', drop_remote => false);
SELECT count(*) FROM c360.sources;
DROP OWNED BY regress_c360_analyst, regress_c360_monitor;
DROP ROLE regress_c360_analyst;
DROP ROLE regress_c360_monitor;
