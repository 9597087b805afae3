-- The ingest_ids of batch {batch} that are in reports: those reports were published by
-- this batch; the batch's other reports were duplicates.
SELECT ingest_id
FROM {database}.reports
WHERE (policy_domain, date_begin) IN
    (SELECT policy_domain, date_begin FROM {database}.reports_staging WHERE batch_id = {batch})
  AND ingest_id IN (SELECT ingest_id FROM {database}.reports_staging WHERE batch_id = {batch});
