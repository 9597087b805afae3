//! `[dns]`: the resolver every DNS lookup of the crate goes through ([`crate::resolver`]);
//! `[enrich]`: how sources are named ([`crate::enrich`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Default time one query may take before it is sent again.
pub const DEFAULT_DNS_TIMEOUT_MS: u64 = 2_000;
/// Default sends of one query (the first and the repeats) before it counts as failed.
pub const DEFAULT_DNS_ATTEMPTS: usize = 2;
/// Default interval of the daemon's background name lookups.
pub const DEFAULT_ENRICH_REFRESH_SECS: u64 = 600;
/// Default interval of the daemon's DNS checks of every domain (6 hours).
pub const DEFAULT_DNS_CHECK_INTERVAL_SECS: u64 = 6 * 3600;
/// Default number of domains checked at once.
pub const DEFAULT_DNS_CHECK_CONCURRENCY: usize = 64;
/// Default number of report domains outside the inventory checked (the busiest).
pub const DEFAULT_DNS_CHECK_SEEN_DOMAINS: usize = 1_000;
/// Default number of source names kept in memory.
pub const DEFAULT_ENRICH_CACHE_ENTRIES: usize = 100_000;

/// `[enrich]`: naming the sources of records.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// The daemon looks up the names of new (and expired) sources this often, in the
    /// background (0: never; `dmarc-ingest enrich` does it on demand).
    #[serde(deserialize_with = "crate::config::number")]
    pub refresh_secs: u64,
    /// A MaxMind-format database giving AS numbers and organisations (GeoLite2-ASN,
    /// IPinfo Lite, DB-IP ASN Lite...); none: those columns stay empty.
    #[serde(deserialize_with = "crate::config::optional_path")]
    pub asn_database: Option<PathBuf>,
    /// A MaxMind-format database giving countries (may be the ASN one's file).
    #[serde(deserialize_with = "crate::config::optional_path")]
    pub country_database: Option<PathBuf>,
    /// The user's services, added to the built-in ones (an entry of a built-in name
    /// replaces it); the format of `ingest/data/services.toml`.
    #[serde(deserialize_with = "crate::config::optional_path")]
    pub services_file: Option<PathBuf>,
    /// Source names kept in memory (beside `source_names` in ClickHouse), so that names
    /// looked up are not asked again in a while; bounds the cache's memory (~200 bytes
    /// each).
    #[serde(deserialize_with = "crate::config::number")]
    pub cache_entries: usize,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            refresh_secs: DEFAULT_ENRICH_REFRESH_SECS,
            asn_database: None,
            country_database: None,
            services_file: None,
            cache_entries: DEFAULT_ENRICH_CACHE_ENTRIES,
        }
    }
}

/// `[dns]`: which servers to ask and how patiently.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// `ip:port` (or a bare IP: port 53) of the servers to ask, in order; empty: the
    /// system's resolver (`/etc/resolv.conf`). From the environment: comma-separated.
    #[serde(deserialize_with = "list")]
    pub nameservers: Vec<String>,
    /// How long one query may take before it is sent again (milliseconds).
    #[serde(deserialize_with = "crate::config::number")]
    pub timeout_ms: u64,
    /// Sends of one query before it counts as failed (and is tried again later).
    #[serde(deserialize_with = "crate::config::number")]
    pub attempts: usize,
    /// The daemon checks every domain's DNS this often: seconds, or a number with s, m,
    /// h or d ("6h"); 0: never (`dmarc-ingest dns check` does it on demand).
    #[serde(deserialize_with = "interval")]
    pub check_interval: u64,
    /// Domains checked at once.
    #[serde(deserialize_with = "crate::config::number")]
    pub check_concurrency: usize,
    /// Policy domains of reports that are not in the inventory checked too, the busiest
    /// of the last 30 days first (0: the inventory only).
    #[serde(deserialize_with = "crate::config::number")]
    pub check_seen_domains: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout_ms: DEFAULT_DNS_TIMEOUT_MS,
            attempts: DEFAULT_DNS_ATTEMPTS,
            check_interval: DEFAULT_DNS_CHECK_INTERVAL_SECS,
            check_concurrency: DEFAULT_DNS_CHECK_CONCURRENCY,
            check_seen_domains: DEFAULT_DNS_CHECK_SEEN_DOMAINS,
        }
    }
}

impl DnsConfig {
    /// The configured servers as socket addresses (port 53 where none is given).
    pub fn server_addresses(&self) -> Result<Vec<SocketAddr>, String> {
        self.nameservers
            .iter()
            .map(|text| {
                let text = text.trim();
                text.parse::<SocketAddr>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        format!("dns.nameservers: {text:?} is not an IP address or ip:port (e.g. \"127.0.0.1:5353\", \"[::1]:53\")")
                    })
            })
            .collect()
    }

    /// Checks the section: addresses that parse, a timeout and at least one attempt.
    pub fn validate(&self) -> Result<(), String> {
        self.server_addresses()?;
        if self.timeout_ms == 0 {
            return Err("dns.timeout_ms must be above 0".into());
        }
        if self.attempts == 0 {
            return Err("dns.attempts must be at least 1".into());
        }
        if self.check_concurrency == 0 {
            return Err("dns.check_concurrency must be at least 1".into());
        }
        Ok(())
    }
}

/// Deserializes a path; an empty one (as from `DMARC_INGEST_ENRICH_ASN_DATABASE=`) is none.
pub(crate) fn optional_path<'de, D>(d: D) -> Result<Option<PathBuf>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    Ok((!text.trim().is_empty()).then(|| PathBuf::from(text.trim())))
}

/// Deserializes an interval in seconds: a number, or a string of digits ending in s, m,
/// h or d ("90s", "30m", "6h", "1d"; bare digits are seconds).
pub(crate) fn interval<'de, D>(d: D) -> Result<u64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(u64),
        String(String),
    }
    match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(text) => parse_interval(&text).map_err(serde::de::Error::custom),
    }
}

/// "6h" → 21600 (see [`interval`]).
pub(crate) fn parse_interval(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let factor = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not an interval (e.g. 3600, \"90s\", \"30m\", \"6h\", \"1d\")"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            format!("{text:?} is not an interval (e.g. 3600, \"90s\", \"30m\", \"6h\", \"1d\")")
        })
}

/// Deserializes a list given as a TOML array of strings or as one comma-separated string
/// (from the environment: `DMARC_INGEST_DNS_NAMESERVERS=127.0.0.1:5353,[::1]:53`).
pub(crate) fn list<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(d)? {
        ListOrString::List(items) => items,
        ListOrString::String(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use crate::config::Config;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts(toml, Path::new("t.toml"), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn nameservers_come_from_the_file_or_the_environment() {
        let c = load("", &[]).unwrap();
        assert!(c.dns.nameservers.is_empty(), "empty: the system resolver");
        assert_eq!(c.dns.timeout_ms, super::DEFAULT_DNS_TIMEOUT_MS);
        let c = load("[dns]\nnameservers = [\"127.0.0.1:5353\", \"::1\"]\n", &[]).unwrap();
        let addrs = c.dns.server_addresses().unwrap();
        assert_eq!(addrs[0].to_string(), "127.0.0.1:5353");
        assert_eq!(addrs[1].to_string(), "[::1]:53");
        let c = load(
            "",
            &[
                ("DMARC_INGEST_DNS_NAMESERVERS", "127.0.0.1:5353, 10.0.0.1"),
                ("DMARC_INGEST_DNS_TIMEOUT_MS", "500"),
            ],
        )
        .unwrap();
        assert_eq!(c.dns.nameservers, ["127.0.0.1:5353", "10.0.0.1"]);
        assert_eq!(c.dns.timeout_ms, 500);
    }

    #[test]
    fn the_check_interval_takes_seconds_or_units() {
        assert_eq!(load("", &[]).unwrap().dns.check_interval, 6 * 3600);
        for (text, secs) in [
            ("\"6h\"", 21_600),
            ("\"30m\"", 1_800),
            ("90", 90),
            ("\"1d\"", 86_400),
            ("0", 0),
        ] {
            let c = load(&format!("[dns]\ncheck_interval = {text}\n"), &[]).unwrap();
            assert_eq!(c.dns.check_interval, secs, "{text}");
        }
        let c = load("", &[("DMARC_INGEST_DNS_CHECK_INTERVAL", "2h")]).unwrap();
        assert_eq!(c.dns.check_interval, 7_200);
        let e = load("[dns]\ncheck_interval = \"6 hours\"\n", &[]).unwrap_err();
        assert!(e.contains("not an interval"), "{e}");
        let e = load("[dns]\ncheck_concurrency = 0\n", &[]).unwrap_err();
        assert!(e.contains("dns.check_concurrency"), "{e}");
    }

    #[test]
    fn bad_nameservers_and_limits_are_refused() {
        let e = load("[dns]\nnameservers = [\"dns.example:53\"]\n", &[]).unwrap_err();
        assert!(
            e.contains("dns.nameservers") && e.contains("dns.example"),
            "{e}"
        );
        let e = load("[dns]\nattempts = 0\n", &[]).unwrap_err();
        assert!(e.contains("dns.attempts"), "{e}");
        let e = load("[dns]\nservers = []\n", &[]).unwrap_err();
        assert!(e.contains("servers"), "{e}");
    }
}
