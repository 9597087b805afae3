-- dmarc-ingest cluster schema, migration 007: the cluster twin of
-- schema/007_source_daily.sql. As the rollups of 003, the view reads the records_local
-- of its own shard and writes that shard's source_daily_local; read the Distributed
-- source_daily with sum(...) ... GROUP BY. Apply with importers stopped.
CREATE TABLE IF NOT EXISTS {database}.source_daily_local ON CLUSTER '{cluster}'
(
    source_ip_v6 FixedString(16),
    day Date,
    policy_domain String,
    source_ip String,
    dmarc_pass UInt8,
    messages UInt64,
    records UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/source_daily_local', '{replica}', (messages, records))
PARTITION BY toYYYYMM(day)
ORDER BY (source_ip_v6, day, policy_domain, dmarc_pass);

CREATE TABLE IF NOT EXISTS {database}.source_daily ON CLUSTER '{cluster}'
AS {database}.source_daily_local
ENGINE = Distributed('{cluster}', '{database}', 'source_daily_local', rand());

INSERT INTO {database}.source_daily
SELECT source_ip_v6, toDate(date_begin) AS day, policy_domain, any(source_ip) AS source_ip,
       (policy_dkim = 'pass') OR (policy_spf = 'pass') AS dmarc_pass,
       sum(message_count) AS messages, count() AS records
FROM {database}.records
WHERE (SELECT count() FROM {database}.source_daily) = 0
GROUP BY source_ip_v6, day, policy_domain, dmarc_pass;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.source_daily_mv ON CLUSTER '{cluster}'
TO {database}.source_daily_local
AS SELECT
    source_ip_v6,
    toDate(date_begin) AS day,
    policy_domain,
    any(source_ip) AS source_ip,
    (policy_dkim = 'pass') OR (policy_spf = 'pass') AS dmarc_pass,
    sum(message_count) AS messages,
    count() AS records
FROM {database}.records_local
GROUP BY source_ip_v6, day, policy_domain, dmarc_pass;
