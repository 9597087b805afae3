-- dmarc-ingest cluster schema, migration 011: the cluster twin of schema/011_alerts.sql
-- (a replicated table on every shard under a Distributed table of the name the checker
-- writes; the view reads it).
CREATE TABLE IF NOT EXISTS {database}.alert_history_local ON CLUSTER '{cluster}'
(
    observed_at DateTime('UTC'),
    rule LowCardinality(String),
    domain String,
    key String,
    state LowCardinality(String),
    first_seen DateTime('UTC'),
    last_seen DateTime('UTC'),
    severity LowCardinality(String),
    summary String,
    evidence_names Array(String),
    evidence_values Array(Float64)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/alert_history_local', '{replica}')
PARTITION BY toYYYYMM(observed_at)
ORDER BY (domain, rule, key, first_seen, observed_at);

CREATE TABLE IF NOT EXISTS {database}.alert_history ON CLUSTER '{cluster}'
AS {database}.alert_history_local
ENGINE = Distributed('{cluster}', '{database}', 'alert_history_local', cityHash64(domain));

CREATE VIEW IF NOT EXISTS {database}.alerts ON CLUSTER '{cluster}' AS
SELECT
    rule,
    domain,
    key,
    first_seen,
    -- Once resolved, an alert stays resolved (a later firing opens a new one): within one
    -- second, resolved outranks open.
    argMax(state, (observed_at, state = 'resolved')) AS state,
    max(last_seen) AS last_seen,
    argMax(severity, observed_at) AS severity,
    argMax(summary, observed_at) AS summary,
    argMax(evidence_names, observed_at) AS evidence_names,
    argMax(evidence_values, observed_at) AS evidence_values
FROM {database}.alert_history
GROUP BY rule, domain, key, first_seen;
