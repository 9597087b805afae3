//! Resolver: every DNS lookup of the crate goes through one [`Resolver`], built from
//! `[dns]` (hickory-resolver: async, the configured servers or the system's).
//!
//! In: an IP address. Out: its reverse name, checked forward ([`ReverseName`]), or a
//! [`DnsFailure`] when the answer could not be had now (timeout, SERVFAIL, refused): a
//! failure is never a "no name", so the caller tries again later instead of storing an
//! absence for good.
//!
//! Forward confirmation (FCrDNS): a PTR name counts only if one of its own A (AAAA for
//! IPv6) records is the address; anyone can publish any PTR name for their own addresses,
//! so an unconfirmed name is kept apart and never used to name a source.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, ResolveErrorKind, TokioResolver};

use crate::config::DnsConfig;

/// PTR names checked forward per address (an address with more is rare and suspicious).
pub const MAX_PTR_NAMES: usize = 4;

/// The reverse name of an address, as DNS answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseName {
    /// A PTR name whose forward records include the address (lower case, no final dot).
    Confirmed(String),
    /// PTR names exist, but none points back to the address: the first, not to be
    /// trusted.
    Unconfirmed(String),
    /// The address has no PTR record (NXDOMAIN, or a name without PTR data).
    Absent,
}

/// A lookup that got no usable answer now; try again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DNS lookup of {query} failed: {reason}")]
pub struct DnsFailure {
    pub query: String,
    pub reason: String,
}

/// One answer of one lookup, sorted into what the callers decide on.
enum Answer<T> {
    Records(Vec<T>),
    /// NXDOMAIN or no records of the type: a definite "none".
    NoRecords,
}

/// The crate's DNS resolver (cheap to clone: the connections are shared).
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// A resolver for `[dns]`: its `nameservers` over UDP (TCP for truncated answers),
    /// else the system's (`/etc/resolv.conf`). No cache: callers keep their own, with
    /// their own lifetimes. Fails on an unusable configuration.
    pub fn new(config: &DnsConfig) -> Result<Resolver, String> {
        let servers = config.server_addresses()?;
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?
        } else {
            let mut resolver_config = ResolverConfig::new();
            for addr in servers {
                resolver_config.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
                resolver_config.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(resolver_config, TokioConnectionProvider::default())
        };
        let options = builder.options_mut();
        options.timeout = Duration::from_millis(config.timeout_ms);
        options.attempts = config.attempts;
        options.cache_size = 0;
        // Names are asked fully qualified: no search domains appended.
        options.ndots = 0;
        options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        Ok(Resolver {
            inner: builder.build(),
        })
    }

    /// The reverse name of `ip`, checked forward (see the module doc).
    pub async fn reverse_name(&self, ip: IpAddr) -> Result<ReverseName, DnsFailure> {
        let names = match sort(self.inner.reverse_lookup(ip).await, &ip.to_string())? {
            Answer::NoRecords => return Ok(ReverseName::Absent),
            Answer::Records(lookup) => lookup,
        };
        let names: Vec<String> = names
            .into_iter()
            .map(|name| normalise(&name))
            .filter(|name| !name.is_empty())
            .take(MAX_PTR_NAMES)
            .collect();
        let Some(first) = names.first().cloned() else {
            return Ok(ReverseName::Absent);
        };
        for name in names {
            if self.forward_addresses(&name, ip).await?.contains(&ip) {
                return Ok(ReverseName::Confirmed(name));
            }
        }
        Ok(ReverseName::Unconfirmed(first))
    }

    /// The addresses `name` has of `ip`'s family (none if the name does not exist).
    async fn forward_addresses(&self, name: &str, ip: IpAddr) -> Result<Vec<IpAddr>, DnsFailure> {
        let fqdn = format!("{name}.");
        let answer =
            match ip {
                IpAddr::V4(_) => sort(self.inner.ipv4_lookup(fqdn.as_str()).await, name)?
                    .map(|a| IpAddr::V4(a.0)),
                IpAddr::V6(_) => sort(self.inner.ipv6_lookup(fqdn.as_str()).await, name)?
                    .map(|a| IpAddr::V6(a.0)),
            };
        Ok(match answer {
            Answer::Records(addresses) => addresses,
            Answer::NoRecords => Vec::new(),
        })
    }
}

/// The answer to one question of a DNS check: the records, or a definite "none".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Records<T> {
    Found(Vec<T>),
    /// NXDOMAIN, or the name has no records of the type.
    None,
}

impl<T> Records<T> {
    /// The records (empty for "none").
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Records::Found(items) => items,
            Records::None => Vec::new(),
        }
    }
}

/// One MX record: preference and exchange (lower case, no final dot; "" for the null MX
/// "0 .").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailExchange {
    pub preference: u16,
    pub exchange: String,
}

impl Resolver {
    /// The TXT records at `name`, each record's strings joined (RFC 7208 3.3: a record
    /// longer than 255 bytes is published as several strings of one record). Bytes that
    /// are not UTF-8 are replaced.
    pub async fn txt(&self, name: &str) -> Result<Records<String>, DnsFailure> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        Ok(
            match sort(self.inner.txt_lookup(fqdn.as_str()).await, name)? {
                Answer::NoRecords => Records::None,
                Answer::Records(txts) => Records::Found(
                    txts.into_iter()
                        .map(|txt| {
                            let bytes: Vec<u8> = txt
                                .txt_data()
                                .iter()
                                .flat_map(|chunk| chunk.iter().copied())
                                .collect();
                            String::from_utf8_lossy(&bytes).into_owned()
                        })
                        .collect(),
                ),
            },
        )
    }

    /// The MX records at `name`, by preference.
    pub async fn mx(&self, name: &str) -> Result<Records<MailExchange>, DnsFailure> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        Ok(
            match sort(self.inner.mx_lookup(fqdn.as_str()).await, name)? {
                Answer::NoRecords => Records::None,
                Answer::Records(mxs) => {
                    let mut found: Vec<MailExchange> = mxs
                        .into_iter()
                        .map(|mx| MailExchange {
                            preference: mx.preference(),
                            exchange: normalise(mx.exchange()),
                        })
                        .collect();
                    found.sort_by(|a, b| {
                        (a.preference, &a.exchange).cmp(&(b.preference, &b.exchange))
                    });
                    Records::Found(found)
                }
            },
        )
    }

    /// Whether `name` has an A or AAAA record (an SPF `a`/`exists` lookup; "none" is a
    /// void lookup).
    pub async fn has_address(&self, name: &str) -> Result<bool, DnsFailure> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match sort(self.inner.ipv4_lookup(fqdn.as_str()).await, name)? {
            Answer::Records(found) if !found.is_empty() => return Ok(true),
            _ => {}
        }
        Ok(matches!(
            sort(self.inner.ipv6_lookup(fqdn.as_str()).await, name)?,
            Answer::Records(found) if !found.is_empty()
        ))
    }
}

impl<T> Answer<T> {
    fn map<U>(self, f: impl FnMut(T) -> U) -> Answer<U> {
        match self {
            Answer::Records(items) => Answer::Records(items.into_iter().map(f).collect()),
            Answer::NoRecords => Answer::NoRecords,
        }
    }
}

/// A lookup's result as records, a definite "none", or a failure to retry.
fn sort<L, T>(result: Result<L, ResolveError>, query: &str) -> Result<Answer<T>, DnsFailure>
where
    L: IntoIterator<Item = T>,
{
    match result {
        Ok(lookup) => Ok(Answer::Records(lookup.into_iter().collect())),
        Err(e) => match no_records_code(&e) {
            Some(ResponseCode::NXDomain | ResponseCode::NoError) => Ok(Answer::NoRecords),
            Some(code) => Err(DnsFailure {
                query: query.to_owned(),
                reason: format!("the server answered {code}"),
            }),
            None => Err(DnsFailure {
                query: query.to_owned(),
                reason: e.to_string(),
            }),
        },
    }
}

/// The response code of a "no records" answer, if that is what `e` is.
fn no_records_code(e: &ResolveError) -> Option<ResponseCode> {
    match e.kind() {
        ResolveErrorKind::Proto(proto) => match proto.kind() {
            ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
            _ => None,
        },
        _ => None,
    }
}

/// A DNS name as stored: lower case, without the final dot.
fn normalise(name: &impl std::fmt::Display) -> String {
    name.to_string().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stored_lower_case_without_the_root_dot() {
        assert_eq!(normalise(&"Mail.Example.TEST."), "mail.example.test");
        assert_eq!(normalise(&"."), "");
    }

    #[test]
    fn a_resolver_is_made_from_the_configured_servers() {
        let config = DnsConfig {
            nameservers: vec!["127.0.0.1:5353".into()],
            ..DnsConfig::default()
        };
        assert!(Resolver::new(&config).is_ok());
        let bad = DnsConfig {
            nameservers: vec!["resolver.example".into()],
            ..DnsConfig::default()
        };
        let Err(e) = Resolver::new(&bad) else {
            panic!("a host name is not a server address");
        };
        assert!(e.contains("resolver.example"), "{e}");
    }
}
