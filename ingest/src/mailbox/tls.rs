//! Mailbox TLS: a TCP connection and the account's TLS settings -> a TLS stream to the
//! IMAP server (implicit TLS, or after STARTTLS), trusting the system roots plus the
//! account's `ca_file`.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

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
    use crate::tls::TlsError;
    let config = crate::tls::client_config(ca_file).map_err(|e| match e {
        TlsError::CaFile { .. } | TlsError::NoRoots => MailboxError::Config(e.to_string()),
        TlsError::Settings(_) => MailboxError::Tls(e.to_string()),
    })?;
    Ok(TlsConnector::from(Arc::new(config)))
}
