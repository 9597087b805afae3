//! Enrich: source addresses stored in `records` -> their names in `source_names`
//! (`dmarc-ingest enrich`, and the daemon in the background), off the ingest path.
//! Entry point: [`enrich_stored`].
//!
//! In: the addresses of records from a day on that have no current name
//! ([`Store::sources_to_resolve`]), with the passing SPF and DKIM domains of their
//! records. Out: one `source_names` row per address, written in batches, and an
//! [`EnrichSummary`]. A row holds the reverse name (confirmed, unconfirmed or absent:
//! [`crate::resolver`]), the AS number, AS organisation and country ([`networks`]), the
//! known service ([`services`]) and the [`sender`]. Addresses are read [`PAGE`] at a
//! time in address order; lookups run [`CONCURRENCY`] at a time. A lookup that failed
//! (timeout, SERVFAIL, the resolver unreachable) writes a row of status `failed` that
//! names what is known without DNS, made as of time 0 (any answered row outranks it) and
//! already expired, so the address is asked again at the next run; an absent name is
//! asked again sooner ([`ABSENT_LIFETIME`]) than a found one ([`NAME_LIFETIME`]).
//! Answers are also kept in memory ([`NameCache`], `[enrich] cache_entries`), so naming
//! again (new services data or databases, a lost write) does not ask DNS again.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;

use crate::config::Config;
use crate::resolver::{DnsFailure, Resolver, ReverseName};

pub mod networks;
pub mod services;

use crate::store::sources::{Since, SourceAddress, SourceName};
use crate::store::{Store, StoreError};
use networks::{Network, Networks};
use services::Services;

/// Lookups in flight at once.
pub const CONCURRENCY: usize = 64;
/// How long a found name (confirmed or not) is kept before it is asked again.
pub const NAME_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
/// How long "no name" is kept before it is asked again.
pub const ABSENT_LIFETIME: Duration = Duration::from_secs(86_400);
/// Rows written to `source_names` per insert.
const WRITE_BATCH: usize = 5_000;

/// What one `enrich` run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnrichSummary {
    /// Addresses that needed a lookup.
    pub pending: u64,
    pub confirmed: u64,
    pub unconfirmed: u64,
    pub absent: u64,
    /// Lookups that got no answer now (asked again next time).
    pub failed: u64,
    /// Addresses named as a known service.
    pub services: u64,
    /// Reverse names taken from memory instead of DNS.
    pub cached: u64,
    /// The first failure's text, for the summary line.
    pub first_failure: Option<String>,
}

impl std::fmt::Display for EnrichSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "enrich: {} addresses looked up: {} named, {} with a name that does not point back, {} without a name, {} failed (asked again next time); {} known services",
            self.pending, self.confirmed, self.unconfirmed, self.absent, self.failed, self.services
        )?;
        if self.cached > 0 {
            write!(f, "; {} reverse names from memory", self.cached)?;
        }
        if let Some(reason) = &self.first_failure {
            write!(f, "; first failure: {reason}")?;
        }
        Ok(())
    }
}

/// Addresses read from ClickHouse at a time (the memory of a run is bounded by it).
pub const PAGE: usize = 10_000;

/// Everything that names a source: the resolver, the network databases, the services data
/// and the reverse names kept in memory.
pub struct Enricher {
    resolver: Resolver,
    networks: RwLock<Networks>,
    services: Services,
    cache: Mutex<NameCache>,
}

impl Enricher {
    /// The enricher of a configuration (`[dns]`, `[enrich]`); fails naming what is wrong
    /// (a database or services file that cannot be read).
    pub fn new(config: &Config) -> Result<Enricher, String> {
        Ok(Enricher::with_parts(
            Resolver::new(&config.dns)?,
            Networks::open(&config.enrich)?,
            Services::load(config.enrich.services_file.as_deref())?,
            config.enrich.cache_entries,
        ))
    }

    /// An enricher of these parts, keeping up to `cache_entries` names in memory.
    pub fn with_parts(
        resolver: Resolver,
        networks: Networks,
        services: Services,
        cache_entries: usize,
    ) -> Enricher {
        Enricher {
            resolver,
            networks: RwLock::new(networks),
            services,
            cache: Mutex::new(NameCache::new(cache_entries)),
        }
    }

    /// Names the services data and databases in use (stored with each row).
    pub fn naming_version(&self) -> String {
        let networks = self.networks.read().unwrap_or_else(|e| e.into_inner());
        format!("{} {}", self.services.version(), networks.version())
    }

    /// Reads the network databases again if their files changed.
    fn reload_networks(&self) {
        self.networks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .reload_if_changed();
    }

    /// The reverse name of `source`, from memory or DNS, and when it was looked up (Unix
    /// seconds).
    async fn reverse_name(
        &self,
        source: &SourceAddress,
        now: u32,
    ) -> Result<(ReverseName, u32, Answer), DnsFailure> {
        let cached = self.cache().get(&source.source_ip_v6, now);
        if let Some((name, looked_up)) = cached {
            return Ok((name, looked_up, Answer::Memory));
        }
        let name = self.resolver.reverse_name(address(source)).await?;
        self.cache().insert(source.source_ip_v6, name.clone(), now);
        Ok((name, now, Answer::Dns))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, NameCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `source_names` row of `source` made at `now`, and where its reverse name came
    /// from. When DNS failed, the row still names the network and service; it is made as
    /// of time 0, so that any answered row of the address outranks it, and is expired, so
    /// that the address is asked again at the next pass.
    async fn name(
        &self,
        source: &SourceAddress,
        naming_version: &str,
        now: u32,
    ) -> (SourceName, Answer) {
        let network = self
            .networks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(address(source));
        let (mut row, answer) = match self.reverse_name(source, now).await {
            Ok((reverse, looked_up, answer)) => {
                let mut row = source_name(source, &reverse, &network, &self.services, looked_up);
                row.resolved_at = now;
                (row, answer)
            }
            Err(failure) => {
                let mut row =
                    source_name(source, &ReverseName::Absent, &network, &self.services, 0);
                row.ptr_status = "failed".into();
                row.expires_at = 0;
                (row, Answer::Failed(failure))
            }
        };
        row.naming_version = naming_version.to_owned();
        (row, answer)
    }
}

/// Where a row's reverse name came from.
enum Answer {
    Dns,
    Memory,
    /// No answer now: the lookup failed.
    Failed(DnsFailure),
}

/// Reverse names kept in memory, at most `capacity` (the oldest go first); each is used
/// until its lifetime ([`NAME_LIFETIME`], [`ABSENT_LIFETIME`]) is over.
pub struct NameCache {
    capacity: usize,
    names: HashMap<[u8; 16], (ReverseName, u32)>,
    /// Addresses in the order they were put in.
    order: VecDeque<[u8; 16]>,
}

impl NameCache {
    pub fn new(capacity: usize) -> NameCache {
        NameCache {
            capacity,
            names: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The name of `address` and when it was looked up, if still current at `now`.
    pub fn get(&self, address: &[u8; 16], now: u32) -> Option<(ReverseName, u32)> {
        let (name, looked_up) = self.names.get(address)?;
        let until = looked_up.saturating_add(lifetime(name).as_secs() as u32);
        (until > now).then(|| (name.clone(), *looked_up))
    }

    /// Keeps the name of `address` looked up at `now`, dropping the oldest beyond capacity.
    pub fn insert(&mut self, address: [u8; 16], name: ReverseName, now: u32) {
        if self.capacity == 0 {
            return;
        }
        if self.names.insert(address, (name, now)).is_none() {
            self.order.push_back(address);
        }
        while self.names.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.names.remove(&oldest);
        }
    }

    /// Names held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// How long an answer holds.
fn lifetime(name: &ReverseName) -> Duration {
    match name {
        ReverseName::Absent => ABSENT_LIFETIME,
        _ => NAME_LIFETIME,
    }
}

/// Names the sources of records from `since` on (stored from `stored_since` on, if given:
/// Unix seconds) that have no current name (none, an expired one, or one made with other
/// services data or databases), and stores them, `page` addresses at a time (in address
/// order: an address that failed is not asked twice in one run). `progress` is told of
/// each page and of each address done.
pub async fn enrich_stored(
    store: &Store,
    enricher: &Enricher,
    since: &Since,
    stored_since: Option<u32>,
    page: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<EnrichSummary, StoreError> {
    enricher.reload_networks();
    let naming_version = enricher.naming_version();
    let mut summary = EnrichSummary::default();
    let mut after = None;
    loop {
        let sources = store
            .sources_to_resolve(since, stored_since, &naming_version, after, page)
            .await?;
        let Some(last) = sources.last() else {
            break;
        };
        after = Some(last.source_ip_v6);
        let full = sources.len() == page;
        summary.pending += sources.len() as u64;
        progress(Progress::More(sources.len() as u64));
        name_page(
            store,
            enricher,
            &naming_version,
            sources,
            &mut summary,
            progress,
        )
        .await?;
        if !full {
            break;
        }
    }
    Ok(summary)
}

/// Names one page of addresses, [`CONCURRENCY`] at a time, and stores the rows.
async fn name_page(
    store: &Store,
    enricher: &Enricher,
    naming_version: &str,
    sources: Vec<SourceAddress>,
    summary: &mut EnrichSummary,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(), StoreError> {
    let now = crate::store::now();
    let mut lookups = futures::stream::iter(sources)
        .map(|source| async move { enricher.name(&source, naming_version, now).await })
        .buffer_unordered(CONCURRENCY);
    let mut rows = Vec::with_capacity(WRITE_BATCH);
    while let Some((row, answer)) = lookups.next().await {
        progress(Progress::Done);
        match answer {
            Answer::Failed(e) => {
                tracing::debug!(source = ?address_of_bytes(&row.source_ip_v6), error = %e, "reverse lookup failed");
                summary.failed += 1;
                summary.first_failure.get_or_insert_with(|| e.to_string());
            }
            Answer::Memory | Answer::Dns => {
                summary.cached += u64::from(matches!(answer, Answer::Memory));
                match row.ptr_status.as_str() {
                    "confirmed" => summary.confirmed += 1,
                    "unconfirmed" => summary.unconfirmed += 1,
                    _ => summary.absent += 1,
                }
            }
        }
        summary.services += u64::from(!row.service.is_empty());
        rows.push(row);
        if rows.len() >= WRITE_BATCH {
            store.insert_rows("source_names", &rows).await?;
            rows.clear();
        }
    }
    store.insert_rows("source_names", &rows).await
}

/// The sources the daemon's background lookups look at: those of the last 30 days.
pub const REFRESH_WINDOW_DAYS: u32 = 30;

/// How often the daemon's pass looks at every source of the window (expired names, failed
/// lookups, new services data); the passes between look only at records stored since the
/// previous pass began (less [`STORED_MARGIN`]), which is cheap when little is new.
pub const FULL_PASS_EVERY: Duration = Duration::from_secs(3_600);
/// How far before the previous pass's start a partial pass looks (batches staged before
/// it and published after it, clocks apart).
pub const STORED_MARGIN: Duration = Duration::from_secs(900);

/// The daemon's background naming: [`enrich_stored`] for the sources of the last
/// [`REFRESH_WINDOW_DAYS`], at start and then every `every`, until `shutdown` (a full pass
/// at most every [`FULL_PASS_EVERY`], else the sources of records stored since the last
/// pass). Runs beside ingestion and never holds it up; a failed pass is logged and done
/// again next time.
pub async fn refresh(
    store: Store,
    enricher: Enricher,
    every: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let since = Since::RecentDays(REFRESH_WINDOW_DAYS);
    let mut last_full: Option<std::time::Instant> = None;
    let mut last_start: Option<u32> = None;
    loop {
        let full = last_full.is_none_or(|t| t.elapsed() >= FULL_PASS_EVERY);
        let stored_since = match (full, last_start) {
            (false, Some(start)) => Some(start.saturating_sub(STORED_MARGIN.as_secs() as u32)),
            _ => None,
        };
        let started = (crate::store::now(), std::time::Instant::now());
        let pass = enrich_stored(&store, &enricher, &since, stored_since, PAGE, &|_| {});
        let result = tokio::select! {
            result = pass => result,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        if result.is_ok() {
            last_start = Some(started.0);
            if full {
                last_full = Some(started.1);
            }
        }
        match result {
            Ok(summary) => {
                let answered = summary.confirmed + summary.unconfirmed + summary.absent;
                crate::metrics::Metrics::add(&metrics.source_lookups, answered);
                crate::metrics::Metrics::add(&metrics.source_lookup_failures, summary.failed);
                if summary.pending > 0 {
                    tracing::info!(%summary, "source names refreshed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot refresh source names now"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// A step of [`enrich_stored`], for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// This many more addresses to look up.
    More(u64),
    /// One address done.
    Done,
}

/// The address of a stored source (IPv4 addresses are stored mapped into IPv6).
pub fn address(source: &SourceAddress) -> IpAddr {
    address_of_bytes(&source.source_ip_v6)
}

/// An address stored as 16 bytes (IPv4 mapped into IPv6).
fn address_of_bytes(bytes: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The `source_names` row of a source whose reverse name was looked up at `looked_up`
/// (Unix seconds): made at that time, current for the name's lifetime, no naming version.
pub fn source_name(
    source: &SourceAddress,
    name: &ReverseName,
    network: &Network,
    services: &Services,
    looked_up: u32,
) -> SourceName {
    let (status, ptr, unconfirmed) = match name {
        ReverseName::Confirmed(n) => ("confirmed", n.as_str(), ""),
        ReverseName::Unconfirmed(n) => ("unconfirmed", "", n.as_str()),
        ReverseName::Absent => ("absent", "", ""),
    };
    let ptr_org = if ptr.is_empty() {
        String::new()
    } else {
        crate::domains::organisational(ptr)
    };
    let service = services.identify(
        ptr,
        &source.spf_pass_domains,
        &source.dkim_pass_domains,
        network.asn,
    );
    let (service, service_type) = service
        .map(|s| (s.name.clone(), s.service_type.clone()))
        .unwrap_or_default();
    SourceName {
        source_ip_v6: source.source_ip_v6,
        ptr_status: status.into(),
        ptr: ptr.into(),
        ptr_unconfirmed: unconfirmed.into(),
        sender: sender(&service, &ptr_org, network, &source.source_ip),
        ptr_org,
        resolved_at: looked_up,
        expires_at: looked_up.saturating_add(lifetime(name).as_secs() as u32),
        asn: network.asn,
        as_org: network.as_org.clone(),
        country: network.country.clone(),
        service,
        service_type,
        naming_version: String::new(),
    }
}

/// Who sends from an address: the known service, else the organisational domain of its
/// confirmed reverse name, else its AS organisation, else "unknown (AS<n>)", else the
/// address. Never a domain the mail claims to be from: a spoofer is named by its network.
pub fn sender(service: &str, ptr_org: &str, network: &Network, ip: &str) -> String {
    if !service.is_empty() {
        service.to_owned()
    } else if !ptr_org.is_empty() {
        ptr_org.to_owned()
    } else if !network.as_org.is_empty() {
        network.as_org.clone()
    } else if network.asn != 0 {
        format!("unknown (AS{})", network.asn)
    } else {
        ip.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(ip: &str) -> SourceAddress {
        let v6 = match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        SourceAddress {
            source_ip_v6: v6.octets(),
            source_ip: ip.into(),
            spf_pass_domains: Vec::new(),
            dkim_pass_domains: Vec::new(),
        }
    }

    fn no_services() -> Services {
        Services::default()
    }

    #[test]
    fn stored_addresses_come_back_in_their_family() {
        assert_eq!(address(&source("192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(address(&source("2001:db8::1")).to_string(), "2001:db8::1");
    }

    #[test]
    fn only_a_confirmed_name_is_used_and_absences_expire_sooner() {
        let s = source("192.0.2.1");
        let none = Network::default();
        let row = source_name(
            &s,
            &ReverseName::Confirmed("mail-eu1.mx.example.co.uk".into()),
            &none,
            &no_services(),
            1_000,
        );
        assert_eq!(
            (
                row.ptr_status.as_str(),
                row.ptr_org.as_str(),
                row.sender.as_str()
            ),
            ("confirmed", "example.co.uk", "example.co.uk")
        );
        assert_eq!(row.expires_at, 1_000 + 7 * 86_400);
        let row = source_name(
            &s,
            &ReverseName::Unconfirmed("mail.victim.example".into()),
            &none,
            &no_services(),
            1_000,
        );
        assert_eq!((row.ptr.as_str(), row.ptr_org.as_str()), ("", ""));
        assert_eq!(row.ptr_unconfirmed, "mail.victim.example");
        assert_eq!(
            row.sender, "192.0.2.1",
            "never named by an unconfirmed name"
        );
        let row = source_name(&s, &ReverseName::Absent, &none, &no_services(), 1_000);
        assert_eq!(
            (row.ptr_status.as_str(), row.expires_at),
            ("absent", 1_000 + 86_400)
        );
    }

    #[test]
    fn the_sender_is_the_service_else_the_name_else_the_network_else_the_address() {
        let network = |asn: u32, org: &str| Network {
            asn,
            as_org: org.into(),
            country: String::new(),
        };
        assert_eq!(
            sender("Mailchimp", "mcsv.net", &network(1, "X"), "192.0.2.9"),
            "Mailchimp"
        );
        assert_eq!(
            sender("", "example.net", &network(1, "X"), "192.0.2.9"),
            "example.net"
        );
        assert_eq!(
            sender("", "", &network(64500, "EXAMPLE-NET"), "192.0.2.9"),
            "EXAMPLE-NET"
        );
        assert_eq!(
            sender("", "", &network(64500, ""), "192.0.2.9"),
            "unknown (AS64500)"
        );
        assert_eq!(sender("", "", &network(0, ""), "192.0.2.9"), "192.0.2.9");
    }

    #[test]
    fn the_name_cache_keeps_current_answers_up_to_its_capacity() {
        let key = |n: u8| [n; 16];
        let mut cache = NameCache::new(2);
        cache.insert(key(1), ReverseName::Confirmed("a.example".into()), 100);
        cache.insert(key(2), ReverseName::Absent, 100);
        assert_eq!(
            cache.get(&key(1), 200),
            Some((ReverseName::Confirmed("a.example".into()), 100))
        );
        // An absence is current for a day, a name for a week.
        assert_eq!(cache.get(&key(2), 100 + 86_400), None);
        assert!(cache.get(&key(1), 100 + 86_400).is_some());
        // A third address pushes out the oldest.
        cache.insert(key(3), ReverseName::Absent, 150);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key(1), 200), None);
        assert!(cache.get(&key(3), 200).is_some());
        // Capacity 0: nothing is kept.
        let mut off = NameCache::new(0);
        off.insert(key(1), ReverseName::Absent, 100);
        assert!(off.is_empty());
    }
}
