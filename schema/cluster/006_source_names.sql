-- Cluster twin of schema/006_source_names.sql: a replicated table on every shard, under
-- a Distributed table of the name the importer uses, sharded by address; the view joins
-- the Distributed tables (GLOBAL: the names of every shard).
CREATE TABLE IF NOT EXISTS {database}.source_names_local ON CLUSTER '{cluster}'
(
    source_ip_v6 FixedString(16),
    ptr_status LowCardinality(String),
    ptr String,
    ptr_unconfirmed String,
    ptr_org String,
    resolved_at DateTime('UTC'),
    expires_at DateTime('UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/source_names_local', '{replica}', resolved_at)
ORDER BY source_ip_v6;

CREATE TABLE IF NOT EXISTS {database}.source_names ON CLUSTER '{cluster}'
AS {database}.source_names_local
ENGINE = Distributed('{cluster}', '{database}', 'source_names_local', cityHash64(source_ip_v6));

CREATE VIEW IF NOT EXISTS {database}.records_enriched ON CLUSTER '{cluster}' AS
SELECT *
FROM {database}.records
GLOBAL ANY LEFT JOIN
(
    SELECT
        source_ip_v6,
        argMax(ptr, resolved_at) AS ptr,
        argMax(ptr_unconfirmed, resolved_at) AS ptr_unconfirmed,
        argMax(ptr_org, resolved_at) AS ptr_org,
        argMax(ptr_status, resolved_at) AS ptr_status,
        max(resolved_at) AS ptr_resolved_at
    FROM {database}.source_names
    GROUP BY source_ip_v6
) AS names USING (source_ip_v6);
