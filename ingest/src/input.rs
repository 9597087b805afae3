//! Input: paths on disk (report files, `.eml` messages, mbox files, Maildir and other
//! directories, recursively) -> every report in them, handed one at a time, as an open
//! [`ReportReader`], to a [`ReportSink`]; every unit that fails is handed to the sink
//! with its reason, and the walk goes on.
//!
//! This is the file-side driver shared by `parse` and `import`; the IMAP side feeds
//! [`read_message`] directly. A file's kind is decided by its content (see
//! [`attachment::sniff`]), its name only breaks ties.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::attachment::{self, AttachmentError, Container, DecompressionBudget, XmlStream};
use crate::config::Limits;
use crate::failure::FailureKind;
use crate::message::{self, MessageError};
use crate::report::{ReportError, ReportReader};

/// Why one input unit (a file, a message, an attachment, a report) failed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Attachment(#[from] AttachmentError),
    #[error("{0}")]
    Report(#[from] ReportError),
    #[error("{0}")]
    Message(#[from] MessageError),
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The sink (output, database) failed, for the reason `kind`.
    #[error("{message}")]
    Sink { message: String, kind: FailureKind },
}

impl InputError {
    /// The failure's class: what happens to the input next, and its name in metrics and
    /// the failures table (see [`FailureKind`]).
    pub fn kind(&self) -> FailureKind {
        match self {
            InputError::Attachment(e) => e.kind(),
            InputError::Report(e) => e.kind(),
            InputError::Message(e) => e.kind(),
            InputError::Io(_) => FailureKind::Io,
            InputError::Sink { kind, .. } => *kind,
        }
    }
}

/// What a sink decides after a report: go on, or stop the whole run (a database that
/// stays down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Receives the reports (and the failures) found in the inputs.
pub trait ReportSink {
    /// Consumes one report: its records are read from `reader`. An error marks the
    /// report failed (it is then passed to [`ReportSink::failure`] by the caller).
    fn report(
        &mut self,
        source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError>;

    /// One unit failed. Returns whether to go on.
    fn failure(&mut self, source: &str, error: &InputError) -> Flow;
}

/// Reads every path, walking directories, feeding `sink`. Returns `Flow::Stop` when the
/// sink stopped the run early.
pub fn read_paths(paths: &[PathBuf], limits: &Limits, sink: &mut dyn ReportSink) -> Flow {
    for item in list_files(paths) {
        let flow = match item {
            Ok(file) => read_one_file(&file, limits, sink),
            Err((shown, e)) => sink.failure(&shown, &InputError::Io(e)),
        };
        if flow == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// Reads one file (a report, a message, an mbox) into `sink`.
pub fn read_one_file(path: &Path, limits: &Limits, sink: &mut dyn ReportSink) -> Flow {
    let shown = path.display().to_string();
    match read_file(path, &shown, limits, sink) {
        Ok(flow) => flow,
        Err(e) => sink.failure(&shown, &e),
    }
}

/// Directory nesting followed at most (Maildir++ trees are 3 deep).
const MAX_DIRECTORY_DEPTH: usize = 32;

/// The files under `paths` in walk order (directories walked recursively, sorted), or
/// the path and error of what could not be listed.
pub fn list_files(paths: &[PathBuf]) -> Vec<Result<PathBuf, (String, std::io::Error)>> {
    let mut out = Vec::new();
    for path in paths {
        walk(path, 0, &mut out);
    }
    out
}

fn walk(path: &Path, depth: usize, out: &mut Vec<Result<PathBuf, (String, std::io::Error)>>) {
    let shown = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return out.push(Err((shown, e))),
    };
    if !meta.is_dir() {
        return out.push(Ok(path.to_owned()));
    }
    if depth >= MAX_DIRECTORY_DEPTH {
        return out.push(Err((
            shown,
            std::io::Error::other("directories nested too deep"),
        )));
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => return out.push(Err((shown, e))),
    };
    entries.sort();
    for entry in entries {
        if !is_mail_store_metadata(&entry) {
            walk(&entry, depth + 1, out);
        }
    }
}

/// Files a directory walk passes over (a file named on the command line is always read):
/// hidden files, Maildir's `tmp/`, the index files of dovecot and courier that sit beside
/// the mail in a Maildir, and documentation and expected-output files beside fixtures.
fn is_mail_store_metadata(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    const NOT_MAIL: &[&str] = &[".md", ".txt", ".py", ".sh", ".tsv", ".json", ".jsonl"];
    let lower = name.to_ascii_lowercase();
    NOT_MAIL.iter().any(|ext| lower.ends_with(ext))
        || lower == "license"
        || name.starts_with('.')
        || name.starts_with("dovecot")
        || name.starts_with("courier")
        || name == "maildirfolder"
        || name == "subscriptions"
        || (name == "tmp" && path.parent().is_some_and(|p| p.join("cur").is_dir()))
}

fn read_file(
    path: &Path,
    shown: &str,
    limits: &Limits,
    sink: &mut dyn ReportSink,
) -> Result<Flow, InputError> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 512];
    let n = read_up_to(&mut file, &mut head)?;
    file.rewind()?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match attachment::sniff(&head[..n], name.as_deref()) {
        Container::Xml | Container::Gzip | Container::Zip => {
            let budget = DecompressionBudget::new(limits.max_decompressed_bytes);
            Ok(read_container(
                file,
                name.as_deref(),
                shown,
                limits,
                &budget,
                sink,
            ))
        }
        Container::Message => {
            let mut raw = Vec::new();
            file.take(limits.max_message_bytes + 1)
                .read_to_end(&mut raw)?;
            Ok(read_message(&raw, shown, limits, sink))
        }
        Container::Mbox => {
            let mut flow = Flow::Continue;
            message::split_mbox(BufReader::new(file), limits, |index, raw| {
                if flow == Flow::Stop {
                    return;
                }
                let source = format!("{shown} [message {index}]");
                flow = match raw {
                    Ok(raw) => read_message(&raw, &source, limits, sink),
                    Err(e) => sink.failure(&source, &e.into()),
                };
            })?;
            Ok(flow)
        }
        Container::Unknown if n == 0 => Err(ReportError::Empty.into()),
        Container::Unknown => Err(AttachmentError::Unrecognised(
            "neither XML, gzip, zip, a mail message nor an mbox file".into(),
        )
        .into()),
    }
}

fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads every report of one raw message (a mail from IMAP, an `.eml`, an mbox entry).
/// A message with no report, or whose every report failed, has its failures passed to
/// the sink; returns the sink's decision. All the message's attachments share one
/// decompression budget.
pub fn read_message(raw: &[u8], source: &str, limits: &Limits, sink: &mut dyn ReportSink) -> Flow {
    let attachments = match message::report_attachments(raw, limits) {
        Ok(a) => a,
        Err(e) => return sink.failure(source, &e.into()),
    };
    let budget = DecompressionBudget::new(limits.max_decompressed_bytes);
    for a in attachments {
        let source = format!("{source}: {}", a.label());
        let input = std::io::Cursor::new(a.data);
        if read_container(input, a.name.as_deref(), &source, limits, &budget, sink) == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// Reads every report of one container (XML, gzip, zip) and hands each to the sink;
/// what is decompressed draws on `budget`.
pub fn read_container<R: Read + Seek>(
    input: R,
    name: Option<&str>,
    source: &str,
    limits: &Limits,
    budget: &DecompressionBudget,
    sink: &mut dyn ReportSink,
) -> Flow {
    let mut flow = Flow::Continue;
    let walked = attachment::for_each_xml(input, name, limits, budget, |stream: XmlStream<'_>| {
        let source = match &stream.entry {
            Some(entry) => format!("{source}: {entry}"),
            None => source.to_owned(),
        };
        flow = read_report(stream.reader, &source, limits, sink);
        if flow == Flow::Stop {
            // Stop walking the container; not an error of the container.
            return Err(InputError::Sink {
                message: "stopped".into(),
                kind: FailureKind::Output,
            });
        }
        Ok(())
    });
    match walked {
        Ok(_) => flow,
        Err(_) if flow == Flow::Stop => Flow::Stop,
        Err(e) => sink.failure(source, &e),
    }
}

fn read_report(
    reader: &mut dyn BufRead,
    source: &str,
    limits: &Limits,
    sink: &mut dyn ReportSink,
) -> Flow {
    let result = ReportReader::open(reader, limits)
        .map_err(InputError::from)
        .and_then(|mut report| sink.report(source, &mut report));
    match result {
        Ok(flow) => flow,
        Err(e) => sink.failure(source, &e),
    }
}
