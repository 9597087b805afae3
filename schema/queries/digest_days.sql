-- The weekly digests' daily volumes: per inventory domain and report day from
-- {week_start} to {week_end}, the messages, those passing DMARC, and those passing DKIM
-- and SPF aligned.
SELECT
    policy_domain AS domain,
    day,
    sum(messages) AS day_messages,
    sumIf(messages, dmarc_pass = 1) AS day_dmarc_pass,
    sumIf(messages, dkim_aligned = 1) AS day_dkim_pass,
    sumIf(messages, spf_aligned = 1) AS day_spf_pass
FROM {database}.records_daily
WHERE day >= {week_start} AND day <= {week_end}
  AND policy_domain IN (SELECT domain FROM {database}.domains WHERE removed = 0)
GROUP BY policy_domain, day
ORDER BY domain, day
