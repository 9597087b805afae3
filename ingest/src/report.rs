//! Report: one XML byte stream -> a [`ReportHeader`] and its [`Record`]s, one at a time.
//!
//! An event-driven quick-xml reader: [`ReportReader::open`] reads up to the first
//! `<record>`, then [`ReportReader::next_record`] yields records as they are read, so a
//! report with a million records is never in memory whole. What comes after the last
//! record (a trailing `<extension>`, problems found on the way) is in
//! [`ReportReader::header`] once `next_record` has returned `None`.
//!
//! Lenient in what it reads (each rule names the reporter that needs it where known):
//! - no namespace, RFC 7489's, RFC 9990's `urn:ietf:params:xml:ns:dmarc-2.0`, stray
//!   prefixes (`<dmarc:record>`) and xsi/xsd declarations (Microsoft) all read the same:
//!   elements are matched on their local name, case-insensitively;
//! - `<feedback>` need not be the root: IKEA wraps it in an unclosed `<xs:schema>`;
//! - values are trimmed; keyword values (results, dispositions, policies) are lower-cased
//!   (`Pass` -> `pass`) and an unknown keyword is kept as sent, never defaulted;
//! - invalid UTF-8 is replaced with U+FFFD and recorded; `encoding="ISO-8859-1"` and
//!   `windows-1252` declarations are honoured;
//! - an unescaped `<` inside a value (veeam.com's `<email><x@y></email>`) is kept as text;
//! - unknown elements are skipped and named in the report's problems; `<extension>`
//!   elements are kept as raw XML text.
//!
//! Refused: a DOCTYPE (so no entity expansion, no external entities), nesting deeper than
//! `max_xml_depth`, more than `max_records_per_report` records, one XML event (text, tag,
//! end tag, comment, CDATA, DOCTYPE) over `max_token_bytes` (checked before it is
//! buffered, see [`TokenGuard`]), one record (or the report's own errors and extensions) keeping more
//! than `max_record_bytes`, a stream with no `<feedback>`, a stream that ends inside a
//! record, a `<count>` that is not a number.
//!
//! Identity: a report is refused unless, before its first record, it names its reporter
//! (`<org_name>` or `<email>`), a `<report_id>`, the `<policy_published><domain>` and both
//! ends of its `<date_range>` (within what ClickHouse `DateTime` holds, 1970-2106), and
//! unless no `<report_metadata>` or `<policy_published>` follows a record. `parse`,
//! `import` and `run` all read through here, so they give one verdict on one file: two
//! different reports can never share an identity made of defaults.

use std::borrow::Cow;
use std::io::BufRead;
use std::net::IpAddr;

use quick_xml::events::{BytesStart, Event};

use crate::attachment::{classify_io, AttachmentError};
use crate::config::Limits;
use crate::failure::FailureKind;

mod token_guard;
pub use token_guard::{TokenGuard, TokenGuardError};

/// Report-level data: metadata and the published policy. Everything but the records.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReportHeader {
    /// `<version>` of the report format, as sent (`1.0`), if any.
    pub version: Option<String>,
    /// Reporter's organisation; an empty one is replaced by the domain of `email`.
    pub org_name: String,
    /// Reporter's contact address.
    pub email: String,
    pub extra_contact_info: Option<String>,
    /// Reporter's id for this report, with `<...>` around it removed.
    pub report_id: String,
    /// Start of the reported interval, Unix seconds (fractions dropped).
    pub date_begin: i64,
    /// End of the reported interval, Unix seconds (fractions dropped).
    pub date_end: i64,
    /// `<error>` lines the reporter put in the metadata.
    pub errors: Vec<String>,
    /// RFC 9990 `<generator>`: the software that made the report.
    pub generator: Option<String>,
    pub policy: PolicyPublished,
    /// Report-level `<extension>` elements, as raw XML text.
    pub extensions: Vec<String>,
    /// What the reader recovered from (bad bytes, stray elements, skipped elements).
    pub problems: Vec<String>,
}

/// `<policy_published>`: the DMARC record the reporter found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PolicyPublished {
    pub domain: String,
    /// `r` or `s` (kept as sent when something else).
    pub adkim: Option<Keyword>,
    pub aspf: Option<Keyword>,
    /// `none`, `quarantine`, `reject`.
    pub p: Option<Keyword>,
    pub sp: Option<Keyword>,
    /// RFC 9990: policy for non-existent subdomains.
    pub np: Option<Keyword>,
    /// RFC 7489 only; gone from RFC 9990.
    pub pct: Option<u8>,
    /// Failure-reporting options, as sent (`0`, `1`, `d:s`).
    pub fo: Option<String>,
    /// RFC 9990 `t` tag: `y` or `n`.
    pub testing: Option<Keyword>,
    /// RFC 9990: `psl` or `treewalk`.
    pub discovery_method: Option<Keyword>,
}

/// One `<record>`: a source IP and what happened to its mail.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Record {
    /// The source address, normalised (`2001:db8::1`); as sent when it does not parse.
    pub source_ip: String,
    /// The parsed address; `None` when the reporter sent something that is not one.
    pub source_addr: Option<IpAddr>,
    /// Messages from this source (`<count>`).
    pub count: u64,
    /// `none`, `quarantine`, `reject` (or as sent).
    pub disposition: Option<Keyword>,
    /// DMARC's DKIM verdict (aligned pass or fail).
    pub policy_dkim: Option<Keyword>,
    /// DMARC's SPF verdict (aligned pass or fail).
    pub policy_spf: Option<Keyword>,
    /// `<reason>` elements: why the policy was overridden.
    pub reasons: Vec<OverrideReason>,
    pub header_from: String,
    pub envelope_from: Option<String>,
    pub envelope_to: Option<String>,
    pub dkim: Vec<DkimResult>,
    pub spf: Vec<SpfResult>,
    /// Record-level `<extension>` elements, raw XML text.
    pub extensions: Vec<String>,
}

/// `<policy_evaluated><reason>`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OverrideReason {
    /// `forwarded`, `sampled_out`, `trusted_forwarder`, `mailing_list`, `local_policy`,
    /// `other`, or as sent.
    pub kind: Keyword,
    pub comment: Option<String>,
}

/// `<auth_results><dkim>`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DkimResult {
    pub domain: String,
    pub selector: Option<String>,
    pub result: Keyword,
    pub human_result: Option<String>,
}

/// `<auth_results><spf>`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SpfResult {
    pub domain: String,
    /// `mfrom` or `helo` (RFC 9990 dropped it; often absent).
    pub scope: Option<Keyword>,
    pub result: Keyword,
    pub human_result: Option<String>,
}

/// A keyword value, lower-cased; the known vocabulary costs no allocation.
pub type Keyword = Cow<'static, str>;

/// Words of RFC 7489 and RFC 9990 that appear as keyword values.
const KEYWORDS: &[&str] = &[
    "none",
    "pass",
    "fail",
    "neutral",
    "softfail",
    "temperror",
    "permerror",
    "policy",
    "quarantine",
    "reject",
    "r",
    "s",
    "y",
    "n",
    "mfrom",
    "helo",
    "forwarded",
    "sampled_out",
    "trusted_forwarder",
    "mailing_list",
    "local_policy",
    "other",
    "psl",
    "treewalk",
];

/// Folds a keyword: trimmed, lower-cased; unknown words are kept (lower-cased), not
/// defaulted.
pub fn keyword(raw: &str) -> Keyword {
    let raw = raw.trim();
    for k in KEYWORDS {
        if raw.eq_ignore_ascii_case(k) {
            return Cow::Borrowed(k);
        }
    }
    Cow::Owned(raw.to_ascii_lowercase())
}

/// Why a stream is not a usable report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("empty input")]
    Empty,
    #[error("not a DMARC aggregate report: {0}")]
    NotDmarc(String),
    #[error("DOCTYPE declarations are refused (entity expansion risk)")]
    Doctype,
    #[error("{what} exceeds the limit of {limit}")]
    LimitExceeded { what: &'static str, limit: u64 },
    #[error("malformed XML at byte {position}: {reason}")]
    Xml { position: u64, reason: String },
    #[error("truncated: the input ends inside {0}")]
    Truncated(&'static str),
    #[error("record {record}: {reason}")]
    BadValue { record: u64, reason: String },
    #[error("report metadata: {0}")]
    BadMetadata(String),
    /// A field of the report's identity is absent (`missing <report_id>`).
    #[error("not a usable report: {0}")]
    MissingIdentity(String),
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
}

impl ReportError {
    /// The failure's class (which decides whether it is retried).
    pub fn kind(&self) -> FailureKind {
        match self {
            ReportError::Empty | ReportError::NotDmarc(_) => FailureKind::NotDmarc,
            ReportError::Doctype => FailureKind::Doctype,
            ReportError::LimitExceeded { .. } => FailureKind::LimitExceeded,
            ReportError::MissingIdentity(_) => FailureKind::MissingIdentity,
            ReportError::Xml { .. }
            | ReportError::Truncated(_)
            | ReportError::BadValue { .. }
            | ReportError::BadMetadata(_) => FailureKind::BadReport,
            ReportError::Attachment(a) => a.kind(),
        }
    }
}

/// Where the reader stands: the element it is in, by meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// Outside `<feedback>` (before it, or inside a stray wrapper element).
    Outside,
    Feedback,
    Version,
    Metadata,
    OrgName,
    Email,
    ExtraContactInfo,
    ReportId,
    DateRange,
    Begin,
    End,
    MetadataError,
    Generator,
    Policy,
    PolicyDomain,
    Adkim,
    Aspf,
    P,
    Sp,
    Np,
    Pct,
    Fo,
    Testing,
    DiscoveryMethod,
    Record,
    Row,
    SourceIp,
    Count,
    PolicyEvaluated,
    Disposition,
    EvaluatedDkim,
    EvaluatedSpf,
    Reason,
    ReasonType,
    ReasonComment,
    Identifiers,
    HeaderFrom,
    EnvelopeFrom,
    EnvelopeTo,
    AuthResults,
    AuthDkim,
    AuthSpf,
    AuthDomain,
    AuthSelector,
    AuthResult,
    AuthHumanResult,
    AuthScope,
    /// Kept as raw text until its end.
    Extension,
    /// Skipped with everything inside.
    Unknown,
}

impl Node {
    /// Leaf elements collect text.
    fn is_leaf(self) -> bool {
        !matches!(
            self,
            Node::Outside
                | Node::Feedback
                | Node::Metadata
                | Node::DateRange
                | Node::Policy
                | Node::Record
                | Node::Row
                | Node::PolicyEvaluated
                | Node::Reason
                | Node::Identifiers
                | Node::AuthResults
                | Node::AuthDkim
                | Node::AuthSpf
                | Node::Extension
                | Node::Unknown
        )
    }

    /// The child of `self` named `name` (a local name, already lower-case).
    fn child(self, name: &[u8]) -> Node {
        use Node::*;
        match (self, name) {
            (Outside, b"feedback") => Feedback,
            (Outside, _) => Outside,
            (Feedback, b"version") => Version,
            (Feedback, b"report_metadata") => Metadata,
            (Feedback, b"policy_published") => Policy,
            (Feedback, b"record") => Record,
            (Feedback, b"extension") => Extension,
            // Some RFC 9990 drafts put <generator> at the top.
            (Feedback, b"generator") => Generator,
            (Metadata, b"org_name") => OrgName,
            (Metadata, b"email") => Email,
            (Metadata, b"extra_contact_info") => ExtraContactInfo,
            (Metadata, b"report_id") => ReportId,
            (Metadata, b"date_range") => DateRange,
            (Metadata, b"error") => MetadataError,
            (Metadata, b"generator") => Generator,
            (DateRange, b"begin") => Begin,
            (DateRange, b"end") => End,
            (Policy, b"domain") => PolicyDomain,
            (Policy, b"adkim") => Adkim,
            (Policy, b"aspf") => Aspf,
            (Policy, b"p") => P,
            (Policy, b"sp") => Sp,
            (Policy, b"np") => Np,
            (Policy, b"pct") => Pct,
            (Policy, b"fo") => Fo,
            (Policy, b"testing") => Testing,
            (Policy, b"discovery_method") => DiscoveryMethod,
            (Record, b"row") => Row,
            (Record, b"identifiers") => Identifiers,
            (Record, b"auth_results") => AuthResults,
            (Record, b"extension") => Extension,
            (Row, b"source_ip") => SourceIp,
            (Row, b"count") => Count,
            (Row, b"policy_evaluated") => PolicyEvaluated,
            (PolicyEvaluated, b"disposition") => Disposition,
            (PolicyEvaluated, b"dkim") => EvaluatedDkim,
            (PolicyEvaluated, b"spf") => EvaluatedSpf,
            (PolicyEvaluated, b"reason") => Reason,
            (Reason, b"type") => ReasonType,
            (Reason, b"comment") => ReasonComment,
            (Identifiers, b"header_from") => HeaderFrom,
            (Identifiers, b"envelope_from") => EnvelopeFrom,
            (Identifiers, b"envelope_to") => EnvelopeTo,
            (AuthResults, b"dkim") => AuthDkim,
            (AuthResults, b"spf") => AuthSpf,
            (AuthDkim | AuthSpf, b"domain") => AuthDomain,
            (AuthDkim, b"selector") => AuthSelector,
            (AuthDkim | AuthSpf, b"result") => AuthResult,
            (AuthDkim | AuthSpf, b"human_result") => AuthHumanResult,
            (AuthSpf, b"scope") => AuthScope,
            _ => Unknown,
        }
    }

    /// The element's XML name (lower-case, no prefix).
    fn tag(self) -> &'static str {
        use Node::*;
        match self {
            Outside => "",
            Feedback => "feedback",
            Version => "version",
            Metadata => "report_metadata",
            OrgName => "org_name",
            Email => "email",
            ExtraContactInfo => "extra_contact_info",
            ReportId => "report_id",
            DateRange => "date_range",
            Begin => "begin",
            End => "end",
            MetadataError => "error",
            Generator => "generator",
            Policy => "policy_published",
            PolicyDomain | AuthDomain => "domain",
            Adkim => "adkim",
            Aspf => "aspf",
            P => "p",
            Sp => "sp",
            Np => "np",
            Pct => "pct",
            Fo => "fo",
            Testing => "testing",
            DiscoveryMethod => "discovery_method",
            Record => "record",
            Row => "row",
            SourceIp => "source_ip",
            Count => "count",
            PolicyEvaluated => "policy_evaluated",
            Disposition => "disposition",
            EvaluatedDkim | AuthDkim => "dkim",
            EvaluatedSpf | AuthSpf => "spf",
            Reason => "reason",
            ReasonType => "type",
            ReasonComment => "comment",
            Identifiers => "identifiers",
            HeaderFrom => "header_from",
            EnvelopeFrom => "envelope_from",
            EnvelopeTo => "envelope_to",
            AuthResults => "auth_results",
            AuthSelector => "selector",
            AuthResult => "result",
            AuthHumanResult => "human_result",
            AuthScope => "scope",
            Extension => "extension",
            Unknown => "",
        }
    }

    /// Name used in messages.
    fn label(self) -> &'static str {
        match self {
            Node::Outside => "the document",
            Node::Feedback => "<feedback>",
            Node::Metadata | Node::DateRange => "<report_metadata>",
            Node::Policy => "<policy_published>",
            Node::Record
            | Node::Row
            | Node::PolicyEvaluated
            | Node::Reason
            | Node::Identifiers
            | Node::AuthResults
            | Node::AuthDkim
            | Node::AuthSpf => "a <record>",
            Node::Extension => "an <extension>",
            _ => "an element",
        }
    }
}

/// How text bytes become `str`: UTF-8 (lossy) or a single-byte legacy charset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    /// ISO-8859-1 / windows-1252 declared by the reporter: bytes map to code points.
    Latin1,
}

/// Problems kept per report; past this only a count is kept.
const MAX_PROBLEMS: usize = 32;

/// Length a problem's text is cut to. Problems quote values and names from the report, up
/// to `max_token_bytes` each and several times that once escaped (`{:?}` of control
/// characters): 32 of them held 190 bytes of text per byte of the cap, 200 MB with the
/// default limits, copied into every row `parse` prints (found by fuzz/'s heap budget of
/// the `report` target).
const MAX_PROBLEM_BYTES: usize = 256;

/// Streaming reader of one report. See the module doc.
pub struct ReportReader<R: BufRead> {
    xml: quick_xml::Reader<TokenGuard<R>>,
    /// Event buffer, reused; taken out of `self` while an event is handled.
    buf: Vec<u8>,
    limits: Limits,
    header: ReportHeader,
    /// Element stack, by meaning; the bottom is always `Outside`.
    stack: Vec<Node>,
    /// Text of the current leaf.
    text: String,
    /// Raw XML of the `<extension>` being kept, and the depth inside it.
    extension: String,
    extension_depth: usize,
    charset: Charset,
    record: Record,
    reason: OverrideReason,
    dkim: DkimResult,
    spf: SpfResult,
    records_read: u64,
    messages_read: u64,
    seen_feedback: bool,
    seen_metadata: bool,
    /// Name of the first element, to say what a non-report is.
    first_element: Option<String>,
    done: bool,
    /// A record read by `open` while looking for the first one.
    pending: Option<Record>,
    problems_dropped: usize,
    seen_begin: bool,
    seen_end: bool,
    /// Bytes kept for the current record (values, extensions, one charge per list item).
    record_bytes: usize,
    /// Bytes kept for the report's own `<error>` lines and extensions.
    header_bytes: usize,
}

/// What one kept list item (a DKIM or SPF result, a reason, an error line) is charged
/// beyond its text, against `max_record_bytes`: its bookkeeping in memory.
const ITEM_CHARGE: usize = 64;

impl<R: BufRead> ReportReader<R> {
    /// Reads the report up to its first record (or its end) and returns the reader.
    pub fn open(input: R, limits: &Limits) -> Result<Self, ReportError> {
        let mut xml =
            quick_xml::Reader::from_reader(TokenGuard::new(input, limits.max_token_bytes));
        let config = xml.config_mut();
        config.trim_text(true);
        // End tags are matched by this reader, leniently (see `end_matches`).
        config.check_end_names = false;
        let mut reader = ReportReader {
            xml,
            buf: Vec::with_capacity(4096),
            limits: limits.clone(),
            header: ReportHeader::default(),
            stack: vec![Node::Outside],
            text: String::new(),
            extension: String::new(),
            extension_depth: 0,
            charset: Charset::Utf8,
            record: Record::default(),
            reason: OverrideReason::default(),
            dkim: DkimResult::default(),
            spf: SpfResult::default(),
            records_read: 0,
            messages_read: 0,
            seen_feedback: false,
            seen_metadata: false,
            first_element: None,
            done: false,
            pending: None,
            problems_dropped: 0,
            seen_begin: false,
            seen_end: false,
            record_bytes: 0,
            header_bytes: 0,
        };
        reader.pending = reader.advance()?;
        reader.finish_metadata();
        reader.check_identity()?;
        Ok(reader)
    }

    /// The identity rule of the module doc, checked once the first record (or the end)
    /// has been reached.
    fn check_identity(&self) -> Result<(), ReportError> {
        let h = &self.header;
        let before = if self.records_read > 0 {
            " before the first <record>"
        } else {
            ""
        };
        let missing = |what: &str| {
            Err(ReportError::MissingIdentity(format!(
                "missing {what}{before}"
            )))
        };
        if self.records_read > 0 && !self.seen_metadata {
            return Err(ReportError::BadMetadata(
                "the first <record> comes before <report_metadata> and <policy_published>; \
                 the report's identity must come first"
                    .into(),
            ));
        }
        if h.org_name.is_empty() && h.email.is_empty() {
            return missing("<org_name> and <email> (who sent the report)");
        }
        if h.report_id.is_empty() {
            return missing("<report_id>");
        }
        if h.policy.domain.is_empty() {
            return missing("<policy_published><domain>");
        }
        if !self.seen_begin {
            return missing("<date_range><begin>");
        }
        if !self.seen_end {
            return missing("<date_range><end>");
        }
        for (what, value) in [("begin", h.date_begin), ("end", h.date_end)] {
            if u32::try_from(value).is_err() {
                return Err(ReportError::BadMetadata(format!(
                    "<date_range><{what}> {value} is outside 1970-2106"
                )));
            }
        }
        Ok(())
    }

    /// Charges `bytes` kept for the current record (or, outside records, for the
    /// report's own lists) against `max_record_bytes`.
    fn keep(&mut self, bytes: usize) -> Result<(), ReportError> {
        let in_record = self.stack.contains(&Node::Record);
        let kept = if in_record {
            &mut self.record_bytes
        } else {
            &mut self.header_bytes
        };
        *kept = kept.saturating_add(bytes);
        if *kept as u64 > self.limits.max_record_bytes {
            return Err(ReportError::LimitExceeded {
                what: if in_record {
                    "the values kept for one record"
                } else {
                    "the report's <error> lines and extensions"
                },
                limit: self.limits.max_record_bytes,
            });
        }
        Ok(())
    }

    /// Report-level data read so far; complete once `next_record` returned `None`.
    pub fn header(&self) -> &ReportHeader {
        &self.header
    }

    /// Records returned so far.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// Sum of `<count>` over the records returned so far.
    pub fn messages_read(&self) -> u64 {
        self.messages_read
    }

    /// The next record, or `None` at the end of the report.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReportError> {
        if let Some(r) = self.pending.take() {
            return Ok(Some(r));
        }
        self.advance()
    }

    /// Consumes the reader, giving the complete header.
    pub fn into_header(self) -> ReportHeader {
        self.header
    }

    fn problem(&mut self, mut text: String) {
        if text.len() > MAX_PROBLEM_BYTES {
            let mut end = MAX_PROBLEM_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str("...");
        }
        if self.header.problems.contains(&text) {
            return;
        }
        if self.header.problems.len() < MAX_PROBLEMS {
            self.header.problems.push(text);
        } else {
            self.problems_dropped += 1;
        }
    }

    fn xml_error(&self, e: quick_xml::Error) -> ReportError {
        // The guard judges bytes as the tokenizer consumes them; the tokenizer may fail on
        // bytes it has just consumed (`<!Dent/>`: "DOCTYPE not closed") before it reads
        // again and meets the guard's error, or it may read again first: that depends on
        // how the stream is chunked (a file, a gzip member). The guard's verdict wins, so
        // that a report gets one verdict however it is packed (found by fuzz/, `report`).
        if let Some(failure) = self.xml.get_ref().failure() {
            return guard_error(failure);
        }
        match e {
            // The caps and the decoders below raise io errors; some carry an
            // AttachmentError (a cap, a corrupt gzip) that is the real reason.
            quick_xml::Error::Io(io) => {
                if let Some(failure) = io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<TokenGuardError>())
                {
                    return guard_error(failure);
                }
                let carried = io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<AttachmentError>())
                    .cloned();
                ReportError::Attachment(carried.unwrap_or_else(|| {
                    classify_io(std::io::Error::new(io.kind(), io.to_string()), "xml")
                }))
            }
            other => ReportError::Xml {
                position: self.xml.buffer_position(),
                reason: other.to_string(),
            },
        }
    }

    /// Reads events until a record ends (returned) or the report ends (`None`).
    fn advance(&mut self) -> Result<Option<Record>, ReportError> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.advance_with(&mut buf);
        self.buf = buf;
        result
    }

    fn advance_with(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, ReportError> {
        if self.done {
            return Ok(None);
        }
        loop {
            buf.clear();
            self.xml.get_mut().start_event();
            let event = match self.xml.read_event_into(buf) {
                Ok(ev) => ev,
                Err(e) => return Err(self.xml_error(e)),
            };
            // The bytes of this event broke the guard's rule: whether the tokenizer hands
            // it over before the guard's error depends on the chunking (see `xml_error`),
            // so it is never handled (an over-long `</record ...>` yields no record).
            if let Some(failure) = self.xml.get_ref().failure() {
                return Err(guard_error(failure));
            }
            let finished = match event {
                Event::Start(start) => {
                    self.on_start(&start, false)?;
                    None
                }
                Event::Empty(start) => {
                    if self.on_start(&start, true)? {
                        self.on_end()?
                    } else {
                        None
                    }
                }
                Event::End(end) => {
                    if self.extension_depth > 0 {
                        self.keep_end(end.name().as_ref())?;
                    }
                    if self.end_matches(end.local_name().as_ref())? {
                        self.on_end()?
                    } else {
                        None
                    }
                }
                Event::Text(t) => {
                    self.on_text(&t, true)?;
                    None
                }
                Event::CData(c) => {
                    self.on_text(&c, false)?;
                    None
                }
                Event::Decl(d) => {
                    if let Some(Ok(enc)) = d.encoding() {
                        let enc = enc.to_ascii_lowercase();
                        if matches!(
                            enc.as_slice(),
                            b"iso-8859-1" | b"latin1" | b"latin-1" | b"windows-1252"
                        ) {
                            self.charset = Charset::Latin1;
                        }
                    }
                    None
                }
                Event::DocType(_) => return Err(ReportError::Doctype),
                Event::Comment(_) | Event::PI(_) => None,
                Event::Eof => return self.on_eof(),
            };
            if finished.is_some() {
                return Ok(finished);
            }
            if self.done {
                return Ok(None);
            }
        }
    }

    fn current(&self) -> Node {
        *self.stack.last().unwrap_or(&Node::Outside)
    }

    /// Text or CDATA: into the current value, or the `<extension>` being kept.
    fn on_text(&mut self, raw: &[u8], escaped: bool) -> Result<(), ReportError> {
        if self.extension_depth > 0 {
            let (s, _) = decode(raw, self.charset);
            let s = s.into_owned();
            if escaped {
                self.extension.push_str(&s);
            } else {
                self.extension.push_str("<![CDATA[");
                self.extension.push_str(&s);
                self.extension.push_str("]]>");
            }
            return self.check_extension_size();
        }
        if !self.current().is_leaf() {
            return Ok(());
        }
        let (s, lossy) = decode(raw, self.charset);
        if lossy {
            let tag = self.current().tag();
            self.problem(format!("invalid UTF-8 in <{tag}> replaced with U+FFFD"));
        }
        self.push_text(&s, escaped)
    }

    /// Opens an element. Returns whether it was pushed on the stack (so that an empty
    /// element must be closed right away).
    fn on_start(&mut self, start: &BytesStart<'_>, empty: bool) -> Result<bool, ReportError> {
        if self.extension_depth > 0 {
            self.keep_start(start, empty)?;
            self.extension_depth += 1;
            self.push(Node::Extension)?;
            return Ok(true);
        }
        let parent = self.current();
        if parent == Node::Unknown {
            self.push(Node::Unknown)?;
            return Ok(true);
        }
        if parent.is_leaf() {
            self.start_inside_value(start, empty)?;
            return Ok(false);
        }
        let local = start.local_name();
        let lower;
        let name: &[u8] = if local.as_ref().iter().any(u8::is_ascii_uppercase) {
            lower = local.as_ref().to_ascii_lowercase();
            &lower
        } else {
            local.as_ref()
        };
        let node = parent.child(name);
        if self.first_element.is_none() {
            self.first_element = Some(String::from_utf8_lossy(start.name().as_ref()).into_owned());
        }
        match node {
            Node::Outside => {
                let shown = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                self.problem(format!("stray element <{shown}> around the report ignored"));
            }
            Node::Feedback => {
                if self.seen_feedback {
                    return Err(ReportError::NotDmarc(
                        "a second <feedback> element in one stream".into(),
                    ));
                }
                self.seen_feedback = true;
            }
            Node::Metadata | Node::Policy => {
                if self.records_read > 0 {
                    let shown = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                    return Err(ReportError::BadMetadata(format!(
                        "<{shown}> comes after the first <record>; the report's identity must come first"
                    )));
                }
                self.seen_metadata = true
            }
            Node::Unknown => {
                let shown = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                let parent_tag = parent.tag();
                self.problem(format!(
                    "unknown element <{shown}> in <{parent_tag}> skipped"
                ));
            }
            Node::Extension => {
                self.extension.clear();
                self.extension_depth = 1;
                self.keep_start(start, empty)?;
            }
            Node::Record => {
                if self.records_read >= self.limits.max_records_per_report {
                    return Err(ReportError::LimitExceeded {
                        what: "records in one report",
                        limit: self.limits.max_records_per_report,
                    });
                }
                self.record = Record::default();
                self.record_bytes = 0;
            }
            Node::Reason => self.reason = OverrideReason::default(),
            Node::AuthDkim => self.dkim = DkimResult::default(),
            Node::AuthSpf => self.spf = SpfResult::default(),
            _ => {}
        }
        if node.is_leaf() {
            self.text.clear();
        }
        self.push(node)?;
        Ok(true)
    }

    /// A tag inside a value is an unescaped `<` (veeam.com: `<email><x@y></email>`,
    /// `<header_from>bad<xml.net</header_from>`): keep it as text. When the tag swallowed
    /// the value's own end tag (`<xml.net</header_from>`), split it there.
    fn start_inside_value(
        &mut self,
        start: &BytesStart<'_>,
        empty: bool,
    ) -> Result<(), ReportError> {
        let raw = decode(start, self.charset).0.into_owned();
        let tag = self.current().tag();
        self.problem(format!("unescaped '<' inside <{tag}> kept as text"));
        let closing = format!("</{tag}");
        if let Some(at) = raw.to_ascii_lowercase().find(&closing) {
            self.push_text(&format!("<{}", &raw[..at]), false)?;
            // The value ends here, as its end tag would end it.
            self.on_end()?;
            return Ok(());
        }
        let literal = if empty {
            format!("<{raw}/>")
        } else {
            format!("<{raw}>")
        };
        self.push_text(&literal, false)
    }

    fn push(&mut self, node: Node) -> Result<(), ReportError> {
        if self.stack.len() > self.limits.max_xml_depth {
            return Err(ReportError::LimitExceeded {
                what: "XML nesting depth",
                limit: self.limits.max_xml_depth as u64,
            });
        }
        self.stack.push(node);
        Ok(())
    }

    /// Whether an end tag (local name) closes the current element. Inside a value, an end
    /// tag of another name comes from an unescaped `<` and is kept as text; elsewhere a
    /// mismatched end tag is ignored and noted.
    fn end_matches(&mut self, name: &[u8]) -> Result<bool, ReportError> {
        let current = self.current();
        if matches!(current, Node::Extension | Node::Unknown | Node::Outside) {
            return Ok(true);
        }
        if current.tag().as_bytes().eq_ignore_ascii_case(name) {
            return Ok(true);
        }
        let shown = String::from_utf8_lossy(name).into_owned();
        if current.is_leaf() {
            // Kept as text, and counted like the rest of the value (many of them used to
            // grow a value without bound; found by fuzz/, `container`).
            self.push_text(&format!("</{shown}>"), false)?;
        } else {
            let tag = current.tag();
            self.problem(format!("end tag </{shown}> inside <{tag}> ignored"));
        }
        Ok(false)
    }

    fn keep_start(&mut self, start: &BytesStart<'_>, empty: bool) -> Result<(), ReportError> {
        let (raw, _) = decode(start, self.charset);
        self.extension.push('<');
        self.extension.push_str(&raw);
        self.extension.push_str(if empty { "/>" } else { ">" });
        self.check_extension_size()
    }

    /// Like every other piece of a kept `<extension>`, its end tags count against the cap
    /// (the last one used to take the kept text past it; found by fuzz/, `container`).
    fn keep_end(&mut self, name: &[u8]) -> Result<(), ReportError> {
        self.extension.push_str("</");
        self.extension.push_str(&String::from_utf8_lossy(name));
        self.extension.push('>');
        self.check_extension_size()
    }

    fn check_extension_size(&self) -> Result<(), ReportError> {
        if self.extension.len() > self.limits.max_token_bytes {
            return Err(ReportError::LimitExceeded {
                what: "an <extension> element",
                limit: self.limits.max_token_bytes as u64,
            });
        }
        Ok(())
    }

    fn push_text(&mut self, s: &str, escaped: bool) -> Result<(), ReportError> {
        if escaped && s.contains('&') {
            match quick_xml::escape::unescape(s) {
                Ok(u) => self.text.push_str(&u),
                Err(e) => {
                    let tag = self.current().tag();
                    self.problem(format!("bad entity in <{tag}> kept as sent: {e}"));
                    self.text.push_str(s);
                }
            }
        } else {
            self.text.push_str(s);
        }
        if self.text.len() > self.limits.max_token_bytes {
            return Err(ReportError::LimitExceeded {
                what: "a text value",
                limit: self.limits.max_token_bytes as u64,
            });
        }
        Ok(())
    }

    /// Closes the current element; returns a record when one is complete.
    fn on_end(&mut self) -> Result<Option<Record>, ReportError> {
        let node = self.stack.pop().unwrap_or(Node::Outside);
        if self.stack.is_empty() {
            self.stack.push(Node::Outside);
        }
        if node.is_leaf() {
            let text = std::mem::take(&mut self.text);
            let stored = self.set_value(node, text.trim());
            self.text = text;
            stored?;
            return Ok(None);
        }
        match node {
            Node::Extension => {
                self.extension_depth = self.extension_depth.saturating_sub(1);
                if self.extension_depth == 0 {
                    let kept = std::mem::take(&mut self.extension);
                    self.keep(kept.len() + ITEM_CHARGE)?;
                    match self.current() {
                        Node::Record => self.record.extensions.push(kept),
                        _ => self.header.extensions.push(kept),
                    }
                }
            }
            Node::Feedback => {
                self.done = true;
                if !self.seen_metadata && self.records_read == 0 {
                    return Err(ReportError::NotDmarc(
                        "<feedback> holds no report_metadata, policy_published or record".into(),
                    ));
                }
                if self.records_read == 0 {
                    self.problem("the report holds no records".into());
                }
                self.finish_metadata();
                self.count_dropped_problems();
            }
            Node::Reason => {
                self.keep(ITEM_CHARGE)?;
                let r = std::mem::take(&mut self.reason);
                self.record.reasons.push(r);
            }
            Node::AuthDkim => {
                self.keep(ITEM_CHARGE)?;
                let d = std::mem::take(&mut self.dkim);
                self.record.dkim.push(d);
            }
            Node::AuthSpf => {
                self.keep(ITEM_CHARGE)?;
                let s = std::mem::take(&mut self.spf);
                self.record.spf.push(s);
            }
            Node::Record => {
                let record = std::mem::take(&mut self.record);
                self.records_read += 1;
                self.messages_read += record.count;
                if record.source_ip.is_empty() {
                    let n = self.records_read;
                    self.problem(format!("record {n} has no <source_ip>"));
                }
                return Ok(Some(record));
            }
            _ => {}
        }
        Ok(None)
    }

    /// Stores the (trimmed) text of a closed leaf element into the model.
    fn set_value(&mut self, node: Node, value: &str) -> Result<(), ReportError> {
        if node == Node::MetadataError {
            self.keep(value.len() + ITEM_CHARGE)?;
        } else if self.stack.contains(&Node::Record) {
            self.keep(value.len())?;
        }
        let optional = || (!value.is_empty()).then(|| value.to_owned());
        let lower = || (!value.is_empty()).then(|| value.to_ascii_lowercase());
        let kw = || (!value.is_empty()).then(|| keyword(value));
        let in_spf = self.current() == Node::AuthSpf;
        let h = &mut self.header;
        let r = &mut self.record;
        match node {
            Node::Version => h.version = optional(),
            Node::OrgName => h.org_name = value.to_owned(),
            Node::Email => h.email = value.to_owned(),
            Node::ExtraContactInfo => h.extra_contact_info = optional(),
            Node::ReportId => h.report_id = strip_angle_brackets(value).to_owned(),
            Node::Begin => {
                h.date_begin = parse_epoch(value).map_err(ReportError::BadMetadata)?;
                self.seen_begin = true;
            }
            Node::End => {
                h.date_end = parse_epoch(value).map_err(ReportError::BadMetadata)?;
                self.seen_end = true;
            }
            Node::MetadataError => h.errors.extend(optional()),
            Node::Generator => h.generator = optional(),
            Node::PolicyDomain => h.policy.domain = value.to_ascii_lowercase(),
            Node::Adkim => h.policy.adkim = kw(),
            Node::Aspf => h.policy.aspf = kw(),
            Node::P => h.policy.p = kw(),
            Node::Sp => h.policy.sp = kw(),
            Node::Np => h.policy.np = kw(),
            Node::Pct => match value.parse::<u8>() {
                Ok(p) if p <= 100 => h.policy.pct = Some(p),
                _ if value.is_empty() => h.policy.pct = None,
                _ => self.problem(format!("<pct> {value:?} is not 0-100; ignored")),
            },
            Node::Fo => h.policy.fo = optional(),
            Node::Testing => h.policy.testing = kw(),
            Node::DiscoveryMethod => h.policy.discovery_method = kw(),
            Node::SourceIp => match value.parse::<IpAddr>() {
                Ok(ip) => {
                    r.source_addr = Some(ip);
                    // Rust reads an IPv4 address only in its one canonical form (four
                    // decimal parts, no leading zeros): the text needs no formatting.
                    r.source_ip = if ip.is_ipv4() {
                        value.to_owned()
                    } else {
                        ip.to_string()
                    };
                }
                Err(_) => {
                    r.source_addr = None;
                    r.source_ip = value.to_owned();
                    self.problem(format!("<source_ip> {value:?} is not an IP address"));
                }
            },
            Node::Count => {
                r.count = value.parse::<u64>().map_err(|_| ReportError::BadValue {
                    record: self.records_read + 1,
                    reason: format!("<count> {value:?} is not a whole number"),
                })?
            }
            Node::Disposition => r.disposition = kw(),
            Node::EvaluatedDkim => r.policy_dkim = kw(),
            Node::EvaluatedSpf => r.policy_spf = kw(),
            Node::ReasonType => self.reason.kind = keyword(value),
            Node::ReasonComment => self.reason.comment = optional(),
            Node::HeaderFrom => r.header_from = value.to_ascii_lowercase(),
            Node::EnvelopeFrom => r.envelope_from = lower(),
            Node::EnvelopeTo => r.envelope_to = lower(),
            Node::AuthDomain if in_spf => self.spf.domain = value.to_ascii_lowercase(),
            Node::AuthDomain => self.dkim.domain = value.to_ascii_lowercase(),
            Node::AuthSelector => self.dkim.selector = optional(),
            Node::AuthResult if in_spf => self.spf.result = keyword(value),
            Node::AuthResult => self.dkim.result = keyword(value),
            Node::AuthHumanResult if in_spf => self.spf.human_result = optional(),
            Node::AuthHumanResult => self.dkim.human_result = optional(),
            Node::AuthScope => self.spf.scope = kw(),
            _ => {}
        }
        Ok(())
    }

    /// Normalisations that need the whole metadata.
    fn finish_metadata(&mut self) {
        let h = &mut self.header;
        // Small reporters (accurateplastics.com in parsedmarc's corpus) send an empty
        // <org_name>: the domain of their address stands in for it.
        if h.org_name.is_empty() {
            if let Some((_, domain)) = h.email.rsplit_once('@') {
                h.org_name = domain.trim_end_matches('>').to_ascii_lowercase();
            }
        }
    }

    fn on_eof(&mut self) -> Result<Option<Record>, ReportError> {
        if !self.seen_feedback {
            if self.xml.buffer_position() == 0 {
                return Err(ReportError::Empty);
            }
            return Err(ReportError::NotDmarc(match &self.first_element {
                Some(root) => format!("the root element is <{root}>, and no <feedback> follows"),
                None => "no XML element at all".into(),
            }));
        }
        if !self.done {
            // The innermost open structural element says where the input stopped.
            let open = self
                .stack
                .iter()
                .rev()
                .find(|n| !n.is_leaf() && !matches!(n, Node::Outside))
                .copied()
                .unwrap_or(Node::Feedback);
            if open != Node::Feedback || self.records_read == 0 {
                return Err(ReportError::Truncated(open.label()));
            }
            self.problem("the input ends without </feedback>".into());
            self.done = true;
            self.finish_metadata();
        }
        self.count_dropped_problems();
        Ok(None)
    }

    /// At the end of the report: the problems past `MAX_PROBLEMS` become one line.
    fn count_dropped_problems(&mut self) {
        if self.problems_dropped > 0 {
            let n = std::mem::take(&mut self.problems_dropped);
            self.header
                .problems
                .push(format!("{n} more problems not listed"));
        }
    }
}

/// The report error for the guard's reason to stop a stream.
fn guard_error(failure: &TokenGuardError) -> ReportError {
    match failure {
        TokenGuardError::TooLong { limit } => ReportError::LimitExceeded {
            what: "an XML token (text, tag, comment, CDATA or DOCTYPE)",
            limit: *limit,
        },
    }
}

/// Bytes -> text: UTF-8 with invalid bytes replaced (and reported), or Latin-1.
fn decode(bytes: &[u8], charset: Charset) -> (Cow<'_, str>, bool) {
    match charset {
        Charset::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => (Cow::Borrowed(s), false),
            Err(_) => (String::from_utf8_lossy(bytes), true),
        },
        Charset::Latin1 => {
            if bytes.is_ascii() {
                // Safe: ASCII is UTF-8.
                (
                    Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default()),
                    false,
                )
            } else {
                (
                    Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
                    false,
                )
            }
        }
    }
}

/// `<abc@example.net>` -> `abc@example.net` (Mail.ru and others wrap ids in brackets).
fn strip_angle_brackets(id: &str) -> &str {
    id.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .map(str::trim)
        .unwrap_or(id)
}

/// Unix seconds, with fractions accepted and dropped (`1700000000.5`, sent by some
/// reporters' libraries that print floats).
pub fn parse_epoch(value: &str) -> Result<i64, String> {
    let v = value.trim();
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() && f.abs() < 1e15 => Ok(f.floor() as i64),
        _ => Err(format!("date {v:?} is not Unix seconds")),
    }
}

#[cfg(test)]
mod tests;
