-- What the status alert rule judges, one row per inventory domain judged in the last 30
-- days: its colour now, and whether it was green or amber at some point of the 30 days.
SELECT
    domain,
    argMax(judged_status, judged_at) AS status_now,
    toUInt8(countIf(judged_status != 'red') > 0) AS fine_before
FROM
(
    SELECT domain, status AS judged_status, toUInt32(computed_at) AS judged_at
    FROM {database}.domain_status_history
    WHERE computed_at >= now() - INTERVAL 30 DAY
      AND domain IN (SELECT domain FROM {database}.domains WHERE removed = 0)
)
GROUP BY domain
ORDER BY domain
