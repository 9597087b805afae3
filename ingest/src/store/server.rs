//! What the connected ClickHouse server is, and the settings each kind of statement sends
//! to it.
//!
//! In: the server's version and the names of the settings it knows (`system.settings`,
//! read once at connect). Out: [`ServerProfile`], whose lists of `(setting, value)` are
//! sent with every insert and every publish. A setting the server does not know is never
//! sent (ClickHouse refuses a query with an unknown setting: code 115), so the same binary
//! works from 18.16 (Debian 12) to current releases.
//!
//! Why each setting (see `schema/README.md`, "How exactly-once works"):
//! - the publish squashes its rows into one block per partition, so that each report lands
//!   in one part: `min_insert_block_size_*` (every version, also `_for_materialized_views`
//!   where known), one insert thread (`max_insert_threads`, 20.x+), no parallel
//!   `INSERT ... SELECT` across shards (`parallel_distributed_insert_select`) or replicas
//!   (`enable_parallel_replicas` / `allow_experimental_parallel_reading_from_replicas`);
//! - every insert is synchronous and visible when it returns: `async_insert = 0`
//!   (a profile may turn it on), and on a cluster `distributed_foreground_insert = 1`
//!   (`insert_distributed_sync` before 23.x);
//! - on a cluster the read-back after a publish is sequentially consistent
//!   (`select_sequential_consistency`), and the publish waits for every replica of the
//!   shard (`insert_quorum`).

use std::collections::HashSet;

/// The server's major version from which the crate's schema validation is used
/// (`RowBinaryWithNamesAndTypes` for inserts and reads; the crate supports the releases
/// that get security fixes, 24.x and later).
pub const VALIDATION_FROM_MAJOR: u32 = 24;

/// From this major version `insert_quorum = 'auto'` (a majority of the replicas) is
/// accepted.
const QUORUM_AUTO_FROM_MAJOR: u32 = 23;

/// Squashing bound: larger than any publish (which is bounded by rows and months).
const SQUASH_ALL: &str = "1099511627776";

/// The settings this importer may send, in the order they are listed to the server.
pub const CANDIDATE_SETTINGS: &[&str] = &[
    "async_insert",
    "distributed_foreground_insert",
    "insert_distributed_sync",
    "min_insert_block_size_rows",
    "min_insert_block_size_bytes",
    "min_insert_block_size_rows_for_materialized_views",
    "min_insert_block_size_bytes_for_materialized_views",
    "max_insert_threads",
    "parallel_distributed_insert_select",
    "enable_parallel_replicas",
    "allow_experimental_parallel_reading_from_replicas",
    "select_sequential_consistency",
    "insert_quorum",
];

/// The connected server, as far as statements depend on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerProfile {
    /// Major version (18 on Debian 12).
    pub major: u32,
    /// Which of [`CANDIDATE_SETTINGS`] the server knows.
    pub known: HashSet<String>,
    /// Writing to a cluster through Distributed tables.
    pub cluster: bool,
    /// Replicas per shard of the cluster (1 on a single server).
    pub replicas: u32,
    /// Without a configured cluster, `reports` is replicated all the same
    /// (`Replicated*` or `Shared*` engine: a managed service, replicas behind a load
    /// balancer): every write must reach a majority and every read must be consistent.
    pub replicated_storage: bool,
}

impl ServerProfile {
    /// A profile from the server's answers.
    pub fn new(major: u32, known: impl IntoIterator<Item = String>, cluster: bool) -> Self {
        ServerProfile {
            major,
            known: known.into_iter().collect(),
            cluster,
            replicas: 1,
            replicated_storage: false,
        }
    }

    fn knows(&self, name: &str) -> bool {
        self.known.contains(name)
    }

    /// Keeps the settings the server knows.
    fn only_known(&self, wanted: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        wanted
            .iter()
            .filter(|(name, _)| self.knows(name))
            .cloned()
            .collect()
    }

    /// Whether reads may reach a replica that lacks a write acknowledged elsewhere.
    fn reads_need_consistency(&self) -> bool {
        (self.cluster && self.replicas > 1) || self.replicated_storage
    }

    /// Whether to validate rows against the table's columns (the crate's
    /// `RowBinaryWithNamesAndTypes`): on 24.x and later.
    pub fn validates(&self) -> bool {
        self.major >= VALIDATION_FROM_MAJOR
    }

    /// The setting that makes an insert into a Distributed table reach every shard before
    /// it returns (renamed in 23.x; the old name is an alias there).
    fn foreground_insert(&self) -> Option<&'static str> {
        ["distributed_foreground_insert", "insert_distributed_sync"]
            .into_iter()
            .find(|name| self.knows(name))
    }

    /// Settings of every insert (staging, logs, attempts, the publish): synchronous and
    /// visible when it returns; on a replicated cluster, on every replica of the shard.
    pub fn insert_settings(&self) -> Vec<(&'static str, String)> {
        let mut wanted = vec![("async_insert", "0".to_owned())];
        if self.cluster {
            if let Some(name) = self.foreground_insert() {
                wanted.push((name, "1".to_owned()));
            }
            if self.replicas > 1 {
                wanted.push(("insert_quorum", self.replicas.to_string()));
            }
        } else if self.replicated_storage && self.major >= QUORUM_AUTO_FROM_MAJOR {
            wanted.push(("insert_quorum", "auto".to_owned()));
        }
        self.only_known(&wanted)
    }

    /// Settings of the publishing `INSERT ... SELECT`: everything of
    /// [`ServerProfile::insert_settings`], one block per partition, one insert stream,
    /// nothing spread over shards or replicas.
    pub fn publish_settings(&self) -> Vec<(&'static str, String)> {
        let mut wanted = self.insert_settings();
        for name in [
            "min_insert_block_size_rows",
            "min_insert_block_size_bytes",
            "min_insert_block_size_rows_for_materialized_views",
            "min_insert_block_size_bytes_for_materialized_views",
        ] {
            wanted.push((name, SQUASH_ALL.to_owned()));
        }
        wanted.push(("max_insert_threads", "1".to_owned()));
        wanted.push(("parallel_distributed_insert_select", "0".to_owned()));
        wanted.push(("enable_parallel_replicas", "0".to_owned()));
        wanted.push((
            "allow_experimental_parallel_reading_from_replicas",
            "0".to_owned(),
        ));
        // The guard reads what earlier publishes wrote, maybe through another replica.
        if self.reads_need_consistency() {
            wanted.push(("select_sequential_consistency", "1".to_owned()));
        }
        self.only_known(&wanted)
    }

    /// Settings of the read-back after a publish: on a replicated cluster, only replicas
    /// that have every quorum insert answer.
    pub fn read_back_settings(&self) -> Vec<(&'static str, String)> {
        let mut wanted = Vec::new();
        if self.reads_need_consistency() {
            wanted.push(("select_sequential_consistency", "1".to_owned()));
        }
        self.only_known(&wanted)
    }
}

/// The major version of a `version()` string (`18.16.1` -> 18); 0 when unreadable.
pub fn major_version(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `system.settings` of Debian 12's ClickHouse 18.16.1 lists of the candidates.
    fn clickhouse_18_16() -> Vec<String> {
        [
            "insert_distributed_sync",
            "min_insert_block_size_rows",
            "min_insert_block_size_bytes",
            "select_sequential_consistency",
            "insert_quorum",
        ]
        .map(String::from)
        .to_vec()
    }

    /// What a current server (26.x, as chdb-core's engine) lists: every candidate.
    fn clickhouse_26() -> Vec<String> {
        CANDIDATE_SETTINGS.iter().map(|s| s.to_string()).collect()
    }

    fn names(settings: &[(&'static str, String)]) -> Vec<&'static str> {
        settings.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn on_18_16_only_what_it_knows_is_sent() {
        let single = ServerProfile::new(18, clickhouse_18_16(), false);
        assert_eq!(names(&single.insert_settings()), Vec::<&str>::new());
        assert_eq!(
            names(&single.publish_settings()),
            ["min_insert_block_size_rows", "min_insert_block_size_bytes"]
        );
        assert!(!single.validates());
        let cluster = ServerProfile::new(18, clickhouse_18_16(), true);
        assert_eq!(
            names(&cluster.insert_settings()),
            ["insert_distributed_sync"]
        );
    }

    #[test]
    fn on_current_servers_one_report_stays_one_block() {
        let single = ServerProfile::new(26, clickhouse_26(), false);
        assert!(single.validates());
        let publish = single.publish_settings();
        for (name, value) in [
            ("async_insert", "0"),
            ("max_insert_threads", "1"),
            ("parallel_distributed_insert_select", "0"),
            ("enable_parallel_replicas", "0"),
            ("allow_experimental_parallel_reading_from_replicas", "0"),
            (
                "min_insert_block_size_rows_for_materialized_views",
                SQUASH_ALL,
            ),
        ] {
            assert!(
                publish.contains(&(name, value.to_owned())),
                "{name} = {value} missing from {publish:?}"
            );
        }
        // Neither the cluster-only settings nor a quorum on a single server.
        for name in ["distributed_foreground_insert", "insert_quorum"] {
            assert!(!names(&publish).contains(&name), "{name}");
        }
        assert_eq!(names(&single.insert_settings()), ["async_insert"]);
        assert!(single.read_back_settings().is_empty());
    }

    #[test]
    fn a_replicated_cluster_inserts_in_the_foreground_with_a_quorum_and_reads_consistently() {
        let mut cluster = ServerProfile::new(25, clickhouse_26(), true);
        cluster.replicas = 3;
        // The current name, not its old alias; the quorum of every replica.
        assert_eq!(
            names(&cluster.insert_settings()),
            [
                "async_insert",
                "distributed_foreground_insert",
                "insert_quorum"
            ]
        );
        assert!(cluster
            .publish_settings()
            .contains(&("insert_quorum", "3".to_owned())));
        assert_eq!(
            cluster.read_back_settings(),
            [("select_sequential_consistency", "1".to_owned())]
        );
        cluster.replicas = 1;
        assert!(cluster.read_back_settings().is_empty());
    }

    /// The CI check on the current engine (`deploy/dev/check_cluster_ddl.py`) publishes
    /// with these settings under a hostile profile and checks the parts: same list.
    #[test]
    fn the_engine_check_publishes_with_the_same_settings() {
        let check = include_str!("../../../deploy/dev/check_cluster_ddl.py");
        let start = check
            .find("PUBLISH_SETTINGS = (")
            .expect("PUBLISH_SETTINGS");
        let listed: Vec<String> = check[start..check[start..].find(')').unwrap() + start]
            .lines()
            .skip(1)
            .filter_map(|l| {
                l.trim()
                    .strip_prefix('"')?
                    .strip_suffix("\",")
                    .map(String::from)
            })
            .collect();
        let cluster = ServerProfile::new(26, clickhouse_26(), true);
        let ours: Vec<String> = cluster
            .publish_settings()
            .iter()
            .map(|(n, v)| format!("{n} = {v}"))
            .collect();
        assert_eq!(listed, ours);
    }

    #[test]
    fn replicated_storage_without_a_cluster_writes_to_a_majority_and_reads_consistently() {
        let mut managed = ServerProfile::new(25, clickhouse_26(), false);
        managed.replicated_storage = true;
        assert!(managed
            .insert_settings()
            .contains(&("insert_quorum", "auto".to_owned())));
        assert!(managed
            .publish_settings()
            .contains(&("select_sequential_consistency", "1".to_owned())));
        assert_eq!(
            managed.read_back_settings(),
            [("select_sequential_consistency", "1".to_owned())]
        );
    }

    #[test]
    fn versions_are_read_from_the_major_number() {
        assert_eq!(major_version("18.16.1"), 18);
        assert_eq!(major_version("26.9.2.1"), 26);
        assert_eq!(major_version("garbage"), 0);
    }
}
