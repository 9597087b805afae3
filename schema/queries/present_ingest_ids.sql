-- The ingest_ids of batch {batch} whose report (by identity) is in reports now: published
-- by this batch or delivered before. A report of the batch in neither this nor
-- published_ingest_ids.sql was not published (its staging was incomplete): it must be
-- tried again, never counted as a duplicate.
SELECT ingest_id
FROM {database}.reports_staging
WHERE batch_id = {batch}
  AND (policy_domain, date_begin, org_name, report_id) IN
  (
      SELECT policy_domain, date_begin, org_name, report_id
      FROM {database}.reports
      WHERE (policy_domain, date_begin) IN
          (SELECT policy_domain, date_begin FROM {database}.reports_staging WHERE batch_id = {batch})
  );
