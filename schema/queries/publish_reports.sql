-- Publishes the reports rows of batch {batch} whose identity is not in reports yet
-- complete (every record staged), (LIMIT 1 BY: once, even if a retried staging insert staged the row twice).
INSERT INTO {database}.reports
(
    policy_domain, date_begin, date_end, org_name, report_id, email, extra_contact_info,
    version, generator, report_errors, published_adkim, published_aspf, published_p,
    published_sp, published_np, published_pct, published_fo, published_testing,
    published_discovery_method, report_extensions, problems, record_count, message_count,
    source, ingest_id, ingested_at, parser_version
)
SELECT
    policy_domain, date_begin, date_end, org_name, report_id, email, extra_contact_info,
    version, generator, report_errors, published_adkim, published_aspf, published_p,
    published_sp, published_np, published_pct, published_fo, published_testing,
    published_discovery_method, report_extensions, problems, record_count, message_count,
    source, ingest_id, ingested_at, parser_version
FROM {reports_staging}
WHERE batch_id = {batch}
  AND ingest_id IN
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
      -- By the whole sort key of reports: reads only the granules of the batch's reports.
      SELECT policy_domain, date_begin, org_name, report_id
      FROM {database}.reports
      WHERE (policy_domain, date_begin, org_name, report_id) IN
          (SELECT policy_domain, date_begin, org_name, report_id
           FROM {reports_staging} WHERE batch_id = {batch})
  )
LIMIT 1 BY ingest_id;
