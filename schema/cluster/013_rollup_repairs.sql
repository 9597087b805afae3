-- dmarc-ingest cluster schema, migration 013: the cluster twin of
-- schema/013_rollup_repairs.sql (a replicated table on every shard under a Distributed
-- table of the name the store writes and reads; a day's rows share a shard).
CREATE TABLE IF NOT EXISTS {database}.rollup_repairs_local ON CLUSTER '{cluster}'
(
    policy_domain String,
    day Date,
    version UInt64,
    repaired UInt8
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/rollup_repairs_local', '{replica}', version)
ORDER BY (policy_domain, day);

CREATE TABLE IF NOT EXISTS {database}.rollup_repairs ON CLUSTER '{cluster}'
AS {database}.rollup_repairs_local
ENGINE = Distributed('{cluster}', '{database}', 'rollup_repairs_local', cityHash64(policy_domain));
