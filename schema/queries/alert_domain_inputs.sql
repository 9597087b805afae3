-- What the domain-wide traffic alert rules (the crate's `alerts::traffic`) judge: one row
-- per inventory domain with reports in the {history_days} report days before the last
-- {recent_days} (or in those): the days with failing mail and their failing messages
-- (parallel arrays), and the days with reports.
SELECT
    domain,
    groupArrayIf(day, failing_kind = 1) AS failing_days,
    groupArrayIf(day_failing, failing_kind = 1) AS failing_messages,
    groupArrayIf(day, failing_kind = 0) AS report_days
FROM
(
    SELECT policy_domain AS domain, day, sum(messages) AS day_failing, toUInt8(1) AS failing_kind
    FROM {database}.records_daily
    WHERE day > {today} - ({recent_days} + {history_days}) AND day <= {today}
      AND dmarc_pass = 0
      AND policy_domain IN (SELECT domain FROM {database}.domains WHERE removed = 0)
    GROUP BY policy_domain, day
    UNION ALL
    SELECT policy_domain AS domain, day, toUInt64(0) AS day_failing, toUInt8(0) AS failing_kind
    FROM {database}.reporter_daily
    WHERE day > {today} - ({recent_days} + {history_days}) AND day <= {today}
      AND policy_domain IN (SELECT domain FROM {database}.domains WHERE removed = 0)
    GROUP BY policy_domain, day
)
GROUP BY domain
ORDER BY domain
