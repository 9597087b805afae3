-- Cluster twin of schema/queries/alert_dns_inputs.sql (GLOBAL IN).
SELECT
    domain,
    argMax(snapshot_policy, snapshot_time) AS policy_now,
    argMax(snapshot_rank, snapshot_time) AS rank_now,
    max(snapshot_rank) AS rank_best,
    argMax(snapshot_policy, (snapshot_rank, snapshot_time)) AS policy_best,
    argMax(snapshot_broken, snapshot_time) AS broken_now,
    toUInt8(min(snapshot_broken) = 0) AS fine_before,
    argMax(snapshot_lookups, snapshot_time) AS spf_lookups_now,
    argMax(snapshot_errors, snapshot_time) AS dmarc_errors_now
FROM
(
    SELECT
        domain,
        toUInt32(checked_at) AS snapshot_time,
        if(dmarc_inherited = 1 AND dmarc_sp != '', dmarc_sp, dmarc_p) AS snapshot_policy,
        toUInt8(if(dmarc_status = 'error', 0,
            multiIf(snapshot_policy = 'reject', 3, snapshot_policy = 'quarantine', 2, snapshot_policy = 'none', 1, 0))) AS snapshot_rank,
        toUInt8(dmarc_status = 'error') AS snapshot_broken,
        spf_lookups AS snapshot_lookups,
        arrayFilter((t, s, a) -> s = 'error' AND a = 'dmarc', findings.text, findings.severity, findings.area) AS snapshot_errors
    FROM {database}.dns_checks
    WHERE checked_at >= now() - INTERVAL 30 DAY
      AND domain GLOBAL IN (SELECT domain FROM {database}.domains WHERE removed = 0)
)
GROUP BY domain
ORDER BY domain
