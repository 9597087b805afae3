//! The weekly digests (`dmarc-ingest digest`, and the daemon each week): one per owner of
//! the inventory, rendered by [`super::digest`], mailed to the owner's contacts and the
//! team, and/or written as files.
//!
//! In: the store (domains, statuses, the week's volumes and senders, open alerts), the
//! week, the outbox. Out: a [`DigestSummary`]; the mails (multipart: text and HTML with
//! the charts inline, the CSV attached), recorded in `deliveries` (item `owner|week`:
//! never sent twice, a failed send tried again with backoff); the files
//! `<owner>-<week>.html` (charts embedded), `.txt`, `.csv` in the out directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{header::ContentType, Attachment, Message, MultiPart, SinglePart};

use super::deliver::{self, MAX_ATTEMPTS};
use super::digest::{
    self, DayVolume, Digest, DomainDigest, ImageLinks, OpenAlert, RenderedDigest, SenderVolume,
};
use super::send::{Mailer, Outbox};
use super::{day_text, time_text};
use crate::store::alerts::{AlertRow, DeliveryRow, DigestDayRow, DigestDomainRow, DigestSenderRow};
use crate::store::{Store, StoreError};

/// Senders and new sources listed per domain.
pub const TOP_SENDERS: usize = 10;
/// The owner name shown for domains without one.
pub const NO_OWNER: &str = "(no owner)";

/// The Monday of the week holding `day` (days since 1970, a Thursday).
pub fn week_start_of(day: u16) -> u16 {
    day - ((u32::from(day) + 3) % 7) as u16
}

/// The Monday of the last whole week before `today`.
pub fn previous_week(today: u16) -> u16 {
    week_start_of(today) - 7
}

/// "YYYY-MM-DD" -> days since 1970 (None when not a date from 1970 to 2149).
pub fn parse_day(text: &str) -> Option<u16> {
    let mut parts = text.trim().splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // H. Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let day = u16::try_from(days).ok()?;
    // Refuse 2026-02-31 and the like: the date must read back the same.
    (day_text(day) == format!("{:04}-{:02}-{:02}", if m <= 2 { y + 1 } else { y }, m, d))
        .then_some(day)
}

/// One owner's digest and whom it goes to (their domains' contacts).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerDigest {
    pub digest: Digest,
    pub contacts: Vec<String>,
}

/// Builds every owner's digest of the week from `week_start`: their domains worst status
/// first, each with its volumes, top senders, new sources, open alerts and days. Pure.
pub fn assemble(
    domains: &[DigestDomainRow],
    days: &[DigestDayRow],
    senders: &[DigestSenderRow],
    open_alerts: &[AlertRow],
    week_start: u16,
) -> Vec<OwnerDigest> {
    // Each domain's rows, in the queries' order (one pass each: owners of thousands of
    // domains stay linear).
    let mut days_of: HashMap<String, Vec<&DigestDayRow>> = HashMap::new();
    for d in days {
        days_of.entry(d.domain.clone()).or_default().push(d);
    }
    let mut senders_of: HashMap<String, Vec<&DigestSenderRow>> = HashMap::new();
    for s in senders {
        senders_of.entry(s.domain.clone()).or_default().push(s);
    }
    let mut alerts_of: HashMap<String, Vec<&AlertRow>> = HashMap::new();
    for a in open_alerts {
        alerts_of.entry(a.domain.clone()).or_default().push(a);
    }
    let mut owners: Vec<OwnerDigest> = Vec::new();
    let mut owner_index: HashMap<String, usize> = HashMap::new();
    for row in domains {
        let owner = owner_name(row);
        let index = match owner_index.get(owner) {
            Some(&i) => i,
            None => {
                owner_index.insert(owner.to_owned(), owners.len());
                owners.push(OwnerDigest {
                    digest: Digest {
                        owner: owner.to_owned(),
                        week_start: day_text(week_start),
                        week_end: day_text(week_start + 6),
                        domains: Vec::new(),
                    },
                    contacts: Vec::new(),
                });
                owners.len() - 1
            }
        };
        let entry = &mut owners[index];
        let contact = row.contact.trim().trim_start_matches("mailto:");
        if contact.parse::<lettre::Address>().is_ok()
            && !entry
                .contacts
                .iter()
                .any(|c| c.eq_ignore_ascii_case(contact))
        {
            entry.contacts.push(contact.to_owned());
        }
        entry.digest.domains.push(domain_digest(
            row,
            days_of.get(&row.domain).map_or(&[], Vec::as_slice),
            senders_of.get(&row.domain).map_or(&[], Vec::as_slice),
            alerts_of.get(&row.domain).map_or(&[], Vec::as_slice),
            week_start,
        ));
    }
    for owner in &mut owners {
        owner
            .digest
            .domains
            .sort_by_key(|d| (status_rank(&d.status), d.domain.clone()));
    }
    owners
}

/// The owner a domain's digest goes under ([`NO_OWNER`] when the inventory names none).
fn owner_name(row: &DigestDomainRow) -> &str {
    match row.owner.trim() {
        "" => NO_OWNER,
        owner => owner,
    }
}

/// The `deliveries` item of an owner's digest of the week from `week_start`.
fn digest_item(owner: &str, week_start: u16) -> String {
    format!("{owner}|{}", day_text(week_start))
}

fn status_rank(status: &str) -> u8 {
    match status {
        "red" => 0,
        "amber" => 1,
        _ => 2,
    }
}

/// One domain's part, from its own rows.
fn domain_digest(
    row: &DigestDomainRow,
    days: &[&DigestDayRow],
    senders: &[&DigestSenderRow],
    open_alerts: &[&AlertRow],
    week_start: u16,
) -> DomainDigest {
    let mut digest = DomainDigest {
        domain: row.domain.clone(),
        status: row.status.clone(),
        reasons: row.reasons.clone(),
        ..DomainDigest::default()
    };
    for offset in 0..7 {
        let day = week_start + offset;
        let volume =
            days.iter()
                .filter(|d| d.day == day)
                .fold(DigestDayRow::default(), |sum, d| DigestDayRow {
                    day_messages: sum.day_messages + d.day_messages,
                    day_dmarc_pass: sum.day_dmarc_pass + d.day_dmarc_pass,
                    day_dkim_pass: sum.day_dkim_pass + d.day_dkim_pass,
                    day_spf_pass: sum.day_spf_pass + d.day_spf_pass,
                    ..sum
                });
        digest.messages += volume.day_messages;
        digest.dmarc_pass += volume.day_dmarc_pass;
        digest.dkim_pass += volume.day_dkim_pass;
        digest.spf_pass += volume.day_spf_pass;
        digest.daily.push(DayVolume {
            day: day_text(day),
            pass: volume.day_dmarc_pass,
            fail: volume.day_messages.saturating_sub(volume.day_dmarc_pass),
        });
    }
    let volume = |s: &DigestSenderRow| SenderVolume {
        sender: s.sender.clone(),
        service: s.service.clone(),
        source_ip: if s.example_ip == s.sender {
            String::new()
        } else {
            s.example_ip.clone()
        },
        messages: s.week_messages,
        dmarc_pass: s.week_dmarc_pass,
    };
    digest.top_senders = senders
        .iter()
        .take(TOP_SENDERS)
        .map(|s| volume(s))
        .collect();
    digest.new_sources = senders
        .iter()
        .filter(|s| s.new_source == 1)
        .take(TOP_SENDERS)
        .map(|s| volume(s))
        .collect();
    digest.open_alerts = open_alerts
        .iter()
        .map(|a| OpenAlert {
            rule: a.rule.clone(),
            severity: a.severity.clone(),
            summary: a.summary.clone(),
            first_seen: time_text(a.first_seen),
        })
        .collect();
    digest
}

/// What `digest` does.
#[derive(Debug, Clone, Default)]
pub struct DigestOptions {
    /// Only this owner's digest (as in the inventory; [`NO_OWNER`] for domains without).
    pub owner: Option<String>,
    /// The week's Monday (days since 1970).
    pub week_start: u16,
    /// Write the files here.
    pub out_dir: Option<PathBuf>,
    /// Mail the digests (needs `[smtp]`).
    pub send: bool,
}

/// What a digest run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestSummary {
    pub owners: usize,
    pub written: usize,
    pub sent: usize,
    pub already_sent: usize,
    pub failed: usize,
}

impl std::fmt::Display for DigestSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} owners: {} written, {} mailed, {} mailed before, {} failed (tried again later)",
            self.owners, self.written, self.sent, self.already_sent, self.failed
        )
    }
}

/// Why a digest run stopped.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no owner {0:?} in the inventory")]
    UnknownOwner(String),
}

/// Builds the week's digests and writes and/or mails them.
pub async fn run(
    store: &Store,
    outbox: &Outbox,
    options: &DigestOptions,
    now: u32,
) -> Result<DigestSummary, DigestError> {
    let week = options.week_start;
    let domains = store.digest_domains().await?;
    let mailer = outbox.mailer.as_ref().filter(|_| options.send);
    let states = match mailer {
        Some(_) => store.delivery_states("digest", 60).await?,
        None => Vec::new(),
    };
    // Mailing only, and every digest asked for mailed before: the week's volumes need not
    // be read (the daemon asks every 10 minutes for a week).
    if options.out_dir.is_none() && mailer.is_some() {
        let mut wanted: Vec<&str> = domains.iter().map(owner_name).collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.retain(|o| options.owner.as_deref().is_none_or(|w| w == *o));
        let mailed = |owner: &&str| {
            let item = digest_item(owner, week);
            states.iter().any(|s| s.item == item && s.done == 1)
        };
        if !wanted.is_empty() && wanted.iter().all(mailed) {
            return Ok(DigestSummary {
                owners: wanted.len(),
                already_sent: wanted.len(),
                ..DigestSummary::default()
            });
        }
    }
    let mut owners = assemble(
        &domains,
        &store.digest_days(week).await?,
        &store.digest_senders(week).await?,
        &store.open_alerts().await?,
        week,
    );
    if let Some(wanted) = &options.owner {
        owners.retain(|o| &o.digest.owner == wanted);
        if owners.is_empty() {
            return Err(DigestError::UnknownOwner(wanted.clone()));
        }
    }
    let mut summary = DigestSummary {
        owners: owners.len(),
        ..DigestSummary::default()
    };
    if let Some(dir) = &options.out_dir {
        std::fs::create_dir_all(dir).map_err(|source| DigestError::Write {
            path: dir.clone(),
            source,
        })?;
        for owner in &owners {
            write_files(dir, &owner.digest)?;
            summary.written += 1;
        }
    }
    let Some(mailer) = mailer else {
        return Ok(summary);
    };
    for owner in &owners {
        let item = digest_item(&owner.digest.owner, week);
        let state = states.iter().find(|s| s.item == item);
        let attempt = match state {
            Some(s) if s.done == 1 => {
                summary.already_sent += 1;
                continue;
            }
            Some(s) if now < s.last_attempt.saturating_add(deliver::backoff(s.attempts)) => {
                continue
            }
            Some(s) => s.attempts + 1,
            None => 1,
        };
        let mut to = owner.contacts.clone();
        for address in &outbox.team {
            if !to.iter().any(|t| t.eq_ignore_ascii_case(address)) {
                to.push(address.clone());
            }
        }
        if to.is_empty() {
            continue;
        }
        let message_id = deliver::message_id(&item, &mailer.from_domain());
        let rendered = digest::render(&owner.digest, ImageLinks::ContentId);
        let result = match digest_mail(mailer, &to, &message_id, &owner.digest, &rendered) {
            Ok(message) => mailer.send(message).await,
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(()) => {
                summary.sent += 1;
                "sent"
            }
            Err(e) => {
                summary.failed += 1;
                tracing::warn!(owner = %owner.digest.owner, attempt, error = %e, "cannot mail the digest now");
                if attempt >= MAX_ATTEMPTS {
                    "abandoned"
                } else {
                    "failed"
                }
            }
        };
        store
            .record_deliveries(&[DeliveryRow {
                attempted_at: now,
                kind: "digest".into(),
                item,
                channel: "email".into(),
                outcome: outcome.into(),
                attempt,
                recipients: to,
                message_id,
                error: result.err().unwrap_or_default(),
            }])
            .await?;
    }
    Ok(summary)
}

/// The file name stem of an owner's digest: the owner's name in letters, digits and `-`.
pub fn file_stem(digest: &Digest) -> String {
    let name: String = digest
        .owner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let name = if name.is_empty() {
        "owner".into()
    } else {
        name
    };
    format!("{}-{}", &name[..name.len().min(60)], digest.week_start)
}

/// Writes `<stem>.html` (charts embedded), `.txt` and `.csv` into `dir`.
fn write_files(dir: &Path, digest: &Digest) -> Result<(), DigestError> {
    let rendered = digest::render(digest, ImageLinks::DataUri);
    let stem = file_stem(digest);
    for (extension, body) in [
        ("html", &rendered.html),
        ("txt", &rendered.text),
        ("csv", &rendered.csv),
    ] {
        let path = dir.join(format!("{stem}.{extension}"));
        std::fs::write(&path, body).map_err(|source| DigestError::Write { path, source })?;
    }
    Ok(())
}

/// The digest mail: text and HTML alternatives, the charts inline beside the HTML
/// (multipart/related), the CSV attached.
fn digest_mail(
    mailer: &Mailer,
    to: &[String],
    message_id: &str,
    digest: &Digest,
    rendered: &RenderedDigest,
) -> Result<Message, String> {
    let mut related = MultiPart::related().multipart(MultiPart::alternative_plain_html(
        rendered.text.clone(),
        rendered.html.clone(),
    ));
    for chart in &rendered.charts {
        related = related.singlepart(Attachment::new_inline(chart.content_id.clone()).body(
            chart.png.clone(),
            ContentType::parse("image/png").expect("a MIME type"),
        ));
    }
    let csv: SinglePart = Attachment::new(format!("{}.csv", file_stem(digest))).body(
        rendered.csv.clone(),
        ContentType::parse("text/csv; charset=utf-8").expect("a MIME type"),
    );
    mailer
        .message(to, message_id)?
        .subject(rendered.subject.clone())
        .multipart(MultiPart::mixed().multipart(related).singlepart(csv))
        .map_err(|e| e.to_string())
}

/// How often the daemon looks whether the week's digests are due.
const DIGEST_TICK: Duration = Duration::from_secs(600);

/// The daemon's digest schedule: from `weekday` at `hour` (UTC) on, each week, mails the
/// week before's digests (those not sent yet: a restart sends no digest twice, and one
/// missed while the daemon was down goes out when it is back, that week), until shutdown.
pub async fn schedule(
    store: Store,
    outbox: Outbox,
    weekday: u8,
    hour: u8,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = crate::store::now();
        let today = (now / 86_400) as u16;
        let slot = (u32::from(week_start_of(today)) + u32::from(weekday) - 1) * 86_400
            + u32::from(hour) * 3600;
        if now >= slot {
            let options = DigestOptions {
                week_start: previous_week(today),
                send: true,
                ..DigestOptions::default()
            };
            let work = run(&store, &outbox, &options, now);
            tokio::select! {
                result = work => match result {
                    Ok(s) if s.sent > 0 || s.failed > 0 => {
                        crate::metrics::Metrics::add(&metrics.digests_sent, s.sent as u64);
                        crate::metrics::Metrics::add(&metrics.digests_failed, s.failed as u64);
                        tracing::info!(summary = %s, "weekly digests")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot make the weekly digests now"),
                },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(DIGEST_TICK) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-30 is a Monday (day 20,787); 2026-12-06 a Sunday.
        assert_eq!(day_text(20_787), "2026-11-30");
        assert_eq!(week_start_of(20_787), 20_787);
        assert_eq!(week_start_of(20_793), 20_787);
        assert_eq!(previous_week(20_793), 20_780);
        assert_eq!(day_text(previous_week(20_787)), "2026-11-23");
        assert_eq!(parse_day("2026-11-30"), Some(20_787));
        assert_eq!(parse_day("2024-02-29"), Some(19_782));
        assert_eq!(parse_day("2026-02-29"), None);
        assert_eq!(parse_day("30/11/2026"), None);
    }

    #[test]
    fn owners_get_their_domains_worst_first_with_the_weeks_numbers() {
        let week = 20_780;
        let domain = |name: &str, owner: &str, status: &str, contact: &str| DigestDomainRow {
            domain: name.into(),
            owner: owner.into(),
            contact: contact.into(),
            status: status.into(),
            reasons: vec![],
        };
        let domains = [
            domain("a.test", "Council", "green", "it@a.test"),
            domain("b.test", "Council", "red", "IT@a.test"),
            domain("c.test", "", "amber", "nobody"),
        ];
        let days = [DigestDayRow {
            domain: "a.test".into(),
            day: week + 2,
            day_messages: 100,
            day_dmarc_pass: 90,
            day_dkim_pass: 80,
            day_spf_pass: 70,
        }];
        let senders = [
            DigestSenderRow {
                domain: "a.test".into(),
                sender: "Google Workspace".into(),
                service: "Google Workspace".into(),
                example_ip: "192.0.2.1".into(),
                week_messages: 90,
                week_dmarc_pass: 90,
                new_source: 0,
            },
            DigestSenderRow {
                domain: "a.test".into(),
                sender: "192.0.2.66".into(),
                example_ip: "192.0.2.66".into(),
                week_messages: 10,
                new_source: 1,
                ..DigestSenderRow::default()
            },
        ];
        let owners = assemble(&domains, &days, &senders, &[], week);
        assert_eq!(owners.len(), 2);
        let council = &owners[0];
        assert_eq!(council.digest.owner, "Council");
        assert_eq!(council.contacts, ["it@a.test"]);
        let names: Vec<&str> = council
            .digest
            .domains
            .iter()
            .map(|d| d.domain.as_str())
            .collect();
        assert_eq!(names, ["b.test", "a.test"]);
        let a = &council.digest.domains[1];
        assert_eq!(
            (a.messages, a.dmarc_pass, a.dkim_pass, a.spf_pass),
            (100, 90, 80, 70)
        );
        assert_eq!(a.daily.len(), 7);
        assert_eq!((a.daily[2].pass, a.daily[2].fail), (90, 10));
        assert_eq!(a.top_senders.len(), 2);
        assert_eq!(a.new_sources[0].sender, "192.0.2.66");
        assert_eq!(a.new_sources[0].source_ip, "");
        assert_eq!(owners[1].digest.owner, NO_OWNER);
        assert!(owners[1].contacts.is_empty());
        assert_eq!(file_stem(&owners[1].digest), "no-owner-2026-11-23");
    }
}
