//! Which alert events are due for delivery, and what each says: the pure half of delivery
//! ([`super::send`] does the sending).
//!
//! In: the alerts of the last 7 days (`queries/alerts_to_deliver.sql`), what the
//! `deliveries` table says was done per item and channel, the channels configured, the
//! time. Out: the deliveries due ([`Due`]), each with its item id, attempt number and
//! recipients; the mail's subject and text; the webhook's JSON.
//!
//! An alert has up to two events: `opened` and, once resolved, `resolved`. Each event is
//! delivered once per channel: the team's and the owner's addresses in one mail, and the
//! webhook. A failed attempt is tried again after a backoff (1 minute, doubling, at most
//! an hour), up to [`MAX_ATTEMPTS`] (about two days), then recorded as abandoned.

use crate::store::alerts::{AlertToDeliver, DeliveryState};

/// Attempts per item and channel before it is abandoned.
pub const MAX_ATTEMPTS: u16 = 50;
/// The first backoff after a failed attempt (seconds); doubled per attempt.
pub const FIRST_BACKOFF_SECS: u32 = 60;
/// The longest backoff (seconds).
pub const MAX_BACKOFF_SECS: u32 = 3600;

/// Where an alert event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email = 0,
    Webhook = 1,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Opened,
    Resolved,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Opened => "opened",
            Event::Resolved => "resolved",
        }
    }
}

/// A delivery to make now.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub alert: AlertToDeliver,
    pub event: Event,
    pub channel: Channel,
    /// `rule|domain|key|first_seen|event`: the `deliveries` item.
    pub item: String,
    /// This attempt's number (1 for the first).
    pub attempt: u16,
}

/// The `deliveries` item of an alert event.
pub fn item_id(alert: &AlertToDeliver, event: Event) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        alert.rule,
        alert.domain,
        alert.key,
        alert.first_seen_at,
        event.name()
    )
}

/// The wait after `attempts` failed attempts.
pub fn backoff(attempts: u16) -> u32 {
    let doublings = u32::from(attempts.saturating_sub(1)).min(16);
    FIRST_BACKOFF_SECS
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF_SECS)
}

/// The deliveries due at `now`: for every event of `alerts` and every channel, unless
/// sent or abandoned, or still in its backoff. An alert's `opened` comes before its
/// `resolved`.
pub fn plan(
    alerts: &[AlertToDeliver],
    states: &[DeliveryState],
    channels: &[Channel],
    now: u32,
) -> Vec<Due> {
    let mut due = Vec::new();
    for alert in alerts {
        let mut events = vec![Event::Opened];
        if alert.state == "resolved" {
            events.push(Event::Resolved);
        }
        for event in events {
            let item = item_id(alert, event);
            for &channel in channels {
                let state = states
                    .iter()
                    .find(|s| s.item == item && s.channel == channel.name());
                let attempt = match state {
                    None => 1,
                    Some(s) if s.done == 1 => continue,
                    Some(s) if now < s.last_attempt.saturating_add(backoff(s.attempts)) => continue,
                    Some(s) => s.attempts + 1,
                };
                due.push(Due {
                    alert: alert.clone(),
                    event,
                    channel,
                    item: item.clone(),
                    attempt,
                });
            }
        }
    }
    due
}

/// The mail recipients of an alert: the team's, and the domain's contact when owners are
/// told and the contact is a mail address (deduplicated, in that order).
pub fn recipients(alert: &AlertToDeliver, team: &[String], notify_owners: bool) -> Vec<String> {
    let mut to: Vec<String> = Vec::new();
    let contact = alert.contact.trim().trim_start_matches("mailto:");
    let owner = (notify_owners && contact.parse::<lettre::Address>().is_ok()).then_some(contact);
    for address in owner.into_iter().chain(team.iter().map(String::as_str)) {
        if !to.iter().any(|t| t.eq_ignore_ascii_case(address)) {
            to.push(address.to_owned());
        }
    }
    to
}

/// The Message-ID of an item's mail (without angle brackets): the same in every attempt.
pub fn message_id(item: &str, from_domain: &str) -> String {
    format!("{:016x}.dmarc-ingest@{from_domain}", stable_hash(item))
}

/// What each rule means, and what to do, for the mail's text.
fn advice(rule: &str) -> &'static str {
    match rule {
        "spoofing_new_source" => {
            "A source never seen for this domain is sending mail as it, and that mail fails \
             DMARC: likely spoofing or phishing in your name. If the source is a service you \
             have just started using, authorise it (SPF include or DKIM key); if not, a \
             DMARC policy of p=reject makes receivers refuse that mail."
        }
        "spoofing_surge" => {
            "Much more mail than usual fails DMARC for this domain: likely a spoofing or \
             phishing campaign in your name. Check the top failing sources in the dashboard; \
             p=reject makes receivers refuse that mail."
        }
        "sender_failing" => {
            "A service that used to send for this domain with aligned DKIM or SPF now fails \
             it: a DKIM key rotated or removed, an SPF include dropped, or a setting changed \
             at the service. Its mail may be going to spam or being refused."
        }
        "silence" => {
            "Reports for this domain stopped arriving although they came daily: the domain \
             may have stopped sending mail, or its DMARC record (its rua address) changed."
        }
        "dmarc_downgraded" => {
            "The domain's DMARC policy is weaker than it was: receivers now act less on \
             mail that fails DMARC. If this was not intended, restore the policy."
        }
        "dmarc_broken" => {
            "The domain's DMARC record is missing or broken: receivers apply no DMARC \
             policy and no reports are sent. Restore the record."
        }
        "spf_over_limit" => {
            "The domain's SPF record needs more than 10 DNS lookups: receivers may treat \
             SPF as a permanent error, failing legitimate mail. Flatten or remove includes."
        }
        "status_red" => "The domain's status turned red: see its page in the dashboard.",
        _ => "",
    }
}

/// The subject and text of an alert event's mail.
pub fn mail_text(alert: &AlertToDeliver, event: Event) -> (String, String) {
    let tag = match event {
        Event::Opened if alert.severity == "error" => "[DMARC alert]",
        Event::Opened => "[DMARC warning]",
        Event::Resolved => "[DMARC resolved]",
    };
    let mut subject = format!("{tag} {}", one_line(&alert.summary));
    if subject.chars().count() > 150 {
        subject = subject.chars().take(149).collect::<String>() + "…";
    }
    let mut text = String::new();
    match event {
        Event::Opened => {
            text.push_str(&format!("{}\n\n{}\n\n", alert.summary, advice(&alert.rule)))
        }
        Event::Resolved => text.push_str(&format!(
            "Resolved: this no longer holds (last seen {}):\n\n{}\n\n",
            super::time_text(alert.last_seen_at),
            alert.summary
        )),
    }
    text.push_str(&format!("Domain:     {}\n", alert.domain));
    if !alert.owner.is_empty() {
        text.push_str(&format!("Owner:      {}\n", alert.owner));
    }
    text.push_str(&format!("Rule:       {}\n", alert.rule));
    if !alert.key.is_empty() {
        text.push_str(&format!("About:      {}\n", alert.key));
    }
    text.push_str(&format!("Severity:   {}\n", alert.severity));
    text.push_str(&format!(
        "First seen: {}\n",
        super::time_text(alert.first_seen_at)
    ));
    for (name, value) in alert.evidence_names.iter().zip(&alert.evidence_values) {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push_str(
        "\nSent by dmarc-ingest from the DMARC aggregate reports your domain's receivers \
         send to the central reporting team. Reply to this mail to reach the team.\n",
    );
    (subject, text)
}

/// The webhook's JSON for an alert event: `text` (what Slack and Teams show) and the
/// alert's fields; `id` is the same in every attempt (for receivers that deduplicate).
pub fn webhook_json(alert: &AlertToDeliver, event: Event, item: &str) -> serde_json::Value {
    let (subject, _) = mail_text(alert, event);
    let evidence: serde_json::Map<String, serde_json::Value> = alert
        .evidence_names
        .iter()
        .zip(&alert.evidence_values)
        .map(|(n, v)| (n.clone(), serde_json::json!(v)))
        .collect();
    serde_json::json!({
        "text": subject,
        "id": format!("{:016x}", stable_hash(item)),
        "event": event.name(),
        "rule": alert.rule,
        "domain": alert.domain,
        "key": alert.key,
        "severity": alert.severity,
        "state": alert.state,
        "summary": alert.summary,
        "first_seen": super::time_text(alert.first_seen_at),
        "last_seen": super::time_text(alert.last_seen_at),
        "owner": alert.owner,
        "evidence": evidence,
    })
}

/// `text` on one line (a subject must not carry a stranger's line breaks).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A hash that stays the same across builds and runs (FNV-1a, 64 bits): Message-IDs and
/// webhook ids derive from it.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: &str) -> AlertToDeliver {
        AlertToDeliver {
            rule: "spoofing_new_source".into(),
            domain: "a.test".into(),
            key: "192.0.2.66".into(),
            first_seen_at: 1_000_000,
            state: state.into(),
            last_seen_at: 1_000_000,
            severity: "error".into(),
            summary: "a.test: new source 192.0.2.66 sent 60 messages failing DMARC".into(),
            owner: "Council IT".into(),
            contact: "it@a.test".into(),
            ..AlertToDeliver::default()
        }
    }

    fn state(item: &str, channel: &str, attempts: u16, last: u32, done: u8) -> DeliveryState {
        DeliveryState {
            item: item.into(),
            channel: channel.into(),
            attempts,
            last_attempt: last,
            done,
        }
    }

    #[test]
    fn each_event_is_due_once_per_channel_until_sent() {
        let both = [Channel::Email, Channel::Webhook];
        let open = alert("open");
        let due = plan(std::slice::from_ref(&open), &[], &both, 2_000_000);
        assert_eq!(due.len(), 2);
        assert!(due
            .iter()
            .all(|d| d.event == Event::Opened && d.attempt == 1));
        let item = item_id(&open, Event::Opened);
        let sent = [
            state(&item, "email", 1, 2_000_000, 1),
            state(&item, "webhook", 1, 2_000_000, 1),
        ];
        assert!(plan(&[open], &sent, &both, 2_000_100).is_empty());
        // Resolved later: only the resolved event is due now.
        let resolved = alert("resolved");
        let due = plan(&[resolved], &sent, &both, 2_000_100);
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|d| d.event == Event::Resolved));
    }

    #[test]
    fn a_failed_delivery_waits_out_its_backoff_and_an_abandoned_one_is_left() {
        let open = alert("open");
        let item = item_id(&open, Event::Opened);
        let failed = [state(&item, "email", 3, 2_000_000, 0)];
        assert_eq!(backoff(3), 240);
        assert!(plan(
            std::slice::from_ref(&open),
            &failed,
            &[Channel::Email],
            2_000_239
        )
        .is_empty());
        let due = plan(
            std::slice::from_ref(&open),
            &failed,
            &[Channel::Email],
            2_000_240,
        );
        assert_eq!(due[0].attempt, 4);
        assert_eq!(backoff(40), MAX_BACKOFF_SECS);
        let abandoned = [state(&item, "email", MAX_ATTEMPTS, 2_000_000, 1)];
        assert!(plan(&[open], &abandoned, &[Channel::Email], 3_000_000).is_empty());
    }

    #[test]
    fn recipients_are_the_owner_contact_and_the_team_once_each() {
        let team = ["soc@centre.test".to_owned(), "IT@a.test".to_owned()];
        assert_eq!(
            recipients(&alert("open"), &team, true),
            ["it@a.test", "soc@centre.test"]
        );
        assert_eq!(
            recipients(&alert("open"), &team, false),
            ["soc@centre.test", "IT@a.test"]
        );
        let mut no_contact = alert("open");
        no_contact.contact = "the IT desk".into();
        assert_eq!(
            recipients(&no_contact, &team[..1], true),
            ["soc@centre.test"]
        );
    }

    #[test]
    fn the_mail_text_says_what_happened_and_a_subject_holds_no_line_breaks() {
        let mut open = alert("open");
        open.summary = "a.test: new source evil\r\nBcc: x@y sent 60".into();
        let (subject, text) = mail_text(&open, Event::Opened);
        assert_eq!(
            subject,
            "[DMARC alert] a.test: new source evil Bcc: x@y sent 60"
        );
        assert!(text.contains("likely spoofing or phishing"), "{text}");
        assert!(text.contains("Owner:      Council IT"), "{text}");
        let (subject, text) = mail_text(&alert("resolved"), Event::Resolved);
        assert!(subject.starts_with("[DMARC resolved]"), "{subject}");
        assert!(text.starts_with("Resolved: this no longer holds"), "{text}");
        let json = webhook_json(&open, Event::Opened, "x");
        assert_eq!(json["rule"], "spoofing_new_source");
        assert_eq!(json["id"], webhook_json(&open, Event::Opened, "x")["id"]);
        assert_eq!(
            message_id("x", "centre.test"),
            message_id("x", "centre.test")
        );
        assert_ne!(
            message_id("x", "centre.test"),
            message_id("y", "centre.test")
        );
    }
}
