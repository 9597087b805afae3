//! `[alerts]`: the alert rules' thresholds, their schedule and where alerts go
//! ([`crate::alerts`]); `[smtp]`: the mail server alerts and digests are sent through.

use std::path::PathBuf;

use serde::Deserialize;

use super::dns::interval;

/// Default interval of the daemon's alert evaluations (1 hour).
pub const DEFAULT_ALERTS_CHECK_INTERVAL_SECS: u64 = 3600;
/// Default report days that make up "recent" (today and yesterday).
pub const DEFAULT_RECENT_DAYS: u16 = 2;
/// Default report days before the recent ones that recent traffic is judged against.
pub const DEFAULT_HISTORY_DAYS: u16 = 30;
/// Default failing messages a new source must send to be a spoofing campaign.
pub const DEFAULT_NEW_SOURCE_MIN_FAILING: u64 = 50;
/// Default factor over a domain's usual daily failing volume that is a surge.
pub const DEFAULT_SURGE_FACTOR: u64 = 5;
/// Default failing messages in one day below which no surge is reported.
pub const DEFAULT_SURGE_MIN_FAILING: u64 = 500;
/// Default aligned passes in the history that make a sender legitimate.
pub const DEFAULT_SENDER_MIN_PASSING: u64 = 20;
/// Default failing messages of a legitimate sender, recently, before it is reported.
pub const DEFAULT_SENDER_MIN_FAILING: u64 = 10;
/// Default share (percent) of a legitimate sender's recent mail failing a mechanism that
/// it used to pass.
pub const DEFAULT_SENDER_FAIL_PERCENT: u64 = 50;
/// Default report days without any report that make a daily-reported domain silent.
pub const DEFAULT_SILENCE_DAYS: u16 = 3;
/// Default share (percent) of the history's days with reports that makes a domain
/// "reported daily".
pub const DEFAULT_SILENCE_MIN_PERCENT: u64 = 80;
/// Default day of the weekly digest (ISO weekday, 1 = Monday).
pub const DEFAULT_DIGEST_WEEKDAY: u8 = 1;
/// Default hour (UTC) of the weekly digest.
pub const DEFAULT_DIGEST_HOUR: u8 = 7;

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// The daemon evaluates every rule this often (and after each DNS check run):
    /// seconds, or a number with s, m, h or d; 0: never (`dmarc-ingest alerts check`).
    #[serde(deserialize_with = "interval")]
    pub check_interval: u64,
    /// The central team's addresses: every alert, and every owner's digest, goes to them
    /// too.
    #[serde(deserialize_with = "super::dns::list")]
    pub team_recipients: Vec<String>,
    /// A URL that gets each alert as a JSON POST (`{"text": ...}` plus the alert's
    /// fields: Slack and Teams incoming webhooks take it); '' : none.
    pub webhook_url: String,
    /// Mail alerts to the inventory's contact of the domain (else the team only).
    pub notify_owners: bool,
    /// Recent traffic: the last this many report days (today included).
    #[serde(deserialize_with = "crate::config::number")]
    pub recent_days: u16,
    /// What recent traffic is judged against: this many report days before it.
    #[serde(deserialize_with = "crate::config::number")]
    pub history_days: u16,
    /// `spoofing_new_source`: a source not seen for the domain in the history sends at
    /// least this many failing messages recently.
    #[serde(deserialize_with = "crate::config::number")]
    pub new_source_min_failing: u64,
    /// `spoofing_surge`: the recent busiest day's failing messages are at least this many
    /// times the domain's usual day (the 90th percentile of its history's days)...
    #[serde(deserialize_with = "crate::config::number")]
    pub surge_factor: u64,
    /// ... and at least this many.
    #[serde(deserialize_with = "crate::config::number")]
    pub surge_min_failing: u64,
    /// `sender_failing`: a sender is legitimate for a domain with at least this many
    /// aligned passes of a mechanism (DKIM, SPF) in the history, 90 % of its mail...
    #[serde(deserialize_with = "crate::config::number")]
    pub sender_min_passing: u64,
    /// ... and is reported when at least this many of its recent messages fail that
    /// mechanism...
    #[serde(deserialize_with = "crate::config::number")]
    pub sender_min_failing: u64,
    /// ... making at least this share (percent) of its recent mail.
    #[serde(deserialize_with = "crate::config::number")]
    pub sender_fail_percent: u64,
    /// `silence`: no report for the domain in this many report days...
    #[serde(deserialize_with = "crate::config::number")]
    pub silence_days: u16,
    /// ... when it had reports on at least this share (percent) of the history's days.
    #[serde(deserialize_with = "crate::config::number")]
    pub silence_min_percent: u64,
    /// The weekly digest's day (1 = Monday ... 7 = Sunday) and hour (UTC); the daemon
    /// sends the week before. `digest_hour = 24` turns the schedule off.
    #[serde(deserialize_with = "crate::config::number")]
    pub digest_weekday: u8,
    #[serde(deserialize_with = "crate::config::number")]
    pub digest_hour: u8,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            check_interval: DEFAULT_ALERTS_CHECK_INTERVAL_SECS,
            team_recipients: Vec::new(),
            webhook_url: String::new(),
            notify_owners: true,
            recent_days: DEFAULT_RECENT_DAYS,
            history_days: DEFAULT_HISTORY_DAYS,
            new_source_min_failing: DEFAULT_NEW_SOURCE_MIN_FAILING,
            surge_factor: DEFAULT_SURGE_FACTOR,
            surge_min_failing: DEFAULT_SURGE_MIN_FAILING,
            sender_min_passing: DEFAULT_SENDER_MIN_PASSING,
            sender_min_failing: DEFAULT_SENDER_MIN_FAILING,
            sender_fail_percent: DEFAULT_SENDER_FAIL_PERCENT,
            silence_days: DEFAULT_SILENCE_DAYS,
            silence_min_percent: DEFAULT_SILENCE_MIN_PERCENT,
            digest_weekday: DEFAULT_DIGEST_WEEKDAY,
            digest_hour: DEFAULT_DIGEST_HOUR,
        }
    }
}

impl AlertsConfig {
    /// Checks the section: windows of at least a day, shares within 1..=100, a day of the
    /// week, recipients that look like addresses, an http(s) webhook.
    pub fn validate(&self) -> Result<(), String> {
        if self.recent_days == 0 || self.history_days == 0 || self.silence_days == 0 {
            return Err(
                "alerts.recent_days, history_days and silence_days must be at least 1".into(),
            );
        }
        for (name, percent) in [
            ("sender_fail_percent", self.sender_fail_percent),
            ("silence_min_percent", self.silence_min_percent),
        ] {
            if !(1..=100).contains(&percent) {
                return Err(format!("alerts.{name} = {percent}: must be 1 to 100"));
            }
        }
        if self.surge_factor == 0 {
            return Err("alerts.surge_factor must be at least 1".into());
        }
        if !(1..=7).contains(&self.digest_weekday) || self.digest_hour > 24 {
            return Err(format!(
                "alerts.digest_weekday = {} / digest_hour = {}: a weekday 1 (Monday) to 7 and \
                 an hour 0 to 23 (24: no scheduled digest)",
                self.digest_weekday, self.digest_hour
            ));
        }
        for address in &self.team_recipients {
            check_address("alerts.team_recipients", address)?;
        }
        let url = self.webhook_url.trim();
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "alerts.webhook_url {url:?} must be an http:// or https:// URL"
            ));
        }
        Ok(())
    }
}

/// Checks that `address` is a plain mail address (`local@domain`, no name, no spaces).
pub fn check_address(key: &str, address: &str) -> Result<(), String> {
    address
        .parse::<lettre::Address>()
        .map(drop)
        .map_err(|e| format!("{key}: {address:?} is not a mail address ({e})"))
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain, then STARTTLS, which must succeed (port 587).
    #[default]
    Starttls,
    /// No TLS: only to a loopback address (a local relay).
    None,
}

/// Default SMTP submission port (STARTTLS).
pub const DEFAULT_SMTP_PORT: u16 = 587;
/// Default time one SMTP conversation may take.
pub const DEFAULT_SMTP_TIMEOUT_SECS: u64 = 30;

/// `[smtp]`: the server alerts and digests are sent through ('' host: no mail is sent).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(deserialize_with = "crate::config::number")]
    pub port: u16,
    pub tls: SmtpTls,
    /// Login ('' : none; then the server must take mail without one).
    pub username: String,
    pub password: String,
    /// A file holding the password (replaces `password`).
    #[serde(deserialize_with = "crate::config::optional_path")]
    pub password_file: Option<PathBuf>,
    /// The sender address (`From:`), e.g. "DMARC reports <dmarc@example.org>".
    pub from: String,
    /// An extra CA file (PEM) to trust, beside the system's roots.
    #[serde(deserialize_with = "crate::config::optional_path")]
    pub ca_file: Option<PathBuf>,
    #[serde(deserialize_with = "crate::config::number")]
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: String::new(),
            port: DEFAULT_SMTP_PORT,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: String::new(),
            password_file: None,
            from: String::new(),
            ca_file: None,
            timeout_secs: DEFAULT_SMTP_TIMEOUT_SECS,
        }
    }
}

impl SmtpConfig {
    /// Whether mail is to be sent at all.
    pub fn enabled(&self) -> bool {
        !self.host.trim().is_empty()
    }

    /// Checks the section: a sender, plain text only to loopback, a password only with a
    /// user name.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!(
                "smtp.from {:?} must be a mail address (\"DMARC <dmarc@example.org>\")",
                self.from
            ));
        }
        if self.tls == SmtpTls::None && !crate::tls::is_loopback_host(&self.host) {
            return Err(format!(
                "smtp.tls = \"none\" sends in clear text: only to a loopback host, not {:?}",
                self.host
            ));
        }
        if self.username.is_empty() && !self.password.is_empty() {
            return Err("smtp.password is set but smtp.username is empty".into());
        }
        if self.port == 0 || self.timeout_secs == 0 {
            return Err("smtp.port and smtp.timeout_secs must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn load(toml: &str) -> Result<Config, String> {
        Config::from_parts(toml, Path::new("t.toml"), &BTreeMap::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid_and_no_mail_is_sent_without_a_host() {
        let config = load("").unwrap();
        assert_eq!(config.alerts, AlertsConfig::default());
        assert!(!config.smtp.enabled());
    }

    #[test]
    fn plain_smtp_is_refused_beyond_loopback() {
        let base = "[smtp]\nfrom = \"DMARC <dmarc@example.org>\"\ntls = \"none\"\n";
        assert!(load(&format!("{base}host = \"127.0.0.1\"")).is_ok());
        let err = load(&format!("{base}host = \"mail.example.org\"")).unwrap_err();
        assert!(err.contains("clear text"), "{err}");
        let err = load("[smtp]\nhost = \"mail.example.org\"\nfrom = \"nobody\"").unwrap_err();
        assert!(err.contains("smtp.from"), "{err}");
    }

    #[test]
    fn thresholds_and_recipients_are_checked() {
        let err = load("[alerts]\nsender_fail_percent = 0").unwrap_err();
        assert!(err.contains("sender_fail_percent"), "{err}");
        let err = load("[alerts]\nteam_recipients = [\"not an address\"]").unwrap_err();
        assert!(err.contains("team_recipients"), "{err}");
        let err = load("[alerts]\nwebhook_url = \"ftp://x\"").unwrap_err();
        assert!(err.contains("webhook_url"), "{err}");
        let ok =
            load("[alerts]\nteam_recipients = [\"soc@example.org\"]\ncheck_interval = \"30m\"")
                .unwrap();
        assert_eq!(ok.alerts.check_interval, 1800);
    }
}
