//! Domains: a domain -> its organisational domain (the Public Suffix List, compiled in
//! through the `psl` crate: no network), and a record -> DMARC identifier alignment
//! recomputed from its auth_results and the published `adkim`/`aspf` (RFC 7489
//! section 3.1). Pure.
//!
//! Recomputing lets analysts spot reporters that evaluate wrongly, and forwarded mail
//! (DKIM aligned and passing, SPF failing from a foreign IP).

use crate::report::{PolicyPublished, Record};

/// The organisational (registrable) domain of `domain`: `mail.example.co.uk` ->
/// `example.co.uk`. Lower-cased, a trailing dot dropped. A name the PSL knows no
/// registrable part of (a bare public suffix, an IP literal, garbage) is returned as is.
pub fn organisational(domain: &str) -> String {
    let d = domain.trim().trim_end_matches('.');
    // The parser lower-cases domains already: copy only when it must.
    if d.bytes().any(|b| b.is_ascii_uppercase()) {
        let lower = d.to_ascii_lowercase();
        return psl::domain_str(&lower).map_or_else(|| lower.clone(), str::to_owned);
    }
    psl::domain_str(d).unwrap_or(d).to_owned()
}

/// Identifier alignment mode (`adkim`, `aspf`): strict needs the same domain, relaxed
/// the same organisational domain. Absent or unknown values mean relaxed (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Relaxed,
    Strict,
}

impl Mode {
    fn from_tag(tag: Option<&str>) -> Mode {
        match tag {
            Some("s") => Mode::Strict,
            _ => Mode::Relaxed,
        }
    }
}

/// Whether `authenticated` (a DKIM `d=` or SPF domain) aligns with `header_from`.
pub fn aligned(authenticated: &str, header_from: &str, mode: Mode) -> bool {
    aligned_with(authenticated, header_from, mode, &mut Lookups::default())
}

fn aligned_with<'a>(
    authenticated: &'a str,
    header_from: &'a str,
    mode: Mode,
    lookups: &mut Lookups<'a>,
) -> bool {
    let a = authenticated.trim().trim_end_matches('.');
    let h = header_from.trim().trim_end_matches('.');
    if a.is_empty() || h.is_empty() {
        return false;
    }
    match mode {
        Mode::Strict => a.eq_ignore_ascii_case(h),
        Mode::Relaxed => lookups.same_org(a, h),
    }
}

/// The organisational domains looked up for one record, by the exact text looked up:
/// a record's identifiers mostly name one or two domains, and comparing a few short
/// strings costs far less than a Public Suffix List lookup and its allocation. At most
/// [`REMEMBERED`] domains are kept, so that a hostile record naming thousands of distinct
/// domains costs one lookup per identifier, as without the memo, and never a scan of
/// all the others.
#[derive(Default)]
struct Lookups<'a> {
    seen: Vec<(&'a str, String)>,
}

/// Distinct domains a [`Lookups`] keeps (real records name one to four).
const REMEMBERED: usize = 8;

impl<'a> Lookups<'a> {
    /// [`organisational`] of `domain`, looked up once per record while the memo has room.
    fn org(&mut self, domain: &'a str) -> String {
        match self.index(domain) {
            Some(at) => self.seen[at].1.clone(),
            None => organisational(domain),
        }
    }

    /// Whether `a` and `b` have the same organisational domain.
    fn same_org(&mut self, a: &'a str, b: &'a str) -> bool {
        if a == b {
            return true;
        }
        match (self.index(a), self.index(b)) {
            (Some(a), Some(b)) => self.seen[a].1 == self.seen[b].1,
            _ => organisational(a) == organisational(b),
        }
    }

    /// Where `domain` and its organisational domain are in `seen`, added if new and
    /// there is room; `None` when the memo is full and `domain` is not in it.
    fn index(&mut self, domain: &'a str) -> Option<usize> {
        if let Some(at) = self.seen.iter().position(|(d, _)| *d == domain) {
            return Some(at);
        }
        if self.seen.len() == REMEMBERED {
            return None;
        }
        self.seen.push((domain, organisational(domain)));
        Some(self.seen.len() - 1)
    }
}

/// Alignment of one record as recomputed (not as the reporter said).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Alignment {
    /// Some DKIM signature passed with a `d=` aligned to header_from.
    pub dkim: bool,
    /// Some SPF check of the envelope sender (`mfrom`, or no scope given) passed with a
    /// domain aligned to header_from. `helo` results never count (RFC 7489 3.1.2).
    pub spf: bool,
}

impl Alignment {
    /// DMARC passes when either identifier is aligned and passing.
    pub fn dmarc(&self) -> bool {
        self.dkim || self.spf
    }
}

/// Recomputes the alignment of `record` under the published `policy`.
pub fn alignment(record: &Record, policy: &PolicyPublished) -> Alignment {
    alignment_with(record, policy, &mut Lookups::default())
}

fn alignment_with<'a>(
    record: &'a Record,
    policy: &PolicyPublished,
    lookups: &mut Lookups<'a>,
) -> Alignment {
    let adkim = Mode::from_tag(policy.adkim.as_deref());
    let aspf = Mode::from_tag(policy.aspf.as_deref());
    let from = record.header_from.as_str();
    Alignment {
        dkim: record
            .dkim
            .iter()
            .any(|d| d.result == "pass" && aligned_with(&d.domain, from, adkim, lookups)),
        spf: record.spf.iter().any(|s| {
            s.result == "pass"
                && matches!(s.scope.as_deref(), None | Some("mfrom"))
                && aligned_with(&s.domain, from, aspf, lookups)
        }),
    }
}

/// [`alignment`] and [`organisations`] of `record` together, each distinct domain
/// looked up once (what a row needs).
pub fn analyse(record: &Record, policy: &PolicyPublished) -> (Alignment, Organisations) {
    let mut lookups = Lookups::default();
    let alignment = alignment_with(record, policy, &mut lookups);
    (alignment, organisations_with(record, &mut lookups))
}

/// The organisational domains of a record's identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Organisations {
    pub header_from: String,
    /// Of envelope_from's domain (an address counts by its domain); `""` when absent.
    pub envelope_from: String,
    /// One per DKIM signature, parallel to the record's `dkim`.
    pub dkim: Vec<String>,
    /// One per SPF check, parallel to the record's `spf`.
    pub spf: Vec<String>,
    /// See [`sender_org`].
    pub sender: String,
}

/// The organisational domains of `record`'s identifiers.
pub fn organisations(record: &Record) -> Organisations {
    organisations_with(record, &mut Lookups::default())
}

fn organisations_with<'a>(record: &'a Record, lookups: &mut Lookups<'a>) -> Organisations {
    Organisations {
        header_from: lookups.org(&record.header_from),
        envelope_from: record
            .envelope_from
            .as_deref()
            .map(|e| lookups.org(e.rsplit('@').next().unwrap_or(e)))
            .unwrap_or_default(),
        dkim: record.dkim.iter().map(|d| lookups.org(&d.domain)).collect(),
        spf: record.spf.iter().map(|s| lookups.org(&s.domain)).collect(),
        sender: lookups.org(sender_domain(record)),
    }
}

/// The organisation that sent the mail, for grouping senders by provider: the
/// organisational domain of the first passing DKIM signature, else of the SPF-checked
/// envelope domain, else of envelope_from, else of header_from.
pub fn sender_org(record: &Record) -> String {
    organisational(sender_domain(record))
}

/// The domain [`sender_org`] takes the organisation of.
fn sender_domain(record: &Record) -> &str {
    let candidate = record
        .dkim
        .iter()
        .find(|d| d.result == "pass" && !d.domain.is_empty())
        .map(|d| d.domain.as_str())
        .or_else(|| {
            record
                .spf
                .iter()
                .find(|s| !s.domain.is_empty() && s.scope.as_deref() != Some("helo"))
                .map(|s| s.domain.as_str())
        })
        .or(record.envelope_from.as_deref().filter(|e| !e.is_empty()))
        .unwrap_or(record.header_from.as_str());
    // An envelope address (`bounce@esp.example`) counts by its domain.
    candidate.rsplit('@').next().unwrap_or(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{DkimResult, SpfResult};
    use std::borrow::Cow;

    #[test]
    fn organisational_domains_follow_the_psl() {
        assert_eq!(organisational("mail.example.co.uk"), "example.co.uk");
        assert_eq!(organisational("Bounce.MCSV.net."), "mcsv.net");
        assert_eq!(organisational("a.b.c.example.com"), "example.com");
        assert_eq!(organisational("council.gov.uk"), "council.gov.uk");
        assert_eq!(organisational("x.s3.amazonaws.com"), "x.s3.amazonaws.com");
        assert_eq!(organisational("co.uk"), "co.uk");
        assert_eq!(organisational(""), "");
    }

    #[test]
    fn relaxed_and_strict_alignment() {
        use Mode::*;
        assert!(aligned("mail.example.com", "example.com", Relaxed));
        assert!(aligned("example.com", "news.example.com", Relaxed));
        assert!(!aligned("mail.example.com", "example.com", Strict));
        assert!(aligned("Example.COM", "example.com", Strict));
        assert!(!aligned("example.net", "example.com", Relaxed));
        // Two registrable domains under one public suffix are not aligned.
        assert!(!aligned("a.github.io", "b.github.io", Relaxed));
        assert!(aligned("shop.example.co.uk", "example.co.uk", Relaxed));
        assert!(!aligned("example.co.uk", "other.co.uk", Relaxed));
        assert!(!aligned("", "example.com", Relaxed));
    }

    fn record(dkim: &[(&str, &str)], spf: &[(&str, Option<&str>, &str)]) -> Record {
        Record {
            header_from: "example.com".into(),
            dkim: dkim
                .iter()
                .map(|(d, r)| DkimResult {
                    domain: (*d).into(),
                    result: Cow::Owned((*r).into()),
                    ..Default::default()
                })
                .collect(),
            spf: spf
                .iter()
                .map(|(d, scope, r)| SpfResult {
                    domain: (*d).into(),
                    scope: scope.map(|s| Cow::Owned(s.into())),
                    result: Cow::Owned((*r).into()),
                    human_result: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn policy(adkim: &'static str, aspf: &'static str) -> PolicyPublished {
        PolicyPublished {
            adkim: Some(Cow::Borrowed(adkim)),
            aspf: Some(Cow::Borrowed(aspf)),
            ..Default::default()
        }
    }

    #[test]
    fn forwarded_mail_keeps_dkim_loses_spf() {
        let r = record(
            &[("example.com", "pass")],
            &[("forwarder.example.net", Some("mfrom"), "fail")],
        );
        let a = alignment(&r, &policy("r", "r"));
        assert_eq!(
            a,
            Alignment {
                dkim: true,
                spf: false
            }
        );
        assert!(a.dmarc());
    }

    #[test]
    fn esp_signature_does_not_align_but_subdomain_bounce_does() {
        let r = record(
            &[("mcsv.net", "pass")],
            &[("bounce.example.com", Some("mfrom"), "pass")],
        );
        assert_eq!(
            alignment(&r, &policy("r", "r")),
            Alignment {
                dkim: false,
                spf: true
            }
        );
        assert_eq!(
            alignment(&r, &policy("r", "s")),
            Alignment {
                dkim: false,
                spf: false
            }
        );
        assert_eq!(sender_org(&r), "mcsv.net");
    }

    #[test]
    fn helo_results_and_failed_signatures_never_align() {
        let r = record(
            &[("example.com", "fail")],
            &[("example.com", Some("helo"), "pass")],
        );
        assert_eq!(alignment(&r, &policy("r", "r")), Alignment::default());
        // No policy tags at all: relaxed.
        let r = record(&[("mail.example.com", "pass")], &[]);
        assert!(alignment(&r, &PolicyPublished::default()).dkim);
    }

    /// `analyse` looks each distinct domain up once per record; what it gives must be
    /// what looking every identifier up on its own gives.
    #[test]
    fn analyse_equals_one_lookup_per_identifier() {
        let domains = [
            "example.com",
            "Example.COM.",
            "mail.example.com",
            "example.co.uk",
            "shop.example.co.uk",
            "mcsv.net",
            "a.github.io",
            "b.github.io",
            "",
            " example.com ",
            "bounce@esp.example.net",
        ];
        let mut checked = 0;
        for (i, from) in domains.iter().enumerate() {
            for (j, d) in domains.iter().enumerate() {
                let s = domains[(i + j) % domains.len()];
                for (result, scope) in [
                    ("pass", Some("mfrom")),
                    ("fail", None),
                    ("pass", Some("helo")),
                ] {
                    let mut r = record(
                        &[(d, result), (s, "pass")],
                        &[(s, scope, result), (d, None, "pass")],
                    );
                    r.header_from = (*from).into();
                    r.envelope_from = Some(format!("x@{s}"));
                    for p in [policy("r", "r"), policy("s", "r"), policy("r", "s")] {
                        let (alignment, orgs) = analyse(&r, &p);
                        let adkim = Mode::from_tag(p.adkim.as_deref());
                        let aspf = Mode::from_tag(p.aspf.as_deref());
                        let expected = Alignment {
                            dkim: r
                                .dkim
                                .iter()
                                .any(|k| k.result == "pass" && aligned(&k.domain, from, adkim)),
                            spf: r.spf.iter().any(|k| {
                                k.result == "pass"
                                    && matches!(k.scope.as_deref(), None | Some("mfrom"))
                                    && aligned(&k.domain, from, aspf)
                            }),
                        };
                        assert_eq!(alignment, expected, "{r:?} {p:?}");
                        assert_eq!(orgs.header_from, organisational(from));
                        assert_eq!(
                            orgs.envelope_from,
                            organisational(s.rsplit('@').next().unwrap())
                        );
                        let dkim: Vec<_> =
                            r.dkim.iter().map(|k| organisational(&k.domain)).collect();
                        let spf: Vec<_> = r.spf.iter().map(|k| organisational(&k.domain)).collect();
                        assert_eq!((orgs.dkim, orgs.spf), (dkim, spf));
                        assert_eq!(orgs.sender, sender_org(&r));
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 11 * 11 * 3 * 3);
    }

    /// A record naming more distinct domains than the memo keeps: the memo stays bounded
    /// (each lookup scans at most `REMEMBERED` entries, so a hostile record costs one
    /// lookup per identifier, not one scan of all the others), and the answers beyond
    /// it are still right.
    #[test]
    fn the_memo_is_bounded_and_right_beyond_its_bound() {
        let names: Vec<String> = (0..1000)
            .map(|i| format!("m{i}.d{}.co.uk", i % 3))
            .collect();
        let mut lookups = Lookups::default();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(lookups.org(name), organisational(name));
            assert!(lookups.seen.len() <= REMEMBERED);
            let other = &names[(i * 7) % names.len()];
            assert_eq!(
                lookups.same_org(name, other),
                organisational(name) == organisational(other),
                "{name} {other}"
            );
        }
        assert_eq!(lookups.seen.len(), REMEMBERED);

        let signers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "pass")).collect();
        let mut r = record(&signers, &[("m999.d0.co.uk", None, "pass")]);
        r.header_from = "d0.co.uk".into();
        let (alignment, orgs) = analyse(&r, &policy("r", "r"));
        assert!(alignment.dkim && alignment.spf);
        let expected: Vec<_> = names.iter().map(|n| organisational(n)).collect();
        assert_eq!(orgs.dkim, expected);
        assert_eq!(orgs.spf, ["d0.co.uk"]);
        assert_eq!(orgs.sender, "d0.co.uk");
    }

    #[test]
    fn sender_org_falls_back_to_envelope_and_header() {
        let mut r = record(&[], &[]);
        r.envelope_from = Some("bounces@mail.esp.example.co.uk".into());
        assert_eq!(sender_org(&r), "example.co.uk");
        r.envelope_from = None;
        assert_eq!(sender_org(&r), "example.com");
    }
}
