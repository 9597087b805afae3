-- dmarc-ingest cluster schema, migration 002: organisational domains (Public Suffix List,
-- computed by the importer) and DMARC alignment recomputed from auth_results (RFC 7489
-- 3.1). The cluster twin of schema/002_organisational_domains_and_alignment.sql.
-- The columns go to the replicated tables and to the Distributed tables over them, in the
-- same order everywhere: the publish copies records_staging into records with SELECT *.
-- Current servers have ADD COLUMN IF NOT EXISTS, so a re-run (or a run that reached only
-- some hosts) is harmless.

ALTER TABLE {database}.records_local ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS header_from_org String,
    ADD COLUMN IF NOT EXISTS envelope_from_org String,
    ADD COLUMN IF NOT EXISTS dkim_domains_org Array(String),
    ADD COLUMN IF NOT EXISTS spf_domains_org Array(String),
    ADD COLUMN IF NOT EXISTS sender_org LowCardinality(String),
    ADD COLUMN IF NOT EXISTS dkim_aligned UInt8,
    ADD COLUMN IF NOT EXISTS spf_aligned UInt8;

ALTER TABLE {database}.records_staging_local ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS header_from_org String,
    ADD COLUMN IF NOT EXISTS envelope_from_org String,
    ADD COLUMN IF NOT EXISTS dkim_domains_org Array(String),
    ADD COLUMN IF NOT EXISTS spf_domains_org Array(String),
    ADD COLUMN IF NOT EXISTS sender_org LowCardinality(String),
    ADD COLUMN IF NOT EXISTS dkim_aligned UInt8,
    ADD COLUMN IF NOT EXISTS spf_aligned UInt8;

ALTER TABLE {database}.records ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS header_from_org String,
    ADD COLUMN IF NOT EXISTS envelope_from_org String,
    ADD COLUMN IF NOT EXISTS dkim_domains_org Array(String),
    ADD COLUMN IF NOT EXISTS spf_domains_org Array(String),
    ADD COLUMN IF NOT EXISTS sender_org LowCardinality(String),
    ADD COLUMN IF NOT EXISTS dkim_aligned UInt8,
    ADD COLUMN IF NOT EXISTS spf_aligned UInt8;

ALTER TABLE {database}.records_staging ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS header_from_org String,
    ADD COLUMN IF NOT EXISTS envelope_from_org String,
    ADD COLUMN IF NOT EXISTS dkim_domains_org Array(String),
    ADD COLUMN IF NOT EXISTS spf_domains_org Array(String),
    ADD COLUMN IF NOT EXISTS sender_org LowCardinality(String),
    ADD COLUMN IF NOT EXISTS dkim_aligned UInt8,
    ADD COLUMN IF NOT EXISTS spf_aligned UInt8;
