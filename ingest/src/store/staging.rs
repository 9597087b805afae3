//! Where a batch's rows wait until they are published.
//!
//! In: the rows of a batch ([`Store::stage_rows`]). Out: rows in one of two places, named
//! in the publish queries as `{records_staging}` and `{reports_staging}`:
//! - **a session's temporary tables** (`staged_records`, `staged_reports`: `Memory`, in
//!   the HTTP session of the batch, [`Store::for_batch`]) on a single, unreplicated
//!   server. Each row is then written to disk once, by the publish: staging costs the
//!   server no sort, compression or merge, and the publish reads from memory (about half
//!   the server's work per row, see `schema/README.md`). The tables live as long as the
//!   session: dropped after the publish, or by the server when the session times out
//!   ([`session_timeout_secs`]: a crashed importer's rows), or when the server restarts; a batch whose session was
//!   lost fails as ClickHouse being unavailable (its inputs are tried again, never
//!   blamed), and the completeness check of the publish stays as a second guard.
//! - **the shared staging tables** (`records_staging`, `reports_staging`) on a cluster
//!   (a session is held by one server) and on replicated storage (a load balancer may
//!   send each request of a session to another replica).
//!
//! A staging insert that is sent again (its first acknowledgement may have been lost)
//! may stage a row twice; the publish then deduplicates the batch's rows
//! (`{records_dedup}`). The shared tables always deduplicate: several importers and
//! crashed runs write there.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use super::{Store, StoreError};

/// A staging table of the publish queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagingTable {
    Records,
    Reports,
}

impl StagingTable {
    /// The shared table (in the database).
    fn shared(self) -> &'static str {
        match self {
            StagingTable::Records => "records_staging",
            StagingTable::Reports => "reports_staging",
        }
    }

    /// The temporary table of a session.
    fn temporary(self) -> &'static str {
        match self {
            StagingTable::Records => "staged_records",
            StagingTable::Reports => "staged_reports",
        }
    }
}

/// The deduplication of staged rows in `publish_records.sql`: a row staged twice (a
/// staging insert sent again) is published once.
const RECORDS_DEDUP: &str = "LIMIT 1 BY ingest_id, record_index";

/// One batch's HTTP session on the server, whose temporary tables hold its staged rows.
#[derive(Debug)]
pub(super) struct StagingSession {
    id: String,
    /// The temporary tables exist (created before the first staging insert, once: a table
    /// that went away with the session must not be silently made again).
    created: tokio::sync::OnceCell<()>,
    /// A staging insert of the batch was sent more than once.
    resent: AtomicBool,
}

impl Store {
    /// The store a new batch stages and publishes through: on a single unreplicated
    /// server, with an HTTP session of its own whose temporary tables hold the batch's
    /// rows; elsewhere this store (the shared staging tables).
    pub fn for_batch(&self) -> Store {
        let mut store = self.clone();
        if self.config.cluster.is_empty() && !self.server.replicated_storage {
            let id = format!("dmarc-ingest-{}", Uuid::new_v4());
            // HTTP parameters, not settings; the crate sends both alike.
            store.client = self
                .client
                .clone()
                .with_setting("session_id", id.as_str())
                .with_setting(
                    "session_timeout",
                    session_timeout_secs(self.config.request_timeout_secs).to_string(),
                );
            store.session = Some(Arc::new(StagingSession {
                id,
                created: tokio::sync::OnceCell::new(),
                resent: AtomicBool::new(false),
            }));
        }
        store
    }

    /// The batch's staging session, if it stages in one.
    pub fn staging_session(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.as_str())
    }

    /// Stages rows of the batch into `table` (one INSERT, sent again on a transient
    /// failure). A session whose tables went away fails as [`StoreError::Unavailable`].
    pub async fn stage_rows<T>(&self, table: StagingTable, rows: &[T]) -> Result<(), StoreError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize,
    {
        let Some(session) = &self.session else {
            return self.insert_rows(table.shared(), rows).await;
        };
        if rows.is_empty() {
            return Ok(());
        }
        session
            .created
            .get_or_try_init(|| self.create_session_tables())
            .await?;
        let sent = AtomicU32::new(0);
        let result = self
            .insert_into(table.temporary(), rows, || {
                let first = sent.fetch_add(1, Ordering::Relaxed) == 0;
                first
                    && table == StagingTable::Records
                    && !session.resent.load(Ordering::Relaxed)
                    && test_ack_lost()
            })
            .await;
        if sent.into_inner() > 1 {
            session.resent.store(true, Ordering::Relaxed);
        }
        result.map_err(|e| self.session_lost(e))
    }

    async fn create_session_tables(&self) -> Result<(), StoreError> {
        let db = &self.config.database;
        for table in [StagingTable::Records, StagingTable::Reports] {
            self.execute(
                "create the batch's staging tables",
                &format!(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS {} AS {db}.{} ENGINE = Memory",
                    table.temporary(),
                    table.shared()
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// Frees the server's memory of this batch's session (best effort: the server drops
    /// the tables with the session anyway).
    pub async fn end_batch(&self) {
        let Some(session) = &self.session else {
            return;
        };
        if session.created.get().is_none() {
            return;
        }
        for table in [StagingTable::Records, StagingTable::Reports] {
            let sql = format!("DROP TEMPORARY TABLE IF EXISTS {}", table.temporary());
            if let Err(e) = self.client.query(&sql).execute().await {
                tracing::debug!(session = %session.id, error = %e, "cannot drop a staging table; the session's timeout will");
            }
        }
    }

    /// The publish queries' staging placeholders, filled in for this store.
    pub(super) fn render_staging(&self, sql: &str) -> String {
        let db = &self.config.database;
        let name = |table: StagingTable| match &self.session {
            Some(_) => table.temporary().to_owned(),
            None => format!("{db}.{}", table.shared()),
        };
        let dedup = match &self.session {
            Some(s) if !s.resent.load(Ordering::Relaxed) => "",
            _ => RECORDS_DEDUP,
        };
        sql.replace("{records_staging}", &name(StagingTable::Records))
            .replace("{reports_staging}", &name(StagingTable::Reports))
            .replace("{records_dedup}", dedup)
    }

    /// A failure that says a session's temporary table is unknown: the session (and the
    /// rows staged in it) went away; not the schema's fault.
    pub(super) fn session_lost(&self, e: StoreError) -> StoreError {
        match (&self.session, e) {
            (Some(session), StoreError::Schema(message))
                if message.contains(StagingTable::Records.temporary())
                    || message.contains(StagingTable::Reports.temporary()) =>
            {
                StoreError::Unavailable(format!(
                    "the batch's staging session {} is gone from the server (restarted, or the session timed out); the batch is tried again: {message}",
                    session.id
                ))
            }
            (_, e) => e,
        }
    }
}

/// How long the server keeps an idle batch session (and its staged rows): long enough
/// for the batch to wait behind a publish that takes the whole request timeout, twice,
/// never below the server's default (60 s) nor above its default maximum (3,600 s,
/// `max_session_timeout`). What a crashed importer staged is freed after it.
pub fn session_timeout_secs(request_timeout_secs: u64) -> u64 {
    request_timeout_secs.saturating_mul(2).clamp(60, 3_600)
}

/// Test-only fault (debug builds): with `DMARC_TEST_STAGING_ACK_LOST` set, the first
/// staging insert of each batch's records is reported as failed after the server
/// committed it, as when its acknowledgement is lost: it is sent again.
fn test_ack_lost() -> bool {
    cfg!(debug_assertions) && std::env::var_os("DMARC_TEST_STAGING_ACK_LOST").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store as `connect` makes it for a single server (no server needed to render).
    fn single_server() -> Store {
        Store {
            client: clickhouse::Client::default(),
            config: crate::config::ClickHouseConfig::default(),
            server: super::super::server::ServerProfile::default(),
            repairs: Arc::default(),
            repairs_loaded: Arc::default(),
            session: None,
        }
    }

    /// `publish_records.sql` as the store sends it, before the database and batch.
    fn publish_records(store: &Store) -> String {
        let sql = include_str!("../../../schema/queries/publish_records.sql");
        store.render_staging(&super::super::split_statements(sql).concat())
    }

    #[test]
    fn a_batch_on_a_single_server_stages_in_its_own_session() {
        let store = single_server();
        let (a, b) = (store.for_batch(), store.for_batch());
        assert!(store.staging_session().is_none());
        assert!(a.staging_session().is_some());
        assert_ne!(a.staging_session(), b.staging_session());
        let sql = publish_records(&a);
        assert!(sql.contains("FROM staged_records") && sql.contains("FROM staged_reports"));
        assert!(
            !sql.contains("LIMIT 1 BY") && !sql.contains("staging}"),
            "{sql}"
        );
        // A staging insert sent twice: the batch's rows are deduplicated.
        a.session
            .as_ref()
            .unwrap()
            .resent
            .store(true, Ordering::Relaxed);
        assert!(publish_records(&a).contains(RECORDS_DEDUP));
    }

    #[test]
    fn a_session_outlives_a_publish_that_takes_the_whole_request_timeout() {
        assert_eq!(session_timeout_secs(120), 240);
        assert_eq!(session_timeout_secs(5), 60);
        assert_eq!(session_timeout_secs(u64::MAX), 3_600);
    }

    #[test]
    fn clusters_and_replicated_storage_stage_in_the_shared_tables() {
        let mut cluster = single_server();
        cluster.config.cluster = "c".into();
        let mut replicated = single_server();
        replicated.server.replicated_storage = true;
        for store in [cluster, replicated] {
            let batch = store.for_batch();
            assert!(batch.staging_session().is_none());
            let sql = publish_records(&batch);
            let shared = format!("FROM {}.records_staging", batch.config.database);
            assert!(sql.contains(&shared), "{sql}");
            assert!(sql.contains(RECORDS_DEDUP));
        }
    }

    #[test]
    fn only_an_unknown_session_table_means_the_session_was_lost() {
        let batch = single_server().for_batch();
        let gone = StoreError::Schema(
            "Code: 60, e.displayText() = DB::Exception: Table default.staged_records doesn't exist.".into(),
        );
        assert!(
            matches!(batch.session_lost(gone.clone()), StoreError::Unavailable(m) if m.contains("staging session"))
        );
        let other = StoreError::Schema("Code: 60. Table dmarc.records doesn't exist".into());
        assert!(matches!(
            batch.session_lost(other.clone()),
            StoreError::Schema(_)
        ));
        // Without a session nothing is reinterpreted.
        assert!(matches!(
            single_server().session_lost(gone),
            StoreError::Schema(_)
        ));
    }
}
