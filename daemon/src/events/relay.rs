//! The outbox relay: publishes `outbox` rows in creation order to
//! `{ns}.events` (routing key = event type; persistent; message_id = event
//! id; type; application/json) with publisher confirms, and marks a row sent
//! (`published_at`) only after its confirm, in the transaction that locked
//! it. Batches are taken with `FOR UPDATE SKIP LOCKED`, so several daemons
//! relay side by side without publishing a row twice in normal operation (a
//! crash between confirm and commit publishes it again: consumers dedupe).
//!
//! Wake-up: in-process, after an API request that changed something or an
//! event a handler applied (`Shared::outbox_written`), and otherwise a poll
//! every `amqp.outbox_poll`, which covers rows written by other processes
//! (an HTTP-only `atelierd`, the CLI). There is no NOTIFY: a transaction
//! that notifies holds a database-wide lock through its commit's WAL flush,
//! which serialized every sale's commit (migration `outbox_wake_in_process`).

use crate::state::Shared;
use atelier_domain::bus::publish::{await_confirm, event_properties, start_publish};
use atelier_domain::bus::{BusError, Topology};
use atelier_domain::store::StoreError;
use atelier_domain::store::outbox;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
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

impl From<diesel::result::Error> for RelayError {
    fn from(e: diesel::result::Error) -> Self {
        RelayError::Store(e.into())
    }
}

/// Relays until `stop` (Ok) or the broker fails (Err: the supervisor reconnects).
pub async fn run(
    shared: Arc<Shared>,
    topology: Arc<Topology>,
    channel: Channel,
    stop: CancellationToken,
) -> Result<(), String> {
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
                    failed = Some(format!("outbox relay: {e}"));
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

/// Publishes one batch in one transaction; returns how many rows it took.
async fn relay_batch(shared: &Shared, channel: &Channel, exchange: &str, batch: i64) -> Result<usize, RelayError> {
    let timeout = shared.config.settings.amqp.publish_timeout;
    let mut conn = shared.db.conn().await?;
    conn.transaction::<_, RelayError, _>(async |conn| {
        let rows: Vec<(i64, uuid::Uuid, String, serde_json::Value)> = atelier_domain::store::schema::outbox::table
            .filter(outbox_cols::published_at.is_null())
            .order(outbox_cols::id.asc())
            .limit(batch)
            .select((outbox_cols::id, outbox_cols::event_id, outbox_cols::event_type, outbox_cols::envelope))
            .for_update()
            .skip_locked()
            .load(conn)
            .await?;
        if rows.is_empty() {
            return Ok((0, None));
        }
        // Send the whole batch in order, then collect every confirm.
        let mut pending = Vec::with_capacity(rows.len());
        let mut first_error = None;
        for (id, event_id, event_type, envelope) in &rows {
            let body = serde_json::to_vec(envelope).unwrap_or_default();
            let props = event_properties(&event_id.to_string(), event_type);
            match start_publish(channel, exchange, event_type, &body, props, timeout).await {
                Ok(c) => pending.push((*id, event_type.clone(), c)),
                Err(e) => {
                    first_error = Some(e);
                    break;
                }
            }
        }
        let mut sent = Vec::with_capacity(pending.len());
        let mut failed = Vec::new();
        for (id, event_type, confirm) in pending {
            match await_confirm(confirm, exchange, &event_type, timeout).await {
                Ok(()) => sent.push(id),
                Err(e) => {
                    failed.push(id);
                    first_error.get_or_insert(e);
                }
            }
        }
        if !sent.is_empty() {
            diesel::update(outbox_cols::table.filter(outbox_cols::id.eq_any(&sent)))
                .set(outbox_cols::published_at.eq(Utc::now()))
                .execute(conn)
                .await?;
            shared.metrics.outbox_published.fetch_add(sent.len() as u64, Relaxed);
        }
        if let Some(e) = &first_error {
            let text: String = e.to_string().chars().take(500).collect();
            diesel::update(outbox_cols::table.filter(outbox_cols::id.eq_any(&failed)))
                .set((outbox_cols::attempts.eq(outbox_cols::attempts + 1), outbox_cols::last_error.eq(text)))
                .execute(conn)
                .await?;
        }
        // Commit what was confirmed; a broker failure then makes the supervisor reconnect.
        Ok((sent.len() + failed.len(), first_error))
    })
    .await
    .and_then(|(n, failed)| match failed {
        Some(e) => Err(RelayError::Bus(e)),
        None => Ok(n),
    })
}

use atelier_domain::store::schema::outbox as outbox_cols;

/// Updates the backlog and lag gauges.
async fn update_gauges(shared: &Shared) {
    let Ok(mut conn) = shared.db.conn().await else { return };
    if let Ok((count, oldest)) = outbox::backlog(&mut conn).await {
        shared.metrics.outbox_backlog.store(count, Relaxed);
        let lag = oldest.map(|t: DateTime<Utc>| (Utc::now() - t).num_milliseconds().max(0)).unwrap_or(0);
        shared.metrics.outbox_lag_ms.store(lag, Relaxed);
    }
}
