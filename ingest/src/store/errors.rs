//! Store errors: a failed ClickHouse call -> a [`StoreError`] whose [`FailureKind`] decides
//! what becomes of the batch, and whether the call itself is tried again at once.
//!
//! One table ([`CODE_TABLE`]) classifies ClickHouse error codes; answers without a code
//! (a proxy's `502 Bad Gateway` page, an empty `503`) are classified by their HTTP status.
//! The rule: the server's trouble (unreachable, overloaded, out of disk or memory,
//! refusing our credentials, a proxy failing, an error code we do not know) is never the
//! mail's fault and keeps it for later; only errors about the values we sent (`Code: 117`,
//! `53`, ...) count against the rows' report; a missing table means `schema apply` is due.
//!
//! TLS failures (a certificate that is not trusted or does not name the host, a port that
//! does not speak TLS, an unreadable `ca_file`) are [`StoreError::Tls`]: the settings are
//! wrong, so the call is not repeated and a command gives up at once instead of calling
//! the server "unreachable" after every retry; the batch's mail is kept like for an
//! unreachable server (`store_unreachable`), never quarantined.

use crate::failure::FailureKind;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Could not reach the server (refused, reset, timed out), after every retry.
    #[error("ClickHouse at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// TLS with the server failed in a way waiting does not cure (its certificate is not
    /// trusted or names another host, the port speaks no TLS, `ca_file` is unusable): an
    /// operator must fix `[clickhouse] url` / `ca_file` or the server's certificate.
    #[error("ClickHouse at {url}: TLS: {message}")]
    Tls { url: String, message: String },
    /// The server (or a proxy before it) is unwell or refuses us: disk full, memory,
    /// overloaded after every retry, authentication, an unknown error.
    #[error("ClickHouse is unavailable: {0}")]
    Unavailable(String),
    /// The query needed more memory than the server allows (`Code: 241`): a smaller
    /// batch may pass.
    #[error("ClickHouse ran out of memory: {0}")]
    MemoryLimit(String),
    /// The server refused the data (`Code: 117`, `53`, ...): not retried.
    #[error("ClickHouse refused the data: {0}")]
    Rejected(String),
    /// The database is not set up (run `dmarc-ingest schema apply`).
    #[error("ClickHouse schema: {0}")]
    Schema(String),
    /// A report's values do not fit the schema.
    #[error("{0}")]
    BadReport(String),
}

impl StoreError {
    /// The failure's class: what becomes of the inputs of the batch.
    pub fn kind(&self) -> FailureKind {
        match self {
            // Not the mail's fault: kept and tried later, like an unreachable server.
            StoreError::Unreachable { .. } | StoreError::Tls { .. } => {
                FailureKind::StoreUnreachable
            }
            StoreError::Unavailable(_) | StoreError::MemoryLimit(_) => {
                FailureKind::StoreUnavailable
            }
            StoreError::Rejected(_) => FailureKind::StoreRejected,
            StoreError::Schema(_) => FailureKind::StoreSchema,
            StoreError::BadReport(_) => FailureKind::BadReport,
        }
    }

    /// Whether waiting and trying again may succeed without anyone changing anything: a
    /// command or the daemon's start-up keeps waiting on these, and gives up at once on
    /// the others. A TLS failure is not transient (the settings are wrong) although its
    /// batch's mail is kept ([`StoreError::kind`] decides the fate of mail).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Tls { .. } => false,
            other => other.kind().is_transient(),
        }
    }
}

/// How a ClickHouse error code is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Goes away by waiting (overload, timeouts, network between servers, the publish
    /// lock held): the call is retried with backoff; after the last attempt the batch
    /// waits (`store_unavailable`).
    Busy,
    /// The server is unwell or refuses us in a way seconds will not cure (disk full,
    /// credentials, read-only user): the batch waits, the call is not repeated now.
    Unwell,
    /// Out of memory for this query: the publish splits its batch.
    Memory,
    /// The values sent are wrong: the report's mail is tried alone, then quarantined.
    Data,
    /// The schema is missing or old: `schema apply`.
    Schema,
}

/// ClickHouse error codes by class, with their names (from ClickHouse's ErrorCodes.cpp).
/// A code not listed is [`Class::Unwell`].
pub const CODE_TABLE: &[(u32, &str, Class)] = &[
    (3, "UNEXPECTED_END_OF_FILE", Class::Busy),
    (32, "ATTEMPT_TO_READ_AFTER_EOF", Class::Busy),
    (33, "CANNOT_READ_ALL_DATA", Class::Busy),
    (159, "TIMEOUT_EXCEEDED", Class::Busy),
    (160, "TOO_SLOW", Class::Busy),
    (202, "TOO_MANY_SIMULTANEOUS_QUERIES", Class::Busy),
    (203, "NO_FREE_CONNECTION", Class::Busy),
    (209, "SOCKET_TIMEOUT", Class::Busy),
    (210, "NETWORK_ERROR", Class::Busy),
    (216, "QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING", Class::Busy),
    (236, "ABORTED", Class::Busy),
    (242, "TABLE_IS_READ_ONLY", Class::Busy),
    (252, "TOO_MANY_PARTS", Class::Busy),
    (285, "TOO_FEW_LIVE_REPLICAS", Class::Busy),
    (319, "UNKNOWN_STATUS_OF_INSERT", Class::Busy),
    (373, "SESSION_IS_LOCKED", Class::Busy),
    (394, "QUERY_WAS_CANCELLED", Class::Busy),
    (425, "SYSTEM_ERROR", Class::Busy),
    (999, "KEEPER_EXCEPTION", Class::Busy),
    (164, "READONLY", Class::Unwell),
    (192, "UNKNOWN_USER", Class::Unwell),
    (193, "WRONG_PASSWORD", Class::Unwell),
    (194, "REQUIRED_PASSWORD", Class::Unwell),
    (195, "IP_ADDRESS_NOT_ALLOWED", Class::Unwell),
    (243, "NOT_ENOUGH_SPACE", Class::Unwell),
    (291, "DATABASE_ACCESS_DENIED", Class::Unwell),
    (497, "ACCESS_DENIED", Class::Unwell),
    (516, "AUTHENTICATION_FAILED", Class::Unwell),
    (173, "CANNOT_ALLOCATE_MEMORY", Class::Memory),
    (241, "MEMORY_LIMIT_EXCEEDED", Class::Memory),
    (6, "CANNOT_PARSE_TEXT", Class::Data),
    (26, "CANNOT_PARSE_QUOTED_STRING", Class::Data),
    (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", Class::Data),
    (38, "CANNOT_PARSE_DATE", Class::Data),
    (41, "CANNOT_PARSE_DATETIME", Class::Data),
    (53, "TYPE_MISMATCH", Class::Data),
    (69, "ARGUMENT_OUT_OF_BOUND", Class::Data),
    (70, "CANNOT_CONVERT_TYPE", Class::Data),
    (72, "CANNOT_PARSE_NUMBER", Class::Data),
    (117, "INCORRECT_DATA", Class::Data),
    (130, "CANNOT_READ_ARRAY_FROM_TEXT", Class::Data),
    (131, "TOO_LARGE_STRING_SIZE", Class::Data),
    (321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", Class::Data),
    (8, "THERE_IS_NO_COLUMN", Class::Schema),
    (10, "NOT_FOUND_COLUMN_IN_BLOCK", Class::Schema),
    (16, "NO_SUCH_COLUMN_IN_TABLE", Class::Schema),
    (47, "UNKNOWN_IDENTIFIER", Class::Schema),
    (60, "UNKNOWN_TABLE", Class::Schema),
    (81, "UNKNOWN_DATABASE", Class::Schema),
];

/// The class of an error answer: by its ClickHouse code, else by the HTTP status a proxy
/// or the client put in front of the text, else [`Class::Unwell`].
pub fn class_of(message: &str) -> Class {
    if let Some(code) = server_code(message) {
        return CODE_TABLE
            .iter()
            .find(|(c, _, _)| *c == code)
            .map_or(Class::Unwell, |(_, _, class)| *class);
    }
    match http_status(message) {
        // Gateway timeouts and throttling pass with waiting.
        Some(429 | 502 | 503 | 504) => Class::Busy,
        // Anything else that is not ClickHouse speaking: a proxy refusing us (401, 403),
        // a misrouted URL (404), an internal error: not the data's fault.
        _ => Class::Unwell,
    }
}

/// Whether the error text is about our credentials or rights (for a clear message).
pub fn is_access_problem(message: &str) -> bool {
    matches!(
        server_code(message),
        Some(164 | 192 | 193 | 194 | 195 | 291 | 497 | 516)
    ) || matches!(http_status(message), Some(401 | 403))
}

/// `Code: 117, e.displayText() = ...` or `Code: 117. DB::Exception: ...` -> 117.
pub fn server_code(message: &str) -> Option<u32> {
    let at = message.find("Code: ")? + 6;
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The HTTP status of an answer without a ClickHouse error: the client reports a bodiless
/// one as `502 Bad Gateway`; a proxy's page says it in its title or first line.
fn http_status(message: &str) -> Option<u16> {
    let text = message.trim_start();
    let leading: String = text.chars().take_while(char::is_ascii_digit).collect();
    if leading.len() == 3 {
        return leading.parse().ok();
    }
    // `<title>502 Bad Gateway</title>`, `HTTP/1.1 503 Service Unavailable`.
    let lower = text.to_ascii_lowercase();
    for marker in ["<title>", "http/1.1 ", "http/1.0 ", "<h1>"] {
        if let Some(at) = lower.find(marker) {
            let digits: String = lower[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if digits.len() == 3 {
                return digits.parse().ok();
            }
        }
    }
    None
}

/// The first line of an error text, cut to a sensible length.
pub fn first_line(message: &str) -> String {
    let line = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    crate::failure::truncate_reason(line.trim()).into_owned()
}

/// Classifies a client error. The bool says whether to repeat the call now (with
/// backoff).
pub fn classify(url: &str, e: clickhouse::error::Error) -> (StoreError, bool) {
    use clickhouse::error::Error as E;
    if let Some(tls) = rustls_error(&e) {
        return (
            StoreError::Tls {
                url: url.to_owned(),
                message: tls_message(tls),
            },
            false,
        );
    }
    match e {
        E::Network(_) | E::TimedOut => (
            StoreError::Unreachable {
                url: url.to_owned(),
                message: error_chain(&e),
            },
            true,
        ),
        E::BadResponse(message) => {
            let class = class_of(&message);
            let shown = first_line(&message);
            match class {
                Class::Busy => (StoreError::Unavailable(shown), true),
                Class::Unwell if is_access_problem(&message) => (
                    StoreError::Unavailable(format!(
                        "{shown} (ClickHouse refuses our user: check [clickhouse] user, password and its grants)"
                    )),
                    false,
                ),
                Class::Unwell => (StoreError::Unavailable(shown), false),
                Class::Memory => (StoreError::MemoryLimit(shown), false),
                Class::Data => (StoreError::Rejected(shown), false),
                Class::Schema => (
                    StoreError::Schema(format!("{shown} (run `dmarc-ingest schema apply`)")),
                    false,
                ),
            }
        }
        // 24.x+ (validation on): the row type and the table's columns disagree, e.g. a
        // migration not applied, or a table altered by hand.
        E::SchemaMismatch(message) => (
            StoreError::Schema(format!(
                "the rows do not match the table's columns: {} (run `dmarc-ingest schema apply`; a table changed by hand must be restored)",
                first_line(&message)
            )),
            false,
        ),
        // The client's own trouble (a row it cannot encode, a bad URL): not the mail's
        // fault either; the batch waits and the error is logged.
        other => (StoreError::Unavailable(error_chain(&other)), false),
    }
}

/// The rustls error somewhere in `e`'s chain (hyper-rustls hands it up inside an
/// `io::Error`, whose own `source()` skips it).
fn rustls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a tokio_rustls::rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<tokio_rustls::rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = rustls_error(inner) {
                return Some(tls);
            }
        }
        next = err.source();
    }
    None
}

/// What a TLS failure means for the operator.
fn tls_message(e: &tokio_rustls::rustls::Error) -> String {
    use tokio_rustls::rustls::{CertificateError, Error as T};
    let hint = match e {
        T::InvalidCertificate(CertificateError::NotValidForName)
        | T::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the server's certificate names another host: use that name in [clickhouse] url"
        }
        T::InvalidCertificate(CertificateError::Expired)
        | T::InvalidCertificate(CertificateError::ExpiredContext { .. })
        | T::InvalidCertificate(CertificateError::NotValidYet)
        | T::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => {
            "the server's certificate is outside its validity period (or this clock is wrong)"
        }
        T::InvalidCertificate(_) => {
            "the server's certificate is not trusted: set [clickhouse] ca_file to the CA \
             certificate (PEM) that signed it"
        }
        T::InvalidMessage(_) | T::InappropriateMessage { .. } => {
            "the port does not speak TLS: is it the server's HTTPS port? A plain HTTP port \
             needs an http:// URL"
        }
        _ => "check [clickhouse] url and ca_file",
    };
    format!("{e} ({hint})")
}

/// An error with its sources, `a: b: c`. A source whose text the chain already ends
/// with is left out: many errors print their source in their own message (the client's
/// "network error: client error (Connect)" has "client error (Connect)" as its source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !text.is_empty() && !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn a_chain_says_each_thing_once() {
        let e = Layer(
            "network error: client error (Connect)",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer(
                    "tcp connect error: Connection refused",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "network error: client error (Connect): tcp connect error: Connection refused"
        );
    }

    fn bad(m: &str) -> (StoreError, bool) {
        classify("http://x", clickhouse::error::Error::BadResponse(m.into()))
    }

    #[test]
    fn the_table_has_one_row_per_code() {
        let mut codes: Vec<u32> = CODE_TABLE.iter().map(|(c, _, _)| *c).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }

    #[test]
    fn every_answer_lands_in_its_class() {
        use FailureKind::*;
        let cases: &[(&str, FailureKind, bool)] = &[
            // 18.16 and current servers word it differently.
            ("Code: 117, e.displayText() = DB::Exception: bad data", StoreRejected, false),
            ("Code: 53. DB::Exception: Type mismatch. (TYPE_MISMATCH)", StoreRejected, false),
            ("Code: 216, e.displayText() = DB::Exception: Query with id = x is already running.", StoreUnavailable, true),
            ("Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts", StoreUnavailable, true),
            ("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)", StoreUnavailable, false),
            ("Code: 241. DB::Exception: Memory limit (total) exceeded", StoreUnavailable, false),
            ("Code: 516. DB::Exception: default: Authentication failed", StoreUnavailable, false),
            ("Code: 497. DB::Exception: grafana: Not enough privileges", StoreUnavailable, false),
            ("Code: 60, e.displayText() = DB::Exception: Table dmarc.records doesn't exist.", StoreSchema, false),
            ("Code: 62, e.displayText() = DB::Exception: Syntax error", StoreUnavailable, false),
            ("Code: 4242. DB::Exception: something new", StoreUnavailable, false),
            ("502 Bad Gateway", StoreUnavailable, true),
            ("503 Service Unavailable", StoreUnavailable, true),
            ("<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", StoreUnavailable, true),
            ("<html><head><title>403 Forbidden</title></head></html>", StoreUnavailable, false),
            ("", StoreUnavailable, false),
        ];
        for (text, kind, again) in cases {
            let (e, retry) = bad(text);
            assert_eq!(e.kind(), *kind, "{text:?}: {e}");
            assert_eq!(retry, *again, "{text:?}");
            assert!(e.is_transient() || *kind == StoreRejected, "{text:?}");
        }
        assert!(matches!(bad("Code: 241. x").0, StoreError::MemoryLimit(_)));
        let (timeout, again) = classify("http://x", clickhouse::error::Error::TimedOut);
        assert_eq!((timeout.kind(), again), (StoreUnreachable, true));
    }

    #[test]
    fn a_schema_mismatch_found_by_validation_is_a_schema_error() {
        let (e, again) = classify(
            "http://ch:8123",
            clickhouse::error::Error::SchemaMismatch(
                "field `source_ip_v6`: expected FixedString(16), found IPv6".into(),
            ),
        );
        assert!(!again);
        assert_eq!(e.kind(), FailureKind::StoreSchema);
        let text = e.to_string();
        assert!(
            text.contains("source_ip_v6") && text.contains("schema apply"),
            "{text}"
        );
    }

    #[test]
    fn access_problems_say_what_to_check() {
        let (e, _) =
            bad("Code: 516. DB::Exception: dmarc: Authentication failed: password is incorrect");
        assert!(
            e.to_string().contains("check [clickhouse] user, password"),
            "{e}"
        );
        let (e, _) = bad("<html><title>401 Authorization Required</title></html>");
        assert!(e.to_string().contains("check [clickhouse]"), "{e}");
    }

    #[test]
    fn tls_failures_are_settings_not_retried_and_keep_the_mail() {
        use crate::failure::Retry;
        use tokio_rustls::rustls::{CertificateError, Error as T};
        // As hyper-rustls hands it up: rustls' error in an io::Error in the connector's.
        let wrapped = |tls: T| {
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
            clickhouse::error::Error::Network(Box::new(io))
        };
        let cases = [
            (
                T::InvalidCertificate(CertificateError::UnknownIssuer),
                "set [clickhouse] ca_file",
            ),
            (
                T::InvalidCertificate(CertificateError::NotValidForName),
                "names another host",
            ),
            (
                T::InvalidCertificate(CertificateError::Expired),
                "validity period",
            ),
            (
                T::InvalidMessage(tokio_rustls::rustls::InvalidMessage::InvalidContentType),
                "does not speak TLS",
            ),
        ];
        for (tls, hint) in cases {
            let (e, again) = classify("https://ch.example:8443", wrapped(tls));
            assert!(matches!(e, StoreError::Tls { .. }), "{e:?}");
            assert!(!again, "{e}: not repeated");
            assert!(!e.is_transient(), "{e}: commands give up at once");
            assert_eq!(e.kind(), FailureKind::StoreUnreachable, "{e}");
            assert_eq!(e.kind().retry(), Retry::Later, "{e}: the mail is kept");
            let text = e.to_string();
            assert!(
                text.contains("https://ch.example:8443") && text.contains(hint),
                "{text}"
            );
        }
        // Plain network trouble stays unreachable and retried.
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let (e, again) = classify(
            "https://x",
            clickhouse::error::Error::Network(Box::new(refused)),
        );
        assert!(matches!(e, StoreError::Unreachable { .. }) && again && e.is_transient());
    }

    #[test]
    fn long_answers_are_cut() {
        let page = format!("<html>{}</html>", "x".repeat(100_000));
        let (e, _) = bad(&page);
        assert!(e.to_string().len() < 1200, "{}", e.to_string().len());
    }
}
