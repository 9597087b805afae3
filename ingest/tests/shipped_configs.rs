//! Every configuration file the repository ships (`deploy/**/*.toml`) works as shipped:
//! loaded by the binary with only the hosts and secrets pointed at the dev servers (the
//! way an operator overrides them, by the environment), it applies the schema and imports
//! reports, over `https://` where the file says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::clickhouse::{shared_https_server, shared_server, write_reports, TestDb};

/// `deploy/**/*.toml`, sorted.
fn shipped_configs() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![common::repo_root().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The `[clickhouse] url` a config file sets.
fn configured_url(path: &Path) -> String {
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    table["clickhouse"]["url"].as_str().unwrap().to_owned()
}

#[test]
fn every_shipped_config_applies_the_schema_and_imports() {
    let configs = shipped_configs();
    assert!(
        configs.len() >= 2,
        "the example and the compose configs: {configs:?}"
    );
    let work = tempfile::tempdir().unwrap();
    let reports = work.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    write_reports(&reports, "shipped", 3, 4);
    let empty_secret = work.path().join("empty-password");
    std::fs::write(&empty_secret, "\n").unwrap();
    for (i, config) in configs.iter().enumerate() {
        let name = config.strip_prefix(common::repo_root()).unwrap_or(config);
        let https = configured_url(config).starts_with("https://");
        let db = if https {
            let (url, ca) = shared_https_server();
            TestDb::fresh_with_ca(&url, Some(&ca), &format!("shipped_{i}"))
        } else {
            TestDb::fresh_on(shared_server(), &format!("shipped_{i}"))
        };
        let run = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_dmarc-ingest"))
                .arg("--config")
                .arg(config)
                .args(args)
                .envs(db.env())
                .env("DMARC_INGEST_CLICKHOUSE_USER", "default")
                .env("DMARC_INGEST_CLICKHOUSE_PASSWORD_FILE", &empty_secret)
                .env("DMARC_INGEST_IMAP_PASSWORD_FILE", &empty_secret)
                .env("DMARC_INGEST_METRICS_LISTEN", "")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{} {args:?}: {stderr}",
                name.display()
            );
            stderr
        };
        run(&["schema", "apply"]);
        let imported = run(&["import", reports.to_str().unwrap()]);
        assert!(
            imported.contains("3 reports imported (12 records"),
            "{}: {imported}",
            name.display()
        );
        assert_eq!(db.number("SELECT count() FROM {database}.records"), 12);
    }
}
