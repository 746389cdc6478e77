-- customer360 0.5 -> 0.6: inputs of your own (c360.create_input), and the Kafka formats
-- debezium and segment.  Released scripts are never edited; this one is open until 0.6 ships.

\echo Use "ALTER EXTENSION customer360 UPDATE TO '0.6'" to load this file. \quit
