-- `failures` shows each failing input once, however often it was delivered or imported:
-- the deliveries of one mail (the same Message-ID under a new UID, as when a mailbox is
-- filled again) and the imports of one file are counted in `deliveries`, with the first
-- and the last time it failed; the reason and source are those of the last time.
-- The input is `source` without its UID part when a Message-ID names the mail
-- (`user@host/INBOX uid 7 (uidvalidity 1) <id>: file.xml` -> `user@host/INBOX <id>:
-- file.xml`); a mail without one stays named by its UID.
DROP TABLE IF EXISTS {database}.failures;

CREATE VIEW IF NOT EXISTS {database}.failures AS
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
