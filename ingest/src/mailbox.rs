//! Mailbox: the IMAP side of the daemon.
//!
//! In: an [`ImapConfig`] (one `[imap]` section or one extra account). Out: an authenticated
//! [`Mailbox`] that lists the UIDs of a folder ([`Mailbox::uids`]), hands out raw messages
//! by UID ([`Mailbox::fetch`], never marking them `\Seen`, bodies over the size cap left on
//! the server), moves them to the archive or invalid folder afterwards
//! ([`Mailbox::move_to`]) and waits for new mail ([`Mailbox::idle`], IDLE or NOOP polling).
//!
//! What can fail ([`MailboxError`]): the TCP connection, TLS (an untrusted certificate is
//! permanent), the login (wrong credentials are permanent, `[UNAVAILABLE]` is transient),
//! a command the server refuses (`NO`, transient unless its response code says otherwise)
//! or calls malformed (`BAD`, permanent), a `BYE`, a timeout. After a `NO` or `BAD` the
//! session is still usable; after any other error its state is unknown: drop the
//! [`Mailbox`] and connect again.
//!
//! Quirks of `async-imap` 0.12 that shape this module:
//! - its stream-returning commands (`uid_fetch`, `uid_search`, `uid_store`, `list`,
//!   `noop`, `capabilities`, `expunge`) drop the tagged completion without looking at it,
//!   so a `NO` or `BAD` reads as an empty success. Every command after login is
//!   therefore run by one helper here that reads the responses itself and checks the
//!   tagged status; the library's `login`, `authenticate`, `logout` and IDLE (`init`,
//!   `wait_with_timeout`, `done`) do check it and are used as they are.
//! - its `select` quotes the name but does not write `&` as `&-` (modified UTF-7):
//!   dovecot refuses such a name. Folder names are quoted here.
//! - IDLE's `wait_with_timeout` timeout is an inactivity timeout that every
//!   `* OK Still here` resets (dovecot sends one every 2 minutes), so it alone never
//!   ends a 25-minute IDLE; the deadline is enforced here. The connection closing during
//!   IDLE is reported as `ManualInterrupt`.
//! - its parse errors quote the whole unparsed buffer (a message body, megabytes);
//!   error texts are cut to [`MAX_ERROR_TEXT`] here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{
    AttributeValue, Capability, MailboxDatum, NameAttribute, Response, ResponseCode, Status,
};
use async_imap::{Client, Session};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

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
pub const DEFAULT_FETCH_BATCH: u32 = 200;
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
/// Longest UID set put into one command line; longer sets are split over several commands
/// (dovecot refuses lines over 64 KiB, other servers less).
pub const MAX_UID_SET_CHARS: usize = 4000;
/// Longest server text kept in an error.
pub const MAX_ERROR_TEXT: usize = 300;

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
        if self.tls == TlsMode::None && !is_loopback(&self.host) {
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
            let text = std::fs::read_to_string(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("password_file {}: {e}", path.display()))
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            self.password = text.strip_suffix('\r').unwrap_or(text).to_owned();
        }
        Ok(())
    }
}

/// True for 127.0.0.0/8, ::1 (also in brackets) and `localhost`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
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
fn check_folder_name(key: &str, name: &str) -> Result<(), String> {
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
fn same_folder(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case("INBOX") || b.eq_ignore_ascii_case("INBOX") {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Why an IMAP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// The configuration cannot work (bad CA file, no trusted roots, bad folder name).
    #[error("IMAP configuration: {0}")]
    Config(String),
    /// The TCP connection could not be made.
    #[error("cannot connect to IMAP server {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    /// TLS failed for a reason that retrying will not fix (untrusted or mismatched
    /// certificate, no common protocol version).
    #[error("TLS with IMAP server: {0}")]
    Tls(String),
    /// The server refused the credentials.
    #[error("IMAP login refused: {0}")]
    Auth(String),
    /// The server could not check the credentials now (`[UNAVAILABLE]`).
    #[error("IMAP login temporarily impossible: {0}")]
    AuthUnavailable(String),
    /// The server answered `NO` to a command.
    #[error("IMAP server refused {command}: {message}")]
    Refused {
        command: &'static str,
        message: String,
        transient: bool,
    },
    /// The server answered `BAD`: the command was malformed or not supported.
    #[error("IMAP server rejected {command} as invalid: {message}")]
    Rejected {
        command: &'static str,
        message: String,
    },
    /// The server closed the session (`BYE`, or the connection ended).
    #[error("IMAP server closed the connection: {0}")]
    Bye(String),
    /// The server sent something this client cannot use.
    #[error("IMAP protocol: {0}")]
    Protocol(String),
    /// Reading from or writing to the connection failed.
    #[error("IMAP connection, during {during}: {source}")]
    Io {
        during: &'static str,
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("IMAP server did not answer in time during {0}")]
    Timeout(&'static str),
}

impl MailboxError {
    /// Whether trying again later (on a new connection) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            MailboxError::Config(_)
            | MailboxError::Tls(_)
            | MailboxError::Auth(_)
            | MailboxError::Rejected { .. } => false,
            MailboxError::Refused { transient, .. } => *transient,
            MailboxError::Connect { .. }
            | MailboxError::AuthUnavailable(_)
            | MailboxError::Bye(_)
            | MailboxError::Protocol(_)
            | MailboxError::Io { .. }
            | MailboxError::Timeout(_) => true,
        }
    }
}

/// Response codes (RFC 5530 and others) after which a refused command will fail again.
const PERMANENT_CODES: &[&str] = &[
    "AUTHENTICATIONFAILED",
    "AUTHORIZATIONFAILED",
    "NOPERM",
    "NONEXISTENT",
    "CANNOT",
    "CLIENTBUG",
    "PRIVACYREQUIRED",
    "TRYCREATE",
];

/// The bracketed response code at the start of a server text (`[ALREADYEXISTS] ...`), as
/// imap-proto leaves the codes it does not know in the text.
fn response_code(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('[')?;
    let end = rest.find([']', ' '])?;
    Some(&rest[..end])
}

/// Cuts a server text to [`MAX_ERROR_TEXT`] characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// A tagged `NO` or `BAD` as an error.
fn refusal(command: &'static str, status: &Status, text: &str) -> MailboxError {
    let message = clip(text);
    match status {
        Status::Bad => MailboxError::Rejected { command, message },
        _ => {
            let transient = !response_code(text)
                .is_some_and(|code| PERMANENT_CODES.iter().any(|p| code.eq_ignore_ascii_case(p)));
            MailboxError::Refused {
                command,
                message,
                transient,
            }
        }
    }
}

/// A response text with its code in front again, as sent: imap-proto takes the codes it
/// knows out of the text.
fn outcome_text(outcome: &async_imap::imap_proto::Outcome<'_>) -> String {
    let info = outcome.information.as_deref().unwrap_or("");
    let code = match &outcome.code {
        None => return info.to_owned(),
        Some(ResponseCode::TryCreate) => "TRYCREATE".to_owned(),
        Some(ResponseCode::Alert) => "ALERT".to_owned(),
        Some(ResponseCode::Parse) => "PARSE".to_owned(),
        Some(ResponseCode::ReadOnly) => "READ-ONLY".to_owned(),
        Some(other) => format!("{other:?}"),
    };
    format!("[{code}] {info}")
}

/// An async-imap error from `during` as ours.
fn imap_error(during: &'static str, e: async_imap::error::Error) -> MailboxError {
    use async_imap::error::Error as E;
    match e {
        E::Io(source) => io_error(during, source),
        E::ConnectionLost => MailboxError::Bye(format!("connection lost during {during}")),
        E::No(text) => MailboxError::Refused {
            command: during,
            transient: !PERMANENT_CODES.iter().any(|c| text.contains(c)),
            message: clip(&library_text(&text)),
        },
        E::Bad(text) => MailboxError::Rejected {
            command: during,
            message: clip(&library_text(&text)),
        },
        E::Validate(v) => MailboxError::Config(format!("{during}: {v}")),
        other => MailboxError::Protocol(clip(&format!("{during}: {other}"))),
    }
}

fn io_error(during: &'static str, source: std::io::Error) -> MailboxError {
    // The stream's parse errors carry the unparsed input: keep the error short.
    let source = if source.to_string().len() > MAX_ERROR_TEXT {
        std::io::Error::new(source.kind(), clip(&source.to_string()))
    } else {
        source
    };
    MailboxError::Io { during, source }
}

/// async-imap formats `NO`/`BAD` as `code: .., info: Some("text")` (or `information:
/// Some("text")`): keep the text.
fn library_text(text: &str) -> String {
    match text.split_once("Some(\"") {
        Some((_, rest)) => rest
            .split("\")")
            .next()
            .unwrap_or(rest)
            .replace("\\\"", "\""),
        None => text.to_owned(),
    }
}

/// What the server offers that this client uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `IDLE` (RFC 2177): otherwise [`Mailbox::idle`] polls with NOOP.
    pub idle: bool,
    /// `MOVE` (RFC 6851): otherwise COPY + STORE \Deleted + EXPUNGE.
    pub r#move: bool,
    /// `UIDPLUS` (RFC 4315): `UID EXPUNGE` removes only the moved messages.
    pub uidplus: bool,
}

/// The state of a folder just selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// UIDs are only comparable while this stays the same.
    pub uid_validity: u32,
    /// The UID the next message will get, if the server said.
    pub uid_next: Option<u32>,
    /// Messages in the folder.
    pub exists: u32,
}

/// One message as fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    /// Size in octets: the server's `RFC822.SIZE`, or the bytes received if more.
    pub size: u64,
    /// The whole message as stored (CRLF line ends); empty when `too_large`.
    pub raw: Vec<u8>,
    /// Larger than the cap given to [`Mailbox::fetch`]: not downloaded, quarantine it.
    pub too_large: bool,
}

impl fmt::Debug for FetchedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedMessage")
            .field("uid", &self.uid)
            .field("size", &self.size)
            .field("raw_len", &self.raw.len())
            .field("too_large", &self.too_large)
            .finish()
    }
}

/// Why [`Mailbox::idle`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleOutcome {
    /// New messages arrived in the selected folder (or may have: look).
    NewData,
    /// The timeout passed without news.
    TimedOut,
    /// The stop future resolved.
    Stopped,
}

/// The connection under the session: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Transport for T {}
type Io = Box<dyn Transport>;

/// What a [`Mailbox`] knows besides its session.
#[derive(Debug, Clone)]
struct State {
    host: String,
    username: String,
    caps: Capabilities,
    command_timeout: Duration,
    poll_interval: Duration,
    /// The folder selected last, for logs.
    selected: Option<String>,
    /// An `EXISTS` or `RECENT` arrived since the last [`Mailbox::uids`].
    new_data: bool,
}

/// An authenticated IMAP connection.
pub struct Mailbox {
    session: Session<Io>,
    state: State,
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("state", &self.state)
            .finish()
    }
}

/// `AUTHENTICATE PLAIN`: authorization id empty, then user and password.
struct PlainAuth<'a> {
    username: &'a str,
    password: &'a str,
}

impl async_imap::Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.username.len() + self.password.len() + 2);
        out.push(0);
        out.extend_from_slice(self.username.as_bytes());
        out.push(0);
        out.extend_from_slice(self.password.as_bytes());
        out
    }
}

impl Mailbox {
    /// Connects, sets up TLS as configured, logs in and reads the capabilities.
    pub async fn connect(cfg: &ImapConfig) -> Result<Mailbox, MailboxError> {
        if cfg.password.is_empty() {
            return Err(MailboxError::Config(format!(
                "no password for {} (set password or password_file)",
                cfg.username
            )));
        }
        let limit = Duration::from_secs(cfg.connect_timeout_secs);
        let mailbox = timeout(limit, Self::connect_inner(cfg))
            .await
            .map_err(|_| MailboxError::Timeout("connect and login"))??;
        info!(
            host = %cfg.host,
            port = cfg.port,
            user = %cfg.username,
            idle = mailbox.state.caps.idle,
            has_move = mailbox.state.caps.r#move,
            uidplus = mailbox.state.caps.uidplus,
            "IMAP session ready"
        );
        Ok(mailbox)
    }

    async fn connect_inner(cfg: &ImapConfig) -> Result<Mailbox, MailboxError> {
        debug!(host = %cfg.host, port = cfg.port, tls = ?cfg.tls, "connecting to IMAP server");
        let tcp = TcpStream::connect((cfg.host.as_str(), cfg.port))
            .await
            .map_err(|source| MailboxError::Connect {
                host: cfg.host.clone(),
                port: cfg.port,
                source,
            })?;
        // Commands are small and answered one at a time: don't let Nagle delay them.
        tcp.set_nodelay(true).map_err(|e| io_error("connect", e))?;
        let client: Client<Io> = match cfg.tls {
            TlsMode::None => {
                let mut client = Client::new(Box::new(tcp) as Io);
                read_greeting(&mut client).await?;
                client
            }
            TlsMode::Tls => {
                let mut client = Client::new(tls_handshake(cfg, tcp).await?);
                read_greeting(&mut client).await?;
                client
            }
            TlsMode::Starttls => {
                let mut client = Client::new(tcp);
                read_greeting(&mut client).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| match imap_error("STARTTLS", e) {
                        MailboxError::Refused { message, .. }
                        | MailboxError::Rejected { message, .. } => {
                            MailboxError::Tls(format!("the server does not do STARTTLS: {message}"))
                        }
                        other => other,
                    })?;
                // Anything the server sent after its OK is dropped with the plain-text
                // client (RFC 3207 command injection). No greeting follows the handshake.
                Client::new(tls_handshake(cfg, client.into_inner()).await?)
            }
        };
        let session = match cfg.auth {
            AuthMethod::Login => client
                .login(&cfg.username, &cfg.password)
                .await
                .map_err(|(e, _)| login_error("LOGIN", e))?,
            AuthMethod::Plain => client
                .authenticate(
                    "PLAIN",
                    PlainAuth {
                        username: &cfg.username,
                        password: &cfg.password,
                    },
                )
                .await
                .map_err(|(e, _)| login_error("AUTHENTICATE PLAIN", e))?,
        };
        let mut mailbox = Mailbox {
            session,
            state: State {
                host: cfg.host.clone(),
                username: cfg.username.clone(),
                caps: Capabilities::default(),
                command_timeout: Duration::from_secs(cfg.command_timeout_secs),
                poll_interval: Duration::from_secs(cfg.poll_interval_secs),
                selected: None,
                new_data: false,
            },
        };
        // Asked again after login: servers announce more (or other) capabilities then.
        let mut caps = Capabilities::default();
        let mut all = Vec::new();
        mailbox
            .command("CAPABILITY", "CAPABILITY", |resp| {
                if let Response::Capabilities(list) = resp {
                    for cap in list {
                        if let Capability::Atom(name) = cap {
                            all.push(name.to_string());
                            match name.to_ascii_uppercase().as_str() {
                                "IDLE" => caps.idle = true,
                                "MOVE" => caps.r#move = true,
                                "UIDPLUS" => caps.uidplus = true,
                                _ => {}
                            }
                        }
                    }
                }
            })
            .await?;
        debug!(host = %cfg.host, capabilities = %all.join(" "), "IMAP capabilities");
        mailbox.state.caps = caps;
        Ok(mailbox)
    }

    /// What the server offers.
    pub fn capabilities(&self) -> &Capabilities {
        &self.state.caps
    }

    /// Turns off an extension the server announces but implements badly (and lets tests
    /// run the fallbacks against a server that has them all).
    pub fn capabilities_mut(&mut self) -> &mut Capabilities {
        &mut self.state.caps
    }

    /// Creates folder `name` unless it exists (another client creating it meanwhile is
    /// fine).
    pub async fn ensure_folder(&mut self, name: &str) -> Result<(), MailboxError> {
        let quoted = quote(name)?;
        let mut exists = false;
        self.command("LIST", &format!("LIST \"\" {quoted}"), |resp| {
            if let Response::MailboxData(MailboxDatum::List(list)) = resp {
                let selectable = !list.name_attributes.iter().any(|a| match a {
                    NameAttribute::NoSelect => true,
                    NameAttribute::Extension(x) => x.eq_ignore_ascii_case("\\NonExistent"),
                    _ => false,
                });
                if selectable && same_folder(&list.name, name) {
                    exists = true;
                }
            }
        })
        .await?;
        if exists {
            return Ok(());
        }
        match self
            .command("CREATE", &format!("CREATE {quoted}"), |_| {})
            .await
        {
            Ok(()) => {
                info!(host = %self.state.host, folder = name, "created IMAP folder");
                Ok(())
            }
            Err(MailboxError::Refused { message, .. })
                if response_code(&message)
                    .is_some_and(|c| c.eq_ignore_ascii_case("ALREADYEXISTS")) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Selects folder `name` (read-write: messages will be moved out of it).
    pub async fn select(&mut self, name: &str) -> Result<Selected, MailboxError> {
        let quoted = quote(name)?;
        let (mut uid_validity, mut uid_next, mut exists) = (None, None, 0);
        self.command("SELECT", &format!("SELECT {quoted}"), |resp| match resp {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => match outcome.code {
                Some(ResponseCode::UidValidity(v)) => uid_validity = Some(v),
                Some(ResponseCode::UidNext(v)) => uid_next = Some(v),
                _ => {}
            },
            Response::MailboxData(MailboxDatum::Exists(n)) => exists = *n,
            _ => {}
        })
        .await?;
        let uid_validity = uid_validity.ok_or_else(|| {
            MailboxError::Protocol(format!("SELECT {name:?} gave no UIDVALIDITY"))
        })?;
        // The EXISTS above and news from before are about this SELECT or the folder
        // selected before: not new mail.
        while self.session.unsolicited_responses.try_recv().is_ok() {}
        self.state.new_data = false;
        self.state.selected = Some(name.to_owned());
        debug!(
            host = %self.state.host,
            mailbox = name,
            uid_validity,
            uid_next,
            exists,
            "selected"
        );
        Ok(Selected {
            uid_validity,
            uid_next,
            exists,
        })
    }

    /// The UIDs of the selected folder's messages not flagged `\Deleted`, ascending.
    pub async fn uids(&mut self) -> Result<Vec<u32>, MailboxError> {
        // What arrives from here on is news for the next call.
        self.drain_unsolicited();
        self.state.new_data = false;
        let mut found = BTreeSet::new();
        self.command("UID SEARCH", "UID SEARCH UNDELETED", |resp| {
            if let Response::MailboxData(MailboxDatum::Search(uids)) = resp {
                found.extend(uids.iter().copied());
            }
        })
        .await?;
        Ok(found.into_iter().collect())
    }

    /// Fetches the messages `uids` of the selected folder without marking them `\Seen`,
    /// ascending by UID. A message over `max_bytes` comes back with `too_large` set and no
    /// body: only its size is fetched. UIDs that no longer exist are left out.
    ///
    /// Memory: every returned body is held at once; the caller bounds it by the number of
    /// UIDs it asks for (`fetch_batch`) times `max_bytes`.
    pub async fn fetch(
        &mut self,
        uids: &[u32],
        max_bytes: u64,
    ) -> Result<Vec<FetchedMessage>, MailboxError> {
        let wanted: BTreeSet<u32> = uids.iter().copied().collect();
        let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
        for set in uid_sets(uids, MAX_UID_SET_CHARS) {
            self.command(
                "UID FETCH",
                &format!("UID FETCH {set} (UID RFC822.SIZE)"),
                |resp| {
                    if let Some((uid, attrs)) = fetch_of(resp, &wanted) {
                        for a in attrs {
                            if let AttributeValue::Rfc822Size(size) = a {
                                sizes.insert(uid, u64::from(*size));
                            }
                        }
                    }
                },
            )
            .await?;
        }
        let mut out: BTreeMap<u32, FetchedMessage> = BTreeMap::new();
        let mut small = Vec::new();
        for (&uid, &size) in &sizes {
            if size > max_bytes {
                out.insert(uid, too_large(uid, size));
            } else {
                small.push(uid);
            }
        }
        // A partial fetch of one octet more than the cap: a server that under-reports
        // RFC822.SIZE still cannot send more than that.
        let cap = max_bytes.saturating_add(1).min(u64::from(u32::MAX));
        let body_wanted: BTreeSet<u32> = small.iter().copied().collect();
        for set in uid_sets(&small, MAX_UID_SET_CHARS) {
            let mut bodies: Vec<(u32, Vec<u8>)> = Vec::new();
            self.command(
                "UID FETCH",
                &format!("UID FETCH {set} (UID BODY.PEEK[]<0.{cap}>)"),
                |resp| {
                    if let Some((uid, attrs)) = fetch_of(resp, &body_wanted) {
                        for a in attrs {
                            if let AttributeValue::BodySection {
                                section: None,
                                data: Some(data),
                                ..
                            } = a
                            {
                                bodies.push((uid, data.to_vec()));
                            }
                        }
                    }
                },
            )
            .await?;
            for (uid, raw) in bodies {
                let reported = sizes.get(&uid).copied().unwrap_or(0);
                let got = raw.len() as u64;
                if got > max_bytes {
                    warn!(
                        host = %self.state.host,
                        mailbox = self.state.selected.as_deref().unwrap_or(""),
                        uid,
                        reported,
                        "message larger than its RFC822.SIZE said and than the cap"
                    );
                    out.insert(uid, too_large(uid, got));
                } else {
                    out.insert(
                        uid,
                        FetchedMessage {
                            uid,
                            size: reported.max(got),
                            raw,
                            too_large: false,
                        },
                    );
                }
            }
        }
        debug!(
            host = %self.state.host,
            mailbox = self.state.selected.as_deref().unwrap_or(""),
            asked = uids.len(),
            fetched = out.len(),
            "fetched messages"
        );
        Ok(out.into_values().collect())
    }

    /// Moves the messages `uids` of the selected folder to `folder`: `UID MOVE` if the
    /// server has MOVE, else `UID COPY`, `\Deleted`, and `UID EXPUNGE` of exactly these
    /// (with UIDPLUS) or a plain `EXPUNGE` (which also removes any other message someone
    /// flagged `\Deleted`).
    pub async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), MailboxError> {
        if uids.is_empty() {
            return Ok(());
        }
        let target = quote(folder)?;
        let caps = self.state.caps;
        for set in uid_sets(uids, MAX_UID_SET_CHARS) {
            if caps.r#move {
                self.command("UID MOVE", &format!("UID MOVE {set} {target}"), |_| {})
                    .await?;
                continue;
            }
            self.command("UID COPY", &format!("UID COPY {set} {target}"), |_| {})
                .await?;
            self.command(
                "UID STORE",
                &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
                |_| {},
            )
            .await?;
            if caps.uidplus {
                self.command("UID EXPUNGE", &format!("UID EXPUNGE {set}"), |_| {})
                    .await?;
            } else {
                self.command("EXPUNGE", "EXPUNGE", |_| {}).await?;
            }
        }
        info!(
            host = %self.state.host,
            mailbox = self.state.selected.as_deref().unwrap_or(""),
            folder,
            count = uids.len(),
            has_move = caps.r#move,
            "moved messages"
        );
        Ok(())
    }

    /// Waits up to `timeout` for new mail in the selected folder, or until `stop`
    /// resolves, and hands the mailbox back. Uses IDLE (ended with DONE) when the server
    /// has it, else NOOP every `poll_interval_secs`. Returns `NewData` at once if news
    /// came in since the last [`Mailbox::uids`].
    pub async fn idle(
        mut self,
        timeout: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<(Mailbox, IdleOutcome), MailboxError> {
        let mut stop = std::pin::pin!(stop);
        self.drain_unsolicited();
        if self.state.new_data {
            return Ok((self, IdleOutcome::NewData));
        }
        let deadline = Instant::now() + timeout;
        if !self.state.caps.idle {
            return self.poll(deadline, stop).await;
        }
        let Mailbox { session, mut state } = self;
        let command_timeout = state.command_timeout;
        let mut handle = session.idle();
        tokio::time::timeout(command_timeout, handle.init())
            .await
            .map_err(|_| MailboxError::Timeout("IDLE"))?
            .map_err(|e| imap_error("IDLE", e))?;
        debug!(
            host = %state.host,
            mailbox = state.selected.as_deref().unwrap_or(""),
            ?timeout,
            "idling"
        );
        let outcome = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (wait, _interrupt) = handle.wait_with_timeout(remaining);
            tokio::select! {
                r = wait => match r.map_err(|e| imap_error("IDLE", e))? {
                    IdleResponse::NewData(resp) => match resp.parsed() {
                        Response::MailboxData(MailboxDatum::Exists(_))
                        | Response::MailboxData(MailboxDatum::Recent(_)) => {
                            break IdleOutcome::NewData;
                        }
                        Response::Data { status: Status::Bye, outcome } => {
                            return Err(MailboxError::Bye(clip(
                                outcome.information.as_deref().unwrap_or("BYE during IDLE"),
                            )));
                        }
                        // EXPUNGE, FETCH (flags): not new mail.
                        _ => continue,
                    },
                    IdleResponse::Timeout => break IdleOutcome::TimedOut,
                    // Only the end of the stream: this handle's stop source is never used.
                    IdleResponse::ManualInterrupt => {
                        return Err(MailboxError::Bye("connection ended during IDLE".into()));
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break IdleOutcome::TimedOut,
                _ = &mut stop => break IdleOutcome::Stopped,
            }
        };
        let session = tokio::time::timeout(command_timeout, handle.done())
            .await
            .map_err(|_| MailboxError::Timeout("IDLE DONE"))?
            .map_err(|e| imap_error("IDLE DONE", e))?;
        state.new_data = false;
        let mut mailbox = Mailbox { session, state };
        mailbox.drain_unsolicited();
        // Mail that came in while DONE was on its way is news too.
        let outcome = match outcome {
            IdleOutcome::TimedOut if mailbox.state.new_data => IdleOutcome::NewData,
            other => other,
        };
        debug!(host = %mailbox.state.host, ?outcome, "idle ended");
        Ok((mailbox, outcome))
    }

    /// The IDLE stand-in: NOOP every poll interval until news, the deadline or `stop`.
    async fn poll(
        mut self,
        deadline: Instant,
        mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(Mailbox, IdleOutcome), MailboxError> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok((self, IdleOutcome::TimedOut));
            }
            let next = (now + self.state.poll_interval).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = &mut stop => return Ok((self, IdleOutcome::Stopped)),
            }
            self.noop().await?;
            if self.state.new_data {
                return Ok((self, IdleOutcome::NewData));
            }
        }
    }

    /// NOOP: keeps the connection alive and collects news about the selected folder.
    pub async fn noop(&mut self) -> Result<(), MailboxError> {
        self.command("NOOP", "NOOP", |_| {}).await
    }

    /// Ends the session politely.
    pub async fn logout(mut self) -> Result<(), MailboxError> {
        timeout(self.state.command_timeout, self.session.logout())
            .await
            .map_err(|_| MailboxError::Timeout("LOGOUT"))?
            .map_err(|e| imap_error("LOGOUT", e))?;
        debug!(host = %self.state.host, user = %self.state.username, "logged out");
        Ok(())
    }

    /// Notes news the library put on its unsolicited channel (during SELECT, IDLE DONE).
    fn drain_unsolicited(&mut self) {
        use async_imap::types::UnsolicitedResponse as U;
        while let Ok(r) = self.session.unsolicited_responses.try_recv() {
            if matches!(r, U::Exists(_) | U::Recent(_)) {
                self.state.new_data = true;
            }
        }
    }

    /// Runs `command` (named `what` in errors), passes every untagged response to
    /// `on_data`, and checks the tagged completion. Each response must come within the
    /// command timeout.
    async fn command(
        &mut self,
        what: &'static str,
        command: &str,
        mut on_data: impl FnMut(&Response<'_>),
    ) -> Result<(), MailboxError> {
        let limit = self.state.command_timeout;
        let tag = timeout(limit, self.session.run_command(command))
            .await
            .map_err(|_| MailboxError::Timeout(what))?
            .map_err(|e| imap_error(what, e))?;
        loop {
            let resp = timeout(limit, self.session.read_response())
                .await
                .map_err(|_| MailboxError::Timeout(what))?
                .map_err(|e| io_error(what, e))?
                .ok_or_else(|| MailboxError::Bye(format!("connection ended during {what}")))?;
            match resp.parsed() {
                Response::Done {
                    tag: done,
                    status,
                    outcome,
                } if *done == tag => {
                    return match status {
                        Status::Ok => Ok(()),
                        other => Err(refusal(what, other, &outcome_text(outcome))),
                    };
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    return Err(MailboxError::Bye(clip(
                        outcome.information.as_deref().unwrap_or("BYE"),
                    )));
                }
                Response::MailboxData(MailboxDatum::Exists(_))
                | Response::MailboxData(MailboxDatum::Recent(_)) => {
                    self.state.new_data = true;
                    on_data(resp.parsed());
                }
                // Untagged NO/BAD are warnings; [ALERT] texts must reach a human
                // (RFC 3501 7.1).
                Response::Data { status, outcome }
                    if *status != Status::Ok
                        || matches!(outcome.code, Some(ResponseCode::Alert)) =>
                {
                    warn!(
                        host = %self.state.host,
                        command = what,
                        ?status,
                        text = %clip(outcome.information.as_deref().unwrap_or("")),
                        "IMAP server says"
                    );
                    on_data(resp.parsed());
                }
                other => on_data(other),
            }
        }
    }
}

/// The UID and attributes of a FETCH response for one of `wanted` (servers may send
/// FETCH responses for other messages, e.g. flag changes by another client).
fn fetch_of<'r, 'a>(
    resp: &'r Response<'a>,
    wanted: &BTreeSet<u32>,
) -> Option<(u32, &'r [AttributeValue<'a>])> {
    let Response::Fetch(_, attrs) = resp else {
        return None;
    };
    let uid = attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(u) => Some(*u),
        _ => None,
    })?;
    wanted.contains(&uid).then_some((uid, attrs.as_slice()))
}

fn too_large(uid: u32, size: u64) -> FetchedMessage {
    FetchedMessage {
        uid,
        size,
        raw: Vec::new(),
        too_large: true,
    }
}

/// Reads the server greeting; `BYE` (busy, refusing) or PREAUTH (cannot log in as the
/// configured user) is an error.
async fn read_greeting<T>(client: &mut Client<T>) -> Result<(), MailboxError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug,
{
    let greeting = client
        .read_response()
        .await
        .map_err(|e| io_error("greeting", e))?
        .ok_or_else(|| MailboxError::Bye("connection ended before the greeting".into()))?;
    match greeting.parsed() {
        Response::Data {
            status: Status::Ok, ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(MailboxError::Bye(clip(
            outcome.information.as_deref().unwrap_or("BYE"),
        ))),
        other => Err(MailboxError::Protocol(clip(&format!(
            "unexpected greeting: {other:?}"
        )))),
    }
}

/// A failed LOGIN / AUTHENTICATE: `[UNAVAILABLE]` is transient, other refusals are not.
fn login_error(during: &'static str, e: async_imap::error::Error) -> MailboxError {
    use async_imap::error::Error as E;
    match e {
        E::No(text) | E::Bad(text) => {
            let text = clip(&library_text(&text));
            if response_code(&text).is_some_and(|c| c.eq_ignore_ascii_case("UNAVAILABLE")) {
                MailboxError::AuthUnavailable(text)
            } else {
                MailboxError::Auth(text)
            }
        }
        E::Validate(v) => MailboxError::Config(format!("{during}: {v}")),
        other => imap_error(during, other),
    }
}

/// TLS over `tcp` to `cfg.host`, trusting the system roots and `cfg.ca_file`.
async fn tls_handshake(cfg: &ImapConfig, tcp: TcpStream) -> Result<Io, MailboxError> {
    let connector = tls_connector(cfg.ca_file.as_deref())?;
    let host = cfg.host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| MailboxError::Config(format!("host {:?} as a TLS name: {e}", cfg.host)))?;
    match connector.connect(name, tcp).await {
        Ok(tls) => Ok(Box::new(tls)),
        Err(e) => {
            // rustls errors (certificate, alerts) come wrapped in io::Error.
            if let Some(tls_error) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Err(MailboxError::Tls(tls_error.to_string()))
            } else {
                Err(io_error("TLS handshake", e))
            }
        }
    }
}

fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, MailboxError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        debug!(error = %e, "a system CA certificate could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| MailboxError::Config(format!("ca_file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(MailboxError::Config(format!(
                "ca_file {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| MailboxError::Config(format!("ca_file {}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(MailboxError::Config(
            "no trusted CA certificates: the system has none and no ca_file is set".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MailboxError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `name` as an IMAP quoted string (`&` written `&-` as modified UTF-7 wants).
fn quote(name: &str) -> Result<String, MailboxError> {
    check_folder_name("folder", name).map_err(MailboxError::Config)?;
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '&' => out.push_str("&-"),
            _ => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// `uids` as compact IMAP sequence sets (`1:5,7`), sorted and deduplicated, split so that
/// no set is longer than `max_chars` (a single range always fits).
pub fn uid_sets(uids: &[u32], max_chars: usize) -> Vec<String> {
    let sorted: BTreeSet<u32> = uids.iter().copied().collect();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for uid in sorted {
        match ranges.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(uid) => *end = uid,
            _ => ranges.push((uid, uid)),
        }
    }
    let mut sets = Vec::new();
    let mut current = String::new();
    for (start, end) in ranges {
        let part = if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        };
        if !current.is_empty() && current.len() + 1 + part.len() > max_chars {
            sets.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&part);
    }
    if !current.is_empty() {
        sets.push(current);
    }
    sets
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
    fn uid_sets_are_compact() {
        assert!(uid_sets(&[], 100).is_empty());
        assert_eq!(uid_sets(&[7], 100), vec!["7"]);
        assert_eq!(uid_sets(&[1, 2, 3, 4, 5, 7], 100), vec!["1:5,7"]);
        assert_eq!(uid_sets(&[9, 3, 1, 2, 3, 10, 12], 100), vec!["1:3,9:10,12"]);
        assert_eq!(
            uid_sets(&[u32::MAX - 1, u32::MAX, 1], 100),
            vec![format!("1,{}:{}", u32::MAX - 1, u32::MAX)]
        );
    }

    #[test]
    fn uid_sets_are_split_by_length() {
        let uids: Vec<u32> = (1..=100).map(|i| i * 10).collect();
        let sets = uid_sets(&uids, 20);
        assert!(sets.iter().all(|s| s.len() <= 20), "{sets:?}");
        let back: Vec<u32> = sets
            .iter()
            .flat_map(|s| s.split(','))
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(back, uids);
        // A range longer than the limit still goes out whole.
        assert_eq!(uid_sets(&[1000000, 1000001], 3), vec!["1000000:1000001"]);
    }

    #[test]
    fn defaults_are_valid() {
        ImapConfig::default().validate().unwrap();
        valid().validate().unwrap();
    }

    #[tokio::test]
    async fn connect_without_password_fails_before_the_network() {
        let c = ImapConfig {
            host: "imap.invalid".into(),
            ..ImapConfig::default()
        };
        let err = Mailbox::connect(&c).await.unwrap_err();
        assert!(matches!(err, MailboxError::Config(_)), "{err:?}");
        assert!(!err.is_transient());
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
             poll_interval_secs = \"5\"\nconnect_timeout_secs = \"7\"\n",
        )
        .unwrap();
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
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn folder_names_are_quoted() {
        assert_eq!(quote("INBOX").unwrap(), "\"INBOX\"");
        assert_eq!(quote("A \"b\" \\c").unwrap(), "\"A \\\"b\\\" \\\\c\"");
        assert_eq!(quote("Reports & Co").unwrap(), "\"Reports &- Co\"");
        assert!(quote("a\r\nb").is_err());
        assert!(quote("").is_err());
    }

    #[test]
    fn refusals_are_classified() {
        assert_eq!(
            response_code("[ALREADYEXISTS] Mailbox already exists"),
            Some("ALREADYEXISTS")
        );
        assert_eq!(response_code("No such thing"), None);
        let e = refusal("UID MOVE", &Status::No, "[OVERQUOTA] Quota exceeded");
        assert!(e.is_transient(), "{e}");
        let e = refusal("UID MOVE", &Status::No, "[TRYCREATE] Mailbox doesn't exist");
        assert!(!e.is_transient(), "{e}");
        let e = refusal("UID FETCH", &Status::Bad, "Error in IMAP command");
        assert!(!e.is_transient(), "{e}");
        let long = "x".repeat(10_000);
        let e = refusal("NOOP", &Status::No, &long);
        assert!(e.to_string().len() < MAX_ERROR_TEXT + 100);
    }

    #[test]
    fn login_errors_are_classified() {
        use async_imap::error::Error as E;
        let e = login_error(
            "LOGIN",
            E::No(
                "code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")".into(),
            ),
        );
        let MailboxError::Auth(text) = &e else {
            panic!("{e:?}");
        };
        assert_eq!(text, "[AUTHENTICATIONFAILED] Authentication failed.");
        assert!(!e.is_transient());
        let e = login_error(
            "LOGIN",
            E::No(
                "code: None, info: Some(\"[UNAVAILABLE] Temporary authentication failure.\")"
                    .into(),
            ),
        );
        assert!(matches!(e, MailboxError::AuthUnavailable(_)), "{e:?}");
        assert!(e.is_transient());
        let e = login_error("LOGIN", E::ConnectionLost);
        assert!(e.is_transient(), "{e:?}");
    }

    /// Compiles only if every operation can run in a spawned task.
    fn _operations_are_send(mut m: Mailbox, cfg: &ImapConfig) {
        fn send<T: Send>(_: T) {}
        send(Mailbox::connect(cfg));
        send(m.ensure_folder("A"));
        send(m.select("A"));
        send(m.uids());
        send(m.fetch(&[], 0));
        send(m.move_to(&[], "A"));
        send(m.noop());
        send(m.idle(Duration::ZERO, std::future::ready(())));
    }

    #[test]
    fn plain_auth_response() {
        use async_imap::Authenticator;
        let mut a = PlainAuth {
            username: "u",
            password: "p w",
        };
        assert_eq!(a.process(b""), b"\0u\0p w");
    }
}
