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

/// A DNS server of its own (the same script and zones on other ports, state in a
/// temporary directory), for a test that stops and starts it; stopped when dropped.
pub struct PrivateDns {
    state: tempfile::TempDir,
    ports: [u16; 3],
}

impl PrivateDns {
    /// A server answering on 127.0.0.1:`port`, its knot on `port + 1`, its silent port
    /// `port + 2`; not started yet.
    pub fn new(port: u16) -> PrivateDns {
        PrivateDns {
            state: tempfile::tempdir().unwrap(),
            ports: [port, port + 1, port + 2],
        }
    }

    /// `ip:port` to ask.
    pub fn nameserver(&self) -> String {
        format!("127.0.0.1:{}", self.ports[0])
    }

    /// `dns.sh ACTION` for this server.
    fn script(&self, action: &str) -> Command {
        let mut command = Command::new(repo_root().join("deploy/dev/dns.sh"));
        command
            .arg(action)
            .env("DMARC_STATE_DIR", self.state.path())
            .env("DMARC_DNS_PORT", self.ports[0].to_string())
            .env("DMARC_DNS_AUTH_PORT", self.ports[1].to_string())
            .env("DMARC_DNS_SILENT_PORT", self.ports[2].to_string());
        command
    }

    fn run(&self, action: &str) {
        let out = self.script(action).output().unwrap();
        assert!(
            out.status.success(),
            "dns.sh {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        shared_dns();
        self.run("start");
    }

    pub fn stop(&self) {
        self.run("stop");
    }
}

impl Drop for PrivateDns {
    fn drop(&mut self) {
        let _ = self.script("stop").output();
    }
}
