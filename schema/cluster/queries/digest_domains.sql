-- Cluster twin of schema/queries/digest_domains.sql (GLOBAL IN, GLOBAL JOIN).
SELECT domain, owner, contact, status, reasons
FROM
(
    SELECT domain, owner, status, reasons
    FROM {database}.domain_status
) AS judged
GLOBAL ANY LEFT JOIN
(
    SELECT domain, contact
    FROM {database}.domains
    WHERE removed = 0
) AS inventory USING (domain)
ORDER BY owner, domain
