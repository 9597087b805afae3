//! DNS checks and statuses in ClickHouse: which domains to check
//! (`queries/dns_check_targets.sql`), the snapshots (`dns_checks`), what the status rules
//! judge (`queries/status_inputs.sql`) and their verdicts (`domain_status_history`).

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::status::StatusInputs;

/// A domain to check, as `dns_check_targets.sql` gives it.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct CheckTarget {
    pub domain: String,
    pub in_inventory: u8,
    pub selectors: Vec<String>,
}

/// One row of `dns_checks` (see schema/010_dns_checks_and_status.sql).
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DnsCheckRow {
    pub checked_at: u32,
    pub domain: String,
    pub in_inventory: u8,
    pub failed_lookups: u16,
    pub dmarc_name: String,
    pub dmarc_inherited: u8,
    pub dmarc_records: Vec<String>,
    pub dmarc_p: String,
    pub dmarc_sp: String,
    pub dmarc_np: String,
    pub dmarc_pct: u8,
    pub dmarc_adkim: String,
    pub dmarc_aspf: String,
    pub dmarc_fo: String,
    pub dmarc_rua: Vec<String>,
    pub dmarc_ruf: Vec<String>,
    pub dmarc_rua_reaches_team: u8,
    pub spf_records: Vec<String>,
    pub spf_lookups: u16,
    pub spf_void_lookups: u16,
    pub spf_all: String,
    pub mx_hosts: Vec<String>,
    pub null_mx: u8,
    pub dkim_selectors: Vec<String>,
    pub dkim_records: Vec<String>,
    pub dkim_key_types: Vec<String>,
    pub dkim_key_bits: Vec<u16>,
    pub mta_sts_record: String,
    pub tls_rpt_record: String,
    #[serde(rename = "findings.area")]
    pub finding_areas: Vec<String>,
    #[serde(rename = "findings.severity")]
    pub finding_severities: Vec<String>,
    #[serde(rename = "findings.code")]
    pub finding_codes: Vec<String>,
    #[serde(rename = "findings.text")]
    pub finding_texts: Vec<String>,
    pub dmarc_status: String,
    pub spf_status: String,
    pub dkim_status: String,
    pub mx_status: String,
}

/// One row of `domain_status_history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct StatusRow {
    pub computed_at: u32,
    pub domain: String,
    pub owner: String,
    pub group_name: String,
    pub status: String,
    pub reasons: Vec<String>,
    pub dmarc_status: String,
    pub spf_status: String,
    pub dkim_status: String,
    pub mx_status: String,
    pub policy: String,
    pub parked: u8,
    pub parked_like: u8,
    pub messages: u64,
    pub dmarc_pass: u64,
    pub checked_at: u32,
}

impl Store {
    /// The domains to check: the inventory's and the `max_seen` busiest policy domains
    /// of the last 30 days, with their recent DKIM selectors.
    pub async fn dns_check_targets(&self, max_seen: usize) -> Result<Vec<CheckTarget>, StoreError> {
        let sql = self
            .render(self.queries().dns_check_targets, uuid::Uuid::nil())
            .replace("{max_seen}", &max_seen.to_string());
        self.retry("list the domains to check", || {
            self.client.query(&sql).fetch_all::<CheckTarget>()
        })
        .await
    }

    /// What the status rules judge, one row per inventory domain.
    pub async fn status_inputs(&self) -> Result<Vec<StatusInputs>, StoreError> {
        let sql = self.render(self.queries().status_inputs, uuid::Uuid::nil());
        self.retry("read what the status rules judge", || {
            self.client.query(&sql).fetch_all::<StatusInputs>()
        })
        .await
    }
}
