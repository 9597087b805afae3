//! The real DNS server for integration tests (knot behind dnsmasq), through
//! `deploy/dev/dns.sh`; its test zones are `deploy/dev/dns/*.zone`.
#![allow(dead_code)]

use std::process::Command;

use dmarc_ingest::config::DnsConfig;

use super::repo_root;

/// Starts the shared dev DNS server once (idempotent script); returns the `[dns]`
/// section that points at it.
pub fn shared_dns() -> DnsConfig {
    static STARTED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    STARTED.get_or_init(|| {
        for action in ["install", "start"] {
            let out = Command::new(repo_root().join("deploy/dev/dns.sh"))
                .arg(action)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "dns.sh {action}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    let port = std::env::var("DMARC_DNS_PORT").unwrap_or_else(|_| "5353".into());
    DnsConfig {
        nameservers: vec![format!("127.0.0.1:{port}")],
        // The silent zone is waited on this long, twice.
        timeout_ms: 300,
        ..DnsConfig::default()
    }
}
