//! The outbox relay: publishes `outbox` rows in creation order to
//! `{ns}.events` (routing key = event type; persistent; message_id = event
//! id; type; application/json) with publisher confirms, and marks a row sent
//! (`published_at`) only after its confirm, in the transaction that locked
//! it. Batches are taken with `FOR UPDATE SKIP LOCKED`, so several daemons
//! relay side by side without publishing a row twice in normal operation (a
//! crash between confirm and commit publishes it again: consumers dedupe).
//! The SQL (the locked batch, marking rows sent, the backlog) is the store's
//! ([`outbox::relay_batch`], [`outbox::backlog`]); this module publishes.
//!
//! Wake-up: in-process, after an API request that changed something or an
//! event a handler applied (`Shared::outbox_written`), and otherwise a poll
//! every `amqp.outbox_poll`, which covers rows written by other processes
//! (an HTTP-only `atelierd`, the CLI). There is no NOTIFY: a transaction
//! that notifies holds a database-wide lock through its commit's WAL flush,
//! which serialized every sale's commit (migration `outbox_wake_in_process`).

use crate::events::EventsError;
use crate::state::Shared;
use atelier_domain::bus::publish::{await_confirm, event_properties, start_publish};
use atelier_domain::bus::{BusError, Topology};
use atelier_domain::store::StoreError;
use atelier_domain::store::outbox::{self, Published, Unpublished};
use chrono::{DateTime, Utc};
use lapin::Channel;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Relays until `stop` (Ok) or the broker fails (Err: the supervisor reconnects).
pub async fn run(
    shared: Arc<Shared>,
    topology: Arc<Topology>,
    channel: Channel,
    stop: CancellationToken,
) -> Result<(), EventsError> {
    let poll = shared.config.settings.amqp.outbox_poll;
    let batch = shared.config.settings.amqp.outbox_batch;
    let exchange = topology.events_exchange();
    let mut last_gauge = Instant::now() - Duration::from_secs(10);
    loop {
        let mut failed = None;
        loop {
            if stop.is_cancelled() {
                break;
            }
            match relay_batch(&shared, &channel, &exchange, batch).await {
                Ok(n) if n as i64 >= batch => continue,
                Ok(_) => break,
                Err(RelayError::Store(e)) => {
                    tracing::warn!(error = %e, "outbox relay: database error; trying again shortly");
                    break;
                }
                Err(RelayError::Bus(e)) => {
                    failed = Some(EventsError::Relay(e));
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        if last_gauge.elapsed() >= Duration::from_secs(1) {
            update_gauges(&shared).await;
            last_gauge = Instant::now();
        }
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            _ = shared.outbox_written.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Publishes one batch in one store transaction ([`outbox::relay_batch`]);
/// returns how many rows it took.
async fn relay_batch(shared: &Shared, channel: &Channel, exchange: &str, batch: i64) -> Result<usize, RelayError> {
    let timeout = shared.config.settings.amqp.publish_timeout;
    let mut conn = shared.db.conn().await?;
    let relayed = outbox::relay_batch(&mut conn, batch, |rows| publish(channel, exchange, timeout, rows)).await?;
    shared.metrics.outbox_published.fetch_add(relayed.sent as u64, Relaxed);
    // Committed what was confirmed; a broker failure then makes the supervisor reconnect.
    match relayed.error {
        Some(e) => Err(RelayError::Bus(e)),
        None => Ok(relayed.taken),
    }
}

/// Sends the locked rows in order, then collects every confirm.
async fn publish(channel: &Channel, exchange: &str, timeout: Duration, rows: Vec<Unpublished>) -> Published<BusError> {
    let mut pending = Vec::with_capacity(rows.len());
    let mut first_error = None;
    for row in &rows {
        let body = serde_json::to_vec(&row.envelope).unwrap_or_default();
        let props = event_properties(&row.event_id.to_string(), &row.event_type);
        match start_publish(channel, exchange, &row.event_type, &body, props, timeout).await {
            Ok(c) => pending.push((row.id, &row.event_type, c)),
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    let mut sent = Vec::with_capacity(pending.len());
    let mut failed = Vec::new();
    for (id, event_type, confirm) in pending {
        match await_confirm(confirm, exchange, event_type, timeout).await {
            Ok(()) => sent.push(id),
            Err(e) => {
                failed.push(id);
                first_error.get_or_insert(e);
            }
        }
    }
    Published { sent, failed, error: first_error }
}

/// Updates the backlog and lag gauges.
async fn update_gauges(shared: &Shared) {
    let Ok(mut conn) = shared.db.conn().await else { return };
    if let Ok((count, oldest)) = outbox::backlog(&mut conn).await {
        shared.metrics.outbox_backlog.store(count, Relaxed);
        let lag = oldest.map(|t: DateTime<Utc>| (Utc::now() - t).num_milliseconds().max(0)).unwrap_or(0);
        shared.metrics.outbox_lag_ms.store(lag, Relaxed);
    }
}
