//! A DNS check run (`dmarc-ingest dns check`, and the daemon every `[dns]
//! check_interval`): every target domain checked, a bounded number at a time, the
//! snapshots written to `dns_checks` as they come; then every inventory domain judged
//! (`crate::status`) into `domain_status_history`.
//!
//! In: the store, the resolver, [`RunSettings`]. Out: a [`RunSummary`], or the store's
//! error (a DNS problem never fails a run: it is a finding).

use std::time::Duration;

use futures::StreamExt;

use super::{check_domain, Area, CheckSettings, DomainCheck, Finding, Severity, Target};
use crate::resolver::Resolver;
use crate::status::{judge, Colour, StatusRules};
use crate::store::dns_checks::{DnsCheckRow, StatusRow};
use crate::store::{Store, StoreError};

/// Snapshots written per INSERT.
pub const ROWS_PER_INSERT: usize = 1_000;

/// How a run goes.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Domains checked at once.
    pub concurrency: usize,
    /// Policy domains of reports (not in the inventory) checked, the busiest first.
    pub max_seen: usize,
    /// Longest time one domain's check may take.
    pub domain_deadline: Duration,
    pub check: CheckSettings,
    pub rules: StatusRules,
}

/// Longest time one domain's check may take: every lookup of the slowest chain
/// (DMARC, its organisational domain, report authorisations) timing out, with margin.
pub const DOMAIN_DEADLINE: Duration = Duration::from_secs(60);

impl RunSettings {
    /// The settings of `[dns]` and `[domains]`.
    pub fn from_config(config: &crate::config::Config) -> RunSettings {
        let team = config.domains.rua_address.trim();
        let team = team.strip_prefix("mailto:").unwrap_or(team);
        RunSettings {
            concurrency: config.dns.check_concurrency,
            max_seen: config.dns.check_seen_domains,
            domain_deadline: DOMAIN_DEADLINE,
            check: CheckSettings {
                rua_address: (!team.is_empty()).then(|| team.to_ascii_lowercase()),
            },
            rules: StatusRules {
                p_none_days: config.domains.p_none_days,
                ..StatusRules::default()
            },
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub checked: usize,
    /// Snapshots with at least one error finding.
    pub with_errors: usize,
    /// Lookups that got no answer, over all domains.
    pub failed_lookups: usize,
    /// Inventory domains judged red, amber, green.
    pub red: usize,
    pub amber: usize,
    pub green: usize,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} domains checked ({} with errors, {} lookups unanswered); status: {} red, {} amber, {} green",
            self.checked, self.with_errors, self.failed_lookups, self.red, self.amber, self.green
        )
    }
}

/// Checks every target and judges every inventory domain (see the module doc).
pub async fn check_and_judge(
    store: &Store,
    resolver: &Resolver,
    settings: &RunSettings,
) -> Result<RunSummary, StoreError> {
    let targets: Vec<Target> = store
        .dns_check_targets(settings.max_seen)
        .await?
        .into_iter()
        .map(|target| Target {
            domain: target.domain,
            in_inventory: target.in_inventory == 1,
            selectors: target.selectors,
        })
        .collect();
    let checked_at = crate::store::now();
    let mut summary = RunSummary::default();
    let mut rows = Vec::with_capacity(ROWS_PER_INSERT);
    // Domains with unanswered lookups are checked once more at the end, fewer at a
    // time: a query lost under load must not turn a domain red.
    let mut again = Vec::new();
    let mut checks = check_each(targets, resolver, settings, settings.concurrency);
    while let Some((target, check)) = checks.next().await {
        if check.failed_lookups > 0 {
            again.push(target);
            continue;
        }
        record(&mut summary, &check);
        rows.push(row(&check, checked_at));
        if rows.len() == ROWS_PER_INSERT {
            store.insert_rows("dns_checks", &rows).await?;
            rows.clear();
        }
    }
    drop(checks);
    let mut checks = check_each(again, resolver, settings, (settings.concurrency / 4).max(1));
    while let Some((_, check)) = checks.next().await {
        record(&mut summary, &check);
        rows.push(row(&check, checked_at));
        if rows.len() == ROWS_PER_INSERT {
            store.insert_rows("dns_checks", &rows).await?;
            rows.clear();
        }
    }
    store.insert_rows("dns_checks", &rows).await?;
    let [red, amber, green] = judge_all(store, &settings.rules, crate::store::now()).await?;
    summary.red = red;
    summary.amber = amber;
    summary.green = green;
    Ok(summary)
}

/// The checks of `targets`, `concurrency` at a time, each within the deadline, as they
/// finish.
fn check_each<'a>(
    targets: Vec<Target>,
    resolver: &'a Resolver,
    settings: &'a RunSettings,
    concurrency: usize,
) -> impl futures::Stream<Item = (Target, DomainCheck)> + 'a {
    futures::stream::iter(targets)
        .map(move |target| async move {
            let check = match tokio::time::timeout(
                settings.domain_deadline,
                check_domain(resolver, &target, &settings.check),
            )
            .await
            {
                Ok(check) => check,
                Err(_) => timed_out(&target, settings.domain_deadline),
            };
            (target, check)
        })
        .buffer_unordered(concurrency.max(1))
}

/// Counts a finished check into the summary.
fn record(summary: &mut RunSummary, check: &DomainCheck) {
    summary.checked += 1;
    summary.failed_lookups += usize::from(check.failed_lookups);
    if check.findings.iter().any(|f| f.severity == Severity::Error) {
        summary.with_errors += 1;
    }
}

/// Judges every inventory domain from its latest snapshot and its mail, into
/// `domain_status_history`; returns the counts of red, amber and green.
pub async fn judge_all(
    store: &Store,
    rules: &StatusRules,
    now: u32,
) -> Result<[usize; 3], StoreError> {
    let inputs = store.status_inputs().await?;
    let mut counts = [0; 3];
    let rows: Vec<StatusRow> = inputs
        .iter()
        .map(|input| {
            let judgement = judge(input, rules, now);
            counts[match judgement.status {
                Colour::Red => 0,
                Colour::Amber => 1,
                Colour::Green => 2,
            }] += 1;
            let or_none = |status: &str| {
                if input.checked_at == 0 || status.is_empty() {
                    "none".to_owned()
                } else {
                    status.to_owned()
                }
            };
            StatusRow {
                computed_at: now,
                domain: input.domain.clone(),
                owner: input.owner.clone(),
                group_name: input.group_name.clone(),
                status: judgement.status.as_str().to_owned(),
                reasons: judgement.reasons,
                dmarc_status: or_none(&input.dmarc_status),
                spf_status: or_none(&input.spf_status),
                dkim_status: or_none(&input.dkim_status),
                mx_status: or_none(&input.mx_status),
                policy: judgement.policy,
                parked: input.parked,
                parked_like: u8::from(judgement.parked_like),
                messages: input.messages,
                dmarc_pass: input.dmarc_pass,
                checked_at: input.checked_at,
            }
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_INSERT * 10) {
        store.insert_rows("domain_status_history", chunk).await?;
    }
    Ok(counts)
}

/// The snapshot of a domain whose check overran its deadline.
fn timed_out(target: &Target, deadline: Duration) -> DomainCheck {
    DomainCheck {
        domain: target.domain.to_ascii_lowercase(),
        in_inventory: target.in_inventory,
        failed_lookups: 1,
        findings: vec![Finding::new(
            Area::Dmarc,
            Severity::Error,
            "dns_failure",
            format!(
                "the check of {} took more than {} s; its servers answer too slowly",
                target.domain,
                deadline.as_secs()
            ),
        )],
        ..DomainCheck::default()
    }
}

/// The `dns_checks` row of a snapshot.
pub fn row(check: &DomainCheck, checked_at: u32) -> DnsCheckRow {
    let [dmarc_status, spf_status, dkim_status, mx_status] =
        check.statuses().map(|s| s.as_str().to_owned());
    let dmarc = &check.dmarc;
    DnsCheckRow {
        checked_at,
        domain: check.domain.clone(),
        in_inventory: u8::from(check.in_inventory),
        failed_lookups: check.failed_lookups,
        dmarc_name: check.dmarc_name.clone(),
        dmarc_inherited: u8::from(check.dmarc_inherited),
        dmarc_records: check.dmarc_records.clone(),
        dmarc_p: dmarc.p.clone().unwrap_or_default(),
        dmarc_sp: dmarc.sp.clone().unwrap_or_default(),
        dmarc_np: dmarc.np.clone().unwrap_or_default(),
        dmarc_pct: dmarc.pct(),
        dmarc_adkim: dmarc.adkim.clone().unwrap_or_else(|| "r".to_owned()),
        dmarc_aspf: dmarc.aspf.clone().unwrap_or_else(|| "r".to_owned()),
        dmarc_fo: dmarc.fo.clone().unwrap_or_default(),
        dmarc_rua: dmarc.rua.clone(),
        dmarc_ruf: dmarc.ruf.clone(),
        dmarc_rua_reaches_team: u8::from(check.rua_reaches_team),
        spf_records: check.spf_records.clone(),
        spf_lookups: check.spf_lookups,
        spf_void_lookups: check.spf_void_lookups,
        spf_all: check.spf_all.clone(),
        mx_hosts: check.mx_hosts.clone(),
        null_mx: u8::from(check.null_mx),
        dkim_selectors: check.dkim.iter().map(|k| k.selector.clone()).collect(),
        dkim_records: check.dkim.iter().map(|k| k.record.clone()).collect(),
        dkim_key_types: check.dkim.iter().map(|k| k.key.key_type.clone()).collect(),
        dkim_key_bits: check.dkim.iter().map(|k| k.key.bits).collect(),
        mta_sts_record: check.mta_sts_record.clone(),
        tls_rpt_record: check.tls_rpt_record.clone(),
        finding_areas: check
            .findings
            .iter()
            .map(|f| f.area.as_str().to_owned())
            .collect(),
        finding_severities: check
            .findings
            .iter()
            .map(|f| f.severity.as_str().to_owned())
            .collect(),
        finding_codes: check.findings.iter().map(|f| f.code.to_owned()).collect(),
        finding_texts: check.findings.iter().map(|f| f.text.clone()).collect(),
        dmarc_status,
        spf_status,
        dkim_status,
        mx_status,
    }
}

/// A failed run (ClickHouse unreachable) is tried again after this long, or the
/// interval if shorter.
pub const RETRY_AFTER: Duration = Duration::from_secs(300);

/// The daemon's DNS checks, each followed by an evaluation of the alert rules
/// ([`crate::alerts`]): a run at start, then every `every`, until `shutdown`. A run
/// in flight is abandoned at shutdown (the snapshots written so far stay; the next run
/// makes new ones).
pub async fn schedule(
    store: Store,
    resolver: Resolver,
    settings: RunSettings,
    every: Duration,
    alerting: Option<std::sync::Arc<crate::alerts::run::Alerting>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let run = check_and_judge(&store, &resolver, &settings);
        let result = tokio::select! {
            result = run => result,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let wait = match result {
            Ok(summary) => {
                tracing::info!(%summary, "DNS checks done");
                // The alert rules judge the snapshots and statuses just written.
                if let Some(alerting) = &alerting {
                    match alerting.evaluate_and_deliver(crate::store::now()).await {
                        Ok((evaluated, delivered)) => {
                            tracing::info!(alerts = %evaluated, deliveries = %delivered, "alerts evaluated")
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot evaluate the alerts now"),
                    }
                }
                every
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot run the DNS checks now");
                every.min(RETRY_AFTER)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
