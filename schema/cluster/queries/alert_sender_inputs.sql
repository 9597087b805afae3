-- Cluster twin of schema/queries/alert_sender_inputs.sql (GLOBAL IN, GLOBAL JOIN).
SELECT
    domain,
    sender,
    any(source_ip) AS example_ip,
    sumIf(day_messages, recent) AS recent_messages,
    sumIf(day_messages, recent AND dmarc_pass = 0) AS recent_failing,
    sumIf(day_messages, recent AND dkim_aligned = 1) AS recent_dkim_pass,
    sumIf(day_messages, recent AND spf_aligned = 1) AS recent_spf_pass,
    sumIf(day_messages, NOT recent) AS history_messages,
    sumIf(day_messages, NOT recent AND dkim_aligned = 1) AS history_dkim_pass,
    sumIf(day_messages, NOT recent AND spf_aligned = 1) AS history_spf_pass
FROM
(
    SELECT
        domain,
        if(known_sender = '', source_ip, known_sender) AS sender,
        source_ip,
        recent,
        dmarc_pass,
        dkim_aligned,
        spf_aligned,
        day_messages
    FROM
    (
        SELECT
            policy_domain AS domain,
            source_ip_v6,
            source_ip,
            day > {today} - {recent_days} AS recent,
            dmarc_pass,
            dkim_aligned,
            spf_aligned,
            messages AS day_messages
        FROM {database}.records_daily
        WHERE day > {today} - ({recent_days} + {history_days}) AND day <= {today}
          AND policy_domain GLOBAL IN (SELECT domain FROM {database}.domains WHERE removed = 0)
    ) AS daily
    GLOBAL ANY LEFT JOIN
    (
        SELECT source_ip_v6, argMax(sender, resolved_at) AS known_sender
        FROM {database}.source_names
        GROUP BY source_ip_v6
    ) AS names USING (source_ip_v6)
)
GROUP BY domain, sender
ORDER BY domain, sender
