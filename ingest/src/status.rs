//! Status: one red/amber/green colour per inventory domain, with its reasons. Pure.
//!
//! In: [`StatusInputs`] (one row of `schema/queries/status_inputs.sql`: the latest DNS
//! snapshot, how long the policy has been `none`, the last 30/90 days of mail) and the
//! [`StatusRules`]. Out: a [`Judgement`]. The rules, in plain words (README "What the
//! colours mean" says the same to domain owners):
//!
//! Red, any of:
//! - no DNS check yet, or DMARC missing, several, broken or unanswered (an error finding);
//! - `p=none` for longer than `p_none_days` (counted from the first DNS check that saw it);
//! - an SPF error: `+all`, over 10 lookups, several records, a loop, a syntax error;
//! - a parked domain (declared in the inventory) without all three of `p=reject`,
//!   `v=spf1 -all` and a null MX;
//! - rua not reaching the central team (when `[domains] rua_address` is set).
//!
//! Amber, any of (and nothing red):
//! - `p=quarantine`, or `p=none` not yet `p_none_days` old, or `pct` below 100;
//! - legitimate mail failing DMARC: at least `legit_failing_min` messages and
//!   `legit_failing_share` of the mail of sources that otherwise pass;
//! - parked-like: no mail passed DMARC for 90 days (any mail claiming it is spoofing), and
//!   the policy is not `reject`;
//! - a warning on DMARC or SPF, an error on DKIM or MX.
//!
//! Green: none of the above: `p=reject` on all mail, legitimate mail aligned.

/// Finding texts quoted per record type in the reasons.
pub const MAX_TEXTS_PER_TYPE: usize = 3;

/// One row of `status_inputs.sql`.
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, serde::Deserialize)]
pub struct StatusInputs {
    pub domain: String,
    pub owner: String,
    pub group_name: String,
    pub parked: u8,
    /// The latest DNS snapshot (0: none).
    pub checked_at: u32,
    pub failed_lookups: u16,
    pub dmarc_name: String,
    pub dmarc_inherited: u8,
    pub dmarc_p: String,
    pub dmarc_sp: String,
    pub dmarc_pct: u8,
    pub dmarc_rua_reaches_team: u8,
    pub spf_records: Vec<String>,
    pub spf_all: String,
    pub spf_lookups: u16,
    pub null_mx: u8,
    pub dmarc_status: String,
    pub spf_status: String,
    pub dkim_status: String,
    pub mx_status: String,
    /// Texts of the snapshot's findings, by record type and severity (DMARC warnings
    /// without those the rules name themselves: pct below 100, rua missing the team).
    pub dmarc_errors: Vec<String>,
    pub dmarc_warnings: Vec<String>,
    pub spf_errors: Vec<String>,
    pub spf_warnings: Vec<String>,
    pub dkim_errors: Vec<String>,
    pub mx_errors: Vec<String>,
    /// Since when the policy has been `none` without a break (0: it is not).
    pub none_since: u32,
    /// Messages and DMARC passes of the last 30 days; passes of the last 90.
    pub messages: u64,
    pub dmarc_pass: u64,
    pub pass_90d: u64,
    /// Messages (and failing ones) of sources that also passed DMARC, last 30 days.
    pub legit_messages: u64,
    pub legit_failing: u64,
}

/// The thresholds of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRules {
    /// `p=none` turns red after this many days.
    pub p_none_days: u32,
    /// Legitimate mail failing DMARC is amber from this many messages...
    pub legit_failing_min: u64,
    /// ... and this share of the legitimate sources' mail.
    pub legit_failing_share: f64,
}

impl Default for StatusRules {
    fn default() -> Self {
        StatusRules {
            p_none_days: 90,
            legit_failing_min: 10,
            legit_failing_share: 0.01,
        }
    }
}

/// A domain's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Colour {
    Green,
    Amber,
    Red,
}

impl Colour {
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Green => "green",
            Colour::Amber => "amber",
            Colour::Red => "red",
        }
    }
}

/// The colour and why: the reasons of the colour first, then those of lesser colours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub status: Colour,
    pub reasons: Vec<String>,
    /// The policy in force ('' none): the organisational domain's `sp` (else `p`) when
    /// inherited.
    pub policy: String,
    /// No mail passed DMARC for 90 days.
    pub parked_like: bool,
}

/// The colour of one domain (see the module doc).
pub fn judge(inputs: &StatusInputs, rules: &StatusRules, now: u32) -> Judgement {
    let mut red: Vec<String> = Vec::new();
    let mut amber: Vec<String> = Vec::new();
    let policy = effective_policy(inputs);
    let parked_like = inputs.pass_90d == 0;
    if inputs.checked_at == 0 {
        return Judgement {
            status: Colour::Red,
            reasons: vec!["not checked yet: run dmarc-ingest dns check".to_owned()],
            policy,
            parked_like,
        };
    }
    let has_dmarc = !inputs.dmarc_name.is_empty() && inputs.dmarc_status != "error";
    if inputs.dmarc_status == "error" {
        red.extend(labelled(
            "DMARC",
            &inputs.dmarc_errors,
            "record missing or broken",
        ));
    }
    if has_dmarc {
        match policy.as_str() {
            "none" => {
                let days = if inputs.none_since == 0 {
                    0
                } else {
                    now.saturating_sub(inputs.none_since) / 86_400
                };
                if days >= rules.p_none_days {
                    red.push(format!(
                        "DMARC policy p=none for {days} days (more than {}): move to quarantine, then reject",
                        rules.p_none_days
                    ));
                } else {
                    amber.push(format!(
                        "DMARC policy p=none (for {days} days): move to quarantine, then reject"
                    ));
                }
            }
            "quarantine" => amber.push("DMARC policy p=quarantine: move to reject".to_owned()),
            _ => {}
        }
        if inputs.dmarc_pct < 100 && policy != "none" {
            amber.push(format!(
                "DMARC pct={}: the policy applies to only part of the failing mail",
                inputs.dmarc_pct
            ));
        }
        if inputs.dmarc_rua_reaches_team == 0 {
            red.push(
                "DMARC: rua does not send aggregate reports to the central team's address"
                    .to_owned(),
            );
        }
    }
    if inputs.spf_status == "error" {
        red.extend(labelled("SPF", &inputs.spf_errors, "the record is broken"));
    }
    if inputs.parked == 1 {
        let mut missing = Vec::new();
        if policy != "reject" {
            missing.push("p=reject");
        }
        let spf_reject_all = inputs.spf_records.len() == 1
            && inputs.spf_records[0]
                .split_ascii_whitespace()
                .map(str::to_ascii_lowercase)
                .eq(["v=spf1", "-all"]);
        if !spf_reject_all {
            missing.push("v=spf1 -all");
        }
        if inputs.null_mx == 0 {
            missing.push("a null MX");
        }
        if !missing.is_empty() {
            red.push(format!("parked domain without {}", missing.join(", ")));
        }
    } else if parked_like && policy != "reject" {
        amber.push(if inputs.messages > 0 {
            format!(
                "no mail passed DMARC for 90 days, yet {} messages claimed it in 30 days (spoofing): publish p=reject",
                inputs.messages
            )
        } else {
            "no mail passed DMARC for 90 days (parked-like): publish p=reject".to_owned()
        });
    }
    if inputs.legit_failing >= rules.legit_failing_min
        && inputs.legit_failing as f64 >= rules.legit_failing_share * inputs.legit_messages as f64
    {
        amber.push(format!(
            "{} of {} messages from legitimate senders failed DMARC in 30 days: fix their SPF/DKIM alignment",
            inputs.legit_failing, inputs.legit_messages
        ));
    }
    // Warnings count by their texts: the DMARC ones the rules above name are left out.
    if inputs.dmarc_status == "warning" && !inputs.dmarc_warnings.is_empty() {
        amber.extend(labelled("DMARC", &inputs.dmarc_warnings, ""));
    }
    if inputs.spf_status == "warning" && !inputs.spf_warnings.is_empty() {
        amber.extend(labelled("SPF", &inputs.spf_warnings, ""));
    }
    if inputs.dkim_status == "error" {
        amber.extend(labelled("DKIM", &inputs.dkim_errors, "errors"));
    }
    if inputs.mx_status == "error" {
        amber.extend(labelled("MX", &inputs.mx_errors, "errors"));
    }
    let status = if !red.is_empty() {
        Colour::Red
    } else if !amber.is_empty() {
        Colour::Amber
    } else {
        Colour::Green
    };
    red.extend(amber);
    Judgement {
        status,
        reasons: red,
        policy,
        parked_like,
    }
}

/// The policy in force for the domain ('' when no usable record).
fn effective_policy(inputs: &StatusInputs) -> String {
    if inputs.dmarc_inherited == 1 && !inputs.dmarc_sp.is_empty() {
        inputs.dmarc_sp.clone()
    } else {
        inputs.dmarc_p.clone()
    }
}

/// Reasons from the finding texts of one record type, labelled (at most
/// [`MAX_TEXTS_PER_TYPE`]; `fallback` when the texts are missing).
fn labelled(label: &str, texts: &[String], fallback: &str) -> Vec<String> {
    if texts.is_empty() {
        return vec![format!("{label}: {fallback}")];
    }
    texts
        .iter()
        .take(MAX_TEXTS_PER_TYPE)
        .map(|t| format!("{label}: {t}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u32 = 1_800_000_000;
    const DAY: u32 = 86_400;

    /// A domain that is green: p=reject, good SPF and MX, legitimate mail aligned.
    fn green() -> StatusInputs {
        StatusInputs {
            domain: "good.test".into(),
            checked_at: NOW - 60,
            dmarc_name: "_dmarc.good.test".into(),
            dmarc_p: "reject".into(),
            dmarc_pct: 100,
            dmarc_rua_reaches_team: 1,
            spf_records: vec!["v=spf1 ip4:192.0.2.0/24 -all".into()],
            spf_all: "-all".into(),
            spf_lookups: 0,
            dmarc_status: "ok".into(),
            spf_status: "ok".into(),
            dkim_status: "ok".into(),
            mx_status: "info".into(),
            messages: 1000,
            dmarc_pass: 990,
            pass_90d: 3000,
            legit_messages: 995,
            legit_failing: 5,
            ..StatusInputs::default()
        }
    }

    fn judged(change: impl FnOnce(&mut StatusInputs)) -> Judgement {
        let mut inputs = green();
        change(&mut inputs);
        judge(&inputs, &StatusRules::default(), NOW)
    }

    fn assert_colour(j: &Judgement, colour: Colour, reason: &str) {
        assert_eq!(j.status, colour, "{j:?}");
        assert!(
            j.reasons.iter().any(|r| r.contains(reason)),
            "no reason containing {reason:?} in {:?}",
            j.reasons
        );
    }

    #[test]
    fn reject_with_aligned_mail_is_green() {
        let j = judged(|_| {});
        assert_eq!(j.status, Colour::Green, "{j:?}");
        assert!(j.reasons.is_empty());
        assert_eq!(j.policy, "reject");
        assert!(!j.parked_like);
    }

    #[test]
    fn no_check_yet_is_red() {
        assert_colour(
            &judged(|i| i.checked_at = 0),
            Colour::Red,
            "not checked yet",
        );
    }

    #[test]
    fn missing_or_broken_dmarc_is_red_with_the_findings() {
        let j = judged(|i| {
            i.dmarc_name.clear();
            i.dmarc_p.clear();
            i.dmarc_status = "error".into();
            i.dmarc_errors = vec!["no DMARC record at _dmarc.good.test".into()];
        });
        assert_colour(
            &j,
            Colour::Red,
            "DMARC: no DMARC record at _dmarc.good.test",
        );
        let j = judged(|i| i.dmarc_status = "error".into());
        assert_colour(&j, Colour::Red, "DMARC: record missing or broken");
    }

    #[test]
    fn p_none_is_amber_then_red_after_the_set_time() {
        let j = judged(|i| {
            i.dmarc_p = "none".into();
            i.none_since = NOW - 10 * DAY;
        });
        assert_colour(&j, Colour::Amber, "p=none (for 10 days)");
        let j = judged(|i| {
            i.dmarc_p = "none".into();
            i.none_since = NOW - 90 * DAY;
        });
        assert_colour(&j, Colour::Red, "p=none for 90 days");
        let j = judge(
            &StatusInputs {
                dmarc_p: "none".into(),
                none_since: NOW - 10 * DAY,
                ..green()
            },
            &StatusRules {
                p_none_days: 7,
                ..StatusRules::default()
            },
            NOW,
        );
        assert_eq!(j.status, Colour::Red);
    }

    #[test]
    fn quarantine_and_partial_pct_are_amber() {
        assert_colour(
            &judged(|i| i.dmarc_p = "quarantine".into()),
            Colour::Amber,
            "p=quarantine",
        );
        assert_colour(&judged(|i| i.dmarc_pct = 50), Colour::Amber, "pct=50");
    }

    #[test]
    fn an_inherited_policy_is_the_organisational_sp() {
        let j = judged(|i| {
            i.dmarc_inherited = 1;
            i.dmarc_p = "reject".into();
            i.dmarc_sp = "none".into();
            i.none_since = NOW - DAY;
        });
        assert_eq!(j.policy, "none");
        assert_eq!(j.status, Colour::Amber);
    }

    #[test]
    fn spf_errors_are_red() {
        let j = judged(|i| {
            i.spf_status = "error".into();
            i.spf_errors = vec!["+all lets every server on the internet pass SPF".into()];
        });
        assert_colour(&j, Colour::Red, "SPF: +all");
        let j = judged(|i| {
            i.spf_status = "warning".into();
            i.spf_warnings = vec!["no all and no redirect".into()];
        });
        assert_colour(&j, Colour::Amber, "SPF: no all");
    }

    #[test]
    fn a_parked_domain_needs_reject_spf_minus_all_and_null_mx() {
        let parked_right = |i: &mut StatusInputs| {
            i.parked = 1;
            i.spf_records = vec!["v=spf1 -all".into()];
            i.null_mx = 1;
            i.messages = 0;
            i.pass_90d = 0;
            i.legit_messages = 0;
            i.legit_failing = 0;
        };
        let j = judged(parked_right);
        assert_eq!(j.status, Colour::Green, "{j:?}");
        assert!(j.parked_like);
        let j = judged(|i| {
            parked_right(i);
            i.dmarc_p = "none".into();
            i.none_since = NOW - DAY;
            i.spf_records = vec!["v=spf1 mx -all".into()];
            i.null_mx = 0;
        });
        assert_colour(
            &j,
            Colour::Red,
            "parked domain without p=reject, v=spf1 -all, a null MX",
        );
    }

    #[test]
    fn parked_like_domains_are_amber_until_reject_and_spoofing_is_named() {
        let j = judged(|i| {
            i.dmarc_p = "quarantine".into();
            i.pass_90d = 0;
            i.dmarc_pass = 0;
            i.messages = 40;
            i.legit_messages = 0;
            i.legit_failing = 0;
        });
        assert!(j.parked_like);
        assert_colour(
            &j,
            Colour::Amber,
            "40 messages claimed it in 30 days (spoofing)",
        );
        let j = judged(|i| {
            i.pass_90d = 0;
            i.messages = 40;
        });
        assert!(j.parked_like);
        assert!(!j.reasons.iter().any(|r| r.contains("spoofing")), "{j:?}");
    }

    #[test]
    fn rua_missing_the_central_team_is_red() {
        assert_colour(
            &judged(|i| i.dmarc_rua_reaches_team = 0),
            Colour::Red,
            "central team",
        );
    }

    #[test]
    fn legitimate_mail_failing_is_amber_above_both_thresholds() {
        assert_colour(
            &judged(|i| {
                i.legit_messages = 1000;
                i.legit_failing = 50;
            }),
            Colour::Amber,
            "50 of 1000 messages from legitimate senders failed",
        );
        // Few messages, or a tiny share: not enough.
        assert_eq!(judged(|i| i.legit_failing = 9).status, Colour::Green);
        assert_eq!(
            judged(|i| {
                i.legit_messages = 1_000_000;
                i.legit_failing = 500;
            })
            .status,
            Colour::Green
        );
    }

    #[test]
    fn dkim_and_mx_errors_are_amber_and_reasons_put_the_worst_first() {
        let j = judged(|i| {
            i.dkim_status = "error".into();
            i.dkim_errors = vec!["selector s1: a 512-bit RSA key".into()];
            i.mx_status = "error".into();
            i.dmarc_rua_reaches_team = 0;
        });
        assert_eq!(j.status, Colour::Red);
        assert!(j.reasons[0].contains("central team"), "{j:?}");
        assert!(j.reasons[1].contains("DKIM: selector s1"), "{j:?}");
        assert!(j.reasons[2].contains("MX: errors"), "{j:?}");
    }
}
