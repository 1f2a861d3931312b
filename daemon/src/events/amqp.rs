//! The AMQP plumbing every consumer of atelierd shares (the handlers'
//! consumers and the dead-letter ingest): starting a consumer on a queue
//! ([`consume`]), acking and returning one delivery with a timeout ([`ack`],
//! [`nack`]), and [`Running`], which counts a consumer in `/ready` while it
//! lives.

use super::EventsError;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Starts consuming `queue` on `channel` with `prefetch` unacked deliveries,
/// under a unique tag `atelierd-{label}-{uuid}` (returned, for cancelling).
pub(crate) async fn consume(
    channel: &Channel,
    queue: &str,
    label: &str,
    prefetch: u16,
) -> Result<(lapin::Consumer, String), EventsError> {
    channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(EventsError::Prefetch)?;
    let tag = format!("atelierd-{label}-{}", uuid::Uuid::now_v7().simple());
    let consumer = channel
        .basic_consume(queue.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|source| EventsError::Consume { queue: queue.to_owned(), source })?;
    Ok((consumer, tag))
}

/// Counts a running consumer while alive.
pub(crate) struct Running(Arc<crate::metrics::Metrics>);

impl Running {
    pub(crate) fn new(m: Arc<crate::metrics::Metrics>) -> Self {
        m.consumers_running.fetch_add(1, Relaxed);
        Running(m)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.consumers_running.fetch_sub(1, Relaxed);
    }
}

/// Acks; true only when the ack was sent (lapin's Ok(false): the channel was
/// closed or recovered, the broker will redeliver).
pub(crate) async fn ack(delivery: &Delivery, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, delivery.acker.ack(BasicAckOptions::default())).await {
        Ok(Ok(true)) => true,
        Ok(Ok(false)) => {
            tracing::warn!("ack not sent (channel closed); the broker will redeliver");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "ack failed; the broker will redeliver");
            false
        }
        Err(_) => {
            tracing::warn!(?timeout, "ack timed out; the broker will redeliver");
            false
        }
    }
}

/// Returns a delivery to its queue (best effort: a closed channel returns it anyway).
pub(crate) async fn nack(delivery: &Delivery, timeout: Duration) {
    let opts = BasicNackOptions { requeue: true, ..Default::default() };
    match tokio::time::timeout(timeout, delivery.acker.nack(opts)).await {
        Ok(Ok(true)) => {}
        other => tracing::debug!(?other, "nack not sent; the broker returns unacked deliveries itself"),
    }
}
