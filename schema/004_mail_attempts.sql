-- Attempts the daemon made at each mail still in a mailbox: one row per mail per
-- processing attempt, written before the mail is parsed. A mail whose attempts did not
-- end (the daemon crashed, was killed or ran out of memory, a stage panicked, ClickHouse
-- refused its rows) is tried alone next time, and quarantined once it has had
-- `MAX_ATTEMPTS_PER_MESSAGE` of them; the count survives restarts. Rows of mail that has
-- left the mailbox are never read again; partitions older than three months are dropped
-- by the daemon (schema/queries/stale_attempt_partitions.sql).
CREATE TABLE IF NOT EXISTS {database}.mail_attempts
(
    -- `user@host/folder`, as in logs and metrics.
    mailbox String,
    uid_validity UInt32,
    uid UInt32,
    started_at DateTime('UTC'),
    -- Mails processed together in that attempt (1: alone).
    batch_size UInt32,
    host String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (mailbox, uid_validity, uid);
