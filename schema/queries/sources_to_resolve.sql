-- Source addresses of records from {since} on without a current name lookup (never
-- resolved, expired, or made with other services data or databases than
-- {naming_version}), for `dmarc-ingest enrich`; one row per address, a page at a time in
-- address order ({after}: the addresses after the previous page's last). {ingested}:
-- only records stored since a time (the daemon's passes between full ones: then only the
-- names of those records' addresses are read), or `1`.
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
  AND source_ip_v6 NOT IN
  (
      SELECT source_ip_v6
      FROM {database}.source_names
      WHERE expires_at > now() AND naming_version = {naming_version}
        AND source_ip_v6 IN
        (
            SELECT source_ip_v6 FROM {database}.records WHERE date_begin >= {since} AND {ingested}
        )
  )
GROUP BY source_ip_v6
ORDER BY source_ip_v6
LIMIT {limit};
