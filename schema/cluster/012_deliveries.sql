-- dmarc-ingest cluster schema, migration 012: the cluster twin of schema/012_deliveries.sql
-- (a replicated table on every shard under a Distributed table of the name the sender
-- writes).
CREATE TABLE IF NOT EXISTS {database}.deliveries_local ON CLUSTER '{cluster}'
(
    attempted_at DateTime('UTC'),
    kind LowCardinality(String),
    item String,
    channel LowCardinality(String),
    outcome LowCardinality(String),
    attempt UInt16,
    recipients Array(String),
    message_id String,
    error String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/deliveries_local', '{replica}')
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (kind, item, channel, attempted_at);

CREATE TABLE IF NOT EXISTS {database}.deliveries ON CLUSTER '{cluster}'
AS {database}.deliveries_local
ENGINE = Distributed('{cluster}', '{database}', 'deliveries_local', cityHash64(item));
