-- Publishes the records of a batch's finished reports (those with a staged reports row
-- in batch {batch}) whose identity is not in records yet. Run by the store under the
-- database-wide publish query_id, squashed into one block per partition.
-- {records_staging} and {reports_staging}: the batch session's temporary tables, or
-- the shared staging tables (ingest/src/store/staging.rs). Only complete reports (see
-- the condition). {records_dedup}: `LIMIT 1 BY ingest_id, record_index` where a staging
-- insert may have been sent twice (its acknowledgement lost): such a row is published
-- once.
INSERT INTO {database}.records
SELECT *
FROM {records_staging}
WHERE ingest_id IN
  (
      -- Complete reports only: every record the report counted is staged (a staging
      -- insert that failed must not let its report be published short of rows).
      SELECT ingest_id FROM {reports_staging}
      WHERE batch_id = {batch}
        AND (record_count = 0 OR (ingest_id, record_count) IN
            (SELECT ingest_id, toUInt64(uniqExact(record_index))
             FROM {records_staging}
             WHERE ingest_id IN (SELECT ingest_id FROM {reports_staging} WHERE batch_id = {batch})
             GROUP BY ingest_id))
  )
  AND (policy_domain, date_begin, org_name, report_id) NOT IN
  (
      SELECT policy_domain, date_begin, org_name, report_id
      FROM {database}.records
      WHERE (policy_domain, date_begin) IN
          (SELECT policy_domain, date_begin FROM {reports_staging} WHERE batch_id = {batch})
  )
{records_dedup};
