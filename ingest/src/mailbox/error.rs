//! Mailbox errors: what an IMAP server or connection did -> a [`MailboxError`], with
//! whether retrying on a new connection may help. Server texts are cut short: the
//! library's parse errors quote whole message bodies.

use async_imap::imap_proto::{ResponseCode, Status};

/// Longest server text kept in an error.
pub const MAX_ERROR_TEXT: usize = 300;

/// Why an IMAP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// The configuration cannot work (bad CA file, no trusted roots, bad folder name).
    #[error("IMAP configuration: {0}")]
    Config(String),
    /// The TCP connection could not be made.
    #[error("cannot connect to IMAP server {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    /// TLS failed for a reason that retrying will not fix (untrusted or mismatched
    /// certificate, no common protocol version).
    #[error("TLS with IMAP server: {0}")]
    Tls(String),
    /// The server refused the credentials.
    #[error("IMAP login refused: {0}")]
    Auth(String),
    /// The server could not check the credentials now (`[UNAVAILABLE]`).
    #[error("IMAP login temporarily impossible: {0}")]
    AuthUnavailable(String),
    /// The server answered `NO` to a command.
    #[error("IMAP server refused {command}: {message}")]
    Refused {
        command: &'static str,
        message: String,
        transient: bool,
    },
    /// The server answered `BAD`: the command was malformed or not supported.
    #[error("IMAP server rejected {command} as invalid: {message}")]
    Rejected {
        command: &'static str,
        message: String,
    },
    /// The server closed the session (`BYE`, or the connection ended).
    #[error("IMAP server closed the connection: {0}")]
    Bye(String),
    /// The server sent something this client cannot use.
    #[error("IMAP protocol: {0}")]
    Protocol(String),
    /// Reading from or writing to the connection failed.
    #[error("IMAP connection, during {during}: {source}")]
    Io {
        during: &'static str,
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("IMAP server did not answer in time during {0}")]
    Timeout(&'static str),
}

impl MailboxError {
    /// Whether trying again later (on a new connection) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            MailboxError::Config(_)
            | MailboxError::Tls(_)
            | MailboxError::Auth(_)
            | MailboxError::Rejected { .. } => false,
            MailboxError::Refused { transient, .. } => *transient,
            MailboxError::Connect { .. }
            | MailboxError::AuthUnavailable(_)
            | MailboxError::Bye(_)
            | MailboxError::Protocol(_)
            | MailboxError::Io { .. }
            | MailboxError::Timeout(_) => true,
        }
    }
}

/// Response codes (RFC 5530 and others) after which a refused command will fail again.
const PERMANENT_CODES: &[&str] = &[
    "AUTHENTICATIONFAILED",
    "AUTHORIZATIONFAILED",
    "NOPERM",
    "NONEXISTENT",
    "CANNOT",
    "CLIENTBUG",
    "PRIVACYREQUIRED",
    "TRYCREATE",
];

/// The bracketed response code at the start of a server text (`[ALREADYEXISTS] ...`), as
/// imap-proto leaves the codes it does not know in the text.
pub(super) fn response_code(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('[')?;
    let end = rest.find([']', ' '])?;
    Some(&rest[..end])
}

/// Cuts a server text to [`MAX_ERROR_TEXT`] characters.
pub(super) fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// A tagged `NO` or `BAD` as an error.
pub(super) fn refusal(command: &'static str, status: &Status, text: &str) -> MailboxError {
    let message = clip(text);
    match status {
        Status::Bad => MailboxError::Rejected { command, message },
        _ => {
            let transient = !response_code(text)
                .is_some_and(|code| PERMANENT_CODES.iter().any(|p| code.eq_ignore_ascii_case(p)));
            MailboxError::Refused {
                command,
                message,
                transient,
            }
        }
    }
}

/// A response text with its code in front again, as sent: imap-proto takes the codes it
/// knows out of the text.
pub(super) fn outcome_text(outcome: &async_imap::imap_proto::Outcome<'_>) -> String {
    let info = outcome.information.as_deref().unwrap_or("");
    let code = match &outcome.code {
        None => return info.to_owned(),
        Some(ResponseCode::TryCreate) => "TRYCREATE".to_owned(),
        Some(ResponseCode::Alert) => "ALERT".to_owned(),
        Some(ResponseCode::Parse) => "PARSE".to_owned(),
        Some(ResponseCode::ReadOnly) => "READ-ONLY".to_owned(),
        Some(other) => format!("{other:?}"),
    };
    format!("[{code}] {info}")
}

/// An async-imap error from `during` as ours.
pub(super) fn imap_error(during: &'static str, e: async_imap::error::Error) -> MailboxError {
    use async_imap::error::Error as E;
    match e {
        E::Io(source) => io_error(during, source),
        E::ConnectionLost => MailboxError::Bye(format!("connection lost during {during}")),
        E::No(text) => MailboxError::Refused {
            command: during,
            transient: !PERMANENT_CODES.iter().any(|c| text.contains(c)),
            message: clip(&library_text(&text)),
        },
        E::Bad(text) => MailboxError::Rejected {
            command: during,
            message: clip(&library_text(&text)),
        },
        E::Validate(v) => MailboxError::Config(format!("{during}: {v}")),
        other => MailboxError::Protocol(clip(&format!("{during}: {other}"))),
    }
}

pub(super) fn io_error(during: &'static str, source: std::io::Error) -> MailboxError {
    // The stream's parse errors carry the unparsed input: keep the error short.
    let source = if source.to_string().len() > MAX_ERROR_TEXT {
        std::io::Error::new(source.kind(), clip(&source.to_string()))
    } else {
        source
    };
    MailboxError::Io { during, source }
}

/// async-imap formats `NO`/`BAD` as `code: .., info: Some("text")` (or `information:
/// Some("text")`): keep the text.
pub(super) fn library_text(text: &str) -> String {
    match text.split_once("Some(\"") {
        Some((_, rest)) => rest
            .split("\")")
            .next()
            .unwrap_or(rest)
            .replace("\\\"", "\""),
        None => text.to_owned(),
    }
}

/// A failed LOGIN / AUTHENTICATE: `[UNAVAILABLE]` is transient, other refusals are not.
pub(super) fn login_error(during: &'static str, e: async_imap::error::Error) -> MailboxError {
    use async_imap::error::Error as E;
    match e {
        E::No(text) | E::Bad(text) => {
            let text = clip(&library_text(&text));
            if response_code(&text).is_some_and(|c| c.eq_ignore_ascii_case("UNAVAILABLE")) {
                MailboxError::AuthUnavailable(text)
            } else {
                MailboxError::Auth(text)
            }
        }
        E::Validate(v) => MailboxError::Config(format!("{during}: {v}")),
        other => imap_error(during, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified() {
        assert_eq!(
            response_code("[ALREADYEXISTS] Mailbox already exists"),
            Some("ALREADYEXISTS")
        );
        assert_eq!(response_code("No such thing"), None);
        let e = refusal("UID MOVE", &Status::No, "[OVERQUOTA] Quota exceeded");
        assert!(e.is_transient(), "{e}");
        let e = refusal("UID MOVE", &Status::No, "[TRYCREATE] Mailbox doesn't exist");
        assert!(!e.is_transient(), "{e}");
        let e = refusal("UID FETCH", &Status::Bad, "Error in IMAP command");
        assert!(!e.is_transient(), "{e}");
        let long = "x".repeat(10_000);
        let e = refusal("NOOP", &Status::No, &long);
        assert!(e.to_string().len() < MAX_ERROR_TEXT + 100);
    }

    #[test]
    fn login_errors_are_classified() {
        use async_imap::error::Error as E;
        let e = login_error(
            "LOGIN",
            E::No(
                "code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")".into(),
            ),
        );
        let MailboxError::Auth(text) = &e else {
            panic!("{e:?}");
        };
        assert_eq!(text, "[AUTHENTICATIONFAILED] Authentication failed.");
        assert!(!e.is_transient());
        let e = login_error(
            "LOGIN",
            E::No(
                "code: None, info: Some(\"[UNAVAILABLE] Temporary authentication failure.\")"
                    .into(),
            ),
        );
        assert!(matches!(e, MailboxError::AuthUnavailable(_)), "{e:?}");
        assert!(e.is_transient());
        let e = login_error("LOGIN", E::ConnectionLost);
        assert!(e.is_transient(), "{e:?}");
    }
}
