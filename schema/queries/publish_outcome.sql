-- What became of batch {batch}: the identities of its reports that are in reports now,
-- with the ingest_id stored for each. A report of the batch whose ingest_id is listed
-- was published by this batch; one whose identity is listed under another ingest_id was
-- a duplicate; one not listed was not published (its staging was incomplete): it must
-- be tried again, never counted as a duplicate. One read, by the sort key of reports.
SELECT ingest_id, policy_domain, date_begin, org_name, report_id
FROM {database}.reports
WHERE (policy_domain, date_begin, org_name, report_id) IN
    (SELECT policy_domain, date_begin, org_name, report_id
     FROM {reports_staging}
     WHERE batch_id = {batch});
