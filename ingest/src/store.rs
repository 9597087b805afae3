//! Store: report headers and records -> ClickHouse, exactly once as analysts see it.
//!
//! In: [`StoredRecord`] rows and finished reports, through a [`BatchWriter`]. Out: rows in
//! `records` and `reports`, one [`ReportOutcome`] per report (published or duplicate), and
//! an `ingest_log` row for every outcome and failure. Also: `schema apply` (the numbered
//! migrations of `schema/`, compiled in).
//!
//! How exactly-once works (ClickHouse 18.16 has no transactions and no insert dedup for
//! plain MergeTree, so it comes from the design; see `schema/README.md`):
//! 1. Rows are staged in bounded batches into `records_staging`, tagged with the report's
//!    `ingest_id` (one per import attempt of one report). A finished report adds one row to
//!    `reports_staging`, tagged with the publish batch's `batch_id`. Staged rows are
//!    invisible to analysts; a crash leaves them unpublished and they age out.
//! 2. Publishing a batch is one `INSERT INTO records SELECT .. FROM records_staging` of the
//!    batch's finished reports whose identity (org_name, report_id, policy_domain,
//!    date_begin) is not yet in `records`, then the same for `reports`. The insert is
//!    squashed into one block, so each report (all of whose rows share one `date_begin`
//!    and so one partition) lands in one part: all of its rows or none.
//! 3. Publishes are serialised across every importer of the database by a fixed
//!    `query_id`: ClickHouse refuses a second query with the id of a running one (code
//!    216, retried), so no two publishes can both see a report as new.
//! 4. Which reports were published is read back from `reports` (by their `ingest_id`); the
//!    others were duplicates.
//!
//! Errors are classified: transient (connection refused, timeout, overloaded, the publish
//! lock held) are retried with jittered exponential backoff; data errors (ClickHouse codes
//! such as 117, 53, 27, 6) fail the batch with the server's message and are not retried.

use std::collections::HashSet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::ClickHouseConfig;
use crate::domains;
use crate::report::{Record, ReportHeader};

/// This parser's version, written with every row of `reports` and `ingest_log`.
pub const PARSER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The migrations of `schema/`, in order: (version, name, SQL).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "001_reports_and_records",
        include_str!("../../schema/001_reports_and_records.sql"),
    ),
    (
        2,
        "002_organisational_domains_and_alignment",
        include_str!("../../schema/002_organisational_domains_and_alignment.sql"),
    ),
    (
        3,
        "003_rollups",
        include_str!("../../schema/003_rollups.sql"),
    ),
];

/// The cluster variant of [`MIGRATIONS`] (`[clickhouse] cluster = "..."`): replicated,
/// sharded by report identity, `ON CLUSTER`; see `schema/cluster/README.md`.
pub const CLUSTER_MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "001_reports_and_records",
        include_str!("../../schema/cluster/001_reports_and_records.sql"),
    ),
    (
        2,
        "002_organisational_domains_and_alignment",
        include_str!("../../schema/cluster/002_organisational_domains_and_alignment.sql"),
    ),
    (
        3,
        "003_rollups",
        include_str!("../../schema/cluster/003_rollups.sql"),
    ),
];

/// The store's queries (also run on the current engine by the CI check).
struct Queries {
    publish_records: &'static str,
    publish_reports: &'static str,
    published_ids: &'static str,
}

const SINGLE_SERVER_QUERIES: Queries = Queries {
    publish_records: include_str!("../../schema/queries/publish_records.sql"),
    publish_reports: include_str!("../../schema/queries/publish_reports.sql"),
    published_ids: include_str!("../../schema/queries/published_ingest_ids.sql"),
};

const CLUSTER_QUERIES: Queries = Queries {
    publish_records: include_str!("../../schema/cluster/queries/publish_records.sql"),
    publish_reports: include_str!("../../schema/cluster/queries/publish_reports.sql"),
    published_ids: include_str!("../../schema/cluster/queries/published_ingest_ids.sql"),
};

const STALE_STAGING_SQL: &str = include_str!("../../schema/queries/stale_staging_partitions.sql");

/// A report's identity after normalisation: the same report delivered twice (or from two
/// mailboxes) has the same identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportIdentity {
    pub org_name: String,
    pub report_id: String,
    pub policy_domain: String,
    pub date_begin: u32,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Could not reach the server (refused, reset, timed out), after every retry.
    #[error("ClickHouse at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The server refused the data (ClickHouse `Code: 117`, `53`, ...): not retried.
    #[error("ClickHouse refused the data: {0}")]
    Data(String),
    /// Any other server error; `transient` ones were retried.
    #[error("ClickHouse error: {message}")]
    Server { message: String, transient: bool },
    /// The database is not set up (run `dmarc-ingest schema apply`).
    #[error("ClickHouse schema: {0}")]
    Schema(String),
    /// A report's values do not fit the schema (e.g. a date before 1970).
    #[error("{0}")]
    BadReport(String),
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Server { transient, .. } => *transient,
            StoreError::Data(_) | StoreError::Schema(_) | StoreError::BadReport(_) => false,
        }
    }
}

/// ClickHouse error codes that go away by waiting: timeouts, overload, too many parts,
/// network trouble between servers, a query with the same id (the publish lock) running,
/// read-only replicas, Keeper sessions.
const TRANSIENT_CODES: &[u32] = &[
    159, 160, 164, 202, 203, 209, 210, 216, 236, 241, 242, 252, 285, 319, 394, 425, 999,
];
/// Codes that mean the data itself is wrong: not retried.
const DATA_CODES: &[u32] = &[6, 26, 27, 32, 33, 38, 53, 69, 70, 72, 117, 130, 131];
/// Codes that mean the schema is missing or different: run `schema apply`.
const SCHEMA_CODES: &[u32] = &[16, 47, 60, 81];

/// Classifies a client error.
fn classify(url: &str, e: clickhouse::error::Error) -> StoreError {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => StoreError::Unreachable {
            url: url.to_owned(),
            message: error_chain(&e),
        },
        E::BadResponse(message) => {
            let code = server_code(&message);
            let message = first_line(&message);
            match code {
                Some(c) if TRANSIENT_CODES.contains(&c) => StoreError::Server {
                    message,
                    transient: true,
                },
                Some(c) if DATA_CODES.contains(&c) => StoreError::Data(message),
                Some(c) if SCHEMA_CODES.contains(&c) => {
                    StoreError::Schema(format!("{message} (run `dmarc-ingest schema apply`)"))
                }
                _ => StoreError::Server {
                    message,
                    transient: false,
                },
            }
        }
        other => StoreError::Server {
            message: error_chain(&other),
            transient: false,
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `Code: 117, e.displayText() = ...` -> 117.
fn server_code(message: &str) -> Option<u32> {
    let at = message.find("Code: ")? + 6;
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_owned()
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
        LogEntry {
            logged_at: now(),
            source: source.to_owned(),
            outcome: "failed".into(),
            reason_kind: kind.to_owned(),
            reason: reason.to_owned(),
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

fn host_name() -> String {
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

/// A connection to the configured ClickHouse database (cheap to clone).
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    config: ClickHouseConfig,
    /// Major version of the server (18 on Debian 12).
    server_major: u32,
}

impl Store {
    /// Connects (with retries) and reads the server version. No schema is needed yet.
    pub async fn connect(config: &ClickHouseConfig) -> Result<Store, StoreError> {
        let client = clickhouse::Client::default()
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(&config.password)
            .with_compression(match config.compression {
                crate::config::Compression::None => clickhouse::Compression::None,
                crate::config::Compression::Lz4 => clickhouse::Compression::Lz4,
            })
            // 18.16 knows no RowBinaryWithNamesAndTypes; the column names are still sent.
            .with_validation(false);
        let mut store = Store {
            client,
            config: config.clone(),
            server_major: 0,
        };
        let version: String = store
            .retry("read the server version", || {
                store.client.query("SELECT version()").fetch_one::<String>()
            })
            .await?;
        store.server_major = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        tracing::debug!(server_version = %version, "connected to ClickHouse");
        Ok(store)
    }

    /// The configured database name.
    pub fn database(&self) -> &str {
        &self.config.database
    }

    /// Runs `op` until it succeeds, fails permanently, or attempts run out; transient
    /// failures wait a jittered, doubling delay.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = clickhouse::error::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let timeout = Duration::from_secs(self.config.request_timeout_secs);
            let result = match tokio::time::timeout(timeout, op()).await {
                Ok(r) => r.map_err(|e| classify(&self.config.url, e)),
                Err(_) => Err(StoreError::Unreachable {
                    url: self.config.url.clone(),
                    message: format!("no answer within {} s", timeout.as_secs()),
                }),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < self.config.max_attempts => {
                    let delay = backoff(
                        attempt,
                        self.config.retry_initial_ms,
                        self.config.retry_max_ms,
                    );
                    tracing::warn!(what, attempt, delay_ms = delay.as_millis() as u64, error = %e, "ClickHouse call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    if e.is_transient() {
                        return Err(match e {
                            StoreError::Unreachable { url, message } => StoreError::Unreachable {
                                url,
                                message: format!(
                                    "{message} (gave up to {what} after {attempt} attempts)"
                                ),
                            },
                            other => other,
                        });
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The migrations of this deployment: single server or cluster.
    fn migrations(&self) -> &'static [(u32, &'static str, &'static str)] {
        if self.config.cluster.is_empty() {
            MIGRATIONS
        } else {
            CLUSTER_MIGRATIONS
        }
    }

    fn queries(&self) -> &'static Queries {
        if self.config.cluster.is_empty() {
            &SINGLE_SERVER_QUERIES
        } else {
            &CLUSTER_QUERIES
        }
    }

    /// Adapts a migration statement to the server: on ClickHouse before 19.0 (Debian 12's
    /// 18.16), `LowCardinality` is experimental and makes inserts three times slower, so
    /// it becomes plain `String` there (see `schema/README.md`).
    fn adapt_ddl(&self, statement: &str) -> String {
        let statement = statement
            .replace("{database}", &self.config.database)
            .replace("{cluster}", &self.config.cluster);
        if self.server_major < 19 {
            statement.replace("LowCardinality(String)", "String")
        } else {
            statement
        }
    }

    /// Applies the migrations not applied yet; returns their names. Safe to re-run (and
    /// to re-run after an interruption: every statement is `IF NOT EXISTS`).
    pub async fn apply_schema(&self) -> Result<Vec<String>, StoreError> {
        let db = &self.config.database;
        self.execute(
            "create the database",
            &format!("CREATE DATABASE IF NOT EXISTS {db}"),
        )
        .await?;
        self.execute(
            "create the migrations table",
            &format!(
                "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
                 (version UInt32, name String, applied_at DateTime('UTC')) \
                 ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
            ),
        )
        .await?;
        let done: Vec<u32> = self
            .retry("read applied migrations", || {
                self.client
                    .query(&format!("SELECT version FROM {db}.schema_migrations"))
                    .fetch_all::<u32>()
            })
            .await?;
        let mut applied = Vec::new();
        for (version, name, sql) in self.migrations() {
            if done.contains(version) {
                continue;
            }
            for statement in split_statements(sql) {
                match self.execute(name, &self.adapt_ddl(&statement)).await {
                    // 18.16 has no ADD COLUMN IF NOT EXISTS: a column that exists was
                    // added by an interrupted earlier run of this migration.
                    Err(StoreError::Server { message, .. })
                        if statement.trim_start().starts_with("ALTER TABLE")
                            && message.contains("already exists") => {}
                    other => other?,
                }
            }
            self.execute(
                "record the migration",
                &format!("INSERT INTO {db}.schema_migrations SELECT {version}, '{name}', now()"),
            )
            .await?;
            applied.push((*name).to_owned());
        }
        Ok(applied)
    }

    /// Fails with [`StoreError::Schema`] unless every migration has been applied.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let db = &self.config.database;
        let done: Vec<u32> = self
            .retry("read applied migrations", || {
                self.client
                    .query(&format!("SELECT version FROM {db}.schema_migrations"))
                    .fetch_all::<u32>()
            })
            .await?;
        match self.migrations().iter().find(|(v, _, _)| !done.contains(v)) {
            None => Ok(()),
            Some((_, name, _)) => Err(StoreError::Schema(format!(
                "migration {name} is not applied to database {db} (run `dmarc-ingest schema apply`)"
            ))),
        }
    }

    async fn execute(&self, what: &str, sql: &str) -> Result<(), StoreError> {
        self.retry(what, || self.client.query(sql).execute()).await
    }

    /// Inserts rows into `table` in one INSERT (retried whole on a transient failure).
    pub async fn insert_rows<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let table = format!("{}.{table}", self.config.database);
        self.retry(&format!("insert into {table}"), || async {
            // The name is `database.table`, both checked to be plain identifiers.
            let mut insert = self.client.insert_unescaped::<T>(&table).await?;
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        })
        .await
    }

    /// Publishes the finished reports of `batch_id`; returns the `ingest_id`s that were
    /// published (the others were duplicates of reports already there).
    pub async fn publish(&self, batch_id: Uuid) -> Result<HashSet<Uuid>, StoreError> {
        let started = std::time::Instant::now();
        let lock = format!("dmarc-ingest-publish-{}", self.config.database);
        let queries = self.queries();
        let cluster = !self.config.cluster.is_empty();
        for (what, template) in [
            ("publish records", queries.publish_records),
            ("publish reports", queries.publish_reports),
        ] {
            let sql = self.render(template, batch_id);
            self.retry(what, || {
                let mut query = self
                    .client
                    .query(&sql)
                    .with_setting("query_id", lock.as_str())
                    // One block per partition: a report's rows land in one part.
                    .with_setting("min_insert_block_size_rows", "1099511627776")
                    .with_setting("min_insert_block_size_bytes", "1099511627776");
                if cluster {
                    // The Distributed insert has reached every shard when it returns.
                    query = query.with_setting("insert_distributed_sync", "1");
                }
                query.execute()
            })
            .await?;
        }
        let sql = self.render(queries.published_ids, batch_id);
        let published: Vec<UuidRow> = self
            .retry("read published reports", || {
                self.client.query(&sql).fetch_all::<UuidRow>()
            })
            .await?;
        tracing::debug!(
            batch = %batch_id,
            published = published.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch published"
        );
        Ok(published.into_iter().map(|r| r.ingest_id).collect())
    }

    /// Fills a query of `schema/queries/` in: database, batch; comments and `;` dropped.
    fn render(&self, template: &str, batch_id: Uuid) -> String {
        split_statements(template)
            .concat()
            .replace("{database}", &self.config.database)
            .replace("{cluster}", &self.config.cluster)
            .replace("{batch}", &format!("toUUID('{batch_id}')"))
    }

    /// Drops staging partitions older than two days: what was left by crashed runs.
    /// (Single server only: in a cluster the `_local` staging tables are maintained as
    /// `schema/cluster/README.md` says.)
    pub async fn drop_stale_staging(&self) -> Result<usize, StoreError> {
        if !self.config.cluster.is_empty() {
            return Ok(0);
        }
        let db = &self.config.database;
        let sql = self.render(STALE_STAGING_SQL, Uuid::nil());
        let stale: Vec<PartitionRow> = self
            .retry("list staging partitions", || {
                self.client.query(&sql).fetch_all::<PartitionRow>()
            })
            .await?;
        for p in &stale {
            self.execute(
                "drop a stale staging partition",
                &format!(
                    "ALTER TABLE {db}.{} DROP PARTITION {}",
                    p.table, p.partition
                ),
            )
            .await?;
        }
        Ok(stale.len())
    }

    /// Runs a query returning one number (for totals in tests and summaries).
    pub async fn query_u64(&self, sql: &str) -> Result<u64, StoreError> {
        let sql = sql.replace("{database}", &self.config.database);
        self.retry("query", || self.client.query(&sql).fetch_one::<u64>())
            .await
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct UuidRow {
    #[serde(with = "clickhouse::serde::uuid")]
    ingest_id: Uuid,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct PartitionRow {
    table: String,
    partition: String,
}

/// Full-jitter exponential backoff: a random delay up to `initial * 2^(attempt-1)`,
/// capped at `max`, never below a tenth of the cap's step.
pub fn backoff(attempt: u32, initial_ms: u64, max_ms: u64) -> Duration {
    let step = initial_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(max_ms);
    let jitter = random_u64() % (step / 2 + 1);
    Duration::from_millis(step / 2 + jitter)
}

/// A cheap random number (time and a counter through splitmix64); for jitter only.
fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Splits a migration into statements at `;` outside quotes, dropping comment-only ones.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '-') if chars.peek() == Some(&'-') => {
                // A comment to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        current.push('\n');
                        break;
                    }
                }
                continue;
            }
            (None, '\'' | '"' | '`') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (Some(_), '\\') => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                continue;
            }
            (None, ';') => {
                if !current.trim().is_empty() {
                    out.push(current.trim().to_owned());
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

/// What became of one report given to a [`BatchWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Its rows are in `records` and `reports`.
    Published,
    /// The same report (same identity) was already there, or earlier in the batch.
    Duplicate,
}

/// A report staged in the current batch, awaiting publication.
#[derive(Debug, Clone)]
pub struct PendingReport<T> {
    pub ingest_id: Uuid,
    pub identity: ReportIdentity,
    pub source: String,
    pub records: u64,
    pub messages: u64,
    /// The caller's handle (a message UID, a file).
    pub tag: T,
}

/// Collects reports into a publish batch: rows are staged in bounded inserts as they
/// come, reports are published together by [`BatchWriter::publish`].
pub struct BatchWriter<T> {
    store: Store,
    /// The staging insert under way while the next rows are read.
    in_flight: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
    batch_id: Uuid,
    rows: Vec<StoredRecord>,
    /// Index in `rows` where the current report's rows start (for abandoning it).
    current_start: usize,
    staged: Vec<StagedReport>,
    pending: Vec<PendingReport<T>>,
    in_batch: HashSet<ReportIdentity>,
    /// Rows staged in this batch (to publish a batch before it grows too large).
    batch_rows: u64,
}

/// A batch is published once it holds this many staged rows, whatever the report count.
const MAX_ROWS_PER_PUBLISH: u64 = 2_000_000;

impl<T> BatchWriter<T> {
    pub fn new(store: &Store) -> Self {
        BatchWriter {
            store: store.clone(),
            in_flight: None,
            batch_id: Uuid::new_v4(),
            rows: Vec::new(),
            current_start: 0,
            staged: Vec::new(),
            pending: Vec::new(),
            in_batch: HashSet::new(),
            batch_rows: 0,
        }
    }

    /// Starts a report. `None` when the same report is already in this batch (a
    /// duplicate: skip it); else the `ingest_id` to tag its rows with.
    pub fn begin_report(&mut self, identity: &ReportIdentity) -> Option<Uuid> {
        if self.in_batch.contains(identity) {
            return None;
        }
        self.current_start = self.rows.len();
        Some(Uuid::new_v4())
    }

    /// Adds one row of the current report; stages a full buffer.
    pub async fn add_record(&mut self, row: StoredRecord) -> Result<(), StoreError> {
        if self.push_record(row) {
            self.flush_rows().await?;
        }
        Ok(())
    }

    /// Adds one row without staging; returns whether the buffer is full (then call
    /// [`BatchWriter::flush_rows`]). For callers that block on each async call.
    pub fn push_record(&mut self, row: StoredRecord) -> bool {
        self.rows.push(row);
        self.rows.len() >= self.store.config.batch_rows
    }

    /// Stages the buffered rows in the background (one insert in flight at a time), so
    /// reading the next rows overlaps with ClickHouse writing these.
    pub async fn flush_rows(&mut self) -> Result<(), StoreError> {
        self.wait_in_flight().await?;
        let rows = std::mem::replace(
            &mut self.rows,
            Vec::with_capacity(self.store.config.batch_rows),
        );
        self.batch_rows += rows.len() as u64;
        self.current_start = 0;
        let store = self.store.clone();
        self.in_flight = Some(tokio::spawn(async move {
            store.insert_rows("records_staging", &rows).await
        }));
        Ok(())
    }

    async fn wait_in_flight(&mut self) -> Result<(), StoreError> {
        match self.in_flight.take() {
            Some(task) => task.await.map_err(|e| StoreError::Server {
                message: format!("staging task failed: {e}"),
                transient: false,
            })?,
            None => Ok(()),
        }
    }

    /// Drops the current report: its buffered rows go; rows already staged stay
    /// unpublished (no `reports_staging` row names them).
    pub fn abandon_report(&mut self) {
        self.rows.truncate(self.current_start);
    }

    /// Finishes the current report: it will be published with the batch.
    pub fn finish_report(
        &mut self,
        header: &ReportHeader,
        report: PendingReport<T>,
    ) -> Result<(), StoreError> {
        let staged = staged_report(
            header,
            (report.records, report.messages),
            &report.source,
            report.ingest_id,
            self.batch_id,
        )?;
        self.in_batch.insert(report.identity.clone());
        self.staged.push(staged);
        self.pending.push(report);
        Ok(())
    }

    /// Whether the batch is big enough to publish now.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.store.config.publish_reports
            || self.batch_rows + self.rows.len() as u64 >= MAX_ROWS_PER_PUBLISH
    }

    /// Reports waiting in this batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Gives up the batch: its reports, unpublished.
    pub fn into_pending(self) -> Vec<PendingReport<T>> {
        self.pending
    }

    /// Stages what is buffered and publishes the batch; returns each report with its
    /// outcome, and starts a new batch. On error the writer keeps the batch's reports
    /// (see [`BatchWriter::into_pending`]); nothing of the batch is visible unless its
    /// publish completed, and its reports may be given again.
    pub async fn publish(&mut self) -> Result<Vec<(PendingReport<T>, ReportOutcome)>, StoreError> {
        if self.pending.is_empty() {
            self.rows.clear();
            self.current_start = 0;
            return self.wait_in_flight().await.map(|()| Vec::new());
        }
        let rows = std::mem::take(&mut self.rows);
        self.current_start = 0;
        self.wait_in_flight().await?;
        self.store.insert_rows("records_staging", &rows).await?;
        self.store
            .insert_rows("reports_staging", &self.staged)
            .await?;
        let published = self.store.publish(self.batch_id).await?;
        let pending = std::mem::take(&mut self.pending);
        self.staged.clear();
        self.batch_id = Uuid::new_v4();
        self.in_batch.clear();
        self.batch_rows = 0;
        Ok(pending
            .into_iter()
            .map(|p| {
                let outcome = if published.contains(&p.ingest_id) {
                    ReportOutcome::Published
                } else {
                    ReportOutcome::Duplicate
                };
                (p, outcome)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let sql = "-- a; comment\nCREATE TABLE a (x String DEFAULT ';');\n\n-- only a comment;\nSELECT 'it''s; fine';";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts[0].starts_with("CREATE TABLE a"));
        assert!(parts[0].ends_with("DEFAULT ';')"));
        assert_eq!(parts[1], "SELECT 'it''s; fine'");
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for set in [MIGRATIONS, CLUSTER_MIGRATIONS] {
            for (i, (version, name, sql)) in set.iter().enumerate() {
                assert_eq!(*version as usize, i + 1);
                assert!(name.starts_with(&format!("{version:03}_")));
                assert!(!split_statements(sql).is_empty());
            }
        }
        // The cluster variant mirrors the single-server one, migration for migration.
        let names = |set: &'static [(u32, &'static str, &'static str)]| {
            set.iter().map(|m| m.1).collect::<Vec<_>>()
        };
        assert_eq!(names(MIGRATIONS), names(CLUSTER_MIGRATIONS));
        for (_, _, sql) in CLUSTER_MIGRATIONS {
            for statement in split_statements(sql) {
                if statement.starts_with("CREATE") || statement.starts_with("ALTER") {
                    assert!(statement.contains("ON CLUSTER '{cluster}'"), "{statement}");
                }
            }
        }
    }

    #[test]
    fn publish_reports_lists_every_reports_column() {
        let sql = split_statements(SINGLE_SERVER_QUERIES.publish_reports).concat();
        let lists: Vec<Vec<&str>> = [
            &sql[sql.find('(').unwrap() + 1..sql.find(')').unwrap()],
            &sql[sql.find("SELECT").unwrap() + 6..sql.find("FROM").unwrap()],
        ]
        .iter()
        .map(|l| l.split(',').map(str::trim).collect())
        .collect();
        let want: Vec<&str> = <StagedReport as clickhouse::Row>::COLUMN_NAMES
            .iter()
            .copied()
            .filter(|c| *c != "batch_id")
            .collect();
        assert_eq!(lists[0], want);
        assert_eq!(lists[1], want);
    }

    #[test]
    fn error_classification() {
        let url = "http://x";
        let bad = |m: &str| classify(url, clickhouse::error::Error::BadResponse(m.into()));
        assert!(matches!(
            bad("Code: 117, e.displayText() = DB::Exception: bad data"),
            StoreError::Data(_)
        ));
        assert!(bad(
            "Code: 216, e.displayText() = DB::Exception: Query with id = x is already running."
        )
        .is_transient());
        assert!(matches!(
            bad("Code: 60, e.displayText() = DB::Exception: Table dmarc.records doesn't exist."),
            StoreError::Schema(_)
        ));
        assert!(!bad("Code: 62, syntax error").is_transient());
        assert!(classify(url, clickhouse::error::Error::TimedOut).is_transient());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..30 {
            let d = backoff(attempt, 100, 5_000).as_millis() as u64;
            let step = (100u64 << (attempt - 1).min(20)).min(5_000);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d}");
        }
    }

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
        let xml = "<feedback><report_metadata><org_name>o</org_name></report_metadata><record><row><source_ip>192.0.2.1</source_ip><count>2</count></row><auth_results><dkim><domain>a.example</domain><result>pass</result></dkim><dkim><domain>b.example</domain><selector>s</selector><result>fail</result></dkim></auth_results></record></feedback>";
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
