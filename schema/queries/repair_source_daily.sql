-- Repairs source_daily for the days {days} selects, as queries/repair_records_daily.sql
-- does records_daily: per rollup key, what records holds minus what the rollup holds.
-- The rollup is read by day and domain, not by its key: repairs are rare.
INSERT INTO {database}.source_daily
SELECT source_ip_v6, day, policy_domain, any(source_ip) AS source_ip, dmarc_pass,
       toUInt64(sum(messages_diff)) AS messages, toUInt64(sum(records_diff)) AS records
FROM
(
    SELECT source_ip_v6, toDate(date_begin) AS day, policy_domain, source_ip,
           (policy_dkim = 'pass') OR (policy_spf = 'pass') AS dmarc_pass,
           toInt64(message_count) AS messages_diff, toInt64(1) AS records_diff
    FROM {database}.records
    WHERE (policy_domain, toDate(date_begin)) IN ({days})
    UNION ALL
    SELECT source_ip_v6, day, policy_domain, source_ip, dmarc_pass,
           -toInt64(messages) AS messages_diff, -toInt64(records) AS records_diff
    FROM {database}.source_daily
    WHERE (policy_domain, day) IN ({days})
)
GROUP BY source_ip_v6, day, policy_domain, dmarc_pass
HAVING sum(messages_diff) != 0 OR sum(records_diff) != 0;
