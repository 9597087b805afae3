//! Failure: every way one input (a file, a mail, a report) or one batch can fail -> one
//! [`FailureKind`], which alone decides what happens next ([`Retry`]) and names the
//! failure in metrics and in the `failures` table. No other place decides whether a
//! failure is transient.
//!
//! The rule behind the table: what is wrong with the content never gets better (quarantine
//! at once); what is wrong with our side or the server's (unreachable, disk full, a proxy
//! answering 502) is not the mail's fault (keep it, try later, never count it against the
//! mail); what might be the mail's fault but cannot be told apart from bad luck (a stage
//! panicked, the daemon died while holding it, ClickHouse refused its rows) counts one
//! attempt against the mail, which is then tried alone, and quarantined once its attempts
//! run out.

/// What to do with the input after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The content is at fault: quarantine now, with the reason.
    Never,
    /// Not the content's fault: keep it and try again later; it costs the mail nothing.
    Later,
    /// Perhaps the content's fault: count an attempt, try again alone, quarantine when
    /// the attempts run out.
    Alone,
}

/// Why one input or batch failed. The `as_str` names are stable: they are metric labels
/// and the `reason_kind` of `ingest_log` / `failures`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// A hard limit was hit: sizes, counts, nesting, token length.
    LimitExceeded,
    /// A corrupt or unrecognised container (gzip, zip), or one holding no XML.
    BadContainer,
    /// A container variant not decoded here (a zip compression method).
    Unsupported,
    /// XML, but not a DMARC aggregate report.
    NotDmarc,
    /// A DOCTYPE or other declaration (entity expansion risk).
    Doctype,
    /// A report that cannot be read: malformed XML, bad values, truncated.
    BadReport,
    /// A report without the fields of its identity (reporter, id, domain, dates).
    MissingIdentity,
    /// A mail with no report attachment at all.
    NoReport,
    /// A report for a domain outside the inventory, refused (`[domains] accept =
    /// "inventory"`).
    UnknownDomain,
    /// A mail whose MIME structure cannot be parsed.
    BadMessage,
    /// A stage panicked on this input.
    Panic,
    /// The daemon stopped (crash, kill, out of memory) while this mail was being
    /// processed, as seen after a restart.
    Interrupted,
    /// Reading a local file failed.
    Io,
    /// ClickHouse could not be reached (connection refused or reset, timeout).
    StoreUnreachable,
    /// ClickHouse (or a proxy in front of it) is unwell: disk full, out of memory, too
    /// many parts or queries, authentication refused, a 5xx without a ClickHouse error.
    StoreUnavailable,
    /// The database is not set up (`dmarc-ingest schema apply` is needed).
    StoreSchema,
    /// ClickHouse refused this data (a type or value error), or failed on it with an
    /// error not known to be the server's trouble.
    StoreRejected,
    /// The output of `parse` could not be written.
    Output,
}

impl FailureKind {
    /// Every kind, for tables and tests.
    pub const ALL: [FailureKind; 18] = [
        FailureKind::LimitExceeded,
        FailureKind::BadContainer,
        FailureKind::Unsupported,
        FailureKind::NotDmarc,
        FailureKind::Doctype,
        FailureKind::BadReport,
        FailureKind::MissingIdentity,
        FailureKind::NoReport,
        FailureKind::UnknownDomain,
        FailureKind::BadMessage,
        FailureKind::Panic,
        FailureKind::Interrupted,
        FailureKind::Io,
        FailureKind::StoreUnreachable,
        FailureKind::StoreUnavailable,
        FailureKind::StoreSchema,
        FailureKind::StoreRejected,
        FailureKind::Output,
    ];

    /// What happens to the input next. The one table of the module doc.
    pub fn retry(self) -> Retry {
        use FailureKind::*;
        match self {
            LimitExceeded | BadContainer | Unsupported | NotDmarc | Doctype | BadReport
            | MissingIdentity | NoReport | UnknownDomain | BadMessage => Retry::Never,
            Io | StoreUnreachable | StoreUnavailable | StoreSchema | Output => Retry::Later,
            Panic | Interrupted | StoreRejected => Retry::Alone,
        }
    }

    /// Whether the input is kept for another try (not quarantined now).
    pub fn is_transient(self) -> bool {
        self.retry() != Retry::Never
    }

    /// Whether the failure concerns the whole batch (the store), not one input's content:
    /// the rest of the batch cannot be written either.
    pub fn stops_the_batch(self) -> bool {
        use FailureKind::*;
        matches!(
            self,
            StoreUnreachable | StoreUnavailable | StoreSchema | Output
        )
    }

    /// The stable name (metric label, `reason_kind`).
    pub fn as_str(self) -> &'static str {
        use FailureKind::*;
        match self {
            LimitExceeded => "limit_exceeded",
            BadContainer => "bad_container",
            Unsupported => "unsupported",
            NotDmarc => "not_dmarc",
            Doctype => "doctype",
            BadReport => "bad_report",
            MissingIdentity => "missing_identity",
            NoReport => "no_report",
            UnknownDomain => "unknown_domain",
            BadMessage => "bad_message",
            Panic => "panic",
            Interrupted => "interrupted",
            Io => "io",
            StoreUnreachable => "store_unreachable",
            StoreUnavailable => "store_unavailable",
            StoreSchema => "store_schema",
            StoreRejected => "store_rejected",
            Output => "output",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest failure reason kept (in `ingest_log.reason`, logs and summaries), in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// Cuts `reason` to about [`MAX_REASON_BYTES`] (on a character boundary), saying how
/// much was cut.
pub fn truncate_reason(reason: &str) -> std::borrow::Cow<'_, str> {
    if reason.len() <= MAX_REASON_BYTES {
        return std::borrow::Cow::Borrowed(reason);
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}... ({} more bytes cut)",
        &reason[..end],
        reason.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out: a change to any row must change this test.
    #[test]
    fn every_kind_has_its_fate_and_name() {
        use FailureKind::*;
        let table: [(FailureKind, &str, Retry, bool); 18] = [
            (LimitExceeded, "limit_exceeded", Retry::Never, false),
            (BadContainer, "bad_container", Retry::Never, false),
            (Unsupported, "unsupported", Retry::Never, false),
            (NotDmarc, "not_dmarc", Retry::Never, false),
            (Doctype, "doctype", Retry::Never, false),
            (BadReport, "bad_report", Retry::Never, false),
            (MissingIdentity, "missing_identity", Retry::Never, false),
            (NoReport, "no_report", Retry::Never, false),
            (UnknownDomain, "unknown_domain", Retry::Never, false),
            (BadMessage, "bad_message", Retry::Never, false),
            (Panic, "panic", Retry::Alone, false),
            (Interrupted, "interrupted", Retry::Alone, false),
            (Io, "io", Retry::Later, false),
            (StoreUnreachable, "store_unreachable", Retry::Later, true),
            (StoreUnavailable, "store_unavailable", Retry::Later, true),
            (StoreSchema, "store_schema", Retry::Later, true),
            (StoreRejected, "store_rejected", Retry::Alone, false),
            (Output, "output", Retry::Later, true),
        ];
        assert_eq!(table.len(), FailureKind::ALL.len());
        for (kind, (listed, name, retry, stops)) in FailureKind::ALL.iter().zip(table) {
            assert_eq!(
                *kind, listed,
                "ALL and the table list the kinds in one order"
            );
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.retry(), retry, "{kind}");
            assert_eq!(kind.is_transient(), retry != Retry::Never, "{kind}");
            assert_eq!(kind.stops_the_batch(), stops, "{kind}");
        }
        let names: std::collections::HashSet<_> =
            FailureKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), FailureKind::ALL.len(), "names are distinct");
    }

    #[test]
    fn long_reasons_are_cut_with_a_count() {
        assert_eq!(truncate_reason("short"), "short");
        let long = "é".repeat(2000);
        let cut = truncate_reason(&long);
        assert!(cut.len() < MAX_REASON_BYTES + 64, "{}", cut.len());
        assert!(cut.ends_with("(2976 more bytes cut)"), "{cut}");
    }
}
