//! TLS client settings shared by every connection that may leave the machine (ClickHouse
//! over `https://`; IMAP).
//!
//! In: an optional extra CA file (PEM), as `[clickhouse] ca_file` / `[imap] ca_file`.
//! Out: a rustls [`ClientConfig`] (ring provider, TLS 1.2 and 1.3) trusting the system's
//! roots plus that file, with no ALPN set (callers add their own if they need one).
//! Fails ([`TlsError`]) when the file cannot be read or holds no usable certificate, or
//! when there is nothing to trust at all; the message names the file and the reason.
//! Also the one rule for where clear text is allowed ([`is_loopback_host`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
pub use tokio_rustls::rustls::ClientConfig;

/// Why no TLS client configuration could be built. Never transient: the operator has to
/// fix a file or the system's CA store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// The extra CA file cannot be read, or holds nothing usable.
    #[error("ca_file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// The system has no CA certificates and no `ca_file` is set.
    #[error(
        "no trusted CA certificates: the system has none (install ca-certificates) and no \
         ca_file is set"
    )]
    NoRoots,
    /// rustls refused the settings (the provider lacks the protocol versions).
    #[error("TLS settings: {0}")]
    Settings(rustls::Error),
}

/// A client configuration trusting the system's roots and the certificates of `ca_file`.
///
/// System certificates that fail to load or parse are skipped (logged at debug level);
/// every certificate of `ca_file` must be usable.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system CA certificate could not be loaded");
    }
    let (_, skipped) = roots.add_parsable_certificates(native.certs);
    if skipped > 0 {
        tracing::debug!(
            skipped,
            "system CA certificates rustls cannot use were skipped"
        );
    }
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsError::CaFile {
                path: path.to_owned(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Settings)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The certificates of a PEM file (other PEM sections, such as keys, are skipped). At
/// least one is required. Also the check `Config::load` runs before anything connects.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::Error as PemError;
    let fail = |reason: String| TlsError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| match e {
            PemError::Io(io) => fail(format!("cannot read: {io}")),
            other => fail(format!("not PEM: {other}")),
        })?;
    if certs.is_empty() {
        return Err(fail(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// Whether `host` (a name, an address, or a bracketed IPv6 address) is this machine:
/// `localhost`, 127.0.0.0/8 or ::1. Clear text is allowed there without asking.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "clickhouse",
            "localhost.example.org",
            "::ffff:10.0.0.1",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn ca_file_errors_name_the_file_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("missing.pem") && text.contains("cannot read"),
            "{text}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let text = read_ca_file(&empty).unwrap_err().to_string();
        assert!(
            text.contains("empty.pem") && text.contains("no PEM certificate"),
            "{text}"
        );

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = read_ca_file(&broken).unwrap_err().to_string();
        assert!(
            text.contains("broken.pem") && text.contains("not PEM"),
            "{text}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = client_config(Some(&garbage)).unwrap_err().to_string();
        assert!(
            text.contains("garbage.pem") && text.contains("not a usable CA certificate"),
            "{text}"
        );
    }

    #[test]
    fn system_roots_are_enough_without_ca_file() {
        // Debian's ca-certificates is installed on every machine the tests run on.
        let config = client_config(None).unwrap();
        assert!(config.alpn_protocols.is_empty());
    }
}
