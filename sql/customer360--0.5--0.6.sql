-- customer360 0.5 -> 0.6: inputs of your own (c360.create_input), and the Kafka formats
-- debezium and segment.  Released scripts are never edited; this one is open until 0.6 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.6'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- Kafka format segment (bgworkers/kafka_source.c, src/decode/segment_decode.c): the calls a
-- source skips by design (Segment group calls, identify calls with nothing to link) are
-- counted in the batch's transaction, with its offsets, and shown in source_status.
ALTER TABLE c360.source_progress ADD COLUMN skipped_messages bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE VIEW c360.source_status AS
SELECT s.name,
       s.kind,
       CASE WHEN NOT s.enabled THEN 'paused'
            WHEN s.phase = 'error' THEN 'error'
            WHEN w.pid IS NULL THEN 'stopped'
            ELSE w.state END                                       AS state,
       COALESCE(w.source_position,
                (SELECT CASE WHEN s.kind = 'postgres-cdc'
                             THEN max(p.position) FILTER (WHERE p.part = 'lsn')
                             ELSE string_agg(p.part || '=' || p.position, ', ' ORDER BY p.part) END
                 FROM c360.source_positions p WHERE p.source = s.name)) AS position,
       w.lag_bytes,
       w.lag_messages,
       w.lag_seconds,
       w.snapshot_done                                             AS snapshot_rows_done,
       w.snapshot_total                                            AS snapshot_rows_total,
       COALESCE(p.changes_applied, 0)                              AS changes_applied,
       s.last_error,
       p.last_applied_at,
       (SELECT count(*) FROM c360.dead_letters d WHERE d.source = s.name) AS dead_letters,
       COALESCE(p.skipped_messages, 0)                             AS skipped_messages
FROM c360.sources s
LEFT JOIN c360.worker_status() w ON w.name = s.name
LEFT JOIN c360.source_progress p ON p.source = s.name;
-- end of the Kafka format segment block
