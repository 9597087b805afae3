//! Sending: mail over SMTP (`[smtp]`, lettre: implicit TLS, STARTTLS, or plain to
//! loopback only; login when configured) and JSON POSTs to the webhook; and the delivery
//! pass that sends the alert events due ([`super::deliver::plan`]) and records each
//! attempt in `deliveries`.
//!
//! In: the config, the store, the time. Out: a [`DeliverySummary`]; a store error stops
//! the pass (what was sent and not yet recorded is sent again by the next pass, with the
//! same Message-ID). A failed send is recorded and tried again later, never an error here.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use lettre::message::{header::ContentType, Mailbox, Message, MessageBuilder};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::deliver::{self, Channel, Due};
use crate::config::{Config, SmtpConfig, SmtpTls};
use crate::store::alerts::DeliveryRow;
use crate::store::{Store, StoreError};

/// How long one webhook POST may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Days of `deliveries` read to know what was done (alerts are delivered for 7 days).
const DELIVERY_MEMORY_DAYS: u32 = 8;
/// Failures in a row on a channel after which a pass leaves the channel's other
/// deliveries to the next pass.
const CHANNEL_FAILURES_PER_PASS: usize = 3;
/// Delivery rows written per INSERT.
const RECORD_BATCH: usize = 20;

/// The SMTP server mail goes through.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The whole conversation's deadline (lettre's timeout is per read: a server that
    /// stops answering mid-way, as after a refused login, could hold it for minutes).
    deadline: Duration,
}

impl Mailer {
    /// A mailer for `[smtp]` (no connection is made yet). Fails when the CA file or the
    /// TLS settings are unusable.
    pub fn new(config: &SmtpConfig) -> Result<Mailer, String> {
        let host = config.host.trim();
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("smtp.from {:?}: {e}", config.from))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(config.port)
            .timeout(Some(Duration::from_secs(config.timeout_secs)));
        if config.tls != SmtpTls::None {
            let mut tls = TlsParameters::builder(host.to_owned());
            if let Some(path) = config
                .ca_file
                .as_ref()
                .filter(|p| !p.as_os_str().is_empty())
            {
                for der in crate::tls::read_ca_file(path).map_err(|e| format!("smtp.{e}"))? {
                    let cert = Certificate::from_der(der.to_vec())
                        .map_err(|e| format!("smtp.ca_file {}: {e}", path.display()))?;
                    tls = tls.add_root_certificate(cert);
                }
            }
            let tls = tls
                .build_rustls()
                .map_err(|e| format!("smtp TLS settings: {e}"))?;
            builder = builder.tls(match config.tls {
                SmtpTls::Tls => Tls::Wrapper(tls),
                _ => Tls::Required(tls),
            });
        }
        if !config.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                config.username.clone(),
                config.password.clone(),
            ));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            deadline: Duration::from_secs(config.timeout_secs),
        })
    }

    /// A message from the configured sender to `to`, with this Message-ID (no brackets).
    pub fn message(&self, to: &[String], message_id: &str) -> Result<MessageBuilder, String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .message_id(Some(format!("<{message_id}>")));
        for address in to {
            let mailbox: Mailbox = address
                .parse()
                .map_err(|e| format!("recipient {address:?}: {e}"))?;
            builder = builder.to(mailbox);
        }
        Ok(builder)
    }

    /// The sender's domain (for Message-IDs).
    pub fn from_domain(&self) -> String {
        self.from.email.domain().to_owned()
    }

    /// Sends one message; the error says why the server or the connection refused it.
    pub async fn send(&self, message: Message) -> Result<(), String> {
        match tokio::time::timeout(self.deadline, self.transport.send(message)).await {
            Ok(result) => result.map(drop).map_err(|e| error_chain(&e)),
            Err(_) => Err(format!(
                "the SMTP conversation took over {} s (smtp.timeout_secs)",
                self.deadline.as_secs()
            )),
        }
    }
}

/// The webhook alerts are POSTed to.
#[derive(Clone)]
pub struct Webhook {
    url: hyper::Uri,
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl Webhook {
    /// A client for `url` (http:// only to a loopback host), trusting the system's roots.
    pub fn new(url: &str) -> Result<Webhook, String> {
        let uri: hyper::Uri = url
            .trim()
            .parse()
            .map_err(|e| format!("alerts.webhook_url {url:?}: {e}"))?;
        let host = uri.host().unwrap_or_default().to_owned();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if crate::tls::is_loopback_host(&host) => false,
            _ => {
                return Err(format!(
                    "alerts.webhook_url {url:?}: https://, or http:// to a loopback host"
                ))
            }
        };
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = if https {
            let tls = crate::tls::client_config(None).map_err(|e| format!("webhook: {e}"))?;
            builder.with_tls_config(tls)
        } else {
            // Plain HTTP to loopback needs no roots (a host without CA certificates works).
            builder.with_tls_config(
                tokio_rustls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    tokio_rustls::rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("webhook: {e}"))?
                .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
        }
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(Webhook { url: uri, client })
    }

    /// POSTs `json`; a status other than 2xx, a timeout or a connection error is an error.
    pub async fn post(&self, json: &serde_json::Value) -> Result<(), String> {
        let request = hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "dmarc-ingest")
            .body(Full::new(Bytes::from(json.to_string())))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status();
            // Read (a bounded part of) the answer, for the error and to free the connection.
            let body = http_body_util::Limited::new(response.into_body(), 4096)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ))
            }
        };
        tokio::time::timeout(WEBHOOK_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer in {} s", WEBHOOK_TIMEOUT.as_secs())))
    }
}

/// Where alerts go: the mailer and recipients, the webhook.
#[derive(Clone)]
pub struct Outbox {
    pub mailer: Option<Mailer>,
    pub webhook: Option<Webhook>,
    pub team: Vec<String>,
    pub notify_owners: bool,
}

impl Outbox {
    /// From `[smtp]` and `[alerts]` (a section left empty: that channel is off).
    pub fn from_config(config: &Config) -> Result<Outbox, String> {
        Ok(Outbox {
            mailer: config
                .smtp
                .enabled()
                .then(|| Mailer::new(&config.smtp))
                .transpose()?,
            webhook: (!config.alerts.webhook_url.trim().is_empty())
                .then(|| Webhook::new(&config.alerts.webhook_url))
                .transpose()?,
            team: config.alerts.team_recipients.clone(),
            notify_owners: config.alerts.notify_owners,
        })
    }

    /// The channels configured.
    pub fn channels(&self) -> Vec<Channel> {
        let mut channels = Vec::new();
        if self.mailer.is_some() {
            channels.push(Channel::Email);
        }
        if self.webhook.is_some() {
            channels.push(Channel::Webhook);
        }
        channels
    }
}

/// What a delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySummary {
    pub sent: usize,
    pub failed: usize,
    pub abandoned: usize,
    /// Not tried in this pass: their channel had failed several times in a row.
    pub postponed: usize,
}

impl std::fmt::Display for DeliverySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} deliveries sent, {} failed (tried again later), {} abandoned",
            self.sent, self.failed, self.abandoned
        )?;
        if self.postponed > 0 {
            write!(
                f,
                ", {} postponed (their channel is failing)",
                self.postponed
            )?;
        }
        Ok(())
    }
}

/// Sends the alert events due at `now` and records every attempt.
pub async fn deliver_alerts(
    store: &Store,
    outbox: &Outbox,
    now: u32,
) -> Result<DeliverySummary, StoreError> {
    let mut summary = DeliverySummary::default();
    let channels = outbox.channels();
    if channels.is_empty() {
        return Ok(summary);
    }
    let alerts = store.alerts_to_deliver().await?;
    let states = store.delivery_states("alert", DELIVERY_MEMORY_DAYS).await?;
    let mut pending: Vec<DeliveryRow> = Vec::new();
    let mut failing_in_a_row = [0usize; 2];
    for due in deliver::plan(&alerts, &states, &channels, now) {
        let channel_index = due.channel as usize;
        if failing_in_a_row[channel_index] >= CHANNEL_FAILURES_PER_PASS {
            // The server is likely down: the rest waits for the next pass (not counted
            // as attempts), rather than each taking its own timeout now.
            summary.postponed += 1;
            continue;
        }
        let (recipients, message_id, result) = send_one(outbox, &due).await;
        if recipients.is_empty() && due.channel == Channel::Email {
            continue;
        }
        let outcome = match &result {
            Ok(()) => "sent",
            Err(_) if due.attempt >= deliver::MAX_ATTEMPTS => "abandoned",
            Err(_) => "failed",
        };
        match &result {
            Ok(()) => {
                failing_in_a_row[channel_index] = 0;
                summary.sent += 1;
                tracing::info!(item = %due.item, channel = due.channel.name(), "alert delivered");
            }
            Err(e) if outcome == "abandoned" => {
                failing_in_a_row[channel_index] += 1;
                summary.abandoned += 1;
                tracing::error!(item = %due.item, channel = due.channel.name(), attempt = due.attempt, error = %e, "alert delivery abandoned after the last attempt");
            }
            Err(e) => {
                failing_in_a_row[channel_index] += 1;
                summary.failed += 1;
                tracing::warn!(item = %due.item, channel = due.channel.name(), attempt = due.attempt, error = %e, "alert delivery failed; tried again later");
            }
        }
        pending.push(DeliveryRow {
            attempted_at: now,
            kind: "alert".into(),
            item: due.item.clone(),
            channel: due.channel.name().into(),
            outcome: outcome.into(),
            attempt: due.attempt,
            recipients,
            message_id,
            error: result.err().unwrap_or_default(),
        });
        // A few rows per INSERT (a part each in ClickHouse), yet few to send again after
        // a crash.
        if pending.len() >= RECORD_BATCH {
            store.record_deliveries(&pending).await?;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        store.record_deliveries(&pending).await?;
    }
    Ok(summary)
}

/// Sends one delivery: (its recipients, its Message-ID, the outcome).
async fn send_one(outbox: &Outbox, due: &Due) -> (Vec<String>, String, Result<(), String>) {
    match due.channel {
        Channel::Email => {
            let Some(mailer) = &outbox.mailer else {
                return (Vec::new(), String::new(), Err("no [smtp] host".into()));
            };
            let to = deliver::recipients(&due.alert, &outbox.team, outbox.notify_owners);
            if to.is_empty() {
                return (to, String::new(), Ok(()));
            }
            let id = deliver::message_id(&due.item, &mailer.from_domain());
            let (subject, text) = deliver::mail_text(&due.alert, due.event);
            let message = mailer.message(&to, &id).and_then(|b| {
                b.subject(subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(text)
                    .map_err(|e| e.to_string())
            });
            let result = match message {
                Ok(message) => mailer.send(message).await,
                Err(e) => Err(e),
            };
            (to, id, result)
        }
        Channel::Webhook => {
            let Some(webhook) = &outbox.webhook else {
                return (Vec::new(), String::new(), Err("no webhook_url".into()));
            };
            let json = deliver::webhook_json(&due.alert, due.event, &due.item);
            let id = json["id"].as_str().unwrap_or_default().to_owned();
            (Vec::new(), id, webhook.post(&json).await)
        }
    }
}

/// An error and its sources, joined with ": ".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}
