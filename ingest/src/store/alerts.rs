//! Alerts in ClickHouse: what the alert rules judge (`queries/alert_dns_inputs.sql`,
//! `queries/alert_status_inputs.sql`), the alerts open now (`alerts` view), and the rows
//! of each evaluation (`alert_history`).

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::alerts::traffic::{DomainInputs, SenderInputs};
use crate::alerts::{DnsAlertInputs, StatusAlertInputs};

/// One row of `alert_history` (and of the `alerts` view's columns).
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct AlertRow {
    pub observed_at: u32,
    pub rule: String,
    pub domain: String,
    pub key: String,
    pub state: String,
    pub first_seen: u32,
    pub last_seen: u32,
    pub severity: String,
    pub summary: String,
    pub evidence_names: Vec<String>,
    pub evidence_values: Vec<f64>,
}

impl Store {
    /// What the DNS alert rules judge, per inventory domain.
    pub async fn alert_dns_inputs(&self) -> Result<Vec<DnsAlertInputs>, StoreError> {
        let sql = self.render(self.queries().alert_dns_inputs, uuid::Uuid::nil());
        self.retry("read what the DNS alert rules judge", || {
            self.client.query(&sql).fetch_all::<DnsAlertInputs>()
        })
        .await
    }

    /// What the status alert rule judges, per inventory domain.
    pub async fn alert_status_inputs(&self) -> Result<Vec<StatusAlertInputs>, StoreError> {
        let sql = self.render(self.queries().alert_status_inputs, uuid::Uuid::nil());
        self.retry("read what the status alert rule judges", || {
            self.client.query(&sql).fetch_all::<StatusAlertInputs>()
        })
        .await
    }

    /// What the sender rules judge at `today` (days since 1970), per inventory domain and
    /// sender.
    pub async fn alert_sender_inputs(
        &self,
        today: u16,
        recent_days: u16,
        history_days: u16,
    ) -> Result<Vec<SenderInputs>, StoreError> {
        let sql = self.render_traffic(
            self.queries().alert_sender_inputs,
            today,
            recent_days,
            history_days,
        );
        self.retry("read what the sender alert rules judge", || {
            self.client.query(&sql).fetch_all::<SenderInputs>()
        })
        .await
    }

    /// What the domain-wide traffic rules judge at `today`, per inventory domain.
    pub async fn alert_domain_inputs(
        &self,
        today: u16,
        recent_days: u16,
        history_days: u16,
    ) -> Result<Vec<DomainInputs>, StoreError> {
        let sql = self.render_traffic(
            self.queries().alert_domain_inputs,
            today,
            recent_days,
            history_days,
        );
        self.retry("read what the domain traffic alert rules judge", || {
            self.client.query(&sql).fetch_all::<DomainInputs>()
        })
        .await
    }

    fn render_traffic(&self, template: &str, today: u16, recent: u16, history: u16) -> String {
        self.render(template, uuid::Uuid::nil())
            .replace("{today}", &format!("toDate({today})"))
            .replace("{recent_days}", &recent.to_string())
            .replace("{history_days}", &history.to_string())
    }

    /// The alerts open now.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        let sql = format!(
            "SELECT toUInt32(last_seen) AS observed_at, rule, domain, key, state, \
             toUInt32(first_seen) AS first_seen, toUInt32(last_seen) AS last_seen, severity, \
             summary, evidence_names, evidence_values \
             FROM {}.alerts WHERE state = 'open' ORDER BY domain, rule, key",
            self.database()
        );
        self.retry("read the open alerts", || {
            self.client.query(&sql).fetch_all::<AlertRow>()
        })
        .await
    }
}

/// One row of `queries/alerts_to_deliver.sql`: an alert of the last 7 days, with its
/// domain's owner and contact.
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct AlertToDeliver {
    pub rule: String,
    pub domain: String,
    pub key: String,
    pub first_seen_at: u32,
    pub state: String,
    pub last_seen_at: u32,
    pub severity: String,
    pub summary: String,
    pub evidence_names: Vec<String>,
    pub evidence_values: Vec<f64>,
    pub owner: String,
    pub contact: String,
}

/// One row of `deliveries`: an attempt to deliver an item over a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub attempted_at: u32,
    pub kind: String,
    pub item: String,
    pub channel: String,
    pub outcome: String,
    pub attempt: u16,
    pub recipients: Vec<String>,
    pub message_id: String,
    pub error: String,
}

/// What was done so far for an item over a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DeliveryState {
    pub item: String,
    pub channel: String,
    /// Attempts made (the last attempt's number).
    pub attempts: u16,
    pub last_attempt: u32,
    /// 1 once sent or abandoned: nothing more is to be done.
    pub done: u8,
}

impl Store {
    /// The alerts whose events may still have to be delivered.
    pub async fn alerts_to_deliver(&self) -> Result<Vec<AlertToDeliver>, StoreError> {
        let sql = self.render(self.queries().alerts_to_deliver, uuid::Uuid::nil());
        self.retry("read the alerts to deliver", || {
            self.client.query(&sql).fetch_all::<AlertToDeliver>()
        })
        .await
    }

    /// The deliveries of `kind` ("alert", "digest") attempted in the last `days` days.
    pub async fn delivery_states(
        &self,
        kind: &str,
        days: u32,
    ) -> Result<Vec<DeliveryState>, StoreError> {
        let sql = format!(
            "SELECT item, channel, max(attempt) AS attempts, \
             toUInt32(max(attempted_at)) AS last_attempt, \
             toUInt8(countIf(outcome IN ('sent', 'abandoned')) > 0) AS done \
             FROM {}.deliveries WHERE kind = ? AND attempted_at >= now() - INTERVAL {days} DAY \
             GROUP BY item, channel ORDER BY item, channel",
            self.database()
        );
        self.retry("read what was delivered", || {
            self.client
                .query(&sql)
                .bind(kind)
                .fetch_all::<DeliveryState>()
        })
        .await
    }

    /// Records delivery attempts.
    pub async fn record_deliveries(&self, rows: &[DeliveryRow]) -> Result<(), StoreError> {
        self.insert_rows("deliveries", rows).await
    }
}

/// One row of `queries/digest_domains.sql`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DigestDomainRow {
    pub domain: String,
    pub owner: String,
    pub contact: String,
    pub status: String,
    pub reasons: Vec<String>,
}

/// One row of `queries/digest_days.sql` (day: days since 1970).
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DigestDayRow {
    pub domain: String,
    pub day: u16,
    pub day_messages: u64,
    pub day_dmarc_pass: u64,
    pub day_dkim_pass: u64,
    pub day_spf_pass: u64,
}

/// One row of `queries/digest_senders.sql`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DigestSenderRow {
    pub domain: String,
    pub sender: String,
    pub service: String,
    pub example_ip: String,
    pub week_messages: u64,
    pub week_dmarc_pass: u64,
    pub new_source: u8,
}

impl Store {
    /// The inventory's domains with owner, contact and status, for the digests.
    pub async fn digest_domains(&self) -> Result<Vec<DigestDomainRow>, StoreError> {
        let sql = self.render(self.queries().digest_domains, uuid::Uuid::nil());
        self.retry("read the digests' domains", || {
            self.client.query(&sql).fetch_all::<DigestDomainRow>()
        })
        .await
    }

    /// The daily volumes of the week from `week_start` (days since 1970, 7 days).
    pub async fn digest_days(&self, week_start: u16) -> Result<Vec<DigestDayRow>, StoreError> {
        let sql = self.render_week(self.queries().digest_days, week_start);
        self.retry("read the digests' daily volumes", || {
            self.client.query(&sql).fetch_all::<DigestDayRow>()
        })
        .await
    }

    /// The senders of the week from `week_start`, busiest first per domain.
    pub async fn digest_senders(
        &self,
        week_start: u16,
    ) -> Result<Vec<DigestSenderRow>, StoreError> {
        let sql = self.render_week(self.queries().digest_senders, week_start);
        self.retry("read the digests' senders", || {
            self.client.query(&sql).fetch_all::<DigestSenderRow>()
        })
        .await
    }

    fn render_week(&self, template: &str, week_start: u16) -> String {
        self.render(template, uuid::Uuid::nil())
            .replace("{week_start}", &format!("toDate({week_start})"))
            .replace("{week_end}", &format!("toDate({})", week_start + 6))
    }
}
