-- Cluster twin of schema/queries/published_ingest_ids.sql. The ingest_ids of batch
-- {batch} that are in reports: those reports were published by this batch; the batch's
-- other reports were duplicates. Read after the publish returned (insert_distributed_sync,
-- and insert_quorum so that every replica has the rows: see ../README.md).
SELECT ingest_id
FROM {database}.reports
WHERE (policy_domain, date_begin) GLOBAL IN
    (SELECT policy_domain, date_begin FROM {database}.reports_staging WHERE batch_id = {batch})
  AND ingest_id GLOBAL IN (SELECT ingest_id FROM {database}.reports_staging WHERE batch_id = {batch});
