-- Repairs records_daily for the days {days} selects (a batch's domains and days, or a
-- date range): inserts, per rollup key, what records holds minus what the rollup holds,
-- so the summed rollup equals records again (a view that failed after its records were
-- committed left it short). Keys already right give no row. Run under the publish
-- query_id: no publish can add rows between the two reads. A negative difference wraps
-- in UInt64 and still sums right.
INSERT INTO {database}.records_daily
SELECT day, policy_domain, source_ip_v6, any(source_ip) AS source_ip, header_from,
       any(header_from_org) AS header_from_org, sender_org, disposition,
       dkim_pass, spf_pass, dmarc_pass, dkim_aligned, spf_aligned,
       toUInt64(sum(messages_diff)) AS messages, toUInt64(sum(records_diff)) AS records
FROM
(
    SELECT toDate(date_begin) AS day, policy_domain, source_ip_v6, source_ip, header_from,
           header_from_org, sender_org, disposition,
           policy_dkim = 'pass' AS dkim_pass, policy_spf = 'pass' AS spf_pass,
           (policy_dkim = 'pass') OR (policy_spf = 'pass') AS dmarc_pass,
           dkim_aligned, spf_aligned,
           toInt64(message_count) AS messages_diff, toInt64(1) AS records_diff
    FROM {database}.records
    WHERE (policy_domain, toDate(date_begin)) IN ({days})
    UNION ALL
    SELECT day, policy_domain, source_ip_v6, source_ip, header_from, header_from_org,
           sender_org, disposition, dkim_pass, spf_pass, dmarc_pass, dkim_aligned, spf_aligned,
           -toInt64(messages) AS messages_diff, -toInt64(records) AS records_diff
    FROM {database}.records_daily
    WHERE (policy_domain, day) IN ({days})
)
GROUP BY day, policy_domain, source_ip_v6, header_from, sender_org, disposition,
         dkim_pass, spf_pass, dmarc_pass, dkim_aligned, spf_aligned
HAVING sum(messages_diff) != 0 OR sum(records_diff) != 0;
