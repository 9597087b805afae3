-- Staging partitions older than two days: left by runs that crashed; dropped by the store.
SELECT DISTINCT table, partition
FROM system.parts
WHERE database = '{database}' AND active
  AND table IN ('records_staging', 'reports_staging')
  AND partition < toString(toYYYYMMDD(today() - 2));
