//! Alerts: rules over the stored DNS snapshots, statuses and report traffic that say when
//! something got worse, deduplicated into `alert_history` (one open alert per rule,
//! domain and key).
//!
//! In: the rows of `queries/alert_dns_inputs.sql` and `queries/alert_status_inputs.sql`
//! (here), of the traffic queries ([`traffic`]), and the alerts open now. Out: the
//! `alert_history` rows of this evaluation: the firing alerts (new, or still open with
//! `last_seen` moved on) and the resolved ones. Pure; `run` evaluates against the store.
//!
//! The DNS rules here (each is open for as long as its condition holds; the traffic rules
//! are in [`traffic`]):
//! - `dmarc_downgraded`: the DMARC policy in force is weaker than the strongest of the
//!   last 30 days (reject > quarantine > none > no usable record);
//! - `dmarc_broken`: the DMARC record is missing or broken now, and was fine in the 30
//!   days;
//! - `spf_over_limit`: SPF needs more than 10 DNS lookups;
//! - `status_red`: the domain is red now, and was green or amber in the 30 days.

pub mod deliver;
pub mod digest;
pub mod run;
pub mod send;
pub mod traffic;
pub mod weekly;

use serde::Deserialize;

use crate::store::alerts::AlertRow;

/// The rules evaluated here, by name (an open alert of another rule is left alone).
pub const RULES: [&str; 8] = [
    "dmarc_downgraded",
    "dmarc_broken",
    "spf_over_limit",
    "status_red",
    "spoofing_new_source",
    "spoofing_surge",
    "sender_failing",
    "silence",
];

/// Days since 1970 as "YYYY-MM-DD".
pub fn day_text(day: u16) -> String {
    let (y, m, d) = crate::rows::civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Seconds since 1970 as "YYYY-MM-DD HH:MM UTC".
pub fn time_text(secs: u32) -> String {
    format!(
        "{} {:02}:{:02} UTC",
        day_text((secs / 86_400) as u16),
        secs / 3600 % 24,
        secs / 60 % 60
    )
}

/// One row of `alert_dns_inputs.sql`.
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, Deserialize)]
pub struct DnsAlertInputs {
    pub domain: String,
    pub policy_now: String,
    pub rank_now: u8,
    pub rank_best: u8,
    pub policy_best: String,
    pub broken_now: u8,
    pub fine_before: u8,
    pub spf_lookups_now: u16,
    pub dmarc_errors_now: Vec<String>,
}

/// One row of `alert_status_inputs.sql`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct StatusAlertInputs {
    pub domain: String,
    pub status_now: String,
    pub fine_before: u8,
}

/// An alert found firing by this evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub rule: &'static str,
    pub domain: String,
    pub key: String,
    pub severity: &'static str,
    pub summary: String,
    pub evidence: Vec<(&'static str, f64)>,
}

/// The DNS rules for one domain.
pub fn dns_rules(inputs: &DnsAlertInputs) -> Vec<Firing> {
    let mut firing = Vec::new();
    let mut fire = |rule, summary: String, evidence: Vec<(&'static str, f64)>| {
        firing.push(Firing {
            rule,
            domain: inputs.domain.clone(),
            key: String::new(),
            severity: "error",
            summary,
            evidence,
        });
    };
    if inputs.broken_now == 1 && inputs.fine_before == 1 {
        let why = inputs
            .dmarc_errors_now
            .first()
            .cloned()
            .unwrap_or_else(|| "the record is missing or broken".to_owned());
        fire(
            "dmarc_broken",
            format!("{}: DMARC record broken or gone: {why}", inputs.domain),
            vec![],
        );
    } else if inputs.rank_now < inputs.rank_best {
        let now = if inputs.rank_now == 0 || inputs.policy_now.is_empty() {
            "no policy".to_owned()
        } else {
            format!("p={}", inputs.policy_now)
        };
        fire(
            "dmarc_downgraded",
            format!(
                "{}: DMARC policy lowered: p={} became {now} within 30 days",
                inputs.domain, inputs.policy_best
            ),
            vec![
                ("rank_now", f64::from(inputs.rank_now)),
                ("rank_before", f64::from(inputs.rank_best)),
            ],
        );
    }
    if inputs.spf_lookups_now > 10 {
        fire(
            "spf_over_limit",
            format!(
                "{}: SPF needs {} DNS lookups (limit 10): receivers fail it",
                inputs.domain, inputs.spf_lookups_now
            ),
            vec![("lookups", f64::from(inputs.spf_lookups_now))],
        );
    }
    firing
}

/// The status rule for one domain.
pub fn status_rule(inputs: &StatusAlertInputs) -> Option<Firing> {
    (inputs.status_now == "red" && inputs.fine_before == 1).then(|| Firing {
        rule: "status_red",
        domain: inputs.domain.clone(),
        key: String::new(),
        severity: "error",
        summary: format!("{}: status turned red", inputs.domain),
        evidence: vec![],
    })
}

/// The `alert_history` rows of one evaluation at `now`: every firing alert (continuing
/// the open one of its rule, domain and key, else opening one), and every open alert of
/// [`RULES`] no longer firing, resolved.
pub fn transitions(open: &[AlertRow], firing: &[Firing], now: u32) -> Vec<AlertRow> {
    let mut rows = Vec::new();
    for alert in firing {
        let continued = open
            .iter()
            .find(|o| o.rule == alert.rule && o.domain == alert.domain && o.key == alert.key);
        rows.push(AlertRow {
            observed_at: now,
            rule: alert.rule.to_owned(),
            domain: alert.domain.clone(),
            key: alert.key.clone(),
            state: "open".to_owned(),
            first_seen: continued.map_or(now, |o| o.first_seen),
            last_seen: now,
            severity: alert.severity.to_owned(),
            summary: alert.summary.clone(),
            evidence_names: alert
                .evidence
                .iter()
                .map(|(n, _)| (*n).to_owned())
                .collect(),
            evidence_values: alert.evidence.iter().map(|(_, v)| *v).collect(),
        });
    }
    for o in open {
        let still = firing
            .iter()
            .any(|f| f.rule == o.rule && f.domain == o.domain && f.key == o.key);
        if !still && RULES.contains(&o.rule.as_str()) {
            rows.push(AlertRow {
                observed_at: now,
                state: "resolved".to_owned(),
                ..o.clone()
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(change: impl FnOnce(&mut DnsAlertInputs)) -> Vec<&'static str> {
        let mut inputs = DnsAlertInputs {
            domain: "a.test".into(),
            policy_now: "reject".into(),
            rank_now: 3,
            rank_best: 3,
            policy_best: "reject".into(),
            fine_before: 1,
            spf_lookups_now: 4,
            ..DnsAlertInputs::default()
        };
        change(&mut inputs);
        dns_rules(&inputs).iter().map(|f| f.rule).collect()
    }

    #[test]
    fn each_dns_rule_fires_on_its_change_for_the_worse_and_not_otherwise() {
        assert!(dns(|_| {}).is_empty());
        assert_eq!(
            dns(|i| {
                i.policy_now = "none".into();
                i.rank_now = 1;
            }),
            ["dmarc_downgraded"]
        );
        // A policy raised is no alert; a broken record is one alert, not two.
        assert!(dns(|i| i.rank_best = 2).is_empty());
        assert_eq!(
            dns(|i| {
                i.rank_now = 0;
                i.broken_now = 1;
            }),
            ["dmarc_broken"]
        );
        // Broken for the whole 30 days: the status says so; nothing got worse.
        assert!(dns(|i| {
            i.rank_now = 0;
            i.rank_best = 0;
            i.broken_now = 1;
            i.fine_before = 0;
        })
        .is_empty());
        assert_eq!(dns(|i| i.spf_lookups_now = 11), ["spf_over_limit"]);
        assert!(dns(|i| i.spf_lookups_now = 10).is_empty());
    }

    #[test]
    fn the_status_rule_fires_only_for_a_domain_that_was_not_red() {
        let inputs = |status: &str, fine_before| StatusAlertInputs {
            domain: "a.test".into(),
            status_now: status.into(),
            fine_before,
        };
        assert!(status_rule(&inputs("red", 1)).is_some());
        assert!(status_rule(&inputs("red", 0)).is_none());
        assert!(status_rule(&inputs("amber", 1)).is_none());
    }

    #[test]
    fn an_alert_stays_one_open_alert_until_it_stops_firing() {
        let firing = dns_rules(&DnsAlertInputs {
            domain: "a.test".into(),
            spf_lookups_now: 12,
            rank_now: 3,
            rank_best: 3,
            ..DnsAlertInputs::default()
        });
        let first = transitions(&[], &firing, 100);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].first_seen, first[0].state.as_str()),
            (100, "open")
        );
        let second = transitions(&first, &firing, 200);
        assert_eq!(second.len(), 1);
        assert_eq!((second[0].first_seen, second[0].last_seen), (100, 200));
        let resolved = transitions(&second, &[], 300);
        assert_eq!(resolved.len(), 1);
        assert_eq!(
            (
                resolved[0].state.as_str(),
                resolved[0].first_seen,
                resolved[0].observed_at
            ),
            ("resolved", 100, 300)
        );
        // An open alert of a rule not evaluated here is left alone.
        let other = AlertRow {
            rule: "retired_rule".into(),
            ..first[0].clone()
        };
        assert!(transitions(&[other], &[], 400).is_empty());
    }
}
