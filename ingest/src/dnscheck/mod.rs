//! DNS checks: what one domain publishes for mail authentication, read and judged.
//!
//! In: a [`Target`] (a domain, whether it is in the inventory, the DKIM selectors seen in
//! its reports) and the [`Resolver`]. Out: a [`DomainCheck`], the snapshot stored as one
//! row of `dns_checks`: the raw records, the parsed fields and the [`Finding`]s, per
//! record type:
//! - DMARC ([`dmarc`]): `_dmarc.<domain>`, else the organisational domain's (RFC 7489
//!   6.6.3; marked inherited, and the names a DMARCbis tree walk would ask first noted);
//!   every external report destination checked for its authorisation (RFC 7489 7.1);
//!   whether rua reaches the central team.
//! - SPF ([`spf`]): the record, then includes and redirects followed to count the DNS
//!   lookups (limit 10) and the void ones (limit 2), loops found, and the same reading
//!   applied to every included record.
//! - MX (null MX of RFC 7505), MTA-STS and TLS-RPT records.
//! - DKIM ([`dkim`]): the key of every selector seen.
//!
//! A lookup that gets no answer (SERVFAIL, timeout) is counted in `failed_lookups` and
//! becomes an error finding of its record type: receivers asking the same servers get
//! no better answer. Nothing here fails: a check always produces a snapshot.

pub mod dkim;
pub mod dmarc;
pub mod finding;
pub mod run;
pub mod spf;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

pub use finding::{Area, Finding, Severity, TypeStatus};

use crate::resolver::{DnsFailure, Records, Resolver};

/// Most SPF lookups a check follows for one domain (the limit is 10; a few more show by
/// how much it is exceeded, without letting a hostile record make us ask without end).
pub const MAX_SPF_QUERIES: usize = 40;
/// Most DKIM selectors checked per domain.
pub const MAX_SELECTORS: usize = 16;
/// Most report destinations (rua and ruf) checked for their authorisation per domain.
pub const MAX_REPORT_DESTINATIONS: usize = 10;

/// A domain to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub domain: String,
    pub in_inventory: bool,
    /// DKIM selectors seen signing this domain's mail lately.
    pub selectors: Vec<String>,
}

/// What every check of a run shares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckSettings {
    /// The central team's report address (`[domains] rua_address`), lower case.
    pub rua_address: Option<String>,
}

/// One selector's key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorKey {
    pub selector: String,
    /// The TXT record ("" when there is none).
    pub record: String,
    pub key: dkim::DkimKey,
}

/// The snapshot of one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainCheck {
    pub domain: String,
    pub in_inventory: bool,
    pub failed_lookups: u16,
    /// Where the DMARC record was found ("" none).
    pub dmarc_name: String,
    pub dmarc_inherited: bool,
    pub dmarc_records: Vec<String>,
    /// The tags of the one record in force (empty when none or several).
    pub dmarc: dmarc::DmarcRecord,
    pub rua_reaches_team: bool,
    pub spf_records: Vec<String>,
    pub spf_lookups: u16,
    pub spf_void_lookups: u16,
    pub spf_all: String,
    pub mx_hosts: Vec<String>,
    pub null_mx: bool,
    pub dkim: Vec<SelectorKey>,
    pub mta_sts_record: String,
    pub tls_rpt_record: String,
    pub findings: Vec<Finding>,
}

impl DomainCheck {
    /// The per-type statuses: (dmarc, spf, dkim, mx with MTA-STS and TLS-RPT).
    pub fn statuses(&self) -> [TypeStatus; 4] {
        [
            TypeStatus::of(&self.findings, &[Area::Dmarc], true),
            TypeStatus::of(&self.findings, &[Area::Spf], true),
            TypeStatus::of(&self.findings, &[Area::Dkim], !self.dkim.is_empty()),
            TypeStatus::of(
                &self.findings,
                &[Area::Mx, Area::MtaSts, Area::TlsRpt],
                true,
            ),
        ]
    }

    fn failed(&mut self, area: Area, failure: DnsFailure) {
        self.failed_lookups = self.failed_lookups.saturating_add(1);
        self.findings.push(Finding::new(
            area,
            Severity::Error,
            "dns_failure",
            format!(
                "{}: no answer ({}); receivers asking the same servers get none either",
                failure.query, failure.reason
            ),
        ));
    }
}

/// Checks `target` (see the module doc).
pub async fn check_domain(
    resolver: &Resolver,
    target: &Target,
    settings: &CheckSettings,
) -> DomainCheck {
    let domain = target.domain.trim_end_matches('.').to_ascii_lowercase();
    let mut check = DomainCheck {
        domain: domain.clone(),
        in_inventory: target.in_inventory,
        ..DomainCheck::default()
    };
    if !is_host_name(&domain) {
        check.findings.push(Finding::new(
            Area::Dmarc,
            Severity::Error,
            "bad_domain_name",
            format!("{domain:?} is not a domain name; nothing was looked up"),
        ));
        return check;
    }
    let selectors: Vec<&String> = target
        .selectors
        .iter()
        .filter(|s| is_selector(s))
        .take(MAX_SELECTORS)
        .collect();
    let (dmarc, spf, mx, dkim) = tokio::join!(
        check_dmarc(resolver, &domain, settings),
        check_spf(resolver, &domain),
        check_mx(resolver, &domain),
        futures::future::join_all(
            selectors
                .iter()
                .map(|s| check_selector(resolver, &domain, s))
        ),
    );
    for part in [dmarc, spf, mx].into_iter().chain(dkim) {
        check.merge(part);
    }
    check
}

impl DomainCheck {
    /// Adds a partial check (one record type's fields and findings) to this one.
    fn merge(&mut self, part: DomainCheck) {
        self.failed_lookups = self.failed_lookups.saturating_add(part.failed_lookups);
        self.findings.extend(part.findings);
        if !part.dmarc_name.is_empty() || !part.dmarc_records.is_empty() {
            self.dmarc_name = part.dmarc_name;
            self.dmarc_inherited = part.dmarc_inherited;
            self.dmarc_records = part.dmarc_records;
            self.dmarc = part.dmarc;
        }
        self.rua_reaches_team |= part.rua_reaches_team;
        if !part.spf_records.is_empty() {
            self.spf_records = part.spf_records;
            self.spf_lookups = part.spf_lookups;
            self.spf_void_lookups = part.spf_void_lookups;
            self.spf_all = part.spf_all;
        }
        if !part.mx_hosts.is_empty() || part.null_mx {
            self.mx_hosts = part.mx_hosts;
            self.null_mx = part.null_mx;
        }
        if !part.mta_sts_record.is_empty() {
            self.mta_sts_record = part.mta_sts_record;
        }
        if !part.tls_rpt_record.is_empty() {
            self.tls_rpt_record = part.tls_rpt_record;
        }
        self.dkim.extend(part.dkim);
    }
}

/// The DMARC part of a check.
async fn check_dmarc(resolver: &Resolver, domain: &str, settings: &CheckSettings) -> DomainCheck {
    let mut check = DomainCheck::default();
    let org = crate::domains::organisational(domain);
    let mut found_at = domain.to_owned();
    let mut records = match dmarc_records(resolver, domain).await {
        Ok(records) => records,
        Err(failure) => {
            check.failed(Area::Dmarc, failure);
            return check;
        }
    };
    if records.is_empty() && org != domain {
        match dmarc_records(resolver, &org).await {
            Ok(at_org) if !at_org.is_empty() => {
                records = at_org;
                found_at = org.clone();
                check.dmarc_inherited = true;
            }
            Ok(_) => {}
            Err(failure) => {
                check.failed(Area::Dmarc, failure);
                return check;
            }
        }
    }
    match records.len() {
        0 => {
            check.findings.push(Finding::new(
                Area::Dmarc,
                Severity::Error,
                "dmarc_missing",
                if org == domain {
                    format!("no DMARC record at _dmarc.{domain}")
                } else {
                    format!("no DMARC record at _dmarc.{domain} nor at _dmarc.{org}")
                },
            ));
            return check;
        }
        1 => {}
        n => {
            check.dmarc_name = format!("_dmarc.{found_at}");
            check.dmarc_records = records;
            check.findings.push(Finding::new(
                Area::Dmarc,
                Severity::Error,
                "dmarc_several",
                format!("{n} DMARC records at _dmarc.{found_at}: receivers ignore them all"),
            ));
            return check;
        }
    }
    check.dmarc_name = format!("_dmarc.{found_at}");
    let (record, findings) = dmarc::parse(&records[0]);
    check.dmarc_records = records;
    check.findings.extend(findings);
    if check.dmarc_inherited {
        let applies = record
            .sp
            .as_deref()
            .or(record.p.as_deref())
            .unwrap_or("none");
        check.findings.push(Finding::new(
            Area::Dmarc,
            Severity::Info,
            "dmarc_inherited",
            format!(
                "no record at _dmarc.{domain}: the organisational domain's record applies (p={applies} for this subdomain)"
            ),
        ));
        // DMARCbis (RFC 9990) walks up the tree: a record between the domain and its
        // organisational domain would apply there instead.
        for between in names_between(domain, &org) {
            if let Ok(found) = dmarc_records(resolver, &between).await {
                if !found.is_empty() {
                    check.findings.push(Finding::new(
                        Area::Dmarc,
                        Severity::Info,
                        "dmarc_tree_walk",
                        format!(
                            "receivers following RFC 9990's tree walk use the record at _dmarc.{between} instead"
                        ),
                    ));
                    break;
                }
            }
        }
    }
    let destinations: Vec<(String, bool)> = record
        .rua
        .iter()
        .map(|u| (u, true))
        .chain(record.ruf.iter().map(|u| (u, false)))
        .filter_map(|(uri, aggregate)| dmarc::mailbox_of(uri).map(|m| (m, aggregate)))
        .take(MAX_REPORT_DESTINATIONS)
        .collect();
    let team = settings.rua_address.as_deref().map(str::to_ascii_lowercase);
    let mut team_authorised = false;
    let mut checked: BTreeSet<String> = BTreeSet::new();
    for (mailbox, aggregate) in &destinations {
        let destination = mailbox.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let authorised = if crate::domains::organisational(destination) == org {
            true
        } else {
            let name = format!("{found_at}._report._dmarc.{destination}");
            match resolver.txt(&name).await {
                Ok(found) => found.into_vec().iter().any(|t| dmarc::is_dmarc(t)),
                Err(failure) => {
                    check.failed(Area::Dmarc, failure);
                    continue;
                }
            }
        };
        if !authorised && checked.insert(destination.to_owned()) {
            check.findings.push(Finding::new(
                Area::Dmarc,
                Severity::Warning,
                "dmarc_destination_unauthorised",
                format!(
                    "{destination} does not accept reports for {found_at} (no v=DMARC1 at {found_at}._report._dmarc.{destination}): receivers send none there"
                ),
            ));
        }
        if *aggregate && team.as_deref() == Some(&mailbox.to_ascii_lowercase()) && authorised {
            team_authorised = true;
        }
    }
    check.rua_reaches_team = team.is_none() || team_authorised;
    if let (Some(team), false) = (&team, team_authorised) {
        check.findings.push(Finding::new(
            Area::Dmarc,
            Severity::Warning,
            "dmarc_rua_misses_team",
            format!("rua does not reach {team}: the central team gets no reports for this domain"),
        ));
    }
    check.dmarc = record;
    check
}

/// The DMARC records at `_dmarc.<domain>`.
async fn dmarc_records(resolver: &Resolver, domain: &str) -> Result<Vec<String>, DnsFailure> {
    Ok(resolver
        .txt(&format!("_dmarc.{domain}"))
        .await?
        .into_vec()
        .into_iter()
        .filter(|t| dmarc::is_dmarc(t))
        .collect())
}

/// The names strictly between `domain` and its organisational domain `org`, longest
/// first (`a.b.c.example.com` → `b.c.example.com`, `c.example.com`), at most 5.
fn names_between(domain: &str, org: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = domain;
    while let Some((_, parent)) = rest.split_once('.') {
        if parent.len() <= org.len() || names.len() == 5 {
            break;
        }
        names.push(parent.to_owned());
        rest = parent;
    }
    names
}

/// Running totals of one SPF evaluation.
#[derive(Default)]
struct SpfWalk {
    lookups: u16,
    voids: u16,
    queries: usize,
    findings: Vec<Finding>,
    failures: Vec<DnsFailure>,
}

/// The SPF part of a check.
async fn check_spf(resolver: &Resolver, domain: &str) -> DomainCheck {
    let mut check = DomainCheck::default();
    let records: Vec<String> = match resolver.txt(domain).await {
        Ok(found) => found
            .into_vec()
            .into_iter()
            .filter(|t| spf::is_spf(t))
            .collect(),
        Err(failure) => {
            check.failed(Area::Spf, failure);
            return check;
        }
    };
    match records.len() {
        0 => {
            check.findings.push(Finding::new(
                Area::Spf,
                Severity::Warning,
                "spf_missing",
                format!("no SPF record at {domain}"),
            ));
            return check;
        }
        1 => {}
        n => {
            check.spf_records = records;
            check.findings.push(Finding::new(
                Area::Spf,
                Severity::Error,
                "spf_several",
                format!("{n} SPF records: receivers fail them all (permerror)"),
            ));
            return check;
        }
    }
    let (record, findings) = spf::parse(&records[0], "");
    check.findings.extend(findings);
    check.spf_all = record.ending();
    let mut walk = SpfWalk::default();
    let mut chain = vec![domain.to_owned()];
    follow(resolver, domain, &record, &mut chain, &mut walk).await;
    check.spf_records = records;
    check.spf_lookups = walk.lookups;
    check.spf_void_lookups = walk.voids;
    check.findings.extend(walk.findings);
    for failure in walk.failures {
        check.failed(Area::Spf, failure);
    }
    if walk.lookups > 10 {
        check.findings.push(Finding::new(
            Area::Spf,
            Severity::Error,
            "spf_too_many_lookups",
            format!(
                "{} DNS lookups (limit 10): receivers fail the record (permerror)",
                walk.lookups
            ),
        ));
    } else if walk.lookups == 10 {
        check.findings.push(Finding::new(
            Area::Spf,
            Severity::Warning,
            "spf_lookups_at_limit",
            "10 DNS lookups, the limit: one more include breaks SPF".to_owned(),
        ));
    }
    if walk.voids > 2 {
        check.findings.push(Finding::new(
            Area::Spf,
            Severity::Error,
            "spf_too_many_void_lookups",
            format!(
                "{} lookups find nothing (limit 2): receivers fail the record (permerror)",
                walk.voids
            ),
        ));
    }
    check
}

/// Counts the lookups of `record` (published at `domain`), following includes and the
/// redirect; `chain` holds the names being followed, to find loops.
fn follow<'a>(
    resolver: &'a Resolver,
    domain: &'a str,
    record: &'a spf::SpfRecord,
    chain: &'a mut Vec<String>,
    walk: &'a mut SpfWalk,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut targets: Vec<(&str, String)> = Vec::new();
        for directive in &record.directives {
            use spf::Mechanism;
            let (kind, name) = match &directive.mechanism {
                Mechanism::All | Mechanism::Ip4(_) | Mechanism::Ip6(_) => continue,
                Mechanism::Include(name) => ("include", name.clone()),
                Mechanism::A(name) => ("a", name.clone().unwrap_or_else(|| domain.to_owned())),
                Mechanism::Mx(name) => ("mx", name.clone().unwrap_or_else(|| domain.to_owned())),
                Mechanism::Ptr(_) => ("ptr", String::new()),
                Mechanism::Exists(name) => ("exists", name.clone()),
            };
            targets.push((kind, name));
        }
        if record.all().is_none() {
            if let Some(redirect) = &record.redirect {
                targets.push(("redirect", redirect.clone()));
            }
        }
        for (kind, name) in targets {
            walk.lookups = walk.lookups.saturating_add(1);
            // Macros (%{i}...) depend on the message; ptr on the connecting address.
            if kind == "ptr" || name.contains('%') || walk.queries >= MAX_SPF_QUERIES {
                continue;
            }
            walk.queries += 1;
            match kind {
                "a" | "exists" => match resolver.has_address(&name).await {
                    Ok(true) => {}
                    Ok(false) => walk.voids = walk.voids.saturating_add(1),
                    Err(failure) => walk.failures.push(failure),
                },
                "mx" => match resolver.mx(&name).await {
                    Ok(Records::Found(_)) => {}
                    Ok(Records::None) => walk.voids = walk.voids.saturating_add(1),
                    Err(failure) => walk.failures.push(failure),
                },
                _ => {
                    if chain.contains(&name) {
                        walk.findings.push(Finding::new(
                            Area::Spf,
                            Severity::Error,
                            "spf_loop",
                            format!(
                                "{kind}:{name} loops back ({} → {name}): receivers fail the record (permerror)",
                                chain.join(" → ")
                            ),
                        ));
                        continue;
                    }
                    let found = match resolver.txt(&name).await {
                        Ok(found) => found,
                        Err(failure) => {
                            walk.failures.push(failure);
                            continue;
                        }
                    };
                    if found == Records::None {
                        walk.voids = walk.voids.saturating_add(1);
                    }
                    let records: Vec<String> = found
                        .into_vec()
                        .into_iter()
                        .filter(|t| spf::is_spf(t))
                        .collect();
                    if records.len() != 1 {
                        walk.findings.push(Finding::new(
                            Area::Spf,
                            Severity::Error,
                            "spf_include_broken",
                            format!(
                                "{kind}:{name} has {} SPF records: receivers fail the record (permerror)",
                                if records.is_empty() { "no".to_owned() } else { records.len().to_string() }
                            ),
                        ));
                        continue;
                    }
                    let place = format!("{kind}:{name}: ");
                    let (included, findings) = spf::parse(&records[0], &place);
                    // An included record without all, or with ?all, just does not match:
                    // only its other problems count.
                    walk.findings.extend(findings.into_iter().filter(|f| {
                        kind == "redirect" || !matches!(f.code, "spf_no_all" | "spf_neutral_all")
                    }));
                    chain.push(name.clone());
                    follow(resolver, &name, &included, chain, walk).await;
                    chain.pop();
                }
            }
        }
    })
}

/// The MX part of a check, with MTA-STS and TLS-RPT for domains that receive mail.
async fn check_mx(resolver: &Resolver, domain: &str) -> DomainCheck {
    let mut check = DomainCheck::default();
    let exchanges = match resolver.mx(domain).await {
        Ok(found) => found.into_vec(),
        Err(failure) => {
            check.failed(Area::Mx, failure);
            return check;
        }
    };
    let null = exchanges.iter().any(|mx| mx.exchange.is_empty());
    if exchanges.is_empty() {
        check.findings.push(Finding::new(
            Area::Mx,
            Severity::Info,
            "mx_missing",
            "no MX record: mail to the domain goes to its address record, if any (publish a null MX if it receives none)".to_owned(),
        ));
        return check;
    }
    if null {
        check.null_mx = true;
        if exchanges.len() > 1 {
            check.findings.push(Finding::new(
                Area::Mx,
                Severity::Error,
                "mx_null_mixed",
                "a null MX beside other MX records: senders may treat the domain either way (RFC 7505)".to_owned(),
            ));
        }
        check.mx_hosts = exchanges
            .iter()
            .filter(|mx| !mx.exchange.is_empty())
            .map(|mx| mx.exchange.clone())
            .collect();
        return check;
    }
    check.mx_hosts = exchanges.into_iter().map(|mx| mx.exchange).collect();
    let (sts_name, tls_name) = (format!("_mta-sts.{domain}"), format!("_smtp._tls.{domain}"));
    let (sts, tls) = tokio::join!(resolver.txt(&sts_name), resolver.txt(&tls_name));
    let mta_sts_codes = ["mta_sts_missing", "mta_sts_syntax", "mta_sts_several"];
    let tls_rpt_codes = ["tls_rpt_missing", "tls_rpt_syntax", "tls_rpt_several"];
    for (area, found, version, required, name, codes) in [
        (
            Area::MtaSts,
            sts,
            "v=STSv1",
            "id=",
            "MTA-STS",
            mta_sts_codes,
        ),
        (
            Area::TlsRpt,
            tls,
            "v=TLSRPTv1",
            "rua=",
            "TLS-RPT",
            tls_rpt_codes,
        ),
    ] {
        let [missing, syntax, several] = codes;
        let records: Vec<String> = match found {
            Ok(found) => found
                .into_vec()
                .into_iter()
                .filter(|t| t.trim_start().starts_with(version))
                .collect(),
            Err(failure) => {
                check.failed(area, failure);
                continue;
            }
        };
        match records.as_slice() {
            [] => check.findings.push(Finding::new(
                area,
                Severity::Info,
                missing,
                format!("no {name} record: mail to this domain can be downgraded to plain text unnoticed"),
            )),
            [one] => {
                if !one.split(';').any(|t| t.trim().starts_with(required)) {
                    check.findings.push(Finding::new(
                        area,
                        Severity::Warning,
                        syntax,
                        format!("the {name} record has no {required} tag"),
                    ));
                }
                match area {
                    Area::MtaSts => check.mta_sts_record = one.clone(),
                    _ => check.tls_rpt_record = one.clone(),
                }
            }
            _ => check.findings.push(Finding::new(
                area,
                Severity::Warning,
                several,
                format!("{} {name} records: senders ignore them all", records.len()),
            )),
        }
    }
    check
}

/// The DKIM part of a check for one selector.
async fn check_selector(resolver: &Resolver, domain: &str, selector: &str) -> DomainCheck {
    let mut check = DomainCheck::default();
    let name = format!("{selector}._domainkey.{domain}");
    let found = match resolver.txt(&name).await {
        Ok(found) => found.into_vec(),
        Err(failure) => {
            check.failed(Area::Dkim, failure);
            check.dkim.push(SelectorKey {
                selector: selector.to_owned(),
                ..SelectorKey::default()
            });
            return check;
        }
    };
    // A key record is the one with a p= tag (other TXT at the name are noise).
    let record = found
        .into_iter()
        .find(|t| t.split(';').any(|tag| tag.trim_start().starts_with("p=")));
    let Some(record) = record else {
        check.findings.push(Finding::new(
            Area::Dkim,
            Severity::Error,
            "dkim_missing_key",
            format!("selector {selector}: no key at {name}, yet mail signed with it arrives: its DKIM fails"),
        ));
        check.dkim.push(SelectorKey {
            selector: selector.to_owned(),
            ..SelectorKey::default()
        });
        return check;
    };
    let (key, findings) = dkim::parse(selector, &record);
    check.findings.extend(findings);
    check.dkim.push(SelectorKey {
        selector: selector.to_owned(),
        record,
        key,
    });
    check
}

/// Whether `name` can be looked up: at least two labels, 253 characters at most. Names
/// come from reports, written by strangers.
pub fn is_host_name(name: &str) -> bool {
    name.len() <= 253 && name.contains('.') && valid_labels(name)
}

/// Whether `selector` can be a DKIM selector: one or more labels, 128 characters at most.
fn is_selector(selector: &str) -> bool {
    selector.len() <= 128 && valid_labels(selector)
}

/// Labels of letters, digits, '-' and '_', 1 to 63 characters each.
fn valid_labels(name: &str) -> bool {
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_reports_are_checked_before_lookup() {
        assert!(is_host_name("example.gov.uk"));
        assert!(is_host_name("_x.example-1.test"));
        assert!(!is_host_name("localhost"));
        assert!(!is_host_name("a..test"));
        assert!(!is_host_name("a b.test"));
        assert!(!is_host_name(&format!("{}.test", "a".repeat(64))));
        assert!(is_selector("s1"));
        assert!(is_selector("2024.eu"));
        assert!(!is_selector("s1;p="));
        assert!(!is_selector(""));
    }

    #[test]
    fn the_names_a_tree_walk_asks_are_between_domain_and_organisational_domain() {
        assert_eq!(
            names_between("a.b.c.example.com", "example.com"),
            ["b.c.example.com", "c.example.com"]
        );
        assert!(names_between("a.example.com", "example.com").is_empty());
        assert!(names_between("example.com", "example.com").is_empty());
    }
}
