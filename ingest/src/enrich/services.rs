//! Services: the known sending services (`ingest/data/services.toml`, built in, plus the
//! user's `[enrich] services_file`) and which one a source belongs to.
//!
//! In: what is known of a source (its forward-confirmed PTR name, the passing SPF and DKIM
//! domains of its records, its AS number). Out: the [`Service`] it belongs to, if any,
//! checked in that order: a PTR name under a service's base domain names the host itself;
//! a passing SPF check means the service's domain authorises the sending address; a
//! passing DKIM signature survives forwarding, so it comes after; an AS number names a
//! whole network (often a hosting provider), so it comes last.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// The built-in services data.
pub const BUILT_IN: &str = include_str!("../../data/services.toml");

/// The kinds of service (`type` in the data file; `service_type` in ClickHouse).
pub const SERVICE_TYPES: &[&str] = &[
    "mailbox provider",
    "marketing",
    "transactional",
    "crm",
    "helpdesk",
    "forwarder",
    "mailing list",
    "security gateway",
    "hosting",
    "isp",
    "public sector",
    "collaboration",
    "other",
];

/// A sending service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// One of [`SERVICE_TYPES`].
    pub service_type: String,
    /// The services it sends through.
    pub via: Vec<String>,
}

/// One `[[service]]` of a data file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    ptr: Vec<String>,
    #[serde(default)]
    spf: Vec<String>,
    #[serde(default)]
    dkim: Vec<String>,
    #[serde(default)]
    asn: Vec<u32>,
    /// Services this one sends through (e.g. GOV.UK Notify through Amazon SES).
    #[serde(default)]
    via: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFile {
    #[serde(default)]
    service: Vec<Entry>,
}

/// The services and their keys.
#[derive(Debug, Default)]
pub struct Services {
    services: Vec<Service>,
    by_ptr: HashMap<String, usize>,
    by_spf: HashMap<String, usize>,
    by_dkim: HashMap<String, usize>,
    by_asn: HashMap<u32, usize>,
    /// Names the data (a hash of the files' text), so rows named with other data are
    /// named again.
    version: String,
}

impl Services {
    /// The built-in services plus those of `user_file` (an entry whose name is a built-in
    /// one's replaces it). Fails naming the file and the entry at fault.
    pub fn load(user_file: Option<&Path>) -> Result<Services, String> {
        let mut entries = parse(BUILT_IN, "the built-in services data")?;
        let mut hashed = BUILT_IN.to_owned();
        if let Some(path) = user_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("enrich.services_file {}: {e}", path.display()))?;
            let what = format!("enrich.services_file {}", path.display());
            for entry in parse(&text, &what)? {
                entries.retain(|e| e.name != entry.name);
                entries.push(entry);
            }
            hashed.push_str(&text);
        }
        let mut services = Services {
            version: format!("services:{:016x}", fnv1a(hashed.as_bytes())),
            ..Services::default()
        };
        for entry in entries {
            let index = services.services.len();
            for (keys, map) in [
                (&entry.ptr, &mut services.by_ptr),
                (&entry.spf, &mut services.by_spf),
                (&entry.dkim, &mut services.by_dkim),
            ] {
                for key in keys {
                    map.insert(normalise(key), index);
                }
            }
            for asn in &entry.asn {
                services.by_asn.insert(*asn, index);
            }
            services.services.push(Service {
                name: entry.name,
                service_type: entry.service_type,
                via: entry.via,
            });
        }
        Ok(services)
    }

    /// How many services are known.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Names this data ("services:<hash>").
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The service of a source: by its confirmed PTR name (`""` if none), else its
    /// passing SPF domains, else its passing DKIM domains, else its AS number (0 unknown);
    /// a service found by SPF or DKIM that sends `via` the one of the PTR name is taken
    /// instead of it.
    pub fn identify(
        &self,
        ptr: &str,
        spf_pass: &[String],
        dkim_pass: &[String],
        asn: u32,
    ) -> Option<&Service> {
        let by_ptr = under(&self.by_ptr, ptr).map(|i| &self.services[i]);
        let by_auth = spf_pass
            .iter()
            .find_map(|d| under(&self.by_spf, d))
            .or_else(|| dkim_pass.iter().find_map(|d| under(&self.by_dkim, d)))
            .map(|i| &self.services[i]);
        match (by_ptr, by_auth) {
            (Some(host), Some(auth)) if auth.via.contains(&host.name) => Some(auth),
            (Some(host), _) => Some(host),
            (None, Some(auth)) => Some(auth),
            (None, None) => self.by_asn.get(&asn).map(|i| &self.services[*i]),
        }
    }
}

/// The entry of `domain` or of the closest parent domain listed in `map`.
fn under(map: &HashMap<String, usize>, domain: &str) -> Option<usize> {
    let domain = normalise(domain);
    let mut rest = domain.as_str();
    while !rest.is_empty() {
        if let Some(index) = map.get(rest) {
            return Some(*index);
        }
        rest = rest.split_once('.').map(|(_, parent)| parent).unwrap_or("");
    }
    None
}

fn normalise(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Parses and checks one data file: known types, names given, at least one key each.
fn parse(text: &str, what: &str) -> Result<Vec<Entry>, String> {
    let data: DataFile = toml::from_str(text).map_err(|e| format!("{what}: {e}"))?;
    for entry in &data.service {
        let problem = if entry.name.trim().is_empty() {
            Some("a service without a name".to_owned())
        } else if !SERVICE_TYPES.contains(&entry.service_type.as_str()) {
            Some(format!(
                "service {:?}: type {:?} is not one of {}",
                entry.name,
                entry.service_type,
                SERVICE_TYPES.join(", ")
            ))
        } else if entry.ptr.is_empty()
            && entry.spf.is_empty()
            && entry.dkim.is_empty()
            && entry.asn.is_empty()
        {
            Some(format!(
                "service {:?} has no ptr, spf, dkim or asn to be known by",
                entry.name
            ))
        } else {
            entry
                .ptr
                .iter()
                .chain(&entry.spf)
                .chain(&entry.dkim)
                .find(|d| {
                    let d = normalise(d);
                    d.is_empty() || d.starts_with('.') || d.contains(char::is_whitespace)
                })
                .map(|d| format!("service {:?}: {d:?} is not a domain", entry.name))
        };
        if let Some(problem) = problem {
            return Err(format!("{what}: {problem}"));
        }
    }
    Ok(data.service)
}

/// 64-bit FNV-1a: a hash that stays the same across builds and Rust versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_built_in_data_is_valid_and_names_at_least_150_services() {
        let services = Services::load(None).unwrap();
        assert!(services.len() >= 150, "{} services", services.len());
        let names: HashSet<&str> = services.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), services.len(), "a service name is used twice");
        // Each built-in key names one service only.
        let entries = parse(BUILT_IN, "built-in").unwrap();
        for key in ["ptr", "spf", "dkim"] {
            let mut seen = HashMap::new();
            for entry in &entries {
                let keys = match key {
                    "ptr" => &entry.ptr,
                    "spf" => &entry.spf,
                    _ => &entry.dkim,
                };
                for k in keys {
                    if let Some(other) = seen.insert(normalise(k), &entry.name) {
                        panic!("{key} {k:?} names both {other:?} and {:?}", entry.name);
                    }
                }
            }
        }
    }

    #[test]
    fn a_source_is_known_by_ptr_then_spf_then_dkim_then_asn() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services.toml");
        std::fs::write(
            &file,
            r#"
[[service]]
name = "Relay A"
type = "transactional"
ptr = ["out.relay-a.example"]
spf = ["bounce.relay-a.example"]
[[service]]
name = "Signer B"
type = "marketing"
dkim = ["signer-b.example"]
asn = [64500]
[[service]]
name = "Hosting C"
type = "hosting"
asn = [64501]
"#,
        )
        .unwrap();
        let services = Services::load(Some(&file)).unwrap();
        let name = |ptr: &str, spf: &[&str], dkim: &[&str], asn: u32| {
            let spf: Vec<String> = spf.iter().map(|s| s.to_string()).collect();
            let dkim: Vec<String> = dkim.iter().map(|s| s.to_string()).collect();
            services
                .identify(ptr, &spf, &dkim, asn)
                .map(|s| s.name.clone())
                .unwrap_or_default()
        };
        assert_eq!(name("MTA7.Out.Relay-A.example.", &[], &[], 0), "Relay A");
        assert_eq!(name("out.relay-a.example.evil.example", &[], &[], 0), "");
        assert_eq!(
            name(
                "host.unknown.example",
                &["x.bounce.relay-a.example"],
                &["signer-b.example"],
                64501
            ),
            "Relay A",
            "a passing SPF domain before a DKIM one"
        );
        assert_eq!(name("", &[], &["mail.signer-b.example"], 64501), "Signer B");
        assert_eq!(name("", &[], &[], 64501), "Hosting C");
        // A service sending through another's hosts is named when its domain passes.
        assert_eq!(
            name(
                "a1-2.smtp-out.amazonses.com",
                &["notifications.service.gov.uk"],
                &[],
                0
            ),
            "GOV.UK Notify"
        );
        assert_eq!(
            name("a1-2.smtp-out.amazonses.com", &["example.com"], &[], 0),
            "Amazon SES"
        );
        assert_eq!(name("", &[], &[], 64502), "");
        assert_ne!(services.version(), Services::load(None).unwrap().version());
    }

    #[test]
    fn a_user_entry_replaces_the_built_in_one_of_its_name_and_bad_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services.toml");
        std::fs::write(
            &file,
            "[[service]]\nname = \"Amazon SES\"\ntype = \"public sector\"\nasn = [64510]\n",
        )
        .unwrap();
        let services = Services::load(Some(&file)).unwrap();
        let ses = services.identify("", &[], &[], 64510).unwrap();
        assert_eq!(ses.service_type, "public sector");
        assert!(
            services
                .identify("a1-2.smtp-out.amazonses.com", &[], &[], 0)
                .is_none_or(|s| s.name != "Amazon SES"),
            "the user's entry replaced the built-in keys"
        );
        std::fs::write(
            &file,
            "[[service]]\nname = \"X\"\ntype = \"spam\"\nasn = [1]\n",
        )
        .unwrap();
        let e = Services::load(Some(&file)).unwrap_err();
        assert!(e.contains("services.toml") && e.contains("\"spam\""), "{e}");
        std::fs::write(&file, "[[service]]\nname = \"X\"\ntype = \"other\"\n").unwrap();
        let e = Services::load(Some(&file)).unwrap_err();
        assert!(e.contains("no ptr, spf, dkim or asn"), "{e}");
    }
}
