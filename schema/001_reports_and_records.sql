-- dmarc-ingest schema, migration 001: the analyst surface (reports, records), the
-- staging tables the importer publishes from, and the ingest log.
-- {database} is replaced by the configured database name. Every statement is
-- idempotent (IF NOT EXISTS) so a migration interrupted half-way can be re-run.
-- Runs on ClickHouse 18.16 (with allow_experimental_low_cardinality_type=1, set by the
-- migration runner on servers older than 19.0) and on current ClickHouse; see README.md.

CREATE DATABASE IF NOT EXISTS {database};

-- One row per aggregate report. Identity: (org_name, report_id, policy_domain, date_begin).
CREATE TABLE IF NOT EXISTS {database}.reports
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
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(date_begin)
ORDER BY (policy_domain, date_begin, org_name, report_id);

-- One row per <record>, with the report's identifying fields repeated.
CREATE TABLE IF NOT EXISTS {database}.records
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(date_begin)
ORDER BY (policy_domain, date_begin, source_ip_v6);

-- Staging: rows land here in bounded batches, tagged with the report's import attempt
-- (ingest_id); a finished report adds its reports_staging row, tagged with the publish
-- batch (batch_id). A batch is published to records/reports by one INSERT ... SELECT
-- each. Partitioned by day so what crashed runs left is dropped whole.
CREATE TABLE IF NOT EXISTS {database}.records_staging AS {database}.records
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ingested_at)
ORDER BY ingest_id;

CREATE TABLE IF NOT EXISTS {database}.reports_staging
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
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ingested_at)
ORDER BY (batch_id, ingest_id);

-- What happened to every input: imported, duplicate (skipped) or failed (with why).
CREATE TABLE IF NOT EXISTS {database}.ingest_log
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(logged_at)
ORDER BY (logged_at, source);

-- The inputs that failed, for humans: why, and where the input was.
CREATE VIEW IF NOT EXISTS {database}.failures AS
SELECT logged_at, source, reason_kind, reason, parser_version, host
FROM {database}.ingest_log
WHERE outcome = 'failed';
