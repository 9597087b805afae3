-- dmarc-ingest schema, migration 011: alerts. alert_history gets one row per alert per
-- evaluation that finds it firing (state 'open', last_seen moved on) and one when it stops
-- firing (state 'resolved'). An alert is (rule, domain, key, first_seen): one open alert
-- per rule, domain and key, however many evaluations see it; firing again after it was
-- resolved opens a new one. `alerts` is the current state of every alert.
CREATE TABLE IF NOT EXISTS {database}.alert_history
(
    observed_at DateTime('UTC'),
    rule LowCardinality(String),
    domain String,
    -- What the alert is about within the domain ('' for the domain as a whole; a source
    -- address, a selector...).
    key String,
    -- open, resolved
    state LowCardinality(String),
    first_seen DateTime('UTC'),
    last_seen DateTime('UTC'),
    -- error, warning
    severity LowCardinality(String),
    summary String,
    -- The numbers the rule fired on (parallel arrays: name, value).
    evidence_names Array(String),
    evidence_values Array(Float64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(observed_at)
ORDER BY (domain, rule, key, first_seen, observed_at);

CREATE VIEW IF NOT EXISTS {database}.alerts AS
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
