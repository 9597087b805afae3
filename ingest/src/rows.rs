//! Rows: a report's header and its records -> one owned, flat, typed [`RecordRow`] per
//! record ([`RecordRows::row`]), and the report's row ([`staged_report`]). Pure. Every
//! output is an encoding of these rows:
//! - `parse` JSON lines and CSV ([`RowWriter`]): column names, order and values come from
//!   one list, `for_each_column`, so the two formats and the CSV header cannot drift;
//! - ClickHouse: the serde form of a [`RecordRow`] is its `records` row (fields in the
//!   table's column order; [`ReportDetails`], the report's values `records` does not
//!   repeat, is skipped), and a [`StagedReport`] is a `reports_staging` row.
//!
//! A new column: its field in [`RecordRow`] (or [`ReportDetails`]), its value where the
//! row is made, its line in `for_each_column`; then a migration and the docs.
//!
//! The `parse` columns are the fixed interface of DESIGN.md (`org_name`, `report_id`,
//! `policy_domain`, `date_begin`, ..., `override_reasons`) plus everything else the
//! model holds. Per-signature values are parallel arrays: `dkim_domains[i]`,
//! `dkim_selectors[i]`, `dkim_results[i]` and `dkim_human_results[i]` describe the same
//! signature (an absent selector is `""`); the same holds for `spf_*` and for
//! `override_reasons[i]` / `override_comments[i]`. Dates are UTC, ISO 8601 (`...Z`) in
//! `parse`, Unix seconds in ClickHouse.
//!
//! Fails only on a report date outside 1970-2106, which ClickHouse `DateTime` cannot hold
//! ([`ReportError::BadMetadata`]; the reader refuses such dates up to the first record,
//! this catches a `<date_range>` repeated after it).

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::domains;
use crate::report::{Keyword, Record, ReportError, ReportHeader};

/// This parser's version, written with every row of `reports` and `ingest_log`.
pub const PARSER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One record's row: its values and its report's (shared by the report's rows). The
/// serde form is the row of ClickHouse `records`, field for column, in the table's order.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize)]
pub struct RecordRow {
    pub policy_domain: Arc<str>,
    /// Unix seconds.
    pub date_begin: u32,
    pub date_end: u32,
    pub org_name: Arc<str>,
    pub report_id: Arc<str>,
    /// Position of the record in its report, from 0.
    pub record_index: u32,
    pub source_ip: String,
    /// The source as 16 bytes (IPv4 mapped into IPv6), for sorting and CIDR matching;
    /// zeros when `source_ip` is no address.
    pub source_ip_v6: [u8; 16],
    /// `<count>`: messages from this source.
    pub message_count: u64,
    #[serde(serialize_with = "absent_as_empty")]
    pub disposition: Option<Keyword>,
    /// DMARC's (aligned) DKIM verdict for these messages.
    #[serde(serialize_with = "absent_as_empty")]
    pub policy_dkim: Option<Keyword>,
    /// DMARC's (aligned) SPF verdict for these messages.
    #[serde(serialize_with = "absent_as_empty")]
    pub policy_spf: Option<Keyword>,
    pub override_reasons: Vec<Keyword>,
    /// `""` for a reason without a comment.
    pub override_comments: Vec<String>,
    pub header_from: String,
    #[serde(serialize_with = "absent_as_empty")]
    pub envelope_from: Option<String>,
    #[serde(serialize_with = "absent_as_empty")]
    pub envelope_to: Option<String>,
    pub dkim_domains: Vec<String>,
    pub dkim_selectors: Vec<String>,
    pub dkim_results: Vec<Keyword>,
    pub dkim_human_results: Vec<String>,
    pub spf_domains: Vec<String>,
    pub spf_scopes: Vec<Keyword>,
    pub spf_results: Vec<Keyword>,
    pub spf_human_results: Vec<String>,
    /// Record-level `<extension>` elements, raw XML.
    pub extensions: Vec<String>,
    #[serde(serialize_with = "absent_as_empty")]
    pub published_p: Option<Keyword>,
    #[serde(serialize_with = "absent_as_empty")]
    pub published_sp: Option<Keyword>,
    #[serde(serialize_with = "absent_as_empty")]
    pub published_adkim: Option<Keyword>,
    #[serde(serialize_with = "absent_as_empty")]
    pub published_aspf: Option<Keyword>,
    /// The import attempt that stored the row (nil in `parse`).
    #[serde(with = "clickhouse::serde::uuid")]
    pub ingest_id: Uuid,
    /// Unix seconds (0 in `parse`).
    pub ingested_at: u32,
    /// Organisational domains (Public Suffix List) of the identifiers above; `""` for an
    /// absent one.
    pub header_from_org: String,
    pub envelope_from_org: String,
    pub dkim_domains_org: Vec<String>,
    pub spf_domains_org: Vec<String>,
    /// The sending organisation: org domain of the passing DKIM signer, else of the SPF
    /// domain, else of envelope_from (groups `mcsv.net` senders as one provider).
    pub sender_org: String,
    /// Alignment recomputed from auth_results and adkim/aspf (RFC 7489 3.1), beside the
    /// reporter's `policy_dkim` / `policy_spf`; 1 in ClickHouse when aligned and passing.
    #[serde(serialize_with = "as_u8")]
    pub dkim_aligned: bool,
    #[serde(serialize_with = "as_u8")]
    pub spf_aligned: bool,
    /// The report's values that `records` does not repeat.
    #[serde(skip)]
    pub report: Arc<ReportDetails>,
}

/// A report's values that `parse` prints on each of its rows and `records` does not hold
/// (`reports` holds them, once per report).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportDetails {
    /// Where the report came from (file, message, attachment, zip entry).
    pub source: String,
    pub email: String,
    pub version: Option<String>,
    pub generator: Option<String>,
    pub extra_contact_info: Option<String>,
    /// The report's own `<error>` lines.
    pub report_errors: Vec<String>,
    pub published_np: Option<Keyword>,
    pub published_pct: Option<u8>,
    pub published_fo: Option<String>,
    pub published_testing: Option<Keyword>,
    pub published_discovery_method: Option<Keyword>,
    /// Report-level `<extension>` elements read so far, raw XML.
    pub report_extensions: Vec<String>,
    /// What the parser recovered from in this report (so far).
    pub problems: Vec<String>,
}

/// Makes the rows of one report's records, in order.
pub struct RecordRows {
    source: String,
    ingest_id: Uuid,
    ingested_at: u32,
    next_index: u32,
    /// The report's values, and the header they were taken from when they follow it.
    report: Option<(Option<ReportHeader>, ReportValues)>,
    /// `parse`: the values are taken again whenever the header changes (its problems grow
    /// as records are read), which costs a comparison of the whole header per row, as
    /// printing the row costs. Import: taken once, at the first record: what a stored
    /// row holds cannot change after it (the reader refuses metadata and policy after a
    /// record), and comparing a header of up to `max_record_bytes` of `<error>` lines
    /// on each of millions of rows let one small hostile mail stall an import.
    follows_header: bool,
}

/// A report's values as each of its rows repeats them.
struct ReportValues {
    policy_domain: Arc<str>,
    date_begin: u32,
    date_end: u32,
    org_name: Arc<str>,
    report_id: Arc<str>,
    published_p: Option<Keyword>,
    published_sp: Option<Keyword>,
    published_adkim: Option<Keyword>,
    published_aspf: Option<Keyword>,
    details: Arc<ReportDetails>,
}

impl RecordRows {
    /// For the report read from `source`, not imported (`parse`).
    pub fn new(source: &str) -> Self {
        RecordRows {
            source: source.to_owned(),
            ingest_id: Uuid::nil(),
            ingested_at: 0,
            next_index: 0,
            report: None,
            follows_header: true,
        }
    }

    /// Rows tagged with the import attempt `ingest_id`, made at `ingested_at` (Unix
    /// seconds), the report's values taken once (see `follows_header`).
    pub fn ingest(self, ingest_id: Uuid, ingested_at: u32) -> Self {
        RecordRows {
            ingest_id,
            ingested_at,
            follows_header: false,
            ..self
        }
    }

    /// The row of `record`, the next one of the report whose header (as read so far) is
    /// `header`.
    pub fn row(&mut self, header: &ReportHeader, record: Record) -> Result<RecordRow, ReportError> {
        let record_index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        let report = match &mut self.report {
            Some((None, values)) => values,
            Some((Some(made_from), values)) if made_from == header => values,
            slot => {
                let made_from = self.follows_header.then(|| header.clone());
                &slot
                    .insert((made_from, ReportValues::new(&self.source, header)?))
                    .1
            }
        };
        let (alignment, orgs) = domains::analyse(&record, &header.policy);
        let source_ip_v6 = match record.source_addr {
            Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
            Some(IpAddr::V6(v6)) => v6.octets(),
            None => [0; 16],
        };
        let (override_reasons, override_comments) = record
            .reasons
            .into_iter()
            .map(|r| (r.kind, r.comment.unwrap_or_default()))
            .unzip();
        let signatures = record.dkim.len();
        let mut dkim_domains = Vec::with_capacity(signatures);
        let mut dkim_selectors = Vec::with_capacity(signatures);
        let mut dkim_results = Vec::with_capacity(signatures);
        let mut dkim_human_results = Vec::with_capacity(signatures);
        for d in record.dkim {
            dkim_domains.push(d.domain);
            dkim_selectors.push(d.selector.unwrap_or_default());
            dkim_results.push(d.result);
            dkim_human_results.push(d.human_result.unwrap_or_default());
        }
        let checks = record.spf.len();
        let mut spf_domains = Vec::with_capacity(checks);
        let mut spf_scopes = Vec::with_capacity(checks);
        let mut spf_results = Vec::with_capacity(checks);
        let mut spf_human_results = Vec::with_capacity(checks);
        for s in record.spf {
            spf_domains.push(s.domain);
            spf_scopes.push(s.scope.unwrap_or_default());
            spf_results.push(s.result);
            spf_human_results.push(s.human_result.unwrap_or_default());
        }
        Ok(RecordRow {
            policy_domain: report.policy_domain.clone(),
            date_begin: report.date_begin,
            date_end: report.date_end,
            org_name: report.org_name.clone(),
            report_id: report.report_id.clone(),
            record_index,
            source_ip: record.source_ip,
            source_ip_v6,
            message_count: record.count,
            disposition: record.disposition,
            policy_dkim: record.policy_dkim,
            policy_spf: record.policy_spf,
            override_reasons,
            override_comments,
            header_from: record.header_from,
            envelope_from: record.envelope_from,
            envelope_to: record.envelope_to,
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
            ingest_id: self.ingest_id,
            ingested_at: self.ingested_at,
            header_from_org: orgs.header_from,
            envelope_from_org: orgs.envelope_from,
            dkim_domains_org: orgs.dkim,
            spf_domains_org: orgs.spf,
            sender_org: orgs.sender,
            dkim_aligned: alignment.dkim,
            spf_aligned: alignment.spf,
            report: report.details.clone(),
        })
    }
}

impl ReportValues {
    fn new(source: &str, header: &ReportHeader) -> Result<Self, ReportError> {
        let p = &header.policy;
        Ok(ReportValues {
            policy_domain: p.domain.as_str().into(),
            date_begin: datetime(header.date_begin, "date_begin")?,
            date_end: datetime(header.date_end, "date_end")?,
            org_name: header.org_name.as_str().into(),
            report_id: header.report_id.as_str().into(),
            published_p: p.p.clone(),
            published_sp: p.sp.clone(),
            published_adkim: p.adkim.clone(),
            published_aspf: p.aspf.clone(),
            details: Arc::new(ReportDetails {
                source: source.to_owned(),
                email: header.email.clone(),
                version: header.version.clone(),
                generator: header.generator.clone(),
                extra_contact_info: header.extra_contact_info.clone(),
                report_errors: header.errors.clone(),
                published_np: p.np.clone(),
                published_pct: p.pct,
                published_fo: p.fo.clone(),
                published_testing: p.testing.clone(),
                published_discovery_method: p.discovery_method.clone(),
                report_extensions: header.extensions.clone(),
                problems: header.problems.clone(),
            }),
        })
    }
}

impl RecordRow {
    /// The row as `parse` writes it in JSON.
    pub fn json(&self) -> JsonRow<'_> {
        JsonRow(self)
    }

    /// About what the row holds in memory, in bytes (to bound row buffers by bytes); the
    /// report's shared values are not counted.
    pub fn estimated_bytes(&self) -> usize {
        fn strings<S: AsRef<str>>(v: &[S]) -> usize {
            v.iter().map(|s| s.as_ref().len() + 24).sum::<usize>()
        }
        fn text<S: AsRef<str>>(v: &Option<S>) -> usize {
            v.as_ref().map_or(0, |s| s.as_ref().len())
        }
        // The struct itself, with its fixed fields and shared report fields.
        512 + self.source_ip.len()
            + text(&self.disposition)
            + text(&self.policy_dkim)
            + text(&self.policy_spf)
            + self.header_from.len()
            + text(&self.envelope_from)
            + text(&self.envelope_to)
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

/// A value of a `parse` column, as JSON and CSV write it.
#[derive(Debug, Clone, Copy)]
enum Value<'r> {
    Text(&'r str),
    /// JSON null when absent, CSV empty.
    Optional(Option<&'r str>),
    /// CSV: joined with `;`.
    Texts(&'r [String]),
    Keywords(&'r [Keyword]),
    /// Unix seconds, written as ISO 8601 UTC.
    Time(u32),
    /// JSON null when absent, CSV empty.
    Number(Option<u64>),
    /// JSON `true`/`false`, CSV `1`/`0`.
    Flag(bool),
}

/// The columns of `parse`, in order: each name with its value in `row`. The JSON keys, the
/// CSV header and the CSV fields all come from here.
fn for_each_column<'r, E>(
    row: &'r RecordRow,
    mut column: impl FnMut(&'static str, Value<'r>) -> Result<(), E>,
) -> Result<(), E> {
    use Value::*;
    let report = &*row.report;
    column("source", Text(&report.source))?;
    column("org_name", Text(&row.org_name))?;
    column("email", Text(&report.email))?;
    column("report_id", Text(&row.report_id))?;
    column("policy_domain", Text(&row.policy_domain))?;
    column("date_begin", Time(row.date_begin))?;
    column("date_end", Time(row.date_end))?;
    column("version", Optional(report.version.as_deref()))?;
    column("generator", Optional(report.generator.as_deref()))?;
    column(
        "extra_contact_info",
        Optional(report.extra_contact_info.as_deref()),
    )?;
    column("report_errors", Texts(&report.report_errors))?;
    column("published_adkim", Optional(row.published_adkim.as_deref()))?;
    column("published_aspf", Optional(row.published_aspf.as_deref()))?;
    column("published_p", Optional(row.published_p.as_deref()))?;
    column("published_sp", Optional(row.published_sp.as_deref()))?;
    column("published_np", Optional(report.published_np.as_deref()))?;
    column("published_pct", Number(report.published_pct.map(u64::from)))?;
    column("published_fo", Optional(report.published_fo.as_deref()))?;
    column(
        "published_testing",
        Optional(report.published_testing.as_deref()),
    )?;
    column(
        "published_discovery_method",
        Optional(report.published_discovery_method.as_deref()),
    )?;
    column("source_ip", Text(&row.source_ip))?;
    column("message_count", Number(Some(row.message_count)))?;
    column("disposition", Optional(row.disposition.as_deref()))?;
    column("policy_dkim", Optional(row.policy_dkim.as_deref()))?;
    column("policy_spf", Optional(row.policy_spf.as_deref()))?;
    column("override_reasons", Keywords(&row.override_reasons))?;
    column("override_comments", Texts(&row.override_comments))?;
    column("header_from", Text(&row.header_from))?;
    column("envelope_from", Optional(row.envelope_from.as_deref()))?;
    column("envelope_to", Optional(row.envelope_to.as_deref()))?;
    column("dkim_domains", Texts(&row.dkim_domains))?;
    column("dkim_selectors", Texts(&row.dkim_selectors))?;
    column("dkim_results", Keywords(&row.dkim_results))?;
    column("dkim_human_results", Texts(&row.dkim_human_results))?;
    column("spf_domains", Texts(&row.spf_domains))?;
    column("spf_scopes", Keywords(&row.spf_scopes))?;
    column("spf_results", Keywords(&row.spf_results))?;
    column("spf_human_results", Texts(&row.spf_human_results))?;
    column("header_from_org", Optional(non_empty(&row.header_from_org)))?;
    column(
        "envelope_from_org",
        Optional(non_empty(&row.envelope_from_org)),
    )?;
    column("dkim_domains_org", Texts(&row.dkim_domains_org))?;
    column("spf_domains_org", Texts(&row.spf_domains_org))?;
    column("sender_org", Optional(non_empty(&row.sender_org)))?;
    column("dkim_aligned", Flag(row.dkim_aligned))?;
    column("spf_aligned", Flag(row.spf_aligned))?;
    column("extensions", Texts(&row.extensions))?;
    column("report_extensions", Texts(&report.report_extensions))?;
    column("problems", Texts(&report.problems))
}

/// An empty organisational domain is an absent one (null in JSON, as its identifier).
fn non_empty(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.is_empty())
}

/// A row as `parse` writes it in JSON: one object, keys in `for_each_column` order.
pub struct JsonRow<'r>(&'r RecordRow);

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut object = s.serialize_map(None)?;
        for_each_column(self.0, |name, value| object.serialize_entry(name, &value))?;
        object.end()
    }
}

impl Serialize for Value<'_> {
    #[inline]
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Value::Text(text) | Value::Optional(Some(text)) => s.serialize_str(text),
            Value::Optional(None) | Value::Number(None) => s.serialize_none(),
            Value::Texts(items) => s.collect_seq(items),
            Value::Keywords(items) => s.collect_seq(items),
            Value::Time(t) => s.collect_str(&UtcTime(i64::from(t))),
            Value::Number(Some(n)) => s.serialize_u64(n),
            Value::Flag(flag) => s.serialize_bool(flag),
        }
    }
}

/// ClickHouse: an absent value is `""`.
fn absent_as_empty<S: Serializer, T: AsRef<str>>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_ref().map_or("", AsRef::as_ref))
}

/// ClickHouse: a flag is a `UInt8`.
fn as_u8<S: Serializer>(flag: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*flag))
}

fn datetime(value: i64, what: &str) -> Result<u32, ReportError> {
    u32::try_from(value).map_err(|_| {
        ReportError::BadMetadata(format!(
            "{what} {value} is outside what ClickHouse DateTime holds (1970-2106)"
        ))
    })
}

/// A report's identity after normalisation: the same report delivered twice (or from two
/// mailboxes) has the same identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportIdentity {
    pub org_name: String,
    pub report_id: String,
    pub policy_domain: String,
    pub date_begin: u32,
}

/// The identity of a report header (its fields are normalised by the parser).
pub fn identity(header: &ReportHeader) -> Result<ReportIdentity, ReportError> {
    Ok(ReportIdentity {
        org_name: header.org_name.clone(),
        report_id: header.report_id.clone(),
        policy_domain: header.policy.domain.clone(),
        date_begin: datetime(header.date_begin, "date_begin")?,
    })
}

/// One row of `reports_staging`: the `reports` columns, then `batch_id`.
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, Serialize, Deserialize)]
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
    /// The publish batch; set by the store when it publishes.
    #[serde(with = "clickhouse::serde::uuid")]
    pub batch_id: Uuid,
}

/// The staged `reports` row of a finished report: its `header`, its (records, messages)
/// `counts`, read from `source` by the import attempt `ingest_id` at `ingested_at`.
pub fn staged_report(
    header: &ReportHeader,
    counts: (u64, u64),
    source: &str,
    ingest_id: Uuid,
    ingested_at: u32,
) -> Result<StagedReport, ReportError> {
    fn text(k: &Option<Keyword>) -> String {
        k.as_deref().unwrap_or("").to_owned()
    }
    let p = &header.policy;
    Ok(StagedReport {
        policy_domain: p.domain.clone(),
        date_begin: datetime(header.date_begin, "date_begin")?,
        date_end: datetime(header.date_end, "date_end")?,
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
        ingested_at,
        parser_version: PARSER_VERSION.into(),
        batch_id: Uuid::nil(),
    })
}

/// Unix seconds, written as ISO 8601 UTC (`2024-03-31T00:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime(pub i64);

impl std::fmt::Display for UtcTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Output encodings of `parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header line; arrays joined with `;`.
    Csv,
}

/// Writes rows in one [`Format`].
pub struct RowWriter<W: Write> {
    format: Format,
    out: W,
    wrote_header: bool,
}

impl<W: Write> RowWriter<W> {
    pub fn new(format: Format, out: W) -> Self {
        RowWriter {
            format,
            out,
            wrote_header: false,
        }
    }

    /// Writes one row (and the CSV header line before the first).
    pub fn write(&mut self, row: &RecordRow) -> std::io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, &row.json())?;
                self.out.write_all(b"\n")
            }
            Format::Csv => {
                if !self.wrote_header {
                    self.wrote_header = true;
                    let mut header = CsvLine::new(&mut self.out);
                    for_each_column(row, |name, _| header.text(name))?;
                    header.end()?;
                }
                let mut line = CsvLine::new(&mut self.out);
                for_each_column(row, |_, value| line.value(value))?;
                line.end()
            }
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer (to drain a buffer between reports).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// One RFC 4180 line being written, field by field into `out` (no per-row buffers):
/// fields separated by `,`, a field quoted (with `"` doubled) when it holds `,`, `"`, CR
/// or LF.
struct CsvLine<'w, W: Write> {
    out: &'w mut W,
    fields: usize,
}

impl<'w, W: Write> CsvLine<'w, W> {
    fn new(out: &'w mut W) -> Self {
        CsvLine { out, fields: 0 }
    }

    fn separate(&mut self) -> std::io::Result<()> {
        self.fields += 1;
        if self.fields > 1 {
            self.out.write_all(b",")?;
        }
        Ok(())
    }

    #[inline]
    fn value(&mut self, value: Value<'_>) -> std::io::Result<()> {
        match value {
            Value::Text(text) => self.text(text),
            Value::Optional(text) => self.text(text.unwrap_or("")),
            Value::Texts(items) => self.list(items),
            Value::Keywords(items) => self.list(items),
            Value::Time(t) => self.display(&UtcTime(i64::from(t))),
            Value::Number(Some(n)) => self.display(&n),
            Value::Number(None) => self.text(""),
            Value::Flag(flag) => self.display(&u8::from(flag)),
        }
    }

    fn text(&mut self, field: &str) -> std::io::Result<()> {
        self.list(&[field])
    }

    /// A number or date (never needs quotes).
    fn display(&mut self, field: &dyn std::fmt::Display) -> std::io::Result<()> {
        self.separate()?;
        write!(self.out, "{field}")
    }

    /// The items joined with `;`, as one field.
    fn list<S: AsRef<str>>(&mut self, items: &[S]) -> std::io::Result<()> {
        self.separate()?;
        let quoted = items
            .iter()
            .any(|i| i.as_ref().contains([',', '"', '\r', '\n']));
        if quoted {
            self.out.write_all(b"\"")?;
        }
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.out.write_all(b";")?;
            }
            let mut pieces = item.as_ref().split('"');
            if let Some(first) = pieces.next() {
                self.out.write_all(first.as_bytes())?;
            }
            for piece in pieces {
                self.out.write_all(b"\"\"")?;
                self.out.write_all(piece.as_bytes())?;
            }
        }
        if quoted {
            self.out.write_all(b"\"")?;
        }
        Ok(())
    }

    fn end(self) -> std::io::Result<()> {
        self.out.write_all(b"\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{DkimResult, OverrideReason, SpfResult};
    use std::borrow::Cow;

    #[test]
    fn utc_time_formats() {
        assert_eq!(UtcTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(UtcTime(1_711_897_200).to_string(), "2024-03-31T15:00:00Z");
        assert_eq!(UtcTime(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(UtcTime(-1).to_string(), "1969-12-31T23:59:59Z");
    }

    fn sample() -> (ReportHeader, Record) {
        let mut h = ReportHeader {
            org_name: "google.com".into(),
            report_id: "r1".into(),
            date_begin: 1_700_000_000,
            date_end: 1_700_086_399,
            ..Default::default()
        };
        h.policy.domain = "example.com".into();
        let r = Record {
            source_ip: "192.0.2.1".into(),
            source_addr: Some(IpAddr::from([192, 0, 2, 1])),
            count: 3,
            header_from: "example.com".into(),
            dkim: vec![
                DkimResult {
                    domain: "example.com".into(),
                    selector: Some("s1".into()),
                    result: Cow::Borrowed("pass"),
                    human_result: None,
                },
                DkimResult {
                    domain: "esp.example".into(),
                    selector: None,
                    result: Cow::Borrowed("fail"),
                    human_result: Some("bad, sig".into()),
                },
            ],
            spf: vec![SpfResult {
                domain: "example.com".into(),
                scope: None,
                result: Cow::Borrowed("pass"),
                human_result: None,
            }],
            ..Default::default()
        };
        (h, r)
    }

    /// A header and a record with every value set, lists of two.
    fn full_sample() -> (ReportHeader, Record) {
        let (mut h, mut r) = sample();
        h.email = "noreply-dmarc-support@google.com".into();
        h.version = Some("1.0".into());
        h.generator = Some("gen \"x\"".into());
        h.extra_contact_info = Some("https://support.google.com/a/answer/2466580".into());
        h.errors = vec!["e1".into(), "e2, again".into()];
        let p = &mut h.policy;
        p.adkim = Some(Cow::Borrowed("r"));
        p.aspf = Some(Cow::Borrowed("s"));
        p.p = Some(Cow::Borrowed("reject"));
        p.sp = Some(Cow::Borrowed("none"));
        p.np = Some(Cow::Borrowed("quarantine"));
        p.pct = Some(100);
        p.fo = Some("1:d".into());
        p.testing = Some(Cow::Borrowed("n"));
        p.discovery_method = Some(Cow::Borrowed("treewalk"));
        h.extensions = vec!["<ext a=\"1\"/>".into()];
        h.problems = vec!["p1".into(), "p2".into()];
        r.disposition = Some(Cow::Borrowed("none"));
        r.policy_dkim = Some(Cow::Borrowed("pass"));
        r.policy_spf = Some(Cow::Borrowed("fail"));
        r.reasons = vec![
            OverrideReason {
                kind: Cow::Borrowed("forwarded"),
                comment: Some("list".into()),
            },
            OverrideReason {
                kind: Cow::Borrowed("local_policy"),
                comment: None,
            },
        ];
        r.envelope_from = Some("bounce@mail.example.com".into());
        r.envelope_to = Some("example.org".into());
        r.spf.push(SpfResult {
            domain: "helo.example.net".into(),
            scope: Some(Cow::Borrowed("helo")),
            result: Cow::Borrowed("softfail"),
            human_result: Some("h".into()),
        });
        r.extensions = vec!["<e>1</e>".into(), "<e>2</e>".into()];
        (h, r)
    }

    fn row_of(source: &str, h: &ReportHeader, r: &Record) -> RecordRow {
        RecordRows::new(source).row(h, r.clone()).unwrap()
    }

    #[test]
    fn row_arrays_stay_parallel() {
        let (h, r) = sample();
        let row = row_of("f.xml", &h, &r);
        assert_eq!(row.dkim_domains, ["example.com", "esp.example"]);
        assert_eq!(row.dkim_selectors, ["s1", ""]);
        assert_eq!(row.dkim_human_results, ["", "bad, sig"]);
        assert_eq!(row.spf_scopes, [""]);
        let json = serde_json::to_value(row.json()).unwrap();
        assert_eq!(json["date_begin"], "2023-11-14T22:13:20Z");
        assert_eq!(json["message_count"], 3);
        assert_eq!(json["policy_domain"], "example.com");
        assert_eq!(json["version"], serde_json::Value::Null);
    }

    #[test]
    fn stored_rows_map_ipv4_into_ipv6_and_carry_the_import_attempt() {
        let (h, r) = sample();
        let id = Uuid::from_u128(7);
        let mut rows = RecordRows::new("f.xml").ingest(id, 1_700_100_000);
        let first = rows.row(&h, r.clone()).unwrap();
        let second = rows.row(&h, r).unwrap();
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(first.source_ip_v6, mapped);
        assert_eq!((first.record_index, second.record_index), (0, 1));
        assert_eq!((second.ingest_id, second.ingested_at), (id, 1_700_100_000));
        assert_eq!(first.date_end, 1_700_086_399);
        // The report's values are made once and shared by its rows.
        assert!(Arc::ptr_eq(&first.report, &second.report));
        assert!(Arc::ptr_eq(&first.org_name, &second.org_name));
    }

    /// Import takes the report's values once: a header that grows (problems, a trailing
    /// `<extension>`) is not compared on every row, which let a small hostile mail with
    /// 60,000 `<error>` lines cost O(header) per record.
    #[test]
    fn imported_rows_take_the_report_values_once() {
        let (mut h, r) = sample();
        h.errors = vec!["e".to_owned(); 60_000];
        let mut rows = RecordRows::new("f.xml").ingest(Uuid::from_u128(1), 1_700_100_000);
        let first = rows.row(&h, r.clone()).unwrap();
        h.problems.push("record 2 has no <source_ip>".into());
        h.extensions.push("<extension/>".into());
        let second = rows.row(&h, r).unwrap();
        assert!(Arc::ptr_eq(&first.report, &second.report));
        assert_eq!(second.report.report_errors.len(), 60_000);
        assert!(second.report.problems.is_empty());
        assert_eq!((first.record_index, second.record_index), (0, 1));
        assert_eq!(*second.policy_domain, *first.policy_domain);
    }

    #[test]
    fn rows_follow_the_header_as_read_so_far() {
        let (mut h, r) = sample();
        let mut rows = RecordRows::new("f.xml");
        let first = rows.row(&h, r.clone()).unwrap();
        h.problems.push("record 2 has no <source_ip>".into());
        let second = rows.row(&h, r.clone()).unwrap();
        assert!(first.report.problems.is_empty());
        assert_eq!(second.report.problems, h.problems);
        // A date ClickHouse cannot hold, even one repeated after the first record.
        h.date_end = i64::from(u32::MAX) + 1;
        assert!(matches!(rows.row(&h, r), Err(ReportError::BadMetadata(_))));
        h.date_end = 0;
        h.date_begin = -5;
        assert!(matches!(identity(&h), Err(ReportError::BadMetadata(_))));
    }

    /// The fields of one RFC 4180 line (no CR or LF inside fields).
    fn csv_fields(line: &str) -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    chars.next();
                    fields.last_mut().unwrap().push('"');
                }
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(String::new()),
                c => fields.last_mut().unwrap().push(c),
            }
        }
        fields
    }

    /// A JSON value as the CSV field of the same column holds it.
    fn as_csv(value: &serde_json::Value) -> String {
        use serde_json::Value as Json;
        match value {
            Json::Null => String::new(),
            Json::Bool(flag) => u8::from(*flag).to_string(),
            Json::Number(n) => n.to_string(),
            Json::String(text) => text.clone(),
            Json::Array(items) => items.iter().map(as_csv).collect::<Vec<_>>().join(";"),
            Json::Object(_) => panic!("no column holds an object"),
        }
    }

    #[test]
    fn csv_header_and_fields_stay_in_step_with_json() {
        let (h, r) = full_sample();
        let (mut sparse_h, mut sparse) = sample();
        sparse.dkim.clear();
        sparse.spf.clear();
        sparse_h.policy.pct = None;
        let rows = [
            row_of("a,b.xml", &h, &r),
            row_of("s.xml", &sparse_h, &sparse),
        ];
        let mut csv = RowWriter::new(Format::Csv, Vec::new());
        let mut json = RowWriter::new(Format::Jsonl, Vec::new());
        for row in &rows {
            csv.write(row).unwrap();
            json.write(row).unwrap();
        }
        let csv = String::from_utf8(csv.out).unwrap();
        let json = String::from_utf8(json.out).unwrap();
        let mut lines = csv.split_terminator("\r\n");
        let header = csv_fields(lines.next().unwrap());
        for (line, json_line) in lines.zip(json.lines()) {
            let fields = csv_fields(line);
            assert_eq!(fields.len(), header.len(), "{line}");
            let object: serde_json::Map<_, _> = serde_json::from_str(json_line).unwrap();
            assert_eq!(object.len(), header.len());
            let mut at = 0;
            for (name, field) in header.iter().zip(&fields) {
                // JSON keys in the header's order, each value the CSV field's.
                let key = format!("\"{name}\":");
                at += json_line[at..]
                    .find(&key)
                    .unwrap_or_else(|| panic!("{name}"));
                assert_eq!(&as_csv(&object[name.as_str()]), field, "{name}");
            }
        }
        // Every value of the full row is set: no field is empty.
        let full = csv_fields(csv.split("\r\n").nth(1).unwrap());
        for (name, field) in header.iter().zip(&full) {
            assert!(!field.is_empty(), "{name}");
        }
    }

    #[test]
    fn csv_quotes_and_has_every_column() {
        let (h, r) = sample();
        let mut w = RowWriter::new(Format::Csv, Vec::new());
        w.write(&row_of("f.xml", &h, &r)).unwrap();
        let text = String::from_utf8(w.out).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(header.starts_with("source,org_name,email,report_id,policy_domain,"));
        let line = lines.next().unwrap();
        assert!(line.contains(",\";bad, sig\","), "{line}");
        assert!(line.contains("example.com;esp.example"), "{line}");
    }

    #[test]
    fn csv_fields_are_quoted_and_counted_like_rfc_4180() {
        let (h, mut r) = sample();
        r.dkim = Vec::new();
        let mut w = RowWriter::new(Format::Csv, Vec::new());
        let mut row = row_of("dir/a \"b\".xml", &h, &r);
        row.envelope_to = Some("x\r\ny".into());
        w.write(&row).unwrap();
        let text = String::from_utf8(w.out).unwrap();
        let (header, line) = text.split_once("\r\n").unwrap();
        assert!(line.starts_with("\"dir/a \"\"b\"\".xml\","), "{line}");
        assert!(line.contains(",\"x\r\ny\","), "{line}");
        // Every field of the row, once: the quoted ones hold no separator outside quotes.
        let mut fields = 1;
        let mut inside = false;
        for c in line.trim_end_matches("\r\n").chars() {
            match c {
                '"' => inside = !inside,
                ',' if !inside => fields += 1,
                _ => {}
            }
        }
        assert_eq!(fields, header.split(',').count(), "{line}");
    }
}
