-- dmarc-ingest schema, migration 010: what each domain publishes in DNS, and its
-- red/amber/green status.
-- dns_checks: one snapshot per domain per `dmarc-ingest dns check` run (inventory domains
-- and policy domains seen in reports): the raw records, the parsed fields, the findings
-- (Nested: ARRAY JOIN findings gives one row per finding), and the worst finding per
-- record type. Snapshots are never replaced: comparing them shows what changed and when.
CREATE TABLE IF NOT EXISTS {database}.dns_checks
(
    checked_at DateTime('UTC'),
    domain String,
    -- 1: in the inventory when checked; 0: a policy domain of reports only.
    in_inventory UInt8,
    -- Lookups that got no answer (SERVFAIL, timeout): the snapshot is incomplete.
    failed_lookups UInt16,
    -- DMARC: where the record was found ('' none), 1 if at the organisational domain.
    dmarc_name String,
    dmarc_inherited UInt8,
    -- Every TXT record at dmarc_name starting with v=DMARC1 (more than one is an error).
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
    -- 1: rua includes the central team's address (or none is configured).
    dmarc_rua_reaches_team UInt8,
    -- SPF: the records at the domain starting with v=spf1, the DNS lookups its
    -- evaluation needs (includes and redirects expanded), the void ones among them, and
    -- its final all (e.g. '-all', '~all', '+all'; '' none).
    spf_records Array(String),
    spf_lookups UInt16,
    spf_void_lookups UInt16,
    spf_all LowCardinality(String),
    -- MX hosts by preference; null_mx = 1 for the RFC 7505 "0 ." record.
    mx_hosts Array(String),
    null_mx UInt8,
    -- DKIM keys of the selectors seen in this domain's reports (parallel arrays; a
    -- missing key has an empty record, key type '' and 0 bits).
    dkim_selectors Array(String),
    dkim_records Array(String),
    dkim_key_types Array(String),
    dkim_key_bits Array(UInt16),
    mta_sts_record String,
    tls_rpt_record String,
    findings Nested
    (
        -- dmarc, spf, dkim, mx, mta_sts, tls_rpt
        area String,
        -- error, warning, info
        severity String,
        code String,
        text String
    ),
    -- The worst finding per record type: error, warning, info, ok, or none (nothing to
    -- check, e.g. no DKIM selector seen).
    dmarc_status LowCardinality(String),
    spf_status LowCardinality(String),
    dkim_status LowCardinality(String),
    mx_status LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(checked_at)
ORDER BY (domain, checked_at);

-- One row per inventory domain per status computation (after every DNS check run): the
-- colour, its reasons, and the numbers it was judged on. The rules are in the crate's
-- `status` module and README ("What the colours mean").
CREATE TABLE IF NOT EXISTS {database}.domain_status_history
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
    -- The DMARC policy in DNS when judged ('' none).
    policy LowCardinality(String),
    -- Declared parked in the inventory / no aligned mail for 90 days (parked-like).
    parked UInt8,
    parked_like UInt8,
    -- Messages of the last 30 days, and those passing DMARC.
    messages UInt64,
    dmarc_pass UInt64,
    -- The DNS snapshot judged (0: none yet).
    checked_at DateTime('UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(computed_at)
ORDER BY (domain, computed_at);

-- The current status: one row per inventory domain (not removed), the latest
-- computation, or red "not checked yet" for a domain listed since.
CREATE VIEW IF NOT EXISTS {database}.domain_status AS
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
ANY LEFT JOIN
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
