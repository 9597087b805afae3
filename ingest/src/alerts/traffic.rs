//! The traffic alert rules: what the reports say about a domain's mail, recent report days
//! against the days before them (`[alerts]` thresholds).
//!
//! In: the rows of `queries/alert_sender_inputs.sql` (per domain and sender) and
//! `queries/alert_domain_inputs.sql` (per domain, by day), the thresholds, today (days
//! since 1970). Out: the alerts firing ([`Firing`]). Pure.
//!
//! - `spoofing_new_source`: a sender not seen for the domain in the history sends at least
//!   `new_source_min_failing` messages failing DMARC recently (key: the sender);
//! - `spoofing_surge`: the domain's busiest recent day of failing mail is at least
//!   `surge_factor` times its usual day (the 90th percentile of the history's days, days
//!   without failing mail counted as 0) and at least `surge_min_failing`;
//! - `sender_failing`: a legitimate sender (at least `sender_min_passing` aligned passes
//!   of DKIM or SPF in the history, 90 % of its mail there) fails that mechanism recently
//!   for at least `sender_min_failing` messages and `sender_fail_percent` of its mail
//!   (key: "<sender> dkim" / "<sender> spf");
//! - `silence`: a domain with reports on at least `silence_min_percent` of the history's
//!   days has had none in the last `silence_days` (judged against its own history: a
//!   domain reported now and then never goes silent). When no domain at all had a
//!   report in those days the pipeline is what is silent, and the rule does not fire.

use serde::Deserialize;

use super::Firing;
use crate::config::AlertsConfig;

/// One row of `alert_sender_inputs.sql`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct SenderInputs {
    pub domain: String,
    pub sender: String,
    pub example_ip: String,
    pub recent_messages: u64,
    pub recent_failing: u64,
    pub recent_dkim_pass: u64,
    pub recent_spf_pass: u64,
    pub history_messages: u64,
    pub history_dkim_pass: u64,
    pub history_spf_pass: u64,
}

/// One row of `alert_domain_inputs.sql` (days as days since 1970).
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DomainInputs {
    pub domain: String,
    pub failing_days: Vec<u16>,
    pub failing_messages: Vec<u64>,
    pub report_days: Vec<u16>,
}

/// The sender rules for one domain and sender.
pub fn sender_rules(inputs: &SenderInputs, config: &AlertsConfig) -> Vec<Firing> {
    let mut firing = Vec::new();
    let who = if inputs.example_ip.is_empty() || inputs.example_ip == inputs.sender {
        inputs.sender.clone()
    } else {
        format!("{} (e.g. {})", inputs.sender, inputs.example_ip)
    };
    if inputs.history_messages == 0 && inputs.recent_failing >= config.new_source_min_failing {
        firing.push(Firing {
            rule: "spoofing_new_source",
            domain: inputs.domain.clone(),
            key: inputs.sender.clone(),
            severity: "error",
            summary: format!(
                "{}: new source {who} sent {} messages failing DMARC in the last {} report \
                 days (of {} from it), never seen in the {} days before",
                inputs.domain,
                inputs.recent_failing,
                config.recent_days,
                inputs.recent_messages,
                config.history_days
            ),
            evidence: vec![
                ("failing", inputs.recent_failing as f64),
                ("messages", inputs.recent_messages as f64),
            ],
        });
    }
    for (mechanism, history_pass, recent_pass) in [
        ("dkim", inputs.history_dkim_pass, inputs.recent_dkim_pass),
        ("spf", inputs.history_spf_pass, inputs.recent_spf_pass),
    ] {
        let legitimate = history_pass >= config.sender_min_passing
            && history_pass.saturating_mul(10) >= inputs.history_messages.saturating_mul(9);
        let recent_fail = inputs.recent_messages.saturating_sub(recent_pass);
        let failing_now = recent_fail >= config.sender_min_failing
            && recent_fail.saturating_mul(100)
                >= inputs
                    .recent_messages
                    .saturating_mul(config.sender_fail_percent);
        if legitimate && failing_now {
            let name = mechanism.to_uppercase();
            firing.push(Firing {
                rule: "sender_failing",
                domain: inputs.domain.clone(),
                key: format!("{} {mechanism}", inputs.sender),
                severity: "warning",
                summary: format!(
                    "{}: {who} used to pass {name} aligned ({} of {} messages in the {} days \
                     before) and now fails it for {} of {} in the last {} report days: a \
                     key, an include or a setting may have changed",
                    inputs.domain,
                    history_pass,
                    inputs.history_messages,
                    config.history_days,
                    recent_fail,
                    inputs.recent_messages,
                    config.recent_days
                ),
                evidence: vec![
                    ("history_pass", history_pass as f64),
                    ("history_messages", inputs.history_messages as f64),
                    ("recent_fail", recent_fail as f64),
                    ("recent_messages", inputs.recent_messages as f64),
                ],
            });
        }
    }
    firing
}

/// The domain-wide rules for one domain at `today`. `pipeline_heard` says whether any
/// domain had a report in the last `silence_days` (else silence is not judged).
pub fn domain_rules(
    inputs: &DomainInputs,
    config: &AlertsConfig,
    today: u16,
    pipeline_heard: bool,
) -> Vec<Firing> {
    let mut firing = Vec::new();
    let recent_start = today.saturating_sub(config.recent_days) + 1;
    let history_start = recent_start.saturating_sub(config.history_days);
    let mut history = vec![0u64; usize::from(config.history_days)];
    let mut recent_peak = 0u64;
    for (&day, &failing) in inputs.failing_days.iter().zip(&inputs.failing_messages) {
        if (recent_start..=today).contains(&day) {
            recent_peak = recent_peak.max(failing);
        } else if (history_start..recent_start).contains(&day) {
            history[usize::from(day - history_start)] += failing;
        }
    }
    let usual = percentile_90(&mut history);
    if recent_peak >= config.surge_min_failing
        && recent_peak >= usual.max(1).saturating_mul(config.surge_factor)
    {
        firing.push(Firing {
            rule: "spoofing_surge",
            domain: inputs.domain.clone(),
            key: String::new(),
            severity: "error",
            summary: format!(
                "{}: {recent_peak} messages failing DMARC in one day, {}x its usual day \
                 ({usual}) of the {} days before",
                inputs.domain,
                recent_peak / usual.max(1),
                config.history_days
            ),
            evidence: vec![("day_failing", recent_peak as f64), ("usual", usual as f64)],
        });
    }
    let silent_start = today.saturating_sub(config.silence_days) + 1;
    let before_start = silent_start.saturating_sub(config.history_days);
    let mut reported = inputs.report_days.clone();
    reported.sort_unstable();
    reported.dedup();
    let days_before = reported
        .iter()
        .filter(|d| (before_start..silent_start).contains(d))
        .count() as u64;
    let heard_lately = reported.iter().any(|d| *d >= silent_start);
    let daily = days_before * 100 >= u64::from(config.history_days) * config.silence_min_percent;
    if pipeline_heard && daily && !heard_lately {
        let last = reported.last().copied().unwrap_or(0);
        firing.push(Firing {
            rule: "silence",
            domain: inputs.domain.clone(),
            key: String::new(),
            severity: "warning",
            summary: format!(
                "{}: no report for {} days (last report day {}), after reports on {} of \
                 the {} days before: mail may have stopped, or its DMARC record's rua changed",
                inputs.domain,
                today - last,
                crate::alerts::day_text(last),
                days_before,
                config.history_days
            ),
            evidence: vec![
                ("days_silent", f64::from(today - last)),
                ("days_reported_before", days_before as f64),
            ],
        });
    }
    firing
}

/// Whether any domain had a report day in the last `silence_days` up to `today`.
pub fn pipeline_heard(inputs: &[DomainInputs], config: &AlertsConfig, today: u16) -> bool {
    let silent_start = today.saturating_sub(config.silence_days) + 1;
    inputs
        .iter()
        .any(|d| d.report_days.iter().any(|day| *day >= silent_start))
}

/// The 90th percentile of `values` (nearest rank; 0 when empty).
fn percentile_90(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = (values.len() * 9).div_ceil(10);
    values[rank.max(1) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: u16 = 20_000;

    fn sender(change: impl FnOnce(&mut SenderInputs)) -> Vec<(&'static str, String)> {
        let mut inputs = SenderInputs {
            domain: "a.test".into(),
            sender: "Mailer Inc".into(),
            example_ip: "192.0.2.1".into(),
            recent_messages: 100,
            recent_failing: 0,
            recent_dkim_pass: 100,
            recent_spf_pass: 100,
            history_messages: 1_000,
            history_dkim_pass: 1_000,
            history_spf_pass: 990,
        };
        change(&mut inputs);
        sender_rules(&inputs, &AlertsConfig::default())
            .into_iter()
            .map(|f| (f.rule, f.key))
            .collect()
    }

    #[test]
    fn a_new_source_fires_at_the_threshold_of_failing_mail_and_not_below() {
        let new = |failing| {
            sender(|i| {
                i.history_messages = 0;
                i.history_dkim_pass = 0;
                i.history_spf_pass = 0;
                i.recent_messages = failing;
                i.recent_failing = failing;
                i.recent_dkim_pass = 0;
                i.recent_spf_pass = 0;
            })
        };
        assert_eq!(new(50), [("spoofing_new_source", "Mailer Inc".to_owned())]);
        assert!(new(49).is_empty());
        // Failing mail from a source known in the history is not "new".
        assert!(sender(|i| {
            i.recent_failing = 500;
            i.recent_dkim_pass = 100;
        })
        .is_empty());
    }

    #[test]
    fn a_legitimate_sender_that_starts_failing_a_mechanism_fires_for_that_mechanism() {
        assert!(sender(|_| {}).is_empty());
        assert_eq!(
            sender(|i| i.recent_dkim_pass = 40),
            [("sender_failing", "Mailer Inc dkim".to_owned())]
        );
        assert_eq!(
            sender(|i| i.recent_spf_pass = 0),
            [("sender_failing", "Mailer Inc spf".to_owned())]
        );
        // Under the share, or too few messages, or never passing before: nothing.
        assert!(sender(|i| i.recent_dkim_pass = 51).is_empty());
        assert!(sender(|i| {
            i.recent_messages = 9;
            i.recent_dkim_pass = 0;
            i.recent_spf_pass = 9;
        })
        .is_empty());
        assert!(sender(|i| {
            i.history_dkim_pass = 19;
            i.history_messages = 19;
            i.history_spf_pass = 19;
            i.recent_dkim_pass = 0;
            i.recent_spf_pass = 100;
        })
        .is_empty());
        assert!(sender(|i| {
            i.history_dkim_pass = 800;
            i.recent_dkim_pass = 0;
        })
        .is_empty());
    }

    fn domain(failing: &[(u16, u64)], reports: &[u16]) -> Vec<&'static str> {
        let inputs = DomainInputs {
            domain: "a.test".into(),
            failing_days: failing.iter().map(|(d, _)| TODAY - d).collect(),
            failing_messages: failing.iter().map(|(_, n)| *n).collect(),
            report_days: reports.iter().map(|d| TODAY - d).collect(),
        };
        domain_rules(&inputs, &AlertsConfig::default(), TODAY, true)
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn a_surge_is_judged_against_the_domains_usual_day() {
        let daily: Vec<u16> = (0..32).collect();
        // Usually 200 failing a day (90th percentile): 1,000 is 5x.
        let mut failing: Vec<(u16, u64)> = (2..32).map(|d| (d, 200)).collect();
        failing.push((1, 1_000));
        assert_eq!(domain(&failing, &daily), ["spoofing_surge"]);
        failing.pop();
        failing.push((1, 999));
        assert!(domain(&failing, &daily).is_empty());
        // A quiet domain: 500 failing after none is a surge; 499 is under the floor.
        assert_eq!(domain(&[(0, 500)], &daily), ["spoofing_surge"]);
        assert!(domain(&[(0, 499)], &daily).is_empty());
    }

    #[test]
    fn silence_fires_only_for_a_domain_reported_daily_and_not_when_all_are_silent() {
        let from = |first: u16| (first..33).collect::<Vec<u16>>();
        assert!(domain(&[], &from(0)).is_empty());
        assert!(domain(&[], &from(2)).is_empty());
        assert_eq!(domain(&[], &from(3)), ["silence"]);
        // A domain reported one day in three: never "silent".
        let sparse: Vec<u16> = (3..33).filter(|d| d % 3 == 0).collect();
        assert!(domain(&[], &sparse).is_empty());
        let inputs = DomainInputs {
            domain: "a.test".into(),
            report_days: from(3).iter().map(|d| TODAY - d).collect(),
            ..DomainInputs::default()
        };
        let config = AlertsConfig::default();
        assert!(!pipeline_heard(
            std::slice::from_ref(&inputs),
            &config,
            TODAY
        ));
        assert!(domain_rules(&inputs, &config, TODAY, false).is_empty());
    }

    #[test]
    fn the_usual_day_is_the_90th_percentile() {
        let mut days: Vec<u64> = (1..=30).collect();
        assert_eq!(percentile_90(&mut days), 27);
        assert_eq!(percentile_90(&mut []), 0);
    }
}
