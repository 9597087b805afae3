-- Cluster twin of schema/queries/status_inputs.sql: the Distributed tables, joined and
-- filtered GLOBAL.
SELECT
    domain, owner, group_name, parked,
    snapshot_at AS checked_at, failed_lookups, dmarc_name, dmarc_inherited, dmarc_p, dmarc_sp, dmarc_pct,
    dmarc_rua_reaches_team, spf_records, spf_all, spf_lookups, null_mx,
    dmarc_status, spf_status, dkim_status, mx_status, dmarc_errors, dmarc_warnings, spf_errors,
    spf_warnings, dkim_errors, mx_errors, none_since,
    messages, dmarc_pass, pass_90d, legit_messages, legit_failing
FROM
(
    SELECT *
    FROM
    (
        SELECT domain, owner, group_name, parked
        FROM {database}.domains
        WHERE removed = 0
    ) AS inventory
    GLOBAL ANY LEFT JOIN
    (
        SELECT
            domain,
            max(checked_at) AS snapshot_at,
            argMax(failed_lookups, checked_at) AS failed_lookups,
            argMax(dmarc_name, checked_at) AS dmarc_name,
            argMax(dmarc_inherited, checked_at) AS dmarc_inherited,
            argMax(dmarc_p, checked_at) AS dmarc_p,
            argMax(dmarc_sp, checked_at) AS dmarc_sp,
            argMax(dmarc_pct, checked_at) AS dmarc_pct,
            argMax(dmarc_rua_reaches_team, checked_at) AS dmarc_rua_reaches_team,
            argMax(spf_records, checked_at) AS spf_records,
            argMax(spf_all, checked_at) AS spf_all,
            argMax(spf_lookups, checked_at) AS spf_lookups,
            argMax(null_mx, checked_at) AS null_mx,
            argMax(dmarc_status, checked_at) AS dmarc_status,
            argMax(spf_status, checked_at) AS spf_status,
            argMax(dkim_status, checked_at) AS dkim_status,
            argMax(mx_status, checked_at) AS mx_status,
            argMax(arrayFilter((t, s, a) -> s = 'error' AND a = 'dmarc', findings.text, findings.severity, findings.area), checked_at) AS dmarc_errors,
            -- (pct below 100 and rua missing the team have rules of their own)
            argMax(arrayFilter((t, s, a, c) -> s = 'warning' AND a = 'dmarc' AND NOT has(['dmarc_pct_below_100', 'dmarc_rua_misses_team'], c), findings.text, findings.severity, findings.area, findings.code), checked_at) AS dmarc_warnings,
            argMax(arrayFilter((t, s, a) -> s = 'error' AND a = 'spf', findings.text, findings.severity, findings.area), checked_at) AS spf_errors,
            argMax(arrayFilter((t, s, a) -> s = 'warning' AND a = 'spf', findings.text, findings.severity, findings.area), checked_at) AS spf_warnings,
            argMax(arrayFilter((t, s, a) -> s = 'error' AND a = 'dkim', findings.text, findings.severity, findings.area), checked_at) AS dkim_errors,
            argMax(arrayFilter((t, s, a) -> s = 'error' AND has(['mx', 'mta_sts', 'tls_rpt'], a), findings.text, findings.severity, findings.area), checked_at) AS mx_errors,
            -- (time, effective policy) of every snapshot, oldest first: the start of the
            -- latest unbroken run of 'none'.
            arraySort(groupArray((snapshot_time, effective_policy))) AS history,
            arrayReduce('max', arrayMap(h -> if(tupleElement(h, 2) = 'none', 0, tupleElement(h, 1)), history)) AS last_not_none,
            if(tupleElement(history[length(history)], 2) = 'none',
               arrayReduce('min', arrayFilter(t -> t > last_not_none, arrayMap(h -> tupleElement(h, 1), history))),
               0) AS none_since
        FROM
        (
            SELECT
                *,
                toUInt32(checked_at) AS snapshot_time,
                if(dmarc_inherited = 1 AND dmarc_sp != '', dmarc_sp, dmarc_p) AS effective_policy
            FROM {database}.dns_checks
            WHERE domain GLOBAL IN (SELECT domain FROM {database}.domains WHERE removed = 0)
        )
        GROUP BY domain
    ) AS latest USING domain
) AS judged
GLOBAL ANY LEFT JOIN
(
    SELECT
        domain,
        sum(messages_30) AS messages,
        sum(pass_30) AS dmarc_pass,
        sum(pass_90) AS pass_90d,
        sumIf(messages_30, pass_30 > 0) AS legit_messages,
        sumIf(messages_30 - pass_30, pass_30 > 0) AS legit_failing
    FROM
    (
        SELECT
            policy_domain AS domain,
            source_ip_v6,
            sumIf(messages, day >= today() - 30) AS messages_30,
            sumIf(messages, day >= today() - 30 AND dmarc_pass = 1) AS pass_30,
            sumIf(messages, dmarc_pass = 1) AS pass_90
        FROM {database}.records_daily
        WHERE day >= today() - 90
          AND policy_domain GLOBAL IN (SELECT domain FROM {database}.domains WHERE removed = 0)
        GROUP BY policy_domain, source_ip_v6
    )
    GROUP BY domain
) AS mail USING domain
ORDER BY domain
