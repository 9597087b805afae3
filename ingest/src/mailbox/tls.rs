//! Mailbox TLS: a TCP connection and the account's TLS settings -> a TLS stream to the
//! IMAP server (implicit TLS, or after STARTTLS), trusting the system roots plus the
//! account's `ca_file`.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;
use tracing::debug;

use super::error::{io_error, MailboxError};
use super::session::Io;
use crate::config::ImapConfig;

/// TLS over `tcp` to `cfg.host`, trusting the system roots and `cfg.ca_file`.
pub(super) async fn tls_handshake(cfg: &ImapConfig, tcp: TcpStream) -> Result<Io, MailboxError> {
    let connector = tls_connector(cfg.ca_file.as_deref())?;
    let host = cfg.host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| MailboxError::Config(format!("host {:?} as a TLS name: {e}", cfg.host)))?;
    match connector.connect(name, tcp).await {
        Ok(tls) => Ok(Box::new(tls)),
        Err(e) => {
            // rustls errors (certificate, alerts) come wrapped in io::Error.
            if let Some(tls_error) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Err(MailboxError::Tls(tls_error.to_string()))
            } else {
                Err(io_error("TLS handshake", e))
            }
        }
    }
}

pub(super) fn tls_connector(ca_file: Option<&Path>) -> Result<TlsConnector, MailboxError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        debug!(error = %e, "a system CA certificate could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| MailboxError::Config(format!("ca_file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(MailboxError::Config(format!(
                "ca_file {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| MailboxError::Config(format!("ca_file {}: {e}", path.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(MailboxError::Config(
            "no trusted CA certificates: the system has none and no ca_file is set".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MailboxError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
