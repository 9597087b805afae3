//! Store rows: a report header and its records -> the typed rows of `records`,
//! `reports_staging` and `ingest_log` (pure; nothing here talks to ClickHouse).

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use crate::domains;
use crate::report::{Record, ReportHeader};

/// This parser's version, written with every row of `reports` and `ingest_log`.
pub const PARSER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A report's identity after normalisation: the same report delivered twice (or from two
/// mailboxes) has the same identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportIdentity {
    pub org_name: String,
    pub report_id: String,
    pub policy_domain: String,
    pub date_begin: u32,
}

/// One row of `records` (and `records_staging`); field order is the table's. The
/// report's fields are shared (`Arc<str>`) by all rows of the report.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct StoredRecord {
    pub policy_domain: Arc<str>,
    pub date_begin: u32,
    pub date_end: u32,
    pub org_name: Arc<str>,
    pub report_id: Arc<str>,
    /// Position of the record in its report, from 0.
    pub record_index: u32,
    pub source_ip: String,
    /// The source as 16 bytes (IPv4 mapped into IPv6), for sorting and CIDR matching.
    pub source_ip_v6: [u8; 16],
    pub message_count: u64,
    pub disposition: String,
    pub policy_dkim: String,
    pub policy_spf: String,
    pub override_reasons: Vec<String>,
    pub override_comments: Vec<String>,
    pub header_from: String,
    pub envelope_from: String,
    pub envelope_to: String,
    pub dkim_domains: Vec<String>,
    pub dkim_selectors: Vec<String>,
    pub dkim_results: Vec<String>,
    pub dkim_human_results: Vec<String>,
    pub spf_domains: Vec<String>,
    pub spf_scopes: Vec<String>,
    pub spf_results: Vec<String>,
    pub spf_human_results: Vec<String>,
    pub extensions: Vec<String>,
    pub published_p: Arc<str>,
    pub published_sp: Arc<str>,
    pub published_adkim: Arc<str>,
    pub published_aspf: Arc<str>,
    #[serde(with = "clickhouse::serde::uuid")]
    pub ingest_id: Uuid,
    pub ingested_at: u32,
    /// Organisational domains (migration 002), see [`crate::domains`].
    pub header_from_org: String,
    pub envelope_from_org: String,
    pub dkim_domains_org: Vec<String>,
    pub spf_domains_org: Vec<String>,
    pub sender_org: String,
    /// Alignment recomputed from auth_results (1 = aligned and passing).
    pub dkim_aligned: u8,
    pub spf_aligned: u8,
}

/// One row of `reports_staging` (the `reports` columns, then `batch_id`).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct StagedReport {
    pub policy_domain: String,
    pub date_begin: u32,
    pub date_end: u32,
    pub org_name: String,
    pub report_id: String,
    pub email: String,
    pub extra_contact_info: String,
    pub version: String,
    pub generator: String,
    pub report_errors: Vec<String>,
    pub published_adkim: String,
    pub published_aspf: String,
    pub published_p: String,
    pub published_sp: String,
    pub published_np: String,
    pub published_pct: Option<u8>,
    pub published_fo: String,
    pub published_testing: String,
    pub published_discovery_method: String,
    pub report_extensions: Vec<String>,
    pub problems: Vec<String>,
    pub record_count: u64,
    pub message_count: u64,
    pub source: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub ingest_id: Uuid,
    pub ingested_at: u32,
    pub parser_version: String,
    #[serde(with = "clickhouse::serde::uuid")]
    pub batch_id: Uuid,
}

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

fn to_datetime(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| {
        StoreError::BadReport(format!(
            "{what} {value} is outside what ClickHouse DateTime holds (1970-2106)"
        ))
    })
}

/// The identity of a report header (its fields are normalised by the parser).
pub fn identity(header: &ReportHeader) -> Result<ReportIdentity, StoreError> {
    Ok(ReportIdentity {
        org_name: header.org_name.clone(),
        report_id: header.report_id.clone(),
        policy_domain: header.policy.domain.clone(),
        date_begin: to_datetime(header.date_begin, "date_begin")?,
    })
}

fn text(k: &Option<std::borrow::Cow<'static, str>>) -> String {
    k.as_deref().unwrap_or("").to_owned()
}

/// The report-level values every row of a report repeats, shared by those rows.
#[derive(Debug, Clone)]
pub struct SharedReportFields {
    policy_domain: Arc<str>,
    date_begin: u32,
    date_end: u32,
    org_name: Arc<str>,
    report_id: Arc<str>,
    published_p: Arc<str>,
    published_sp: Arc<str>,
    published_adkim: Arc<str>,
    published_aspf: Arc<str>,
    ingest_id: Uuid,
    ingested_at: u32,
}

impl SharedReportFields {
    /// Takes the fields of `header`, for rows tagged `ingest_id`.
    pub fn new(header: &ReportHeader, ingest_id: Uuid) -> Result<Self, StoreError> {
        let p = &header.policy;
        Ok(SharedReportFields {
            policy_domain: p.domain.as_str().into(),
            date_begin: to_datetime(header.date_begin, "date_begin")?,
            date_end: to_datetime(header.date_end, "date_end")?,
            org_name: header.org_name.as_str().into(),
            report_id: header.report_id.as_str().into(),
            published_p: text(&p.p).into(),
            published_sp: text(&p.sp).into(),
            published_adkim: text(&p.adkim).into(),
            published_aspf: text(&p.aspf).into(),
            ingest_id,
            ingested_at: now(),
        })
    }
}

/// Builds the stored row of `record`, the `index`th of its report, published under
/// `policy`.
pub fn stored_record(
    report: &SharedReportFields,
    policy: &crate::report::PolicyPublished,
    record: Record,
    index: u32,
) -> StoredRecord {
    let alignment = domains::alignment(&record, policy);
    let orgs = domains::organisations(&record);
    let source_ip_v6 = match record.source_addr {
        Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
        Some(IpAddr::V6(v6)) => v6.octets(),
        None => [0; 16],
    };
    let (override_reasons, override_comments) = record
        .reasons
        .into_iter()
        .map(|r| (r.kind.into_owned(), r.comment.unwrap_or_default()))
        .unzip();
    let mut dkim_domains = Vec::with_capacity(record.dkim.len());
    let mut dkim_selectors = Vec::with_capacity(record.dkim.len());
    let mut dkim_results = Vec::with_capacity(record.dkim.len());
    let mut dkim_human_results = Vec::with_capacity(record.dkim.len());
    for d in record.dkim {
        dkim_domains.push(d.domain);
        dkim_selectors.push(d.selector.unwrap_or_default());
        dkim_results.push(d.result.into_owned());
        dkim_human_results.push(d.human_result.unwrap_or_default());
    }
    let mut spf_domains = Vec::with_capacity(record.spf.len());
    let mut spf_scopes = Vec::with_capacity(record.spf.len());
    let mut spf_results = Vec::with_capacity(record.spf.len());
    let mut spf_human_results = Vec::with_capacity(record.spf.len());
    for s in record.spf {
        spf_domains.push(s.domain);
        spf_scopes.push(s.scope.map(|k| k.into_owned()).unwrap_or_default());
        spf_results.push(s.result.into_owned());
        spf_human_results.push(s.human_result.unwrap_or_default());
    }
    StoredRecord {
        policy_domain: report.policy_domain.clone(),
        date_begin: report.date_begin,
        date_end: report.date_end,
        org_name: report.org_name.clone(),
        report_id: report.report_id.clone(),
        record_index: index,
        source_ip: record.source_ip,
        source_ip_v6,
        message_count: record.count,
        disposition: text(&record.disposition),
        policy_dkim: text(&record.policy_dkim),
        policy_spf: text(&record.policy_spf),
        override_reasons,
        override_comments,
        header_from: record.header_from,
        envelope_from: record.envelope_from.unwrap_or_default(),
        envelope_to: record.envelope_to.unwrap_or_default(),
        dkim_domains,
        dkim_selectors,
        dkim_results,
        dkim_human_results,
        spf_domains,
        spf_scopes,
        spf_results,
        spf_human_results,
        extensions: record.extensions,
        published_p: report.published_p.clone(),
        published_sp: report.published_sp.clone(),
        published_adkim: report.published_adkim.clone(),
        published_aspf: report.published_aspf.clone(),
        ingest_id: report.ingest_id,
        ingested_at: report.ingested_at,
        header_from_org: orgs.header_from,
        envelope_from_org: orgs.envelope_from,
        dkim_domains_org: orgs.dkim,
        spf_domains_org: orgs.spf,
        sender_org: orgs.sender,
        dkim_aligned: u8::from(alignment.dkim),
        spf_aligned: u8::from(alignment.spf),
    }
}

/// Builds the staged `reports` row of a finished report.
pub fn staged_report(
    header: &ReportHeader,
    counts: (u64, u64),
    source: &str,
    ingest_id: Uuid,
    batch_id: Uuid,
) -> Result<StagedReport, StoreError> {
    let p = &header.policy;
    Ok(StagedReport {
        policy_domain: p.domain.clone(),
        date_begin: to_datetime(header.date_begin, "date_begin")?,
        date_end: to_datetime(header.date_end, "date_end")?,
        org_name: header.org_name.clone(),
        report_id: header.report_id.clone(),
        email: header.email.clone(),
        extra_contact_info: header.extra_contact_info.clone().unwrap_or_default(),
        version: header.version.clone().unwrap_or_default(),
        generator: header.generator.clone().unwrap_or_default(),
        report_errors: header.errors.clone(),
        published_adkim: text(&p.adkim),
        published_aspf: text(&p.aspf),
        published_p: text(&p.p),
        published_sp: text(&p.sp),
        published_np: text(&p.np),
        published_pct: p.pct,
        published_fo: p.fo.clone().unwrap_or_default(),
        published_testing: text(&p.testing),
        published_discovery_method: text(&p.discovery_method),
        report_extensions: header.extensions.clone(),
        problems: header.problems.clone(),
        record_count: counts.0,
        message_count: counts.1,
        source: source.to_owned(),
        ingest_id,
        ingested_at: now(),
        parser_version: PARSER_VERSION.into(),
        batch_id,
    })
}

impl StoredRecord {
    /// About what the row holds in memory, in bytes (to bound row buffers by bytes).
    pub fn estimated_bytes(&self) -> usize {
        fn strings(v: &[String]) -> usize {
            v.iter().map(|s| s.len() + 24).sum::<usize>()
        }
        // The struct itself, with its fixed fields and shared report fields.
        512 + self.source_ip.len()
            + self.disposition.len()
            + self.policy_dkim.len()
            + self.policy_spf.len()
            + self.header_from.len()
            + self.envelope_from.len()
            + self.envelope_to.len()
            + self.header_from_org.len()
            + self.envelope_from_org.len()
            + self.sender_org.len()
            + strings(&self.override_reasons)
            + strings(&self.override_comments)
            + strings(&self.dkim_domains)
            + strings(&self.dkim_selectors)
            + strings(&self.dkim_results)
            + strings(&self.dkim_human_results)
            + strings(&self.spf_domains)
            + strings(&self.spf_scopes)
            + strings(&self.spf_results)
            + strings(&self.spf_human_results)
            + strings(&self.extensions)
            + strings(&self.dkim_domains_org)
            + strings(&self.spf_domains_org)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_record_maps_ipv4_into_ipv6_and_keeps_arrays_parallel() {
        let mut h = ReportHeader {
            org_name: "google.com".into(),
            report_id: "1".into(),
            date_begin: 1_700_000_000,
            date_end: 1_700_086_399,
            ..Default::default()
        };
        h.policy.domain = "example.com".into();
        let xml = "<feedback><report_metadata><org_name>o</org_name><report_id>1</report_id><date_range><begin>1</begin><end>2</end></date_range></report_metadata><policy_published><domain>example.com</domain></policy_published><record><row><source_ip>192.0.2.1</source_ip><count>2</count></row><auth_results><dkim><domain>a.example</domain><result>pass</result></dkim><dkim><domain>b.example</domain><selector>s</selector><result>fail</result></dkim></auth_results></record></feedback>";
        let mut reader =
            crate::report::ReportReader::open(xml.as_bytes(), &Default::default()).unwrap();
        let record = reader.next_record().unwrap().unwrap();
        let shared = SharedReportFields::new(&h, Uuid::nil()).unwrap();
        let row = stored_record(&shared, &h.policy, record, 0);
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(row.source_ip_v6, mapped);
        assert_eq!(row.dkim_selectors, ["", "s"]);
        assert_eq!(row.dkim_results, ["pass", "fail"]);
        assert_eq!(row.message_count, 2);
        h.date_begin = -5;
        assert!(matches!(
            SharedReportFields::new(&h, Uuid::nil()),
            Err(StoreError::BadReport(_))
        ));
    }
}
