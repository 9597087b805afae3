//! One alert evaluation (`dmarc-ingest alerts check`): the rules over the store's DNS
//! snapshots and statuses, the transitions written to `alert_history`.
//!
//! In: the store. Out: an [`AlertSummary`], or the store's error.

use super::{dns_rules, status_rule, transitions};
use crate::store::{Store, StoreError};

/// What an evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertSummary {
    /// Alerts opened now, still open, resolved now.
    pub opened: usize,
    pub still_open: usize,
    pub resolved: usize,
}

impl std::fmt::Display for AlertSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} alerts opened, {} still open, {} resolved",
            self.opened, self.still_open, self.resolved
        )
    }
}

/// Evaluates the rules at `now` and writes the transitions.
pub async fn check(store: &Store, now: u32) -> Result<AlertSummary, StoreError> {
    let mut firing: Vec<_> = store
        .alert_dns_inputs()
        .await?
        .iter()
        .flat_map(dns_rules)
        .collect();
    firing.extend(
        store
            .alert_status_inputs()
            .await?
            .iter()
            .filter_map(status_rule),
    );
    let open = store.open_alerts().await?;
    let rows = transitions(&open, &firing, now);
    let mut summary = AlertSummary::default();
    for row in &rows {
        let was_open = open
            .iter()
            .any(|o| o.rule == row.rule && o.domain == row.domain && o.key == row.key);
        match (row.state.as_str(), was_open) {
            ("resolved", _) => summary.resolved += 1,
            (_, true) => summary.still_open += 1,
            (_, false) => summary.opened += 1,
        }
    }
    store.insert_rows("alert_history", &rows).await?;
    Ok(summary)
}
