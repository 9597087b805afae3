//! Fuzz harnesses of dmarc-ingest's parsing stages: arbitrary bytes -> the real stage,
//! with small limits so that every cap is reachable, then invariants checked. A broken
//! invariant panics (libFuzzer saves the input as a crash); so does a Rust allocation
//! past [`heap::HARD_CAP`] (the allocator refuses it and the process aborts).
//!
//! - [`report`]: `ReportReader::open` + `next_record` (and the row encodings) over the
//!   bytes as XML, read whole and again in small uneven reads: both must agree.
//! - [`container`]: `attachment::for_each_xml` over the bytes as a file (XML, gzip, zip
//!   in every method), each stream read by the report reader and then drained.
//! - [`message`]: `message::report_attachments` and `input::read_message` over the bytes
//!   as one raw mail, on a thread with the stack the daemon's blocking threads have.
//!
//! Invariants common to all: no panic; no failure of in-memory input is transient (the
//! daemon would retry it forever); the Rust heap held while one input is read stays under
//! a budget derived from the limits; the process's peak RSS stays under [`RSS_BUDGET`].

use std::io::{BufRead, BufReader, Cursor, Read};

use dmarc_ingest::attachment::{self, DecompressionBudget, XmlStream};
use dmarc_ingest::config::Limits;
use dmarc_ingest::failure::FailureKind;
use dmarc_ingest::input::{self, Flow, InputError, ReportSink};
use dmarc_ingest::message::{self, MessageError};
use dmarc_ingest::report::{Record, ReportError, ReportHeader, ReportReader};
use dmarc_ingest::rows::{self, Format, RowWriter};

pub mod heap;

/// The limits every target reads with: small, so that each cap is reached by inputs of a
/// few KiB (libFuzzer's `-max_len` is 64 KiB in `run.sh`).
pub fn limits() -> Limits {
    Limits {
        max_decompressed_bytes: 256 << 10,
        max_zip_entries: 8,
        max_xml_depth: 16,
        max_records_per_report: 16,
        max_attachments_per_message: 4,
        max_message_bytes: 48 << 10,
        max_mime_parts: 64,
        max_token_bytes: 1 << 10,
        max_record_bytes: 4 << 10,
    }
}

/// Peak RSS of the whole fuzzing process allowed (libFuzzer and its corpus included).
/// Checked after every input, from the kernel's high-water mark, so that memory the Rust
/// allocator does not see (zstd's C decoder) is bounded too.
pub const RSS_BUDGET: u64 = 768 << 20;

/// Stack of tokio's blocking threads (its default), where the daemon reads messages.
pub const DAEMON_STACK: usize = 2 << 20;

/// The Rust heap one report reader may hold at its peak, with `limits`: the event buffer
/// and the current value (one token each), a kept `<extension>`, the header's fields
/// (one token each, its error lines and extensions within `max_record_bytes`), the
/// record being built and the one held back (`max_record_bytes` each), the problems list
/// (32 short lines), and the reader's fixed buffers.
pub fn report_heap_budget(limits: &Limits) -> usize {
    let token = limits.max_token_bytes;
    let record = limits.max_record_bytes as usize;
    64 * 1024 + 24 * token + 4 * record + 32 * 512
}

/// Checks the process's peak RSS against [`RSS_BUDGET`].
pub fn check_rss() {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let peak = usage.ru_maxrss as u64 * 1024;
    assert!(
        peak <= RSS_BUDGET,
        "peak RSS {} MiB is over the budget of {} MiB",
        peak >> 20,
        RSS_BUDGET >> 20
    );
}

fn assert_not_transient(kind: FailureKind, what: &dyn std::fmt::Display) {
    assert!(
        !kind.is_transient(),
        "in-memory input failed with a transient kind {kind:?} (it would be retried forever): {what}"
    );
}

/// What reading one report gave: its records, its header when it ended well, its error.
#[derive(Debug)]
pub struct ReportOutcome {
    pub records: Vec<Record>,
    pub header: Option<ReportHeader>,
    pub messages: u64,
    pub error: Option<ReportError>,
}

/// Reads one report to its end (or first error), as every sink does.
pub fn read_report<R: BufRead>(input: R, limits: &Limits) -> ReportOutcome {
    let mut out = ReportOutcome {
        records: Vec::new(),
        header: None,
        messages: 0,
        error: None,
    };
    let mut reader = match ReportReader::open(input, limits) {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    check_identity(reader.header());
    loop {
        match reader.next_record() {
            Ok(Some(record)) => {
                out.records.push(record);
                assert!(
                    out.records.len() as u64 <= limits.max_records_per_report,
                    "{} records yielded, over the limit of {}",
                    out.records.len(),
                    limits.max_records_per_report
                );
            }
            Ok(None) => break,
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    assert_eq!(reader.records_read(), out.records.len() as u64);
    out.messages = reader.messages_read();
    if out.error.is_none() {
        out.header = Some(reader.into_header());
    }
    out
}

/// An opened report names its reporter, id, domain and dates (the identity rule).
fn check_identity(h: &ReportHeader) {
    assert!(
        !(h.org_name.is_empty() && h.email.is_empty()),
        "opened without a reporter"
    );
    assert!(!h.report_id.is_empty(), "opened without a report_id");
    assert!(!h.policy.domain.is_empty(), "opened without a domain");
    for date in [h.date_begin, h.date_end] {
        assert!(u32::try_from(date).is_ok(), "date {date} outside 1970-2106");
    }
}

/// Bytes of text one record holds.
fn record_text_bytes(r: &Record) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let mut n = r.source_ip.len() + r.header_from.len() + opt(&r.envelope_from);
    n += opt(&r.envelope_to);
    for k in [&r.disposition, &r.policy_dkim, &r.policy_spf]
        .into_iter()
        .flatten()
    {
        n += k.len();
    }
    for reason in &r.reasons {
        n += reason.kind.len() + opt(&reason.comment);
    }
    for d in &r.dkim {
        n += d.domain.len() + opt(&d.selector) + d.result.len() + opt(&d.human_result);
    }
    for s in &r.spf {
        n += s.domain.len() + s.scope.as_ref().map_or(0, |k| k.len());
        n += s.result.len() + opt(&s.human_result);
    }
    n + r.extensions.iter().map(String::len).sum::<usize>()
}

/// The invariants of one report's outcome under `limits`.
fn check_report_outcome(out: &ReportOutcome, limits: &Limits) {
    let token = limits.max_token_bytes;
    let mut messages = 0u64;
    for (i, r) in out.records.iter().enumerate() {
        // A normalised source IP may be a little longer than the text it came from.
        let kept = record_text_bytes(r);
        assert!(
            kept as u64 <= limits.max_record_bytes + 64,
            "record {i} holds {kept} bytes of text, over max_record_bytes {}",
            limits.max_record_bytes
        );
        for ext in &r.extensions {
            assert!(
                ext.len() <= token,
                "record {i}: a kept <extension> of {} bytes, over max_token_bytes {token}",
                ext.len()
            );
        }
        messages = messages.saturating_add(r.count);
    }
    assert_eq!(
        out.messages, messages,
        "messages_read is not the sum of <count>"
    );
    if let Some(e) = &out.error {
        assert_not_transient(e.kind(), e);
    }
    if let Some(h) = &out.header {
        for (what, value) in [
            ("org_name", &h.org_name),
            ("email", &h.email),
            ("report_id", &h.report_id),
            ("domain", &h.policy.domain),
        ] {
            assert!(
                value.len() <= token,
                "<{what}> of {} bytes, over max_token_bytes {token}",
                value.len()
            );
        }
        let lists: usize = h.errors.iter().chain(&h.extensions).map(String::len).sum();
        assert!(
            lists as u64 <= limits.max_record_bytes,
            "the report's errors and extensions hold {lists} bytes, over max_record_bytes"
        );
        for ext in &h.extensions {
            assert!(
                ext.len() <= token,
                "a kept report <extension> of {} bytes",
                ext.len()
            );
        }
        assert!(h.problems.len() <= 33, "{} problems kept", h.problems.len());
        // The rows of every record encode (JSON and CSV) without panicking.
        let mut json = RowWriter::new(Format::Jsonl, std::io::sink());
        let mut csv = RowWriter::new(Format::Csv, std::io::sink());
        let mut record_rows = rows::RecordRows::new("fuzz");
        for r in &out.records {
            // A date outside 1970-2106 repeated after the first record fails the rows.
            let Ok(row) = record_rows.row(h, r.clone()) else {
                continue;
            };
            json.write(&row).expect("writing to a sink");
            csv.write(&row).expect("writing to a sink");
        }
    }
}

/// Hands out a slice in reads of uneven small sizes, as a decompressor does.
struct Trickle<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes.get(self.turn % self.sizes.len().max(1));
        self.turn += 1;
        let want = 1 + usize::from(size.copied().unwrap_or(0)) % 97;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The `report` target: the bytes as one XML report.
pub fn report(data: &[u8]) {
    let limits = limits();
    let (whole, peak) = heap::measure(|| read_report(data, &limits));
    check_report_outcome(&whole, &limits);
    let budget = report_heap_budget(&limits);
    assert!(
        peak <= budget,
        "reading the report held {peak} bytes of heap, over its budget of {budget}"
    );

    // The same bytes in small uneven reads (as a gzip or zip stream hands them over) must
    // give the same verdict: one file, one verdict, however it is packed.
    let sizes = &data[..data.len().min(16)];
    let trickle = Trickle {
        data,
        sizes,
        turn: 0,
    };
    let capacity = 1 + usize::from(data.last().copied().unwrap_or(0)) % 61;
    let split = read_report(BufReader::with_capacity(capacity, trickle), &limits);
    let kind = |o: &ReportOutcome| o.error.as_ref().map(ReportError::kind);
    assert_eq!(
        (kind(&whole), &whole.records, &whole.header),
        (kind(&split), &split.records, &split.header),
        "read whole ({:?}) and in small reads ({:?}), the report reads differently",
        whole.error.as_ref().map(ToString::to_string),
        split.error.as_ref().map(ToString::to_string),
    );
    check_rss();
}

/// Counts the bytes a reader hands out.
struct Counted<'a> {
    inner: &'a mut dyn BufRead,
    bytes: u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl BufRead for Counted<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amount: usize) {
        self.bytes += amount as u64;
        self.inner.consume(amount);
    }
}

/// The largest fixed state of a decoder used here: LZMA's literal probabilities for the
/// largest `lc` and `lp` a header may declare (8 and 4: 0x300 << 12 two-byte counters,
/// 6 MiB; found by the `container` target). bzip2's, for 900 kB blocks, is 3.6 MB.
pub const LARGEST_DECODER_STATE: usize = (0x300 << 12) * 2;

/// The heap `for_each_xml` and one report reader may hold: the stream buffers and the
/// decoders' state (zip, gzip, bzip2, LZMA/XZ dictionaries up to what the input can
/// fill), the zip directory of an input this size, and one report reader.
pub fn container_heap_budget(limits: &Limits, input: usize) -> usize {
    1024 * 1024 + LARGEST_DECODER_STATE + 8 * input + report_heap_budget(limits)
}

/// The `container` target: the bytes as one file or attachment.
pub fn container(data: &[u8]) {
    let limits = limits();
    let budget = DecompressionBudget::new(limits.max_decompressed_bytes);
    let mut streams = 0usize;
    let mut delivered = 0u64;
    let (result, peak) = heap::measure(|| {
        attachment::for_each_xml(
            Cursor::new(data),
            None,
            &limits,
            &budget,
            |stream: XmlStream<'_>| {
                streams += 1;
                let mut counted = Counted {
                    inner: stream.reader,
                    bytes: 0,
                };
                let outcome = read_report(&mut counted, &limits);
                check_report_outcome(&outcome, &limits);
                // The rest of the stream, as far as the budget allows.
                let rest = std::io::copy(&mut counted, &mut std::io::sink());
                delivered += counted.bytes;
                rest.map(drop)
                    .map_err(|e| attachment::classify_io(e, stream.container))
            },
        )
    });
    let spent = limits.max_decompressed_bytes - budget.left();
    assert!(budget.left() <= limits.max_decompressed_bytes);
    assert!(
        delivered <= spent,
        "{delivered} bytes read from the streams, but only {spent} charged to the budget"
    );
    assert!(
        streams <= limits.max_zip_entries.max(1),
        "{streams} streams from one container"
    );
    match &result {
        Ok(n) => assert_eq!(*n, streams, "streams counted wrong"),
        Err(e) => assert_not_transient(e.kind(), e),
    }
    let heap_budget = container_heap_budget(&limits, data.len());
    assert!(
        peak <= heap_budget,
        "reading the container held {peak} bytes of heap, over its budget of {heap_budget}"
    );
    check_rss();
}

/// A sink that reads every report to its end and checks it.
struct CheckingSink<'l> {
    limits: &'l Limits,
    reports: usize,
    failures: usize,
}

impl ReportSink for CheckingSink<'_> {
    fn report(
        &mut self,
        _source: &str,
        reader: &mut ReportReader<&mut dyn BufRead>,
    ) -> Result<Flow, InputError> {
        self.reports += 1;
        check_identity(reader.header());
        let mut records = 0u64;
        while reader.next_record()?.is_some() {
            records += 1;
            assert!(records <= self.limits.max_records_per_report);
        }
        Ok(Flow::Continue)
    }

    fn failure(&mut self, source: &str, error: &InputError) -> Flow {
        self.failures += 1;
        assert_not_transient(error.kind(), &format!("{source}: {error}"));
        Flow::Continue
    }
}

/// Parts of a parsed MIME tree, the root excluded.
fn parts_below(mail: &mailparse::ParsedMail<'_>) -> usize {
    mail.subparts.iter().map(|p| 1 + parts_below(p)).sum()
}

/// The heap one message may hold: its decoded parts (`max_message_bytes`), the MIME
/// parser's tree (parts and header lines of an input this size), the attachments'
/// decompression and one report reader.
pub fn message_heap_budget(limits: &Limits, input: usize) -> usize {
    2 * limits.max_message_bytes as usize
        + 16 * input
        + limits.max_mime_parts * 1024
        + container_heap_budget(limits, input)
}

/// The `message` target: the bytes as one raw mail (from IMAP, an `.eml`, an mbox).
pub fn message(data: &[u8]) {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("message".into())
            .stack_size(DAEMON_STACK)
            .spawn_scoped(scope, || message_on_this_thread(data))
            .expect("spawning the harness thread")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
    check_rss();
}

fn message_on_this_thread(data: &[u8]) {
    let limits = limits();
    let (found, peak) = heap::measure(|| message::report_attachments(data, &limits));
    match &found {
        Ok(attachments) => {
            assert!(!attachments.is_empty(), "Ok with no attachment");
            assert!(attachments.len() <= limits.max_attachments_per_message);
            let decoded: usize = attachments.iter().map(|a| a.data.len()).sum();
            assert!(
                decoded as u64 <= limits.max_message_bytes,
                "{decoded} decoded bytes kept, over max_message_bytes"
            );
        }
        Err(e) => assert_not_transient(e.kind(), e),
    }
    // The pre-scan that bounds the parser must bound it: unless it refused the message,
    // the tree the parser builds has no more parts than the limit.
    let refused = matches!(
        found,
        Err(MessageError::TooLarge { .. }
            | MessageError::TooManyParts { .. }
            | MessageError::TooManyHeaderLines { .. })
    );
    if !refused {
        if let Ok(mail) = mailparse::parse_mail(data) {
            let parts = parts_below(&mail);
            assert!(
                parts <= limits.max_mime_parts,
                "the MIME parser built {parts} parts, over max_mime_parts {} (not refused: {:?})",
                limits.max_mime_parts,
                found.as_ref().map(Vec::len)
            );
        }
    }
    drop(found);

    let mut sink = CheckingSink {
        limits: &limits,
        reports: 0,
        failures: 0,
    };
    let (flow, peak_all) = heap::measure(|| input::read_message(data, "fuzz", &limits, &mut sink));
    assert_eq!(flow, Flow::Continue);
    assert!(
        sink.reports <= limits.max_attachments_per_message * limits.max_zip_entries,
        "{} reports from one message",
        sink.reports
    );
    assert!(
        sink.reports + sink.failures > 0,
        "a message with no outcome"
    );
    let budget = message_heap_budget(&limits, data.len());
    let peak = peak.max(peak_all);
    assert!(
        peak <= budget,
        "reading the message held {peak} bytes of heap, over its budget of {budget}"
    );
}
