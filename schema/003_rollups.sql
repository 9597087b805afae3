-- dmarc-ingest schema, migration 003: rollups kept up to date by materialized views.
-- The views read what is inserted into records and reports; the importer inserts each
-- report there exactly once (see README.md), so the rollups are exact too.
-- Apply with importers stopped: rows already stored are copied in once (when the rollup
-- is still empty), then the view takes over.

-- Daily totals per policy domain and source: volume split by disposition and by the
-- reporter's DKIM/SPF/DMARC verdicts, and by the recomputed alignment.
CREATE TABLE IF NOT EXISTS {database}.records_daily
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
ENGINE = SummingMergeTree((messages, records))
PARTITION BY toYYYYMM(day)
ORDER BY (policy_domain, day, source_ip_v6, header_from, sender_org, disposition,
          dkim_pass, spf_pass, dmarc_pass, dkim_aligned, spf_aligned);

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

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.records_daily_mv
TO {database}.records_daily
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
FROM {database}.records
GROUP BY day, policy_domain, source_ip_v6, header_from, sender_org, disposition,
         dkim_pass, spf_pass, dmarc_pass, dkim_aligned, spf_aligned;

-- Reporter coverage: which reporter reported which domain on which day (to notice a
-- reporter going silent: max(day) per reporter and domain).
CREATE TABLE IF NOT EXISTS {database}.reporter_daily
(
    day Date,
    policy_domain String,
    org_name LowCardinality(String),
    reports UInt64,
    messages UInt64
)
ENGINE = SummingMergeTree((reports, messages))
PARTITION BY toYYYYMM(day)
ORDER BY (policy_domain, org_name, day);

INSERT INTO {database}.reporter_daily
SELECT toDate(date_begin) AS day, policy_domain, org_name,
       count() AS reports, sum(message_count) AS messages
FROM {database}.reports
WHERE (SELECT count() FROM {database}.reporter_daily) = 0
GROUP BY day, policy_domain, org_name;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.reporter_daily_mv
TO {database}.reporter_daily
AS SELECT toDate(date_begin) AS day, policy_domain, org_name,
          count() AS reports, sum(message_count) AS messages
FROM {database}.reports
GROUP BY day, policy_domain, org_name;
