-- dmarc-ingest cluster schema, migration 003: rollups kept up to date by materialized
-- views. The cluster twin of schema/003_rollups.sql.
-- A materialized view fires on the server that receives an insert, and only for the table
-- it reads. So the views read the replicated records_local / reports_local of their own
-- shard and write that shard's records_daily_local / reporter_daily_local; replicas fetch
-- the rollup parts like any other (a view does not fire for fetched parts, so nothing is
-- counted twice). The importer inserts each report once (see README.md), so the rollups
-- are exact too; a group's rows can sit on several shards, so always read them with
-- sum(...) ... GROUP BY (as on one server, where merges are eventual anyway).
-- Apply with importers stopped: rows already stored are copied in once (when the rollup
-- is still empty), then the views take over.

-- Daily totals per policy domain and source: volume split by disposition and by the
-- reporter's DKIM/SPF/DMARC verdicts, and by the recomputed alignment.
CREATE TABLE IF NOT EXISTS {database}.records_daily_local ON CLUSTER '{cluster}'
(
    day Date,
    policy_domain String,
    source_ip_v6 FixedString(16),
    source_ip String,
    header_from String,
    header_from_org String,
    sender_org LowCardinality(String),
    disposition LowCardinality(String),
    dkim_pass UInt8,
    spf_pass UInt8,
    dmarc_pass UInt8,
    dkim_aligned UInt8,
    spf_aligned UInt8,
    messages UInt64,
    records UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/records_daily_local', '{replica}', (messages, records))
PARTITION BY toYYYYMM(day)
ORDER BY (policy_domain, day, source_ip_v6, header_from, sender_org, disposition,
          dkim_pass, spf_pass, dmarc_pass, dkim_aligned, spf_aligned);

-- Reads all shards. Only the one-off copy below inserts through it (the views write the
-- local tables directly), so any sharding key will do.
CREATE TABLE IF NOT EXISTS {database}.records_daily ON CLUSTER '{cluster}'
AS {database}.records_daily_local
ENGINE = Distributed('{cluster}', '{database}', 'records_daily_local', rand());

INSERT INTO {database}.records_daily
SELECT
    toDate(date_begin) AS day,
    policy_domain,
    source_ip_v6,
    any(source_ip) AS source_ip,
    header_from,
    any(header_from_org) AS header_from_org,
    sender_org,
    disposition,
    policy_dkim = 'pass' AS dkim_pass,
    policy_spf = 'pass' AS spf_pass,
    (policy_dkim = 'pass') OR (policy_spf = 'pass') AS dmarc_pass,
    dkim_aligned,
    spf_aligned,
    sum(message_count) AS messages,
    count() AS records
FROM {database}.records
WHERE (SELECT count() FROM {database}.records_daily) = 0
GROUP BY day, policy_domain, source_ip_v6, header_from, sender_org, disposition,
         dkim_pass, spf_pass, dmarc_pass, dkim_aligned, spf_aligned;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.records_daily_mv ON CLUSTER '{cluster}'
TO {database}.records_daily_local
AS SELECT
    toDate(date_begin) AS day,
    policy_domain,
    source_ip_v6,
    any(source_ip) AS source_ip,
    header_from,
    any(header_from_org) AS header_from_org,
    sender_org,
    disposition,
    policy_dkim = 'pass' AS dkim_pass,
    policy_spf = 'pass' AS spf_pass,
    (policy_dkim = 'pass') OR (policy_spf = 'pass') AS dmarc_pass,
    dkim_aligned,
    spf_aligned,
    sum(message_count) AS messages,
    count() AS records
FROM {database}.records_local
GROUP BY day, policy_domain, source_ip_v6, header_from, sender_org, disposition,
         dkim_pass, spf_pass, dmarc_pass, dkim_aligned, spf_aligned;

-- Reporter coverage: which reporter reported which domain on which day (to notice a
-- reporter going silent: max(day) per reporter and domain).
CREATE TABLE IF NOT EXISTS {database}.reporter_daily_local ON CLUSTER '{cluster}'
(
    day Date,
    policy_domain String,
    org_name LowCardinality(String),
    reports UInt64,
    messages UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/reporter_daily_local', '{replica}', (reports, messages))
PARTITION BY toYYYYMM(day)
ORDER BY (policy_domain, org_name, day);

CREATE TABLE IF NOT EXISTS {database}.reporter_daily ON CLUSTER '{cluster}'
AS {database}.reporter_daily_local
ENGINE = Distributed('{cluster}', '{database}', 'reporter_daily_local', rand());

INSERT INTO {database}.reporter_daily
SELECT toDate(date_begin) AS day, policy_domain, org_name,
       count() AS reports, sum(message_count) AS messages
FROM {database}.reports
WHERE (SELECT count() FROM {database}.reporter_daily) = 0
GROUP BY day, policy_domain, org_name;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.reporter_daily_mv ON CLUSTER '{cluster}'
TO {database}.reporter_daily_local
AS SELECT toDate(date_begin) AS day, policy_domain, org_name,
          count() AS reports, sum(message_count) AS messages
FROM {database}.reports_local
GROUP BY day, policy_domain, org_name;
