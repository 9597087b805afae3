-- Cluster twin of schema/queries/publish_outcome.sql (GLOBAL: Distributed tables; read
-- with select_sequential_consistency on replicated shards).
-- What became of batch {batch}: the identities of its reports that are in reports now,
-- with the ingest_id stored for each. A report of the batch whose ingest_id is listed
-- was published by this batch; one whose identity is listed under another ingest_id was
-- a duplicate; one not listed was not published (its staging was incomplete): it must
-- be tried again, never counted as a duplicate.
SELECT ingest_id, policy_domain, date_begin, org_name, report_id
FROM {database}.reports
WHERE (policy_domain, date_begin, org_name, report_id) GLOBAL IN
    (SELECT policy_domain, date_begin, org_name, report_id
     FROM {database}.reports_staging
     WHERE batch_id = {batch});
