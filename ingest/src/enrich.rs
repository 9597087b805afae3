//! Enrich: source addresses stored in `records` -> their reverse names in `source_names`
//! (`dmarc-ingest enrich`), off the ingest path.
//!
//! In: the addresses of records from a day on that have no current lookup
//! ([`Store::sources_to_resolve`]). Out: one `source_names` row per address answered
//! (confirmed, unconfirmed or absent), written in batches, and an [`EnrichSummary`].
//! Addresses are read [`PAGE`] at a time in address order; lookups run [`CONCURRENCY`]
//! at a time. A lookup that failed (timeout, SERVFAIL, the
//! resolver unreachable) writes nothing, so the address is asked again at the next run;
//! an absent name is asked again sooner ([`ABSENT_LIFETIME`]) than a found one
//! ([`NAME_LIFETIME`]).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use futures::StreamExt;

use crate::resolver::{Resolver, ReverseName};
use crate::store::sources::{Since, SourceAddress, SourceName};
use crate::store::{Store, StoreError};

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
    /// The first failure's text, for the summary line.
    pub first_failure: Option<String>,
}

impl std::fmt::Display for EnrichSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "enrich: {} addresses looked up: {} named, {} with a name that does not point back, {} without a name, {} failed (asked again next time)",
            self.pending, self.confirmed, self.unconfirmed, self.absent, self.failed
        )?;
        if let Some(reason) = &self.first_failure {
            write!(f, "; first failure: {reason}")?;
        }
        Ok(())
    }
}

/// Addresses read from ClickHouse at a time (the memory of a run is bounded by it).
pub const PAGE: usize = 10_000;

/// Looks up the names of the source addresses of records from `since` on that have
/// none yet (or an expired one), and stores them, `page` addresses at a time (in address
/// order: an address that failed is not asked twice in one run). `progress` is told of
/// each page and of each address done.
pub async fn enrich_stored(
    store: &Store,
    resolver: &Resolver,
    since: &Since,
    page: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<EnrichSummary, StoreError> {
    let mut summary = EnrichSummary::default();
    let mut after = None;
    loop {
        let sources = store.sources_to_resolve(since, after, page).await?;
        let Some(last) = sources.last() else {
            break;
        };
        after = Some(last.source_ip_v6);
        let full = sources.len() == page;
        summary.pending += sources.len() as u64;
        progress(Progress::More(sources.len() as u64));
        resolve_page(store, resolver, sources, &mut summary, progress).await?;
        if !full {
            break;
        }
    }
    Ok(summary)
}

/// Looks up one page of addresses, [`CONCURRENCY`] at a time, and stores the answers.
async fn resolve_page(
    store: &Store,
    resolver: &Resolver,
    sources: Vec<SourceAddress>,
    summary: &mut EnrichSummary,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(), StoreError> {
    let mut lookups = futures::stream::iter(sources)
        .map(|source| async move {
            let name = resolver.reverse_name(address(&source)).await;
            (source, name)
        })
        .buffer_unordered(CONCURRENCY);
    let mut rows = Vec::with_capacity(WRITE_BATCH);
    while let Some((source, answer)) = lookups.next().await {
        progress(Progress::Done);
        match answer {
            Ok(name) => {
                match &name {
                    ReverseName::Confirmed(_) => summary.confirmed += 1,
                    ReverseName::Unconfirmed(_) => summary.unconfirmed += 1,
                    ReverseName::Absent => summary.absent += 1,
                }
                rows.push(source_name(&source, &name, crate::store::now()));
            }
            Err(e) => {
                tracing::debug!(source = %source.source_ip, error = %e, "reverse lookup failed");
                summary.failed += 1;
                summary.first_failure.get_or_insert_with(|| e.to_string());
            }
        }
        if rows.len() >= WRITE_BATCH {
            store.insert_rows("source_names", &rows).await?;
            rows.clear();
        }
    }
    store.insert_rows("source_names", &rows).await
}

/// The sources the daemon's background lookups look at: those of the last 30 days.
pub const REFRESH_WINDOW_DAYS: u32 = 30;

/// The daemon's background lookups: [`enrich_stored`] for the sources of the last
/// [`REFRESH_WINDOW_DAYS`], at start and then every `every`, until `shutdown`. Runs beside
/// ingestion and never holds it up; a failed pass is logged and done again next time.
pub async fn refresh(
    store: Store,
    resolver: Resolver,
    every: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let since = Since::RecentDays(REFRESH_WINDOW_DAYS);
    loop {
        let pass = enrich_stored(&store, &resolver, &since, PAGE, &|_| {});
        let result = tokio::select! {
            result = pass => result,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
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
    let v6 = Ipv6Addr::from(source.source_ip_v6);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The `source_names` row of one answer at `now` (Unix seconds).
pub fn source_name(source: &SourceAddress, name: &ReverseName, now: u32) -> SourceName {
    let (status, ptr, unconfirmed, lifetime) = match name {
        ReverseName::Confirmed(n) => ("confirmed", n.as_str(), "", NAME_LIFETIME),
        ReverseName::Unconfirmed(n) => ("unconfirmed", "", n.as_str(), NAME_LIFETIME),
        ReverseName::Absent => ("absent", "", "", ABSENT_LIFETIME),
    };
    SourceName {
        source_ip_v6: source.source_ip_v6,
        ptr_status: status.into(),
        ptr: ptr.into(),
        ptr_unconfirmed: unconfirmed.into(),
        ptr_org: if ptr.is_empty() {
            String::new()
        } else {
            crate::domains::organisational(ptr)
        },
        resolved_at: now,
        expires_at: now.saturating_add(lifetime.as_secs() as u32),
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
        }
    }

    #[test]
    fn stored_addresses_come_back_in_their_family() {
        assert_eq!(address(&source("192.0.2.1")).to_string(), "192.0.2.1");
        assert_eq!(address(&source("2001:db8::1")).to_string(), "2001:db8::1");
    }

    #[test]
    fn only_a_confirmed_name_is_used_and_absences_expire_sooner() {
        let s = source("192.0.2.1");
        let row = source_name(
            &s,
            &ReverseName::Confirmed("mail-eu1.mx.example.co.uk".into()),
            1_000,
        );
        assert_eq!(
            (row.ptr_status.as_str(), row.ptr_org.as_str()),
            ("confirmed", "example.co.uk")
        );
        assert_eq!(row.expires_at, 1_000 + 7 * 86_400);
        let row = source_name(
            &s,
            &ReverseName::Unconfirmed("mail.victim.example".into()),
            1_000,
        );
        assert_eq!((row.ptr.as_str(), row.ptr_org.as_str()), ("", ""));
        assert_eq!(row.ptr_unconfirmed, "mail.victim.example");
        let row = source_name(&s, &ReverseName::Absent, 1_000);
        assert_eq!(
            (row.ptr_status.as_str(), row.expires_at),
            ("absent", 1_000 + 86_400)
        );
    }
}
