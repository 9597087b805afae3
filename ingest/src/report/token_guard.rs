//! Token guard: an XML byte stream -> the same stream, cut off with an error as soon as one
//! lexical token grows past the cap, before the XML tokenizer has buffered it.
//!
//! quick-xml gathers a whole event (a text node, a tag with its attributes, a comment, a
//! CDATA section, a processing instruction) in memory before it returns it, so a report of
//! `<org_name>` followed by 300 MiB of `x>x>x>` would be buffered whole, and copied. This
//! guard follows the tokenizer's own lexical rules (the ones of quick-xml 0.37: text up to
//! `<`; tags and end tags up to a `>` outside quotes; `<!-` comments up to `-->`; `<![`
//! sections up to `]]>`; `<?` up to `?>`) and counts the bytes of the token being read.
//! Past `max_token` bytes it fails the read, so the tokenizer never holds more than the cap
//! plus one buffer. Any other `<!` markup (a DOCTYPE, which could define entities) is
//! refused at its first byte.
//!
//! It sits between the byte source and the tokenizer as a [`BufRead`]: bytes are judged
//! when they are consumed, and an error is returned by the next `fill_buf`.

use std::io::{self, BufRead, Read};

/// Why the guard stopped a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenGuardError {
    #[error("an XML token (text, tag, comment, CDATA or processing instruction) exceeds the limit of {limit} bytes")]
    TooLong { limit: u64 },
    #[error("a DOCTYPE or other <! declaration")]
    Declaration,
}

/// Where the lexer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Character data, up to the next `<`.
    Text,
    /// Just after `<`.
    Open,
    /// Just after `<!`.
    Bang,
    /// After `<!-`: the next byte (a second `-` in a well-formed comment) opens the body.
    CommentOpen,
    /// Inside a comment; the count of `-` just before the current position (up to 2).
    Comment(u8),
    /// Inside `<![`...; the count of `]` just before the current position (up to 2).
    Section(u8),
    /// Inside `<?`...; whether the previous byte was `?`.
    Instruction(bool),
    /// Inside a start or end tag, outside quotes.
    Tag,
    /// Inside a quoted attribute value of a tag (the quote byte).
    Quoted(u8),
}

/// The lexer: feeds on consumed bytes, counts the current token's length.
#[derive(Debug, Clone)]
struct Lexer {
    state: Lex,
    /// Bytes of the current token so far.
    run: usize,
    max_token: usize,
}

impl Lexer {
    fn new(max_token: usize) -> Self {
        Lexer {
            state: Lex::Text,
            run: 0,
            max_token,
        }
    }

    /// Judges `bytes`, the next ones of the stream.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), TokenGuardError> {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            // Where the current token ends in `rest` (the index just past its last byte),
            // or None when it goes on past `rest`; `state` is updated as bytes are passed.
            let (used, ended) = self.step(rest)?;
            self.run += used;
            if self.run > self.max_token {
                return Err(TokenGuardError::TooLong {
                    limit: self.max_token as u64,
                });
            }
            if ended {
                self.run = 0;
            }
            at += used;
        }
        Ok(())
    }

    /// Passes bytes of `rest` in the current state; returns how many were passed and
    /// whether a token ended with the last of them (or, for text, just before `<`).
    fn step(&mut self, rest: &[u8]) -> Result<(usize, bool), TokenGuardError> {
        Ok(match self.state {
            Lex::Text => match memchr::memchr(b'<', rest) {
                // The `<` ends the text (if any) and starts the next token.
                Some(0) => {
                    self.run = 0;
                    self.state = Lex::Open;
                    (1, false)
                }
                // The text ends just before the `<`.
                Some(i) => (i, true),
                None => (rest.len(), false),
            },
            Lex::Open => {
                self.state = match rest[0] {
                    b'!' => Lex::Bang,
                    b'?' => Lex::Instruction(false),
                    _ => Lex::Tag,
                };
                // The byte after `<` may itself close a tag (`<>`) or open a quote.
                if self.state == Lex::Tag {
                    return self.step(rest);
                }
                (1, false)
            }
            Lex::Bang => {
                self.state = match rest[0] {
                    b'-' => Lex::CommentOpen,
                    b'[' => Lex::Section(0),
                    _ => return Err(TokenGuardError::Declaration),
                };
                (1, false)
            }
            Lex::CommentOpen => {
                self.state = Lex::Comment(0);
                (1, false)
            }
            Lex::Comment(dashes) => {
                let found = closing_run(rest, dashes, b'-', 2, Lex::Comment);
                self.closed(found, rest.len())
            }
            Lex::Section(brackets) => {
                let found = closing_run(rest, brackets, b']', 2, Lex::Section);
                self.closed(found, rest.len())
            }
            Lex::Instruction(question) => {
                let found = closing_run(rest, u8::from(question), b'?', 1, |n| {
                    Lex::Instruction(n > 0)
                });
                self.closed(found, rest.len())
            }
            Lex::Tag => match memchr::memchr3(b'>', b'"', b'\'', rest) {
                Some(i) if rest[i] == b'>' => {
                    self.state = Lex::Text;
                    (i + 1, true)
                }
                Some(i) => {
                    self.state = Lex::Quoted(rest[i]);
                    (i + 1, false)
                }
                None => (rest.len(), false),
            },
            Lex::Quoted(quote) => match memchr::memchr(quote, rest) {
                Some(i) => {
                    self.state = Lex::Tag;
                    (i + 1, false)
                }
                None => (rest.len(), false),
            },
        })
    }
}

impl Lexer {
    /// Takes the outcome of [`closing_run`] over `len` bytes: the token ended (back to
    /// text), or it goes on in the carried state.
    fn closed(&mut self, found: Result<usize, Lex>, len: usize) -> (usize, bool) {
        match found {
            Ok(end) => {
                self.state = Lex::Text;
                (end, true)
            }
            Err(carried) => {
                self.state = carried;
                (len, false)
            }
        }
    }
}

/// Finds the end of a token closed by `need` copies of `mark` then `>` (`-->`, `]]>`,
/// `?>`), `before` marks having ended the previous bytes. `Ok(index past the >)`, or
/// `Err(the state to carry on in)` when `rest` holds no end.
fn closing_run(
    rest: &[u8],
    before: u8,
    mark: u8,
    need: u8,
    state: impl Fn(u8) -> Lex,
) -> Result<usize, Lex> {
    for i in memchr::memchr_iter(b'>', rest) {
        let in_chunk = rest[..i]
            .iter()
            .rev()
            .take(usize::from(need))
            .take_while(|&&b| b == mark)
            .count() as u8;
        let marks = if usize::from(in_chunk) == i {
            in_chunk + before
        } else {
            in_chunk
        };
        if marks >= need {
            return Ok(i + 1);
        }
    }
    let tail = rest
        .iter()
        .rev()
        .take(usize::from(need))
        .take_while(|&&b| b == mark)
        .count() as u8;
    let carried = if usize::from(tail) == rest.len() {
        (tail + before).min(need)
    } else {
        tail
    };
    Err(state(carried))
}

/// A [`BufRead`] that passes `inner` through, judging every consumed byte.
pub struct TokenGuard<R> {
    inner: R,
    lexer: Lexer,
    /// Set when consumed bytes broke a rule; returned by every later read.
    failed: Option<TokenGuardError>,
}

impl<R: BufRead> TokenGuard<R> {
    /// Guards `inner`: no token may exceed `max_token` bytes.
    pub fn new(inner: R, max_token: usize) -> Self {
        TokenGuard {
            inner,
            lexer: Lexer::new(max_token),
            failed: None,
        }
    }

    /// Why the guard stopped the stream, once it has (whether or not a read has returned
    /// the error yet).
    pub fn failure(&self) -> Option<&TokenGuardError> {
        self.failed.as_ref()
    }

    fn error(&self) -> Option<io::Error> {
        self.failed.clone().map(io::Error::other)
    }
}

impl<R: BufRead> Read for TokenGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        match self.error() {
            // The bytes that broke the rule are not handed out.
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

impl<R: BufRead> BufRead for TokenGuard<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if self.failed.is_none() {
            // The same buffer `fill_buf` returned: no read happens here.
            if let Ok(bytes) = self.inner.fill_buf() {
                let judged = &bytes[..amount.min(bytes.len())];
                if let Err(e) = self.lexer.feed(judged) {
                    self.failed = Some(e);
                }
            }
        }
        self.inner.consume(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `xml` in chunks of `chunk` bytes; the longest run the lexer saw, or the error.
    fn longest(xml: &[u8], chunk: usize, max: usize) -> Result<(), TokenGuardError> {
        let mut lexer = Lexer::new(max);
        for piece in xml.chunks(chunk) {
            lexer.feed(piece)?;
        }
        Ok(())
    }

    fn accepted(xml: &str, max: usize) -> bool {
        // Every chunking must agree.
        let verdicts: Vec<bool> = [1, 2, 3, 5, 7, 64]
            .iter()
            .map(|&c| longest(xml.as_bytes(), c, max).is_ok())
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
    fn quoted_attribute_values_belong_to_their_tag() {
        assert!(accepted(r#"<a b=">>"/>"#, 11));
        assert!(!accepted(r#"<a b=">>"/>"#, 10));
        assert!(!accepted(r#"<a b=">>>>>>>>>>>>>>>>"/>"#, 10));
        assert!(!accepted(r#"</a ' >>>>>>>>>>>>>>>>'>"#, 10));
    }

    #[test]
    fn comments_sections_and_instructions_end_at_their_own_close() {
        assert!(accepted("<!-- a -->text", 10));
        assert!(!accepted("<!-- y>y>y>y>y>y>y>y> -->", 10));
        assert!(accepted("<!---->", 10));
        assert!(
            !accepted("<!--->-->", 6),
            "--> overlapping the opener does not close"
        );
        assert!(!accepted("<![CDATA[ ]>]>]>]>]> ]]>", 10));
        assert!(accepted("<![CDATA[ab]]><x/>", 14));
        assert!(!accepted("<?pi a>b>c>d>e>f ?>", 10));
        assert!(accepted("<?xml version='1.0'?><a/>", 24));
    }

    #[test]
    fn each_token_is_counted_on_its_own() {
        let many = "<record><a>12345</a><!-- c --><![CDATA[x]]></record>".repeat(1000);
        assert!(accepted(&many, 13));
        assert!(!accepted(&many, 12), "<![CDATA[x]]> is 13 bytes");
    }

    #[test]
    fn declarations_are_refused_at_their_first_byte() {
        assert_eq!(
            longest(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>", 4, 1000),
            Err(TokenGuardError::Declaration)
        );
    }

    #[test]
    fn the_reader_stops_before_buffering_a_long_token() {
        let mut xml = b"<org_name>".to_vec();
        xml.extend(std::iter::repeat_n(b"x>".as_slice(), 100_000).flatten());
        let mut guard = TokenGuard::new(std::io::BufReader::with_capacity(4096, &xml[..]), 1024);
        let mut out = Vec::new();
        let err = guard.read_to_end(&mut out).unwrap_err();
        assert!(err.to_string().contains("limit of 1024"), "{err}");
        assert!(out.len() < 1024 + 4096 + 16, "{}", out.len());
    }
}
