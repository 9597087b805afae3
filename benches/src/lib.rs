//! Synthetic DMARC aggregate (rua) reports for benchmarks and load tests.
//!
//! In: a [`ReportSpec`] (record count, seed, RFC 7489 or RFC 9990 flavour, metadata).
//! Out: the report's XML, streamed to any [`Write`], and the [`GeneratedTotals`] a parser
//! of it must reproduce. Fails only when the writer fails.
//!
//! The generator is pure and deterministic: the same spec gives the same bytes on every
//! machine (integer arithmetic only, own SplitMix64). Memory use is constant: records are
//! formatted into one reused buffer that is handed to the writer in chunks of
//! [`CHUNK_BYTES`], so a million-record report costs the same memory as a ten-record one.
//!
//! The records imitate what a large receiver reports for a domain with `p=reject;
//! sp=quarantine`: its own servers, Google Workspace, Microsoft 365, bulk senders
//! (SendGrid, Amazon SES, Mailchimp, Mailgun), forwarders and mailing lists, and spoofers.
//! `policy_evaluated` is derived from the auth results by relaxed alignment, so the
//! dispositions are consistent with the published policy. Source addresses come from the
//! documentation ranges (RFC 5737, RFC 3849), from the ranges those providers announce,
//! and from random global unicast space; they are not unique across records, as in real
//! reports a sender IP appears in several records with different identifiers.
//!
//! The layout is pretty-printed with a one-space indent, as some reporters with large
//! reports write it; this keeps the size near what real reports average. With the
//! two-space indent of Google and Microsoft the same records would be 13% larger
//! (about 730 bytes instead of 645).

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The RFC 9990 (DMARCbis aggregate reporting) namespace.
pub const DMARC_2_NAMESPACE: &str = "urn:ietf:params:xml:ns:dmarc-2.0";

/// Bytes buffered before they are handed to the writer.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Seconds covered by a report (one day, inclusive end as Google writes it).
const REPORT_PERIOD_SECS: u64 = 86_399;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSpec {
    /// Number of `<record>` elements.
    pub records: u64,
    /// Seed of the PRNG; the output is a pure function of the whole spec.
    pub seed: u64,
    /// RFC 9990 flavour: the `urn:ietf:params:xml:ns:dmarc-2.0` namespace, `<generator>`,
    /// `<np>`, `<testing>`, `<discovery_method>`, SPF `<human_result>`, `pass` as a
    /// disposition and the RFC 9990 override reasons. Otherwise RFC 7489 with no namespace.
    pub dmarcbis: bool,
    /// `<org_name>` of the reporter; when it looks like a domain, `<email>` uses it.
    pub org_name: String,
    /// `<policy_published><domain>`, the domain the report is about (lower case).
    pub policy_domain: String,
    /// `<report_id>`.
    pub report_id: String,
    /// `<date_range><begin>`, seconds since the epoch; `<end>` is one day later.
    pub date_begin: u64,
}

impl Default for ReportSpec {
    fn default() -> Self {
        Self {
            records: 1_000,
            seed: 1,
            dmarcbis: false,
            org_name: "example.net".to_owned(),
            policy_domain: "example.com".to_owned(),
            report_id: "bench-1700006400-0001".to_owned(),
            date_begin: 1_700_006_400,
        }
    }
}

/// What was written: the numbers a correct parser of the report must find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GeneratedTotals {
    /// `<record>` elements written.
    pub records: u64,
    /// Sum of all `<count>` values.
    pub messages: u64,
    /// Bytes of XML written (uncompressed).
    pub bytes: u64,
}

/// Writes the report described by `spec` to `out`, streaming, and flushes `out`.
///
/// `out` receives writes of about [`CHUNK_BYTES`] each, so an unbuffered file is fine.
/// A compressing writer (e.g. `flate2::write::GzEncoder`) must still be finished by the
/// caller.
pub fn write_report<W: Write>(mut out: W, spec: &ReportSpec) -> io::Result<GeneratedTotals> {
    let ctx = Context::new(spec);
    let mut rng = SplitMix64::new(spec.seed);
    let mut xml = Xml::with_capacity(CHUNK_BYTES + 4096);
    let mut totals = GeneratedTotals::default();
    let mut record = Record::default();

    write_head(&mut xml, spec, &ctx);
    for _ in 0..spec.records {
        record.generate(&mut rng, &ctx);
        write_record(&mut xml, &record, ctx.dmarcbis);
        totals.records += 1;
        totals.messages += record.count;
        if xml.buf.len() >= CHUNK_BYTES {
            totals.bytes += xml.drain_to(&mut out)?;
        }
    }
    xml.raw(b"</feedback>\n");
    totals.bytes += xml.drain_to(&mut out)?;
    out.flush()?;
    Ok(totals)
}

// ---------------------------------------------------------------------------------------
// PRNG

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for test data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x6a09_e667_f3bc_c909)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is negligible here).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn byte(&mut self, lo: u8, hi: u8) -> u8 {
        self.range(u64::from(lo), u64::from(hi)) as u8
    }

    fn group(&mut self, lo: u16, hi: u16) -> u16 {
        self.range(u64::from(lo), u64::from(hi)) as u16
    }

    /// True with probability `percent`/100.
    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn word(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }

    /// Index into `weights`, chosen with probability proportional to each weight.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut roll = self.below(weights.iter().sum());
        for (i, &w) in weights.iter().enumerate() {
            if roll < w {
                return i;
            }
            roll -= w;
        }
        weights.len() - 1
    }
}

// ---------------------------------------------------------------------------------------
// Per-report constants

struct Context {
    dmarcbis: bool,
    /// The policy domain, e.g. `example.com`.
    domain: String,
    /// `.example.com`, for the relaxed-alignment suffix test.
    dot_domain: String,
    /// `example-com`, as Google and Microsoft spell the domain inside their own names.
    dashed: String,
    /// `example`, the first label.
    label: String,
}

impl Context {
    fn new(spec: &ReportSpec) -> Self {
        let domain = spec.policy_domain.clone();
        let label = domain.split('.').next().unwrap_or_default().to_owned();
        Self {
            dmarcbis: spec.dmarcbis,
            dot_domain: format!(".{domain}"),
            dashed: domain.replace('.', "-"),
            label,
            domain,
        }
    }

    /// Relaxed alignment with the policy domain (every header_from here is under it).
    fn aligned(&self, d: &str) -> bool {
        d == self.domain || d.ends_with(&self.dot_domain)
    }
}

// ---------------------------------------------------------------------------------------
// One record, generated into reused storage

#[derive(Default)]
struct Dkim {
    /// Position in `Record::dkim`, for callers that must borrow other fields meanwhile.
    index: usize,
    domain: String,
    selector: String,
    result: &'static str,
    human_result: Option<&'static str>,
}

#[derive(Default)]
struct Record {
    source_ip: Option<IpAddr>,
    count: u64,
    disposition: &'static str,
    policy_dkim_pass: bool,
    policy_spf_pass: bool,
    reason: Option<(&'static str, Option<&'static str>)>,
    envelope_to: Option<&'static str>,
    envelope_from: String,
    header_from: String,
    dkim: [Dkim; 3],
    dkim_len: usize,
    spf_domain: String,
    spf_scope: &'static str,
    spf_result: &'static str,
    spf_human_result: Option<&'static str>,
}

/// Who sent the mail a record describes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sender {
    Own,
    Google,
    Microsoft,
    Bulk,
    Forwarder,
    Spoofer,
}

const SENDERS: [Sender; 6] = [
    Sender::Own,
    Sender::Google,
    Sender::Microsoft,
    Sender::Bulk,
    Sender::Forwarder,
    Sender::Spoofer,
];
const SENDER_WEIGHTS: [u64; 6] = [18, 15, 15, 17, 10, 25];

const OWN_SUBDOMAINS: [&str; 5] = ["mail.", "news.", "billing.", "info.", "support."];
const SPOOF_SUBDOMAINS: [&str; 5] = ["secure.", "login.", "account.", "mail.", "id."];
const OWN_SELECTORS: [&str; 6] = ["s1", "s2", "mail", "dkim", "2024a", "default"];
const SPOOF_SELECTORS: [&str; 6] = ["default", "dkim", "mail", "x", "s1024", "key1"];
const RECIPIENT_DOMAINS: [&str; 6] = [
    "outlook.com",
    "hotmail.com",
    "example.org",
    "example.net",
    "mail.example.org",
    "students.example.edu",
];
const SYLLABLES: [&str; 16] = [
    "ka", "ro", "mi", "tel", "net", "zo", "vex", "lu", "pra", "dor", "qui", "sen", "bar", "fo",
    "gri", "mo",
];
const JUNK_TLDS: [&str; 10] = [
    "com", "net", "ru", "top", "xyz", "info", "biz", "cn", "br", "shop",
];
const SES_REGIONS: [&str; 5] = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
];
const MAILCHIMP_SITES: [&str; 4] = ["atl", "sea", "suw", "wdc"];
const GLOBAL_V6_PREFIXES: [u16; 14] = [
    0x2001, 0x2401, 0x2403, 0x2405, 0x2600, 0x2602, 0x2604, 0x2607, 0x2a00, 0x2a01, 0x2a02, 0x2a03,
    0x2a05, 0x2c0f,
];

const DKIM_HUMAN_PASS: [&str; 3] = ["2048-bit key", "1024-bit key", "signature verified"];
const DKIM_HUMAN_FAIL: [&str; 4] = [
    "body hash did not verify",
    "signature did not verify",
    "signature expired",
    "no key for signature",
];
const SPF_HUMAN_PASS: [&str; 2] = ["sender is authorized", "matched include mechanism"];
const SPF_HUMAN_FAIL: [&str; 3] = [
    "sender is not authorized",
    "too many DNS lookups",
    "no SPF record found",
];

/// Reasons a forwarded or list message failing DMARC was let through (RFC 7489 names).
const FORWARD_REASONS: [&str; 3] = ["forwarded", "mailing_list", "trusted_forwarder"];
/// The same for RFC 9990, which dropped `forwarded`.
const FORWARD_REASONS_BIS: [&str; 3] = ["mailing_list", "trusted_forwarder", "other"];

fn reason_comments(kind: &str) -> &'static [&'static str] {
    match kind {
        "forwarded" => &[
            "arc=pass",
            "arc=pass as[1].d=google.com as[1].s=arc-20240605",
        ],
        "mailing_list" => &["list-id header present", "arc=pass"],
        "trusted_forwarder" => &["forwarder on local allowlist", "arc=pass"],
        "local_policy" => &[
            "reject downgraded to quarantine",
            "sender on local allowlist",
        ],
        _ => &["arc=pass"],
    }
}

impl Record {
    fn clear(&mut self) {
        self.source_ip = None;
        self.reason = None;
        self.envelope_to = None;
        self.envelope_from.clear();
        self.header_from.clear();
        for (i, d) in self.dkim.iter_mut().enumerate() {
            d.index = i;
            d.domain.clear();
            d.selector.clear();
            d.human_result = None;
        }
        self.dkim_len = 0;
        self.spf_domain.clear();
        self.spf_scope = "mfrom";
        self.spf_human_result = None;
    }

    /// Adds a DKIM signature and returns it for its domain and selector to be filled.
    fn add_dkim(&mut self, result: &'static str) -> &mut Dkim {
        let d = &mut self.dkim[self.dkim_len];
        self.dkim_len += 1;
        d.result = result;
        d
    }

    fn generate(&mut self, rng: &mut SplitMix64, ctx: &Context) {
        self.clear();
        let sender = SENDERS[rng.weighted(&SENDER_WEIGHTS)];
        match sender {
            Sender::Own => self.own(rng, ctx),
            Sender::Google => self.google(rng, ctx),
            Sender::Microsoft => self.microsoft(rng, ctx),
            Sender::Bulk => self.bulk(rng, ctx),
            Sender::Forwarder => self.forwarder(rng, ctx),
            Sender::Spoofer => self.spoofer(rng, ctx),
        }
        self.count = message_count(rng, sender);
        if rng.percent(18) {
            self.envelope_to = Some(rng.word(&RECIPIENT_DOMAINS));
        }
        for d in &mut self.dkim[..self.dkim_len] {
            if rng.percent(8) {
                d.human_result = Some(if d.result == "pass" {
                    rng.word(&DKIM_HUMAN_PASS)
                } else {
                    rng.word(&DKIM_HUMAN_FAIL)
                });
            }
        }
        if ctx.dmarcbis && rng.percent(10) {
            self.spf_human_result = Some(if self.spf_result == "pass" {
                rng.word(&SPF_HUMAN_PASS)
            } else {
                rng.word(&SPF_HUMAN_FAIL)
            });
        }
        self.evaluate(rng, ctx, sender);
    }

    /// The domain's own mail servers: aligned and passing, nearly always.
    fn own(&mut self, rng: &mut SplitMix64, ctx: &Context) {
        self.source_ip = Some(match rng.below(100) {
            0..=59 => v4(192, 0, 2, rng.byte(1, 254)),
            60..=74 => v4(198, 51, 100, rng.byte(1, 254)),
            _ => v6_host(
                [0x2001, 0xdb8, rng.group(0, 0xff), rng.group(0, 0xf)],
                rng.group(1, 0xff),
            ),
        });
        self.header_from_with_sub(rng, ctx, 25, &OWN_SUBDOMAINS);
        if rng.percent(30) {
            self.envelope_from.push_str("bounce.");
            self.envelope_from.push_str(&ctx.domain);
        } else {
            self.envelope_from.push_str(&self.header_from);
        }
        let result = pick_weighted(rng, &[("pass", 96), ("fail", 3), ("temperror", 1)]);
        let d = self.add_dkim(result);
        d.domain.push_str(&ctx.domain);
        d.selector.push_str(rng.word(&OWN_SELECTORS));
        if rng.percent(10) && self.header_from != ctx.domain {
            let i = self.add_dkim("pass").index;
            self.dkim[i].domain.push_str(&self.header_from);
            self.dkim[i].selector.push_str("s2");
        }
        self.spf_domain.push_str(&self.envelope_from);
        if rng.percent(5) {
            self.spf_scope = "helo";
        }
        self.spf_result = pick_weighted(rng, &[("pass", 95), ("softfail", 3), ("temperror", 2)]);
    }

    /// Google Workspace: the customer's key, or the gappssmtp.com one if none is set up.
    fn google(&mut self, rng: &mut SplitMix64, ctx: &Context) {
        self.source_ip = Some(if rng.percent(35) {
            v6_host(
                [
                    0x2a00,
                    0x1450,
                    rng.group(0x4800, 0x48ff),
                    rng.group(0, 0x3f),
                ],
                rng.group(0x100, 0xfff),
            )
        } else {
            match rng.below(3) {
                0 => v4(209, 85, rng.byte(128, 255), rng.byte(1, 254)),
                1 => v4(64, 233, rng.byte(160, 191), rng.byte(1, 254)),
                _ => v4(74, 125, rng.byte(0, 255), rng.byte(1, 254)),
            }
        });
        self.header_from_with_sub(rng, ctx, 10, &OWN_SUBDOMAINS);
        self.envelope_from.push_str(&self.header_from);
        // Google signs with the customer's key once one is set up, else with its own.
        if rng.percent(80) {
            let result = pick_weighted(rng, &[("pass", 97), ("fail", 2), ("permerror", 1)]);
            let d = self.add_dkim(result);
            d.domain.push_str(&ctx.domain);
            d.selector.push_str("google");
        } else {
            let d = self.add_dkim("pass");
            d.domain.push_str(&ctx.dashed);
            d.domain.push_str(".20230601.gappssmtp.com");
            d.selector.push_str("20230601");
        }
        self.spf_domain.push_str(&self.envelope_from);
        self.spf_result = pick_weighted(rng, &[("pass", 96), ("softfail", 3), ("neutral", 1)]);
    }

    /// Microsoft 365: selector1/selector2, or the tenant's onmicrosoft.com key.
    fn microsoft(&mut self, rng: &mut SplitMix64, ctx: &Context) {
        self.source_ip = Some(if rng.percent(45) {
            v6_host(
                [0x2a01, 0x111, 0xf403, rng.group(0xc000, 0xdfff)],
                rng.group(1, 0x1f),
            )
        } else {
            match rng.below(3) {
                0 => v4(40, 107, rng.byte(0, 255), rng.byte(1, 254)),
                1 => v4(52, 100, rng.byte(0, 255), rng.byte(1, 254)),
                _ => v4(104, 47, rng.byte(0, 127), rng.byte(1, 254)),
            }
        });
        self.header_from_with_sub(rng, ctx, 10, &OWN_SUBDOMAINS);
        self.envelope_from.push_str(&self.header_from);
        // Likewise Microsoft: the customer's selector1/selector2, else the tenant's key.
        let selector = if rng.percent(50) {
            "selector1"
        } else {
            "selector2"
        };
        if rng.percent(75) {
            let result = pick_weighted(rng, &[("pass", 96), ("fail", 3), ("temperror", 1)]);
            let d = self.add_dkim(result);
            d.domain.push_str(&ctx.domain);
            d.selector.push_str(selector);
        } else {
            let d = self.add_dkim("pass");
            d.domain.push_str(&ctx.label);
            d.domain.push_str(".onmicrosoft.com");
            d.selector.push_str(selector);
            d.selector.push('-');
            d.selector.push_str(&ctx.dashed);
        }
        self.spf_domain.push_str(&self.envelope_from);
        self.spf_result = pick_weighted(rng, &[("pass", 97), ("softfail", 2), ("temperror", 1)]);
    }

    /// Bulk senders, whose SPF domain is often their own and so unaligned.
    fn bulk(&mut self, rng: &mut SplitMix64, ctx: &Context) {
        self.header_from_with_sub(rng, ctx, 40, &OWN_SUBDOMAINS);
        let aligned_dkim = rng.percent(85);
        match rng.below(4) {
            0 => {
                // SendGrid
                self.source_ip = Some(if rng.percent(60) {
                    v4(167, 89, rng.byte(0, 127), rng.byte(1, 254))
                } else {
                    v4(149, 72, rng.byte(0, 255), rng.byte(1, 254))
                });
                if rng.percent(70) {
                    let n = rng.range(1000, 9999);
                    push_fmt(
                        &mut self.envelope_from,
                        format_args!("em{n}.{}", ctx.domain),
                    );
                } else {
                    self.envelope_from.push_str("sendgrid.net");
                }
                if aligned_dkim {
                    let d = self.add_dkim("pass");
                    d.domain.push_str(&ctx.domain);
                    d.selector
                        .push_str(if rng.percent(50) { "s1" } else { "s2" });
                }
                let d = self.add_dkim("pass");
                d.domain.push_str("sendgrid.info");
                d.selector.push_str("smtpapi");
            }
            1 => {
                // Amazon SES: 32-character Easy DKIM tokens as selectors.
                self.source_ip = Some(if rng.percent(70) {
                    v4(54, 240, rng.byte(0, 255), rng.byte(1, 254))
                } else {
                    v4(23, 251, rng.byte(224, 255), rng.byte(1, 254))
                });
                if rng.percent(40) {
                    self.envelope_from.push_str("mail.");
                    self.envelope_from.push_str(&ctx.domain);
                } else {
                    self.envelope_from.push_str(rng.word(&SES_REGIONS));
                    self.envelope_from.push_str(".amazonses.com");
                }
                if aligned_dkim {
                    let d = self.add_dkim("pass");
                    d.domain.push_str(&ctx.domain);
                    push_token(rng, &mut d.selector, 32);
                }
                let d = self.add_dkim("pass");
                d.domain.push_str("amazonses.com");
                push_token(rng, &mut d.selector, 32);
            }
            2 => {
                // Mailchimp
                self.source_ip = Some(if rng.percent(70) {
                    v4(198, 2, rng.byte(128, 191), rng.byte(1, 254))
                } else {
                    v4(205, 201, rng.byte(128, 143), rng.byte(1, 254))
                });
                let (m, site, n) = (
                    rng.range(1, 250),
                    rng.pick(&MAILCHIMP_SITES),
                    rng.range(11, 240),
                );
                push_fmt(
                    &mut self.envelope_from,
                    format_args!("mail{m}.{site}{n}.mcsv.net"),
                );
                let d = self.add_dkim("pass");
                d.domain.push_str("mcsv.net");
                d.selector
                    .push_str(if rng.percent(50) { "k2" } else { "k3" });
                if aligned_dkim {
                    let d = self.add_dkim("pass");
                    d.domain.push_str(&ctx.domain);
                    d.selector
                        .push_str(if rng.percent(50) { "k2" } else { "k3" });
                }
            }
            _ => {
                // Mailgun, on a delegated subdomain.
                self.source_ip = Some(if rng.percent(60) {
                    v4(159, 135, rng.byte(224, 239), rng.byte(1, 254))
                } else {
                    v4(69, 72, rng.byte(32, 47), rng.byte(1, 254))
                });
                self.envelope_from.push_str("mg.");
                self.envelope_from.push_str(&ctx.domain);
                let result = if aligned_dkim { "pass" } else { "fail" };
                let d = self.add_dkim(result);
                d.domain.push_str("mg.");
                d.domain.push_str(&ctx.domain);
                d.selector.push_str(rng.word(&["pic", "mx", "krs"]));
                if rng.percent(30) {
                    let d = self.add_dkim("pass");
                    d.domain.push_str("mailgun.org");
                    d.selector.push_str("mg");
                }
            }
        }
        self.spf_domain.push_str(&self.envelope_from);
        self.spf_result = pick_weighted(rng, &[("pass", 95), ("softfail", 3), ("temperror", 2)]);
    }

    /// Forwarders and mailing lists: the original signature often broken, SPF unaligned.
    fn forwarder(&mut self, rng: &mut SplitMix64, ctx: &Context) {
        self.source_ip = Some(if rng.percent(20) {
            random_v6(rng)
        } else if rng.percent(30) {
            v4(198, 51, 100, rng.byte(1, 254))
        } else {
            random_v4(rng)
        });
        self.header_from.push_str(&ctx.domain);
        let list = rng.percent(50);
        if list {
            self.envelope_from.push_str("lists.");
            push_junk_name(rng, &mut self.envelope_from);
            self.envelope_from.push_str(".org");
        } else {
            self.envelope_from.push_str(&ctx.domain);
        }
        let original = if rng.percent(60) { "fail" } else { "pass" };
        let d = self.add_dkim(original);
        d.domain.push_str(&ctx.domain);
        d.selector.push_str(rng.word(&OWN_SELECTORS));
        if list && rng.percent(60) {
            let i = self.add_dkim("pass").index;
            self.dkim[i].domain.push_str(&self.envelope_from);
            let selector = if rng.percent(50) { "default" } else { "list" };
            self.dkim[i].selector.push_str(selector);
            if rng.percent(25) {
                // A list hosted at Fastmail, which signs everything it relays.
                let d = self.add_dkim("pass");
                d.domain.push_str("messagingengine.com");
                d.selector
                    .push_str(if rng.percent(50) { "fm2" } else { "fm3" });
            }
        }
        self.spf_domain.push_str(&self.envelope_from);
        self.spf_result = if list {
            pick_weighted(rng, &[("pass", 90), ("neutral", 10)])
        } else {
            pick_weighted(rng, &[("fail", 50), ("softfail", 40), ("neutral", 10)])
        };
    }

    /// Spoofers: header_from is the domain, everything else is theirs or fails.
    fn spoofer(&mut self, rng: &mut SplitMix64, ctx: &Context) {
        self.source_ip = Some(match rng.below(100) {
            0..=69 => random_v4(rng),
            70..=79 => v4(203, 0, 113, rng.byte(1, 254)),
            80..=89 => v6_host(
                [0x2001, 0xdb8, 0xbad, rng.group(0, 0xffff)],
                rng.group(1, 0xffff),
            ),
            _ => random_v6(rng),
        });
        self.header_from_with_sub(rng, ctx, 20, &SPOOF_SUBDOMAINS);
        let own_envelope = rng.percent(40);
        if own_envelope {
            self.envelope_from.push_str(&ctx.domain);
        } else {
            push_junk_domain(rng, ctx, &mut self.envelope_from);
        }
        // One signature: a forged one for the domain, or a valid one for their own.
        let i = if rng.percent(20) {
            let i = self.add_dkim("fail").index;
            self.dkim[i].domain.push_str(&ctx.domain);
            i
        } else {
            let result = pick_weighted(
                rng,
                &[
                    ("pass", 50),
                    ("fail", 20),
                    ("none", 10),
                    ("permerror", 10),
                    ("neutral", 10),
                ],
            );
            let i = self.add_dkim(result).index;
            if !own_envelope && rng.percent(70) {
                self.dkim[i].domain.push_str(&self.envelope_from);
            } else {
                push_junk_domain(rng, ctx, &mut self.dkim[i].domain);
            }
            i
        };
        self.dkim[i].selector.push_str(rng.word(&SPOOF_SELECTORS));
        self.spf_domain.push_str(&self.envelope_from);
        if rng.percent(8) {
            self.spf_scope = "helo";
        }
        self.spf_result = if own_envelope {
            pick_weighted(
                rng,
                &[
                    ("fail", 60),
                    ("softfail", 30),
                    ("permerror", 5),
                    ("temperror", 5),
                ],
            )
        } else {
            pick_weighted(
                rng,
                &[
                    ("pass", 40),
                    ("neutral", 20),
                    ("none", 20),
                    ("softfail", 20),
                ],
            )
        };
    }

    fn header_from_with_sub(
        &mut self,
        rng: &mut SplitMix64,
        ctx: &Context,
        percent: u64,
        subs: &[&'static str],
    ) {
        if rng.percent(percent) {
            self.header_from.push_str(rng.word(subs));
        }
        self.header_from.push_str(&ctx.domain);
    }

    /// DMARC evaluation with relaxed alignment, `p=reject; sp=quarantine`, and the
    /// override reasons receivers give.
    fn evaluate(&mut self, rng: &mut SplitMix64, ctx: &Context, sender: Sender) {
        self.policy_dkim_pass = self.dkim[..self.dkim_len]
            .iter()
            .any(|d| d.result == "pass" && ctx.aligned(&d.domain));
        self.policy_spf_pass =
            self.spf_scope == "mfrom" && self.spf_result == "pass" && ctx.aligned(&self.spf_domain);
        if self.policy_dkim_pass || self.policy_spf_pass {
            self.disposition = if ctx.dmarcbis { "pass" } else { "none" };
            return;
        }
        self.disposition = if self.header_from == ctx.domain {
            "reject"
        } else {
            "quarantine"
        };
        if sender == Sender::Forwarder && rng.percent(80) {
            let kind = *rng.pick(if ctx.dmarcbis {
                &FORWARD_REASONS_BIS
            } else {
                &FORWARD_REASONS
            });
            self.set_reason(rng, kind);
            self.disposition = "none";
        } else if sender != Sender::Forwarder && rng.percent(18) {
            self.set_reason(rng, "local_policy");
            self.disposition = if self.disposition == "reject" && rng.percent(60) {
                "quarantine"
            } else {
                "none"
            };
        }
    }

    fn set_reason(&mut self, rng: &mut SplitMix64, kind: &'static str) {
        let comment = if rng.percent(50) {
            Some(*rng.pick(reason_comments(kind)))
        } else {
            None
        };
        self.reason = Some((kind, comment));
    }
}

/// Messages per record, 1..=1000, most records small; real senders send more than spoofers.
fn message_count(rng: &mut SplitMix64, sender: Sender) -> u64 {
    const BUCKETS: [(u64, u64); 5] = [(1, 1), (2, 5), (6, 20), (21, 100), (101, 1000)];
    let weights: &[u64; 5] = match sender {
        Sender::Spoofer => &[70, 20, 7, 2, 1],
        Sender::Forwarder => &[55, 25, 12, 6, 2],
        _ => &[35, 25, 20, 13, 7],
    };
    let (lo, hi) = BUCKETS[rng.weighted(weights)];
    rng.range(lo, hi)
}

fn pick_weighted(rng: &mut SplitMix64, choices: &[(&'static str, u64)]) -> &'static str {
    let mut roll = rng.below(choices.iter().map(|c| c.1).sum());
    for &(value, weight) in choices {
        if roll < weight {
            return value;
        }
        roll -= weight;
    }
    choices[choices.len() - 1].0
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(g: [u16; 8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(g))
}

/// `prefix::host` in a /64, the way providers number their outbound relays.
fn v6_host(prefix: [u16; 4], host: u16) -> IpAddr {
    let [a, b, c, d] = prefix;
    v6([a, b, c, d, 0, 0, 0, host])
}

/// A global unicast IPv4 address outside private, shared, loopback, link-local,
/// benchmarking, documentation and multicast space.
fn random_v4(rng: &mut SplitMix64) -> IpAddr {
    loop {
        let (a, b) = (rng.byte(1, 223), rng.byte(0, 255));
        let special = matches!(
            (a, b),
            (10, _)
                | (127, _)
                | (100, 64..=127)
                | (169, 254)
                | (172, 16..=31)
                | (192, 168)
                | (192, 0)
                | (198, 18..=19)
                | (198, 51)
                | (203, 0)
        );
        if !special {
            return v4(a, b, rng.byte(0, 255), rng.byte(1, 254));
        }
    }
}

/// A global-looking IPv6 address: half with a small interface id, half with a random one.
fn random_v6(rng: &mut SplitMix64) -> IpAddr {
    let mut g = [0u16; 8];
    g[0] = *rng.pick(&GLOBAL_V6_PREFIXES);
    for x in &mut g[1..4] {
        *x = rng.group(0, 0xffff);
    }
    if rng.percent(50) {
        g[7] = rng.group(1, 0xff);
    } else {
        for x in &mut g[4..] {
            *x = rng.group(0, 0xffff);
        }
    }
    v6(g)
}

/// A pronounceable made-up name such as `vexlumo`, possibly with a digit.
fn push_junk_name(rng: &mut SplitMix64, out: &mut String) {
    for _ in 0..rng.range(2, 3) {
        out.push_str(rng.word(&SYLLABLES));
    }
    if rng.percent(30) {
        out.push(char::from(b'0' + rng.below(10) as u8));
    }
}

/// A spoofer's domain: a made-up name or a look-alike of the policy domain.
fn push_junk_domain(rng: &mut SplitMix64, ctx: &Context, out: &mut String) {
    match rng.below(10) {
        0 => push_fmt(out, format_args!("{}-secure.com", ctx.label)),
        1 => push_fmt(out, format_args!("{}mail.net", ctx.label)),
        _ => {
            push_junk_name(rng, out);
            out.push('.');
            out.push_str(rng.word(&JUNK_TLDS));
        }
    }
}

fn push_token(rng: &mut SplitMix64, out: &mut String, len: usize) {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    for _ in 0..len {
        out.push(char::from(*rng.pick(ALPHABET)));
    }
}

fn push_fmt(out: &mut String, args: std::fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
}

// ---------------------------------------------------------------------------------------
// XML output

/// A byte buffer with the few pretty-printing helpers the report needs.
struct Xml {
    buf: Vec<u8>,
}

impl Xml {
    fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    fn drain_to<W: Write>(&mut self, out: &mut W) -> io::Result<u64> {
        out.write_all(&self.buf)?;
        let n = self.buf.len() as u64;
        self.buf.clear();
        Ok(n)
    }

    fn raw(&mut self, s: &[u8]) {
        self.buf.extend_from_slice(s);
    }

    fn indent(&mut self, depth: usize) {
        const SPACES: &[u8] = b"                ";
        self.buf.extend_from_slice(&SPACES[..depth]);
    }

    fn open(&mut self, depth: usize, tag: &str) {
        self.indent(depth);
        self.buf.push(b'<');
        self.buf.extend_from_slice(tag.as_bytes());
        self.buf.extend_from_slice(b">\n");
    }

    fn close(&mut self, depth: usize, tag: &str) {
        self.indent(depth);
        self.buf.extend_from_slice(b"</");
        self.buf.extend_from_slice(tag.as_bytes());
        self.buf.extend_from_slice(b">\n");
    }

    fn start_leaf(&mut self, depth: usize, tag: &str) {
        self.indent(depth);
        self.buf.push(b'<');
        self.buf.extend_from_slice(tag.as_bytes());
        self.buf.push(b'>');
    }

    fn end_leaf(&mut self, tag: &str) {
        self.buf.extend_from_slice(b"</");
        self.buf.extend_from_slice(tag.as_bytes());
        self.buf.extend_from_slice(b">\n");
    }

    /// `<tag>value</tag>` for generated values, which never need escaping.
    fn leaf(&mut self, depth: usize, tag: &str, value: &str) {
        self.start_leaf(depth, tag);
        self.buf.extend_from_slice(value.as_bytes());
        self.end_leaf(tag);
    }

    /// `<tag>value</tag>` for caller-supplied text.
    fn leaf_escaped(&mut self, depth: usize, tag: &str, value: &str) {
        self.start_leaf(depth, tag);
        for b in value.bytes() {
            match b {
                b'&' => self.buf.extend_from_slice(b"&amp;"),
                b'<' => self.buf.extend_from_slice(b"&lt;"),
                b'>' => self.buf.extend_from_slice(b"&gt;"),
                _ => self.buf.push(b),
            }
        }
        self.end_leaf(tag);
    }

    fn leaf_u64(&mut self, depth: usize, tag: &str, value: u64) {
        self.start_leaf(depth, tag);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = value;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[i..]);
        self.end_leaf(tag);
    }

    fn leaf_ip(&mut self, depth: usize, tag: &str, ip: IpAddr) {
        self.start_leaf(depth, tag);
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{ip}");
        self.end_leaf(tag);
    }
}

fn write_head(xml: &mut Xml, spec: &ReportSpec, ctx: &Context) {
    xml.raw(b"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n");
    if ctx.dmarcbis {
        xml.raw(b"<feedback xmlns=\"");
        xml.raw(DMARC_2_NAMESPACE.as_bytes());
        xml.raw(b"\">\n");
    } else {
        xml.raw(b"<feedback>\n");
    }
    xml.leaf(1, "version", "1.0");
    xml.open(1, "report_metadata");
    xml.leaf_escaped(2, "org_name", &spec.org_name);
    let looks_like_domain = spec.org_name.contains('.')
        && spec
            .org_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let org_domain = if looks_like_domain {
        spec.org_name.as_str()
    } else {
        "example.net"
    };
    xml.leaf_escaped(2, "email", &format!("noreply-dmarc-support@{org_domain}"));
    xml.leaf_escaped(
        2,
        "extra_contact_info",
        &format!("https://{org_domain}/dmarc"),
    );
    xml.leaf_escaped(2, "report_id", &spec.report_id);
    xml.open(2, "date_range");
    xml.leaf_u64(3, "begin", spec.date_begin);
    xml.leaf_u64(3, "end", spec.date_begin.saturating_add(REPORT_PERIOD_SECS));
    xml.close(2, "date_range");
    if ctx.dmarcbis {
        xml.leaf(
            2,
            "generator",
            concat!(
                "dmarc-ingest-benches gen-report ",
                env!("CARGO_PKG_VERSION")
            ),
        );
    }
    xml.close(1, "report_metadata");
    xml.open(1, "policy_published");
    xml.leaf_escaped(2, "domain", &spec.policy_domain);
    xml.leaf(2, "adkim", "r");
    xml.leaf(2, "aspf", "r");
    xml.leaf(2, "p", "reject");
    xml.leaf(2, "sp", "quarantine");
    if ctx.dmarcbis {
        xml.leaf(2, "np", "reject");
        xml.leaf(2, "testing", "n");
        xml.leaf(2, "discovery_method", "treewalk");
    } else {
        xml.leaf(2, "pct", "100");
    }
    xml.leaf(2, "fo", "1");
    xml.close(1, "policy_published");
}

fn write_record(xml: &mut Xml, r: &Record, dmarcbis: bool) {
    xml.open(1, "record");
    xml.open(2, "row");
    if let Some(ip) = r.source_ip {
        xml.leaf_ip(3, "source_ip", ip);
    }
    xml.leaf_u64(3, "count", r.count);
    xml.open(3, "policy_evaluated");
    xml.leaf(4, "disposition", r.disposition);
    xml.leaf(4, "dkim", pass_fail(r.policy_dkim_pass));
    xml.leaf(4, "spf", pass_fail(r.policy_spf_pass));
    if let Some((kind, comment)) = r.reason {
        xml.open(4, "reason");
        xml.leaf(5, "type", kind);
        if let Some(c) = comment {
            xml.leaf(5, "comment", c);
        }
        xml.close(4, "reason");
    }
    xml.close(3, "policy_evaluated");
    xml.close(2, "row");
    xml.open(2, "identifiers");
    if let Some(to) = r.envelope_to {
        xml.leaf(3, "envelope_to", to);
    }
    xml.leaf(3, "envelope_from", &r.envelope_from);
    xml.leaf(3, "header_from", &r.header_from);
    xml.close(2, "identifiers");
    xml.open(2, "auth_results");
    for d in &r.dkim[..r.dkim_len] {
        xml.open(3, "dkim");
        xml.leaf(4, "domain", &d.domain);
        xml.leaf(4, "selector", &d.selector);
        xml.leaf(4, "result", d.result);
        if let Some(h) = d.human_result {
            xml.leaf(4, "human_result", h);
        }
        xml.close(3, "dkim");
    }
    xml.open(3, "spf");
    xml.leaf(4, "domain", &r.spf_domain);
    xml.leaf(4, "scope", r.spf_scope);
    xml.leaf(4, "result", r.spf_result);
    if dmarcbis {
        if let Some(h) = r.spf_human_result {
            xml.leaf(4, "human_result", h);
        }
    }
    xml.close(3, "spf");
    xml.close(2, "auth_results");
    xml.close(1, "record");
}

fn pass_fail(pass: bool) -> &'static str {
    if pass {
        "pass"
    } else {
        "fail"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;
    use quick_xml::name::{Namespace, ResolveResult};
    use quick_xml::NsReader;
    use std::collections::{BTreeMap, BTreeSet};

    /// What a lenient reader finds in a generated report.
    #[derive(Debug, Default)]
    struct Parsed {
        records: u64,
        messages: u64,
        dispositions: BTreeMap<String, u64>,
        reasons: u64,
        ipv4: u64,
        ipv6: u64,
        dkim_per_record: BTreeMap<usize, u64>,
        envelope_to: u64,
        elements: BTreeSet<String>,
        namespaces: BTreeSet<String>,
        org_name: String,
    }

    fn generate(spec: &ReportSpec) -> (Vec<u8>, GeneratedTotals) {
        let mut xml = Vec::new();
        let totals = write_report(&mut xml, spec).expect("writing to a Vec");
        (xml, totals)
    }

    fn spec(records: u64, seed: u64, dmarcbis: bool) -> ReportSpec {
        ReportSpec {
            records,
            seed,
            dmarcbis,
            ..ReportSpec::default()
        }
    }

    /// Reads every event with quick-xml (end names checked) and checks each record's shape.
    fn parse(xml: &[u8]) -> Parsed {
        let mut reader = NsReader::from_reader(xml);
        let mut buf = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut p = Parsed::default();
        let (mut dkim, mut spf) = (0usize, 0usize);
        loop {
            let (ns, event) = match reader.read_resolved_event_into(&mut buf) {
                Ok(x) => x,
                Err(e) => panic!("XML error at byte {}: {e}", reader.buffer_position()),
            };
            match event {
                Event::Start(e) => {
                    let name = String::from_utf8(e.local_name().as_ref().to_vec()).unwrap();
                    p.namespaces.insert(match ns {
                        ResolveResult::Bound(Namespace(n)) => {
                            String::from_utf8(n.to_vec()).unwrap()
                        }
                        ResolveResult::Unbound => String::new(),
                        ResolveResult::Unknown(prefix) => panic!("unknown prefix {prefix:?}"),
                    });
                    let parent = path.last().map(String::as_str);
                    match (parent, name.as_str()) {
                        (_, "record") => {
                            p.records += 1;
                            (dkim, spf) = (0, 0);
                        }
                        (Some("auth_results"), "dkim") => dkim += 1,
                        (Some("auth_results"), "spf") => spf += 1,
                        (Some("policy_evaluated"), "reason") => p.reasons += 1,
                        (_, "envelope_to") => p.envelope_to += 1,
                        _ => {}
                    }
                    p.elements.insert(name.clone());
                    path.push(name);
                }
                Event::End(_) => {
                    let closed = path.pop();
                    if closed.as_deref() == Some("record") {
                        assert!(
                            (1..=3).contains(&dkim),
                            "record {} has {dkim} dkim",
                            p.records
                        );
                        assert_eq!(spf, 1, "record {} has {spf} spf", p.records);
                        *p.dkim_per_record.entry(dkim).or_default() += 1;
                    }
                }
                Event::Text(t) => {
                    let text = t.unescape().unwrap();
                    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
                    match (parent, path.last().map(String::as_str)) {
                        (Some("row"), Some("count")) => {
                            let n: u64 = text.parse().unwrap();
                            assert!((1..=1000).contains(&n), "count {n}");
                            p.messages += n;
                        }
                        (_, Some("source_ip")) => match text.parse::<IpAddr>().unwrap() {
                            IpAddr::V4(_) => p.ipv4 += 1,
                            IpAddr::V6(_) => p.ipv6 += 1,
                        },
                        (_, Some("disposition")) => {
                            *p.dispositions.entry(text.into_owned()).or_default() += 1;
                        }
                        (_, Some("org_name")) => p.org_name = text.into_owned(),
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        assert!(path.is_empty(), "unclosed elements {path:?}");
        p
    }

    #[test]
    fn rfc7489_report_is_well_formed_and_matches_totals() {
        let spec = spec(2_000, 7, false);
        let (xml, totals) = generate(&spec);
        let p = parse(&xml);
        assert_eq!(totals.records, 2_000);
        assert_eq!(p.records, totals.records);
        assert_eq!(p.messages, totals.messages);
        assert_eq!(totals.bytes, xml.len() as u64);
        assert_eq!(p.namespaces, BTreeSet::from([String::new()]));
        assert!(p.elements.contains("pct"));
        for bis_only in ["np", "testing", "discovery_method", "generator"] {
            assert!(
                !p.elements.contains(bis_only),
                "{bis_only} in an RFC 7489 report"
            );
        }
        assert!(!p.dispositions.contains_key("pass"));
    }

    #[test]
    fn dmarcbis_report_uses_the_rfc9990_namespace_and_fields() {
        let spec = spec(2_000, 7, true);
        let (xml, totals) = generate(&spec);
        let p = parse(&xml);
        assert_eq!(p.records, totals.records);
        assert_eq!(p.messages, totals.messages);
        assert_eq!(p.namespaces, BTreeSet::from([DMARC_2_NAMESPACE.to_owned()]));
        for field in [
            "np",
            "testing",
            "discovery_method",
            "generator",
            "human_result",
        ] {
            assert!(p.elements.contains(field), "no <{field}>");
        }
        assert!(!p.elements.contains("pct"));
        assert!(p.dispositions.contains_key("pass"));
        let text = String::from_utf8(xml).unwrap();
        assert!(
            !text.contains("<type>forwarded</type>"),
            "RFC 9990 dropped `forwarded`"
        );
    }

    #[test]
    fn records_are_varied_like_real_reports() {
        let (xml, _) = generate(&spec(20_000, 3, false));
        let p = parse(&xml);
        let n = p.records as f64;
        for d in ["none", "quarantine", "reject"] {
            assert!(
                p.dispositions.get(d).copied().unwrap_or(0) as f64 > n * 0.02,
                "{d}: {p:?}"
            );
        }
        assert!(
            (0.05..0.15).contains(&(p.reasons as f64 / n)),
            "reasons {}",
            p.reasons
        );
        assert!(
            (0.10..0.40).contains(&(p.ipv6 as f64 / n)),
            "ipv6 {}",
            p.ipv6
        );
        assert_eq!(p.ipv4 + p.ipv6, p.records);
        assert_eq!(
            p.dkim_per_record.keys().copied().collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(p.envelope_to > 0 && p.envelope_to < p.records / 2);
        assert!(p.elements.contains("human_result") && p.elements.contains("comment"));
        // Skewed toward small counts: the mean is far below the midpoint of 1..=1000.
        assert!(
            p.messages as f64 / n < 100.0,
            "mean count {}",
            p.messages as f64 / n
        );
    }

    #[test]
    fn same_seed_same_bytes() {
        for dmarcbis in [false, true] {
            let (a, ta) = generate(&spec(3_000, 42, dmarcbis));
            let (b, tb) = generate(&spec(3_000, 42, dmarcbis));
            assert_eq!(ta, tb);
            assert!(a == b, "same seed gave different output");
            let (c, _) = generate(&spec(3_000, 43, dmarcbis));
            assert!(a != c, "different seeds gave the same output");
        }
    }

    #[test]
    fn size_per_record_is_like_real_reports() {
        for dmarcbis in [false, true] {
            let (_, t) = generate(&spec(10_000, 1, dmarcbis));
            let per_record = t.bytes / t.records;
            assert!(
                (450..700).contains(&per_record),
                "{per_record} bytes/record"
            );
        }
    }

    #[test]
    fn output_is_streamed_in_bounded_chunks() {
        struct Chunks {
            writes: usize,
            largest: usize,
            bytes: u64,
        }
        impl Write for Chunks {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.writes += 1;
                self.largest = self.largest.max(b.len());
                self.bytes += b.len() as u64;
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Chunks {
            writes: 0,
            largest: 0,
            bytes: 0,
        };
        let t = write_report(&mut sink, &spec(20_000, 5, false)).unwrap();
        assert_eq!(sink.bytes, t.bytes);
        assert!(sink.writes as u64 >= t.bytes / CHUNK_BYTES as u64);
        assert!(
            sink.largest < CHUNK_BYTES + 4096,
            "a write of {} bytes",
            sink.largest
        );
    }

    #[test]
    fn empty_report_and_metadata_escaping() {
        let spec = ReportSpec {
            records: 0,
            org_name: "Mail & <Co>".to_owned(),
            ..ReportSpec::default()
        };
        let (xml, t) = generate(&spec);
        assert_eq!((t.records, t.messages, t.bytes), (0, 0, xml.len() as u64));
        let p = parse(&xml);
        assert_eq!(p.records, 0);
        assert_eq!(p.org_name, "Mail & <Co>");
    }
}
