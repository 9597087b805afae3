//! Daemon: IMAP mailboxes -> messages -> [`pipeline::Feeder`] -> ClickHouse, then each
//! message moved to the archive (rows committed) or the invalid mailbox (no valid report).
//!
//! One worker per configured mailbox, each on its own connection. A worker's round:
//! SELECT, list UIDs, then batches (bounded by count and bytes) through a two-stage
//! pipeline: fetch with `BODY.PEEK[]` (nothing marked read), parse (ahead on
//! `read_ahead_threads` threads where there are cores to spare, see [`crate::ahead`])
//! and stage in order (on a blocking thread) while the batch before is published (on
//! another) and then moved; so the cores work, and mail still moves only after its own
//! batch committed. Only published (or duplicate)
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

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::ahead;
use crate::config::{Config, ImapConfig, Limits};
use crate::failure::{FailureKind, Retry};
use crate::input::{self, InputError};
use crate::inventory::Accepted;
use crate::mailbox::{FetchedMessage, IdleOutcome, Mailbox, MailboxError};
use crate::message::MessageError;
use crate::metrics::Metrics;
use crate::pipeline::count;
use crate::pipeline::{Event, Feeder};
use crate::store::{self, LogEntry, Store, StoreError};

/// Attempts at one mail (each recorded before it is processed, counted across restarts)
/// before it is quarantined without another try.
pub const MAX_ATTEMPTS_PER_MESSAGE: u32 = 3;

/// Error texts a `--once` summary keeps; past this only the count grows.
const MAX_SUMMARY_ERRORS: usize = 1_000;

/// What one run of the daemon did (for `--once` and the exit code). Counters only; the
/// texts of the failures are kept for `--once` alone (a daemon that runs for months logs
/// each failure instead of keeping it).
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub fetched: u64,
    pub archived: u64,
    pub quarantined: u64,
    pub reports: u64,
    pub records: u64,
    pub duplicates: u64,
    /// Failures: quarantined mail, failed attachments, errors that ended a worker.
    pub failures: u64,
    /// Workers that gave up because a server (IMAP or ClickHouse) was unreachable or
    /// refused them (counted in `failures` too).
    pub servers_failed: u64,
    /// Their texts (`--once` only, at most [`MAX_SUMMARY_ERRORS`]).
    pub errors: Vec<String>,
    keep_errors: bool,
}

impl RunSummary {
    fn new(keep_errors: bool) -> Self {
        RunSummary {
            keep_errors,
            ..RunSummary::default()
        }
    }

    fn error(&mut self, text: String) {
        self.failures += 1;
        if self.keep_errors && self.errors.len() < MAX_SUMMARY_ERRORS {
            self.errors.push(text);
        }
    }

    fn merge(&mut self, other: RunSummary) {
        self.fetched += other.fetched;
        self.archived += other.archived;
        self.quarantined += other.quarantined;
        self.reports += other.reports;
        self.records += other.records;
        self.duplicates += other.duplicates;
        self.failures += other.failures;
        self.servers_failed += other.servers_failed;
        let room = MAX_SUMMARY_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }

    pub fn failed(&self) -> bool {
        self.failures > 0
    }
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "run: {} fetched, {} archived, {} quarantined; {} written ({}), {}; {}",
            count(self.fetched, "message"),
            self.archived,
            self.quarantined,
            count(self.reports, "report"),
            count(self.records, "record"),
            count(self.duplicates, "duplicate"),
            count(self.failures, "error"),
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        if self.failures > self.errors.len() as u64 && !self.errors.is_empty() {
            writeln!(
                f,
                "  ... and {} more",
                self.failures - self.errors.len() as u64
            )?;
        }
        Ok(())
    }
}

/// Why a worker's round ended.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    /// Every mailbox error names IMAP itself.
    #[error("{0}")]
    Imap(#[from] MailboxError),
    #[error("{0}")]
    Store(String),
    #[error("the mailbox's UIDVALIDITY changed from {was} to {now}: its UIDs were renumbered")]
    UidValidityChanged { was: u32, now: u32 },
}

impl RoundError {
    fn is_transient(&self) -> bool {
        match self {
            RoundError::Imap(e) => e.is_transient(),
            RoundError::Store(_) | RoundError::UidValidityChanged { .. } => true,
        }
    }
}

impl From<StoreError> for RoundError {
    fn from(e: StoreError) -> Self {
        RoundError::Store(e.to_string())
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
    /// Under `[domains] accept = "inventory"`: the domains reports are taken for, read
    /// again from the inventory every [`ACCEPTED_REFRESH`].
    accepted: Option<Arc<std::sync::RwLock<Arc<Accepted>>>>,
}

/// How often the daemon reads the inventory again under `accept = "inventory"`.
pub const ACCEPTED_REFRESH: Duration = Duration::from_secs(300);

/// Runs every configured mailbox until `shutdown` turns true (or, with `once`, until
/// each is drained). Metrics go to `metrics`.
pub async fn run(
    config: &Config,
    store: Store,
    once: bool,
    accepted: Option<Accepted>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> RunSummary {
    match store.drop_stale_attempts().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(partitions = n, "dropped old mail_attempts partitions"),
        Err(e) => tracing::warn!(error = %e, "cannot drop old mail_attempts partitions"),
    }
    let shared = Shared {
        store,
        limits: config.limits.clone(),
        metrics,
        once,
        shutdown,
        retry_initial_ms: config.clickhouse.retry_initial_ms,
        retry_max_ms: config.clickhouse.retry_max_ms,
        max_attempts: config.clickhouse.max_attempts,
        accepted: accepted.map(|a| Arc::new(std::sync::RwLock::new(Arc::new(a)))),
    };
    if let (Some(lock), false) = (&shared.accepted, once) {
        tokio::spawn(reload_accepted(
            shared.store.clone(),
            lock.clone(),
            shared.shutdown.clone(),
        ));
    }
    let mut workers = Vec::new();
    for account in config.accounts() {
        let shared = shared.clone();
        workers.push(tokio::spawn(async move { worker(account, shared).await }));
    }
    let mut summary = RunSummary::new(once);
    for w in workers {
        match w.await {
            Ok(s) => summary.merge(s),
            Err(e) => summary.error(format!("a mailbox worker failed: {e}")),
        }
    }
    summary
}

/// `user@host/mailbox`, for logs, metrics labels and `mail_attempts`.
fn label(account: &ImapConfig) -> String {
    format!("{}@{}/{}", account.username, account.host, account.mailbox)
}

/// What a worker remembers about the mail in its inbox between rounds (pruned to the
/// UIDs still there, so it never grows past the inbox).
#[derive(Debug, Default)]
struct Memory {
    uid_validity: u32,
    /// Recorded attempts that ended because ClickHouse was down: not the mail's fault.
    forgiven: HashMap<u32, u32>,
    /// The last failure of each mail that is being retried alone.
    last_failure: HashMap<u32, (FailureKind, String)>,
}

impl Memory {
    /// Forgets what concerns mail no longer in `uids` (or another UIDVALIDITY).
    fn keep_only(&mut self, uid_validity: u32, uids: &[u32]) {
        if uid_validity != self.uid_validity {
            *self = Memory {
                uid_validity,
                ..Memory::default()
            };
            return;
        }
        let present: std::collections::HashSet<u32> = uids.iter().copied().collect();
        self.forgiven.retain(|uid, _| present.contains(uid));
        self.last_failure.retain(|uid, _| present.contains(uid));
    }
}

/// One mailbox, until shutdown (or drained with `once`); reconnects with backoff.
async fn worker(account: ImapConfig, shared: Shared) -> RunSummary {
    let label = label(&account);
    let mut summary = RunSummary::new(shared.once);
    let mut failed_rounds: u32 = 0;
    let mut memory = Memory::default();
    shared.metrics.set_connected(&label, false);
    loop {
        if *shared.shutdown.borrow() {
            break;
        }
        let result = round(&account, &label, &shared, &mut summary, &mut memory).await;
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
                    summary.servers_failed += 1;
                    summary.error(format!("{label}: {e}"));
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

/// How the mail of one round is processed: what is quarantined before any try (its
/// attempts ran out), then the batches, suspects (mail with an unfinished attempt) alone
/// first, then the rest in batches bounded by count and bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    exhausted: Vec<u32>,
    batches: Vec<Vec<u32>>,
}

/// Plans a round (pure). `attempts` are the recorded attempts less the forgiven ones.
fn plan(
    sizes: &BTreeMap<u32, u64>,
    attempts: &HashMap<u32, u32>,
    max_messages: usize,
    max_bytes: u64,
) -> Plan {
    let mut plan = Plan::default();
    let mut fresh = Vec::new();
    for &uid in sizes.keys() {
        match attempts.get(&uid).copied().unwrap_or(0) {
            0 => fresh.push(uid),
            n if n >= MAX_ATTEMPTS_PER_MESSAGE => plan.exhausted.push(uid),
            _ => plan.batches.push(vec![uid]),
        }
    }
    let mut batch: Vec<u32> = Vec::new();
    let mut bytes = 0u64;
    for uid in fresh {
        let size = sizes.get(&uid).copied().unwrap_or(0);
        if !batch.is_empty() && (batch.len() >= max_messages.max(1) || bytes + size > max_bytes) {
            plan.batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        batch.push(uid);
        bytes += size;
    }
    if !batch.is_empty() {
        plan.batches.push(batch);
    }
    plan
}

/// How long the daemon waits, once IDLE says new mail arrived, for more to arrive
/// before it takes the batch (the deadline of a batch that does not fill).
const BATCH_LINGER: Duration = Duration::from_secs(2);

/// Rounds in a row without a mail moved after which `--once` stops (each round adds an
/// attempt to every mail left, so mail that keeps failing is quarantined before this).
const MAX_IDLE_ROUNDS_ONCE: u32 = MAX_ATTEMPTS_PER_MESSAGE + 2;

/// One connection's life: connect, then rounds of fetch/write/move and IDLE. The bool
/// of the error says whether anything was committed before it (resets the backoff).
async fn round(
    account: &ImapConfig,
    label: &str,
    shared: &Shared,
    summary: &mut RunSummary,
    memory: &mut Memory,
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
    let validity = selected.uid_validity;
    shared.metrics.set_connected(label, true);
    tracing::info!(mailbox = %label, uid_validity = validity, exists = selected.exists, "mailbox selected");
    let mut idle_rounds = 0;
    loop {
        let uids = mailbox
            .uids()
            .await
            .map_err(|e| fail(e.into(), progressed))?;
        shared.metrics.set_backlog(label, uids.len() as u64);
        memory.keep_only(validity, &uids);
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
        let (first, last) = (uids[0], uids[uids.len() - 1]);
        let recorded = shared
            .store
            .attempts(label, validity, first, last)
            .await
            .map_err(|e| fail(e.into(), progressed))?;
        let attempts: HashMap<u32, u32> = recorded
            .into_iter()
            .map(|(uid, n)| {
                let forgiven = memory.forgiven.get(&uid).copied().unwrap_or(0);
                (uid, n.saturating_sub(forgiven))
            })
            .collect();
        let sizes = mailbox
            .sizes(&uids)
            .await
            .map_err(|e| fail(e.into(), progressed))?;
        let plan = plan(
            &sizes,
            &attempts,
            account.fetch_batch as usize,
            account.fetch_batch_bytes,
        );
        let mut moved_any = false;
        if !plan.exhausted.is_empty() {
            quarantine_exhausted(
                &mut mailbox,
                account,
                label,
                validity,
                &plan.exhausted,
                &attempts,
                shared,
                summary,
                memory,
            )
            .await
            .map_err(|e| fail(e, progressed))?;
            moved_any = true;
            progressed = true;
        }
        // Pipelined: while batch i is published (a background task), batch i+1 is
        // fetched, parsed and staged; then batch i+1's publish starts and batch i's mail
        // is moved meanwhile. Mail still moves only after its own batch committed; a
        // failure settles the batch in flight first.
        let ctx = BatchContext {
            account,
            label,
            validity,
            keepalive: Duration::from_secs(account.keepalive_secs),
            shared,
        };
        let mut in_flight: Option<InFlight> = None;
        let mut batches = plan.batches.into_iter();
        loop {
            // After shutdown, only the batch in flight is finished.
            let next = match *shared.shutdown.borrow() {
                true => None,
                false => batches.next(),
            };
            let mut staged = match next {
                Some(batch) => Some(stage_next(&ctx, &mut mailbox, &batch, summary).await),
                None => None,
            };
            let mut publishing = None;
            if let Some(previous) = in_flight.take() {
                let settled = match wait_for_publish(&ctx, previous, &mut mailbox).await {
                    Ok(verdict) => {
                        // The next batch's publish runs while this batch's mail moves,
                        // unless the store just failed this one.
                        if verdict.store_down.is_none() {
                            if let Some(Ok(next)) = staged.take_if(|s| s.is_ok()) {
                                publishing = Some(next.publish());
                            }
                        }
                        settle_batch(&ctx, verdict, &mut mailbox, summary, memory).await
                    }
                    Err(e) => Err(e),
                };
                match settled {
                    Ok(moved) => {
                        if moved {
                            moved_any = true;
                            progressed = true;
                            shared.metrics.success_now();
                        }
                    }
                    Err(e) => {
                        // Staged or being published, never moved: not this mail's fault.
                        if let Some(Ok(next)) = &staged {
                            next.forgive(memory);
                        }
                        if let Some(next) = publishing {
                            next.forgive(memory);
                            let _ = next.task.await;
                        }
                        return Err(fail(e, true));
                    }
                }
            }
            in_flight = match (publishing, staged) {
                (Some(next), _) => Some(next),
                (None, Some(staged)) => Some(staged.map_err(|e| fail(e, progressed))?.publish()),
                (None, None) => break,
            };
        }
        if *shared.shutdown.borrow() {
            let _ = mailbox.logout().await;
            return Ok(RoundEnd::Shutdown);
        }
        if moved_any {
            idle_rounds = 0;
            continue;
        }
        // Everything left failed again and waits for another attempt.
        idle_rounds += 1;
        if shared.once {
            if idle_rounds >= MAX_IDLE_ROUNDS_ONCE {
                let _ = mailbox.logout().await;
                summary.error(format!(
                    "{label}: {} left in the mailbox for a later run",
                    count(uids.len() as u64, "message")
                ));
                return Ok(RoundEnd::Drained);
            }
            continue;
        }
        let delay = Duration::from_millis(shared.retry_max_ms.max(1000));
        if wait_or_shutdown(delay, &shared.shutdown).await {
            return Ok(RoundEnd::Shutdown);
        }
    }
}

/// Awaits `work` while sending a NOOP every `interval`, so that the server does not log
/// the session out during a slow batch. Returns the work's output, and the error that
/// ended the session if a NOOP failed (the work still completes).
async fn with_keepalive<T>(
    mailbox: &mut Mailbox,
    interval: Duration,
    work: impl Future<Output = T>,
) -> (T, Option<MailboxError>) {
    let mut work = std::pin::pin!(work);
    let start = tokio::time::Instant::now() + interval;
    let mut ticker = tokio::time::interval_at(start, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost = None;
    loop {
        tokio::select! {
            done = &mut work => return (done, lost),
            _ = ticker.tick(), if lost.is_none() => {
                if let Err(e) = mailbox.noop().await {
                    lost = Some(e);
                }
            }
        }
    }
}

/// A new session on the same mailbox, checked to have the same UIDVALIDITY (else the
/// UIDs in hand name other mail, and nothing may be moved).
async fn reopen(account: &ImapConfig, validity: u32) -> Result<Mailbox, RoundError> {
    let mut mailbox = Mailbox::connect(account).await?;
    let selected = mailbox.select(&account.mailbox).await?;
    if selected.uid_validity != validity {
        return Err(RoundError::UidValidityChanged {
            was: validity,
            now: selected.uid_validity,
        });
    }
    Ok(mailbox)
}

/// Moves `uids` to `folder`; a session that died meanwhile is reopened (same
/// UIDVALIDITY) and the move tried once more.
async fn move_safely(
    mailbox: &mut Mailbox,
    account: &ImapConfig,
    validity: u32,
    uids: &[u32],
    folder: &str,
) -> Result<(), RoundError> {
    match mailbox.move_to(uids, folder).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_transient() => {
            tracing::warn!(folder, error = %e, "move failed; reconnecting to move again");
            *mailbox = reopen(account, validity).await?;
            Ok(mailbox.move_to(uids, folder).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// `user@host/INBOX uid 17 (uidvalidity 1700000000)`, for mail not fetched.
fn uid_source(label: &str, validity: u32, uid: u32) -> String {
    format!("{label} uid {uid} (uidvalidity {validity})")
}

/// Quarantines mail whose attempts ran out, without another try: its reason goes to
/// `ingest_log` first (the failures table), then it moves.
#[allow(clippy::too_many_arguments)]
async fn quarantine_exhausted(
    mailbox: &mut Mailbox,
    account: &ImapConfig,
    label: &str,
    validity: u32,
    uids: &[u32],
    attempts: &HashMap<u32, u32>,
    shared: &Shared,
    summary: &mut RunSummary,
    memory: &Memory,
) -> Result<(), RoundError> {
    let mut entries = Vec::with_capacity(uids.len());
    for &uid in uids {
        let n = attempts.get(&uid).copied().unwrap_or(0);
        let (kind, reason) = match memory.last_failure.get(&uid) {
            Some((kind, last)) => (*kind, format!("{n} attempts failed; the last: {last}")),
            None => (
                FailureKind::Interrupted,
                format!("{n} attempts at this mail did not complete (the daemon stopped, crashed or ran out of memory while processing it)"),
            ),
        };
        let source = uid_source(label, validity, uid);
        tracing::warn!(mailbox = %label, uid, %kind, %reason, "mail quarantined");
        shared.metrics.failure(kind.as_str());
        summary.error(format!("{source}: {reason}"));
        entries.push(LogEntry::failure(&source, kind.as_str(), &reason));
    }
    shared.store.insert_rows("ingest_log", &entries).await?;
    move_safely(mailbox, account, validity, uids, &account.invalid_mailbox).await?;
    Metrics::add(&shared.metrics.messages_quarantined, uids.len() as u64);
    summary.quarantined += uids.len() as u64;
    Ok(())
}

/// Carries out a batch's verdict: archive, quarantine, keep; returns whether anything
/// moved. A store that went down ends the round (after the moves of what committed).
#[allow(clippy::too_many_arguments)]
async fn settle(
    mailbox: &mut Mailbox,
    account: &ImapConfig,
    label: &str,
    validity: u32,
    verdict: Verdict,
    shared: &Shared,
    summary: &mut RunSummary,
    memory: &mut Memory,
) -> Result<bool, RoundError> {
    let Verdict {
        mut archive,
        invalid,
        retry,
        store_down,
        reports,
        records,
        duplicates,
        errors,
        batch,
    } = verdict;
    archive.sort_unstable();
    let mut quarantine: Vec<u32> = invalid.iter().map(|(uid, _)| *uid).collect();
    quarantine.sort_unstable();
    if !archive.is_empty() {
        move_safely(
            mailbox,
            account,
            validity,
            &archive,
            &account.archive_mailbox,
        )
        .await?;
        Metrics::add(&shared.metrics.messages_archived, archive.len() as u64);
        summary.archived += archive.len() as u64;
    }
    if !quarantine.is_empty() {
        move_safely(
            mailbox,
            account,
            validity,
            &quarantine,
            &account.invalid_mailbox,
        )
        .await?;
        Metrics::add(
            &shared.metrics.messages_quarantined,
            quarantine.len() as u64,
        );
        summary.quarantined += quarantine.len() as u64;
        for (uid, reason) in &invalid {
            tracing::warn!(mailbox = %label, uid, %reason, "mail quarantined");
        }
    }
    summary.reports += reports;
    summary.records += records;
    summary.duplicates += duplicates;
    for e in errors {
        summary.error(e);
    }
    for (uid, kind, reason) in retry {
        tracing::warn!(mailbox = %label, uid, %kind, %reason, "mail kept to be tried again alone");
        memory.last_failure.insert(uid, (kind, reason));
    }
    if let Some(reason) = store_down {
        // Not the mail's fault: these attempts do not count against it.
        for uid in batch {
            if !archive.contains(&uid) && !quarantine.contains(&uid) {
                *memory.forgiven.entry(uid).or_insert(0) += 1;
            }
        }
        return Err(RoundError::Store(reason));
    }
    Ok(!archive.is_empty() || !quarantine.is_empty())
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
            // Mail trickles in (a receiver's reports come minutes apart, often several
            // at once): what arrives within the linger joins this batch, which costs
            // one publish instead of one per mail.
            IdleOutcome::NewData => {
                // Still in IDLE, so the server tells the session of each new mail.
                let deadline = tokio::time::Instant::now() + BATCH_LINGER;
                let mut mailbox = mailbox;
                loop {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        break Some(mailbox);
                    }
                    mailbox.forget_news();
                    let (again, outcome) = mailbox.idle(left, stopped(&shared.shutdown)).await?;
                    mailbox = again;
                    if outcome == IdleOutcome::Stopped {
                        let _ = mailbox.logout().await;
                        break None;
                    }
                }
            }
            IdleOutcome::TimedOut => Some(mailbox),
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
    /// Every UID of the batch.
    batch: Vec<u32>,
    /// Rows committed (or already there): move to the archive.
    archive: Vec<u32>,
    /// No valid report, for good: move to the invalid mailbox (with the first reason).
    invalid: Vec<(u32, String)>,
    /// Perhaps the mail's fault (a panic, refused rows): keep, try alone next time.
    retry: Vec<(u32, FailureKind, String)>,
    /// ClickHouse unreachable or unwell: nothing of the batch was committed; it stays.
    store_down: Option<String>,
    reports: u64,
    records: u64,
    duplicates: u64,
    errors: Vec<String>,
}

/// Test-only delay of every batch (debug builds): `DMARC_TEST_BATCH_DELAY_MS`.
fn test_batch_delay() -> Option<Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("DMARC_TEST_BATCH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// A batch parsed and staged (not yet published), on its way through the pipeline.
struct Staged {
    uids: Vec<u32>,
    /// The feeder holding the staged batch, or the reason its stage failed (a panic).
    feeder: Result<Feeder<u32>, String>,
    shared: Shared,
    label: String,
}

/// A batch whose publish runs in the background.
struct InFlight {
    uids: Vec<u32>,
    task: tokio::task::JoinHandle<Verdict>,
}

impl InFlight {
    /// The batch will not be moved in this round (it ends): its attempts were not its
    /// mail's fault.
    fn forgive(&self, memory: &mut Memory) {
        forgive(&self.uids, memory);
    }
}

/// Attempts at `uids` that do not count against their mail.
fn forgive(uids: &[u32], memory: &mut Memory) {
    for uid in uids {
        *memory.forgiven.entry(*uid).or_insert(0) += 1;
    }
}

impl Staged {
    /// Starts the batch's publish on a blocking thread (the feeder blocks on each store
    /// call); the verdict comes from its events.
    fn publish(self) -> InFlight {
        let Staged {
            uids,
            feeder,
            shared,
            label,
        } = self;
        let batch = uids.clone();
        let task = tokio::task::spawn_blocking(move || match feeder {
            Ok(mut feeder) => {
                if feeder.stopped.is_none() {
                    feeder.publish();
                } else {
                    feeder.finish_publish();
                }
                feeder.flush_log();
                let events = feeder.take_events();
                decide(&batch, events, feeder.stopped.take(), &shared.metrics)
            }
            Err(reason) => panicked(&label, &batch, reason),
        });
        InFlight { uids, task }
    }

    /// The batch will not be published (the round ends): its attempts were not its
    /// mail's fault.
    fn forgive(&self, memory: &mut Memory) {
        forgive(&self.uids, memory);
    }
}

/// Every mail of a batch whose worker panicked is tried alone.
fn panicked(label: &str, uids: &[u32], reason: String) -> Verdict {
    tracing::error!(mailbox = %label, %reason, "batch failed; its mail is tried alone");
    Verdict {
        retry: uids
            .iter()
            .map(|&uid| (uid, FailureKind::Panic, reason.clone()))
            .collect(),
        batch: uids.to_vec(),
        ..Verdict::default()
    }
}

/// The reason of a blocking task that did not finish.
fn join_failure(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => format!(
            "the batch's worker panicked: {}",
            crate::pipeline::panic_message(payload.as_ref())
        ),
        Err(e) => format!("the batch's worker failed: {e}"),
    }
}

/// What the stages of a round's batches share.
struct BatchContext<'a> {
    account: &'a ImapConfig,
    label: &'a str,
    validity: u32,
    /// NOOP interval while a batch is staged or published.
    keepalive: Duration,
    shared: &'a Shared,
}

/// Records the attempt at `batch`, fetches it and parses and stages it (on a blocking
/// thread, NOOPs keeping the session alive meanwhile). A lost session is reopened.
async fn stage_next(
    ctx: &BatchContext<'_>,
    mailbox: &mut Mailbox,
    batch: &[u32],
    summary: &mut RunSummary,
) -> Result<Staged, RoundError> {
    let shared = ctx.shared;
    // The attempt is on record before the mail is touched: if this process dies on it,
    // the next one knows.
    shared
        .store
        .record_attempts(ctx.label, ctx.validity, batch)
        .await?;
    let messages = mailbox
        .fetch(batch, shared.limits.max_message_bytes)
        .await?;
    Metrics::add(&shared.metrics.messages_fetched, messages.len() as u64);
    summary.fetched += messages.len() as u64;
    let threads = ctx.account.read_ahead_threads as usize;
    let work = stage_batch(messages, ctx.label, ctx.validity, threads, shared);
    let (staged, lost) = with_keepalive(mailbox, ctx.keepalive, work).await;
    ctx.reopen_if_lost(mailbox, lost, "staged").await?;
    Ok(staged)
}

impl BatchContext<'_> {
    /// After a batch was `doing` (staged, published) under [`with_keepalive`]: a session
    /// that a NOOP found lost is replaced by a new one on the same UIDVALIDITY.
    async fn reopen_if_lost(
        &self,
        mailbox: &mut Mailbox,
        lost: Option<MailboxError>,
        doing: &str,
    ) -> Result<(), RoundError> {
        if let Some(e) = lost {
            tracing::warn!(mailbox = %self.label, error = %e, "IMAP session lost while the batch was {doing}; reconnecting");
            *mailbox = reopen(self.account, self.validity).await?;
        }
        Ok(())
    }
}

/// Reads the inventory's domains again every [`ACCEPTED_REFRESH`] (a failed read keeps
/// the domains read before; an empty inventory is not taken: it would refuse every
/// report).
async fn reload_accepted(
    store: Store,
    accepted: Arc<std::sync::RwLock<Arc<Accepted>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ACCEPTED_REFRESH) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match store.listed_domains().await {
            Ok(domains) if !domains.is_empty() => {
                let fresh = Accepted::new(domains);
                tracing::debug!(domains = fresh.len(), "inventory read again");
                *accepted.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
            }
            Ok(_) => tracing::warn!("the inventory is empty; still taking the domains read before"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the inventory again; still taking the domains read before")
            }
        }
    }
}

/// Parses and stages one batch of messages on a blocking thread (not published). A
/// panic is caught per message (that message fails) and around the whole batch (every
/// message of it is then tried alone).
async fn stage_batch(
    messages: Vec<FetchedMessage>,
    label: &str,
    uid_validity: u32,
    read_ahead_threads: usize,
    shared: &Shared,
) -> Staged {
    let runtime = tokio::runtime::Handle::current();
    let store = shared.store.clone();
    let limits = shared.limits.clone();
    let mailbox = label.to_owned();
    let uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
    let accepted = shared
        .accepted
        .as_ref()
        .map(|lock| lock.read().unwrap_or_else(|e| e.into_inner()).clone());
    let joined = tokio::task::spawn_blocking(move || {
        let label = mailbox;
        if let Some(delay) = test_batch_delay() {
            std::thread::sleep(delay);
        }
        let mut feeder = Feeder::new(runtime.clone(), &store, 0u32);
        feeder.accepted = accepted;
        // Messages are parsed ahead on worker threads (if any; else each is streamed by
        // the feeder); the feeder stages them in order.
        let read_ahead = {
            let (label, limits) = (label.clone(), limits.clone());
            let accepted = feeder.accepted.clone();
            Arc::new(move |message: &FetchedMessage| {
                let source = message_source(&label, uid_validity, message);
                let ahead = if message.too_large || read_ahead_threads == 0 {
                    ahead::Ahead::Inline
                } else {
                    let accepted = accepted.as_deref();
                    ahead::read_message(&message.raw, &source, &limits, accepted)
                };
                (source, ahead)
            })
        };
        let stage = |message: &FetchedMessage, (source, ahead): (String, ahead::Ahead)| {
            feeder.tag = message.uid;
            if message.too_large {
                let e = InputError::Message(MessageError::TooLarge {
                    limit: limits.max_message_bytes,
                });
                input::ReportSink::failure(&mut feeder, &source, &e);
            } else {
                feeder.guarded(&source, |feeder| match ahead {
                    ahead::Ahead::Parsed(units) => feeder.replay(units),
                    ahead::Ahead::Inline => {
                        input::read_message(&message.raw, &source, &limits, feeder)
                    }
                });
            }
            if feeder.stopped.is_some() {
                return false;
            }
            if feeder.writer.is_full() {
                feeder.start_publish();
            }
            true
        };
        ahead::in_order(
            &runtime,
            messages.into(),
            read_ahead_threads,
            ahead::DEPTH,
            read_ahead,
            stage,
        );
        feeder
    })
    .await;
    Staged {
        uids,
        feeder: joined.map_err(join_failure),
        shared: shared.clone(),
        label: label.to_owned(),
    }
}

/// Waits for a batch's publish (NOOPs keeping the session alive); its verdict.
async fn wait_for_publish(
    ctx: &BatchContext<'_>,
    in_flight: InFlight,
    mailbox: &mut Mailbox,
) -> Result<Verdict, RoundError> {
    let InFlight { uids, task } = in_flight;
    let (joined, lost) = with_keepalive(mailbox, ctx.keepalive, task).await;
    ctx.reopen_if_lost(mailbox, lost, "published").await?;
    Ok(joined.unwrap_or_else(|e| panicked(ctx.label, &uids, join_failure(e))))
}

/// Carries out a published batch's verdict; returns whether anything moved.
async fn settle_batch(
    ctx: &BatchContext<'_>,
    verdict: Verdict,
    mailbox: &mut Mailbox,
    summary: &mut RunSummary,
    memory: &mut Memory,
) -> Result<bool, RoundError> {
    settle(
        mailbox,
        ctx.account,
        ctx.label,
        ctx.validity,
        verdict,
        ctx.shared,
        summary,
        memory,
    )
    .await
}

/// The message's fate from its events (pure apart from the metrics).
fn decide(
    uids: &[u32],
    events: Vec<Event<u32>>,
    store_down: Option<String>,
    metrics: &Metrics,
) -> Verdict {
    let mut verdict = Verdict {
        batch: uids.to_vec(),
        ..Verdict::default()
    };
    #[derive(Default)]
    struct Seen {
        ok: bool,
        /// The first failure that may be the mail's fault.
        alone: Option<(FailureKind, String)>,
        later: bool,
        /// The first failure that is the content's.
        never: Option<String>,
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
                        s.later = true;
                        continue;
                    }
                    Retry::Alone => {
                        s.alone.get_or_insert((kind, reason.clone()));
                    }
                    Retry::Never => {
                        s.never.get_or_insert(reason.clone());
                    }
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
    for &uid in uids {
        let s = seen.remove(&uid).unwrap_or_default();
        if let Some((kind, reason)) = s.alone {
            verdict.retry.push((uid, kind, reason));
        } else if s.later {
            // Kept for later; the attempt on record bounds how often.
        } else if s.ok {
            verdict.archive.push(uid);
        } else {
            let reason = s
                .never
                .unwrap_or_else(|| "no report found in this mail".to_owned());
            verdict.invalid.push((uid, reason));
        }
    }
    verdict
}

/// How much of a message's head is searched for its Message-ID.
const HEADER_SCAN_BYTES: usize = 64 * 1024;

/// `user@host/INBOX uid 17 (uidvalidity 1700000000) <message-id>`. Only the start of
/// the header block is parsed: a stranger's mail may carry millions of header lines.
fn message_source(label: &str, uid_validity: u32, message: &FetchedMessage) -> String {
    let head = &message.raw[..message.raw.len().min(HEADER_SCAN_BYTES)];
    let head = match memchr::memmem::find(head, b"\r\n\r\n") {
        Some(end) => &head[..end + 2],
        None => head,
    };
    let id = mailparse::parse_headers(head)
        .ok()
        .and_then(|(headers, _)| {
            use mailparse::MailHeaderMap;
            headers.get_first_value("Message-ID")
        })
        .map(|id| {
            let id: String = id.trim().chars().take(200).collect();
            format!(" {id}")
        })
        .unwrap_or_default();
    format!("{}{id}", uid_source(label, uid_validity, message.uid))
}

/// For `--once` exit codes: whether any worker saw errors.
pub fn any_failed(summary: &RunSummary, metrics: &Metrics) -> bool {
    summary.failed() || metrics.failures_total() > 0
}

#[cfg(test)]
mod tests {
    use super::*;

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
            failed(7, FailureKind::Panic),
            Event::Published {
                tag: 7,
                records: 1,
                messages: 1,
            },
        ];
        let v = decide(&[1, 2, 3, 4, 5, 6, 7], events, None, &metrics);
        assert_eq!(v.archive, [1, 2]);
        assert_eq!(
            v.invalid,
            [
                (3, "reason of 3".to_owned()),
                (6, "no report found in this mail".to_owned())
            ]
        );
        // A mail with a report that may yet pass stays, even beside a published one
        // (which is a duplicate next time).
        let kept: Vec<(u32, FailureKind)> = v.retry.iter().map(|(u, k, _)| (*u, *k)).collect();
        assert_eq!(
            kept,
            [(4, FailureKind::StoreRejected), (7, FailureKind::Panic)]
        );
        assert_eq!((v.reports, v.records, v.duplicates), (2, 6, 1));
        assert_eq!(v.errors.len(), 4);
        assert_eq!(metrics.failures_total(), 4);
    }

    #[test]
    fn nothing_moves_when_the_store_is_down() {
        let metrics = Metrics::default();
        let events = vec![failed(1, FailureKind::StoreUnreachable)];
        let v = decide(&[1, 2], events, Some("down".into()), &metrics);
        assert!(v.archive.is_empty() && v.invalid.is_empty() && v.retry.is_empty());
        assert_eq!(v.store_down.as_deref(), Some("down"));
        assert_eq!(v.batch, [1, 2]);
    }

    fn sizes(pairs: &[(u32, u64)]) -> BTreeMap<u32, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_round_goes_suspects_alone_then_batches_bounded_by_count_and_bytes() {
        let sizes = sizes(&[
            (1, 10),
            (2, 10),
            (3, 10),
            (4, 100),
            (5, 10),
            (6, 10),
            (7, 10),
        ]);
        let attempts: HashMap<u32, u32> = [(2, 1), (6, MAX_ATTEMPTS_PER_MESSAGE)].into();
        let p = plan(&sizes, &attempts, 2, 50);
        assert_eq!(p.exhausted, [6]);
        assert_eq!(p.batches, vec![vec![2], vec![1, 3], vec![4], vec![5, 7]]);
        // A message larger than the byte bound is fetched alone.
        let p = plan(&sizes, &HashMap::new(), 200, 15);
        assert!(p.batches.iter().all(|b| b.len() == 1), "{p:?}");
    }

    #[test]
    fn summaries_keep_texts_only_for_once() {
        let mut daemon = RunSummary::new(false);
        let mut once = RunSummary::new(true);
        for i in 0..(MAX_SUMMARY_ERRORS + 10) {
            daemon.error(format!("e{i}"));
            once.error(format!("e{i}"));
        }
        assert!(daemon.errors.is_empty());
        assert_eq!(daemon.failures, (MAX_SUMMARY_ERRORS + 10) as u64);
        assert_eq!(once.errors.len(), MAX_SUMMARY_ERRORS);
        assert!(once.to_string().contains("... and 10 more"));
    }

    #[test]
    fn summaries_count_in_words() {
        let mut s = RunSummary::new(true);
        s.fetched = 1;
        s.archived = 1;
        s.reports = 1;
        s.records = 2;
        s.error("mail 7: not a report".into());
        assert!(
            s.to_string().starts_with(
                "run: 1 message fetched, 1 archived, 0 quarantined; 1 report written (2 records), 0 duplicates; 1 error\n"
            ),
            "{s}"
        );
    }

    #[test]
    fn memory_is_pruned_to_the_inbox() {
        let mut m = Memory {
            uid_validity: 7,
            ..Memory::default()
        };
        m.forgiven.insert(1, 1);
        m.last_failure.insert(2, (FailureKind::Panic, "x".into()));
        m.forgiven.insert(3, 1);
        m.keep_only(7, &[3]);
        assert_eq!(m.forgiven.len(), 1);
        assert!(m.last_failure.is_empty());
        m.keep_only(8, &[3]);
        assert!(m.forgiven.is_empty());
    }

    #[test]
    fn the_source_reads_only_the_head_of_a_mail() {
        let mut raw = b"Message-ID: <a@b>\r\n".to_vec();
        raw.extend(b"X-H: y\r\n".repeat(1_000_000));
        let m = FetchedMessage {
            uid: 9,
            size: raw.len() as u64,
            raw: raw.into(),
            too_large: false,
        };
        assert_eq!(
            message_source("u@h/INBOX", 1, &m),
            "u@h/INBOX uid 9 (uidvalidity 1) <a@b>"
        );
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
