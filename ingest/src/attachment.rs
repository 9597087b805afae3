//! Attachment: the bytes of one file or mail attachment -> one XML byte stream per report
//! inside it, decompressed under hard caps.
//!
//! The container is decided by content (magic bytes) first and by name only where the
//! content says nothing: reporters label gzip as `application/octet-stream`, name zip
//! files `.xml`, or send no name at all. A zip yields every entry that holds XML or gzip
//! (not just the first), in every compression method the `zip` crate decodes here
//! (stored, deflate, deflate64, bzip2, zstd, LZMA, XZ); any other method is refused with
//! its name. What is read past the caller's [`DecompressionBudget`] (one per file or per
//! mail, [`Limits::max_decompressed_bytes`], summed over every attachment and entry), or
//! past `max_zip_entries`, fails with [`AttachmentError::LimitExceeded`] as soon as it is
//! read: a bomb costs at most the cap in CPU and a fixed buffer in memory. (One XML token
//! is capped where the XML is read, by [`crate::report::TokenGuard`].)
//!
//! Every error here is about the content and permanent, except [`AttachmentError::Io`]:
//! reading the raw input (a local file) failed.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use crate::config::Limits;
use crate::failure::FailureKind;

/// The kinds of container the pipeline reads, as told by content (and name as a hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// Plain XML (possibly with a BOM, leading whitespace or comments).
    Xml,
    /// gzip (one or more members).
    Gzip,
    /// zip archive.
    Zip,
    /// An RFC 5322 message (`.eml`).
    Message,
    /// An mbox file: messages separated by `From ` lines.
    Mbox,
    /// None of the above.
    Unknown,
}

/// Why an attachment yielded no XML.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttachmentError {
    #[error("{what} exceeds the limit of {limit}")]
    LimitExceeded { what: &'static str, limit: u64 },
    #[error("corrupt {container} data: {reason}")]
    Corrupt {
        container: &'static str,
        reason: String,
    },
    #[error("not a report container ({0})")]
    Unrecognised(String),
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("read failed: {0}")]
    Io(#[source] std::sync::Arc<io::Error>),
}

impl AttachmentError {
    /// The failure's class (which decides whether it is retried).
    pub fn kind(&self) -> FailureKind {
        match self {
            AttachmentError::LimitExceeded { .. } => FailureKind::LimitExceeded,
            AttachmentError::Corrupt { .. } | AttachmentError::Unrecognised(_) => {
                FailureKind::BadContainer
            }
            AttachmentError::Unsupported(_) => FailureKind::Unsupported,
            AttachmentError::Io(_) => FailureKind::Io,
        }
    }
}

/// Tells the container from the first bytes of the content, with the name as a hint
/// where the content is ambiguous (`From ` starts both mbox files and some messages).
pub fn sniff(head: &[u8], name: Option<&str>) -> Container {
    let name = name.unwrap_or("").to_ascii_lowercase();
    if head.starts_with(&[0x1f, 0x8b]) {
        return Container::Gzip;
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Container::Zip;
    }
    let text = skip_bom_and_space(head);
    if text.starts_with(b"<") {
        return Container::Xml;
    }
    if text.starts_with(b"From ") {
        return if name.ends_with(".eml") {
            Container::Message
        } else {
            Container::Mbox
        };
    }
    if looks_like_header_block(text) {
        return Container::Message;
    }
    Container::Unknown
}

fn skip_bom_and_space(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[start..]
}

/// True when the first line is an RFC 5322 header field (`Name: value`).
fn looks_like_header_block(b: &[u8]) -> bool {
    let line_end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    let line = &b[..line_end];
    match line.iter().position(|&c| c == b':') {
        Some(colon) if colon > 0 => line[..colon]
            .iter()
            .all(|&c| c.is_ascii_graphic() && c != b':'),
        _ => false,
    }
}

/// The decompressed bytes one input unit (a file, or a mail with all its attachments)
/// may yield; every stream drawn from that unit counts against it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DecompressionBudget {
    left: Rc<Cell<u64>>,
    limit: u64,
}

impl DecompressionBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        DecompressionBudget {
            left: Rc::new(Cell::new(limit)),
            limit,
        }
    }

    /// Bytes not used yet.
    pub fn left(&self) -> u64 {
        self.left.get()
    }
}

/// Counts what flows through and fails once the budget is spent.
struct Capped<R> {
    inner: R,
    budget: DecompressionBudget,
    /// The layer that decompresses, to name it when its data is corrupt.
    container: &'static str,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .map_err(|e| io::Error::other(classify_io(e, self.container)))?;
        let left = self.budget.left.get();
        if n as u64 > left {
            return Err(io::Error::other(AttachmentError::LimitExceeded {
                what: "decompressed size",
                limit: self.budget.limit,
            }));
        }
        self.budget.left.set(left - n as u64);
        Ok(n)
    }
}

/// Turns an I/O error raised by [`Capped`] or a decoder back into the error it carries.
/// `container` names the layer that read: `"input"` and `"xml"` read the raw input (a
/// local file may fail for real: [`AttachmentError::Io`]); any other layer is a decoder,
/// whose errors (bad data, an unsupported variant) are about the content.
pub fn classify_io(e: io::Error, container: &'static str) -> AttachmentError {
    if let Some(carried) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<AttachmentError>())
    {
        return carried.clone();
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => AttachmentError::Corrupt {
            container,
            reason: "unexpected end of data (truncated)".into(),
        },
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => AttachmentError::Corrupt {
            container,
            reason: e.to_string(),
        },
        _ if matches!(container, "input" | "xml") => AttachmentError::Io(std::sync::Arc::new(e)),
        _ => AttachmentError::Corrupt {
            container,
            reason: e.to_string(),
        },
    }
}

/// Largest buffer of the streams read here (the XML handed to the report reader, and the
/// gzip under it).
const STREAM_BUFFER: usize = 64 * 1024;

/// Smallest such buffer.
const MIN_STREAM_BUFFER: usize = 4 * 1024;

/// How much larger than a gzip its XML is taken to be when its buffer is sized (aggregate
/// reports compress 10 to 40 times).
const GZIP_RATIO_HINT: u64 = 16;

/// The buffer for a stream of about `len` bytes: no larger than it needs. A `BufReader`
/// clears its whole buffer on first use, and most reports are a few KiB: two 64 KiB
/// buffers per mail were 3% of the daemon's instructions (`valgrind --tool=cachegrind`).
fn buffer_for(len: u64) -> usize {
    len.clamp(MIN_STREAM_BUFFER as u64, STREAM_BUFFER as u64) as usize
}

/// One XML stream found in an attachment, handed to the caller's closure.
pub struct XmlStream<'a> {
    /// Where it came from: the zip entry name, or `None` for the attachment itself.
    pub entry: Option<String>,
    /// The decompressed XML, capped.
    pub reader: &'a mut dyn BufRead,
    /// Which container layer decompressed it ("xml", "gzip", "zip"), for error messages.
    pub container: &'static str,
}

/// Reads the reports of one attachment or file: calls `each` once per XML stream inside
/// (`Xml` itself, a gzip's content, every XML or gzip entry of a zip), every stream
/// drawing on `budget`. Returns the number of streams found; an attachment with none is
/// `Unrecognised`. `each` returns `E`; the attachment's own failures become `E` through
/// `From<AttachmentError>`.
pub fn for_each_xml<R, E, F>(
    mut input: R,
    name: Option<&str>,
    limits: &Limits,
    budget: &DecompressionBudget,
    mut each: F,
) -> Result<usize, E>
where
    R: Read + Seek,
    E: From<AttachmentError>,
    F: FnMut(XmlStream<'_>) -> Result<(), E>,
{
    let mut head = [0u8; 512];
    let n = read_head(&mut input, &mut head).map_err(|e| E::from(classify_io(e, "input")))?;
    let len = input
        .seek(io::SeekFrom::End(0))
        .and_then(|len| input.seek(io::SeekFrom::Start(0)).map(|_| len))
        .map_err(|e| E::from(classify_io(e, "input")))?;
    match sniff(&head[..n], name) {
        Container::Xml => {
            feed(input, None, "xml", buffer_for(len), budget, &mut each)?;
            Ok(1)
        }
        Container::Gzip => {
            let gz = MultiGzDecoder::new(BufReader::with_capacity(buffer_for(len), input));
            let xml_len = len.saturating_mul(GZIP_RATIO_HINT);
            feed(gz, None, "gzip", buffer_for(xml_len), budget, &mut each)?;
            Ok(1)
        }
        Container::Zip => for_each_zip_entry(input, budget, limits, each),
        Container::Unknown if n == 0 => Err(AttachmentError::Unrecognised("empty".into()).into()),
        other => Err(AttachmentError::Unrecognised(describe(other, &head[..n])).into()),
    }
}

fn describe(container: Container, head: &[u8]) -> String {
    match container {
        Container::Message => "a mail message, not a report attachment".into(),
        Container::Mbox => "an mbox file, not a report attachment".into(),
        _ => {
            let shown: String = String::from_utf8_lossy(&head[..head.len().min(16)])
                .chars()
                .map(|c| if c.is_control() { '.' } else { c })
                .collect();
            format!("content starts with {shown:?}: neither XML, gzip nor zip")
        }
    }
}

fn read_head(input: &mut impl Read, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Wraps `inner` in the caps and a buffer of `capacity` bytes, and hands it to `each` for
/// the call's length.
fn feed<R, E, F>(
    inner: R,
    entry: Option<String>,
    container: &'static str,
    capacity: usize,
    budget: &DecompressionBudget,
    each: &mut F,
) -> Result<(), E>
where
    R: Read,
    F: FnMut(XmlStream<'_>) -> Result<(), E>,
{
    let mut reader = BufReader::with_capacity(
        capacity,
        Capped {
            inner,
            budget: budget.clone(),
            container,
        },
    );
    each(XmlStream {
        entry,
        reader: &mut reader,
        container,
    })
}

fn for_each_zip_entry<R, E, F>(
    input: R,
    budget: &DecompressionBudget,
    limits: &Limits,
    mut each: F,
) -> Result<usize, E>
where
    R: Read + Seek,
    E: From<AttachmentError>,
    F: FnMut(XmlStream<'_>) -> Result<(), E>,
{
    let corrupt = |e: zip::result::ZipError| AttachmentError::Corrupt {
        container: "zip",
        reason: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(input).map_err(|e| E::from(corrupt(e)))?;
    if archive.len() > limits.max_zip_entries {
        return Err(AttachmentError::LimitExceeded {
            what: "zip entry count",
            limit: limits.max_zip_entries as u64,
        }
        .into());
    }
    let mut found = 0;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| E::from(corrupt(e)))?;
        if entry.is_dir() {
            continue;
        }
        let entry_name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        check_zip_method(&entry_name, entry.compression()).map_err(E::from)?;
        let mut head = [0u8; 512];
        let n = read_head(&mut entry, &mut head).map_err(|e| E::from(classify_io(e, "zip")))?;
        let chained = io::Cursor::new(head[..n].to_vec()).chain(entry);
        match sniff(&head[..n], Some(&entry_name)) {
            Container::Xml => {
                found += 1;
                feed(
                    chained,
                    Some(entry_name),
                    "zip",
                    STREAM_BUFFER,
                    budget,
                    &mut each,
                )?;
            }
            Container::Gzip => {
                found += 1;
                let gz = MultiGzDecoder::new(BufReader::new(chained));
                let name = Some(entry_name);
                feed(gz, name, "gzip in zip", STREAM_BUFFER, budget, &mut each)?;
            }
            // Readme files, signatures and the like sit beside reports in some archives.
            _ => {}
        }
    }
    if found == 0 {
        return Err(AttachmentError::Unrecognised("zip archive holds no XML entry".into()).into());
    }
    Ok(found)
}

/// Refuses a zip entry whose compression method is not decoded here, by name.
fn check_zip_method(entry: &str, method: zip::CompressionMethod) -> Result<(), AttachmentError> {
    use zip::CompressionMethod as M;
    #[allow(deprecated)]
    match method {
        M::Stored | M::Deflated | M::Deflate64 | M::Bzip2 | M::Zstd | M::Lzma | M::Xz => Ok(()),
        other => Err(AttachmentError::Unsupported(format!(
            "zip entry {entry:?}: compression method {other} is not supported (stored, deflate, deflate64, bzip2, zstd, LZMA and XZ are)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    const XML: &[u8] = b"<?xml version=\"1.0\"?><feedback><report_metadata/></feedback>";

    fn zip_with(method: zip::CompressionMethod) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        writer.start_file("report.xml", options).unwrap();
        writer.write_all(&XML.repeat(100)).unwrap();
        writer.finish().unwrap().into_inner()
    }

    /// Every stream's bytes, or the error.
    fn read(data: Vec<u8>) -> Result<Vec<Vec<u8>>, AttachmentError> {
        let limits = Limits::default();
        let budget = DecompressionBudget::new(limits.max_decompressed_bytes);
        let mut got = Vec::new();
        for_each_xml(Cursor::new(data), None, &limits, &budget, |s| {
            let mut bytes = Vec::new();
            s.reader
                .read_to_end(&mut bytes)
                .map_err(|e| classify_io(e, s.container))?;
            got.push(bytes);
            Ok::<(), AttachmentError>(())
        })?;
        Ok(got)
    }

    #[test]
    fn zip_entries_are_read_in_every_method_decoded_here() {
        use zip::CompressionMethod as M;
        for method in [M::Stored, M::Deflated, M::Bzip2, M::Zstd, M::Xz] {
            let got = read(zip_with(method)).unwrap_or_else(|e| panic!("{method}: {e}"));
            assert_eq!(got, vec![XML.repeat(100)], "{method}");
        }
    }

    /// Sets the compression method of every header of a one-entry zip to `method`.
    fn relabel(mut zip: Vec<u8>, method: u16) -> Vec<u8> {
        for (signature, offset) in [(b"PK\x03\x04", 8), (b"PK\x01\x02", 10)] {
            let at = memchr::memmem::find(&zip, signature).unwrap();
            zip[at + offset..at + offset + 2].copy_from_slice(&method.to_le_bytes());
        }
        zip
    }

    #[test]
    fn other_zip_methods_are_refused_for_good_by_name() {
        // PPMd (98), AES (99), IBM TERSE (18), and a number nobody uses.
        for method in [98u16, 99, 18, 4242] {
            let err = read(relabel(zip_with(zip::CompressionMethod::Stored), method)).unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    FailureKind::Unsupported | FailureKind::BadContainer
                ),
                "{method}: {err}"
            );
            assert!(!err.kind().is_transient(), "{method}: {err}");
        }
        let err = read(relabel(zip_with(zip::CompressionMethod::Stored), 98)).unwrap_err();
        assert!(err.to_string().contains("compression method"), "{err}");
    }

    #[test]
    fn decoder_errors_are_about_the_content() {
        let e = classify_io(io::Error::other("compression method not supported"), "zip");
        assert_eq!(e.kind(), FailureKind::BadContainer);
        let e = classify_io(io::Error::other("disk went away"), "input");
        assert_eq!(e.kind(), FailureKind::Io);
    }

    #[test]
    fn one_budget_is_shared_by_every_stream_of_a_unit() {
        let limits = Limits::default();
        let budget = DecompressionBudget::new(XML.len() as u64 * 3 / 2);
        let read_one = || {
            for_each_xml(Cursor::new(XML.to_vec()), None, &limits, &budget, |s| {
                let mut sink = Vec::new();
                s.reader
                    .read_to_end(&mut sink)
                    .map_err(|e| classify_io(e, s.container))?;
                Ok::<(), AttachmentError>(())
            })
        };
        assert!(read_one().is_ok());
        let err = read_one().unwrap_err();
        assert_eq!(err.kind(), FailureKind::LimitExceeded, "{err}");
    }
}
