-- Cluster twin of schema/queries/alert_status_inputs.sql (GLOBAL IN).
SELECT
    domain,
    argMax(judged_status, judged_at) AS status_now,
    toUInt8(countIf(judged_status != 'red') > 0) AS fine_before
FROM
(
    SELECT domain, status AS judged_status, toUInt32(computed_at) AS judged_at
    FROM {database}.domain_status_history
    WHERE computed_at >= now() - INTERVAL 30 DAY
      AND domain GLOBAL IN (SELECT domain FROM {database}.domains WHERE removed = 0)
)
GROUP BY domain
ORDER BY domain
