-- Publishes the records of a batch's finished reports (those with a reports_staging row
-- in batch {batch}) whose identity is not in records yet. Run by the store under the
-- database-wide publish query_id, squashed into one block per partition.
-- Only complete reports (see the condition). LIMIT 1 BY: a staging insert retried after its acknowledgement was lost may have
-- staged a record twice; it is published once.
INSERT INTO {database}.records
SELECT *
FROM {database}.records_staging
WHERE ingest_id IN
  (
      -- Complete reports only: every record the report counted is staged (a staging
      -- insert that failed must not let its report be published short of rows).
      SELECT ingest_id FROM {database}.reports_staging
      WHERE batch_id = {batch}
        AND (record_count = 0 OR (ingest_id, record_count) IN
            (SELECT ingest_id, toUInt64(uniqExact(record_index))
             FROM {database}.records_staging
             WHERE ingest_id IN (SELECT ingest_id FROM {database}.reports_staging WHERE batch_id = {batch})
             GROUP BY ingest_id))
  )
  AND (policy_domain, date_begin, org_name, report_id) NOT IN
  (
      SELECT policy_domain, date_begin, org_name, report_id
      FROM {database}.records
      WHERE (policy_domain, date_begin) IN
          (SELECT policy_domain, date_begin FROM {database}.reports_staging WHERE batch_id = {batch})
  )
LIMIT 1 BY ingest_id, record_index;
