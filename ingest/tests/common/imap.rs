//! The real dovecot for integration tests, through `deploy/dev/dovecot.sh`: the shared
//! one, or one of a test's own (own state and ports, so it can be cut without harming
//! other tests).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dmarc_ingest::config::{ImapConfig, TlsMode};
use dmarc_ingest::mailbox::Mailbox;

use super::repo_root;

/// A dovecot: its state directory and plain IMAP port.
pub struct Dovecot {
    state: PathBuf,
    pub port: u16,
    tls_port: u16,
    /// Kept alive for an own instance (removed on drop).
    own: Option<tempfile::TempDir>,
}

impl Dovecot {
    /// The shared dev instance (started if needed).
    pub fn shared() -> Dovecot {
        let d = Dovecot {
            state: std::env::var_os("DMARC_STATE_DIR")
                .map(PathBuf::from)
                // Canonical: the script recognises its server by the config's path.
                .unwrap_or_else(|| repo_root().canonicalize().unwrap().join(".state")),
            port: env_port("DMARC_IMAP_PORT", 1143),
            tls_port: env_port("DMARC_IMAPS_PORT", 1993),
            own: None,
        };
        // Once per test binary: concurrent starts of one instance would race.
        static STARTED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        STARTED.get_or_init(|| {
            d.script(&["install"]);
            d.script(&["start"]);
        });
        d
    }

    /// An instance of the test's own, on other ports.
    pub fn own(offset: u16) -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let base = 21_000 + (std::process::id() % 200) as u16 * 10 + offset;
        let d = Dovecot {
            state: dir.path().to_owned(),
            port: base,
            tls_port: base + 5,
            own: Some(dir),
        };
        d.script(&["start"]);
        d
    }

    pub fn script(&self, args: &[&str]) {
        let out = Command::new(repo_root().join("deploy/dev/dovecot.sh"))
            .args(args)
            .env("DMARC_STATE_DIR", &self.state)
            .env("DMARC_IMAP_PORT", self.port.to_string())
            .env("DMARC_IMAPS_PORT", self.tls_port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dovecot.sh {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fresh login `user` (its old mail removed) with password `secret`.
    pub fn fresh_user(&self, user: &str) {
        // add-user rewrites the passwd file: one at a time.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let mail = self.state.join("dovecot/mail").join(user);
        let _ = std::fs::remove_dir_all(&mail);
        self.script(&["add-user", user, "secret"]);
        // dovecot re-reads its passwd file at most once a second.
        std::thread::sleep(Duration::from_millis(1100));
    }

    pub fn deliver(&self, user: &str, mailbox: &str, files: &[PathBuf]) {
        for chunk in files.chunks(200) {
            let mut args = vec!["deliver".to_string(), user.into(), mailbox.into()];
            args.extend(chunk.iter().map(|p| p.display().to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.script(&args);
        }
    }

    /// The config of `user`'s INBOX on this server (plain IMAP on loopback).
    pub fn account(&self, user: &str) -> ImapConfig {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: TlsMode::None,
            username: user.into(),
            password: "secret".into(),
            ..ImapConfig::default()
        }
    }

    /// Environment pointing the binary's `[imap]` at `user` on this server.
    pub fn env(&self, user: &str) -> Vec<(String, String)> {
        vec![
            ("DMARC_INGEST_IMAP_HOST".into(), "127.0.0.1".into()),
            ("DMARC_INGEST_IMAP_PORT".into(), self.port.to_string()),
            ("DMARC_INGEST_IMAP_TLS".into(), "none".into()),
            ("DMARC_INGEST_IMAP_USERNAME".into(), user.into()),
            ("DMARC_INGEST_IMAP_PASSWORD".into(), "secret".into()),
            ("DMARC_INGEST_IMAP_POLL_INTERVAL_SECS".into(), "1".into()),
        ]
    }

    /// Messages in each of `folders` of `user` (0 for a missing folder).
    pub fn counts(&self, user: &str, folders: &[&str]) -> Vec<usize> {
        let account = self.account(user);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut mb = tokio::time::timeout(Duration::from_secs(20), Mailbox::connect(&account))
                .await
                .unwrap()
                .unwrap();
            let mut out = Vec::new();
            for f in folders {
                let n = match mb.select(f).await {
                    Ok(_) => mb.uids().await.unwrap().len(),
                    Err(_) => 0,
                };
                out.push(n);
            }
            let _ = mb.logout().await;
            out
        })
    }

    /// Kills every IMAP session process of this server (the connection is cut).
    pub fn cut_sessions(&self) {
        let pid_file = self.state.join("dovecot/run/master.pid");
        let master = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let master = master.trim();
        assert!(
            !master.is_empty(),
            "no master.pid in {}",
            pid_file.display()
        );
        let status = Command::new("pkill")
            .args(["-9", "-P", master, "-f", "imap"])
            .status()
            .unwrap();
        assert!(status.success(), "no IMAP process to cut");
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if self.own.is_some() {
            let _ = Command::new(repo_root().join("deploy/dev/dovecot.sh"))
                .arg("stop")
                .env("DMARC_STATE_DIR", &self.state)
                .env("DMARC_IMAP_PORT", self.port.to_string())
                .env("DMARC_IMAPS_PORT", self.tls_port.to_string())
                .output();
        }
    }
}

fn env_port(name: &str, default: u16) -> u16 {
    std::env::var(name)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

/// Wraps report files into mails (`deploy/dev/wrap-as-mail.py`); `.eml`/mbox are copied.
pub fn as_mails(out: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let status = Command::new("python3")
        .arg(repo_root().join("deploy/dev/wrap-as-mail.py"))
        .arg(out)
        .args(files)
        .status()
        .unwrap();
    assert!(status.success());
    let mut mails: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    mails.sort();
    mails
}
