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
use crate::input::{self, Flow, InputError, ReportSink};
use crate::report::ReportReader;
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
            "import: {} files, {} reports imported ({} records, {} messages), {} duplicates skipped, {} failed",
            self.files,
            self.reports,
            self.records,
            self.messages,
            self.duplicates,
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

/// Imports every report under `paths` into the store. `progress` shows a bar (on a
/// terminal).
pub fn import_paths(
    runtime: &tokio::runtime::Handle,
    store: &Store,
    paths: &[PathBuf],
    limits: &Limits,
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
    let mut sink = ImportSink {
        runtime,
        store,
        writer: BatchWriter::new(store),
        summary: ImportSummary::default(),
        log: Vec::new(),
        current_file: String::new(),
    };
    for item in files {
        sink.summary.files += 1;
        let flow = match item {
            Ok(file) => {
                sink.current_file = file.display().to_string();
                input::read_one_file(&file, limits, &mut sink)
            }
            Err((shown, e)) => sink.failure(&shown, &InputError::Io(e)),
        };
        bar.inc(1);
        bar.set_message(format!(
            "{} reports, {} records, {} duplicates, {} failed",
            sink.summary.reports + sink.writer.pending() as u64,
            sink.summary.records,
            sink.summary.duplicates,
            sink.summary.failures.len()
        ));
        if flow == Flow::Stop {
            break;
        }
    }
    if sink.summary.stopped.is_none() {
        sink.publish();
    }
    sink.flush_log();
    bar.finish_and_clear();
    sink.summary
}

/// Feeds parsed reports into a [`BatchWriter`], blocking on the runtime for each call.
struct ImportSink<'a> {
    runtime: &'a tokio::runtime::Handle,
    store: &'a Store,
    writer: BatchWriter<()>,
    summary: ImportSummary,
    log: Vec<LogEntry>,
    current_file: String,
}

/// Log entries are written at most this many at a time (and at each publish).
const LOG_BATCH: usize = 1_000;

impl ImportSink<'_> {
    /// Publishes the current batch and records each report's outcome.
    fn publish(&mut self) -> Flow {
        let result = self.runtime.block_on(self.writer.publish());
        match result {
            Ok(outcomes) => {
                for (report, outcome) in outcomes {
                    self.log.push(outcome_entry(&report, &outcome));
                    match outcome {
                        ReportOutcome::Published => {
                            self.summary.reports += 1;
                            self.summary.records += report.records;
                            self.summary.messages += report.messages;
                        }
                        ReportOutcome::Duplicate => self.summary.duplicates += 1,
                    }
                }
                self.flush_log();
                Flow::Continue
            }
            Err(e) => self.batch_failed(e),
        }
    }

    /// A store error: transient ones (after their retries) stop the run; the others fail
    /// the batch's reports with the server's message, and the run goes on.
    fn batch_failed(&mut self, e: StoreError) -> Flow {
        let reason = e.to_string();
        tracing::error!(error = %reason, "ClickHouse write failed");
        if e.is_transient() || matches!(e, StoreError::Schema(_)) {
            self.summary.stopped = Some(reason);
            return Flow::Stop;
        }
        let failed = std::mem::replace(&mut self.writer, BatchWriter::new(self.store));
        drop(failed);
        self.summary.failures.push((
            format!("{} (its publish batch)", self.current_file),
            reason.clone(),
        ));
        self.log.push(LogEntry::failure(
            &self.current_file,
            "store_rejected",
            &reason,
        ));
        Flow::Continue
    }

    fn flush_log(&mut self) {
        if self.log.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.log);
        if let Err(e) = self
            .runtime
            .block_on(self.store.insert_rows("ingest_log", &entries))
        {
            // The outcomes are also in the summary printed at the end.
            tracing::error!(error = %e, entries = entries.len(), "cannot write ingest_log");
        }
    }

    fn read_report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        let identity = store::identity(reader.header()).map_err(store_input_error)?;
        let Some(ingest_id) = self.writer.begin_report(&identity) else {
            self.summary.duplicates += 1;
            self.log.push(LogEntry {
                outcome: "duplicate".into(),
                reason: "the same report appears earlier in this run".into(),
                ..identity_entry(source, &identity, Uuid::nil())
            });
            return Ok(Flow::Continue);
        };
        let shared = store::SharedReportFields::new(reader.header(), ingest_id)
            .map_err(store_input_error)?;
        let mut index: u32 = 0;
        while let Some(record) = reader.next_record()? {
            let full = self
                .writer
                .push_record(store::stored_record(&shared, record, index));
            index = index.saturating_add(1);
            if full {
                self.runtime
                    .block_on(self.writer.flush_rows())
                    .map_err(store_input_error)?;
            }
        }
        let after = store::identity(reader.header()).map_err(store_input_error)?;
        if after != identity {
            return Err(InputError::Report(crate::report::ReportError::BadMetadata(
                "<report_metadata> or <policy_published> came after the records".into(),
            )));
        }
        let pending = PendingReport {
            ingest_id,
            identity,
            source: source.to_owned(),
            records: reader.records_read(),
            messages: reader.messages_read(),
            tag: (),
        };
        self.writer
            .finish_report(reader.header(), pending)
            .map_err(store_input_error)?;
        if self.writer.is_full() {
            return Ok(self.publish());
        }
        Ok(Flow::Continue)
    }
}

impl ReportSink for ImportSink<'_> {
    fn report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        let result = self.read_report(source, reader);
        if result.is_err() {
            self.writer.abandon_report();
        }
        match result {
            Err(InputError::Sink {
                message,
                transient: true,
            }) => {
                self.summary.stopped = Some(message);
                Ok(Flow::Stop)
            }
            other => other,
        }
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        let reason = error.to_string();
        tracing::debug!(source, error = %reason, "input failed");
        self.log
            .push(LogEntry::failure(source, error.kind(), &reason));
        self.summary.failures.push((source.to_owned(), reason));
        if self.log.len() >= LOG_BATCH {
            self.flush_log();
        }
        Flow::Continue
    }
}

fn store_input_error(e: StoreError) -> InputError {
    InputError::Sink {
        transient: e.is_transient() || matches!(e, StoreError::Schema(_)),
        message: e.to_string(),
    }
}

fn identity_entry(source: &str, id: &store::ReportIdentity, ingest_id: Uuid) -> LogEntry {
    LogEntry {
        org_name: id.org_name.clone(),
        report_id: id.report_id.clone(),
        policy_domain: id.policy_domain.clone(),
        date_begin: id.date_begin,
        ingest_id,
        ..LogEntry::failure(source, "", "")
    }
}

fn outcome_entry<T>(report: &PendingReport<T>, outcome: &ReportOutcome) -> LogEntry {
    let (name, reason) = match outcome {
        ReportOutcome::Published => ("imported", ""),
        ReportOutcome::Duplicate => ("duplicate", "already stored"),
    };
    LogEntry {
        outcome: name.into(),
        reason: reason.into(),
        record_count: report.records,
        message_count: report.messages,
        ..identity_entry(&report.source, &report.identity, report.ingest_id)
    }
}
