//! Metrics: counters the daemon updates -> Prometheus text on `GET /metrics`, and
//! `GET /healthz`, served on a configured local address.
//!
//! A deliberately small HTTP/1.1 server (GET only, one response per connection, bounded
//! request size and time): the daemon must not depend on a web framework to be observed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "messages_fetched_total",
                "Messages fetched from IMAP.",
                &self.messages_fetched,
            ),
            (
                "messages_archived_total",
                "Messages moved to the archive mailbox after their rows were committed.",
                &self.messages_archived,
            ),
            (
                "messages_quarantined_total",
                "Messages moved to the invalid mailbox.",
                &self.messages_quarantined,
            ),
            (
                "reports_written_total",
                "Reports published to ClickHouse.",
                &self.reports_written,
            ),
            (
                "records_written_total",
                "Records published to ClickHouse.",
                &self.records_written,
            ),
            (
                "duplicates_total",
                "Reports skipped because they were already stored.",
                &self.duplicates,
            ),
            (
                "reconnects_total",
                "IMAP reconnections after a failure.",
                &self.reconnects,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP dmarc_ingest_{name} {help}\n# TYPE dmarc_ingest_{name} counter\ndmarc_ingest_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP dmarc_ingest_failures_total Inputs that failed, by reason.\n# TYPE dmarc_ingest_failures_total counter"
        );
        if let Ok(f) = self.failures.lock() {
            for (kind, n) in f.iter() {
                let _ = writeln!(
                    out,
                    "dmarc_ingest_failures_total{{reason=\"{}\"}} {n}",
                    escape(kind)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP dmarc_ingest_last_success_timestamp_seconds When a batch was last written and moved.\n# TYPE dmarc_ingest_last_success_timestamp_seconds gauge\ndmarc_ingest_last_success_timestamp_seconds {}",
            self.last_success.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP dmarc_ingest_inbox_backlog Messages waiting in the mailbox.\n# TYPE dmarc_ingest_inbox_backlog gauge"
        );
        if let Ok(b) = self.backlog.lock() {
            for (mailbox, n) in b.iter() {
                let _ = writeln!(
                    out,
                    "dmarc_ingest_inbox_backlog{{mailbox=\"{}\"}} {n}",
                    escape(mailbox)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP dmarc_ingest_imap_connected Whether the mailbox worker is connected.\n# TYPE dmarc_ingest_imap_connected gauge"
        );
        if let Ok(c) = self.connected.lock() {
            for (mailbox, up) in c.iter() {
                let _ = writeln!(
                    out,
                    "dmarc_ingest_imap_connected{{mailbox=\"{}\"}} {}",
                    escape(mailbox),
                    u8::from(*up)
                );
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(5), respond(stream, &metrics)).await;
                });
            }
        }
    }
}

/// Reads one request (head only, at most 8 KiB) and writes one response.
async fn respond(mut stream: tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", "/healthz") if metrics.healthy() => ("200 OK", "text/plain", "ok\n".into()),
        ("GET", "/healthz") => (
            "503 Service Unavailable",
            "text/plain",
            "a mailbox is not connected\n".into(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let metrics = Metrics::new();
        Metrics::add(&metrics.reports_written, 3);
        metrics.failure("not_dmarc");
        metrics.set_backlog("reports@host/INBOX", 7);
        metrics.set_connected("reports@host/INBOX", false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics.clone(), async {
            let _ = rx.await;
        }));
        let body = get(addr, "/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(
            body.contains("dmarc_ingest_reports_written_total 3"),
            "{body}"
        );
        assert!(
            body.contains("dmarc_ingest_failures_total{reason=\"not_dmarc\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("dmarc_ingest_inbox_backlog{mailbox=\"reports@host/INBOX\"} 7"),
            "{body}"
        );
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 503"));
        metrics.set_connected("reports@host/INBOX", true);
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        tx.send(()).unwrap();
        server.await.unwrap();
    }
}
