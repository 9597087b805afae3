//! `[domains]`: the inventory of domains the team answers for ([`crate::inventory`]).

use std::path::PathBuf;

use serde::Deserialize;

/// Which reports are taken.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Accept {
    /// Reports for any domain.
    #[default]
    Any,
    /// Only reports for a domain of the inventory; others are refused (`unknown_domain`).
    Inventory,
}

/// Default days of `p=none` before a domain turns red.
pub const DEFAULT_P_NONE_DAYS: u32 = 90;

/// `[domains]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsConfig {
    /// The domains file (CSV, header `domain,owner,group,parked,contact`), loaded into
    /// `dmarc.domains` by `dmarc-ingest domains sync`.
    #[serde(deserialize_with = "crate::config::optional_path")]
    pub file: Option<PathBuf>,
    /// `any` (default) or `inventory`.
    pub accept: Accept,
    /// The central team's report address, which every domain's `rua` should include
    /// ('' : not checked).
    pub rua_address: String,
    /// A domain whose DMARC policy has been `none` this many days is red (amber before).
    #[serde(deserialize_with = "crate::config::number")]
    pub p_none_days: u32,
}

impl Default for DomainsConfig {
    fn default() -> Self {
        DomainsConfig {
            file: None,
            accept: Accept::Any,
            rua_address: String::new(),
            p_none_days: DEFAULT_P_NONE_DAYS,
        }
    }
}

impl DomainsConfig {
    /// Checks the section: `accept = "inventory"` needs the domains file (the inventory
    /// it fills), and the team's address must be an address.
    pub fn validate(&self) -> Result<(), String> {
        if self.accept == Accept::Inventory && self.file.is_none() {
            return Err("domains.accept = \"inventory\" needs domains.file (the inventory)".into());
        }
        let team = self.rua_address.trim();
        let team = team.strip_prefix("mailto:").unwrap_or(team);
        if !team.is_empty() && !team.contains('@') {
            return Err(format!(
                "domains.rua_address = {:?} is not an address (e.g. \"dmarc-rua@reports.example\")",
                self.rua_address
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::Accept;
    use crate::config::Config;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_parts(toml, Path::new("t.toml"), &env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_domains_file_comes_from_the_file_or_the_environment() {
        let c = load("", &[]).unwrap();
        assert_eq!((c.domains.file, c.domains.accept), (None, Accept::Any));
        let c = load("[domains]\nfile = \"/etc/d.csv\"\n", &[]).unwrap();
        assert_eq!(c.domains.file.unwrap(), Path::new("/etc/d.csv"));
        let c = load("", &[("DMARC_INGEST_DOMAINS_FILE", "/x/d.csv")]).unwrap();
        assert_eq!(c.domains.file.unwrap(), Path::new("/x/d.csv"));
    }

    #[test]
    fn accepting_the_inventory_only_needs_the_domains_file() {
        let e = load("[domains]\naccept = \"inventory\"\n", &[]).unwrap_err();
        assert!(e.contains("needs domains.file"), "{e}");
        let c = load(
            "[domains]\naccept = \"inventory\"\nfile = \"/d.csv\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.domains.accept, Accept::Inventory);
        let e = load("[domains]\naccept = \"some\"\n", &[]).unwrap_err();
        assert!(e.contains("accept"), "{e}");
    }

    #[test]
    fn the_team_address_and_the_p_none_days_are_read() {
        let c = load(
            "[domains]\nrua_address = \"mailto:rua@team.test\"\np_none_days = 30\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.domains.p_none_days, 30);
        assert_eq!(load("", &[]).unwrap().domains.p_none_days, 90);
        let e = load("[domains]\nrua_address = \"team.test\"\n", &[]).unwrap_err();
        assert!(e.contains("not an address"), "{e}");
    }
}
