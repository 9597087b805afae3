-- dmarc-ingest schema, migration 002: organisational domains (Public Suffix List, computed
-- by the importer) and DMARC alignment recomputed from auth_results (RFC 7489 3.1).
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the migration runner treats "column
-- already exists" as done, so an interrupted run can be repeated. records_staging gets
-- the same columns in the same order (the publish copies it with SELECT *).

ALTER TABLE {database}.records
    ADD COLUMN header_from_org String,
    ADD COLUMN envelope_from_org String,
    ADD COLUMN dkim_domains_org Array(String),
    ADD COLUMN spf_domains_org Array(String),
    ADD COLUMN sender_org LowCardinality(String),
    ADD COLUMN dkim_aligned UInt8,
    ADD COLUMN spf_aligned UInt8;

ALTER TABLE {database}.records_staging
    ADD COLUMN header_from_org String,
    ADD COLUMN envelope_from_org String,
    ADD COLUMN dkim_domains_org Array(String),
    ADD COLUMN spf_domains_org Array(String),
    ADD COLUMN sender_org LowCardinality(String),
    ADD COLUMN dkim_aligned UInt8,
    ADD COLUMN spf_aligned UInt8;
