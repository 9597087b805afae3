-- Cluster twin of schema/queries/repair_reporter_daily.sql (GLOBAL: Distributed tables).
-- Repairs reporter_daily for the days {days} selects, as repair_records_daily.sql does
-- records_daily: what reports holds minus what the rollup holds, per key.
INSERT INTO {database}.reporter_daily
SELECT day, policy_domain, org_name,
       toUInt64(sum(reports_diff)) AS reports, toUInt64(sum(messages_diff)) AS messages
FROM
(
    SELECT toDate(date_begin) AS day, policy_domain, org_name,
           toInt64(1) AS reports_diff, toInt64(message_count) AS messages_diff
    FROM {database}.reports
    WHERE (policy_domain, toDate(date_begin)) GLOBAL IN ({days})
    UNION ALL
    SELECT day, policy_domain, org_name,
           -toInt64(reports) AS reports_diff, -toInt64(messages) AS messages_diff
    FROM {database}.reporter_daily
    WHERE (policy_domain, day) GLOBAL IN ({days})
)
GROUP BY day, policy_domain, org_name
HAVING sum(reports_diff) != 0 OR sum(messages_diff) != 0;
