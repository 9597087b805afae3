-- Cluster twin of schema/005_failures_once.sql: `failures` shows each failing input
-- once, with a count of its deliveries; the view reads the Distributed ingest_log.
DROP TABLE IF EXISTS {database}.failures ON CLUSTER '{cluster}';

CREATE VIEW IF NOT EXISTS {database}.failures ON CLUSTER '{cluster}' AS
SELECT
    input,
    max(at) AS logged_at,
    min(at) AS first_logged_at,
    count() AS deliveries,
    argMax(src, at) AS source,
    argMax(kind, at) AS reason_kind,
    argMax(why, at) AS reason,
    argMax(version, at) AS parser_version,
    argMax(server, at) AS host
FROM
(
    SELECT
        replaceRegexpOne(source, ' uid [0-9]+ \\(uidvalidity [0-9]+\\) <', ' <') AS input,
        logged_at AS at,
        source AS src,
        reason_kind AS kind,
        reason AS why,
        parser_version AS version,
        host AS server
    FROM {database}.ingest_log
    WHERE outcome = 'failed'
)
GROUP BY input;
