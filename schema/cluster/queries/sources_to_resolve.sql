-- Cluster twin of schema/queries/sources_to_resolve.sql: the names of every shard are
-- looked up (GLOBAL).
SELECT
    source_ip_v6,
    any(source_ip) AS source_ip,
    -- The most frequent passing SPF and DKIM domains of the address's records (a known
    -- service's own domains among them name the service).
    topKArray(16)(arrayMap(d -> lower(d), arrayFilter((d, r) -> r = 'pass', spf_domains, spf_results))) AS spf_pass_domains,
    topKArray(16)(arrayMap(d -> lower(d), arrayFilter((d, r) -> r = 'pass', dkim_domains, dkim_results))) AS dkim_pass_domains
FROM {database}.records
WHERE date_begin >= {since}
  AND {ingested}
  AND {after}
  AND source_ip_v6 GLOBAL NOT IN
  (
      SELECT source_ip_v6
      FROM {database}.source_names
      WHERE expires_at > now() AND naming_version = {naming_version}
        AND source_ip_v6 GLOBAL IN
        (
            SELECT source_ip_v6 FROM {database}.records WHERE date_begin >= {since} AND {ingested}
        )
  )
GROUP BY source_ip_v6
ORDER BY source_ip_v6
LIMIT {limit};
