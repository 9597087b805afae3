-- Cluster twin of schema/queries/stale_attempt_partitions.sql: nothing to drop, the
-- cluster's mail_attempts expires by TTL (three months).
SELECT DISTINCT table, partition
FROM system.parts
WHERE 0;
