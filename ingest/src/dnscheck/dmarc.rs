//! DMARC records (RFC 7489 6.3, with DMARCbis's `np`, `psd` and `t`): one TXT record in,
//! its tags and the findings of a tag-by-tag reading out. Pure.
//!
//! Our own reader, not `mail-auth`'s `Dmarc::parse`: that parser is built to apply a
//! policy, so it stops at the first error and drops unknown or repeated tags silently;
//! a check must name every problem of the record (several at once), keep the URIs it
//! would refuse, and tell a repeated tag from a typo.

use super::finding::{Area, Finding, Severity};

/// DMARC records longer than this are hard to publish (several strings) and some DNS
/// hosting panels truncate them.
pub const MAX_RECORD_CHARS: usize = 450;

/// The tags of one DMARC record as published (`None`: absent; defaults are applied by
/// the accessors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DmarcRecord {
    pub p: Option<String>,
    pub sp: Option<String>,
    pub np: Option<String>,
    pub pct: Option<u8>,
    pub adkim: Option<String>,
    pub aspf: Option<String>,
    pub fo: Option<String>,
    pub rua: Vec<String>,
    pub ruf: Vec<String>,
    pub t: Option<String>,
    pub psd: Option<String>,
}

impl DmarcRecord {
    /// The percentage of failing mail the policy applies to (100 when absent or broken).
    pub fn pct(&self) -> u8 {
        self.pct.unwrap_or(100)
    }
}

/// Whether a TXT record is meant as a DMARC record (RFC 7489 6.6.3: records not
/// starting with `v=DMARC1` are discarded; spaces around `=` are tolerated here so
/// that a mistyped record is reported rather than ignored).
pub fn is_dmarc(txt: &str) -> bool {
    let head = txt.trim_start();
    let Some(rest) = head.strip_prefix(['v', 'V']) else {
        return false;
    };
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix('=') else {
        return false;
    };
    rest.trim_start()
        .get(..6)
        .is_some_and(|v| v.eq_ignore_ascii_case("DMARC1"))
}

/// The tags of `txt` and what is wrong with them.
pub fn parse(txt: &str) -> (DmarcRecord, Vec<Finding>) {
    let mut record = DmarcRecord::default();
    let mut findings = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut error = |code: &'static str, text: String| {
        findings.push(Finding::new(Area::Dmarc, Severity::Error, code, text));
    };
    let mut warnings: Vec<Finding> = Vec::new();
    let mut warn = |severity: Severity, code: &'static str, text: String| {
        warnings.push(Finding::new(Area::Dmarc, severity, code, text));
    };

    if txt.chars().count() > MAX_RECORD_CHARS {
        warn(
            Severity::Warning,
            "dmarc_too_long",
            format!(
                "the record is {} characters long (over {MAX_RECORD_CHARS}): some DNS hosts truncate it",
                txt.chars().count()
            ),
        );
    }
    let parts = txt
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty());
    for (index, part) in parts.enumerate() {
        let Some((tag, value)) = part.split_once('=') else {
            error(
                "dmarc_syntax",
                format!("\"{part}\" is not a tag=value pair (a missing ';'?)"),
            );
            continue;
        };
        let tag = tag.trim().to_ascii_lowercase();
        let value = value.trim();
        if index == 0 && tag != "v" {
            error(
                "dmarc_v_not_first",
                "the record must start with v=DMARC1".to_owned(),
            );
        }
        if seen.contains(&tag) {
            error(
                "dmarc_repeated_tag",
                format!("the tag {tag} appears more than once"),
            );
            continue;
        }
        seen.push(tag.clone());
        match tag.as_str() {
            "v" => {
                // Not first: reported above.
                if index == 0 && value != "DMARC1" {
                    error(
                        "dmarc_syntax",
                        format!("v={value}: the version must be exactly DMARC1"),
                    );
                }
            }
            "p" | "sp" | "np" => match policy(value) {
                Some(p) => {
                    let slot = match tag.as_str() {
                        "p" => &mut record.p,
                        "sp" => &mut record.sp,
                        _ => &mut record.np,
                    };
                    *slot = Some(p.to_owned());
                }
                None => error(
                    "dmarc_bad_policy",
                    format!("{tag}={value}: must be none, quarantine or reject"),
                ),
            },
            "pct" => match value.parse::<u8>() {
                Ok(pct) if pct <= 100 => record.pct = Some(pct),
                _ => error(
                    "dmarc_bad_pct",
                    format!("pct={value}: must be a whole number from 0 to 100"),
                ),
            },
            "adkim" | "aspf" => {
                let mode = value.to_ascii_lowercase();
                if mode == "r" || mode == "s" {
                    if tag == "adkim" {
                        record.adkim = Some(mode);
                    } else {
                        record.aspf = Some(mode);
                    }
                } else {
                    error(
                        "dmarc_bad_alignment",
                        format!("{tag}={value}: must be r (relaxed) or s (strict)"),
                    );
                }
            }
            "fo" => {
                if value
                    .split(':')
                    .all(|o| matches!(o.trim(), "0" | "1" | "d" | "s"))
                {
                    record.fo = Some(value.to_owned());
                } else {
                    warn(
                        Severity::Warning,
                        "dmarc_bad_fo",
                        format!("fo={value}: options are 0, 1, d and s, separated by ':'"),
                    );
                }
            }
            "rua" | "ruf" => {
                let uris: Vec<String> = value
                    .split(',')
                    .map(|u| u.trim().to_owned())
                    .filter(|u| !u.is_empty())
                    .collect();
                for uri in &uris {
                    if mailbox_of(uri).is_none() {
                        warn(
                            Severity::Warning,
                            "dmarc_bad_uri",
                            format!("{tag} {uri}: only mailto: addresses receive reports"),
                        );
                    }
                }
                if tag == "rua" {
                    record.rua = uris;
                } else {
                    record.ruf = uris;
                }
            }
            "t" | "psd" => {
                let allowed: &[&str] = if tag == "t" {
                    &["y", "n"]
                } else {
                    &["y", "n", "u"]
                };
                let v = value.to_ascii_lowercase();
                if allowed.contains(&v.as_str()) {
                    if tag == "t" {
                        record.t = Some(v);
                    } else {
                        record.psd = Some(v);
                    }
                } else {
                    error(
                        "dmarc_syntax",
                        format!("{tag}={value}: must be one of {}", allowed.join(", ")),
                    );
                }
            }
            "rf" | "ri" => {}
            _ => warn(
                Severity::Warning,
                "dmarc_unknown_tag",
                format!("unknown tag {tag} (a typo?); receivers ignore it"),
            ),
        }
    }

    if record.p.is_none() && !seen.iter().any(|t| t == "p") {
        error(
            "dmarc_no_policy",
            "no p= tag: receivers ignore the record (or, with rua, treat it as p=none)".to_owned(),
        );
    }
    if let Some(pct) = record.pct.filter(|pct| *pct < 100) {
        warn(
            Severity::Warning,
            "dmarc_pct_below_100",
            format!("pct={pct}: the policy applies to only {pct}% of failing mail"),
        );
    }
    if record.t.as_deref() == Some("y") {
        warn(
            Severity::Warning,
            "dmarc_testing",
            "t=y: receivers apply one policy level lower (testing mode)".to_owned(),
        );
    }
    if record.rua.is_empty() {
        warn(
            Severity::Warning,
            "dmarc_no_rua",
            "no rua: nobody receives aggregate reports for this domain".to_owned(),
        );
    }
    findings.extend(warnings);
    (record, findings)
}

/// The address of a `mailto:` report URI (without a `!size` limit), lower-cased domain.
pub fn mailbox_of(uri: &str) -> Option<String> {
    let rest = uri
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
        .map(|_| &uri[7..])?;
    let address = rest.split('!').next().unwrap_or_default().trim();
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains(char::is_whitespace) {
        return None;
    }
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

fn policy(value: &str) -> Option<&'static str> {
    match value.to_ascii_lowercase().as_str() {
        "none" => Some("none"),
        "quarantine" => Some("quarantine"),
        "reject" => Some("reject"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_good_record_has_no_findings() {
        let (record, findings) = parse(
            "v=DMARC1; p=reject; sp=reject; np=reject; pct=100; adkim=s; aspf=r; fo=1; \
             rua=mailto:dmarc@reports.test,mailto:b@x.test!10m; ruf=mailto:f@x.test; ri=86400;",
        );
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(record.p.as_deref(), Some("reject"));
        assert_eq!(record.np.as_deref(), Some("reject"));
        assert_eq!(record.adkim.as_deref(), Some("s"));
        assert_eq!(record.rua.len(), 2);
        assert_eq!(record.pct(), 100);
    }

    #[test]
    fn every_problem_of_a_record_is_named() {
        let (_, findings) = parse(
            "p=rejected; v=DMARC1; pct=50; pct=60; foo=bar; rua=https://x.test/r; adkim=x; oops",
        );
        let codes = codes(&findings);
        for code in [
            "dmarc_v_not_first",
            "dmarc_bad_policy",
            "dmarc_repeated_tag",
            "dmarc_unknown_tag",
            "dmarc_bad_uri",
            "dmarc_bad_alignment",
            "dmarc_syntax",
            "dmarc_pct_below_100",
        ] {
            assert!(codes.contains(&code), "{code} missing from {codes:?}");
        }
    }

    #[test]
    fn pct_below_100_and_testing_mode_are_warnings() {
        let (record, findings) = parse("v=DMARC1; p=quarantine; pct=50; t=y; rua=mailto:a@b.test");
        assert_eq!(record.pct(), 50);
        assert_eq!(codes(&findings), ["dmarc_pct_below_100", "dmarc_testing"]);
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));
    }

    #[test]
    fn a_record_without_rua_or_policy_is_flagged() {
        let (_, findings) = parse("v=DMARC1");
        assert_eq!(codes(&findings), ["dmarc_no_policy", "dmarc_no_rua"]);
        assert_eq!(findings[0].severity, Severity::Error);
    }

    #[test]
    fn a_long_record_is_a_warning() {
        let rua: Vec<String> = (0..20)
            .map(|i| format!("mailto:reports{i}@example.test"))
            .collect();
        let (_, findings) = parse(&format!("v=DMARC1; p=none; rua={}", rua.join(",")));
        assert!(codes(&findings).contains(&"dmarc_too_long"), "{findings:?}");
    }

    #[test]
    fn dmarc_records_are_told_from_other_txt() {
        assert!(is_dmarc("v=DMARC1; p=none"));
        assert!(is_dmarc(" v = dmarc1;p=none"));
        assert!(!is_dmarc("v=spf1 -all"));
        assert!(!is_dmarc("google-site-verification=x"));
        assert!(!is_dmarc("v=DMARC"));
    }

    #[test]
    fn report_addresses_are_read_from_mailto_uris() {
        assert_eq!(
            mailbox_of("mailto:Rua@Reports.TEST!10m").as_deref(),
            Some("Rua@reports.test")
        );
        assert_eq!(mailbox_of("MAILTO:a@b.test").as_deref(), Some("a@b.test"));
        assert_eq!(mailbox_of("https://b.test/r"), None);
        assert_eq!(mailbox_of("mailto:nobody"), None);
    }
}
