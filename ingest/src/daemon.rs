//! Daemon: IMAP mailboxes -> messages -> [`pipeline::Feeder`] -> ClickHouse, then each
//! message moved to the archive (rows committed) or the invalid mailbox (no valid report).
//!
//! One worker per configured mailbox, each on its own connection. A worker's round:
//! SELECT, list UIDs, fetch a batch with `BODY.PEEK[]` (nothing marked read), parse and
//! write it (on a blocking thread), publish, then move. Only published (or duplicate)
//! mail is archived, only mail whose every report failed for good is quarantined; mail
//! whose rows could not be written stays in the inbox. Then IDLE (re-issued before the
//! server's limit) or, without IDLE, a poll interval.
//!
//! Faults: a lost IMAP connection or a ClickHouse that is down ends the round; the worker
//! reconnects with jittered exponential backoff and resumes (nothing was moved that was
//! not committed, so nothing is skipped; what was committed but not moved is found again
//! as duplicates). A message whose rows the server refuses is retried alone, at most
//! [`MAX_ATTEMPTS_PER_MESSAGE`] times, then quarantined. Shutdown (SIGTERM, SIGINT)
//! lets the batch in flight finish, then every worker logs out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::ImapConfig;
use crate::config::{Config, Limits};
use crate::failure::Retry;
use crate::input::{self, InputError};
use crate::mailbox::{FetchedMessage, IdleOutcome, Mailbox, MailboxError};
use crate::message::MessageError;
use crate::metrics::Metrics;
use crate::pipeline::{Event, Feeder};
use crate::store::{self, Store};

/// Times a message whose rows ClickHouse refuses is tried (alone) before quarantine.
pub const MAX_ATTEMPTS_PER_MESSAGE: u32 = 3;

/// What one run of the daemon did (for `--once` and the exit code).
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub fetched: u64,
    pub archived: u64,
    pub quarantined: u64,
    pub reports: u64,
    pub records: u64,
    pub duplicates: u64,
    /// Failures: quarantined mail and failed attachments, and errors that ended a worker.
    pub errors: Vec<String>,
}

impl RunSummary {
    fn merge(&mut self, other: RunSummary) {
        self.fetched += other.fetched;
        self.archived += other.archived;
        self.quarantined += other.quarantined;
        self.reports += other.reports;
        self.records += other.records;
        self.duplicates += other.duplicates;
        self.errors.extend(other.errors);
    }

    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "run: {} messages fetched, {} archived, {} quarantined; {} reports written ({} records), {} duplicates; {} errors",
            self.fetched,
            self.archived,
            self.quarantined,
            self.reports,
            self.records,
            self.duplicates,
            self.errors.len()
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Why a worker's round ended.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("IMAP: {0}")]
    Imap(#[from] MailboxError),
    #[error("{0}")]
    Store(String),
}

impl RoundError {
    fn is_transient(&self) -> bool {
        match self {
            RoundError::Imap(e) => e.is_transient(),
            RoundError::Store(_) => true,
        }
    }
}

enum RoundEnd {
    /// `--once`: the mailbox is empty (or holds only mail that cannot be handled now).
    Drained,
    /// Shutdown was asked for.
    Shutdown,
}

/// Everything a worker needs, shared.
#[derive(Clone)]
struct Shared {
    store: Store,
    limits: Limits,
    metrics: Arc<Metrics>,
    once: bool,
    shutdown: watch::Receiver<bool>,
    retry_initial_ms: u64,
    retry_max_ms: u64,
    max_attempts: u32,
}

/// Runs every configured mailbox until `shutdown` turns true (or, with `once`, until
/// each is drained). Metrics go to `metrics`.
pub async fn run(
    config: &Config,
    store: Store,
    once: bool,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> RunSummary {
    let shared = Shared {
        store,
        limits: config.limits.clone(),
        metrics,
        once,
        shutdown,
        retry_initial_ms: config.clickhouse.retry_initial_ms,
        retry_max_ms: config.clickhouse.retry_max_ms,
        max_attempts: config.clickhouse.max_attempts,
    };
    let mut workers = Vec::new();
    for account in config.accounts() {
        let shared = shared.clone();
        workers.push(tokio::spawn(async move { worker(account, shared).await }));
    }
    let mut summary = RunSummary::default();
    for w in workers {
        match w.await {
            Ok(s) => summary.merge(s),
            Err(e) => summary.errors.push(format!("a mailbox worker failed: {e}")),
        }
    }
    summary
}

/// `user@host/mailbox`, for logs and metrics labels.
fn label(account: &ImapConfig) -> String {
    format!("{}@{}/{}", account.username, account.host, account.mailbox)
}

/// One mailbox, until shutdown (or drained with `once`); reconnects with backoff.
async fn worker(account: ImapConfig, shared: Shared) -> RunSummary {
    let label = label(&account);
    let mut summary = RunSummary::default();
    let mut failed_rounds: u32 = 0;
    let mut attempts: HashMap<(u32, u32), u32> = HashMap::new();
    shared.metrics.set_connected(&label, false);
    loop {
        if *shared.shutdown.borrow() {
            break;
        }
        let result = round(&account, &label, &shared, &mut summary, &mut attempts).await;
        shared.metrics.set_connected(&label, false);
        match result {
            Ok(RoundEnd::Drained) | Ok(RoundEnd::Shutdown) => break,
            Err((e, progressed)) => {
                if progressed {
                    failed_rounds = 0;
                }
                failed_rounds += 1;
                tracing::warn!(mailbox = %label, error = %e, failed_rounds, "mailbox round failed");
                let give_up =
                    !e.is_transient() || (shared.once && failed_rounds >= shared.max_attempts);
                if give_up {
                    summary.errors.push(format!("{label}: {e}"));
                    if shared.once {
                        break;
                    }
                }
                Metrics::add(&shared.metrics.reconnects, 1);
                let delay = store::backoff(
                    failed_rounds,
                    shared.retry_initial_ms,
                    if e.is_transient() {
                        shared.retry_max_ms.max(1000)
                    } else {
                        // A refused login will not fix itself soon; try again slowly.
                        300_000
                    },
                );
                if wait_or_shutdown(delay, &shared.shutdown).await {
                    break;
                }
            }
        }
    }
    summary
}

/// Sleeps `delay`; returns true if shutdown came first.
async fn wait_or_shutdown(delay: Duration, shutdown: &watch::Receiver<bool>) -> bool {
    let mut rx = shutdown.clone();
    if *rx.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => *rx.borrow(),
        _ = rx.changed() => true,
    }
}

/// A future that resolves when shutdown is asked for.
fn stopped(shutdown: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> {
    let mut rx = shutdown.clone();
    async move {
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                // The sender is gone: nobody can ask any more; wait forever.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One connection's life: connect, then rounds of fetch/write/move and IDLE. The bool
/// of the error says whether anything was committed before it (resets the backoff).
async fn round(
    account: &ImapConfig,
    label: &str,
    shared: &Shared,
    summary: &mut RunSummary,
    attempts: &mut HashMap<(u32, u32), u32>,
) -> Result<RoundEnd, (RoundError, bool)> {
    let mut progressed = false;
    let fail = |e: RoundError, p: bool| (e, p);
    let mut mailbox = Mailbox::connect(account)
        .await
        .map_err(|e| fail(e.into(), false))?;
    for folder in [&account.archive_mailbox, &account.invalid_mailbox] {
        mailbox
            .ensure_folder(folder)
            .await
            .map_err(|e| fail(e.into(), false))?;
    }
    let selected = mailbox
        .select(&account.mailbox)
        .await
        .map_err(|e| fail(e.into(), false))?;
    // Retry counters are per UID; a new UIDVALIDITY renumbers the mailbox.
    attempts.retain(|(validity, _), _| *validity == selected.uid_validity);
    shared.metrics.set_connected(label, true);
    tracing::info!(mailbox = %label, uid_validity = selected.uid_validity, exists = selected.exists, "mailbox selected");
    loop {
        let uids = mailbox
            .uids()
            .await
            .map_err(|e| fail(e.into(), progressed))?;
        shared.metrics.set_backlog(label, uids.len() as u64);
        if uids.is_empty() {
            if shared.once {
                let _ = mailbox.logout().await;
                return Ok(RoundEnd::Drained);
            }
            mailbox = match wait_for_mail(mailbox, account, shared).await {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(RoundEnd::Shutdown),
                Err(e) => return Err(fail(e.into(), progressed)),
            };
            continue;
        }
        // Messages that failed before go alone, so one cannot sink a whole batch again.
        let (suspects, fresh): (Vec<u32>, Vec<u32>) = uids
            .iter()
            .partition(|uid| attempts.contains_key(&(selected.uid_validity, **uid)));
        let mut batches: Vec<Vec<u32>> = suspects.into_iter().map(|u| vec![u]).collect();
        batches.extend(
            fresh
                .chunks(account.fetch_batch.max(1) as usize)
                .map(<[u32]>::to_vec),
        );
        let mut moved_any = false;
        for batch in batches {
            let messages = mailbox
                .fetch(&batch, shared.limits.max_message_bytes)
                .await
                .map_err(|e| fail(e.into(), progressed))?;
            Metrics::add(&shared.metrics.messages_fetched, messages.len() as u64);
            summary.fetched += messages.len() as u64;
            let verdict = write_batch(messages, label, selected.uid_validity, shared).await;
            let mut archive = verdict.archive;
            let mut invalid = verdict.invalid;
            for uid in verdict.refused {
                let n = attempts.entry((selected.uid_validity, uid)).or_insert(0);
                *n += 1;
                if *n >= MAX_ATTEMPTS_PER_MESSAGE {
                    invalid.push(uid);
                }
            }
            archive.sort_unstable();
            invalid.sort_unstable();
            if !archive.is_empty() {
                mailbox
                    .move_to(&archive, &account.archive_mailbox)
                    .await
                    .map_err(|e| fail(e.into(), true))?;
                Metrics::add(&shared.metrics.messages_archived, archive.len() as u64);
                summary.archived += archive.len() as u64;
            }
            if !invalid.is_empty() {
                mailbox
                    .move_to(&invalid, &account.invalid_mailbox)
                    .await
                    .map_err(|e| fail(e.into(), true))?;
                Metrics::add(&shared.metrics.messages_quarantined, invalid.len() as u64);
                summary.quarantined += invalid.len() as u64;
            }
            for uid in archive.iter().chain(&invalid) {
                attempts.remove(&(selected.uid_validity, *uid));
            }
            moved_any |= !archive.is_empty() || !invalid.is_empty();
            summary.reports += verdict.reports;
            summary.records += verdict.records;
            summary.duplicates += verdict.duplicates;
            summary.errors.extend(verdict.errors);
            if !archive.is_empty() || !invalid.is_empty() {
                progressed = true;
                shared.metrics.success_now();
            }
            if let Some(reason) = verdict.store_down {
                return Err(fail(RoundError::Store(reason), progressed));
            }
            if *shared.shutdown.borrow() {
                let _ = mailbox.logout().await;
                return Ok(RoundEnd::Shutdown);
            }
        }
        if !moved_any {
            // Everything left is waiting for another attempt: do not spin on it.
            if shared.once {
                let _ = mailbox.logout().await;
                summary.errors.push(format!(
                    "{label}: {} messages left in the mailbox for a later run",
                    uids.len()
                ));
                return Ok(RoundEnd::Drained);
            }
            let delay = Duration::from_millis(shared.retry_max_ms.max(1000));
            if wait_or_shutdown(delay, &shared.shutdown).await {
                return Ok(RoundEnd::Shutdown);
            }
        }
    }
}

/// Waits for new mail: IDLE (re-issued before the server's limit), or a poll interval
/// where the server has no IDLE. `None`: shutdown.
async fn wait_for_mail(
    mut mailbox: Mailbox,
    account: &ImapConfig,
    shared: &Shared,
) -> Result<Option<Mailbox>, MailboxError> {
    if mailbox.capabilities().idle {
        let timeout = Duration::from_secs(account.idle_timeout_secs);
        let (mailbox, outcome) = mailbox.idle(timeout, stopped(&shared.shutdown)).await?;
        return Ok(match outcome {
            IdleOutcome::Stopped => {
                let _ = mailbox.logout().await;
                None
            }
            IdleOutcome::NewData | IdleOutcome::TimedOut => Some(mailbox),
        });
    }
    if wait_or_shutdown(
        Duration::from_secs(account.poll_interval_secs),
        &shared.shutdown,
    )
    .await
    {
        let _ = mailbox.logout().await;
        return Ok(None);
    }
    mailbox.noop().await?;
    Ok(Some(mailbox))
}

/// What to do with the messages of one batch.
#[derive(Debug, Default)]
struct Verdict {
    /// Rows committed (or already there): move to the archive.
    archive: Vec<u32>,
    /// No valid report, for good: move to the invalid mailbox.
    invalid: Vec<u32>,
    /// ClickHouse refused their rows: try again alone, then quarantine.
    refused: Vec<u32>,
    /// ClickHouse unreachable: nothing was committed; everything stays.
    store_down: Option<String>,
    reports: u64,
    records: u64,
    duplicates: u64,
    errors: Vec<String>,
}

/// Parses and writes one batch of messages on a blocking thread; decides each message's
/// fate from the events.
async fn write_batch(
    messages: Vec<FetchedMessage>,
    label: &str,
    uid_validity: u32,
    shared: &Shared,
) -> Verdict {
    let runtime = tokio::runtime::Handle::current();
    let store = shared.store.clone();
    let limits = shared.limits.clone();
    let label = label.to_owned();
    let uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
    let joined = tokio::task::spawn_blocking(move || {
        let mut feeder = Feeder::new(runtime, &store, 0u32);
        for message in &messages {
            feeder.tag = message.uid;
            let source = message_source(&label, uid_validity, message);
            if message.too_large {
                let e = InputError::Message(MessageError::TooLarge {
                    limit: limits.max_message_bytes,
                });
                input::ReportSink::failure(&mut feeder, &source, &e);
            } else {
                feeder.guarded(&source, |feeder| {
                    input::read_message(&message.raw, &source, &limits, feeder)
                });
            }
            if feeder.stopped.is_some() {
                break;
            }
        }
        if feeder.stopped.is_none() {
            feeder.publish();
        }
        feeder.flush_log();
        (feeder.take_events(), feeder.stopped.take())
    })
    .await;
    let (events, store_down) = match joined {
        Ok(r) => r,
        Err(e) => (
            Vec::new(),
            Some(format!("the batch's worker thread failed: {e}")),
        ),
    };
    decide(&uids, events, store_down, &shared.metrics)
}

/// The message's fate from its events (pure apart from the metrics).
fn decide(
    uids: &[u32],
    events: Vec<Event<u32>>,
    store_down: Option<String>,
    metrics: &Metrics,
) -> Verdict {
    let mut verdict = Verdict::default();
    #[derive(Default)]
    struct Seen {
        ok: bool,
        refused: bool,
        transient: bool,
        failed: bool,
    }
    let mut seen: HashMap<u32, Seen> = HashMap::new();
    for event in events {
        match event {
            Event::Published {
                tag,
                records,
                messages: _,
            } => {
                seen.entry(tag).or_default().ok = true;
                verdict.reports += 1;
                verdict.records += records;
                Metrics::add(&metrics.reports_written, 1);
                Metrics::add(&metrics.records_written, records);
            }
            Event::Duplicate { tag } => {
                seen.entry(tag).or_default().ok = true;
                verdict.duplicates += 1;
                Metrics::add(&metrics.duplicates, 1);
            }
            Event::Failed {
                tag,
                source,
                reason,
                kind,
            } => {
                let s = seen.entry(tag).or_default();
                match kind.retry() {
                    Retry::Later => {
                        s.transient = true;
                        continue;
                    }
                    Retry::Alone => s.refused = true,
                    Retry::Never => s.failed = true,
                }
                metrics.failure(kind.as_str());
                verdict.errors.push(format!("{source}: {reason}"));
            }
        }
    }
    if store_down.is_some() {
        verdict.store_down = store_down;
        return verdict;
    }
    for uid in uids {
        let s = seen.remove(uid).unwrap_or_default();
        if s.transient {
            continue;
        } else if s.refused {
            verdict.refused.push(*uid);
        } else if s.ok {
            verdict.archive.push(*uid);
        } else {
            // Only failures (or nothing at all): no valid report in this mail.
            verdict.invalid.push(*uid);
        }
    }
    verdict
}

/// `user@host/INBOX uid 17 (uidvalidity 1700000000) <message-id>`.
fn message_source(label: &str, uid_validity: u32, message: &FetchedMessage) -> String {
    let id = mailparse::parse_headers(&message.raw)
        .ok()
        .and_then(|(headers, _)| {
            use mailparse::MailHeaderMap;
            headers.get_first_value("Message-ID")
        })
        .map(|id| format!(" {}", id.trim()))
        .unwrap_or_default();
    format!(
        "{label} uid {} (uidvalidity {uid_validity}){id}",
        message.uid
    )
}

/// For `--once` exit codes: whether any worker saw errors.
pub fn any_failed(summary: &RunSummary, metrics: &Metrics) -> bool {
    summary.failed() || metrics.failures_total() > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    fn failed(tag: u32, kind: FailureKind) -> Event<u32> {
        Event::Failed {
            tag,
            source: format!("m{tag}"),
            reason: format!("reason of {tag}"),
            kind,
        }
    }

    #[test]
    fn fates_follow_the_events() {
        let metrics = Metrics::default();
        let events = vec![
            Event::Published {
                tag: 1,
                records: 5,
                messages: 9,
            },
            failed(1, FailureKind::LimitExceeded),
            Event::Duplicate { tag: 2 },
            failed(3, FailureKind::NoReport),
            failed(4, FailureKind::StoreRejected),
            failed(5, FailureKind::Io),
        ];
        let v = decide(&[1, 2, 3, 4, 5, 6], events, None, &metrics);
        assert_eq!(v.archive, [1, 2]);
        assert_eq!(v.invalid, [3, 6]);
        assert_eq!(v.refused, [4]);
        assert_eq!((v.reports, v.records, v.duplicates), (1, 5, 1));
        assert_eq!(v.errors.len(), 3);
        assert_eq!(metrics.failures_total(), 3);
    }

    #[test]
    fn nothing_moves_when_the_store_is_down() {
        let metrics = Metrics::default();
        let events = vec![failed(1, FailureKind::StoreUnreachable)];
        let v = decide(&[1, 2], events, Some("down".into()), &metrics);
        assert!(v.archive.is_empty() && v.invalid.is_empty() && v.refused.is_empty());
        assert_eq!(v.store_down.as_deref(), Some("down"));
    }

    #[tokio::test]
    async fn shutdown_wakes_waiters() {
        let (tx, rx) = watch::channel(false);
        let waiter =
            tokio::spawn(async move { wait_or_shutdown(Duration::from_secs(3600), &rx).await });
        tx.send(true).unwrap();
        assert!(tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_without_shutdown_takes_the_delay() {
        let (_tx, rx) = watch::channel(false);
        let started = tokio::time::Instant::now();
        assert!(!wait_or_shutdown(Duration::from_secs(30), &rx).await);
        assert!(started.elapsed() >= Duration::from_secs(30));
    }
}
