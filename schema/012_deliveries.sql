-- dmarc-ingest schema, migration 012: what was sent to whom. One row per attempt to
-- deliver an alert event (an alert opened or resolved) or a weekly digest over one
-- channel: 'sent', 'failed' (tried again later, with backoff) or 'abandoned' (after the
-- last attempt). An item with a 'sent' row is never sent again, a restart included.
CREATE TABLE IF NOT EXISTS {database}.deliveries
(
    attempted_at DateTime('UTC'),
    -- alert, digest
    kind LowCardinality(String),
    -- What was delivered: 'rule|domain|key|first_seen|opened' (or '|resolved') for an
    -- alert event, 'owner|week_start' for a digest.
    item String,
    -- email, webhook
    channel LowCardinality(String),
    -- sent, failed, abandoned
    outcome LowCardinality(String),
    attempt UInt16,
    recipients Array(String),
    -- The Message-ID of the mail (the same in every attempt of the item, so that a mail
    -- sent again after a crash between the server's acceptance and this row is one
    -- message to the recipient's mail system).
    message_id String,
    error String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (kind, item, channel, attempted_at);
