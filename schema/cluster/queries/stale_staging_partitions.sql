-- Cluster twin of schema/queries/stale_staging_partitions.sql: nothing to drop. The
-- cluster's staging tables expire by TTL (ingested_at + 2 days, whole daily parts, on
-- every replica), so this returns no rows, with the columns the store expects. (Dropping
-- partitions here would need ON CLUSTER and the _local tables; TTL does it without the
-- importer.)
SELECT DISTINCT table, partition
FROM system.parts
WHERE 0;
