//! Message: the raw bytes of one mail (RFC 5322, MIME) -> the report attachments in it.
//!
//! Reporters label their attachments every way there is: `application/gzip`,
//! `application/octet-stream`, `application/x-zip-compressed`, a bogus `ContentType:` header,
//! names split by RFC 2231, no name at all, the XML inline in a `text/plain` body, several
//! reports in one mail. So every leaf part is decoded and judged by its content
//! ([`attachment::sniff`]); names and labels only break ties. Only plausible parts are
//! taken: gzip or zip by their magic bytes, XML that opens a `<feedback>` element (or is
//! named `.xml` and is not HTML); an HTML or text body beside the report (Google, Yahoo,
//! Microsoft send one) is passed over, not failed. Also here: splitting mbox files into
//! messages.
//!
//! Bounded before anything is built: the message size (`max_message_bytes`); the MIME
//! parts (`max_mime_parts`) and header lines ([`MAX_HEADER_LINES`]), counted by a scan of
//! the raw bytes before the parser builds its tree, which also bounds the Content-* fields
//! ([`MAX_CONTENT_FIELD_BYTES`]) and multipart boundaries ([`MAX_BOUNDARY_BYTES`]) the
//! parser takes quadratic time over; the decoded bytes of all parts held at
//! once (`max_message_bytes` again); the report attachments (`max_attachments_per_message`).
//! Forwarded `message/rfc822` parts count against the same totals as the mail around them.

use std::borrow::Cow;
use std::io::BufRead;

use crate::attachment::{self, Container};
use crate::config::Limits;
use crate::failure::FailureKind;

/// One report-bearing part of a message, decoded (base64/quoted-printable removed).
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The part's file name (`filename` or `name` parameter, RFC 2231 joined), if any.
    pub name: Option<String>,
    /// The declared MIME type, lower-case.
    pub content_type: String,
    /// The decoded bytes: XML, gzip or zip.
    pub data: Vec<u8>,
}

impl Attachment {
    /// The name to show in messages: the file name, or the MIME type.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("unnamed {}", self.content_type),
        }
    }
}

/// What a message (the mail, not its attachments) can be wrong with.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("message exceeds the size limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("unparsable MIME structure: {0}")]
    Mime(String),
    #[error("no DMARC report attachment found (parts: {0})")]
    NoReport(String),
    #[error("more than {limit} report attachments")]
    TooManyAttachments { limit: usize },
    #[error("more than {limit} MIME parts")]
    TooManyParts { limit: usize },
    #[error("more than {limit} MIME header lines")]
    TooManyHeaderLines { limit: usize },
    #[error("a Content-Type, Content-Disposition or Content-Transfer-Encoding header field exceeds the limit of {limit} bytes")]
    ContentFieldTooLong { limit: usize },
    #[error("a MIME boundary exceeds the limit of {limit} bytes")]
    BoundaryTooLong { limit: usize },
    #[error("the decoded MIME parts exceed the limit of {limit} bytes")]
    DecodedTooLarge { limit: u64 },
}

impl MessageError {
    /// The failure's class (which decides whether it is retried).
    pub fn kind(&self) -> FailureKind {
        match self {
            MessageError::TooLarge { .. }
            | MessageError::TooManyAttachments { .. }
            | MessageError::TooManyParts { .. }
            | MessageError::TooManyHeaderLines { .. }
            | MessageError::ContentFieldTooLong { .. }
            | MessageError::BoundaryTooLong { .. }
            | MessageError::DecodedTooLarge { .. } => FailureKind::LimitExceeded,
            MessageError::Mime(_) => FailureKind::BadMessage,
            MessageError::NoReport(_) => FailureKind::NoReport,
        }
    }
}

/// Header lines allowed in one message, all MIME parts and forwarded messages together
/// (the parser keeps each in memory). Real report mails have under a hundred.
pub const MAX_HEADER_LINES: usize = 10_000;

/// Bytes of one Content-Type, Content-Disposition or Content-Transfer-Encoding field,
/// continuation lines included. The MIME parser decodes these fields in time that grows
/// with the square of their length (RFC 2047 words, RFC 2231 parameters: a 1 MB field
/// took 10-12 s); real ones, long RFC 2231 file names and all, stay under 1 KiB.
pub const MAX_CONTENT_FIELD_BYTES: usize = 8 * 1024;

/// Bytes of a multipart boundary (RFC 2046 allows 70). The parser looks for the boundary
/// at every line of the part in time that grows with its length (a 100,000-byte boundary
/// over a 4.4 MB mail took 16 s); this leaves room for senders that overstep the RFC.
pub const MAX_BOUNDARY_BYTES: usize = 200;

/// Non-report parts named in a "no report" reason; the rest are counted.
const MAX_PARTS_NAMED: usize = 8;

/// Finds the report attachments of one raw message.
pub fn report_attachments(raw: &[u8], limits: &Limits) -> Result<Vec<Attachment>, MessageError> {
    if raw.len() as u64 > limits.max_message_bytes {
        return Err(MessageError::TooLarge {
            limit: limits.max_message_bytes,
        });
    }
    let mut walk = Walk {
        limits,
        found: Vec::new(),
        passed_over: Vec::new(),
        passed_over_unnamed: 0,
        parts_left: limits.max_mime_parts,
        header_lines_left: MAX_HEADER_LINES,
        decoded_left: limits.max_message_bytes,
    };
    walk.message(raw, 0)?;
    if walk.found.is_empty() {
        let mut parts = if walk.passed_over.is_empty() {
            "none".to_owned()
        } else {
            walk.passed_over.join(", ")
        };
        if walk.passed_over_unnamed > 0 {
            parts.push_str(&format!(" and {} more", walk.passed_over_unnamed));
        }
        return Err(MessageError::NoReport(parts));
    }
    Ok(walk.found)
}

/// MIME nesting allowed (multipart inside multipart, forwarded message/rfc822).
const MAX_MIME_DEPTH: usize = 16;

/// One message's walk through its parts, with the budgets it shares with any message
/// forwarded inside it.
struct Walk<'l> {
    limits: &'l Limits,
    found: Vec<Attachment>,
    /// Parts that are not reports, for the "no report" reason (the first few).
    passed_over: Vec<String>,
    passed_over_unnamed: usize,
    parts_left: usize,
    header_lines_left: usize,
    decoded_left: u64,
}

impl Walk<'_> {
    /// Parses one (outer or forwarded) message, after checking its shape.
    fn message(&mut self, raw: &[u8], depth: usize) -> Result<(), MessageError> {
        let shape = mime_shape(raw);
        if shape.parts > self.parts_left {
            return Err(MessageError::TooManyParts {
                limit: self.limits.max_mime_parts,
            });
        }
        self.parts_left -= shape.parts;
        if shape.header_lines > self.header_lines_left {
            return Err(MessageError::TooManyHeaderLines {
                limit: MAX_HEADER_LINES,
            });
        }
        self.header_lines_left -= shape.header_lines;
        if shape.longest_content_field > MAX_CONTENT_FIELD_BYTES {
            return Err(MessageError::ContentFieldTooLong {
                limit: MAX_CONTENT_FIELD_BYTES,
            });
        }
        if shape.longest_boundary > MAX_BOUNDARY_BYTES {
            return Err(MessageError::BoundaryTooLong {
                limit: MAX_BOUNDARY_BYTES,
            });
        }
        let mail = mailparse::parse_mail(raw).map_err(|e| MessageError::Mime(e.to_string()))?;
        self.part(&mail, depth)
    }

    fn part(&mut self, part: &mailparse::ParsedMail<'_>, depth: usize) -> Result<(), MessageError> {
        if depth > MAX_MIME_DEPTH {
            return Err(MessageError::Mime("MIME parts nested too deep".into()));
        }
        if !part.subparts.is_empty() {
            for sub in &part.subparts {
                self.part(sub, depth + 1)?;
            }
            return Ok(());
        }
        let content_type = part.ctype.mimetype.to_ascii_lowercase();
        let name = part_name(part);
        let data = match decoded_body(part) {
            Ok(d) => d,
            Err(e) => {
                self.pass_over(format!("{content_type} (undecodable: {e})"));
                return Ok(());
            }
        };
        self.spend(data.len())?;
        // A forwarded report: the attached message is searched too.
        if content_type == "message/rfc822" {
            return match self.message(&data, depth + 1) {
                Err(MessageError::Mime(e)) => {
                    self.pass_over(format!("message/rfc822 (unparsable: {e})"));
                    Ok(())
                }
                other => other,
            };
        }
        let data = decode_unlabelled_base64(data.into_owned());
        if is_report_content(&data, &content_type, name.as_deref()) {
            if self.found.len() >= self.limits.max_attachments_per_message {
                return Err(MessageError::TooManyAttachments {
                    limit: self.limits.max_attachments_per_message,
                });
            }
            self.found.push(Attachment {
                name,
                content_type,
                data,
            });
        } else {
            self.pass_over(match &name {
                Some(n) => format!("{content_type} {n:?}"),
                None => content_type,
            });
        }
        Ok(())
    }

    /// Decoded part bytes are held until the message is done: they share one budget.
    fn spend(&mut self, bytes: usize) -> Result<(), MessageError> {
        match self.decoded_left.checked_sub(bytes as u64) {
            Some(left) => {
                self.decoded_left = left;
                Ok(())
            }
            None => Err(MessageError::DecodedTooLarge {
                limit: self.limits.max_message_bytes,
            }),
        }
    }

    fn pass_over(&mut self, shown: String) {
        if self.passed_over.len() < MAX_PARTS_NAMED {
            self.passed_over.push(shown);
        } else {
            self.passed_over_unnamed += 1;
        }
    }
}

/// Upper bounds of what the MIME parser would build from `raw`, from one scan of its
/// lines: `parts` counts lines starting with `--` (every part starts with one),
/// `header_lines` the lines of the header blocks (the first one, and one after each
/// `--` line up to a blank line); `longest_content_field` is the longest Content-Type,
/// Content-Disposition or Content-Transfer-Encoding field of those blocks (continuation
/// lines included, line ends not), `longest_boundary` the longest boundary a multipart
/// Content-Type field there names (its `boundary` parameters' values, RFC 2231 pieces
/// summed).
#[derive(Debug, PartialEq, Eq)]
struct MimeShape {
    parts: usize,
    header_lines: usize,
    longest_content_field: usize,
    longest_boundary: usize,
}

fn mime_shape(raw: &[u8]) -> MimeShape {
    let mut shape = MimeShape {
        parts: 0,
        header_lines: 0,
        longest_content_field: 0,
        longest_boundary: 0,
    };
    let mut in_header = true;
    // The Content-* field being read (its bytes, kept up to the cap), if any.
    let mut field: Option<Vec<u8>> = None;
    let mut start = 0;
    while start < raw.len() {
        let end = memchr::memchr(b'\n', &raw[start..]).map_or(raw.len(), |i| start + i);
        let line = &raw[start..end];
        start = end + 1;
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        let continues = in_header && matches!(text.first(), Some(b' ' | b'\t'));
        if !continues {
            if let Some(done) = field.take() {
                shape.note_content_field(&done);
            }
        }
        if line.starts_with(b"--") {
            shape.parts += 1;
            in_header = true;
        } else if in_header {
            if line.iter().all(|&b| b == b'\r' || b == b' ' || b == b'\t') {
                in_header = false;
            } else {
                shape.header_lines += 1;
                if continues {
                    if let Some(f) = &mut field {
                        f.extend_from_slice(&text[..text.len().min(MAX_CONTENT_FIELD_BYTES + 1)]);
                    }
                } else if is_content_field(text) {
                    field = Some(text[..text.len().min(MAX_CONTENT_FIELD_BYTES + 1)].to_vec());
                }
                if let Some(f) = &mut field {
                    // Past the cap the field is refused anyway: keep no more of it.
                    f.truncate(MAX_CONTENT_FIELD_BYTES + 1);
                }
            }
        }
    }
    if let Some(done) = field.take() {
        shape.note_content_field(&done);
    }
    shape
}

impl MimeShape {
    fn note_content_field(&mut self, field: &[u8]) {
        self.longest_content_field = self.longest_content_field.max(field.len());
        if field.len() <= MAX_CONTENT_FIELD_BYTES {
            self.longest_boundary = self.longest_boundary.max(boundary_bytes(field));
        }
    }
}

/// Whether a header line opens a Content-Type, Content-Disposition or
/// Content-Transfer-Encoding field (the ones the parser decodes).
fn is_content_field(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    let name = line[..colon].trim_ascii();
    [
        &b"content-type"[..],
        b"content-disposition",
        b"content-transfer-encoding",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// At least the bytes of the boundary a multipart Content-Type field names: every
/// `boundary` parameter's value as the parser cuts it (`boundary*0`, `boundary*1*`:
/// RFC 2231 pieces the parser joins), summed; 0 for any other field.
fn boundary_bytes(field: &[u8]) -> usize {
    let Some(colon) = memchr::memchr(b':', field) else {
        return 0;
    };
    let name = field[..colon].trim_ascii();
    let value = field[colon + 1..].trim_ascii_start();
    let multipart = b"multipart";
    if !name.eq_ignore_ascii_case(b"content-type")
        || value.len() < multipart.len()
        || !value[..multipart.len()].eq_ignore_ascii_case(multipart)
    {
        return 0;
    }
    let lower = value.to_ascii_lowercase();
    let mut total = 0;
    for at in memchr::memmem::find_iter(&lower, b"boundary") {
        let rest = &value[at + b"boundary".len()..];
        // The name may go on with RFC 2231's `*0`, `*1*`, `*`.
        let rest = rest.trim_ascii_start();
        let rest = &rest[rest
            .iter()
            .take_while(|&&b| b == b'*' || b.is_ascii_digit())
            .count()..];
        let Some(rest) = rest.trim_ascii_start().strip_prefix(b"=") else {
            continue;
        };
        total += parameter_value_bytes(rest);
    }
    total
}

/// At least the bytes of a parameter value as the parser takes it: up to the next `;`
/// outside quotes (a `\` inside quotes escapes the next byte), trimmed, the quotes
/// around it removed (its escapes are not: an upper bound).
fn parameter_value_bytes(rest: &[u8]) -> usize {
    let (mut in_quote, mut escaped) = (false, false);
    let mut end = rest.len();
    for (i, &b) in rest.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if in_quote && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_quote = !in_quote;
        } else if b == b';' && !in_quote {
            end = i;
            break;
        }
    }
    let value = rest[..end].trim_ascii();
    match value {
        [b'"', .., b'"'] => value.len() - 2,
        _ => value.len(),
    }
}

/// The part's file name: `filename` of Content-Disposition, else `name` of Content-Type
/// (mailparse joins RFC 2231 continuations and decodes charsets).
fn part_name(part: &mailparse::ParsedMail<'_>) -> Option<String> {
    let disposition = part.get_content_disposition();
    disposition
        .params
        .get("filename")
        .or_else(|| part.ctype.params.get("name"))
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
}

/// Whether decoded part content is a report container: gzip and zip by magic bytes; XML
/// when it opens a `<feedback>` element early (`<feedback`, or `:feedback` with a prefix),
/// or is named `.xml`; never an HTML document (a body that merely mentions feedback, an
/// XML signature, a text part are not reports).
fn is_report_content(data: &[u8], content_type: &str, name: Option<&str>) -> bool {
    match attachment::sniff(data, name) {
        Container::Gzip | Container::Zip => true,
        Container::Xml => {
            let head = &data[..data.len().min(4096)];
            let lower = head.to_ascii_lowercase();
            let find = |needle: &[u8]| memchr::memmem::find(&lower, needle).is_some();
            if content_type == "text/html" || find(b"<html") || find(b"<!doctype html") {
                return false;
            }
            find(b"<feedback")
                || find(b":feedback")
                || name.is_some_and(|n| n.to_ascii_lowercase().ends_with(".xml"))
        }
        _ => false,
    }
}

/// A part's body, its transfer encoding undone, without the copies `get_body_raw` makes
/// (it strips whitespace into a second buffer before decoding: a 64 MiB base64 part would
/// be held three times). Unencoded bodies are borrowed.
fn decoded_body<'a>(part: &'a mailparse::ParsedMail<'a>) -> Result<Cow<'a, [u8]>, String> {
    use mailparse::body::Body;
    match part.get_body_encoded() {
        Body::Base64(b) => decode_base64(b.get_raw())
            .map(Cow::Owned)
            .ok_or_else(|| "invalid base64".to_owned()),
        Body::QuotedPrintable(q) => q.get_decoded().map(Cow::Owned).map_err(|e| e.to_string()),
        Body::SevenBit(t) | Body::EightBit(t) => Ok(Cow::Borrowed(t.get_raw())),
        Body::Binary(b) => Ok(Cow::Borrowed(b.get_raw())),
    }
}

/// Some reporters send base64 with no (or a wrong) Content-Transfer-Encoding: a body of
/// only base64 characters that decodes to gzip or zip magic is decoded.
fn decode_unlabelled_base64(data: Vec<u8>) -> Vec<u8> {
    let looks_base64 = data.len() >= 8
        && data
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'\r' | b'\n'));
    if !looks_base64 {
        return data;
    }
    match decode_base64(&data) {
        Some(decoded)
            if matches!(
                attachment::sniff(&decoded, None),
                Container::Gzip | Container::Zip
            ) =>
        {
            decoded
        }
        _ => data,
    }
}

/// Plain base64 decoding, ignoring whitespace and padding; `None` on a bad character.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' | b' ' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Splits an mbox stream into raw messages, calling `each(index, bytes)` for each (index
/// from 1). `From ` lines separate messages; `>From ` quoting is undone (mboxrd). A message
/// over `max_message_bytes` is passed as `Err` and skipped, the rest still come.
pub fn split_mbox<R: BufRead, F>(mut input: R, limits: &Limits, mut each: F) -> std::io::Result<()>
where
    F: FnMut(usize, Result<Vec<u8>, MessageError>),
{
    let mut current: Vec<u8> = Vec::new();
    let mut index = 0usize;
    let mut too_large = false;
    let mut started = false;
    let mut line = Vec::new();
    let limit = limits.max_message_bytes;
    let mut flush = |index: usize, current: &mut Vec<u8>, too_large: &mut bool| {
        if index == 0 {
            return;
        }
        if *too_large {
            each(index, Err(MessageError::TooLarge { limit }));
        } else {
            each(index, Ok(std::mem::take(current)));
        }
        current.clear();
        *too_large = false;
    };
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.starts_with(b"From ") {
            flush(index, &mut current, &mut too_large);
            index += 1;
            started = true;
            continue;
        }
        if !started {
            // Text before the first separator: treat the file as one message.
            index = 1;
            started = true;
        }
        if too_large {
            continue;
        }
        let unquoted = if line.starts_with(b">")
            && line
                .iter()
                .skip_while(|&&c| c == b'>')
                .take(5)
                .eq(b"From ".iter())
        {
            &line[1..]
        } else {
            &line[..]
        };
        if (current.len() + unquoted.len()) as u64 > limit {
            too_large = true;
            current = Vec::new();
            continue;
        }
        current.extend_from_slice(unquoted);
    }
    flush(index, &mut current, &mut too_large);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn base64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    const XML: &[u8] = b"<?xml version=\"1.0\"?><feedback><report_metadata/></feedback>";

    fn mail(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut m = String::from(
            "From: dmarc@example.net\r\nTo: rua@example.com\r\nSubject: Report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
        );
        for (headers, body) in parts {
            m.push_str("--b1\r\n");
            m.push_str(headers);
            m.push_str("\r\n\r\n");
            m.push_str(body);
            m.push_str("\r\n");
        }
        m.push_str("--b1--\r\n");
        m.into_bytes()
    }

    #[test]
    fn gzip_labelled_octet_stream_is_found_by_content() {
        let raw = mail(&[
            ("Content-Type: text/plain", "This is a DMARC report."),
            (
                "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment",
                &base64(&gzip(XML)),
            ),
        ]);
        let found = report_attachments(&raw, &Limits::default()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, None);
        assert!(found[0].data.starts_with(&[0x1f, 0x8b]));
    }

    #[test]
    fn rfc2231_split_filename_is_joined() {
        let raw = mail(&[(
            "Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n filename*0*=utf-8''google.com!example.com!;\r\n filename*1*=1700000000!1700086399.xml.gz",
            &base64(&gzip(XML)),
        )]);
        let found = report_attachments(&raw, &Limits::default()).unwrap();
        assert_eq!(
            found[0].name.as_deref(),
            Some("google.com!example.com!1700000000!1700086399.xml.gz")
        );
    }

    #[test]
    fn inline_xml_body_and_several_reports() {
        let raw = mail(&[
            ("Content-Type: text/xml", std::str::from_utf8(XML).unwrap()),
            (
                "Content-Type: application/gzip; name=\"b.xml.gz\"\r\nContent-Transfer-Encoding: base64",
                &base64(&gzip(XML)),
            ),
            ("Content-Type: text/html", "<html><body>hello</body></html>"),
        ]);
        let found = report_attachments(&raw, &Limits::default()).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].name.as_deref(), Some("b.xml.gz"));
    }

    #[test]
    fn base64_without_transfer_encoding_header() {
        let raw = mail(&[("Content-Type: application/gzip", &base64(&gzip(XML)))]);
        let found = report_attachments(&raw, &Limits::default()).unwrap();
        assert!(found[0].data.starts_with(&[0x1f, 0x8b]));
    }

    #[test]
    fn auto_reply_has_no_report() {
        let raw = b"From: a@example.net\r\nSubject: Out of office\r\n\r\nI am away.\r\n";
        let err = report_attachments(raw, &Limits::default()).unwrap_err();
        assert!(matches!(err, MessageError::NoReport(_)), "{err}");
        assert!(err.to_string().contains("text/plain"), "{err}");
    }

    #[test]
    fn attachment_count_is_capped() {
        let part = (
            "Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64",
            base64(&gzip(XML)),
        );
        let parts: Vec<(&str, &str)> = (0..3).map(|_| (part.0, part.1.as_str())).collect();
        let limits = Limits {
            max_attachments_per_message: 2,
            ..Limits::default()
        };
        let err = report_attachments(&mail(&parts), &limits).unwrap_err();
        assert!(matches!(err, MessageError::TooManyAttachments { limit: 2 }));
    }

    #[test]
    fn mbox_is_split_and_unquoted() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From here\nbody\nFrom c@d Mon Jan  1 00:00:00 2024\nSubject: two\n\nbody2\n";
        let mut got = Vec::new();
        split_mbox(&mbox[..], &Limits::default(), |i, m| {
            got.push((i, m.unwrap()))
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, b"Subject: one\n\nFrom here\nbody\n");
        assert_eq!(got[1].0, 2);
    }

    #[test]
    fn oversized_mbox_message_is_refused_alone() {
        let big = "x".repeat(3000);
        let mbox = format!("From a\nSubject: big\n\n{big}\nFrom b\nSubject: small\n\nok\n");
        let limits = Limits {
            max_message_bytes: 2048,
            ..Limits::default()
        };
        let mut got = Vec::new();
        split_mbox(mbox.as_bytes(), &limits, |i, m| got.push((i, m.is_ok()))).unwrap();
        assert_eq!(got, vec![(1, false), (2, true)]);
    }

    #[test]
    fn an_html_or_text_body_beside_the_report_is_passed_over() {
        // Google and Yahoo put an HTML body beside the attachment; one that mentions
        // feedback is still not a report.
        let raw = mail(&[
            (
                "Content-Type: text/html",
                "<!DOCTYPE html><html><body>Send us feedback about this report</body></html>",
            ),
            (
                "Content-Type: text/plain",
                "Report for example.com: see the <feedback> attached.",
            ),
            (
                "Content-Type: application/gzip; name=\"r.xml.gz\"\r\nContent-Transfer-Encoding: base64",
                &base64(&gzip(XML)),
            ),
        ]);
        let found = report_attachments(&raw, &Limits::default()).unwrap();
        assert_eq!(
            found.len(),
            1,
            "{:?}",
            found.iter().map(Attachment::label).collect::<Vec<_>>()
        );
        assert_eq!(found[0].name.as_deref(), Some("r.xml.gz"));
    }

    #[test]
    fn parts_are_counted_before_the_tree_is_built() {
        let empty = ("Content-Type: text/plain", "");
        let at_limit: Vec<(&str, &str)> = vec![empty; DEFAULT_PARTS - 1];
        let err = report_attachments(&mail(&at_limit), &Limits::default()).unwrap_err();
        assert!(matches!(err, MessageError::NoReport(_)), "{err}");
        let over: Vec<(&str, &str)> = vec![empty; DEFAULT_PARTS + 1];
        let err = report_attachments(&mail(&over), &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                MessageError::TooManyParts {
                    limit: DEFAULT_PARTS
                }
            ),
            "{err}"
        );
        assert_eq!(err.kind(), FailureKind::LimitExceeded);
    }

    const DEFAULT_PARTS: usize = crate::config::DEFAULT_MAX_MIME_PARTS;

    #[test]
    fn header_lines_are_counted_before_the_tree_is_built() {
        let headers = |n: usize| {
            let mut m = String::new();
            for i in 0..n {
                m.push_str(&format!("X-Filler-{i}: x\r\n"));
            }
            m.push_str(
                "Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            );
            m.push_str(&base64(&gzip(XML)));
            m.into_bytes()
        };
        assert!(report_attachments(&headers(MAX_HEADER_LINES - 10), &Limits::default()).is_ok());
        let err = report_attachments(&headers(MAX_HEADER_LINES), &Limits::default()).unwrap_err();
        assert!(
            matches!(err, MessageError::TooManyHeaderLines { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_no_report_reason_names_a_few_parts_and_counts_the_rest() {
        let parts: Vec<(&str, &str)> = vec![("Content-Type: text/plain", "hello"); 500];
        let err = report_attachments(&mail(&parts), &Limits::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.len() < 300, "{text}");
        assert!(text.ends_with("and 492 more)"), "{text}");
    }

    /// `inner` (made by `mail`) wrapped as a forwarded message part; its boundary is
    /// renamed `name` so that it differs from the new outer one.
    fn forwarded(inner: &[u8], name: &str) -> String {
        let inner = String::from_utf8_lossy(inner)
            .replace("boundary=\"b1\"", &format!("boundary=\"{name}\""))
            .replace("\r\n--b1", &format!("\r\n--{name}"));
        format!("Content-Type: message/rfc822\r\n\r\n{inner}")
    }

    #[test]
    fn forwarded_messages_share_the_attachment_count_and_parts() {
        let gz = base64(&gzip(XML));
        let part = "Content-Type: application/gzip\r\nContent-Transfer-Encoding: base64";
        let twenty: Vec<(&str, &str)> = (0..20).map(|_| (part, gz.as_str())).collect();
        let inner = mail(&twenty);
        let wrapped = forwarded(&inner, "inner");
        let (head, body) = wrapped.split_once("\r\n\r\n").unwrap();
        let mut outer = twenty.clone();
        outer.push((head, body));
        let err = report_attachments(&mail(&outer), &Limits::default()).unwrap_err();
        assert!(
            matches!(err, MessageError::TooManyAttachments { limit: 32 }),
            "{err}"
        );
        let limits = Limits {
            max_mime_parts: 30,
            ..Limits::default()
        };
        let err = report_attachments(&mail(&outer), &limits).unwrap_err();
        assert!(
            matches!(err, MessageError::TooManyParts { limit: 30 }),
            "{err}"
        );
    }

    #[test]
    fn nested_forwards_share_one_decoded_budget() {
        // Each level holds its decoded body while the next is read: a chain of forwards
        // must not hold the message many times over.
        let mut message = mail(&[(
            "Content-Type: application/gzip; name=\"r.xml.gz\"\r\nContent-Transfer-Encoding: base64",
            &base64(&gzip(XML)),
        )]);
        for level in 0..5 {
            let wrapped = forwarded(&message, &format!("level{level}"));
            let (head, body) = wrapped.split_once("\r\n\r\n").unwrap();
            message = mail(&[(head, body)]);
        }
        assert!(report_attachments(&message, &Limits::default()).is_ok());
        let limits = Limits {
            max_message_bytes: message.len() as u64 * 2,
            ..Limits::default()
        };
        let err = report_attachments(&message, &limits).unwrap_err();
        assert!(matches!(err, MessageError::DecodedTooLarge { .. }), "{err}");
    }

    /// Multiparts nested as deep as the part count allows, read on a thread with the
    /// stack of the daemon's blocking threads (tokio's 2 MiB).
    #[test]
    fn deeply_nested_multiparts_fit_the_daemons_stack() {
        let depth = DEFAULT_PARTS / 2;
        let mut m = String::from("From: a@example.net\r\n");
        for level in 0..depth {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
            ));
        }
        m.push_str("Content-Type: text/plain\r\n\r\nhi\r\n");
        let raw = m.into_bytes();
        let outcome = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || report_attachments(&raw, &Limits::default()).map(|a| a.len()))
            .unwrap()
            .join()
            .unwrap();
        let err = outcome.unwrap_err();
        assert!(matches!(err, MessageError::Mime(_)), "{err}");
    }

    /// A report mail whose report part has the Content-Type field `field` (which may fold
    /// over lines), under a multipart Content-Type naming `boundary`.
    fn mail_with(field: &str, boundary: &str) -> Vec<u8> {
        let data = base64(&gzip(XML));
        format!(
            "From: dmarc@example.net\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\n{field}\r\nContent-Transfer-Encoding: base64\r\n\r\n{data}\r\n--{boundary}--\r\n"
        )
        .into_bytes()
    }

    /// `Content-Type: application/gzip; name="r...r"`, folded after the `;`, exactly `len`
    /// bytes long without its line ends.
    fn gzip_field(len: usize) -> String {
        let head = "Content-Type: application/gzip;\r\n name=\"";
        let fixed = head.len() - 2 + 1;
        format!("{head}{}\"", "r".repeat(len - fixed))
    }

    #[test]
    fn content_fields_are_capped_at_the_default_before_parsing() {
        let at = report_attachments(
            &mail_with(&gzip_field(MAX_CONTENT_FIELD_BYTES), "b"),
            &Limits::default(),
        );
        assert_eq!(at.unwrap().len(), 1);
        let err = report_attachments(
            &mail_with(&gzip_field(MAX_CONTENT_FIELD_BYTES + 1), "b"),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                MessageError::ContentFieldTooLong {
                    limit: MAX_CONTENT_FIELD_BYTES
                }
            ),
            "{err}"
        );
        assert_eq!(err.kind(), FailureKind::LimitExceeded);
        // The shapes that made the parser quadratic (review of 2026-12-01): 80,000 RFC 2231
        // parameters, RFC 2047 word markers, in Content-Type and Content-Disposition.
        let params: String = (0..80_000).map(|i| format!(";p{i}*0*=''x")).collect();
        let markers = "x=?".repeat(400_000);
        for field in [
            format!("Content-Type: text/plain{params}"),
            format!("Content-Type: text/plain; x={markers}"),
            format!("Content-Disposition: attachment{params}"),
            format!("content-transfer-encoding :\r\n\t{markers}"),
        ] {
            let err = report_attachments(&mail_with(&field, "b"), &Limits::default()).unwrap_err();
            assert!(
                matches!(err, MessageError::ContentFieldTooLong { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn boundaries_are_capped_at_the_default_before_parsing() {
        let ok = "b".repeat(MAX_BOUNDARY_BYTES);
        let at = report_attachments(
            &mail_with("Content-Type: application/gzip", &ok),
            &Limits::default(),
        );
        assert_eq!(at.unwrap().len(), 1);
        let long = "-".repeat(MAX_BOUNDARY_BYTES) + "X";
        let err = report_attachments(
            &mail_with("Content-Type: application/gzip", &long),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                MessageError::BoundaryTooLong {
                    limit: MAX_BOUNDARY_BYTES
                }
            ),
            "{err}"
        );
        // What the parser takes as the boundary: RFC 2231 pieces joined, an unquoted value
        // up to the next `;` (spaces included), escaped quotes; a non-multipart type names none.
        let half = "x".repeat(MAX_BOUNDARY_BYTES / 2 + 1);
        for (field, bytes) in [
            (format!("Content-Type: multipart/mixed; boundary*0=\"{half}\";\r\n boundary*1=\"{half}\""), 2 * half.len()),
            (format!("Content-Type: Multipart/Mixed; BOUNDARY = a {half}; charset=x"), half.len() + 2),
            (format!("Content-Type: multipart/mixed; boundary=\"a\\\";{half}\""), half.len() + 4),
            (format!("Content-Type: text/plain; boundary=\"{half}{half}\""), 0),
        ] {
            let shape = mime_shape(format!("{field}\r\n\r\nbody\r\n").as_bytes());
            assert_eq!(shape.longest_boundary, bytes, "{field}");
        }
    }

    #[test]
    fn mime_shape_bounds_what_the_parser_builds() {
        let raw = mail(&[
            ("Content-Type: text/plain", "a"),
            ("Content-Type: text/plain", "b"),
        ]);
        let shape = mime_shape(&raw);
        // Three delimiter lines (two parts and the close); the top headers and one line
        // each of the parts' headers.
        assert_eq!(shape.parts, 3);
        assert_eq!(shape.header_lines, 5 + 2);
        assert_eq!(
            shape.longest_content_field,
            "Content-Type: multipart/mixed; boundary=\"b1\"".len()
        );
        assert_eq!(shape.longest_boundary, 2);
    }
}
