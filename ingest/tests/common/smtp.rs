//! The dev SMTP server (deploy/dev/smtp.sh) for tests: an instance of its own per test
//! (its own ports and mail directory), and the mail it received.

use std::path::PathBuf;
use std::process::Command;

use super::repo_root;

/// The login the dev server takes.
pub const USER: &str = "dmarc";
pub const PASSWORD: &str = "dmarc-test-password";

/// One received mail: the envelope and the parsed message's raw bytes.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub port: u16,
    pub user: Option<String>,
    pub raw: Vec<u8>,
}

/// A dev SMTP server on `port` (plain), `port + 1` (STARTTLS), `port + 2` (TLS).
pub struct SmtpServer {
    pub port: u16,
}

impl SmtpServer {
    /// Starts an instance of its own, with no mail from earlier runs.
    pub fn own(port: u16) -> SmtpServer {
        let server = SmtpServer { port };
        server.script("stop");
        let _ = std::fs::remove_dir_all(server.dir().join("mail"));
        server.script("start");
        server
    }

    pub fn script(&self, action: &str) {
        let out = Command::new(repo_root().join("deploy/dev/smtp.sh"))
            .arg(action)
            .env("DMARC_SMTP_PORT", self.port.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "smtp.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn dir(&self) -> PathBuf {
        let state = std::env::var_os("DMARC_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".state"));
        state.join(format!("smtp-{}", self.port))
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// The mail received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let dir = self.dir().join("mail");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .iter()
            .map(|eml| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap())
                        .unwrap();
                Received {
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_owned())
                        .collect(),
                    port: meta["port"].as_u64().unwrap() as u16,
                    user: meta["user"].as_str().map(str::to_owned),
                    raw: std::fs::read(eml).unwrap(),
                }
            })
            .collect()
    }

    /// The environment for `dmarc-ingest` to send through the STARTTLS port with login.
    pub fn env(&self, state: &std::path::Path) -> Vec<(String, String)> {
        let password_file = state.join("smtp-password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        [
            ("DMARC_INGEST_SMTP_HOST", "localhost".to_owned()),
            ("DMARC_INGEST_SMTP_PORT", (self.port + 1).to_string()),
            ("DMARC_INGEST_SMTP_TLS", "starttls".to_owned()),
            ("DMARC_INGEST_SMTP_USERNAME", USER.to_owned()),
            (
                "DMARC_INGEST_SMTP_PASSWORD_FILE",
                password_file.display().to_string(),
            ),
            (
                "DMARC_INGEST_SMTP_CA_FILE",
                self.ca_file().display().to_string(),
            ),
            (
                "DMARC_INGEST_SMTP_FROM",
                "DMARC reports <dmarc@centre.test>".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("deploy/dev/smtp.sh"))
            .arg("stop")
            .env("DMARC_SMTP_PORT", self.port.to_string())
            .output();
    }
}
