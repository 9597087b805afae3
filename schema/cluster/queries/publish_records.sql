-- Cluster twin of schema/queries/publish_records.sql. Publishes the records of a batch's
-- finished reports (those with a reports_staging row in batch {batch}) whose identity is
-- not in records yet. Run by the store on the publish node, under the database-wide
-- publish query_id, with insert_distributed_sync=1 (the insert has reached every shard
-- when the statement returns) and squashed into one block per partition on each shard.
-- GLOBAL: the subqueries read Distributed tables; the publish node runs each once and
-- ships the result to the shards (a plain IN would be refused as a double-distributed
-- subquery, or, allowed, would run once per shard). The guard reads every shard, so a
-- report is found even if resharding has moved where new copies of it would land.
-- Only complete reports (see the condition). LIMIT 1 BY: a staging insert retried after a lost acknowledgement may have staged a
-- record twice; it is published once.
INSERT INTO {database}.records
SELECT *
FROM {database}.records_staging
WHERE ingest_id GLOBAL IN
  (
      -- Complete reports only: every record the report counted is staged (a staging
      -- insert that failed must not let its report be published short of rows).
      SELECT ingest_id FROM {database}.reports_staging
      WHERE batch_id = {batch}
        AND (record_count = 0 OR (ingest_id, record_count) GLOBAL IN
            (SELECT ingest_id, toUInt64(uniqExact(record_index))
             FROM {database}.records_staging
             WHERE ingest_id GLOBAL IN (SELECT ingest_id FROM {database}.reports_staging WHERE batch_id = {batch})
             GROUP BY ingest_id))
  )
  AND (policy_domain, date_begin, org_name, report_id) GLOBAL NOT IN
  (
      SELECT policy_domain, date_begin, org_name, report_id
      FROM {database}.records
      WHERE (policy_domain, date_begin) GLOBAL IN
          (SELECT policy_domain, date_begin FROM {database}.reports_staging WHERE batch_id = {batch})
  )
LIMIT 1 BY ingest_id, record_index;
