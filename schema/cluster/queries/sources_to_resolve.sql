-- Cluster twin of schema/queries/sources_to_resolve.sql: the names of every shard are
-- looked up (GLOBAL).
SELECT source_ip_v6, any(source_ip) AS source_ip
FROM {database}.records
WHERE date_begin >= {since}
  AND {after}
  AND source_ip_v6 GLOBAL NOT IN
  (
      SELECT source_ip_v6 FROM {database}.source_names WHERE expires_at > now()
  )
GROUP BY source_ip_v6
ORDER BY source_ip_v6
LIMIT {limit};
