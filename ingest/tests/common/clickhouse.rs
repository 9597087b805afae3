//! The real ClickHouse for integration tests: started by the dev script, one database
//! per test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use dmarc_ingest::config::ClickHouseConfig;
use dmarc_ingest::store::Store;

use super::repo_root;

/// Starts the shared dev ClickHouse once (idempotent script) and returns its URL.
pub fn shared_server() -> &'static str {
    static STARTED: OnceLock<String> = OnceLock::new();
    STARTED.get_or_init(|| {
        let script = repo_root().join("deploy/dev/clickhouse.sh");
        let out = Command::new(&script).arg("start").output().unwrap();
        assert!(
            out.status.success(),
            "{} start failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::env::var("DMARC_CH_HTTP_PORT").unwrap_or_else(|_| "8123".into());
        format!("http://127.0.0.1:{port}")
    })
}

/// The shared dev ClickHouse's HTTPS URL (started if needed) and the test CA its
/// certificate is signed by.
pub fn shared_https_server() -> (String, PathBuf) {
    shared_server();
    let port = std::env::var("DMARC_CH_HTTPS_PORT").unwrap_or_else(|_| "8443".into());
    (
        format!("https://127.0.0.1:{port}"),
        shared_state().join("clickhouse/tls/ca.pem"),
    )
}

/// The state directory of the shared dev servers.
fn shared_state() -> PathBuf {
    std::env::var_os("DMARC_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".state"))
}

/// A test's own database on a server.
pub struct TestDb {
    pub url: String,
    pub database: String,
    /// The CA to trust for an `https://` URL (`[clickhouse] ca_file`).
    pub ca_file: Option<PathBuf>,
    runtime: tokio::runtime::Runtime,
}

impl TestDb {
    /// A fresh (dropped, then created by `schema apply`) database named after the test.
    pub fn fresh(name: &str) -> TestDb {
        Self::fresh_on(shared_server(), name)
    }

    pub fn fresh_on(url: &str, name: &str) -> TestDb {
        Self::fresh_with_ca(url, None, name)
    }

    /// The same over `https://`, trusting `ca_file` (and the system's roots).
    pub fn fresh_with_ca(url: &str, ca_file: Option<&Path>, name: &str) -> TestDb {
        let db = TestDb {
            url: url.to_owned(),
            database: format!("test_{name}"),
            ca_file: ca_file.map(Path::to_owned),
            runtime: tokio::runtime::Runtime::new().unwrap(),
        };
        db.sql(&format!("DROP DATABASE IF EXISTS {}", db.database));
        let out = db.cli(&["schema", "apply"]);
        assert!(
            out.status.success(),
            "schema apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        db
    }

    pub fn config(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            url: self.url.clone(),
            ca_file: self.ca_file.clone(),
            database: self.database.clone(),
            max_attempts: 2,
            retry_initial_ms: 50,
            retry_max_ms: 200,
            ..ClickHouseConfig::default()
        }
    }

    /// Environment that points the binary at this database.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("DMARC_INGEST_CLICKHOUSE_URL".into(), self.url.clone()),
            (
                "DMARC_INGEST_CLICKHOUSE_DATABASE".into(),
                self.database.clone(),
            ),
            ("DMARC_INGEST_LOG".into(), "warn".into()),
            // DNS lookups (the daemon's background naming of sources) go to the local
            // test server only, never to the machine's resolver.
            (
                "DMARC_INGEST_DNS_NAMESERVERS".into(),
                format!(
                    "127.0.0.1:{}",
                    std::env::var("DMARC_DNS_PORT").unwrap_or_else(|_| "5353".into())
                ),
            ),
        ];
        if let Some(ca) = &self.ca_file {
            env.push((
                "DMARC_INGEST_CLICKHOUSE_CA_FILE".into(),
                ca.display().to_string(),
            ));
        }
        env
    }

    /// Runs `dmarc-ingest ARGS` against this database.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dmarc-ingest"));
        c.args(args).envs(self.env());
        c
    }

    /// `curl -sS --fail-with-body` (trusting `ca_file`, if any).
    fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "--fail-with-body"]);
        if let Some(ca) = &self.ca_file {
            c.arg("--cacert").arg(ca);
        }
        c
    }

    /// Runs a statement over HTTP.
    pub fn sql(&self, sql: &str) {
        self.sql_in_session("", sql);
    }

    /// Runs a statement over HTTP in the session `session_id` (none if empty).
    pub fn sql_in_session(&self, session_id: &str, sql: &str) {
        let url = match session_id {
            "" => format!("{}/", self.url),
            id => format!("{}/?session_id={id}", self.url),
        };
        let out = self
            .curl()
            .args(["--data-binary", sql, &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// A number from a query; `{database}` is this test's database.
    pub fn number(&self, sql: &str) -> u64 {
        let config = self.config();
        self.runtime.block_on(async {
            let store = Store::connect(&config).await.unwrap();
            store.query_u64(sql).await.unwrap()
        })
    }

    /// The rows of a query as tab-separated fields; `{database}` is this test's database.
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let sql = format!(
            "{} FORMAT TabSeparated",
            sql.replace("{database}", &self.database)
        );
        let out = self
            .curl()
            .args(["--data-binary", &sql, &format!("{}/", self.url)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// `(report identity) -> record count` of what analysts see.
    pub fn records_per_report(&self) -> HashMap<String, u64> {
        self.rows(
            "SELECT concat(org_name, '|', report_id, '|', policy_domain, '|', toString(toUInt32(date_begin))) AS k, count() \
             FROM {database}.records GROUP BY k",
        )
        .into_iter()
        .map(|row| (row[0].clone(), row[1].parse().unwrap()))
        .collect()
    }
}

/// Writes `count` gzip reports of `records` records each into `dir`; returns their
/// paths. Report `i` has id `gen-{tag}-{i}`; every record counts `i + 1` messages.
pub fn write_reports(dir: &Path, tag: &str, count: usize, records: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let path = dir.join(format!("{tag}-{i}.xml.gz"));
            let file = std::fs::File::create(&path).unwrap();
            let mut gz = flate2::write::GzEncoder::new(
                std::io::BufWriter::new(file),
                flate2::Compression::fast(),
            );
            write!(
                gz,
                "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>gen.example</org_name>\
                 <email>r@gen.example</email><report_id>gen-{tag}-{i}</report_id>\
                 <date_range><begin>{}</begin><end>{}</end></date_range></report_metadata>\
                 <policy_published><domain>d{}.example</domain><p>none</p></policy_published>",
                1_700_000_000 + 86_400 * (i as u64 % 60),
                1_700_086_399 + 86_400 * (i as u64 % 60),
                i % 7
            )
            .unwrap();
            for r in 0..records {
                write!(
                    gz,
                    "<record><row><source_ip>10.{}.{}.{}</source_ip><count>{}</count>\
                     <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>\
                     <identifiers><header_from>d.example</header_from></identifiers>\
                     <auth_results><dkim><domain>d.example</domain><selector>s</selector><result>pass</result></dkim>\
                     <spf><domain>d.example</domain><result>fail</result></spf></auth_results></record>",
                    (r >> 16) & 255,
                    (r >> 8) & 255,
                    r & 255,
                    i + 1
                )
                .unwrap();
            }
            write!(gz, "</feedback>").unwrap();
            gz.finish().unwrap().flush().unwrap();
            path
        })
        .collect()
}

/// A ClickHouse of its own (other ports, own state), so stopping it harms no other test.
pub struct OwnServer {
    state: tempfile::TempDir,
    http_port: u16,
    https_port: u16,
    tcp_port: u16,
}

impl OwnServer {
    pub fn start() -> OwnServer {
        let s = OwnServer {
            state: tempfile::tempdir().unwrap(),
            http_port: 18_123 + (std::process::id() % 500) as u16,
            https_port: 17_443 + (std::process::id() % 500) as u16,
            tcp_port: 19_000 + (std::process::id() % 500) as u16,
        };
        s.script("start");
        s
    }

    pub fn script(&self, action: &str) {
        let out = Command::new(repo_root().join("deploy/dev/clickhouse.sh"))
            .arg(action)
            .env("DMARC_STATE_DIR", self.state.path())
            .env("DMARC_CH_HTTP_PORT", self.http_port.to_string())
            .env("DMARC_CH_HTTPS_PORT", self.https_port.to_string())
            .env("DMARC_CH_TCP_PORT", self.tcp_port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "clickhouse.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL: the server goes away at once, mid-query.
    pub fn crash(&self) {
        let pid =
            std::fs::read_to_string(self.state.path().join("clickhouse/clickhouse-server.pid"))
                .unwrap();
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.script("stop");
    }
}

/// The `users.d` directory of the shared server (`deploy/dev/clickhouse.sh` keeps its
/// config in `$DMARC_STATE_DIR/clickhouse/etc`): a file there adds users and profiles,
/// which the server loads within seconds, without a restart.
pub fn shared_users_d() -> PathBuf {
    shared_state().join("clickhouse/etc/users.d")
}
