//! Token guard: the byte stream under the XML tokenizer -> the same stream, cut off with an
//! error as soon as the tokenizer has taken more than the cap for one event.
//!
//! quick-xml gathers a whole event (a text node, a tag with its attributes, an end tag, a
//! comment, a CDATA section, a processing instruction, a DOCTYPE) in memory before it
//! returns it, so a report of `<org_name>` followed by 300 MiB of `x>x>x>` would be buffered
//! whole, and copied. The guard counts the bytes the tokenizer consumes between two calls
//! of [`TokenGuard::start_event`] (the report reader calls it before each
//! `read_event_into`); past `max_token` it fails the next read, so the tokenizer never
//! holds more than the cap plus one buffer of input. One call of the tokenizer consumes the
//! whitespace it skips before an event and the event itself, nothing more, so the cap
//! bounds every event whatever its bytes are: the rule does not depend on how quick-xml
//! splits tokens, and it costs one addition per read.
//!
//! It sits between the byte source and the tokenizer as a [`BufRead`]: bytes are counted
//! when they are consumed, and the error is returned by the next `fill_buf` (and kept in
//! [`TokenGuard::failure`]).

use std::io::{self, BufRead, Read};

/// Why the guard stopped a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenGuardError {
    #[error("an XML token (text, tag, comment, CDATA, processing instruction or DOCTYPE) exceeds the limit of {limit} bytes")]
    TooLong { limit: u64 },
}

/// A [`BufRead`] that passes `inner` through, counting what is consumed per event.
pub struct TokenGuard<R> {
    inner: R,
    /// Bytes consumed since the last `start_event`.
    run: usize,
    max_token: usize,
    /// Set when consumed bytes broke the cap; returned by every later read.
    failed: Option<TokenGuardError>,
}

impl<R: BufRead> TokenGuard<R> {
    /// Guards `inner`: no event may take more than `max_token` bytes.
    pub fn new(inner: R, max_token: usize) -> Self {
        TokenGuard {
            inner,
            run: 0,
            max_token,
            failed: None,
        }
    }

    /// The tokenizer is about to read the next event: the count starts again.
    pub fn start_event(&mut self) {
        self.run = 0;
    }

    /// Why the guard stopped the stream, once it has (whether or not a read has returned
    /// the error yet).
    pub fn failure(&self) -> Option<&TokenGuardError> {
        self.failed.as_ref()
    }

    fn error(&self) -> io::Error {
        io::Error::other(self.failed.clone().expect("called once failed"))
    }
}

impl<R: BufRead> Read for TokenGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        match self.failed {
            // The bytes that broke the rule are not handed out.
            Some(_) => Err(self.error()),
            None => Ok(n),
        }
    }
}

impl<R: BufRead> BufRead for TokenGuard<R> {
    #[inline]
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.failed.is_some() {
            return Err(self.error());
        }
        self.inner.fill_buf()
    }

    #[inline]
    fn consume(&mut self, amount: usize) {
        self.run = self.run.saturating_add(amount);
        if self.run > self.max_token && self.failed.is_none() {
            self.failed = Some(TokenGuardError::TooLong {
                limit: self.max_token as u64,
            });
        }
        self.inner.consume(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;

    /// Tokenizes `xml` (trimming text, as the report reader does) from reads of `chunk`
    /// bytes, restarting the count before each event: Ok, or the guard's error.
    fn tokenize(xml: &[u8], chunk: usize, max: usize) -> Result<(), TokenGuardError> {
        let guard = TokenGuard::new(io::BufReader::with_capacity(chunk, xml), max);
        let mut reader = quick_xml::Reader::from_reader(guard);
        reader.config_mut().trim_text(true);
        reader.config_mut().check_end_names = false;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            reader.get_mut().start_event();
            let eof = match reader.read_event_into(&mut buf) {
                Ok(event) => event == Event::Eof,
                Err(_) if reader.get_ref().failure().is_some() => false,
                Err(e) => panic!("not a guard error: {e}"),
            };
            assert!(buf.len() <= max + chunk, "buffered {} bytes", buf.len());
            if let Some(failure) = reader.get_ref().failure() {
                return Err(failure.clone());
            }
            if eof {
                return Ok(());
            }
        }
    }

    fn accepted(xml: &str, max: usize) -> bool {
        // Every chunking must agree.
        let verdicts: Vec<bool> = [1, 2, 3, 5, 7, 64, 8192]
            .iter()
            .map(|&c| tokenize(xml.as_bytes(), c, max).is_ok())
            .collect();
        assert!(
            verdicts.iter().all(|v| *v == verdicts[0]),
            "chunkings disagree on {xml:?}: {verdicts:?}"
        );
        verdicts[0]
    }

    #[test]
    fn text_counts_up_to_the_next_tag_whatever_gt_it_holds() {
        assert!(accepted("<a>x>x>x>x</a>", 8));
        assert!(!accepted("<a>x>x>x>x>x</a>", 8));
    }

    #[test]
    fn quoted_attribute_values_and_end_tags_belong_to_their_tag() {
        assert!(accepted(r#"<a b=">>"/>"#, 11));
        assert!(!accepted(r#"<a b=">>"/>"#, 10));
        assert!(!accepted(r#"<a b=">>>>>>>>>>>>>>>>"/>"#, 10));
        assert!(!accepted(r#"<a></a ' >>>>>>>>>>>>>>>>'>"#, 10));
    }

    #[test]
    fn comments_sections_instructions_and_doctypes_are_one_token_each() {
        assert!(accepted("<!-- a -->text", 10));
        assert!(!accepted("<!-- y>y>y>y>y>y>y>y> -->", 10));
        assert!(accepted("<!---->", 10));
        assert!(!accepted("<![CDATA[ ]>]>]>]>]> ]]>", 10));
        assert!(accepted("<![CDATA[ab]]><x/>", 14));
        assert!(!accepted("<?pi a>b>c>d>e>f ?>", 10));
        assert!(accepted("<?xml version='1.0'?><a/>", 24));
        assert!(!accepted("<!DOCTYPE x [<!ENTITY a 'b'>]><x/>", 20));
    }

    #[test]
    fn each_event_is_counted_on_its_own() {
        let many = "<record><a>12345</a><!-- c --><![CDATA[x]]></record>".repeat(1000);
        assert!(accepted(&many, 13));
        assert!(!accepted(&many, 12), "<![CDATA[x]]> is 13 bytes");
    }

    #[test]
    fn whitespace_skipped_before_an_event_counts_with_it() {
        let xml = format!("<a>{}<b/></a>", " ".repeat(20));
        assert!(accepted(&xml, 24));
        assert!(!accepted(&xml, 23));
    }

    #[test]
    fn the_reader_stops_before_buffering_a_long_token() {
        let mut xml = b"<org_name>".to_vec();
        xml.extend(std::iter::repeat_n(b"x>".as_slice(), 100_000).flatten());
        let mut guard = TokenGuard::new(io::BufReader::with_capacity(4096, &xml[..]), 1024);
        let mut out = Vec::new();
        let err = guard.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("limit of 1024"), "{err}");
        assert!(out.len() < 1024 + 4096 + 16, "{}", out.len());
    }
}
