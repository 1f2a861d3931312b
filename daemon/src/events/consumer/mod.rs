//! One consumer per handler: takes deliveries from `{ns}.q.{handler}`,
//! decodes the envelope, calls the handler, and settles each delivery only
//! once its outcome is durable (DESIGN.md, "Failure classes"):
//!
//! - Ok → ack (the effects committed in the handler's transaction; acks
//!   are coalesced into `multiple` acks, see [`Acks`]);
//! - Retryable → a copy with `x-atelier-attempt` + 1 to the retry queue of
//!   the next level, confirmed by the broker, then ack; after `max_retries`,
//!   dead-letter;
//! - Permanent, malformed JSON, unknown type or version, too large →
//!   dead-letter at once with the reason;
//! - Transient (the database is down) → consumption pauses and the delivery
//!   is kept and handled again once the database answers: no retry used, and
//!   no return to the queue (returns count toward its `x-delivery-limit`);
//!   only at shutdown is it returned with a nack.
//!
//! Jitter: a retry level's queue has one TTL (no head-of-line blocking), so
//! each copy also carries a per-message `expiration` drawn from
//! [(1 − retry.jitter) × delay, delay]; the broker expires a message at the
//! smaller of the two, and a message behind a later-expiring one waits at
//! most `jitter × delay` longer, still within the level's delay.
//!
//! This module is the consume loop and the handling of one delivery;
//! [`acks`] coalesces the acks, [`settle`] makes each outcome durable.

mod acks;
mod settle;

use crate::events::EventsError;
use crate::events::amqp::{Running, consume};
use crate::events::handler::{Handler, HandlerError, Outcome};
use crate::metrics::EventLabel;
use crate::state::Shared;
use acks::Acks;
use atelier_domain::bus::Topology;
use atelier_domain::bus::headers::{self as h, get_u32};
use atelier_domain::events::{Envelope, Event};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::BasicCancelOptions;
use settle::Settle;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The event type of a delivery whose type neither its `type` property nor
/// its envelope tells (metrics label and Sentry tag; the dead-letter copy
/// then gets no `type`, and the store marks it unknown).
const UNKNOWN_TYPE: &str = "unknown";

/// The wait before handling a delivery again after a transient failure,
/// doubling up to the maximum.
const TRANSIENT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const TRANSIENT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Consumes the handler's queue until `stop` fires (Ok) or the channel or
/// stream fails (Err: the supervisor reconnects).
pub async fn run(
    shared: Arc<Shared>,
    topology: Arc<Topology>,
    handler: Arc<dyn Handler>,
    channel: Channel,
    stop: CancellationToken,
) -> Result<(), EventsError> {
    let settings = &shared.config.settings;
    let queue = topology.handler_queue(handler.name());
    let (mut consumer, tag) = consume(&channel, &queue, handler.name(), settings.amqp.prefetch).await?;
    let _running = Running::new(shared.metrics.clone());
    let concurrency = settings.amqp.concurrency;
    let paused = Arc::new(AtomicBool::new(false));
    // The deliveries being handled, polled by this task (not one spawned
    // task each): handlers wait on I/O, and a spawn per delivery cost the
    // no-op path a task allocation and a wake-up of another worker thread.
    let mut inflight = FuturesUnordered::new();
    let acks = Acks::new(settings.amqp.prefetch);
    let acks_done = CancellationToken::new();
    let acker = tokio::spawn(acks.clone().run(acks_done.clone(), settings.amqp.publish_timeout));
    let work = Arc::new(Work {
        shared: shared.clone(),
        topology: topology.clone(),
        handler: handler.clone(),
        channel: channel.clone(),
        paused: paused.clone(),
        acks: acks.clone(),
        stop: stop.clone(),
    });
    let outcome = loop {
        if paused.load(Relaxed) {
            // Let in-flight deliveries settle, then wait for the database.
            while inflight.next().await.is_some() {}
            if !crate::events::wait_for_database(&shared, &stop).await {
                break Ok(());
            }
            paused.store(false, Relaxed);
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            Some(()) = inflight.next(), if !inflight.is_empty() => {}
            next = consumer.next(), if inflight.len() < concurrency => match next {
                Some(Ok(delivery)) => {
                    acks.received(delivery.delivery_tag);
                    inflight.push(handle_one(work.clone(), Box::new(delivery)));
                }
                Some(Err(source)) => break Err(EventsError::Consumer { queue: queue.clone(), source }),
                None => break Err(EventsError::ConsumerEnded { queue: queue.clone() }),
            },
        }
    };
    if outcome.is_ok() {
        let _ = tokio::time::timeout(
            settings.amqp.publish_timeout,
            channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()),
        )
        .await;
    }
    while inflight.next().await.is_some() {}
    acks_done.cancel();
    let _ = acker.await;
    outcome
}

/// Handles one delivery. A panicking handler is contained here: the panic is
/// logged (and sent to Sentry by its panic hook), the delivery is left
/// unacked for the broker to redeliver when the channel closes, and the
/// consumer goes on with the others.
async fn handle_one(work: Arc<Work>, delivery: Box<Delivery>) {
    // However this ends, the tag must not hold back later acks.
    let _forget = Forget(work.acks.clone(), delivery.delivery_tag);
    let handler = work.handler.name();
    if AssertUnwindSafe(work.process(delivery)).catch_unwind().await.is_err() {
        tracing::error!(handler, "the handler panicked; the delivery stays unacked and will be redelivered");
    }
}

/// Drops a delivery from the in-flight set when its handling ends, however it ends.
struct Forget(Arc<Acks>, u64);

impl Drop for Forget {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// What handling a delivery needs (one per consumer, shared by its deliveries).
struct Work {
    shared: Arc<Shared>,
    topology: Arc<Topology>,
    handler: Arc<dyn Handler>,
    channel: Channel,
    paused: Arc<AtomicBool>,
    acks: Arc<Acks>,
    stop: CancellationToken,
}

impl Work {
    async fn process(&self, delivery: Box<Delivery>) {
        let started = Instant::now();
        let headers = delivery.properties.headers().as_ref();
        let attempt = get_u32(headers, h::ATTEMPT).unwrap_or(0);
        let name = self.handler.name();
        let span = tracing::info_span!(
            "delivery",
            handler = name,
            event_id = tracing::field::Empty,
            event_type = tracing::field::Empty,
            correlation_id = tracing::field::Empty,
            attempt,
        );
        async move {
            let limit = self.shared.config.settings.amqp.max_message_bytes;
            let (event_type, settle) = if delivery.data.len() > limit {
                let ty =
                    delivery.properties.kind().as_ref().map(|t| t.to_string()).unwrap_or_else(|| UNKNOWN_TYPE.into());
                let reason = format!("message of {} bytes is over the limit of {limit}", delivery.data.len());
                (ty, Settle::Dead { kind: "too_large", reason })
            } else {
                match Envelope::decode_event(&delivery.data) {
                    Err(e) => (
                        e.event_type().unwrap_or(UNKNOWN_TYPE).to_owned(),
                        Settle::Dead { kind: e.kind(), reason: e.to_string() },
                    ),
                    Ok(envelope) => {
                        let span = tracing::Span::current();
                        span.record("event_id", tracing::field::display(envelope.id));
                        span.record("event_type", envelope.event_type.as_str());
                        span.record("correlation_id", tracing::field::display(envelope.correlation_id));
                        let settle = self.handle(&envelope).await;
                        (envelope.event_type, settle)
                    }
                }
            };
            let series = self.shared.metrics.series(name, EventLabel::of(&event_type));
            series.consumed.fetch_add(1, Relaxed);
            match settle {
                Settle::Ack => self.succeeded(delivery, &series),
                // Boxed: the failure paths' publishes make a large future, and
                // every delivery's task would otherwise be sized (and copied
                // at spawn) for them.
                failed => Box::pin(self.settle(delivery, attempt, &event_type, failed, &series)).await,
            }
            series.handling.observe(started.elapsed());
        }
        .instrument(span)
        .await
    }

    /// Handles the event; while a dependency is down (a transient failure)
    /// the delivery is kept and handled again once the database answers,
    /// consumption paused meanwhile. It is not returned to the queue: each
    /// return would count toward the queue's `x-delivery-limit`, and a long
    /// or flapping outage must never dead-letter an event. Only at shutdown
    /// is it returned (`Requeue`).
    async fn handle(&self, envelope: &Envelope<Event>) -> Settle {
        let mut backoff = TRANSIENT_BACKOFF_MIN;
        loop {
            match self.handler.handle(envelope).await {
                Ok(outcome) => {
                    tracing::debug!(?outcome, "handled");
                    if outcome == Outcome::Applied {
                        self.shared.outbox_written.notify_one();
                    }
                    return Settle::Ack;
                }
                Err(HandlerError::Transient(reason)) => {
                    self.shared
                        .metrics
                        .series(self.handler.name(), EventLabel::of(&envelope.event_type))
                        .transient
                        .fetch_add(1, Relaxed);
                    tracing::warn!(%reason, retry_in = ?backoff, "a dependency is down: pausing, keeping the delivery");
                    self.paused.store(true, Relaxed);
                    let waited = tokio::select! {
                        _ = self.stop.cancelled() => false,
                        _ = tokio::time::sleep(backoff) => true,
                    };
                    if !waited || !crate::events::wait_for_database(&self.shared, &self.stop).await {
                        return Settle::Requeue(reason);
                    }
                    backoff = (backoff * 2).min(TRANSIENT_BACKOFF_MAX);
                }
                Err(HandlerError::Retryable { kind, reason }) => return Settle::Retry { kind, reason },
                Err(HandlerError::Permanent { kind, reason }) => return Settle::Dead { kind, reason },
            }
        }
    }
}
