-- dmarc-ingest schema, migration 007: a rollup ordered by source address, kept up to date
-- by a materialized view, for "which of our domains does this address (or network) send
-- as, how much, and how much of it passes" without scanning records. A SummingMergeTree:
-- read it with sum(messages) / sum(records) and GROUP BY.
-- Apply with importers stopped: rows already stored are copied in once (when the rollup
-- is still empty), then the view takes over.
CREATE TABLE IF NOT EXISTS {database}.source_daily
(
    source_ip_v6 FixedString(16),
    day Date,
    policy_domain String,
    source_ip String,
    -- The reporter's DMARC verdict (DKIM or SPF passed, aligned).
    dmarc_pass UInt8,
    messages UInt64,
    records UInt64
)
ENGINE = SummingMergeTree((messages, records))
PARTITION BY toYYYYMM(day)
ORDER BY (source_ip_v6, day, policy_domain, dmarc_pass);

INSERT INTO {database}.source_daily
SELECT source_ip_v6, toDate(date_begin) AS day, policy_domain, any(source_ip) AS source_ip,
       (policy_dkim = 'pass') OR (policy_spf = 'pass') AS dmarc_pass,
       sum(message_count) AS messages, count() AS records
FROM {database}.records
WHERE (SELECT count() FROM {database}.source_daily) = 0
GROUP BY source_ip_v6, day, policy_domain, dmarc_pass;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.source_daily_mv
TO {database}.source_daily
AS SELECT
    source_ip_v6,
    toDate(date_begin) AS day,
    policy_domain,
    any(source_ip) AS source_ip,
    (policy_dkim = 'pass') OR (policy_spf = 'pass') AS dmarc_pass,
    sum(message_count) AS messages,
    count() AS records
FROM {database}.records
GROUP BY source_ip_v6, day, policy_domain, dmarc_pass;
