//! The resolver against the real DNS server of `deploy/dev/dns.sh` (knot behind dnsmasq
//! on 127.0.0.1): every kind of answer a reverse lookup meets.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dmarc_ingest::resolver::{Resolver, ReverseName};

fn reverse(resolver: &Resolver, ip: &str) -> Result<ReverseName, String> {
    let ip: IpAddr = ip.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(resolver.reverse_name(ip))
        .map_err(|e| e.to_string())
}

#[test]
fn reverse_names_are_confirmed_forward_and_failures_are_not_absences() {
    let config = common::dns::shared_dns();
    let resolver = Resolver::new(&config).unwrap();
    // PTR and A agree.
    assert_eq!(
        reverse(&resolver, "192.0.2.1"),
        Ok(ReverseName::Confirmed("mail.example.test".into()))
    );
    assert_eq!(
        reverse(&resolver, "2001:db8::1"),
        Ok(ReverseName::Confirmed("mail6.example.test".into()))
    );
    // The PTR name's A record is another address: shown as unconfirmed, never trusted.
    assert_eq!(
        reverse(&resolver, "192.0.2.2"),
        Ok(ReverseName::Unconfirmed("liar.example.test".into()))
    );
    // NXDOMAIN: a definite absence.
    assert_eq!(reverse(&resolver, "192.0.2.4"), Ok(ReverseName::Absent));
    // SERVFAIL and a server that never answers: failures, to be tried again.
    let servfail = reverse(&resolver, "198.51.100.1").unwrap_err();
    assert!(servfail.contains("198.51.100.1"), "{servfail}");
    let started = Instant::now();
    let timeout = reverse(&resolver, "203.0.113.1").unwrap_err();
    assert!(timeout.contains("203.0.113.1"), "{timeout}");
    // Bounded by the configured timeout and attempts (300 ms, twice), not hanging.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
