-- dmarc-ingest cluster schema, migration 010: the cluster twin of
-- schema/010_dns_checks_and_status.sql (replicated tables on every shard under
-- Distributed tables of the names the checker writes; the view joins them, GLOBAL).
CREATE TABLE IF NOT EXISTS {database}.dns_checks_local ON CLUSTER '{cluster}'
(
    checked_at DateTime('UTC'),
    domain String,
    in_inventory UInt8,
    failed_lookups UInt16,
    dmarc_name String,
    dmarc_inherited UInt8,
    dmarc_records Array(String),
    dmarc_p LowCardinality(String),
    dmarc_sp LowCardinality(String),
    dmarc_np LowCardinality(String),
    dmarc_pct UInt8,
    dmarc_adkim LowCardinality(String),
    dmarc_aspf LowCardinality(String),
    dmarc_fo String,
    dmarc_rua Array(String),
    dmarc_ruf Array(String),
    dmarc_rua_reaches_team UInt8,
    spf_records Array(String),
    spf_lookups UInt16,
    spf_void_lookups UInt16,
    spf_all LowCardinality(String),
    mx_hosts Array(String),
    null_mx UInt8,
    dkim_selectors Array(String),
    dkim_records Array(String),
    dkim_key_types Array(String),
    dkim_key_bits Array(UInt16),
    mta_sts_record String,
    tls_rpt_record String,
    findings Nested
    (
        area String,
        severity String,
        code String,
        text String
    ),
    dmarc_status LowCardinality(String),
    spf_status LowCardinality(String),
    dkim_status LowCardinality(String),
    mx_status LowCardinality(String)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/dns_checks_local', '{replica}')
PARTITION BY toYYYYMM(checked_at)
ORDER BY (domain, checked_at);

CREATE TABLE IF NOT EXISTS {database}.dns_checks ON CLUSTER '{cluster}'
AS {database}.dns_checks_local
ENGINE = Distributed('{cluster}', '{database}', 'dns_checks_local', cityHash64(domain));

CREATE TABLE IF NOT EXISTS {database}.domain_status_history_local ON CLUSTER '{cluster}'
(
    computed_at DateTime('UTC'),
    domain String,
    owner String,
    group_name String,
    status LowCardinality(String),
    reasons Array(String),
    dmarc_status LowCardinality(String),
    spf_status LowCardinality(String),
    dkim_status LowCardinality(String),
    mx_status LowCardinality(String),
    policy LowCardinality(String),
    parked UInt8,
    parked_like UInt8,
    messages UInt64,
    dmarc_pass UInt64,
    checked_at DateTime('UTC')
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/domain_status_history_local', '{replica}')
PARTITION BY toYYYYMM(computed_at)
ORDER BY (domain, computed_at);

CREATE TABLE IF NOT EXISTS {database}.domain_status_history ON CLUSTER '{cluster}'
AS {database}.domain_status_history_local
ENGINE = Distributed('{cluster}', '{database}', 'domain_status_history_local', cityHash64(domain));

CREATE VIEW IF NOT EXISTS {database}.domain_status ON CLUSTER '{cluster}' AS
SELECT
    domain,
    owner,
    group_name,
    parked,
    if(last_computed_at = 0, 'red', status) AS status,
    if(last_computed_at = 0, ['not checked yet: run dmarc-ingest dns check'], reasons) AS reasons,
    if(last_computed_at = 0, 'none', dmarc_status) AS dmarc_status,
    if(last_computed_at = 0, 'none', spf_status) AS spf_status,
    if(last_computed_at = 0, 'none', dkim_status) AS dkim_status,
    if(last_computed_at = 0, 'none', mx_status) AS mx_status,
    policy,
    parked_like,
    messages,
    dmarc_pass,
    last_computed_at AS computed_at,
    checked_at
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
        argMax(status, computed_at) AS status,
        argMax(reasons, computed_at) AS reasons,
        argMax(dmarc_status, computed_at) AS dmarc_status,
        argMax(spf_status, computed_at) AS spf_status,
        argMax(dkim_status, computed_at) AS dkim_status,
        argMax(mx_status, computed_at) AS mx_status,
        argMax(policy, computed_at) AS policy,
        argMax(parked_like, computed_at) AS parked_like,
        argMax(messages, computed_at) AS messages,
        argMax(dmarc_pass, computed_at) AS dmarc_pass,
        max(computed_at) AS last_computed_at,
        argMax(checked_at, computed_at) AS checked_at
    FROM {database}.domain_status_history
    -- Every run judges every inventory domain: the last week of runs holds the latest
    -- row of each (and spares reading the whole history).
    WHERE computed_at >= (SELECT max(computed_at) FROM {database}.domain_status_history) - INTERVAL 7 DAY
    GROUP BY domain
) AS latest USING domain;
