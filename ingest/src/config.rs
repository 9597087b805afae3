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

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "DMARC_INGEST_";

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
/// Default cap on the size of one raw message (mail or mbox entry).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 64 << 20;
/// Default cap on one XML token (a text node, a tag, an `<extension>` kept as text).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 1 << 20;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Hard limits on everything a stranger controls.
    #[serde(default)]
    pub limits: Limits,
    /// ClickHouse connection (used by `schema`, `import`, `run`).
    #[serde(default)]
    pub clickhouse: toml::Table,
    /// IMAP connection (used by `run`).
    #[serde(default)]
    pub imap: toml::Table,
}

/// Hard limits on untrusted input. Going over one makes the input fail with a reason
/// (quarantine), never a crash or an unbounded allocation.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Decompressed XML bytes allowed from one file or attachment (zip entries summed).
    pub max_decompressed_bytes: u64,
    /// Entries allowed in one zip archive.
    pub max_zip_entries: usize,
    /// XML element nesting allowed.
    pub max_xml_depth: usize,
    /// `<record>` elements allowed in one report.
    pub max_records_per_report: u64,
    /// Report attachments taken from one message; more is an error.
    pub max_attachments_per_message: usize,
    /// Size of one raw message (an `.eml`, one mbox entry, one IMAP message).
    pub max_message_bytes: u64,
    /// Size of one XML token: a text value, a tag, a kept `<extension>`.
    pub max_token_bytes: usize,
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
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
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
    #[error("config file {path}: {source}")]
    Syntax {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("environment variable {name}: {reason}")]
    Environment { name: String, reason: String },
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
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        Self::from_parts(&text, path.unwrap_or(Path::new("<none>")), &env)
    }

    /// Pure: TOML text plus `DMARC_INGEST_*` variables -> validated config.
    pub fn from_parts(
        toml_text: &str,
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(toml_text).map_err(|source| ConfigError::Syntax {
                path: path.to_owned(),
                source,
            })?;
        for (name, value) in env {
            overlay_env(&mut table, name, value)?;
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    source: e,
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Pure checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
            ("max_token_bytes", l.max_token_bytes < 1024),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, bad)| *bad) {
            return Err(ConfigError::Invalid(format!(
                "limits.{name} is too small to read any report"
            )));
        }
        Ok(())
    }
}

/// Sets `[section] key = value` from `DMARC_INGEST_SECTION_KEY=value`. The section is the
/// word after the prefix (section names hold no `_`), the key is the rest, lower-cased.
/// The value is read as a TOML value when it parses as one (numbers, booleans), else as a
/// string.
fn overlay_env(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let rest = &name[ENV_PREFIX.len()..];
    let Some((section, key)) = rest.split_once('_') else {
        return Err(ConfigError::Environment {
            name: name.to_owned(),
            reason: "expected DMARC_INGEST_<SECTION>_<KEY>".into(),
        });
    };
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_str() && !v.is_table())
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
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
    fn defaults_when_empty() {
        let c = Config::from_parts("", Path::new("x"), &env(&[])).unwrap();
        assert_eq!(c.limits, Limits::default());
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
    fn too_small_limits_are_refused() {
        let err = Config::from_parts("[limits]\nmax_xml_depth = 2\n", Path::new("x"), &env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("max_xml_depth"), "{err}");
    }
}
