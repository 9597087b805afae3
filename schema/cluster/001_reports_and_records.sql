-- dmarc-ingest cluster schema, migration 001: the analyst surface (reports, records), the
-- staging tables the importer publishes from, and the ingest log. The cluster twin of
-- schema/001_reports_and_records.sql: same names, columns and types for what analysts and
-- the importer see, stored in replicated `<name>_local` tables on every shard, and seen
-- through Distributed tables of the plain names.
-- {database} is the configured database, {cluster} the configured cluster (as named in
-- the servers' remote_servers). {shard} and {replica} are not ours: they are the servers'
-- macros, expanded by each server in the Keeper paths. Every statement is idempotent
-- (IF NOT EXISTS) and runs ON CLUSTER, so a migration interrupted half-way, or one that
-- reached only some hosts, is completed by the next run. See README.md beside this file.

CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER '{cluster}';

-- One row per aggregate report. Identity: (org_name, report_id, policy_domain, date_begin).
CREATE TABLE IF NOT EXISTS {database}.reports_local ON CLUSTER '{cluster}'
(
    policy_domain String,
    date_begin DateTime('UTC'),
    date_end DateTime('UTC'),
    org_name LowCardinality(String),
    report_id String,
    email String,
    extra_contact_info String,
    version LowCardinality(String),
    generator LowCardinality(String),
    report_errors Array(String),
    published_adkim LowCardinality(String),
    published_aspf LowCardinality(String),
    published_p LowCardinality(String),
    published_sp LowCardinality(String),
    published_np LowCardinality(String),
    published_pct Nullable(UInt8),
    published_fo LowCardinality(String),
    published_testing LowCardinality(String),
    published_discovery_method LowCardinality(String),
    report_extensions Array(String),
    problems Array(String),
    record_count UInt64,
    message_count UInt64,
    source String,
    ingest_id UUID,
    ingested_at DateTime('UTC'),
    parser_version LowCardinality(String)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/reports_local', '{replica}', ingested_at)
PARTITION BY toYYYYMM(date_begin)
ORDER BY (policy_domain, date_begin, org_name, report_id);

-- Sharded by the report identity: a report's row, its records and their staging rows all
-- live on one shard.
CREATE TABLE IF NOT EXISTS {database}.reports ON CLUSTER '{cluster}'
AS {database}.reports_local
ENGINE = Distributed('{cluster}', '{database}', 'reports_local',
                     cityHash64(policy_domain, toUInt32(date_begin), org_name, report_id));

-- One row per <record>, with the report's identifying fields repeated.
CREATE TABLE IF NOT EXISTS {database}.records_local ON CLUSTER '{cluster}'
(
    policy_domain String,
    date_begin DateTime('UTC'),
    date_end DateTime('UTC'),
    org_name LowCardinality(String),
    report_id String,
    record_index UInt32,
    source_ip String,
    source_ip_v6 FixedString(16),
    message_count UInt64,
    disposition LowCardinality(String),
    policy_dkim LowCardinality(String),
    policy_spf LowCardinality(String),
    override_reasons Array(LowCardinality(String)),
    override_comments Array(String),
    header_from String,
    envelope_from String,
    envelope_to String,
    dkim_domains Array(String),
    dkim_selectors Array(String),
    dkim_results Array(LowCardinality(String)),
    dkim_human_results Array(String),
    spf_domains Array(String),
    spf_scopes Array(LowCardinality(String)),
    spf_results Array(LowCardinality(String)),
    spf_human_results Array(String),
    extensions Array(String),
    published_p LowCardinality(String),
    published_sp LowCardinality(String),
    published_adkim LowCardinality(String),
    published_aspf LowCardinality(String),
    ingest_id UUID,
    ingested_at DateTime('UTC')
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/records_local', '{replica}')
PARTITION BY toYYYYMM(date_begin)
ORDER BY (policy_domain, date_begin, source_ip_v6);

CREATE TABLE IF NOT EXISTS {database}.records ON CLUSTER '{cluster}'
AS {database}.records_local
ENGINE = Distributed('{cluster}', '{database}', 'records_local',
                     cityHash64(policy_domain, toUInt32(date_begin), org_name, report_id));

-- Staging: rows land here in bounded batches, tagged with the report's import attempt
-- (ingest_id); a finished report adds its reports_staging row, tagged with the publish
-- batch (batch_id). Same sharding key as records and reports, so a report is staged on
-- the shard it is published to. Replicated, because a staged report must survive the
-- loss of the replica it was written to until it is published. Staging rows expire after
-- two days (whole daily parts; current servers have TTL, so nothing has to drop them).
CREATE TABLE IF NOT EXISTS {database}.records_staging_local ON CLUSTER '{cluster}'
AS {database}.records_local
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/records_staging_local', '{replica}')
PARTITION BY toYYYYMMDD(ingested_at)
ORDER BY ingest_id
TTL ingested_at + INTERVAL 2 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.records_staging ON CLUSTER '{cluster}'
AS {database}.records_staging_local
ENGINE = Distributed('{cluster}', '{database}', 'records_staging_local',
                     cityHash64(policy_domain, toUInt32(date_begin), org_name, report_id));

CREATE TABLE IF NOT EXISTS {database}.reports_staging_local ON CLUSTER '{cluster}'
(
    policy_domain String,
    date_begin DateTime('UTC'),
    date_end DateTime('UTC'),
    org_name LowCardinality(String),
    report_id String,
    email String,
    extra_contact_info String,
    version LowCardinality(String),
    generator LowCardinality(String),
    report_errors Array(String),
    published_adkim LowCardinality(String),
    published_aspf LowCardinality(String),
    published_p LowCardinality(String),
    published_sp LowCardinality(String),
    published_np LowCardinality(String),
    published_pct Nullable(UInt8),
    published_fo LowCardinality(String),
    published_testing LowCardinality(String),
    published_discovery_method LowCardinality(String),
    report_extensions Array(String),
    problems Array(String),
    record_count UInt64,
    message_count UInt64,
    source String,
    ingest_id UUID,
    ingested_at DateTime('UTC'),
    parser_version LowCardinality(String),
    batch_id UUID
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/reports_staging_local', '{replica}')
PARTITION BY toYYYYMMDD(ingested_at)
ORDER BY (batch_id, ingest_id)
TTL ingested_at + INTERVAL 2 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS {database}.reports_staging ON CLUSTER '{cluster}'
AS {database}.reports_staging_local
ENGINE = Distributed('{cluster}', '{database}', 'reports_staging_local',
                     cityHash64(policy_domain, toUInt32(date_begin), org_name, report_id));

-- What happened to every input: imported, duplicate (skipped) or failed (with why).
-- A log: any shard will do.
CREATE TABLE IF NOT EXISTS {database}.ingest_log_local ON CLUSTER '{cluster}'
(
    logged_at DateTime('UTC'),
    source String,
    outcome LowCardinality(String),
    reason_kind LowCardinality(String),
    reason String,
    org_name String,
    report_id String,
    policy_domain String,
    date_begin DateTime('UTC'),
    record_count UInt64,
    message_count UInt64,
    ingest_id UUID,
    parser_version LowCardinality(String),
    host LowCardinality(String)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/ingest_log_local', '{replica}')
PARTITION BY toYYYYMM(logged_at)
ORDER BY (logged_at, source);

CREATE TABLE IF NOT EXISTS {database}.ingest_log ON CLUSTER '{cluster}'
AS {database}.ingest_log_local
ENGINE = Distributed('{cluster}', '{database}', 'ingest_log_local', rand());

-- The inputs that failed, for humans: why, and where the input was.
CREATE VIEW IF NOT EXISTS {database}.failures ON CLUSTER '{cluster}' AS
SELECT logged_at, source, reason_kind, reason, parser_version, host
FROM {database}.ingest_log
WHERE outcome = 'failed';
