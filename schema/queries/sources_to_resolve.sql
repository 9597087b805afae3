-- Source addresses of records from {since} on without a current name lookup (never
-- resolved, or expired), for `dmarc-ingest enrich`; one row per address, a page at a
-- time in address order ({after}: the addresses after the previous page's last).
SELECT source_ip_v6, any(source_ip) AS source_ip
FROM {database}.records
WHERE date_begin >= {since}
  AND {after}
  AND source_ip_v6 NOT IN
  (
      SELECT source_ip_v6 FROM {database}.source_names WHERE expires_at > now()
  )
GROUP BY source_ip_v6
ORDER BY source_ip_v6
LIMIT {limit};
