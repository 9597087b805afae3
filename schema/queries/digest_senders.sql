-- The weekly digests' senders: per inventory domain and sender (the source's stored
-- name, else its address) with mail from {week_start} to {week_end}: its service, an
-- example address, its messages and those passing DMARC, and whether it is new (no mail
-- for the domain in the 30 days before the week). Busiest first.
SELECT
    domain,
    sender,
    max(service_name) AS service,
    any(source_ip) AS example_ip,
    sumIf(day_messages, this_week) AS week_messages,
    sumIf(day_messages, this_week AND dmarc_pass = 1) AS week_dmarc_pass,
    toUInt8(sumIf(day_messages, NOT this_week) = 0) AS new_source
FROM
(
    SELECT
        domain,
        if(known_sender = '', source_ip, known_sender) AS sender,
        known_service AS service_name,
        source_ip,
        this_week,
        dmarc_pass,
        day_messages
    FROM
    (
        SELECT
            policy_domain AS domain,
            source_ip_v6,
            source_ip,
            day >= {week_start} AS this_week,
            dmarc_pass,
            messages AS day_messages
        FROM {database}.records_daily
        WHERE day >= {week_start} - 30 AND day <= {week_end}
          AND policy_domain IN (SELECT domain FROM {database}.domains WHERE removed = 0)
    ) AS daily
    ANY LEFT JOIN
    (
        SELECT
            source_ip_v6,
            argMax(sender, resolved_at) AS known_sender,
            argMax(service, resolved_at) AS known_service
        FROM {database}.source_names
        GROUP BY source_ip_v6
    ) AS names USING (source_ip_v6)
)
GROUP BY domain, sender
HAVING week_messages > 0
ORDER BY domain, week_messages DESC, sender
