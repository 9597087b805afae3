//! Store: rows -> ClickHouse, exactly once as analysts see it.
//!
//! In: rows made by [`crate::rows`] (a [`crate::rows::RecordRow`] per record, a
//! [`StagedReport`] per finished report), through a [`BatchWriter`]. Out: rows in
//! `records` and `reports`, one [`ReportOutcome`] per report (published or duplicate), and
//! an `ingest_log` row for every outcome and failure. Also: `schema apply` (the numbered
//! migrations of `schema/`, compiled in).
//!
//! How exactly-once works (ClickHouse 18.16 has no transactions and no insert dedup for
//! plain MergeTree, so it comes from the design; see `schema/README.md`):
//! 1. Rows are staged in bounded batches, tagged with the report's `ingest_id` (one per
//!    import attempt of one report): on a single server into the batch session's
//!    temporary tables, elsewhere into `records_staging` ([`staging`]). A finished report
//!    adds one staged reports row, tagged with the publish batch's `batch_id`. Staged rows
//!    are invisible to analysts; a crash leaves them unpublished and they go away.
//! 2. Publishing a batch is one `INSERT INTO records SELECT .. FROM` the staged rows of the
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
//! Errors are classified by one table ([`errors`]): a call that failed for a passing
//! reason (connection refused, timeout, overloaded, the publish lock held) is repeated
//! with jittered exponential backoff; the server's other troubles (disk full, credentials,
//! a proxy's 5xx, unknown codes) fail the batch for later, never blaming its mail; data
//! errors (ClickHouse codes such as 117, 53) fail the batch with the server's message.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::ClickHouseConfig;

pub mod alerts;
pub mod batch;
pub mod dns_checks;
pub mod domains;
pub mod errors;
pub mod rows;
pub mod server;
pub mod sources;
pub mod staging;
pub use crate::rows::{ReportIdentity, StagedReport, PARSER_VERSION};
pub use batch::{BatchWriter, PendingReport, ReportOutcome};
use errors::classify;
pub use errors::StoreError;
pub use rows::{now, LogEntry};
pub use staging::StagingTable;

/// The migrations of `schema/`, in order: (version, name, SQL).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "001_reports_and_records",
        include_str!("../../../schema/001_reports_and_records.sql"),
    ),
    (
        2,
        "002_organisational_domains_and_alignment",
        include_str!("../../../schema/002_organisational_domains_and_alignment.sql"),
    ),
    (
        3,
        "003_rollups",
        include_str!("../../../schema/003_rollups.sql"),
    ),
    (
        4,
        "004_mail_attempts",
        include_str!("../../../schema/004_mail_attempts.sql"),
    ),
    (
        5,
        "005_failures_once",
        include_str!("../../../schema/005_failures_once.sql"),
    ),
    (
        6,
        "006_source_names",
        include_str!("../../../schema/006_source_names.sql"),
    ),
    (
        7,
        "007_source_daily",
        include_str!("../../../schema/007_source_daily.sql"),
    ),
    (
        8,
        "008_source_networks",
        include_str!("../../../schema/008_source_networks.sql"),
    ),
    (
        9,
        "009_domains",
        include_str!("../../../schema/009_domains.sql"),
    ),
    (
        10,
        "010_dns_checks_and_status",
        include_str!("../../../schema/010_dns_checks_and_status.sql"),
    ),
    (
        11,
        "011_alerts",
        include_str!("../../../schema/011_alerts.sql"),
    ),
    (
        12,
        "012_deliveries",
        include_str!("../../../schema/012_deliveries.sql"),
    ),
    (
        13,
        "013_rollup_repairs",
        include_str!("../../../schema/013_rollup_repairs.sql"),
    ),
];

/// The cluster variant of [`MIGRATIONS`] (`[clickhouse] cluster = "..."`): replicated,
/// sharded by report identity, `ON CLUSTER`; see `schema/cluster/README.md`.
pub const CLUSTER_MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "001_reports_and_records",
        include_str!("../../../schema/cluster/001_reports_and_records.sql"),
    ),
    (
        2,
        "002_organisational_domains_and_alignment",
        include_str!("../../../schema/cluster/002_organisational_domains_and_alignment.sql"),
    ),
    (
        3,
        "003_rollups",
        include_str!("../../../schema/cluster/003_rollups.sql"),
    ),
    (
        4,
        "004_mail_attempts",
        include_str!("../../../schema/cluster/004_mail_attempts.sql"),
    ),
    (
        5,
        "005_failures_once",
        include_str!("../../../schema/cluster/005_failures_once.sql"),
    ),
    (
        6,
        "006_source_names",
        include_str!("../../../schema/cluster/006_source_names.sql"),
    ),
    (
        7,
        "007_source_daily",
        include_str!("../../../schema/cluster/007_source_daily.sql"),
    ),
    (
        8,
        "008_source_networks",
        include_str!("../../../schema/cluster/008_source_networks.sql"),
    ),
    (
        9,
        "009_domains",
        include_str!("../../../schema/cluster/009_domains.sql"),
    ),
    (
        10,
        "010_dns_checks_and_status",
        include_str!("../../../schema/cluster/010_dns_checks_and_status.sql"),
    ),
    (
        11,
        "011_alerts",
        include_str!("../../../schema/cluster/011_alerts.sql"),
    ),
    (
        12,
        "012_deliveries",
        include_str!("../../../schema/cluster/012_deliveries.sql"),
    ),
    (
        13,
        "013_rollup_repairs",
        include_str!("../../../schema/cluster/013_rollup_repairs.sql"),
    ),
];

/// The store's queries (also run on the current engine by the CI check).
struct Queries {
    publish_records: &'static str,
    publish_reports: &'static str,
    publish_outcome: &'static str,
    mail_attempts: &'static str,
    stale_attempts: &'static str,
    repair_records_daily: &'static str,
    repair_reporter_daily: &'static str,
    repair_source_daily: &'static str,
    sources_to_resolve: &'static str,
    dns_check_targets: &'static str,
    status_inputs: &'static str,
    alert_dns_inputs: &'static str,
    alert_status_inputs: &'static str,
    alert_sender_inputs: &'static str,
    alert_domain_inputs: &'static str,
    alerts_to_deliver: &'static str,
    digest_domains: &'static str,
    digest_days: &'static str,
    digest_senders: &'static str,
}

const SINGLE_SERVER_QUERIES: Queries = Queries {
    publish_records: include_str!("../../../schema/queries/publish_records.sql"),
    publish_reports: include_str!("../../../schema/queries/publish_reports.sql"),
    publish_outcome: include_str!("../../../schema/queries/publish_outcome.sql"),
    mail_attempts: include_str!("../../../schema/queries/mail_attempts.sql"),
    stale_attempts: include_str!("../../../schema/queries/stale_attempt_partitions.sql"),
    repair_records_daily: include_str!("../../../schema/queries/repair_records_daily.sql"),
    repair_reporter_daily: include_str!("../../../schema/queries/repair_reporter_daily.sql"),
    repair_source_daily: include_str!("../../../schema/queries/repair_source_daily.sql"),
    sources_to_resolve: include_str!("../../../schema/queries/sources_to_resolve.sql"),
    dns_check_targets: include_str!("../../../schema/queries/dns_check_targets.sql"),
    status_inputs: include_str!("../../../schema/queries/status_inputs.sql"),
    alert_dns_inputs: include_str!("../../../schema/queries/alert_dns_inputs.sql"),
    alert_status_inputs: include_str!("../../../schema/queries/alert_status_inputs.sql"),
    alert_sender_inputs: include_str!("../../../schema/queries/alert_sender_inputs.sql"),
    alert_domain_inputs: include_str!("../../../schema/queries/alert_domain_inputs.sql"),
    alerts_to_deliver: include_str!("../../../schema/queries/alerts_to_deliver.sql"),
    digest_domains: include_str!("../../../schema/queries/digest_domains.sql"),
    digest_days: include_str!("../../../schema/queries/digest_days.sql"),
    digest_senders: include_str!("../../../schema/queries/digest_senders.sql"),
};

const CLUSTER_QUERIES: Queries = Queries {
    publish_records: include_str!("../../../schema/cluster/queries/publish_records.sql"),
    publish_reports: include_str!("../../../schema/cluster/queries/publish_reports.sql"),
    publish_outcome: include_str!("../../../schema/cluster/queries/publish_outcome.sql"),
    mail_attempts: include_str!("../../../schema/cluster/queries/mail_attempts.sql"),
    stale_attempts: include_str!("../../../schema/cluster/queries/stale_attempt_partitions.sql"),
    repair_records_daily: include_str!("../../../schema/cluster/queries/repair_records_daily.sql"),
    repair_reporter_daily: include_str!(
        "../../../schema/cluster/queries/repair_reporter_daily.sql"
    ),
    repair_source_daily: include_str!("../../../schema/cluster/queries/repair_source_daily.sql"),
    sources_to_resolve: include_str!("../../../schema/cluster/queries/sources_to_resolve.sql"),
    dns_check_targets: include_str!("../../../schema/cluster/queries/dns_check_targets.sql"),
    status_inputs: include_str!("../../../schema/cluster/queries/status_inputs.sql"),
    alert_dns_inputs: include_str!("../../../schema/cluster/queries/alert_dns_inputs.sql"),
    alert_status_inputs: include_str!("../../../schema/cluster/queries/alert_status_inputs.sql"),
    alert_sender_inputs: include_str!("../../../schema/cluster/queries/alert_sender_inputs.sql"),
    alert_domain_inputs: include_str!("../../../schema/cluster/queries/alert_domain_inputs.sql"),
    alerts_to_deliver: include_str!("../../../schema/cluster/queries/alerts_to_deliver.sql"),
    digest_domains: include_str!("../../../schema/cluster/queries/digest_domains.sql"),
    digest_days: include_str!("../../../schema/cluster/queries/digest_days.sql"),
    digest_senders: include_str!("../../../schema/cluster/queries/digest_senders.sql"),
};

const STALE_STAGING_SQL: &str =
    include_str!("../../../schema/queries/stale_staging_partitions.sql");

/// TCP keepalive on connections to ClickHouse (as the clickhouse crate's own client).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// How long an idle connection is kept for reuse: below the server's HTTP keep-alive
/// timeout (3 s by default, 10 s since 23.11), so the client never reuses one the server
/// is closing (as the clickhouse crate's own client).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP client under `clickhouse::Client`: HTTP/1.1, pooled, and for `https://`
/// rustls with the roots of [`crate::tls::client_config`]. (The crate's default client has
/// no TLS without its own TLS features, which would bring their own roots.)
fn http_client(config: &ClickHouseConfig) -> Result<clickhouse::Client, StoreError> {
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use hyper_util::rt::TokioExecutor;

    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_idle_timeout(POOL_IDLE_TIMEOUT);
    if !config.is_https() {
        // Plain HTTP needs no roots: a host without any CA certificates still works.
        return Ok(clickhouse::Client::with_http_client(builder.build(http)));
    }
    let tls =
        crate::tls::client_config(config.ca_file.as_deref()).map_err(|e| StoreError::Tls {
            url: config.url.clone(),
            message: format!("[clickhouse] {e}"),
        })?;
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(clickhouse::Client::with_http_client(builder.build(https)))
}

/// A connection to the configured ClickHouse database (cheap to clone).
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    config: ClickHouseConfig,
    /// The server's version, the settings it knows, the cluster's replicas.
    server: server::ServerProfile,
    /// Days (policy domain, days since 1970) whose rollups may be short: a publish
    /// statement failed after its rows may have been committed. Repaired after the next
    /// publish that succeeds.
    repairs: Arc<Mutex<BTreeSet<(String, u32)>>>,
    /// Whether the repairs noted in `rollup_repairs` (by a process that died before it
    /// repaired them) were read into `repairs` yet.
    repairs_loaded: Arc<std::sync::atomic::AtomicBool>,
    /// The batch's HTTP session whose temporary tables hold its staged rows
    /// ([`Store::for_batch`]); `None`: the shared staging tables.
    session: Option<Arc<staging::StagingSession>>,
}

impl Store {
    /// Connects (with retries) and reads what the server is ([`server::ServerProfile`]).
    /// No schema is needed yet. `https://` trusts the system's roots and `ca_file`; a
    /// certificate that is not trusted fails at once with [`StoreError::Tls`]. Rows are
    /// validated against the tables' columns on servers that support it (24.x+).
    pub async fn connect(config: &ClickHouseConfig) -> Result<Store, StoreError> {
        let client = http_client(config)?
            .with_url(&config.url)
            .with_user(&config.user)
            .with_password(&config.password)
            .with_compression(match config.effective_compression() {
                crate::config::Compression::Lz4 => clickhouse::Compression::Lz4,
                _ => clickhouse::Compression::None,
            })
            // Until the version is known: 18.16 knows no RowBinaryWithNamesAndTypes.
            .with_validation(false);
        let mut store = Store {
            client,
            config: config.clone(),
            server: server::ServerProfile::default(),
            repairs: Arc::default(),
            repairs_loaded: Arc::default(),
            session: None,
        };
        let candidates = server::CANDIDATE_SETTINGS
            .iter()
            .map(|name| sql_string(name))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT version() AS version, name FROM system.settings WHERE name IN ({candidates})"
        );
        let rows: Vec<VersionAndSetting> = store
            .retry("read the server version", || {
                store.client.query(&sql).fetch_all::<VersionAndSetting>()
            })
            .await?;
        let version = match rows.first() {
            Some(row) => row.version.clone(),
            None => {
                store
                    .retry("read the server version", || {
                        store.client.query("SELECT version()").fetch_one::<String>()
                    })
                    .await?
            }
        };
        let cluster = !config.cluster.is_empty();
        store.server = server::ServerProfile::new(
            server::major_version(&version),
            rows.into_iter().map(|r| r.name),
            cluster,
        );
        if cluster {
            let sql = format!(
                "SELECT toUInt32(max(replica_num)) FROM system.clusters WHERE cluster = {}",
                sql_string(&config.cluster)
            );
            let replicas: u32 = store
                .retry("read the cluster's replicas", || {
                    store.client.query(&sql).fetch_one::<u32>()
                })
                .await?;
            store.server.replicas = replicas.max(1);
        }
        if !cluster {
            let sql = format!(
                "SELECT engine FROM system.tables WHERE database = {} AND name = 'reports'",
                sql_string(&config.database)
            );
            let engines: Vec<String> = store
                .retry("read the storage engine", || {
                    store.client.query(&sql).fetch_all::<String>()
                })
                .await?;
            store.server.replicated_storage = engines.first().is_some_and(|e| is_replicated(e));
        }
        store.client = store.client.with_validation(store.server.validates());
        tracing::debug!(server_version = %version, validation = store.server.validates(), replicas = store.server.replicas, "connected to ClickHouse");
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
                Err(_) => Err((
                    StoreError::Unreachable {
                        url: self.config.url.clone(),
                        message: format!("no answer within {} s", timeout.as_secs()),
                    },
                    true,
                )),
            };
            match result {
                Ok(v) => return Ok(v),
                Err((e, true)) if attempt < self.config.max_attempts => {
                    let delay = backoff(
                        attempt,
                        self.config.retry_initial_ms,
                        self.config.retry_max_ms,
                    );
                    tracing::warn!(what, attempt, delay_ms = delay.as_millis() as u64, error = %e, "ClickHouse call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err((e, again)) => {
                    if again {
                        return Err(match e {
                            StoreError::Unreachable { url, message } => StoreError::Unreachable {
                                url,
                                message: format!(
                                    "{message} (gave up after {attempt} attempts to {what})"
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
        if self.server.major < 19 {
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
                    Err(StoreError::Unavailable(message))
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

    /// Fails with [`StoreError::Schema`] unless every migration has been applied, and
    /// where the tables are replicated without a configured cluster unless
    /// `single_publisher` confirms that only one importer writes.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let db = &self.config.database;
        if self.server.replicated_storage && !self.config.single_publisher {
            return Err(StoreError::Schema(format!(
                "the tables of database {db} are replicated, so the publish lock (held on one \
                 server) cannot stop two importers on different replicas from both storing a \
                 report: run one importer and set [clickhouse] single_publisher = true, or \
                 configure [clickhouse] cluster (schema/cluster/README.md)"
            )));
        }
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

    /// Inserts rows into `table` of the database in one INSERT (retried whole on a
    /// transient failure).
    pub async fn insert_rows<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
    {
        let table = format!("{}.{table}", self.config.database);
        self.insert_into(&table, rows, || false).await
    }

    /// Inserts rows into `table` (a name as the server resolves it) in one INSERT, sent
    /// again whole on a transient failure. `fault` is asked after each send whether to
    /// report it as failed all the same (a test's lost acknowledgement).
    async fn insert_into<T>(
        &self,
        table: &str,
        rows: &[T],
        fault: impl Fn() -> bool,
    ) -> Result<(), StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
    {
        if rows.is_empty() {
            return Ok(());
        }
        self.retry(&format!("insert into {table}"), || async {
            self.insert_once(table, rows).await?;
            if fault() {
                return Err(clickhouse::error::Error::BadResponse(format!(
                    "Code: 209. DB::Exception: Timeout exceeded while reading from socket (test fault: the acknowledgement of the insert into {table} was lost)"
                )));
            }
            Ok(())
        })
        .await
    }

    /// One attempt at inserting `rows` into `table` (plain identifiers) with the insert
    /// settings of the server.
    async fn insert_once<T>(&self, table: &str, rows: &[T]) -> clickhouse::error::Result<()>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
    {
        let mut insert = self.client.insert_unescaped::<T>(table).await?;
        for (name, value) in self.server.insert_settings() {
            insert = insert.with_setting(name, value);
        }
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    /// Stages the `reports_staging` rows of `reports` under a new publish batch and
    /// publishes it. When the server runs out of memory, the group is published in
    /// halves.
    pub fn publish_reports(
        &self,
        mut reports: Vec<StagedReport>,
    ) -> Pin<Box<dyn Future<Output = Result<PublishResult, StoreError>> + Send + '_>> {
        Box::pin(async move {
            let batch_id = Uuid::new_v4();
            for r in &mut reports {
                r.batch_id = batch_id;
            }
            self.stage_rows(StagingTable::Reports, &reports).await?;
            let days: BTreeSet<(String, u32)> = reports
                .iter()
                .map(|r| (r.policy_domain.clone(), r.date_begin / 86_400))
                .collect();
            let published = match test_memory_limit(reports.len()) {
                Some(e) => Err(e),
                None => self.publish_days(batch_id, &days).await,
            };
            match published {
                Err(StoreError::MemoryLimit(reason)) if reports.len() > 1 => {
                    tracing::warn!(reports = reports.len(), %reason, "publish out of memory; splitting the batch");
                    let second = reports.split_off(reports.len() / 2);
                    let mut result = self.publish_reports(reports).await?;
                    result.extend(self.publish_reports(second).await?);
                    Ok(result)
                }
                other => other,
            }
        })
    }

    /// Publishes the finished, completely staged reports of `batch_id`; returns which
    /// `ingest_id`s were published and which reports are present (published now or
    /// before).
    pub async fn publish(&self, batch_id: Uuid) -> Result<PublishResult, StoreError> {
        self.publish_days(batch_id, &BTreeSet::new()).await
    }

    /// The publish lock: the `query_id` every publish of the database runs under.
    fn lock(&self) -> String {
        format!("dmarc-ingest-publish-{}", self.config.database)
    }

    /// Runs a statement under the publish lock with the publish settings. Sets `failed`
    /// when any attempt failed (its rows may be in, and its views' rows not).
    async fn execute_locked(
        &self,
        what: &str,
        sql: &str,
        failed: &std::sync::atomic::AtomicBool,
    ) -> Result<(), StoreError> {
        let lock = self.lock();
        self.retry(what, || {
            // One block per partition (a report's rows land in one part), synchronous;
            // see `server.rs`.
            let mut query = self
                .client
                .query(sql)
                .with_setting("query_id", lock.as_str());
            for (name, value) in self.server.publish_settings() {
                query = query.with_setting(name, value);
            }
            async move {
                let mut result = query.execute().await;
                if result.is_ok() && test_view_fails(what) {
                    result = self.fail_a_view().await;
                }
                if result.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                result
            }
        })
        .await
    }

    /// [`Store::publish`], for reports of `days` (policy domain, days since 1970): when a
    /// statement fails on the way, those days' rollups are repaired once a publish
    /// succeeds.
    async fn publish_days(
        &self,
        batch_id: Uuid,
        days: &BTreeSet<(String, u32)>,
    ) -> Result<PublishResult, StoreError> {
        let started = std::time::Instant::now();
        let queries = self.queries();
        for (what, template) in [
            ("publish records", queries.publish_records),
            ("publish reports", queries.publish_reports),
        ] {
            let sql = self.render(template, batch_id);
            let failed = std::sync::atomic::AtomicBool::new(false);
            let result = self
                .execute_locked(what, &sql, &failed)
                .await
                .map_err(|e| self.session_lost(e));
            if failed.into_inner() && !days.is_empty() {
                tracing::warn!(
                    days = %days_text(days),
                    "a publish statement failed: these days' rollups will be repaired after the next publish (or run `dmarc-ingest schema rebuild-rollups`)"
                );
                lock_repairs(&self.repairs).extend(days.iter().cloned());
                self.record_repairs(days, false).await;
            }
            result?;
        }
        self.repair_pending().await;
        let sql = self.render(queries.publish_outcome, batch_id);
        let stored: Vec<StoredIdentity> = self
            .retry("read what was published", || {
                let mut query = self.client.query(&sql);
                for (name, value) in self.server.read_back_settings() {
                    query = query.with_setting(name, value);
                }
                query.fetch_all::<StoredIdentity>()
            })
            .await
            .map_err(|e| self.session_lost(e))?;
        let mut result = PublishResult::default();
        for row in stored {
            result.published.insert(row.ingest_id);
            result.present.insert(ReportIdentity {
                org_name: row.org_name,
                report_id: row.report_id,
                policy_domain: row.policy_domain,
                date_begin: row.date_begin,
            });
        }
        tracing::debug!(
            batch = %batch_id,
            present = result.present.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch published"
        );
        Ok(result)
    }

    /// The test fault of [`test_view_fails`]: the view's rows are lost (`records_daily`
    /// emptied) and the call fails as a busy server does (retried).
    async fn fail_a_view(&self) -> clickhouse::error::Result<()> {
        let db = &self.config.database;
        self.client
            .query(&format!("TRUNCATE TABLE {db}.records_daily"))
            .execute()
            .await?;
        Err(clickhouse::error::Error::BadResponse(format!(
            "Code: 252. DB::Exception: Too many parts (test fault: the view into {db}.records_daily failed after the records were committed)"
        )))
    }

    /// Repairs the rollups of the days a failed publish left pending (best effort: what
    /// fails stays pending, and is logged).
    async fn repair_pending(&self) {
        self.load_recorded_repairs().await;
        let pending: BTreeSet<(String, u32)> = std::mem::take(&mut *lock_repairs(&self.repairs));
        if pending.is_empty() {
            return;
        }
        test_abort_before_repair();
        let days = days_subquery(&pending);
        match self.repair_rollups(&days).await {
            Ok(()) => {
                tracing::info!(days = %days_text(&pending), "rollups repaired");
                self.record_repairs(&pending, true).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, days = %days_text(&pending), "cannot repair rollups yet");
                lock_repairs(&self.repairs).extend(pending);
            }
        }
    }

    /// Writes `days` to `rollup_repairs` as pending (`repaired` false) or repaired, so
    /// that a process that dies before repairing them leaves them to the next one. One
    /// attempt (the server may be what failed): a failure is logged, the days stay in this
    /// process's pending set all the same.
    async fn record_repairs(&self, days: &BTreeSet<(String, u32)>, repaired: bool) {
        let version = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let rows: Vec<RepairRow> = days
            .iter()
            .map(|(domain, day)| RepairRow {
                policy_domain: domain.clone(),
                day: u16::try_from(*day).unwrap_or(u16::MAX),
                version,
                repaired: u8::from(repaired),
            })
            .collect();
        let table = format!("{}.rollup_repairs", self.config.database);
        let once = self.insert_once(&table, &rows);
        let timeout = Duration::from_secs(self.config.request_timeout_secs);
        let result = match tokio::time::timeout(timeout, once).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, days = %days_text(days), repaired, "cannot record the rollup repairs in rollup_repairs");
        }
    }

    /// Adds the days `rollup_repairs` holds as pending (noted by a process that did not
    /// repair them) to this process's pending set, once per process (again after a
    /// failed read).
    async fn load_recorded_repairs(&self) {
        use std::sync::atomic::Ordering;
        if self.repairs_loaded.swap(true, Ordering::Relaxed) {
            return;
        }
        let db = &self.config.database;
        let sql = format!(
            "SELECT policy_domain, toUInt32(d) AS day FROM (SELECT policy_domain, day AS d, \
             argMax(repaired, version) AS last FROM {db}.rollup_repairs \
             GROUP BY policy_domain, day) WHERE last = 0"
        );
        let read = self
            .retry("read the pending rollup repairs", || {
                let mut query = self.client.query(&sql);
                for (name, value) in self.server.read_back_settings() {
                    query = query.with_setting(name, value);
                }
                query.fetch_all::<PendingRepair>()
            })
            .await;
        match read {
            Ok(rows) if rows.is_empty() => {}
            Ok(rows) => {
                let days: BTreeSet<(String, u32)> =
                    rows.into_iter().map(|r| (r.policy_domain, r.day)).collect();
                tracing::warn!(days = %days_text(&days), "rollup repairs left pending by an earlier run; repairing them");
                lock_repairs(&self.repairs).extend(days);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the pending rollup repairs; trying again after the next publish");
                self.repairs_loaded.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Brings `records_daily`, `reporter_daily` and `source_daily` back in line with
    /// `records` and `reports` for the (policy domain, day) pairs `days` (a subquery) selects, under
    /// the publish lock (`queries/repair_*.sql`).
    async fn repair_rollups(&self, days: &str) -> Result<(), StoreError> {
        let queries = self.queries();
        let failed = std::sync::atomic::AtomicBool::new(false);
        for (what, template) in [
            ("repair records_daily", queries.repair_records_daily),
            ("repair reporter_daily", queries.repair_reporter_daily),
            ("repair source_daily", queries.repair_source_daily),
        ] {
            let sql = self.render(template, Uuid::nil()).replace("{days}", days);
            self.execute_locked(what, &sql, &failed).await?;
        }
        Ok(())
    }

    /// `schema rebuild-rollups`: repairs the rollups of every day from `from` to `to`
    /// (`YYYY-MM-DD`, inclusive).
    pub async fn rebuild_rollups(&self, from: &str, to: &str) -> Result<(), StoreError> {
        for date in [from, to] {
            if !is_iso_date(date) {
                return Err(StoreError::BadReport(format!(
                    "{date:?} is not a date (YYYY-MM-DD, 1970 to 2105)"
                )));
            }
        }
        let db = &self.config.database;
        let range = format!("BETWEEN toDate('{from}') AND toDate('{to}')");
        let days = format!(
            "SELECT policy_domain, toDate(date_begin) FROM {db}.reports WHERE toDate(date_begin) {range} \
             UNION ALL SELECT policy_domain, day FROM {db}.records_daily WHERE day {range} \
             UNION ALL SELECT policy_domain, day FROM {db}.reporter_daily WHERE day {range} \
             UNION ALL SELECT policy_domain, day FROM {db}.source_daily WHERE day {range}"
        );
        self.repair_rollups(&days).await
    }

    /// Fills a query of `schema/queries/` in: staging tables, database, batch; comments
    /// and `;` dropped.
    fn render(&self, template: &str, batch_id: Uuid) -> String {
        self.render_staging(&split_statements(template).concat())
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
        let sql = self.render(STALE_STAGING_SQL, Uuid::nil());
        self.drop_partitions(&sql).await
    }

    /// Drops the partitions a query of `(table, partition)` rows lists.
    async fn drop_partitions(&self, sql: &str) -> Result<usize, StoreError> {
        let db = &self.config.database;
        let stale: Vec<PartitionRow> = self
            .retry("list staging partitions", || {
                self.client.query(sql).fetch_all::<PartitionRow>()
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

    /// Records that the mails `uids` of `mailbox` are about to be processed (together).
    pub async fn record_attempts(
        &self,
        mailbox: &str,
        uid_validity: u32,
        uids: &[u32],
    ) -> Result<(), StoreError> {
        let at = now();
        let host = rows::host_name();
        let rows: Vec<AttemptRow> = uids
            .iter()
            .map(|&uid| AttemptRow {
                mailbox: mailbox.to_owned(),
                uid_validity,
                uid,
                started_at: at,
                batch_size: uids.len() as u32,
                host: host.clone(),
            })
            .collect();
        self.insert_rows("mail_attempts", &rows).await
    }

    /// Attempts recorded so far at the mails of `mailbox` with UIDs in `uid_min..=uid_max`.
    pub async fn attempts(
        &self,
        mailbox: &str,
        uid_validity: u32,
        uid_min: u32,
        uid_max: u32,
    ) -> Result<HashMap<u32, u32>, StoreError> {
        let sql = self
            .render(self.queries().mail_attempts, Uuid::nil())
            .replace("{mailbox}", &sql_string(mailbox))
            .replace("{uid_validity}", &uid_validity.to_string())
            .replace("{uid_min}", &uid_min.to_string())
            .replace("{uid_max}", &uid_max.to_string());
        let found: Vec<AttemptCount> = self
            .retry("read mail attempts", || {
                self.client.query(&sql).fetch_all::<AttemptCount>()
            })
            .await?;
        Ok(found.into_iter().map(|a| (a.uid, a.attempts)).collect())
    }

    /// Drops `mail_attempts` partitions older than three months (single server; the
    /// cluster's expire by TTL).
    pub async fn drop_stale_attempts(&self) -> Result<usize, StoreError> {
        let sql = self.render(self.queries().stale_attempts, Uuid::nil());
        self.drop_partitions(&sql).await
    }

    /// Runs a query returning one number (for totals in tests and summaries).
    pub async fn query_u64(&self, sql: &str) -> Result<u64, StoreError> {
        let sql = sql.replace("{database}", &self.config.database);
        self.retry("query", || self.client.query(&sql).fetch_one::<u64>())
            .await
    }
}

/// Test-only fault (debug builds): a publish of more reports than
/// `DMARC_TEST_PUBLISH_MEMORY_LIMIT_REPORTS` fails as ClickHouse does when out of memory.
fn test_memory_limit(reports: usize) -> Option<StoreError> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let limit: usize = std::env::var("DMARC_TEST_PUBLISH_MEMORY_LIMIT_REPORTS")
        .ok()?
        .parse()
        .ok()?;
    (reports > limit).then(|| {
        StoreError::MemoryLimit(format!(
            "Code: 241. DB::Exception: Memory limit (test fault: over {limit} reports) exceeded"
        ))
    })
}

/// The pending repairs (a panic elsewhere cannot poison them for good).
fn lock_repairs(
    repairs: &Mutex<BTreeSet<(String, u32)>>,
) -> std::sync::MutexGuard<'_, BTreeSet<(String, u32)>> {
    repairs
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `SELECT policy_domain, day` of the given (policy domain, days since 1970) pairs.
fn days_subquery(days: &BTreeSet<(String, u32)>) -> String {
    let domains: Vec<String> = days.iter().map(|(d, _)| sql_string(d)).collect();
    let dates: Vec<String> = days.iter().map(|(_, n)| format!("toDate({n})")).collect();
    format!(
        "SELECT policy_domain, day FROM (SELECT [{}] AS domains, [{}] AS dates) \
         ARRAY JOIN domains AS policy_domain, dates AS day",
        domains.join(", "),
        dates.join(", ")
    )
}

/// `example.com 2025-03-01, ...` (at most 20, then a count), for logs.
fn days_text(days: &BTreeSet<(String, u32)>) -> String {
    let mut text: Vec<String> = days
        .iter()
        .take(20)
        .map(|(d, n)| format!("{d} {}", iso_date(*n)))
        .collect();
    if days.len() > 20 {
        text.push(format!("and {} more", days.len() - 20));
    }
    text.join(", ")
}

/// `YYYY-MM-DD` of a count of days since 1970-01-01.
fn iso_date(days: u32) -> String {
    let ym = batch::year_month(days.saturating_mul(86_400));
    let first = days_from_civil(ym / 100, ym % 100);
    format!("{:04}-{:02}-{:02}", ym / 100, ym % 100, days - first + 1)
}

/// Days since 1970-01-01 of the first of a month (proleptic Gregorian).
fn days_from_civil(year: u32, month: u32) -> u32 {
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let m = month as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as u32
}

/// Whether `text` is `YYYY-MM-DD` in 1970-2105, the years ClickHouse's `Date` holds on
/// every version (18.16 turns a later one into 1970-01-01); the server checks the rest.
pub(crate) fn is_iso_date(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    digits
        && text[..4]
            .parse::<u32>()
            .is_ok_and(|y| (1970..=2105).contains(&y))
}

/// Test-only fault (debug builds): with `DMARC_TEST_VIEW_FAILS_ONCE` set, the first
/// `publish records` of the process fails after its rows were committed, as when a
/// materialized view fails ([`Store::fail_a_view`]).
fn test_view_fails(what: &str) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    cfg!(debug_assertions)
        && what == "publish records"
        && std::env::var_os("DMARC_TEST_VIEW_FAILS_ONCE").is_some()
        && !FIRED.swap(true, Ordering::Relaxed)
}

/// A `rollup_repairs` row.
#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct RepairRow {
    policy_domain: String,
    /// Days since 1970 (a ClickHouse `Date`).
    day: u16,
    version: u64,
    repaired: u8,
}

/// A (policy domain, day) pair `rollup_repairs` holds as pending.
#[derive(Debug, clickhouse::Row, Deserialize)]
struct PendingRepair {
    policy_domain: String,
    day: u32,
}

/// Test-only fault (debug builds): with `DMARC_TEST_ABORT_BEFORE_REPAIR` set, the process
/// dies as a repair of the rollups is about to start (as if killed after a failed
/// publish statement).
fn test_abort_before_repair() {
    if cfg!(debug_assertions) && std::env::var_os("DMARC_TEST_ABORT_BEFORE_REPAIR").is_some() {
        eprintln!("test fault: aborting before the rollup repair");
        std::process::abort();
    }
}

/// What a publish did: a report whose `ingest_id` is in `published` was published by
/// it; one whose identity is in `present` under another `ingest_id` was a duplicate; any
/// other was not published (its staging was incomplete).
#[derive(Debug, Default)]
pub struct PublishResult {
    /// The `ingest_id`s stored in `reports` for the batch's identities.
    pub published: HashSet<Uuid>,
    /// The batch's identities that are in `reports` now (published now or before).
    pub present: HashSet<ReportIdentity>,
}

impl PublishResult {
    fn extend(&mut self, other: PublishResult) {
        self.published.extend(other.published);
        self.present.extend(other.present);
    }
}

/// A report's identity as stored in `reports`, with the import that stored it.
#[derive(Debug, clickhouse::Row, Deserialize)]
struct StoredIdentity {
    #[serde(with = "clickhouse::serde::uuid")]
    ingest_id: Uuid,
    policy_domain: String,
    date_begin: u32,
    org_name: String,
    report_id: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct VersionAndSetting {
    version: String,
    name: String,
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct AttemptRow {
    mailbox: String,
    uid_validity: u32,
    uid: u32,
    started_at: u32,
    batch_size: u32,
    host: String,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct AttemptCount {
    uid: u32,
    attempts: u32,
}

/// Whether a table engine keeps copies on several servers (`ReplicatedMergeTree`,
/// `SharedReplacingMergeTree` of a managed service...).
fn is_replicated(engine: &str) -> bool {
    engine.starts_with("Replicated") || engine.starts_with("Shared")
}

/// A ClickHouse string literal of `text`: quoted, with `\` and `'` escaped.
pub fn sql_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
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
    fn replicated_engines_are_told_from_single_server_ones() {
        for engine in [
            "ReplicatedReplacingMergeTree",
            "SharedReplacingMergeTree",
            "SharedMergeTree",
        ] {
            assert!(is_replicated(engine), "{engine}");
        }
        for engine in ["ReplacingMergeTree", "MergeTree", "Distributed"] {
            assert!(!is_replicated(engine), "{engine}");
        }
    }

    #[test]
    fn days_are_written_as_dates_and_checked_as_dates() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(19_782), "2024-02-29");
        assert_eq!(iso_date(49_710), "2106-02-07");
        assert!(is_iso_date("2025-03-01"));
        for bad in [
            "2025-3-01",
            "yesterday",
            "2025-03-01'; DROP",
            "2025/03/01",
            "2106-01-01",
            "1969-12-31",
        ] {
            assert!(!is_iso_date(bad), "{bad}");
        }
        let days: BTreeSet<(String, u32)> = (0..25).map(|n| ("a.example".into(), n)).collect();
        let text = days_text(&days);
        assert!(text.starts_with("a.example 1970-01-01, "), "{text}");
        assert!(text.ends_with("and 5 more"), "{text}");
        assert!(days_subquery(&days).contains("toDate(24)"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..30 {
            let d = backoff(attempt, 100, 5_000).as_millis() as u64;
            let step = (100u64 << (attempt - 1).min(20)).min(5_000);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d}");
        }
    }
}
