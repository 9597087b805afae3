-- The domains of the weekly digests (the crate's `alerts::weekly`): every inventory
-- domain with its owner, contact, and status colour and reasons now.
SELECT domain, owner, contact, status, reasons
FROM
(
    SELECT domain, owner, status, reasons
    FROM {database}.domain_status
) AS judged
ANY LEFT JOIN
(
    SELECT domain, contact
    FROM {database}.domains
    WHERE removed = 0
) AS inventory USING (domain)
ORDER BY owner, domain
