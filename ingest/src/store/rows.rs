//! Store rows: what happened to each input -> the typed rows of `ingest_log` (pure;
//! nothing here talks to ClickHouse). The rows of `records` and `reports` are made in
//! [`crate::rows`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rows::PARSER_VERSION;

/// One row of `ingest_log`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct LogEntry {
    pub logged_at: u32,
    pub source: String,
    /// `imported`, `duplicate` or `failed`.
    pub outcome: String,
    /// For failures: a short class (`limit_exceeded`, `not_dmarc`, `bad_report`, ...).
    pub reason_kind: String,
    pub reason: String,
    pub org_name: String,
    pub report_id: String,
    pub policy_domain: String,
    pub date_begin: u32,
    pub record_count: u64,
    pub message_count: u64,
    #[serde(with = "clickhouse::serde::uuid")]
    pub ingest_id: Uuid,
    pub parser_version: String,
    pub host: String,
}

impl LogEntry {
    /// A failure of `source`, with the reason's class and text.
    pub fn failure(source: &str, kind: &str, reason: &str) -> LogEntry {
        let reason = crate::failure::truncate_reason(reason);
        LogEntry {
            logged_at: now(),
            source: source.to_owned(),
            outcome: "failed".into(),
            reason_kind: kind.to_owned(),
            reason: reason.into_owned(),
            org_name: String::new(),
            report_id: String::new(),
            policy_domain: String::new(),
            date_begin: 0,
            record_count: 0,
            message_count: 0,
            ingest_id: Uuid::nil(),
            parser_version: PARSER_VERSION.into(),
            host: host_name(),
        }
    }
}

/// Seconds since 1970, as ClickHouse `DateTime`.
pub fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}
