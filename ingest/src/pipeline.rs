//! Pipeline: wires the stages. Here: files on disk -> [`input`] -> [`store`], for
//! `dmarc-ingest import`.
//!
//! The file walk and the parser run on the calling thread; ClickHouse calls run on the
//! tokio runtime passed in (staging inserts in the background while the next rows are
//! parsed). Every report ends as published, duplicate or failed, and each outcome is
//! written to `ingest_log`. A ClickHouse that stays unreachable after the retries stops
//! the run: nothing half-written is visible (see [`store`]), and re-running completes it.

use std::io::BufRead;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use crate::config::Limits;
use crate::failure::{truncate_reason, FailureKind, Retry};
use crate::input::{self, Flow, InputError, ReportSink};
use crate::report::ReportReader;
use crate::rows::{self, RecordRows, ReportIdentity};
use crate::store::{self, BatchWriter, LogEntry, PendingReport, ReportOutcome, Store, StoreError};

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub files: u64,
    /// Reports published now.
    pub reports: u64,
    pub records: u64,
    pub messages: u64,
    /// Reports skipped because they were already stored (or twice in this run).
    pub duplicates: u64,
    /// (source, reason) of each input that failed.
    pub failures: Vec<(String, String)>,
    /// Set when the run stopped early (ClickHouse unreachable): the reason.
    pub stopped: Option<String>,
}

impl ImportSummary {
    /// Whether anything failed (the exit code is then 1).
    pub fn failed(&self) -> bool {
        !self.failures.is_empty() || self.stopped.is_some()
    }
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "import: {}, {} imported ({}, {}), {} skipped, {} failed",
            count(self.files, "file"),
            count(self.reports, "report"),
            count(self.records, "record"),
            count(self.messages, "message"),
            count(self.duplicates, "duplicate"),
            self.failures.len()
        )?;
        for (source, reason) in &self.failures {
            writeln!(f, "  failed: {source}: {reason}")?;
        }
        if let Some(why) = &self.stopped {
            writeln!(f, "  stopped early: {why}")?;
        }
        Ok(())
    }
}

/// `n` and the noun, plural unless `n` is 1 ("1 report", "2 reports").
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// Imports every report under `paths` into the store. `progress` shows a bar (on a
/// terminal).
pub fn import_paths(
    runtime: &tokio::runtime::Handle,
    store: &Store,
    paths: &[PathBuf],
    limits: &Limits,
    accepted: Option<std::sync::Arc<crate::inventory::Accepted>>,
    progress: bool,
) -> ImportSummary {
    let files = input::list_files(paths);
    let bar = if progress {
        let bar = ProgressBar::new(files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} files {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut feeder = Feeder::new(runtime.clone(), store, ());
    feeder.accepted = accepted;
    let mut summary = ImportSummary::default();
    for item in files {
        summary.files += 1;
        let flow = match item {
            Ok(file) => {
                let shown = file.display().to_string();
                feeder.guarded(&shown, |feeder| input::read_one_file(&file, limits, feeder))
            }
            Err((shown, e)) => feeder.failure(&shown, &InputError::Io(e)),
        };
        if feeder.writer.is_full() {
            feeder.start_publish();
        }
        feeder.drain_into(&mut summary);
        bar.inc(1);
        bar.set_message(format!(
            "{} reports, {} records, {} duplicates, {} failed",
            summary.reports,
            summary.records,
            summary.duplicates,
            summary.failures.len()
        ));
        if flow == Flow::Stop || feeder.stopped.is_some() {
            break;
        }
    }
    if feeder.stopped.is_none() {
        feeder.publish();
    }
    feeder.flush_log();
    feeder.drain_into(&mut summary);
    summary.stopped = feeder.stopped.take();
    bar.finish_and_clear();
    summary
}

/// What became of one report or input, for the caller that owns the tag (a file, an
/// IMAP message).
#[derive(Debug, Clone)]
pub enum Event<T> {
    /// A report was published now.
    Published { tag: T, records: u64, messages: u64 },
    /// A report was already stored (or twice in this batch).
    Duplicate { tag: T },
    /// An input failed; `kind` decides what becomes of it (see [`FailureKind`]). The
    /// reason is cut to about a kilobyte.
    Failed {
        tag: T,
        source: String,
        reason: String,
        kind: FailureKind,
    },
}

/// Feeds parsed reports into a [`BatchWriter`], blocking on the runtime for each store
/// call (it runs on a thread of its own, never on a runtime worker). Every report and
/// failure becomes an [`Event`] tagged with the current tag, and an `ingest_log` row.
pub struct Feeder<T: Clone + Send + 'static> {
    runtime: tokio::runtime::Handle,
    store: Store,
    pub writer: BatchWriter<T>,
    /// The input being read (reports and failures are tagged with it).
    pub tag: T,
    events: Vec<Event<T>>,
    log: Vec<LogEntry>,
    /// Set when the store stays unreachable: the reason. Nothing more is written.
    pub stopped: Option<String>,
    /// The previous batch, being published while the next one is read.
    publishing: Option<PublishTask<T>>,
    /// Under `[domains] accept = "inventory"`: the domains reports are taken for.
    pub accepted: Option<std::sync::Arc<crate::inventory::Accepted>>,
}

/// A batch being published in the background: its writer comes back with the outcome
/// (or the panic's message), so that no report of it can go unaccounted for.
type PublishTask<T> = tokio::task::JoinHandle<(BatchWriter<T>, PublishOutcome<T>)>;
type PublishOutcome<T> = Result<Vec<(PendingReport<T>, ReportOutcome)>, StoreError>;

/// Log entries are written at most this many at a time (and at each publish).
const LOG_BATCH: usize = 1_000;

impl<T: Clone + Send + 'static> Feeder<T> {
    pub fn new(runtime: tokio::runtime::Handle, store: &Store, tag: T) -> Self {
        Feeder {
            runtime,
            store: store.clone(),
            writer: BatchWriter::new(store),
            tag,
            events: Vec::new(),
            log: Vec::new(),
            stopped: None,
            publishing: None,
            accepted: None,
        }
    }

    /// Takes the events so far.
    pub fn take_events(&mut self) -> Vec<Event<T>> {
        std::mem::take(&mut self.events)
    }

    fn drain_into(&mut self, summary: &mut ImportSummary) {
        for event in self.take_events() {
            match event {
                Event::Published {
                    records, messages, ..
                } => {
                    summary.reports += 1;
                    summary.records += records;
                    summary.messages += messages;
                }
                Event::Duplicate { .. } => summary.duplicates += 1,
                Event::Failed { source, reason, .. } => summary.failures.push((source, reason)),
            }
        }
    }

    /// Publishes the current batch and waits for it (and for any batch publishing in the
    /// background); each report becomes an event. A store failure fails the batch's
    /// reports (transiently when the store is unreachable, which also sets `stopped`).
    pub fn publish(&mut self) {
        self.start_publish();
        self.finish_publish();
    }

    /// Starts publishing the current batch in the background, once the batch before it
    /// is settled (publishes stay in order, one at a time), and starts a new batch: the
    /// next inputs are read and staged while ClickHouse publishes this one.
    pub fn start_publish(&mut self) {
        self.finish_publish();
        if self.stopped.is_some() {
            return;
        }
        let mut writer = std::mem::replace(&mut self.writer, BatchWriter::new(&self.store));
        self.publishing = Some(self.runtime.spawn(async move {
            use futures::FutureExt;
            let outcome = std::panic::AssertUnwindSafe(writer.publish())
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| {
                    Err(StoreError::Rejected(format!(
                        "the publish panicked: {}",
                        panic_message(payload.as_ref())
                    )))
                });
            (writer, outcome)
        }));
    }

    /// Waits for the batch publishing in the background, if any; its reports become
    /// events.
    pub fn finish_publish(&mut self) {
        let Some(task) = self.publishing.take() else {
            return;
        };
        match self.runtime.block_on(task) {
            Ok((_, Ok(outcomes))) => {
                for (report, outcome) in outcomes {
                    self.log.push(outcome_entry(&report, &outcome));
                    self.events.push(match outcome {
                        ReportOutcome::Published => Event::Published {
                            tag: report.tag,
                            records: report.records,
                            messages: report.messages,
                        },
                        ReportOutcome::Duplicate => Event::Duplicate { tag: report.tag },
                        ReportOutcome::Incomplete => Event::Failed {
                            tag: report.tag,
                            source: report.source,
                            reason: INCOMPLETE.into(),
                            kind: FailureKind::StoreRejected,
                        },
                    });
                }
                self.flush_log();
            }
            Ok((writer, Err(e))) => self.batch_failed(writer.into_pending(), e),
            // Only if the runtime is shutting down (a panic is caught in the task): the
            // batch's reports are not known here; the caller's inputs stay unsettled.
            Err(e) => {
                self.stopped = Some(format!("the publish task ended: {e}"));
            }
        }
    }

    /// The batch could not be written: its reports fail with the reason.
    fn batch_failed(&mut self, reports: Vec<PendingReport<T>>, e: StoreError) {
        let reason = truncate_reason(&e.to_string()).into_owned();
        let kind = e.kind();
        tracing::error!(error = %reason, %kind, reports = reports.len(), "ClickHouse write failed");
        if kind.stops_the_batch() {
            self.stopped = Some(reason.clone());
        }
        for report in reports {
            if kind.retry() != Retry::Later {
                self.log
                    .push(LogEntry::failure(&report.source, kind.as_str(), &reason));
            }
            self.events.push(Event::Failed {
                tag: report.tag,
                source: report.source,
                reason: reason.clone(),
                kind,
            });
        }
    }

    /// Runs one input's stages with panics caught: a panic fails the input (kind
    /// `panic`, with its message), drops the report being read, and the run goes on.
    pub fn guarded(&mut self, source: &str, stages: impl FnOnce(&mut Self) -> Flow) -> Flow {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stages(&mut *self)));
        match caught {
            Ok(flow) => flow,
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                tracing::error!(source, panic = %message, "a stage panicked on this input");
                self.writer.abandon_report();
                self.failure(
                    source,
                    &InputError::Sink {
                        message: format!("a processing stage panicked: {message}"),
                        kind: FailureKind::Panic,
                    },
                )
            }
        }
    }

    /// Writes the buffered `ingest_log` rows (best effort: outcomes are also events).
    pub fn flush_log(&mut self) {
        if self.log.is_empty() || self.stopped.is_some() {
            return;
        }
        let entries = std::mem::take(&mut self.log);
        if let Err(e) = self
            .runtime
            .block_on(self.store.insert_rows("ingest_log", &entries))
        {
            tracing::error!(error = %e, entries = entries.len(), "cannot write ingest_log");
        }
    }

    fn read_report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        if self.stopped.is_some() {
            return Ok(Flow::Stop);
        }
        let identity = rows::identity(reader.header())?;
        test_fault(&identity.report_id);
        check_accepted(self.accepted.as_deref(), &identity)?;
        let Some(ingest_id) = self.admit(source, &identity) else {
            return Ok(Flow::Continue);
        };
        let mut rows = RecordRows::new(source).ingest(ingest_id, store::now());
        while let Some(record) = reader.next_record()? {
            self.push_row(rows.row(reader.header(), record)?)?;
        }
        let (counts, staged) = finished_report(reader, &identity, source, ingest_id)?;
        self.finish(source, identity, counts, staged);
        Ok(Flow::Continue)
    }

    /// Stages a report read whole ahead of time (see [`crate::ahead`]), as
    /// [`Feeder::read_report`] stages one it reads.
    fn stage_parsed(&mut self, source: &str, report: ParsedReport) -> Result<Flow, InputError> {
        if self.stopped.is_some() {
            return Ok(Flow::Stop);
        }
        let ParsedReport {
            identity,
            rows,
            counts,
            mut staged,
        } = report;
        let Some(ingest_id) = self.admit(source, &identity) else {
            return Ok(Flow::Continue);
        };
        for mut row in rows {
            row.ingest_id = ingest_id;
            self.push_row(row)?;
        }
        staged.ingest_id = ingest_id;
        self.finish(source, identity, counts, staged);
        Ok(Flow::Continue)
    }

    /// Opens the report `identity` in the batch: its import attempt's id, or `None` when
    /// the same report came earlier in this batch (recorded as a duplicate).
    fn admit(&mut self, source: &str, identity: &ReportIdentity) -> Option<Uuid> {
        let ingest_id = self.writer.begin_report(identity);
        if ingest_id.is_none() {
            self.events.push(Event::Duplicate {
                tag: self.tag.clone(),
            });
            self.log.push(LogEntry {
                outcome: "duplicate".into(),
                reason: "the same report appears earlier in this batch".into(),
                ..identity_entry(source, identity, Uuid::nil())
            });
        }
        ingest_id
    }

    /// Buffers one row of the open report (staging the buffer when it is full).
    fn push_row(&mut self, row: rows::RecordRow) -> Result<(), InputError> {
        if self.writer.push_record(row) {
            self.runtime
                .block_on(self.writer.flush_rows())
                .map_err(store_input_error)?;
        }
        Ok(())
    }

    /// Closes the open report: it is published with the batch.
    fn finish(
        &mut self,
        source: &str,
        identity: ReportIdentity,
        counts: (u64, u64),
        staged: rows::StagedReport,
    ) {
        let pending = PendingReport {
            ingest_id: staged.ingest_id,
            identity,
            source: source.to_owned(),
            records: counts.0,
            messages: counts.1,
            tag: self.tag.clone(),
        };
        self.writer.finish_report(staged, pending);
    }

    /// A report's outcome as the sink gives it: a failed report's rows are dropped, and a
    /// store that stays unreachable stops the run (recorded as a failure of `source`).
    fn settle_report(
        &mut self,
        source: &str,
        result: Result<Flow, InputError>,
    ) -> Result<Flow, InputError> {
        if result.is_err() {
            self.writer.abandon_report();
        }
        match result {
            Err(InputError::Sink { message, kind }) if kind.stops_the_batch() => {
                let reason = truncate_reason(&message).into_owned();
                self.stopped = Some(reason.clone());
                self.events.push(Event::Failed {
                    tag: self.tag.clone(),
                    source: source.to_owned(),
                    reason,
                    kind,
                });
                Ok(Flow::Stop)
            }
            other => other,
        }
    }

    /// Stages one input read whole ahead of time, in order: its reports and failures,
    /// as [`input::read_message`] would have handed them to this sink.
    pub fn replay(&mut self, parsed: Vec<Parsed>) -> Flow {
        for unit in parsed {
            let flow = match unit {
                Parsed::Report { source, report } => {
                    let result = self.stage_parsed(&source, *report);
                    match self.settle_report(&source, result) {
                        Ok(flow) => flow,
                        Err(e) => self.failure(&source, &e),
                    }
                }
                Parsed::Failure { source, error } => self.failure(&source, &error),
            };
            if flow == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }
}

/// One unit of an input read whole ahead of time (see [`crate::ahead`]).
#[derive(Debug)]
pub enum Parsed {
    Report {
        source: String,
        report: Box<ParsedReport>,
    },
    /// The unit failed: the error as the sink would have been told it (its text and
    /// kind).
    Failure { source: String, error: InputError },
}

/// A report read whole: its rows carry a nil import attempt id until it is staged.
#[derive(Debug)]
pub struct ParsedReport {
    pub identity: ReportIdentity,
    pub rows: Vec<rows::RecordRow>,
    /// (records, messages) read.
    pub counts: (u64, u64),
    pub staged: rows::StagedReport,
}

/// Refuses a report for a domain outside the inventory (`accepted`, under
/// `[domains] accept = "inventory"`).
pub fn check_accepted(
    accepted: Option<&crate::inventory::Accepted>,
    identity: &ReportIdentity,
) -> Result<(), InputError> {
    match accepted {
        Some(accepted) if !accepted.accepts(&identity.policy_domain) => Err(InputError::Sink {
            message: format!(
                "the report is for {}, which is not in the domain inventory \
                 ([domains] accept = \"inventory\"); run `dmarc-ingest domains sync` \
                 after adding it",
                identity.policy_domain
            ),
            kind: FailureKind::UnknownDomain,
        }),
        _ => Ok(()),
    }
}

/// After the last record of a report opened as `identity`: its (records, messages)
/// counts and its staged row (import attempt `ingest_id`). The metadata must not have
/// changed after the records.
pub fn finished_report(
    reader: &ReportReader<&mut dyn BufRead>,
    identity: &ReportIdentity,
    source: &str,
    ingest_id: Uuid,
) -> Result<((u64, u64), rows::StagedReport), InputError> {
    let after = rows::identity(reader.header())?;
    if after != *identity {
        return Err(InputError::Report(crate::report::ReportError::BadMetadata(
            "<report_metadata> or <policy_published> came after the records".into(),
        )));
    }
    let counts = (reader.records_read(), reader.messages_read());
    let staged = rows::staged_report(reader.header(), counts, source, ingest_id, store::now())?;
    Ok((counts, staged))
}

impl<T: Clone + Send + 'static> ReportSink for Feeder<T> {
    fn report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        let result = self.read_report(source, reader);
        self.settle_report(source, result)
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        let reason = truncate_reason(&error.to_string()).into_owned();
        let kind = error.kind();
        tracing::debug!(source, error = %reason, %kind, "input failed");
        if kind.retry() != Retry::Later {
            self.log
                .push(LogEntry::failure(source, kind.as_str(), &reason));
        }
        self.events.push(Event::Failed {
            tag: self.tag.clone(),
            source: source.to_owned(),
            reason,
            kind,
        });
        if self.log.len() >= LOG_BATCH {
            self.flush_log();
        }
        Flow::Continue
    }
}

fn store_input_error(e: StoreError) -> InputError {
    InputError::Sink {
        kind: e.kind(),
        message: e.to_string(),
    }
}

/// Test-only faults, in debug builds only (the integration tests drive the debug
/// binary): a report whose id is `DMARC_TEST_PANIC_REPORT_ID` panics its stage; one whose
/// id is `DMARC_TEST_ABORT_REPORT_ID` aborts the process, as an out-of-memory kill would.
pub(crate) fn test_fault(report_id: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let named = |var: &str| std::env::var(var).is_ok_and(|v| v == report_id);
    if named("DMARC_TEST_PANIC_REPORT_ID") {
        panic!("test fault: a panic on report {report_id}");
    }
    if named("DMARC_TEST_ABORT_REPORT_ID") {
        eprintln!("test fault: aborting on report {report_id}");
        std::process::abort();
    }
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

fn identity_entry(source: &str, id: &ReportIdentity, ingest_id: Uuid) -> LogEntry {
    LogEntry {
        org_name: id.org_name.clone(),
        report_id: id.report_id.clone(),
        policy_domain: id.policy_domain.clone(),
        date_begin: id.date_begin,
        ingest_id,
        ..LogEntry::failure(source, "", "")
    }
}

/// Why a report was not published although its batch was.
const INCOMPLETE: &str =
    "not published: ClickHouse did not hold every one of its staged rows; it will be tried again";

fn outcome_entry<T>(report: &PendingReport<T>, outcome: &ReportOutcome) -> LogEntry {
    let (name, reason) = match outcome {
        ReportOutcome::Published => ("imported", ""),
        ReportOutcome::Duplicate => ("duplicate", "already stored"),
        ReportOutcome::Incomplete => ("failed", INCOMPLETE),
    };
    let reason_kind = match outcome {
        ReportOutcome::Incomplete => FailureKind::StoreRejected.as_str(),
        _ => "",
    };
    LogEntry {
        outcome: name.into(),
        reason: reason.into(),
        reason_kind: reason_kind.into(),
        record_count: report.records,
        message_count: report.messages,
        ..identity_entry(&report.source, &report.identity, report.ingest_id)
    }
}
