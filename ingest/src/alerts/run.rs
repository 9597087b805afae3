//! One alert evaluation (`dmarc-ingest alerts check`): the rules over the store's DNS
//! snapshots, statuses and report traffic, the transitions written to `alert_history`.
//!
//! In: the store, the `[alerts]` thresholds, the time. Out: an [`AlertSummary`], or the
//! store's error (then nothing is written: a rule whose inputs could not be read must not
//! resolve its alerts).

use std::sync::Arc;
use std::time::Duration;

use super::send::{deliver_alerts, DeliverySummary, Outbox};
use super::traffic::{domain_rules, pipeline_heard, sender_rules};
use super::{dns_rules, status_rule, transitions};
use crate::config::{AlertsConfig, Config};
use crate::metrics::Metrics;
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

/// Evaluates the rules at `now` (seconds since 1970) and writes the transitions.
pub async fn check(
    store: &Store,
    config: &AlertsConfig,
    now: u32,
) -> Result<AlertSummary, StoreError> {
    let today = (now / 86_400) as u16;
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
    let senders = store
        .alert_sender_inputs(today, config.recent_days, config.history_days)
        .await?;
    firing.extend(senders.iter().flat_map(|s| sender_rules(s, config)));
    let domains = store
        .alert_domain_inputs(
            today,
            config.recent_days.max(config.silence_days),
            config.history_days,
        )
        .await?;
    let heard = pipeline_heard(&domains, config, today);
    if !heard && !domains.is_empty() {
        tracing::warn!(
            silence_days = config.silence_days,
            "no domain had a report lately: the pipeline, not the domains, is silent; the \
             silence rule is not judged"
        );
    }
    firing.extend(
        domains
            .iter()
            .flat_map(|d| domain_rules(d, config, today, heard)),
    );
    // Silence not judged: its open alerts stay as they are (neither resolved nor moved on).
    let open: Vec<_> = store
        .open_alerts()
        .await?
        .into_iter()
        .filter(|o| heard || o.rule != "silence")
        .collect();
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

/// The daemon's alerting: evaluation and delivery, one at a time (the interval's and the
/// DNS run's evaluations never overlap, so an alert is never opened twice).
pub struct Alerting {
    store: Store,
    config: AlertsConfig,
    outbox: Outbox,
    lock: tokio::sync::Mutex<()>,
    /// The daemon's counters (none for a command).
    metrics: Option<Arc<Metrics>>,
}

impl Alerting {
    /// From the config (fails when `[smtp]` or the webhook cannot be set up).
    pub fn new(
        store: Store,
        config: &Config,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Alerting, String> {
        Ok(Alerting {
            store,
            config: config.alerts.clone(),
            outbox: Outbox::from_config(config)?,
            lock: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    fn count(&self, evaluated: Option<&AlertSummary>, delivered: &DeliverySummary) {
        if let Some(metrics) = &self.metrics {
            if let Some(evaluated) = evaluated {
                Metrics::add(&metrics.alerts_opened, evaluated.opened as u64);
            }
            Metrics::add(&metrics.alert_deliveries_sent, delivered.sent as u64);
            Metrics::add(
                &metrics.alert_deliveries_failed,
                (delivered.failed + delivered.abandoned) as u64,
            );
        }
    }

    /// Evaluates the rules at `now`, then delivers what is due.
    pub async fn evaluate_and_deliver(
        &self,
        now: u32,
    ) -> Result<(AlertSummary, DeliverySummary), StoreError> {
        let _one_at_a_time = self.lock.lock().await;
        let evaluated = check(&self.store, &self.config, now).await?;
        let delivered = deliver_alerts(&self.store, &self.outbox, now).await?;
        self.count(Some(&evaluated), &delivered);
        Ok((evaluated, delivered))
    }

    /// Delivers what is due at `now` (retries after their backoff).
    pub async fn deliver(&self, now: u32) -> Result<DeliverySummary, StoreError> {
        let _one_at_a_time = self.lock.lock().await;
        let delivered = deliver_alerts(&self.store, &self.outbox, now).await?;
        self.count(None, &delivered);
        Ok(delivered)
    }
}

/// How often the daemon looks for deliveries to retry between evaluations.
const DELIVERY_TICK: Duration = Duration::from_secs(60);

/// The daemon's alert schedule: evaluates every `every` (the first at start) and delivers
/// what is due every minute in between, until shutdown. Errors are logged, never fatal.
pub async fn schedule(
    alerting: Arc<Alerting>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut next_evaluation = tokio::time::Instant::now();
    loop {
        let now = crate::store::now();
        let work = async {
            if tokio::time::Instant::now() >= next_evaluation {
                next_evaluation = tokio::time::Instant::now() + every;
                match alerting.evaluate_and_deliver(now).await {
                    Ok((evaluated, delivered)) => {
                        tracing::info!(alerts = %evaluated, deliveries = %delivered, "alerts evaluated")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot evaluate the alerts now"),
                }
            } else {
                match alerting.deliver(now).await {
                    Ok(d) if d == DeliverySummary::default() => {}
                    Ok(delivered) => tracing::info!(deliveries = %delivered, "alerts delivered"),
                    Err(e) => tracing::warn!(error = %e, "cannot deliver the alerts now"),
                }
            }
        };
        tokio::select! {
            _ = work => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(DELIVERY_TICK.min(every)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
