-- dmarc-ingest schema, migration 013: the days whose rollups a failed publish may have
-- left short, kept here until they are repaired, so that a process that dies before the
-- repair does not forget them (schema/README.md, "Rollup repair"). A day is pending
-- while its latest row (highest `version`) says repaired = 0.
CREATE TABLE IF NOT EXISTS {database}.rollup_repairs
(
    policy_domain String,
    day Date,
    -- When the row was written, in nanoseconds since 1970: the latest row of a day wins.
    version UInt64,
    -- 0: noted after a failed publish statement; 1: repaired since.
    repaired UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (policy_domain, day);
