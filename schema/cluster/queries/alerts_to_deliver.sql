-- Cluster twin of schema/queries/alerts_to_deliver.sql (GLOBAL JOIN).
SELECT
    rule,
    domain,
    key,
    toUInt32(first_seen) AS first_seen_at,
    state,
    toUInt32(last_seen) AS last_seen_at,
    severity,
    summary,
    evidence_names,
    evidence_values,
    owner,
    contact
FROM
(
    SELECT *
    FROM {database}.alerts
    WHERE last_seen >= now() - INTERVAL 7 DAY
) AS recent_alerts
GLOBAL ANY LEFT JOIN
(
    SELECT domain, owner, contact
    FROM {database}.domains
    WHERE removed = 0
) AS inventory USING (domain)
ORDER BY first_seen_at, domain, rule, key
