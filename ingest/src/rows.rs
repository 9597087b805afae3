//! Rows: a report's header and one of its records -> one flat, typed [`RecordRow`]
//! (pure; borrows, copies nothing), and its JSON-lines / CSV encodings.
//!
//! The field names are the fixed interface of DESIGN.md (`org_name`, `report_id`,
//! `policy_domain`, `date_begin`, ..., `override_reasons`) plus everything else the
//! model holds. Per-signature values are parallel arrays: `dkim_domains[i]`,
//! `dkim_selectors[i]`, `dkim_results[i]` and `dkim_human_results[i]` describe the same
//! signature (an absent selector is `""`); the same holds for `spf_*` and for
//! `override_reasons[i]` / `override_comments[i]`. Dates are UTC, ISO 8601 (`...Z`).

use std::io::Write;

use serde::Serialize;

use crate::domains;
use crate::report::{Record, ReportHeader};

/// One output row: one `<record>` with its report's fields repeated.
#[derive(Debug, Clone, Serialize)]
pub struct RecordRow<'a> {
    /// Where the report came from (file, message, attachment, zip entry).
    pub source: &'a str,
    pub org_name: &'a str,
    pub email: &'a str,
    pub report_id: &'a str,
    pub policy_domain: &'a str,
    pub date_begin: UtcTime,
    pub date_end: UtcTime,
    pub version: Option<&'a str>,
    pub generator: Option<&'a str>,
    pub extra_contact_info: Option<&'a str>,
    /// The report's own `<error>` lines.
    pub report_errors: &'a [String],
    pub published_adkim: Option<&'a str>,
    pub published_aspf: Option<&'a str>,
    pub published_p: Option<&'a str>,
    pub published_sp: Option<&'a str>,
    pub published_np: Option<&'a str>,
    pub published_pct: Option<u8>,
    pub published_fo: Option<&'a str>,
    pub published_testing: Option<&'a str>,
    pub published_discovery_method: Option<&'a str>,
    pub source_ip: &'a str,
    /// `<count>`: messages from this source.
    pub message_count: u64,
    pub disposition: Option<&'a str>,
    /// DMARC's (aligned) DKIM verdict for these messages.
    pub policy_dkim: Option<&'a str>,
    /// DMARC's (aligned) SPF verdict for these messages.
    pub policy_spf: Option<&'a str>,
    pub override_reasons: Vec<&'a str>,
    pub override_comments: Vec<&'a str>,
    pub header_from: &'a str,
    pub envelope_from: Option<&'a str>,
    pub envelope_to: Option<&'a str>,
    pub dkim_domains: Vec<&'a str>,
    pub dkim_selectors: Vec<&'a str>,
    pub dkim_results: Vec<&'a str>,
    pub dkim_human_results: Vec<&'a str>,
    pub spf_domains: Vec<&'a str>,
    pub spf_scopes: Vec<&'a str>,
    pub spf_results: Vec<&'a str>,
    pub spf_human_results: Vec<&'a str>,
    /// Organisational domains (Public Suffix List) of the identifiers above; in JSON an
    /// absent one is null, as its identifier is.
    #[serde(serialize_with = "empty_as_null")]
    pub header_from_org: String,
    #[serde(serialize_with = "empty_as_null")]
    pub envelope_from_org: String,
    pub dkim_domains_org: Vec<String>,
    pub spf_domains_org: Vec<String>,
    /// The sending organisation: org domain of the passing DKIM signer, else of the SPF
    /// domain, else of envelope_from (groups `mcsv.net` senders as one provider).
    #[serde(serialize_with = "empty_as_null")]
    pub sender_org: String,
    /// Alignment recomputed from auth_results and adkim/aspf (RFC 7489 3.1), beside the
    /// reporter's `policy_dkim` / `policy_spf`.
    pub dkim_aligned: bool,
    pub spf_aligned: bool,
    /// Record-level `<extension>` elements, raw XML.
    pub extensions: &'a [String],
    /// Report-level `<extension>` elements read so far, raw XML.
    pub report_extensions: &'a [String],
    /// What the parser recovered from in this report (so far).
    pub problems: &'a [String],
}

/// Unix seconds, written as ISO 8601 UTC (`2024-03-31T00:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime(pub i64);

impl Serialize for UtcTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for UtcTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Builds the row of `record` in the report `header` read from `source`.
pub fn record_row<'a>(
    source: &'a str,
    header: &'a ReportHeader,
    record: &'a Record,
) -> RecordRow<'a> {
    let p = &header.policy;
    let alignment = domains::alignment(record, p);
    let orgs = domains::organisations(record);
    RecordRow {
        source,
        org_name: &header.org_name,
        email: &header.email,
        report_id: &header.report_id,
        policy_domain: &p.domain,
        date_begin: UtcTime(header.date_begin),
        date_end: UtcTime(header.date_end),
        version: header.version.as_deref(),
        generator: header.generator.as_deref(),
        extra_contact_info: header.extra_contact_info.as_deref(),
        report_errors: &header.errors,
        published_adkim: p.adkim.as_deref(),
        published_aspf: p.aspf.as_deref(),
        published_p: p.p.as_deref(),
        published_sp: p.sp.as_deref(),
        published_np: p.np.as_deref(),
        published_pct: p.pct,
        published_fo: p.fo.as_deref(),
        published_testing: p.testing.as_deref(),
        published_discovery_method: p.discovery_method.as_deref(),
        source_ip: &record.source_ip,
        message_count: record.count,
        disposition: record.disposition.as_deref(),
        policy_dkim: record.policy_dkim.as_deref(),
        policy_spf: record.policy_spf.as_deref(),
        override_reasons: record.reasons.iter().map(|r| r.kind.as_ref()).collect(),
        override_comments: record
            .reasons
            .iter()
            .map(|r| r.comment.as_deref().unwrap_or(""))
            .collect(),
        header_from: &record.header_from,
        envelope_from: record.envelope_from.as_deref(),
        envelope_to: record.envelope_to.as_deref(),
        dkim_domains: record.dkim.iter().map(|d| d.domain.as_str()).collect(),
        dkim_selectors: record
            .dkim
            .iter()
            .map(|d| d.selector.as_deref().unwrap_or(""))
            .collect(),
        dkim_results: record.dkim.iter().map(|d| d.result.as_ref()).collect(),
        dkim_human_results: record
            .dkim
            .iter()
            .map(|d| d.human_result.as_deref().unwrap_or(""))
            .collect(),
        spf_domains: record.spf.iter().map(|s| s.domain.as_str()).collect(),
        spf_scopes: record
            .spf
            .iter()
            .map(|s| s.scope.as_deref().unwrap_or(""))
            .collect(),
        spf_results: record.spf.iter().map(|s| s.result.as_ref()).collect(),
        spf_human_results: record
            .spf
            .iter()
            .map(|s| s.human_result.as_deref().unwrap_or(""))
            .collect(),
        header_from_org: orgs.header_from,
        envelope_from_org: orgs.envelope_from,
        dkim_domains_org: orgs.dkim,
        spf_domains_org: orgs.spf,
        sender_org: orgs.sender,
        dkim_aligned: alignment.dkim,
        spf_aligned: alignment.spf,
        extensions: &record.extensions,
        report_extensions: &header.extensions,
        problems: &header.problems,
    }
}

/// Output encodings of `parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV with a header line; arrays joined with `;`.
    Csv,
}

/// Writes rows in one [`Format`].
pub struct RowWriter<W: Write> {
    format: Format,
    out: W,
    wrote_header: bool,
}

/// The CSV columns, in order: the field names of [`RecordRow`].
pub const CSV_COLUMNS: &[&str] = &[
    "source",
    "org_name",
    "email",
    "report_id",
    "policy_domain",
    "date_begin",
    "date_end",
    "version",
    "generator",
    "extra_contact_info",
    "report_errors",
    "published_adkim",
    "published_aspf",
    "published_p",
    "published_sp",
    "published_np",
    "published_pct",
    "published_fo",
    "published_testing",
    "published_discovery_method",
    "source_ip",
    "message_count",
    "disposition",
    "policy_dkim",
    "policy_spf",
    "override_reasons",
    "override_comments",
    "header_from",
    "envelope_from",
    "envelope_to",
    "dkim_domains",
    "dkim_selectors",
    "dkim_results",
    "dkim_human_results",
    "spf_domains",
    "spf_scopes",
    "spf_results",
    "spf_human_results",
    "header_from_org",
    "envelope_from_org",
    "dkim_domains_org",
    "spf_domains_org",
    "sender_org",
    "dkim_aligned",
    "spf_aligned",
    "extensions",
    "report_extensions",
    "problems",
];

impl<W: Write> RowWriter<W> {
    pub fn new(format: Format, out: W) -> Self {
        RowWriter {
            format,
            out,
            wrote_header: false,
        }
    }

    /// Writes one row (and the CSV header line before the first).
    pub fn write(&mut self, row: &RecordRow<'_>) -> std::io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, row)?;
                self.out.write_all(b"\n")
            }
            Format::Csv => {
                if !self.wrote_header {
                    self.wrote_header = true;
                    let mut header = CsvLine::new(&mut self.out);
                    for column in CSV_COLUMNS {
                        header.text(column)?;
                    }
                    header.end()?;
                }
                write_csv_row(&mut self.out, row)
            }
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer (to drain a buffer between reports).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// An empty string as null: "absent" is written one way in the JSON rows.
fn empty_as_null<S: serde::Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    if value.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(value)
    }
}

/// Writes one row as a CSV line in [`CSV_COLUMNS`] order, field by field into `out`: no
/// per-row buffers (lists are joined with `;` as they are written).
fn write_csv_row(out: &mut impl Write, r: &RecordRow<'_>) -> std::io::Result<()> {
    fn opt(v: Option<&str>) -> &str {
        v.unwrap_or("")
    }
    let mut line = CsvLine::new(out);
    line.text(r.source)?;
    line.text(r.org_name)?;
    line.text(r.email)?;
    line.text(r.report_id)?;
    line.text(r.policy_domain)?;
    line.display(&r.date_begin)?;
    line.display(&r.date_end)?;
    line.text(opt(r.version))?;
    line.text(opt(r.generator))?;
    line.text(opt(r.extra_contact_info))?;
    line.list(r.report_errors)?;
    line.text(opt(r.published_adkim))?;
    line.text(opt(r.published_aspf))?;
    line.text(opt(r.published_p))?;
    line.text(opt(r.published_sp))?;
    line.text(opt(r.published_np))?;
    match r.published_pct {
        Some(pct) => line.display(&pct)?,
        None => line.text("")?,
    }
    line.text(opt(r.published_fo))?;
    line.text(opt(r.published_testing))?;
    line.text(opt(r.published_discovery_method))?;
    line.text(r.source_ip)?;
    line.display(&r.message_count)?;
    line.text(opt(r.disposition))?;
    line.text(opt(r.policy_dkim))?;
    line.text(opt(r.policy_spf))?;
    line.list(&r.override_reasons)?;
    line.list(&r.override_comments)?;
    line.text(r.header_from)?;
    line.text(opt(r.envelope_from))?;
    line.text(opt(r.envelope_to))?;
    line.list(&r.dkim_domains)?;
    line.list(&r.dkim_selectors)?;
    line.list(&r.dkim_results)?;
    line.list(&r.dkim_human_results)?;
    line.list(&r.spf_domains)?;
    line.list(&r.spf_scopes)?;
    line.list(&r.spf_results)?;
    line.list(&r.spf_human_results)?;
    line.text(&r.header_from_org)?;
    line.text(&r.envelope_from_org)?;
    line.list(&r.dkim_domains_org)?;
    line.list(&r.spf_domains_org)?;
    line.text(&r.sender_org)?;
    line.display(&u8::from(r.dkim_aligned))?;
    line.display(&u8::from(r.spf_aligned))?;
    line.list(r.extensions)?;
    line.list(r.report_extensions)?;
    line.list(r.problems)?;
    line.end()
}

/// One RFC 4180 line being written: fields separated by `,`, a field quoted (with `"`
/// doubled) when it holds `,`, `"`, CR or LF.
struct CsvLine<'w, W: Write> {
    out: &'w mut W,
    fields: usize,
}

impl<'w, W: Write> CsvLine<'w, W> {
    fn new(out: &'w mut W) -> Self {
        CsvLine { out, fields: 0 }
    }

    fn separate(&mut self) -> std::io::Result<()> {
        self.fields += 1;
        if self.fields > 1 {
            self.out.write_all(b",")?;
        }
        Ok(())
    }

    fn text(&mut self, field: &str) -> std::io::Result<()> {
        self.list(&[field])
    }

    /// A number or date (never needs quotes).
    fn display(&mut self, field: &dyn std::fmt::Display) -> std::io::Result<()> {
        self.separate()?;
        write!(self.out, "{field}")
    }

    /// The items joined with `;`, as one field.
    fn list<S: AsRef<str>>(&mut self, items: &[S]) -> std::io::Result<()> {
        self.separate()?;
        let quoted = items
            .iter()
            .any(|i| i.as_ref().contains([',', '"', '\r', '\n']));
        if quoted {
            self.out.write_all(b"\"")?;
        }
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.out.write_all(b";")?;
            }
            let mut pieces = item.as_ref().split('"');
            if let Some(first) = pieces.next() {
                self.out.write_all(first.as_bytes())?;
            }
            for piece in pieces {
                self.out.write_all(b"\"\"")?;
                self.out.write_all(piece.as_bytes())?;
            }
        }
        if quoted {
            self.out.write_all(b"\"")?;
        }
        Ok(())
    }

    fn end(self) -> std::io::Result<()> {
        self.out.write_all(b"\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{DkimResult, Record, SpfResult};
    use std::borrow::Cow;

    #[test]
    fn utc_time_formats() {
        assert_eq!(UtcTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(UtcTime(1_711_897_200).to_string(), "2024-03-31T15:00:00Z");
        assert_eq!(UtcTime(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(UtcTime(-1).to_string(), "1969-12-31T23:59:59Z");
    }

    fn sample() -> (ReportHeader, Record) {
        let mut h = ReportHeader {
            org_name: "google.com".into(),
            report_id: "r1".into(),
            date_begin: 1_700_000_000,
            date_end: 1_700_086_399,
            ..Default::default()
        };
        h.policy.domain = "example.com".into();
        let r = Record {
            source_ip: "192.0.2.1".into(),
            count: 3,
            header_from: "example.com".into(),
            dkim: vec![
                DkimResult {
                    domain: "example.com".into(),
                    selector: Some("s1".into()),
                    result: Cow::Borrowed("pass"),
                    human_result: None,
                },
                DkimResult {
                    domain: "esp.example".into(),
                    selector: None,
                    result: Cow::Borrowed("fail"),
                    human_result: Some("bad, sig".into()),
                },
            ],
            spf: vec![SpfResult {
                domain: "example.com".into(),
                scope: None,
                result: Cow::Borrowed("pass"),
                human_result: None,
            }],
            ..Default::default()
        };
        (h, r)
    }

    #[test]
    fn row_arrays_stay_parallel() {
        let (h, r) = sample();
        let row = record_row("f.xml", &h, &r);
        assert_eq!(row.dkim_domains, ["example.com", "esp.example"]);
        assert_eq!(row.dkim_selectors, ["s1", ""]);
        assert_eq!(row.dkim_human_results, ["", "bad, sig"]);
        assert_eq!(row.spf_scopes, [""]);
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["date_begin"], "2023-11-14T22:13:20Z");
        assert_eq!(json["message_count"], 3);
        assert_eq!(json["policy_domain"], "example.com");
    }

    #[test]
    fn csv_quotes_and_has_every_column() {
        let (h, r) = sample();
        let mut w = RowWriter::new(Format::Csv, Vec::new());
        w.write(&record_row("f.xml", &h, &r)).unwrap();
        let text = String::from_utf8(w.out).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert_eq!(header.split(',').count(), CSV_COLUMNS.len());
        let line = lines.next().unwrap();
        assert!(line.contains(",\";bad, sig\","), "{line}");
        assert!(line.contains("example.com;esp.example"), "{line}");
    }

    #[test]
    fn csv_fields_are_quoted_and_counted_like_rfc_4180() {
        let (h, mut r) = sample();
        r.dkim = Vec::new();
        let mut w = RowWriter::new(Format::Csv, Vec::new());
        let mut row = record_row("dir/a \"b\".xml", &h, &r);
        row.envelope_to = Some("x\r\ny");
        w.write(&row).unwrap();
        let text = String::from_utf8(w.out).unwrap();
        let line = &text[text.find("\r\n").unwrap() + 2..];
        assert!(line.starts_with("\"dir/a \"\"b\"\".xml\","), "{line}");
        assert!(line.contains(",\"x\r\ny\","), "{line}");
        // Every field of the row, once: the quoted ones hold no separator outside quotes.
        let mut fields = 1;
        let mut inside = false;
        for c in line.trim_end_matches("\r\n").chars() {
            match c {
                '"' => inside = !inside,
                ',' if !inside => fields += 1,
                _ => {}
            }
        }
        assert_eq!(fields, CSV_COLUMNS.len(), "{line}");
    }
}
