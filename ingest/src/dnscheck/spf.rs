//! SPF records (RFC 7208): one TXT record in, its directives and modifiers and the
//! findings of reading it out. Pure; the checker follows includes and redirects and
//! counts the DNS lookups (`super::checker`).
//!
//! Our own reader, not `mail-auth`'s `Spf::parse`: that one answers "valid or not" for
//! evaluating mail, while a check must keep going after a bad term, name each one, and
//! give the terms that cost DNS lookups so they can be counted (RFC 7208 4.6.4), which
//! no evaluating library reports.

use super::finding::{Area, Finding, Severity};

/// What a matching directive yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    Pass,
    Fail,
    SoftFail,
    Neutral,
}

impl Qualifier {
    /// The qualifier as written before `all` (`+all`, `-all`, `~all`, `?all`).
    pub fn symbol(self) -> char {
        match self {
            Qualifier::Pass => '+',
            Qualifier::Fail => '-',
            Qualifier::SoftFail => '~',
            Qualifier::Neutral => '?',
        }
    }
}

/// A mechanism; the domain of `a`, `mx` and `ptr` is `None` for the record's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    All,
    Include(String),
    A(Option<String>),
    Mx(Option<String>),
    Ptr(Option<String>),
    Ip4(String),
    Ip6(String),
    Exists(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub qualifier: Qualifier,
    pub mechanism: Mechanism,
}

/// The terms of one SPF record that matter to a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpfRecord {
    pub directives: Vec<Directive>,
    pub redirect: Option<String>,
}

impl SpfRecord {
    /// The qualifier of the record's `all`, if it has one.
    pub fn all(&self) -> Option<Qualifier> {
        self.directives
            .iter()
            .find(|d| d.mechanism == Mechanism::All)
            .map(|d| d.qualifier)
    }

    /// How the record ends, as stored: `-all`, `~all`, `?all`, `+all`, `redirect` or ''.
    pub fn ending(&self) -> String {
        match (self.all(), &self.redirect) {
            (Some(q), _) => format!("{}all", q.symbol()),
            (None, Some(_)) => "redirect".to_owned(),
            (None, None) => String::new(),
        }
    }
}

/// Whether a TXT record is an SPF record (RFC 7208 4.5: `v=spf1` then a space or the end).
pub fn is_spf(txt: &str) -> bool {
    let txt = txt.trim_start();
    txt.get(..6)
        .is_some_and(|v| v.eq_ignore_ascii_case("v=spf1"))
        && txt[6..].chars().next().is_none_or(|c| c == ' ')
}

/// The directives of `txt` and what is wrong with them; `place` names the record in the
/// findings' text ("" for the domain's own record, "include:x.test: " for an included
/// one).
pub fn parse(txt: &str, place: &str) -> (SpfRecord, Vec<Finding>) {
    let mut record = SpfRecord::default();
    let mut findings = Vec::new();
    let mut finding = |severity: Severity, code: &'static str, text: String| {
        findings.push(Finding::new(
            Area::Spf,
            severity,
            code,
            format!("{place}{text}"),
        ));
    };
    let mut terms = txt.split_ascii_whitespace();
    terms.next(); // v=spf1, checked by the caller with `is_spf`
    for term in terms {
        if let Some((name, value)) = modifier(term) {
            // exp= and unknown modifiers are ignored by receivers (RFC 7208 6).
            if !name.eq_ignore_ascii_case("redirect") {
                continue;
            }
            if record.redirect.is_some() {
                finding(
                    Severity::Error,
                    "spf_syntax",
                    "redirect= appears more than once".to_owned(),
                );
            } else if value.is_empty() {
                finding(
                    Severity::Error,
                    "spf_syntax",
                    "redirect= without a domain".to_owned(),
                );
            } else {
                record.redirect = Some(value.to_ascii_lowercase());
            }
            continue;
        }
        let (qualifier, rest) = match term.as_bytes()[0] {
            b'+' => (Qualifier::Pass, &term[1..]),
            b'-' => (Qualifier::Fail, &term[1..]),
            b'~' => (Qualifier::SoftFail, &term[1..]),
            b'?' => (Qualifier::Neutral, &term[1..]),
            _ => (Qualifier::Pass, term),
        };
        let (name, argument) = match rest.find([':', '/']) {
            Some(at) => (&rest[..at], Some(&rest[at..])),
            None => (rest, None),
        };
        let domain = |argument: Option<&str>| -> Result<Option<String>, ()> {
            match argument {
                None => Ok(None),
                Some(a) if a.starts_with('/') => Ok(None),
                Some(a) => {
                    let spec = a[1..].split('/').next().unwrap_or_default();
                    if spec.is_empty() {
                        Err(())
                    } else {
                        Ok(Some(spec.to_ascii_lowercase()))
                    }
                }
            }
        };
        let required = |argument: Option<&str>| -> Result<String, ()> {
            match domain(argument) {
                Ok(Some(d)) => Ok(d),
                _ => Err(()),
            }
        };
        let mechanism = match name.to_ascii_lowercase().as_str() {
            "all" if argument.is_none() => Ok(Mechanism::All),
            "include" => required(argument).map(Mechanism::Include),
            "exists" => required(argument).map(Mechanism::Exists),
            "a" => domain(argument).map(Mechanism::A),
            "mx" => domain(argument).map(Mechanism::Mx),
            "ptr" => domain(argument).map(Mechanism::Ptr),
            "ip4" => match argument.and_then(|a| a.strip_prefix(':')) {
                Some(net) if valid_network(net, false) => Ok(Mechanism::Ip4(net.to_owned())),
                _ => Err(()),
            },
            "ip6" => match argument.and_then(|a| a.strip_prefix(':')) {
                Some(net) if valid_network(net, true) => Ok(Mechanism::Ip6(net.to_owned())),
                _ => Err(()),
            },
            _ => Err(()),
        };
        let Ok(mechanism) = mechanism else {
            finding(
                Severity::Error,
                "spf_syntax",
                format!("\"{term}\" is not a valid SPF term: receivers fail the whole record (permerror)"),
            );
            continue;
        };
        if matches!(mechanism, Mechanism::Ptr(_)) {
            finding(
                Severity::Warning,
                "spf_ptr",
                "the ptr mechanism is slow and unreliable; RFC 7208 says not to use it".to_owned(),
            );
        }
        record.directives.push(Directive {
            qualifier,
            mechanism,
        });
    }

    match record.all() {
        Some(Qualifier::Pass) => finding(
            Severity::Error,
            "spf_pass_all",
            "+all lets every server on the internet pass SPF for this domain".to_owned(),
        ),
        Some(Qualifier::Neutral) => finding(
            Severity::Warning,
            "spf_neutral_all",
            "?all says nothing about other servers: use ~all or -all".to_owned(),
        ),
        Some(_) if record.redirect.is_some() => finding(
            Severity::Warning,
            "spf_redirect_with_all",
            "redirect= is ignored because the record has an all".to_owned(),
        ),
        Some(_) => {}
        None if record.redirect.is_some() => {}
        None => finding(
            Severity::Warning,
            "spf_no_all",
            "no all and no redirect: mail from other servers gets a neutral result".to_owned(),
        ),
    }
    (record, findings)
}

/// A `name=value` modifier term (a mechanism's argument comes after ':' or '/', never '=').
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    valid_name.then_some((name, value))
}

/// An `ip4:`/`ip6:` argument: an address with an optional prefix length.
fn valid_network(net: &str, v6: bool) -> bool {
    let (address, prefix) = match net.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (net, None),
    };
    let max = if v6 { 128 } else { 32 };
    let address_ok = if v6 {
        address.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        address.parse::<std::net::Ipv4Addr>().is_ok()
    };
    address_ok && prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_good_record_is_read_term_by_term() {
        let (record, findings) = parse(
            "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:mail.example.test/24 \
             include:_spf.example.test exists:%{i}.x.test exp=explain.test -all",
            "",
        );
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(record.ending(), "-all");
        assert_eq!(
            record.directives[3].mechanism,
            Mechanism::Mx(Some("mail.example.test".into()))
        );
        assert_eq!(
            record.directives[4].mechanism,
            Mechanism::Include("_spf.example.test".into())
        );
        assert_eq!(record.directives.len(), 7);
    }

    #[test]
    fn dangerous_and_weak_endings_are_flagged() {
        assert_eq!(codes(&parse("v=spf1 +all", "").1), ["spf_pass_all"]);
        assert_eq!(codes(&parse("v=spf1 all", "").1), ["spf_pass_all"]);
        assert_eq!(codes(&parse("v=spf1 mx ?all", "").1), ["spf_neutral_all"]);
        assert_eq!(codes(&parse("v=spf1 mx", "").1), ["spf_no_all"]);
        assert_eq!(
            codes(&parse("v=spf1 redirect=_spf.x.test ~all", "").1),
            ["spf_redirect_with_all"]
        );
        assert!(parse("v=spf1 redirect=_spf.x.test", "").1.is_empty());
        assert_eq!(
            parse("v=spf1 redirect=_spf.x.test", "").0.ending(),
            "redirect"
        );
        assert_eq!(parse("v=spf1 mx", "").0.ending(), "");
    }

    #[test]
    fn bad_terms_and_ptr_are_named() {
        let (record, findings) = parse(
            "v=spf1 ip4:192.0.2.300 include: foo:bar ptr redirect=a.test redirect=b.test -all",
            "include:x.test: ",
        );
        assert_eq!(
            codes(&findings),
            [
                "spf_syntax",
                "spf_syntax",
                "spf_syntax",
                "spf_ptr",
                "spf_syntax",
                "spf_redirect_with_all"
            ]
        );
        assert!(findings[0]
            .text
            .starts_with("include:x.test: \"ip4:192.0.2.300\""));
        assert_eq!(record.directives.len(), 2);
    }

    #[test]
    fn spf_records_are_told_from_other_txt() {
        assert!(is_spf("v=spf1 -all"));
        assert!(is_spf("V=SPF1"));
        assert!(!is_spf("v=spf10 -all"));
        assert!(!is_spf("v=DMARC1; p=none"));
    }
}
