-- Reverse DNS of the source addresses of records, filled by `dmarc-ingest enrich`, never
-- on the ingest path (a slow or dead resolver cannot slow ingestion). One row per
-- lookup; the newest per address counts. A lookup that failed (timeout, SERVFAIL) writes
-- nothing: the address is tried again at the next pass. A name is used only when it is
-- confirmed forward (one of its A/AAAA records is the address: `ptr`); a PTR name that
-- does not point back is kept apart (`ptr_unconfirmed`), shown, never trusted.
CREATE TABLE IF NOT EXISTS {database}.source_names
(
    source_ip_v6 FixedString(16),
    -- 'confirmed', 'unconfirmed' or 'absent' (no PTR record).
    ptr_status LowCardinality(String),
    ptr String,
    ptr_unconfirmed String,
    -- Organisational domain of ptr (Public Suffix List).
    ptr_org String,
    resolved_at DateTime('UTC'),
    -- When to ask again (absent names sooner than found ones).
    expires_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(resolved_at)
ORDER BY source_ip_v6;

-- The analyst's records with the names of their sources: a view, so that a name found
-- after a record was stored (or refreshed later) shows on every record of that address,
-- old ones included. Addresses not resolved yet have empty names.
CREATE VIEW IF NOT EXISTS {database}.records_enriched AS
SELECT *
FROM {database}.records
ANY LEFT JOIN
(
    SELECT
        source_ip_v6,
        argMax(ptr, resolved_at) AS ptr,
        argMax(ptr_unconfirmed, resolved_at) AS ptr_unconfirmed,
        argMax(ptr_org, resolved_at) AS ptr_org,
        argMax(ptr_status, resolved_at) AS ptr_status,
        max(resolved_at) AS ptr_resolved_at
    FROM {database}.source_names
    GROUP BY source_ip_v6
) AS names USING (source_ip_v6);
