-- The alerts whose events may still have to be delivered (the crate's `alerts::deliver`):
-- every alert seen in the last 7 days, with its domain's owner and contact from the
-- inventory ('' when the domain is not in it).
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
ANY LEFT JOIN
(
    SELECT domain, owner, contact
    FROM {database}.domains
    WHERE removed = 0
) AS inventory USING (domain)
ORDER BY first_seen_at, domain, rule, key
