//! Networks: an IP address -> its AS number, AS organisation and country, from the
//! MaxMind-format databases of `[enrich] asn_database` / `country_database` (GeoLite2-ASN
//! and -Country, IPinfo Lite, DB-IP Lite, ip-location-db...: one file may serve both).
//!
//! In: an address. Out: a [`Network`] (0 and "" for what no database knows). A database
//! is read whole into memory when opened; [`Networks::reload_if_changed`] opens it again
//! when its file changed (size or modification time), keeping the old one if the new file
//! cannot be read. Without a database the columns stay empty: one warning, not an error.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use maxminddb::Reader;
use serde::Deserialize;

use crate::config::EnrichConfig;

/// What the databases say of one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// Autonomous system number (0: unknown).
    pub asn: u32,
    /// The AS's organisation ("" unknown).
    pub as_org: String,
    /// ISO 3166-1 alpha-2 country code, upper case ("" unknown).
    pub country: String,
}

/// One opened database file.
struct Database {
    path: PathBuf,
    /// Size and modification time when read: a change means a new file.
    stamp: (u64, Option<SystemTime>),
    reader: Reader<Vec<u8>>,
}

impl Database {
    fn open(path: &Path) -> Result<Database, String> {
        let stamp = file_stamp(path)?;
        let reader = Reader::open_readfile(path)
            .map_err(|e| format!("{}: not a MaxMind-format database: {e}", path.display()))?;
        Ok(Database {
            path: path.to_owned(),
            stamp,
            reader,
        })
    }

    /// The fields of one address, whichever of the known layouts the file uses.
    fn record(&self, ip: IpAddr) -> Option<NetworkRecord> {
        match self.reader.lookup(ip).and_then(|found| found.decode()) {
            Ok(record) => record,
            Err(e) => {
                tracing::debug!(database = %self.path.display(), %ip, error = %e, "unreadable network record");
                None
            }
        }
    }

    /// Names the file's content: its type and build time.
    fn version(&self) -> String {
        let meta = self.reader.metadata();
        format!("{}@{}", meta.database_type, meta.build_epoch)
    }
}

fn file_stamp(path: &Path) -> Result<(u64, Option<SystemTime>), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((meta.len(), meta.modified().ok()))
}

/// The fields of the layouts in use: GeoLite2/DB-IP (`autonomous_system_number`,
/// `autonomous_system_organization`, `country.iso_code`), IPinfo Lite (`asn` "AS15169",
/// `as_name`, `country_code`) and ip-location-db (`country_code`). Others are ignored.
#[derive(Debug, Default, Deserialize)]
struct NetworkRecord {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
    asn: Option<AsNumber>,
    as_name: Option<String>,
    country: Option<CountryField>,
    country_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AsNumber {
    Number(u32),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CountryField {
    Record { iso_code: Option<String> },
    Code(String),
}

impl NetworkRecord {
    fn asn(&self) -> u32 {
        match (&self.autonomous_system_number, &self.asn) {
            (Some(n), _) => *n,
            (None, Some(AsNumber::Number(n))) => *n,
            (None, Some(AsNumber::Text(text))) => {
                let digits = text.trim().trim_start_matches(['A', 'S', 'a', 's']);
                digits.parse().unwrap_or(0)
            }
            (None, None) => 0,
        }
    }

    fn as_org(&self) -> String {
        let name = self
            .autonomous_system_organization
            .as_deref()
            .or(self.as_name.as_deref())
            .unwrap_or("");
        name.trim().to_owned()
    }

    fn country(&self) -> String {
        let code = match (&self.country, &self.country_code) {
            (Some(CountryField::Record { iso_code: Some(c) }), _) => c.as_str(),
            (Some(CountryField::Code(c)), _) if c.len() == 2 => c.as_str(),
            (_, Some(c)) => c.as_str(),
            _ => "",
        };
        let code = code.trim();
        if code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
            code.to_ascii_uppercase()
        } else {
            String::new()
        }
    }
}

/// The configured databases (either may be absent; one file may be both).
pub struct Networks {
    asn: Option<Arc<Database>>,
    country: Option<Arc<Database>>,
}

impl Networks {
    /// Opens the databases of `[enrich]`. Fails, naming the file, when a configured one
    /// cannot be read; warns once when none is configured.
    pub fn open(config: &EnrichConfig) -> Result<Networks, String> {
        let asn = config
            .asn_database
            .as_deref()
            .map(Database::open)
            .transpose()?;
        let asn = asn.map(Arc::new);
        let country = match (&config.country_database, &asn) {
            (Some(path), Some(db)) if path == &db.path => Some(db.clone()),
            (Some(path), _) => Some(Arc::new(Database::open(path)?)),
            (None, _) => None,
        };
        if asn.is_none() && country.is_none() {
            tracing::warn!(
                "no [enrich] asn_database or country_database: sources get no AS number, AS \
                 organisation or country (see README: free databases)"
            );
        }
        Ok(Networks { asn, country })
    }

    /// No databases: every lookup answers "unknown".
    pub fn none() -> Networks {
        Networks {
            asn: None,
            country: None,
        }
    }

    /// Opens again each database whose file changed since it was read. A file that cannot
    /// be read now is logged and the database read before is kept.
    pub fn reload_if_changed(&mut self) {
        let shared = matches!((&self.asn, &self.country), (Some(a), Some(c)) if Arc::ptr_eq(a, c));
        if let Some(db) = &mut self.asn {
            reload(db);
        }
        if shared {
            self.country = self.asn.clone();
        } else if let Some(db) = &mut self.country {
            reload(db);
        }
    }

    /// What the databases know of `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Network {
        let mut network = Network::default();
        if let Some(record) = self.asn.as_ref().and_then(|db| db.record(ip)) {
            network.asn = record.asn();
            network.as_org = record.as_org();
        }
        if let Some(record) = self.country.as_ref().and_then(|db| db.record(ip)) {
            network.country = record.country();
        }
        network
    }

    /// Names the databases in use ("asn:GeoLite2-ASN@1700000000 country:..."), so that rows
    /// made with other ones are made again.
    pub fn version(&self) -> String {
        let name =
            |db: &Option<Arc<Database>>| db.as_ref().map(|d| d.version()).unwrap_or_default();
        format!("asn:{} country:{}", name(&self.asn), name(&self.country))
    }
}

/// Reads `db`'s file again if its size or modification time changed.
fn reload(db: &mut Arc<Database>) {
    match file_stamp(&db.path) {
        Ok(stamp) if stamp == db.stamp => {}
        Ok(_) => match Database::open(&db.path) {
            Ok(fresh) => {
                tracing::info!(database = %db.path.display(), version = %fresh.version(), "network database reloaded");
                *db = Arc::new(fresh);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload the network database; keeping the one read before")
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the network database; keeping the one read before")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> NetworkRecord {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn each_known_layout_gives_asn_organisation_and_country() {
        let geolite = record(
            r#"{"autonomous_system_number": 8075, "autonomous_system_organization": "MICROSOFT-CORP", "country": {"iso_code": "gb", "names": {"en": "United Kingdom"}}}"#,
        );
        assert_eq!(
            (geolite.asn(), geolite.as_org(), geolite.country()),
            (8075, "MICROSOFT-CORP".into(), "GB".into())
        );
        let ipinfo = record(r#"{"asn": "AS15169", "as_name": "Google LLC", "country_code": "US"}"#);
        assert_eq!(
            (ipinfo.asn(), ipinfo.as_org(), ipinfo.country()),
            (15169, "Google LLC".into(), "US".into())
        );
        let nothing = record(r#"{"country_code": "not a code", "asn": "ASX"}"#);
        assert_eq!((nothing.asn(), nothing.country()), (0, String::new()));
    }

    #[test]
    fn no_database_knows_nothing_and_a_missing_file_is_named() {
        let none = Networks::none();
        assert_eq!(
            none.lookup("192.0.2.1".parse().unwrap()),
            Network::default()
        );
        let config = EnrichConfig {
            asn_database: Some("/nonexistent/asn.mmdb".into()),
            ..EnrichConfig::default()
        };
        let e = Networks::open(&config).err().unwrap();
        assert!(e.contains("/nonexistent/asn.mmdb"), "{e}");
    }
}
