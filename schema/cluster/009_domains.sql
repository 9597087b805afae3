-- dmarc-ingest cluster schema, migration 009: the cluster twin of schema/009_domains.sql
-- (a replicated table on every shard under a Distributed table of the name the importer
-- uses; the views read the Distributed tables, GLOBAL).
CREATE TABLE IF NOT EXISTS {database}.domain_inventory_local ON CLUSTER '{cluster}'
(
    domain String,
    owner String,
    group_name String,
    parked UInt8,
    contact String,
    removed UInt8,
    synced_at DateTime('UTC')
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/domain_inventory_local', '{replica}')
ORDER BY (domain, synced_at);

CREATE TABLE IF NOT EXISTS {database}.domain_inventory ON CLUSTER '{cluster}'
AS {database}.domain_inventory_local
ENGINE = Distributed('{cluster}', '{database}', 'domain_inventory_local', cityHash64(domain));

CREATE VIEW IF NOT EXISTS {database}.domains ON CLUSTER '{cluster}' AS
SELECT
    domain,
    argMax(owner, synced_at) AS owner,
    argMax(group_name, synced_at) AS group_name,
    argMax(parked, synced_at) AS parked,
    argMax(contact, synced_at) AS contact,
    argMax(removed, synced_at) AS removed,
    min(synced_at) AS first_listed,
    max(synced_at) AS last_changed
FROM {database}.domain_inventory
GROUP BY domain;

CREATE VIEW IF NOT EXISTS {database}.unregistered_domains ON CLUSTER '{cluster}' AS
SELECT
    policy_domain AS domain,
    count() AS reports,
    sum(message_count) AS messages,
    min(date_begin) AS first_report,
    max(date_end) AS last_report
FROM {database}.reports
WHERE policy_domain GLOBAL NOT IN
(
    SELECT domain FROM {database}.domains WHERE removed = 0
)
GROUP BY policy_domain;
