//! Configuration: a TOML file (optional) overlaid with `DMARC_INGEST_<SECTION>_<KEY>`
//! environment variables -> a validated [`Config`].
//!
//! Loading is pure apart from reading the file(s): no network call happens here, so a bad
//! config is refused before anything connects. Unknown keys are errors
//! (`deny_unknown_fields`), in the file and in the environment alike. Secrets may be given
//! inline, from the environment, or as `*_file` paths (read at load time, one trailing
//! newline trimmed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod alerts;
mod dns;
mod domains;
mod imap;
pub use alerts::*;
pub(crate) use dns::optional_path;
pub use dns::*;
pub use domains::*;
pub use imap::*;

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "DMARC_INGEST_";
/// Variables with the prefix that are not config keys: the config file's path and the
/// log filter and format.
pub const ENV_NOT_KEYS: &[&str] = &[
    "DMARC_INGEST_CONFIG",
    "DMARC_INGEST_LOG",
    "DMARC_INGEST_LOG_FORMAT",
];

/// Default cap on the decompressed XML of one attachment or file (all zip entries together).
/// A 1,000,000-record report is about 570 MB of XML; reporters send far less.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 2 << 30;
/// Default cap on the number of entries in one zip archive.
pub const DEFAULT_MAX_ZIP_ENTRIES: usize = 64;
/// Default cap on XML element nesting. Real reports nest 5 deep; extensions a little more.
pub const DEFAULT_MAX_XML_DEPTH: usize = 64;
/// Default cap on `<record>` elements in one report.
pub const DEFAULT_MAX_RECORDS_PER_REPORT: u64 = 5_000_000;
/// Default cap on report attachments taken from one message.
pub const DEFAULT_MAX_ATTACHMENTS_PER_MESSAGE: usize = 32;
/// Default cap on the size of one raw message (mail or mbox entry); also on the decoded
/// bytes of its MIME parts held at once.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 64 << 20;
/// Default cap on the MIME parts of one message, forwarded messages inside it included.
/// Report mails have two to five.
pub const DEFAULT_MAX_MIME_PARTS: usize = 1_000;
/// Default cap on one XML token (a text node, a tag, an `<extension>` kept as text).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 1 << 20;
/// Default cap on what one record keeps (its values, extensions and result lists), and on
/// a report's own error lines and extensions together. Real records keep about 1 KiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 4 << 20;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Hard limits on everything a stranger controls.
    #[serde(default)]
    pub limits: Limits,
    /// ClickHouse connection (used by `schema`, `import`, `run`).
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
    /// IMAP connection (used by `run`): the first mailbox.
    #[serde(default)]
    pub imap: ImapConfig,
    /// More mailboxes (`[[imap_accounts]]`), each worked independently.
    #[serde(default)]
    pub imap_accounts: Vec<ImapConfig>,
    /// The daemon's metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The DNS resolver (reverse names of sources; DNS checks).
    #[serde(default)]
    pub dns: DnsConfig,
    /// Naming the sources of records.
    #[serde(default)]
    pub enrich: EnrichConfig,
    /// The inventory of domains the team answers for.
    #[serde(default)]
    pub domains: DomainsConfig,
    /// Alert rules, their schedule and recipients; the weekly digest's schedule.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The mail server alerts and digests go through.
    #[serde(default)]
    pub smtp: SmtpConfig,
}

/// Default address of the metrics endpoint.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9108";

/// `[metrics]`: where `run` serves `/metrics` and `/healthz`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` to listen on; empty turns the endpoint off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: DEFAULT_METRICS_LISTEN.into(),
        }
    }
}

impl Config {
    /// Every mailbox to work: `[imap]`, then each `[[imap_accounts]]`.
    pub fn accounts(&self) -> Vec<ImapConfig> {
        std::iter::once(self.imap.clone())
            .chain(self.imap_accounts.iter().cloned())
            .collect()
    }
}

/// Hard limits on untrusted input. Going over one makes the input fail with a reason
/// (quarantine), never a crash or an unbounded allocation.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Decompressed XML bytes allowed from one file, or from one message with all its
    /// attachments (zip entries and forwarded messages summed).
    #[serde(deserialize_with = "number")]
    pub max_decompressed_bytes: u64,
    /// Entries allowed in one zip archive.
    #[serde(deserialize_with = "number")]
    pub max_zip_entries: usize,
    /// XML element nesting allowed.
    #[serde(deserialize_with = "number")]
    pub max_xml_depth: usize,
    /// `<record>` elements allowed in one report.
    #[serde(deserialize_with = "number")]
    pub max_records_per_report: u64,
    /// Report attachments taken from one message; more is an error.
    #[serde(deserialize_with = "number")]
    pub max_attachments_per_message: usize,
    /// Size of one raw message (an `.eml`, one mbox entry, one IMAP message), and of the
    /// decoded MIME parts of one message together.
    #[serde(deserialize_with = "number")]
    pub max_message_bytes: u64,
    /// MIME parts of one message, forwarded `message/rfc822` parts included.
    #[serde(deserialize_with = "number")]
    pub max_mime_parts: usize,
    /// Size of one XML token: a text value, a tag, a comment, a kept `<extension>`.
    #[serde(deserialize_with = "number")]
    pub max_token_bytes: usize,
    /// What one record keeps in memory (values, extensions, DKIM/SPF results), and what a
    /// report keeps of its own `<error>` lines and extensions.
    #[serde(deserialize_with = "number")]
    pub max_record_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            max_zip_entries: DEFAULT_MAX_ZIP_ENTRIES,
            max_xml_depth: DEFAULT_MAX_XML_DEPTH,
            max_records_per_report: DEFAULT_MAX_RECORDS_PER_REPORT,
            max_attachments_per_message: DEFAULT_MAX_ATTACHMENTS_PER_MESSAGE,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_mime_parts: DEFAULT_MAX_MIME_PARTS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// Default ClickHouse HTTP endpoint.
pub const DEFAULT_CLICKHOUSE_URL: &str = "http://127.0.0.1:8123";
/// Default database.
pub const DEFAULT_DATABASE: &str = "dmarc";
/// Default rows per staging insert: bounds the importer's memory (~0.5 KiB a row).
pub const DEFAULT_BATCH_ROWS: usize = 16_384;
/// Default reports published together (one INSERT ... SELECT per table).
pub const DEFAULT_PUBLISH_REPORTS: usize = 5_000;
/// Default attempts for a ClickHouse call that fails transiently (down, overloaded).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// Default first retry delay; doubled each attempt, with jitter, up to the max.
pub const DEFAULT_RETRY_INITIAL_MS: u64 = 250;
pub const DEFAULT_RETRY_MAX_MS: u64 = 10_000;
/// Default time allowed for one ClickHouse request.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 120;

/// `[clickhouse]`: where rows go.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP(S) endpoint of the server. `http://` only to a loopback host (127.0.0.0/8,
    /// ::1, localhost) unless `allow_insecure_http` is set.
    pub url: String,
    /// Extra CA certificates (PEM) trusted for `https://` besides the system's roots
    /// (a private CA, or a self-signed server's own). Read when the config is loaded.
    pub ca_file: Option<PathBuf>,
    /// Allows `http://` (clear text: the password and every report) to a host that is
    /// not loopback, for a network the operator trusts (a container network).
    #[serde(deserialize_with = "boolean")]
    pub allow_insecure_http: bool,
    /// Database holding the tables (created by `schema apply`).
    pub database: String,
    pub user: String,
    /// Password, inline or from the environment (`DMARC_INGEST_CLICKHOUSE_PASSWORD`).
    pub password: String,
    /// File holding the password (one trailing newline trimmed); wins over `password`.
    pub password_file: Option<PathBuf>,
    /// Rows per staging insert.
    #[serde(deserialize_with = "number")]
    pub batch_rows: usize,
    /// Reports published together.
    #[serde(deserialize_with = "number")]
    pub publish_reports: usize,
    /// Attempts for a transiently failing call, the first included.
    #[serde(deserialize_with = "number")]
    pub max_attempts: u32,
    #[serde(deserialize_with = "number")]
    pub retry_initial_ms: u64,
    #[serde(deserialize_with = "number")]
    pub retry_max_ms: u64,
    #[serde(deserialize_with = "number")]
    pub request_timeout_secs: u64,
    /// Compress what is sent to and read from the server: `lz4`, `none`, or `auto`
    /// (the default: `none` to a loopback host, where compressing costs more than it
    /// saves, else `lz4`).
    pub compression: Compression,
    /// A ClickHouse cluster (as named in the servers' `remote_servers`): the schema of
    /// `schema/cluster/` (replicated, sharded, `ON CLUSTER`) instead of the single-server
    /// one. Empty: one server.
    pub cluster: String,
    /// Confirms that only one importer (one daemon, or one `import` at a time) writes to
    /// this database. Required where the tables are replicated without `cluster` (a
    /// managed service such as ClickHouse Cloud, replicas behind a load balancer): the
    /// publish lock (a `query_id`) holds only within one server.
    #[serde(deserialize_with = "boolean")]
    pub single_publisher: bool,
}

impl ClickHouseConfig {
    /// Whether the connection is TLS (`https://`).
    pub fn is_https(&self) -> bool {
        self.url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }

    /// The compression to use: `auto` decided by the URL's host.
    pub fn effective_compression(&self) -> Compression {
        match self.compression {
            Compression::Auto => {
                let uri: Option<hyper::Uri> = self.url.parse().ok();
                let host = uri.as_ref().and_then(|u| u.host()).unwrap_or("");
                if crate::tls::is_loopback_host(host) {
                    Compression::None
                } else {
                    Compression::Lz4
                }
            }
            chosen => chosen,
        }
    }

    /// Pure: the URL is `http(s)://host...`, and clear text goes only to a loopback host
    /// unless `allow_insecure_http` says otherwise.
    fn check_url(&self) -> Result<(), String> {
        let uri: hyper::Uri = self
            .url
            .parse()
            .map_err(|e| format!("clickhouse.url {:?} is not a URL: {e}", self.url))?;
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            return Err(format!(
                "clickhouse.url {:?} must start with http:// or https://",
                self.url
            ));
        }
        let host = uri.host().unwrap_or("");
        if host.is_empty() {
            return Err(format!("clickhouse.url {:?} names no host", self.url));
        }
        if !self.is_https() && !self.allow_insecure_http && !crate::tls::is_loopback_host(host) {
            return Err(format!(
                "clickhouse.url {:?} is clear-text HTTP to {host:?}, which is not a loopback \
                 host (127.0.0.0/8, ::1, localhost): the password and the reports would cross \
                 the network unencrypted. Use https:// (with clickhouse.ca_file for a private \
                 CA), or set clickhouse.allow_insecure_http = true \
                 (DMARC_INGEST_CLICKHOUSE_ALLOW_INSECURE_HTTP=true) for a network you trust",
                self.url
            ));
        }
        Ok(())
    }
}

/// Transport compression between the importer and ClickHouse.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    /// `None` to a loopback host, else `Lz4`.
    Auto,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: DEFAULT_CLICKHOUSE_URL.into(),
            ca_file: None,
            allow_insecure_http: false,
            single_publisher: false,
            database: DEFAULT_DATABASE.into(),
            user: "default".into(),
            password: String::new(),
            password_file: None,
            batch_rows: DEFAULT_BATCH_ROWS,
            publish_reports: DEFAULT_PUBLISH_REPORTS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_initial_ms: DEFAULT_RETRY_INITIAL_MS,
            retry_max_ms: DEFAULT_RETRY_MAX_MS,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            compression: Compression::Auto,
            cluster: String::new(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {}", one_line(source))]
    Syntax {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("environment variable {name}: {reason}")]
    Environment { name: String, reason: String },
    /// A `*_file` secret named by the configuration cannot be read.
    #[error("cannot read {key} {path}: {source}")]
    SecretFile {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ConfigError {
    /// Config errors never go away by retrying.
    pub fn is_transient(&self) -> bool {
        false
    }
}

impl Config {
    /// Loads `path` (if given) and overlays the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_NOT_KEYS.contains(&k.as_str()))
            .collect();
        Self::from_parts(&text, path.unwrap_or(Path::new("<none>")), &env)
    }

    /// Pure: TOML text plus `DMARC_INGEST_*` variables -> validated config.
    pub fn from_parts(
        toml_text: &str,
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let file: toml::Table =
            toml::from_str(toml_text).map_err(|source| ConfigError::Syntax {
                path: path.to_owned(),
                source,
            })?;
        // The file alone first, numbers and booleans as TOML types: its own mistakes are
        // named as the file's (`port = "1143"` is refused there).
        STRINGS_AS_VALUES.set(false);
        let file_alone = toml::Value::Table(file.clone()).try_into::<Config>();
        STRINGS_AS_VALUES.set(true);
        file_alone.map_err(|source| ConfigError::Syntax {
            path: path.to_owned(),
            source,
        })?;
        let mut table = file.clone();
        for (name, value) in env {
            overlay_env(&mut table, name, value)?;
        }
        let mut config: Config = match toml::Value::Table(table).try_into() {
            Ok(config) => config,
            // Then a variable is at fault: name it.
            Err(e) => {
                return Err(blame_variable(&file, env).unwrap_or(ConfigError::Syntax {
                    path: path.to_owned(),
                    source: e,
                }))
            }
        };
        config.read_secret_files()?;
        config.validate()?;
        Ok(config)
    }

    /// Replaces `*_file` secrets by the files' contents, and checks that the ClickHouse
    /// `ca_file` holds certificates (an empty value, as from the environment, is unset).
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        if let Some(path) = &self.clickhouse.password_file {
            self.clickhouse.password =
                read_secret(path).map_err(|source| ConfigError::SecretFile {
                    key: "clickhouse.password_file".into(),
                    path: path.clone(),
                    source,
                })?;
        }
        if self
            .clickhouse
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.clickhouse.ca_file = None;
        }
        if let Some(path) = &self.clickhouse.ca_file {
            crate::tls::read_ca_file(path)
                .map_err(|e| ConfigError::Invalid(format!("clickhouse.{e}")))?;
        }
        if let Some(path) = self
            .smtp
            .password_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
        {
            self.smtp.password = read_secret(&path).map_err(|source| ConfigError::SecretFile {
                key: "smtp.password_file".into(),
                path,
                source,
            })?;
        }
        if self.smtp.username.is_empty() && self.smtp.password_file.is_some() {
            return Err(ConfigError::Invalid(
                "smtp.password_file is set but smtp.username is empty".into(),
            ));
        }
        if let Some(path) = self
            .smtp
            .ca_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            crate::tls::read_ca_file(path)
                .map_err(|e| ConfigError::Invalid(format!("smtp.{e}")))?;
        }
        let accounts = std::iter::once(("imap".to_owned(), &mut self.imap)).chain(
            self.imap_accounts
                .iter_mut()
                .enumerate()
                .map(|(i, a)| (format!("imap_accounts[{i}]"), a)),
        );
        for (section, account) in accounts {
            if let Some(path) = account.password_file.clone() {
                account
                    .load_secrets()
                    .map_err(|source| ConfigError::SecretFile {
                        key: format!("{section}.password_file"),
                        path,
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// Pure checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ch = &self.clickhouse;
        ch.check_url().map_err(ConfigError::Invalid)?;
        if ch.database.is_empty()
            || !ch
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::Invalid(format!(
                "clickhouse.database {:?} must be letters, digits and _",
                ch.database
            )));
        }
        if !ch
            .cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(ConfigError::Invalid(format!(
                "clickhouse.cluster {:?} must be letters, digits, _, - and .",
                ch.cluster
            )));
        }
        self.dns.validate().map_err(ConfigError::Invalid)?;
        self.domains.validate().map_err(ConfigError::Invalid)?;
        self.alerts.validate().map_err(ConfigError::Invalid)?;
        self.smtp.validate().map_err(ConfigError::Invalid)?;
        for account in self.accounts() {
            account
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("imap ({}): {e}", account.username)))?;
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "metrics.listen {:?} is not host:port",
                self.metrics.listen
            )));
        }
        if ch.batch_rows == 0 || ch.publish_reports == 0 || ch.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "clickhouse.batch_rows, publish_reports and max_attempts must be at least 1".into(),
            ));
        }
        let l = &self.limits;
        let zero = [
            ("max_decompressed_bytes", l.max_decompressed_bytes == 0),
            ("max_zip_entries", l.max_zip_entries == 0),
            ("max_xml_depth", l.max_xml_depth < 8),
            ("max_records_per_report", l.max_records_per_report == 0),
            (
                "max_attachments_per_message",
                l.max_attachments_per_message == 0,
            ),
            ("max_message_bytes", l.max_message_bytes < 1024),
            ("max_mime_parts", l.max_mime_parts == 0),
            ("max_token_bytes", l.max_token_bytes < 1024),
            ("max_record_bytes", l.max_record_bytes < 4096),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, bad)| *bad) {
            return Err(ConfigError::Invalid(format!(
                "limits.{name} is too small to read any report"
            )));
        }
        Ok(())
    }
}

/// A TOML error on one line (it spreads the key and a source excerpt over several).
fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

thread_local! {
    /// Whether [`number`] and [`boolean`] take strings (the environment's values are all
    /// strings); off while the file alone is read.
    static STRINGS_AS_VALUES: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// The first variable that, laid over `file` alone, makes the configuration unreadable,
/// as the error naming it.
fn blame_variable(file: &toml::Table, env: &BTreeMap<String, String>) -> Option<ConfigError> {
    env.iter().find_map(|(name, value)| {
        let mut table = file.clone();
        overlay_env(&mut table, name, value).ok()?;
        let e = toml::Value::Table(table).try_into::<Config>().err()?;
        Some(ConfigError::Environment {
            name: name.clone(),
            reason: e.message().trim().to_owned(),
        })
    })
}

/// Deserializes a number given as a TOML number or as a string (from the environment).
pub(crate) fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + TryFrom<i64>,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(i64),
        String(String),
    }
    match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => {
            T::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is out of range")))
        }
        NumberOrString::String(s) if !STRINGS_AS_VALUES.get() => Err(serde::de::Error::custom(
            format!("{s:?} is a string: write the number without quotes"),
        )),
        NumberOrString::String(s) => s
            .trim()
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a number: {e}"))),
    }
}

/// Deserializes a boolean given as a TOML boolean or as a string (from the environment):
/// `true`/`false`, `1`/`0`, `yes`/`no`, any case.
pub(crate) fn boolean<'de, D>(d: D) -> Result<bool, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrString {
        Bool(bool),
        String(String),
    }
    match BoolOrString::deserialize(d)? {
        BoolOrString::Bool(b) => Ok(b),
        BoolOrString::String(s) if !STRINGS_AS_VALUES.get() => Err(serde::de::Error::custom(
            format!("{s:?} is a string: write true or false without quotes"),
        )),
        BoolOrString::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} is not a boolean (true or false)"
            ))),
        },
    }
}

/// Reads a secret file, trimming one trailing newline.
pub(crate) fn read_secret(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

/// Sets `[section] key = value` from `DMARC_INGEST_SECTION_KEY=value`. The section is the
/// word after the prefix (section names hold no `_`), the key is the rest, lower-cased.
/// The value is a string; numeric keys parse it.
fn overlay_env(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let rest = &name[ENV_PREFIX.len()..];
    let Some((section, key)) = rest.split_once('_') else {
        return Err(ConfigError::Environment {
            name: name.to_owned(),
            reason: "expected DMARC_INGEST_<SECTION>_<KEY>".into(),
        });
    };
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    // Kept as a string: numeric keys accept strings (see `number`), and a password of
    // digits stays a password.
    let parsed = toml::Value::String(value.to_owned());
    let entry = table
        .entry(section.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(key, parsed);
            Ok(())
        }
        _ => Err(ConfigError::Environment {
            name: name.to_owned(),
            reason: format!("[{section}] is not a section"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn compression_auto_skips_lz4_only_on_loopback() {
        let mut c = ClickHouseConfig::default();
        assert_eq!(c.compression, Compression::Auto);
        for (url, want) in [
            ("http://127.0.0.1:8123", Compression::None),
            ("http://localhost:8123", Compression::None),
            ("http://[::1]:8123", Compression::None),
            ("https://clickhouse.example:8443", Compression::Lz4),
        ] {
            c.url = url.into();
            assert_eq!(c.effective_compression(), want, "{url}");
        }
        c.compression = Compression::Lz4;
        c.url = "http://127.0.0.1:8123".into();
        assert_eq!(c.effective_compression(), Compression::Lz4);
    }

    #[test]
    fn defaults_when_empty() {
        let c = Config::from_parts("", Path::new("x"), &env(&[])).unwrap();
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn a_number_or_boolean_quoted_in_the_file_is_refused_with_its_key() {
        for (text, key) in [
            ("[imap]\nport = \"1143\"\n", "imap.port"),
            (
                "[limits]\nmax_zip_entries = \"3\"\n",
                "limits.max_zip_entries",
            ),
            (
                "[clickhouse]\nallow_insecure_http = \"true\"\n",
                "clickhouse.allow_insecure_http",
            ),
        ] {
            let err = Config::from_parts(text, Path::new("f.toml"), &env(&[])).unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.starts_with("config file f.toml: ") && shown.contains(key),
                "{shown}"
            );
            assert!(!shown.contains('\n'), "one line: {shown}");
        }
        // From the environment every value is a string, and numbers are read from it.
        let c = Config::from_parts(
            "",
            Path::new("f.toml"),
            &env(&[("DMARC_INGEST_IMAP_PORT", "1143")]),
        )
        .unwrap();
        assert_eq!(c.imap.port, 1143);
    }

    #[test]
    fn a_variable_that_breaks_the_config_is_named() {
        let err = Config::from_parts(
            "[clickhouse]\ndatabase = \"dmarc\"\n",
            Path::new("f.toml"),
            &env(&[
                ("DMARC_INGEST_IMAP_PORT", "1143"),
                ("DMARC_INGEST_CLICKHOUSE_DATABSE", "x"),
            ]),
        )
        .unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(
                "environment variable DMARC_INGEST_CLICKHOUSE_DATABSE: unknown field `databse`"
            ),
            "{shown}"
        );
        let err = Config::from_parts(
            "",
            Path::new("f.toml"),
            &env(&[("DMARC_INGEST_IMAP_PORT", "imap")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "environment variable DMARC_INGEST_IMAP_PORT: \"imap\" is not a number"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_secret_file_is_named_by_its_key() {
        for (text, key) in [
            (
                "[clickhouse]\npassword_file = \"/nonexistent/pw\"\n",
                "clickhouse.password_file",
            ),
            (
                "[imap]\npassword_file = \"/nonexistent/pw\"\n",
                "imap.password_file",
            ),
        ] {
            let err = Config::from_parts(text, Path::new("f.toml"), &env(&[])).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("cannot read {key} /nonexistent/pw: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn environment_overrides_file() {
        let c = Config::from_parts(
            "[limits]\nmax_zip_entries = 3\nmax_xml_depth = 20\n",
            Path::new("x"),
            &env(&[("DMARC_INGEST_LIMITS_MAX_ZIP_ENTRIES", "7")]),
        )
        .unwrap();
        assert_eq!(c.limits.max_zip_entries, 7);
        assert_eq!(c.limits.max_xml_depth, 20);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_parts("[limits]\nmax_zip = 3\n", Path::new("c.toml"), &env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("max_zip"), "{err}");
        let err = Config::from_parts(
            "",
            Path::new("c.toml"),
            &env(&[("DMARC_INGEST_LIMITS_NOPE", "1")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn clickhouse_section_with_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let text = format!(
            "[clickhouse]\nurl = \"https://ch.example:8443\"\npassword_file = {:?}\n",
            secret
        );
        let c = Config::from_parts(
            &text,
            Path::new("x"),
            &env(&[("DMARC_INGEST_CLICKHOUSE_DATABASE", "reports_2")]),
        )
        .unwrap();
        assert_eq!(c.clickhouse.password, "s3cret");
        assert_eq!(c.clickhouse.database, "reports_2");
        let bad = Config::from_parts(
            "[clickhouse]\ndatabase = \"x;drop\"\n",
            Path::new("x"),
            &env(&[]),
        );
        assert!(bad.unwrap_err().to_string().contains("clickhouse.database"));
    }

    #[test]
    fn shipped_configs_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret\n").unwrap();
        for file in [
            "../deploy/dmarc-ingest.example.toml",
            "../deploy/compose/config.toml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text: String = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| match l.trim_start().starts_with("password_file") {
                    true => format!("password_file = {:?}\n", secret),
                    false => format!("{l}\n"),
                })
                .collect();
            let c = Config::from_parts(&text, &path, &env(&[]))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(c.imap.password, "s3cret", "{file}");
        }
    }

    #[test]
    fn clear_text_clickhouse_only_to_loopback_unless_allowed() {
        let load = |toml: &str, vars: &[(&str, &str)]| {
            Config::from_parts(
                &format!("[clickhouse]\n{toml}"),
                Path::new("c.toml"),
                &env(vars),
            )
        };
        for url in [
            "http://127.0.0.1:8123",
            "http://127.9.0.1:8123/",
            "http://localhost:8123",
            "http://[::1]:8123",
            "https://clickhouse.example.org:8443",
            "HTTPS://10.1.2.3",
        ] {
            let c = load(&format!("url = {url:?}"), &[]).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(!c.clickhouse.allow_insecure_http);
        }
        for url in [
            "http://clickhouse:8123",
            "http://10.1.2.3:8123",
            "http://[2001:db8::1]:8123",
            "http://localhost.example.org",
        ] {
            let e = load(&format!("url = {url:?}"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(url)
                    && e.contains("not a loopback host")
                    && e.contains("allow_insecure_http = true"),
                "{url}: {e}"
            );
            let c = load(&format!("url = {url:?}\nallow_insecure_http = true"), &[]).unwrap();
            assert!(c.clickhouse.allow_insecure_http, "{url}");
            // The same from the environment, where every value is a string.
            for yes in ["true", "TRUE", "1", "yes"] {
                let vars = [
                    ("DMARC_INGEST_CLICKHOUSE_URL", url),
                    ("DMARC_INGEST_CLICKHOUSE_ALLOW_INSECURE_HTTP", yes),
                ];
                load("", &vars).unwrap_or_else(|e| panic!("{url} {yes}: {e}"));
            }
            let vars = [
                ("DMARC_INGEST_CLICKHOUSE_URL", url),
                ("DMARC_INGEST_CLICKHOUSE_ALLOW_INSECURE_HTTP", "false"),
            ];
            assert!(load("", &vars).is_err(), "{url}");
        }
        let e = load(
            "",
            &[("DMARC_INGEST_CLICKHOUSE_ALLOW_INSECURE_HTTP", "maybe")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("maybe") && e.contains("not a boolean"), "{e}");
        for (url, says) in [
            ("ftp://127.0.0.1", "must start with http:// or https://"),
            ("127.0.0.1:8123", "must start with http:// or https://"),
            ("https://", "not a URL"),
            ("http://exa mple", "not a URL"),
        ] {
            let e = load(&format!("url = {url:?}"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn clickhouse_ca_file_is_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let text = format!("[clickhouse]\nurl = \"https://ch.example\"\nca_file = {missing:?}\n");
        let e = Config::from_parts(&text, Path::new("c.toml"), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("clickhouse.ca_file") && e.contains("nope.pem") && e.contains("cannot read"),
            "{e}"
        );
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let vars = [("DMARC_INGEST_CLICKHOUSE_CA_FILE", not_pem.to_str().unwrap())];
        let e = Config::from_parts("", Path::new("c.toml"), &env(&vars))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        // Empty (as `DMARC_INGEST_CLICKHOUSE_CA_FILE=` leaves it): unset.
        let vars = [("DMARC_INGEST_CLICKHOUSE_CA_FILE", "")];
        let c = Config::from_parts("", Path::new("c.toml"), &env(&vars)).unwrap();
        assert_eq!(c.clickhouse.ca_file, None);
    }

    #[test]
    fn too_small_limits_are_refused() {
        let err = Config::from_parts("[limits]\nmax_xml_depth = 2\n", Path::new("x"), &env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("max_xml_depth"), "{err}");
    }
}
