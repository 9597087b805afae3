-- Cluster twin of schema/queries/alert_domain_inputs.sql (GLOBAL IN, GLOBAL JOIN).
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
      AND policy_domain GLOBAL IN (SELECT domain FROM {database}.domains WHERE removed = 0)
    GROUP BY policy_domain, day
    UNION ALL
    SELECT policy_domain AS domain, day, toUInt64(0) AS day_failing, toUInt8(0) AS failing_kind
    FROM {database}.reporter_daily
    WHERE day > {today} - ({recent_days} + {history_days}) AND day <= {today}
      AND policy_domain GLOBAL IN (SELECT domain FROM {database}.domains WHERE removed = 0)
    GROUP BY policy_domain, day
)
GROUP BY domain
ORDER BY domain
