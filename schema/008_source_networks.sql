-- dmarc-ingest schema, migration 008: the network, country and known service of each
-- source address, beside its reverse name, and the analyst view with them.
-- `dmarc-ingest enrich` (and the daemon, in the background) fills them at lookup time:
-- asn / as_org / country from the configured MaxMind-format databases (0 and '' without
-- one), service / service_type from the services data (a forward-confirmed PTR name under
-- a service's base domain, else a passing SPF or DKIM domain of its records, else its AS
-- number), and sender: the service, else the organisational domain of the confirmed PTR
-- name, else the AS organisation, else 'unknown (AS<n>)', else the address. A spoofer is
-- so named by its network, never by the domain it sends as. naming_version names the
-- services data and databases a row was made with: a row made with others is looked up
-- again at the next pass. A lookup whose DNS failed now writes a row too (ptr_status
-- 'failed': the network and service are known without DNS), made as of time 0 so that
-- any answered row of the address outranks it, and already expired, so that the address
-- is asked again at the next pass.
-- 18.16 has no ADD COLUMN IF NOT EXISTS: the migration runner treats "column already
-- exists" as done, so an interrupted run can be repeated.
ALTER TABLE {database}.source_names
    ADD COLUMN asn UInt32,
    ADD COLUMN as_org String,
    ADD COLUMN country LowCardinality(String),
    ADD COLUMN service LowCardinality(String),
    ADD COLUMN service_type LowCardinality(String),
    ADD COLUMN sender String,
    ADD COLUMN naming_version String;

-- The view of 006, again with the new columns (a view cannot be altered on 18.16).
-- `sender` is the stored sender, or the source address while it has no lookup yet
-- (`known_sender` is the stored one alone).
DROP TABLE IF EXISTS {database}.records_enriched;

CREATE VIEW IF NOT EXISTS {database}.records_enriched AS
SELECT *, if(known_sender = '', source_ip, known_sender) AS sender
FROM {database}.records
ANY LEFT JOIN
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
