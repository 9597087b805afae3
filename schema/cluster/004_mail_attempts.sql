-- Cluster twin of schema/004_mail_attempts.sql: replicated so that the counts survive
-- the loss of a replica, under a Distributed table of the name the daemon uses (written
-- with insert_distributed_sync = 1, as every insert of the importer's user). Rows expire
-- after three months.
CREATE TABLE IF NOT EXISTS {database}.mail_attempts_local ON CLUSTER '{cluster}'
(
    mailbox String,
    uid_validity UInt32,
    uid UInt32,
    started_at DateTime('UTC'),
    batch_size UInt32,
    host String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/mail_attempts_local', '{replica}')
PARTITION BY toYYYYMM(started_at)
ORDER BY (mailbox, uid_validity, uid)
TTL started_at + INTERVAL 3 MONTH;

CREATE TABLE IF NOT EXISTS {database}.mail_attempts ON CLUSTER '{cluster}'
AS {database}.mail_attempts_local
ENGINE = Distributed('{cluster}', '{database}', 'mail_attempts_local', cityHash64(mailbox));
