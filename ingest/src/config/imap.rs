//! `[imap]` and `[[imap_accounts]]`: where the reports are read from -> a validated
//! [`ImapConfig`] per mailbox (pure checks; nothing connects here).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Default IMAP server.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// Default port: implicit TLS (`imaps`).
pub const DEFAULT_PORT: u16 = 993;

/// Default login.
pub const DEFAULT_USERNAME: &str = "reports";

/// Default folder the reports arrive in.
pub const DEFAULT_MAILBOX: &str = "INBOX";

/// Default folder processed mail is moved to after its rows are committed.
pub const DEFAULT_ARCHIVE_MAILBOX: &str = "Archive";

/// Default folder mail without a valid report is moved to.
pub const DEFAULT_INVALID_MAILBOX: &str = "Invalid";

/// Default messages fetched per round.
pub const DEFAULT_FETCH_BATCH: u32 = 1_000;
/// Default bytes of mail fetched per round (by the sizes the server reports first); a
/// larger message is fetched alone.
pub const DEFAULT_FETCH_BATCH_BYTES: u64 = 32 << 20;

/// Most read-ahead threads a mailbox may have.
pub const MAX_READ_AHEAD_THREADS: u32 = 16;
/// Default seconds between NOOPs that keep the session alive while a batch is written
/// (servers may log out a client silent for 30 minutes).
pub const DEFAULT_KEEPALIVE_SECS: u64 = 300;

/// Default IDLE length before it is re-issued: under the 29 minutes after which RFC 2177
/// lets a server drop an idle client.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 25 * 60;

/// Longest IDLE allowed (RFC 2177: re-issue at least every 29 minutes).
pub const MAX_IDLE_TIMEOUT_SECS: u64 = 29 * 60;

/// Default interval between NOOP polls when the server has no IDLE.
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 60;

/// Default time allowed for TCP connect, TLS, greeting and login together.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 30;

/// Default time allowed for each server response while a command runs (an inactivity
/// timeout: a large FETCH may take longer in total as long as responses keep coming).
pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 120;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Implicit TLS from the first byte (port 993).
    #[default]
    Tls,
    /// Plain connection upgraded with `STARTTLS` before login (port 143).
    Starttls,
    /// No TLS at all: only allowed to a loopback address (tests, a local proxy).
    None,
}

/// How the login is sent.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// `LOGIN user password`.
    #[default]
    Login,
    /// `AUTHENTICATE PLAIN` (SASL, RFC 4616): for servers with `LOGINDISABLED`.
    Plain,
}

/// `[imap]`: where the reports are read from (also the shape of each extra account).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// Server name or address; also the TLS server name (SNI and certificate check).
    pub host: String,
    /// Server port (993 for `tls`, 143 for `starttls`).
    #[serde(deserialize_with = "crate::config::number")]
    pub port: u16,
    /// `tls` (implicit), `starttls` or `none` (loopback hosts only).
    pub tls: TlsMode,
    /// Extra CA certificates (PEM) trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Login name.
    pub username: String,
    /// Password, inline or from the environment (`DMARC_INGEST_IMAP_PASSWORD`). Never
    /// logged or printed.
    pub password: String,
    /// File holding the password (one trailing newline trimmed); wins over `password`.
    pub password_file: Option<PathBuf>,
    /// `login` (the `LOGIN` command) or `plain` (`AUTHENTICATE PLAIN`).
    pub auth: AuthMethod,
    /// Folder the reports arrive in.
    pub mailbox: String,
    /// Folder processed mail is moved to (created if missing).
    pub archive_mailbox: String,
    /// Folder mail holding no valid report is moved to (created if missing).
    pub invalid_mailbox: String,
    /// Messages fetched per round.
    #[serde(deserialize_with = "crate::config::number")]
    pub fetch_batch: u32,
    /// Bytes of mail fetched per round (a larger message comes alone).
    #[serde(deserialize_with = "crate::config::number")]
    pub fetch_batch_bytes: u64,
    /// Threads that parse a batch's mail ahead of the one staging it (0: none, the batch's
    /// thread parses each mail itself; 1 is slower than 0). Default: one per core beyond
    /// two, at most four, none below four cores ([`crate::ahead::default_workers`]): on two
    /// cores the importer's thread, ClickHouse and the IMAP server keep both busy already.
    #[serde(deserialize_with = "crate::config::number")]
    pub read_ahead_threads: u32,
    /// Seconds between NOOPs while a slow batch is written.
    #[serde(deserialize_with = "crate::config::number")]
    pub keepalive_secs: u64,
    /// Seconds an IDLE lasts before it is re-issued (at most 29 minutes).
    #[serde(deserialize_with = "crate::config::number")]
    pub idle_timeout_secs: u64,
    /// Seconds between NOOP polls when the server has no IDLE.
    #[serde(deserialize_with = "crate::config::number")]
    pub poll_interval_secs: u64,
    /// Seconds allowed for TCP connect, TLS, greeting and login together.
    #[serde(deserialize_with = "crate::config::number")]
    pub connect_timeout_secs: u64,
    /// Seconds allowed for each server response while a command runs.
    #[serde(deserialize_with = "crate::config::number")]
    pub command_timeout_secs: u64,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            tls: TlsMode::Tls,
            ca_file: None,
            username: DEFAULT_USERNAME.into(),
            password: String::new(),
            password_file: None,
            auth: AuthMethod::Login,
            mailbox: DEFAULT_MAILBOX.into(),
            archive_mailbox: DEFAULT_ARCHIVE_MAILBOX.into(),
            invalid_mailbox: DEFAULT_INVALID_MAILBOX.into(),
            fetch_batch: DEFAULT_FETCH_BATCH,
            fetch_batch_bytes: DEFAULT_FETCH_BATCH_BYTES,
            read_ahead_threads: crate::ahead::default_workers() as u32,
            keepalive_secs: DEFAULT_KEEPALIVE_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            poll_interval_secs: DEFAULT_POLL_INTERVAL_SECS,
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
            command_timeout_secs: DEFAULT_COMMAND_TIMEOUT_SECS,
        }
    }
}

/// Prints everything but the password.
impl fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.password.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &password)
            .field("password_file", &self.password_file)
            .field("auth", &self.auth)
            .field("mailbox", &self.mailbox)
            .field("archive_mailbox", &self.archive_mailbox)
            .field("invalid_mailbox", &self.invalid_mailbox)
            .field("fetch_batch", &self.fetch_batch)
            .field("fetch_batch_bytes", &self.fetch_batch_bytes)
            .field("read_ahead_threads", &self.read_ahead_threads)
            .field("keepalive_secs", &self.keepalive_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("poll_interval_secs", &self.poll_interval_secs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("command_timeout_secs", &self.command_timeout_secs)
            .finish()
    }
}

impl ImapConfig {
    /// Pure checks that serde cannot express. Messages name the key without its section
    /// (the caller knows whether it is `[imap]` or an extra account).
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() || self.host.chars().any(char::is_whitespace) {
            return Err(format!("host {:?} is not a host name", self.host));
        }
        if self.port == 0 {
            return Err("port must not be 0".into());
        }
        if self.tls == TlsMode::None && !crate::tls::is_loopback_host(&self.host) {
            return Err(format!(
                "tls = \"none\" is only allowed to a loopback host (127.0.0.0/8, ::1, \
                 localhost), not {:?}: use \"tls\" or \"starttls\"",
                self.host
            ));
        }
        check_imap_string("username", &self.username)?;
        if self.username.is_empty() {
            return Err("username must not be empty".into());
        }
        // An empty password is allowed here (a config without `[imap]` serves `parse` and
        // `import`); `Mailbox::connect` refuses it.
        check_imap_string("password", &self.password)?;
        let folders = [
            ("mailbox", &self.mailbox),
            ("archive_mailbox", &self.archive_mailbox),
            ("invalid_mailbox", &self.invalid_mailbox),
        ];
        for (key, name) in folders {
            check_folder_name(key, name)?;
        }
        for (i, (key_a, a)) in folders.iter().enumerate() {
            for (key_b, b) in &folders[i + 1..] {
                if same_folder(a, b) {
                    return Err(format!("{key_a} and {key_b} must differ (both {a:?})"));
                }
            }
        }
        if self.fetch_batch == 0 {
            return Err("fetch_batch must be at least 1".into());
        }
        if self.read_ahead_threads > MAX_READ_AHEAD_THREADS {
            return Err(format!(
                "read_ahead_threads must be at most {MAX_READ_AHEAD_THREADS}"
            ));
        }
        if self.idle_timeout_secs == 0 || self.idle_timeout_secs > MAX_IDLE_TIMEOUT_SECS {
            return Err(format!(
                "idle_timeout_secs must be between 1 and {MAX_IDLE_TIMEOUT_SECS} \
                 (RFC 2177: re-issue IDLE at least every 29 minutes)"
            ));
        }
        let nonzero = [
            ("poll_interval_secs", self.poll_interval_secs),
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("command_timeout_secs", self.command_timeout_secs),
            ("fetch_batch_bytes", self.fetch_batch_bytes),
            ("keepalive_secs", self.keepalive_secs),
        ];
        if let Some((key, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{key} must be at least 1"));
        }
        Ok(())
    }

    /// Replaces `password` by the contents of `password_file`, if set (one trailing
    /// newline trimmed).
    pub fn load_secrets(&mut self) -> std::io::Result<()> {
        if let Some(path) = &self.password_file {
            self.password = crate::config::read_secret(path)?;
        }
        Ok(())
    }
}

/// A value sent as an IMAP quoted string cannot hold CR, LF or NUL.
fn check_imap_string(key: &str, value: &str) -> Result<(), String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!("{key} holds a line break or NUL"));
    }
    Ok(())
}

/// Folder names are sent as given (plus `&` -> `&-`), so they must be ASCII (no modified
/// UTF-7 here) and free of the LIST wildcards.
pub(crate) fn check_folder_name(key: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{key} must not be empty"));
    }
    if !name.is_ascii()
        || name
            .chars()
            .any(|c| c.is_ascii_control() || c == '*' || c == '%')
    {
        return Err(format!(
            "{key} {name:?}: only printable ASCII without * and % is supported"
        ));
    }
    Ok(())
}

/// INBOX is case-insensitive (RFC 3501 5.1); other names are compared as sent.
pub(crate) fn same_folder(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case("INBOX") || b.eq_ignore_ascii_case("INBOX") {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ImapConfig {
        ImapConfig {
            password: "pw".into(),
            ..ImapConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid() {
        ImapConfig::default().validate().unwrap();
        valid().validate().unwrap();
    }

    #[test]
    fn plain_text_only_to_loopback() {
        for host in [
            "127.0.0.1",
            "127.9.8.7",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
        ] {
            let c = ImapConfig {
                host: host.into(),
                tls: TlsMode::None,
                ..valid()
            };
            c.validate().unwrap_or_else(|e| panic!("{host}: {e}"));
        }
        for host in ["imap.example.org", "10.0.0.1", "::2", "localhost.example"] {
            let c = ImapConfig {
                host: host.into(),
                tls: TlsMode::None,
                ..valid()
            };
            let err = c.validate().unwrap_err();
            assert!(err.contains("loopback"), "{host}: {err}");
            let c = ImapConfig {
                tls: TlsMode::Starttls,
                ..c
            };
            c.validate().unwrap();
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let cases: Vec<(ImapConfig, &str)> = vec![
            (
                ImapConfig {
                    host: "".into(),
                    ..valid()
                },
                "host",
            ),
            (ImapConfig { port: 0, ..valid() }, "port"),
            (
                ImapConfig {
                    username: "".into(),
                    ..valid()
                },
                "username",
            ),
            (
                ImapConfig {
                    password: "a\nb".into(),
                    ..valid()
                },
                "password",
            ),
            (
                ImapConfig {
                    archive_mailbox: "".into(),
                    ..valid()
                },
                "archive_mailbox",
            ),
            (
                ImapConfig {
                    invalid_mailbox: "Archive".into(),
                    ..valid()
                },
                "archive_mailbox and invalid_mailbox",
            ),
            (
                ImapConfig {
                    archive_mailbox: "inbox".into(),
                    ..valid()
                },
                "mailbox and archive_mailbox",
            ),
            (
                ImapConfig {
                    archive_mailbox: "Archiv/Geprüft".into(),
                    ..valid()
                },
                "ASCII",
            ),
            (
                ImapConfig {
                    mailbox: "Reports*".into(),
                    ..valid()
                },
                "mailbox",
            ),
            (
                ImapConfig {
                    fetch_batch: 0,
                    ..valid()
                },
                "fetch_batch",
            ),
            (
                ImapConfig {
                    read_ahead_threads: MAX_READ_AHEAD_THREADS + 1,
                    ..valid()
                },
                "read_ahead_threads must be at most 16",
            ),
            (
                ImapConfig {
                    idle_timeout_secs: 30 * 60,
                    ..valid()
                },
                "idle_timeout_secs",
            ),
            (
                ImapConfig {
                    poll_interval_secs: 0,
                    ..valid()
                },
                "poll_interval_secs",
            ),
            (
                ImapConfig {
                    command_timeout_secs: 0,
                    ..valid()
                },
                "command_timeout_secs",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        // Folder names differing only in case are different folders (except INBOX).
        ImapConfig {
            archive_mailbox: "archive".into(),
            invalid_mailbox: "Archive".into(),
            ..valid()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn numbers_may_be_strings_and_unknown_keys_are_refused() {
        let c: ImapConfig = toml::from_str(
            "host = \"imap.example.org\"\nport = \"143\"\ntls = \"starttls\"\n\
             auth = \"plain\"\nfetch_batch = \" 50 \"\nidle_timeout_secs = 600\n\
             poll_interval_secs = \"5\"\nconnect_timeout_secs = \"7\"\n\
             read_ahead_threads = \"2\"\n",
        )
        .unwrap();
        assert_eq!(c.read_ahead_threads, 2);
        assert_eq!(c.port, 143);
        assert_eq!(c.tls, TlsMode::Starttls);
        assert_eq!(c.auth, AuthMethod::Plain);
        assert_eq!(c.fetch_batch, 50);
        assert_eq!(c.idle_timeout_secs, 600);
        assert_eq!(c.poll_interval_secs, 5);
        assert_eq!(c.connect_timeout_secs, 7);
        assert_eq!(c.mailbox, DEFAULT_MAILBOX);
        let err = toml::from_str::<ImapConfig>("port = 70000\n").unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        let err = toml::from_str::<ImapConfig>("port = \"imaps\"\n").unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
        let err = toml::from_str::<ImapConfig>("tls = \"ssl\"\n").unwrap_err();
        assert!(err.to_string().contains("ssl"), "{err}");
        let err = toml::from_str::<ImapConfig>("mailboxes = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("mailboxes"), "{err}");
    }

    #[test]
    fn password_is_not_printed() {
        let c = ImapConfig {
            password: "hunter2-secret".into(),
            ..ImapConfig::default()
        };
        let printed = format!("{c:?} {c:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(printed.contains("reports"), "{printed}");
    }

    #[test]
    fn password_file_loses_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret \n\n").unwrap();
        let mut c = ImapConfig {
            password: "inline".into(),
            password_file: Some(path.clone()),
            ..ImapConfig::default()
        };
        c.load_secrets().unwrap();
        assert_eq!(c.password, "s3cret \n");
        std::fs::write(&path, "crlf\r\n").unwrap();
        c.load_secrets().unwrap();
        assert_eq!(c.password, "crlf");
        c.password_file = Some(dir.path().join("missing"));
        let err = c.load_secrets().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }
}
