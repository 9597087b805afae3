-- dmarc-ingest schema, migration 009: the inventory of domains the team answers for,
-- loaded from the domains file by `dmarc-ingest domains sync`.
-- domain_inventory keeps every version of every domain's line: a sync writes a row only
-- for a domain that is new, changed, or gone from the file (removed = 1: marked, never
-- deleted), so re-running it writes nothing. `domains` is the current state: one row per
-- domain ever listed, the newest version of each.
CREATE TABLE IF NOT EXISTS {database}.domain_inventory
(
    domain String,
    owner String,
    group_name String,
    parked UInt8,
    contact String,
    -- 1: no longer in the domains file.
    removed UInt8,
    synced_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY (domain, synced_at);

CREATE VIEW IF NOT EXISTS {database}.domains AS
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

-- Policy domains of stored reports that are not in the inventory (or were removed from
-- it): reports the team receives for domains nobody registered.
CREATE VIEW IF NOT EXISTS {database}.unregistered_domains AS
SELECT
    policy_domain AS domain,
    count() AS reports,
    sum(message_count) AS messages,
    min(date_begin) AS first_report,
    max(date_end) AS last_report
FROM {database}.reports
WHERE policy_domain NOT IN
(
    SELECT domain FROM {database}.domains WHERE removed = 0
)
GROUP BY policy_domain;
