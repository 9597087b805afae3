//! Metrics: counters the daemon updates -> the Prometheus exposition on `GET /metrics`,
//! and `GET /healthz`, served over HTTP/1.1 on a configured local address.
//!
//! In: a bound `TcpListener`, the shared [`Metrics`], a stop future. Out: `/metrics` as
//! OpenMetrics text when the scraper asks for it (`Accept: application/openmetrics-text`,
//! as Prometheus does) and Prometheus text 0.0.4 otherwise, both encoded by
//! `prometheus-client`; `/healthz` 200 while every mailbox worker is connected, else 503;
//! 404 for other paths, 405 for other methods. HTTP is hyper's.
//!
//! What can fail, and what happens: `accept` errors (`EMFILE`, `ENFILE`, `ECONNABORTED`,
//! ...) are logged and the loop pauses (100 ms, doubling up to 1 s) instead of
//! spinning; a client that is slow or idle is cut by [`HEADER_READ_TIMEOUT`] and
//! [`CONNECTION_LIFETIME`]; at most [`MAX_CONNECTIONS`] connections are served at once
//! and further ones wait in the kernel's listen queue. Nothing here can stop ingestion.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Connections served at once; the next ones wait in the listen queue until one ends.
/// A scraper needs one, a health check another.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send a request's head, on a new or an idle kept-alive
/// connection; past it the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of a connection: then no new request is read on it, and a response
/// still unsent [`HEADER_READ_TIMEOUT`] later is dropped (a client that never reads).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// Largest request head accepted (431 past it).
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// First pause after a failed `accept`; doubles while failures repeat.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(100);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Content type of the OpenMetrics text exposition that `prometheus-client` writes.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";
const METRIC_PREFIX: &str = "dmarc_ingest";

/// The daemon's counters; shared by every mailbox worker.
#[derive(Debug, Default)]
pub struct Metrics {
    pub messages_fetched: AtomicU64,
    pub messages_archived: AtomicU64,
    pub messages_quarantined: AtomicU64,
    pub reports_written: AtomicU64,
    pub records_written: AtomicU64,
    pub duplicates: AtomicU64,
    pub reconnects: AtomicU64,
    /// Reverse lookups of sources answered (named or not) and failed, by the daemon's
    /// background naming.
    pub source_lookups: AtomicU64,
    pub source_lookup_failures: AtomicU64,
    /// Alerts opened; alert deliveries (mail, webhook) sent and failed (abandoned ones
    /// included); weekly digests mailed and failed.
    pub alerts_opened: AtomicU64,
    pub alert_deliveries_sent: AtomicU64,
    pub alert_deliveries_failed: AtomicU64,
    pub digests_sent: AtomicU64,
    pub digests_failed: AtomicU64,
    /// Unix time of the last batch fully written and moved (0: none yet).
    pub last_success: AtomicI64,
    /// Failures by reason class.
    failures: Mutex<BTreeMap<String, u64>>,
    /// Messages waiting, by mailbox label.
    backlog: Mutex<BTreeMap<String, u64>>,
    /// Whether each mailbox's worker is connected.
    connected: Mutex<BTreeMap<String, bool>>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn failure(&self, kind: &str) {
        if let Ok(mut f) = self.failures.lock() {
            *f.entry(kind.to_owned()).or_default() += 1;
        }
    }

    pub fn set_backlog(&self, mailbox: &str, waiting: u64) {
        if let Ok(mut b) = self.backlog.lock() {
            b.insert(mailbox.to_owned(), waiting);
        }
    }

    pub fn set_connected(&self, mailbox: &str, up: bool) {
        if let Ok(mut c) = self.connected.lock() {
            c.insert(mailbox.to_owned(), up);
        }
    }

    pub fn success_now(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.last_success.store(now, Ordering::Relaxed);
    }

    /// Sum of the failure counters (for exit codes).
    pub fn failures_total(&self) -> u64 {
        self.failures.lock().map(|f| f.values().sum()).unwrap_or(0)
    }

    /// Whether every mailbox worker is connected.
    pub fn healthy(&self) -> bool {
        self.connected
            .lock()
            .map(|c| c.values().all(|up| *up))
            .unwrap_or(false)
    }

    fn snapshot<V: Clone>(map: &Mutex<BTreeMap<String, V>>) -> BTreeMap<String, V> {
        map.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Read on every scrape: the atomics and maps above are the only state; the names
/// (with the registry's `dmarc_ingest_` prefix and a counter's `_total`) are those the
/// README and dashboards use.
impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = [
            (
                "messages_fetched",
                "Messages fetched from IMAP.",
                &self.messages_fetched,
            ),
            (
                "messages_archived",
                "Messages moved to the archive mailbox after their rows were committed.",
                &self.messages_archived,
            ),
            (
                "messages_quarantined",
                "Messages moved to the invalid mailbox.",
                &self.messages_quarantined,
            ),
            (
                "reports_written",
                "Reports published to ClickHouse.",
                &self.reports_written,
            ),
            (
                "records_written",
                "Records published to ClickHouse.",
                &self.records_written,
            ),
            (
                "duplicates",
                "Reports skipped because they were already stored.",
                &self.duplicates,
            ),
            (
                "reconnects",
                "IMAP reconnections after a failure.",
                &self.reconnects,
            ),
            (
                "source_lookups",
                "Reverse DNS lookups of sources answered (a name, or none).",
                &self.source_lookups,
            ),
            (
                "source_lookup_failures",
                "Reverse DNS lookups of sources that got no answer (asked again later).",
                &self.source_lookup_failures,
            ),
            ("alerts_opened", "Alerts opened.", &self.alerts_opened),
            (
                "alert_deliveries_sent",
                "Alert events delivered (a mail, or a webhook POST).",
                &self.alert_deliveries_sent,
            ),
            (
                "alert_deliveries_failed",
                "Alert deliveries that failed (tried again later, or abandoned).",
                &self.alert_deliveries_failed,
            ),
            ("digests_sent", "Weekly digests mailed.", &self.digests_sent),
            (
                "digests_failed",
                "Weekly digest mails that failed (tried again later).",
                &self.digests_failed,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }

        let failures = Metrics::snapshot(&self.failures);
        let mut family = encoder.encode_descriptor(
            "failures",
            "Inputs that failed, by reason.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (reason, n) in &failures {
            ConstCounter::new(*n).encode(family.encode_family(&[("reason", reason.as_str())])?)?;
        }

        let last_success = ConstGauge::new(self.last_success.load(Ordering::Relaxed));
        last_success.encode(encoder.encode_descriptor(
            "last_success_timestamp_seconds",
            "When a batch was last written and moved.",
            None,
            last_success.metric_type(),
        )?)?;

        let gauge_type = ConstGauge::new(0i64).metric_type();
        let backlog = Metrics::snapshot(&self.backlog);
        let mut family = encoder.encode_descriptor(
            "inbox_backlog",
            "Messages waiting in the mailbox.",
            None,
            gauge_type,
        )?;
        for (mailbox, waiting) in &backlog {
            ConstGauge::new(*waiting)
                .encode(family.encode_family(&[("mailbox", mailbox.as_str())])?)?;
        }

        let connected = Metrics::snapshot(&self.connected);
        let mut family = encoder.encode_descriptor(
            "imap_connected",
            "Whether the mailbox worker is connected.",
            None,
            gauge_type,
        )?;
        for (mailbox, up) in &connected {
            ConstGauge::new(i64::from(*up))
                .encode(family.encode_family(&[("mailbox", mailbox.as_str())])?)?;
        }
        Ok(())
    }
}

/// The exposition formats of `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Prometheus text 0.0.4: what a person with curl, or an older scraper, gets.
    Prometheus,
    /// OpenMetrics 1.0 text, ending in `# EOF` so a cut scrape is detected.
    OpenMetrics,
}

impl Format {
    fn from_accept(accept: Option<&HeaderValue>) -> Format {
        let asks = accept
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/openmetrics-text"));
        if asks {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    fn encode(self, registry: &Registry) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        match self {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
        }
        Ok(out)
    }
}

/// The registry every scrape encodes: `metrics` under the `dmarc_ingest_` prefix.
fn registry(metrics: Arc<Metrics>) -> Registry {
    let mut registry = Registry::with_prefix(METRIC_PREFIX);
    registry.register_collector(Box::new(metrics));
    registry
}

/// How much the endpoint serves at once and for how long; tests shrink them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            connection_lifetime: CONNECTION_LIFETIME,
        }
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop` resolves, with the
/// default [`MAX_CONNECTIONS`], [`HEADER_READ_TIMEOUT`] and [`CONNECTION_LIFETIME`].
/// Connections still open at stop are dropped.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    serve_with(listener, metrics, Limits::default(), stop).await
}

pub(crate) async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    let registry = Arc::new(registry(metrics.clone()));
    let mut connections = JoinSet::new();
    let mut pause = ACCEPT_PAUSE_MIN;
    tokio::pin!(stop);
    loop {
        let room = connections.len() < limits.max_connections.max(1);
        tokio::select! {
            biased;
            () = &mut stop => break,
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended {
                    if e.is_panic() {
                        tracing::error!(error = %e, "metrics: connection task panicked");
                    }
                }
            }
            accepted = listener.accept(), if room => match accepted {
                Ok((stream, peer)) => {
                    pause = ACCEPT_PAUSE_MIN;
                    connections.spawn(connection(
                        stream,
                        peer,
                        metrics.clone(),
                        registry.clone(),
                        limits,
                    ));
                }
                Err(e) => {
                    // The failed connection (or none, with EMFILE) stays queued and the
                    // listener stays ready: accepting again at once would spin.
                    tracing::warn!(
                        error = %e,
                        pause_ms = pause.as_millis() as u64,
                        connections = connections.len(),
                        "metrics: accept failed; pausing"
                    );
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Serves one connection within `limits`.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    limits: Limits,
) {
    let service = service_fn(move |request: Request<Incoming>| {
        std::future::ready(Ok::<_, Infallible>(respond(&request, &metrics, &registry)))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = tokio::time::sleep(limits.connection_lifetime) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.header_read_timeout, conn.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => {
                    tracing::debug!(%peer, "metrics: connection dropped at its time limit");
                    return;
                }
            }
        }
    };
    if let Err(e) = ended {
        // Clients that time out or hang up: worth a trace when debugging, no more.
        tracing::debug!(%peer, error = %chain(&e), "metrics: connection ended with an error");
    }
}

/// The response to one request.
fn respond<B>(
    request: &Request<B>,
    metrics: &Metrics,
    registry: &Registry,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let format = Format::from_accept(request.headers().get(ACCEPT));
            match format.encode(registry) {
                Ok(body) => with_type(StatusCode::OK, format.content_type(), body),
                Err(e) => {
                    tracing::error!(error = %e, ?format, "metrics: cannot encode the exposition");
                    text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
                }
            }
        }
        "/healthz" if metrics.healthy() => text(StatusCode::OK, "ok\n"),
        "/healthz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "a mailbox is not connected\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, PLAIN_TEXT, body)
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error with its causes, `outer: inner: ...`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Every test is over well within this.
    const BOUND: Duration = Duration::from_secs(10);

    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Server {
        async fn start(metrics: Arc<Metrics>, limits: Limits) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve_with(listener, metrics, limits, async {
                let _ = rx.await;
            }));
            Server {
                addr,
                stop: Some(tx),
                task,
            }
        }

        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(BOUND, self.task)
                .await
                .expect("server stops")
                .unwrap();
        }
    }

    /// Sends `request` verbatim and reads the whole answer (the request asks to close).
    async fn exchange(addr: SocketAddr, request: &str) -> String {
        tokio::time::timeout(BOUND, async {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        })
        .await
        .expect("answered in time")
    }

    async fn get(addr: SocketAddr, path: &str, accept: &str) -> (String, String, String) {
        let raw = exchange(
            addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
        let status = head.lines().next().unwrap_or_default().to_owned();
        let content_type = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or_default()
            .to_owned();
        (status, content_type, body.to_owned())
    }

    /// Parses a text exposition strictly enough to catch broken escaping or lines:
    /// returns `sample name{sorted labels}` -> value, and the declared type of each
    /// family.
    fn parse(text: &str, openmetrics: bool) -> (HashMap<String, f64>, HashMap<String, String>) {
        let mut samples = HashMap::new();
        let mut types = HashMap::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# ") {
                if rest == "EOF" {
                    assert!(openmetrics, "# EOF in Prometheus text");
                    assert!(lines.peek().is_none(), "lines after # EOF");
                    return (samples, types);
                }
                let (kind, rest) = rest.split_once(' ').expect("a comment keyword");
                let (name, value) = rest.split_once(' ').expect("a name and a value");
                assert!(name.starts_with("dmarc_ingest_"), "{line}");
                match kind {
                    "TYPE" => {
                        assert!(["counter", "gauge"].contains(&value), "{line}");
                        types.insert(name.to_owned(), value.to_owned());
                    }
                    "HELP" => assert!(!value.is_empty(), "{line}"),
                    _ => panic!("unknown comment {line}"),
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("a sample name");
            let name = &line[..name_end];
            let chars: Vec<char> = line[name_end..].chars().collect();
            let mut i = 0;
            let mut labels = Vec::new();
            if chars[0] == '{' {
                i = 1;
                while chars[i] != '}' {
                    let key_start = i;
                    while chars[i] != '=' {
                        i += 1;
                    }
                    let key: String = chars[key_start..i].iter().collect();
                    assert_eq!(chars[i + 1], '"', "{line}");
                    i += 2;
                    let mut value = String::new();
                    loop {
                        match chars[i] {
                            '\\' => {
                                value.push(match chars[i + 1] {
                                    '\\' => '\\',
                                    '"' => '"',
                                    'n' => '\n',
                                    other => panic!("bad escape \\{other} in {line}"),
                                });
                                i += 2;
                            }
                            '"' => break,
                            c => {
                                value.push(c);
                                i += 1;
                            }
                        }
                    }
                    i += 1;
                    labels.push(format!("{key}={value:?}"));
                    if chars[i] == ',' {
                        i += 1;
                    }
                }
                i += 1;
            }
            let rest: String = chars[i..].iter().collect();
            let value: f64 = rest
                .strip_prefix(' ')
                .expect("a space before the value")
                .parse()
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            let family = if openmetrics {
                name.strip_suffix("_total").unwrap_or(name)
            } else {
                name
            };
            assert!(types.contains_key(family), "sample before its TYPE: {line}");
            labels.sort();
            let key = format!("{name}{{{}}}", labels.join(","));
            assert!(samples.insert(key, value).is_none(), "duplicate {line}");
        }
        assert!(!openmetrics, "OpenMetrics text without # EOF");
        (samples, types)
    }

    const OPENMETRICS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[tokio::test]
    async fn scrape_carries_every_metric_in_both_formats() {
        let metrics = Metrics::new();
        let odd = "reports@host/\"IN\\BOX\"";
        Metrics::add(&metrics.messages_fetched, 5);
        Metrics::add(&metrics.reports_written, 3);
        Metrics::add(&metrics.records_written, 40);
        Metrics::add(&metrics.source_lookups, 4);
        metrics.failure("not_dmarc");
        metrics.failure("not_dmarc");
        metrics.failure("too_big");
        metrics.set_backlog("reports@host/INBOX", 7);
        metrics.set_backlog(odd, 2);
        metrics.set_connected(odd, true);
        metrics.last_success.store(1_700_000_000, Ordering::Relaxed);
        let server = Server::start(metrics.clone(), Limits::default()).await;

        let (status, content_type, body) = get(server.addr, "/metrics", "*/*").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let (samples, types) = parse(&body, false);
        let expect = [
            ("dmarc_ingest_messages_fetched_total{}", 5.0),
            ("dmarc_ingest_messages_archived_total{}", 0.0),
            ("dmarc_ingest_messages_quarantined_total{}", 0.0),
            ("dmarc_ingest_reports_written_total{}", 3.0),
            ("dmarc_ingest_records_written_total{}", 40.0),
            ("dmarc_ingest_duplicates_total{}", 0.0),
            ("dmarc_ingest_reconnects_total{}", 0.0),
            ("dmarc_ingest_source_lookups_total{}", 4.0),
            ("dmarc_ingest_source_lookup_failures_total{}", 0.0),
            ("dmarc_ingest_alerts_opened_total{}", 0.0),
            ("dmarc_ingest_alert_deliveries_sent_total{}", 0.0),
            ("dmarc_ingest_alert_deliveries_failed_total{}", 0.0),
            ("dmarc_ingest_digests_sent_total{}", 0.0),
            ("dmarc_ingest_digests_failed_total{}", 0.0),
            ("dmarc_ingest_failures_total{reason=\"not_dmarc\"}", 2.0),
            ("dmarc_ingest_failures_total{reason=\"too_big\"}", 1.0),
            ("dmarc_ingest_last_success_timestamp_seconds{}", 1.7e9),
            (
                "dmarc_ingest_inbox_backlog{mailbox=\"reports@host/INBOX\"}",
                7.0,
            ),
            (
                "dmarc_ingest_inbox_backlog{mailbox=\"reports@host/\\\"IN\\\\BOX\\\"\"}",
                2.0,
            ),
            (
                "dmarc_ingest_imap_connected{mailbox=\"reports@host/\\\"IN\\\\BOX\\\"\"}",
                1.0,
            ),
        ];
        for (key, value) in expect {
            assert_eq!(samples.get(key), Some(&value), "{key} in\n{body}");
        }
        assert_eq!(samples.len(), expect.len(), "{body}");
        // The lines of the old hand-written exposition, unchanged.
        assert!(body.contains(
            "# HELP dmarc_ingest_reports_written_total Reports published to ClickHouse.\n\
             # TYPE dmarc_ingest_reports_written_total counter\n\
             dmarc_ingest_reports_written_total 3\n"
        ));
        assert!(body.contains(
            "dmarc_ingest_inbox_backlog{mailbox=\"reports@host/\\\"IN\\\\BOX\\\"\"} 2\n"
        ));
        assert_eq!(types["dmarc_ingest_failures_total"], "counter");
        assert_eq!(types["dmarc_ingest_inbox_backlog"], "gauge");

        // Values move between scrapes; Prometheus's Accept gets OpenMetrics.
        Metrics::add(&metrics.reports_written, 1);
        metrics.failure("too_big");
        metrics.set_connected(odd, false);
        let (status, content_type, body) = get(server.addr, "/metrics", OPENMETRICS_ACCEPT).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
        let (samples, types) = parse(&body, true);
        assert_eq!(types["dmarc_ingest_reports_written"], "counter");
        assert_eq!(samples["dmarc_ingest_reports_written_total{}"], 4.0);
        assert_eq!(
            samples["dmarc_ingest_failures_total{reason=\"too_big\"}"],
            2.0
        );
        assert_eq!(
            samples["dmarc_ingest_imap_connected{mailbox=\"reports@host/\\\"IN\\\\BOX\\\"\"}"],
            0.0
        );
        assert_eq!(samples.len(), expect.len(), "{body}");
        server.stop().await;
    }

    #[tokio::test]
    async fn health_not_found_and_method() {
        let metrics = Metrics::new();
        let server = Server::start(metrics.clone(), Limits::default()).await;
        // No worker yet: nothing is down.
        assert!(get(server.addr, "/healthz", "*/*")
            .await
            .0
            .contains(" 200 "));
        metrics.set_connected("a", true);
        metrics.set_connected("b", false);
        let (status, _, body) = get(server.addr, "/healthz", "*/*").await;
        assert!(status.starts_with("HTTP/1.1 503"), "{status}");
        assert_eq!(body, "a mailbox is not connected\n");
        metrics.set_connected("b", true);
        // The image's HEALTHCHECK speaks HTTP/1.0 from bash and reads the status line.
        let raw = exchange(
            server.addr,
            "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n",
        )
        .await;
        assert!(raw.lines().next().unwrap().contains(" 200 "), "{raw}");
        assert!(raw.ends_with("\r\n\r\nok\n"), "{raw}");

        let (status, _, _) = get(server.addr, "/metrics/x", "*/*").await;
        assert!(status.starts_with("HTTP/1.1 404"), "{status}");
        for method in ["POST", "HEAD", "PUT", "DELETE"] {
            let raw = exchange(
                server.addr,
                &format!(
                    "{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            )
            .await;
            assert!(raw.starts_with("HTTP/1.1 405"), "{method}: {raw}");
            assert!(
                raw.to_ascii_lowercase().contains("\r\nallow: get\r\n"),
                "{raw}"
            );
        }
        // Not HTTP at all: an error status or a closed connection, and the server lives on.
        let raw = exchange(server.addr, "\x16\x03\x01garbage\r\n\r\n").await;
        assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 4"), "{raw}");
        assert!(get(server.addr, "/healthz", "*/*")
            .await
            .0
            .contains(" 200 "));
        server.stop().await;
    }

    /// Reads until the server closes; returns what came and how long it took.
    async fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
        let start = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(BOUND, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (got, start.elapsed()),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the server never closed the connection"),
            }
        }
    }

    #[tokio::test]
    async fn slow_client_is_cut_after_the_header_timeout() {
        let limits = Limits {
            max_connections: 4,
            header_read_timeout: Duration::from_millis(400),
            connection_lifetime: Duration::from_secs(5),
        };
        let server = Server::start(Metrics::new(), limits).await;
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Trickles a header byte every 50 ms and never ends the head.
        let trickle = async {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if slow.write_all(b"X").await.is_err() {
                    break;
                }
            }
        };
        let start = Instant::now();
        tokio::time::timeout(BOUND, trickle).await.unwrap();
        let (got, _) = until_closed(&mut slow).await;
        let elapsed = start.elapsed();
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        server.stop().await;
    }

    #[tokio::test]
    async fn idle_keepalive_and_long_connections_end() {
        let limits = Limits {
            max_connections: 4,
            header_read_timeout: Duration::from_millis(300),
            connection_lifetime: Duration::from_millis(800),
        };
        let server = Server::start(Metrics::new(), limits).await;
        // A kept-alive connection gets its answer, then is closed when idle.
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (got, waited) = until_closed(&mut idle).await;
        assert!(got.starts_with(b"HTTP/1.1 200"));
        assert!(waited < Duration::from_secs(3), "{waited:?}");

        // A client that keeps asking is let go at the connection's time limit.
        let mut busy = TcpStream::connect(server.addr).await.unwrap();
        let start = Instant::now();
        let mut answers = 0;
        let mut buf = [0u8; 4096];
        while start.elapsed() < Duration::from_secs(5) {
            if busy
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            match tokio::time::timeout(BOUND, busy.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => answers += 1,
                Err(_) => panic!("no answer"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let lived = start.elapsed();
        assert!(answers >= 3, "{answers}");
        assert!(lived >= Duration::from_millis(700), "{lived:?}");
        assert!(lived < Duration::from_secs(3), "{lived:?}");
        server.stop().await;
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_free_slot() {
        let limits = Limits {
            max_connections: 2,
            header_read_timeout: Duration::from_millis(1500),
            connection_lifetime: Duration::from_secs(10),
        };
        let server = Server::start(Metrics::new(), limits).await;
        // Two idle clients take both slots (the listen queue hands them out in order).
        let mut idle = Vec::new();
        for _ in 0..limits.max_connections {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
        }
        // The next connection completes in the kernel, but nobody serves it...
        let mut waiting = TcpStream::connect(server.addr).await.unwrap();
        let start = Instant::now();
        waiting
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buf)).await;
        assert!(early.is_err(), "served beyond the limit: {early:?}");
        // ...until the idle ones are cut by the header timeout; then it is answered.
        let (got, _) = until_closed(&mut waiting).await;
        let waited = start.elapsed();
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert!(waited >= Duration::from_millis(1000), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        for mut s in idle {
            let (got, _) = until_closed(&mut s).await;
            assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408"));
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn stop_ends_the_server_with_connections_open() {
        let server = Server::start(Metrics::new(), Limits::default()).await;
        let _idle = TcpStream::connect(server.addr).await.unwrap();
        assert!(get(server.addr, "/healthz", "*/*")
            .await
            .0
            .contains(" 200 "));
        let addr = server.addr;
        server.stop().await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }
}
