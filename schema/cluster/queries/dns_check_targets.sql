-- Cluster twin of schema/queries/dns_check_targets.sql (the Distributed tables; nothing
-- here needs GLOBAL).
SELECT
    domain,
    max(listed) AS in_inventory,
    arraySlice(arraySort(groupUniqArrayArray(selectors)), 1, 16) AS selectors
FROM
(
    SELECT domain, toUInt8(1) AS listed, toUInt8(1) AS target, emptyArrayString() AS selectors
    FROM {database}.domains
    WHERE removed = 0
    UNION ALL
    SELECT domain, toUInt8(0) AS listed, toUInt8(1) AS target, emptyArrayString() AS selectors
    FROM
    (
        SELECT policy_domain AS domain, sum(message_count) AS messages
        FROM {database}.reports
        WHERE date_end >= now() - INTERVAL 30 DAY
        GROUP BY policy_domain
        ORDER BY messages DESC, domain
        LIMIT {max_seen}
    )
    UNION ALL
    SELECT signing_domain AS domain, toUInt8(0) AS listed, toUInt8(0) AS target,
        arraySlice(groupUniqArray(selector), 1, 16) AS selectors
    FROM {database}.records
    ARRAY JOIN dkim_domains AS signing_domain, dkim_selectors AS selector
    WHERE date_begin >= now() - INTERVAL 7 DAY AND selector != ''
    GROUP BY signing_domain
)
GROUP BY domain
HAVING max(target) = 1
ORDER BY domain
