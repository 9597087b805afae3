-- dmarc-ingest cluster schema, migration 008: the cluster twin of
-- schema/008_source_networks.sql (the columns on every shard's source_names_local and on
-- the Distributed source_names; the view joins the Distributed tables, GLOBAL).
ALTER TABLE {database}.source_names_local ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS asn UInt32,
    ADD COLUMN IF NOT EXISTS as_org String,
    ADD COLUMN IF NOT EXISTS country LowCardinality(String),
    ADD COLUMN IF NOT EXISTS service LowCardinality(String),
    ADD COLUMN IF NOT EXISTS service_type LowCardinality(String),
    ADD COLUMN IF NOT EXISTS sender String,
    ADD COLUMN IF NOT EXISTS naming_version String;

ALTER TABLE {database}.source_names ON CLUSTER '{cluster}'
    ADD COLUMN IF NOT EXISTS asn UInt32,
    ADD COLUMN IF NOT EXISTS as_org String,
    ADD COLUMN IF NOT EXISTS country LowCardinality(String),
    ADD COLUMN IF NOT EXISTS service LowCardinality(String),
    ADD COLUMN IF NOT EXISTS service_type LowCardinality(String),
    ADD COLUMN IF NOT EXISTS sender String,
    ADD COLUMN IF NOT EXISTS naming_version String;

DROP TABLE IF EXISTS {database}.records_enriched ON CLUSTER '{cluster}';

CREATE VIEW IF NOT EXISTS {database}.records_enriched ON CLUSTER '{cluster}' AS
SELECT *, if(known_sender = '', source_ip, known_sender) AS sender
FROM {database}.records
GLOBAL ANY LEFT JOIN
(
    SELECT
        source_ip_v6,
        argMax(ptr, resolved_at) AS ptr,
        argMax(ptr_unconfirmed, resolved_at) AS ptr_unconfirmed,
        argMax(ptr_org, resolved_at) AS ptr_org,
        argMax(ptr_status, resolved_at) AS ptr_status,
        max(resolved_at) AS ptr_resolved_at,
        argMax(asn, resolved_at) AS asn,
        argMax(as_org, resolved_at) AS as_org,
        argMax(country, resolved_at) AS country,
        argMax(service, resolved_at) AS service,
        argMax(service_type, resolved_at) AS service_type,
        argMax(sender, resolved_at) AS known_sender
    FROM {database}.source_names
    GROUP BY source_ip_v6
) AS names USING (source_ip_v6);
