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

use crate::events::handler::{Handler, HandlerError, Outcome};
use crate::metrics::Series;
use crate::state::Shared;
use atelier_domain::bus::headers::{self as h, get_str, get_u32, set_str, set_u32};
use atelier_domain::bus::{Topology, publish_confirmed};
use atelier_domain::events::{Envelope, Event};
use chrono::Utc;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use rand::Rng;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The wait before handling a delivery again after a transient failure,
/// doubling up to the maximum.
const TRANSIENT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const TRANSIENT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Longest error text kept in headers and the dead-letter store.
const MAX_ERROR_LEN: usize = 500;

/// Starts consuming `queue` on `channel` with `prefetch` unacked deliveries,
/// under a unique tag `atelierd-{label}-{uuid}` (returned, for cancelling).
pub(crate) async fn consume(
    channel: &Channel,
    queue: &str,
    label: &str,
    prefetch: u16,
) -> Result<(lapin::Consumer, String), String> {
    channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|e| e.to_string())?;
    let tag = format!("atelierd-{label}-{}", uuid::Uuid::now_v7().simple());
    let consumer = channel
        .basic_consume(queue.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|e| format!("consuming {queue}: {e}"))?;
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

/// Coalesces acks: a settled delivery is acked by one `multiple` ack of the
/// highest settled tag below every delivery still in flight, sent by one
/// task. The task sends once `batch` deliveries are ackable, or `linger`
/// after the first of them became ackable: under load one ack frame covers
/// `batch` deliveries (each ack frame costs the broker as much as a delivery),
/// and when idle a delivery waits at most `linger` for its ack. A delivery is
/// marked settled only once its outcome is durable, so the guarantee is
/// unchanged: an ack lost in a crash means a redelivery the handler dedupes.
#[derive(Default)]
struct AckState {
    in_flight: std::collections::BTreeSet<u64>,
    settled: std::collections::BTreeMap<u64, lapin::Acker>,
}

pub(crate) struct Acks {
    state: std::sync::Mutex<AckState>,
    wake: tokio::sync::Notify,
    batch: usize,
}

/// The longest an ackable delivery waits for more to share its ack frame.
const ACK_LINGER: Duration = Duration::from_millis(2);

impl Acks {
    /// `batch`: how many ackable deliveries one ack frame waits for (at
    /// least 1; a quarter of the prefetch keeps the broker's window open).
    fn new(prefetch: u16) -> Arc<Acks> {
        let batch = usize::from(prefetch / 4).max(1);
        Arc::new(Acks { state: Default::default(), wake: tokio::sync::Notify::new(), batch })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn received(&self, tag: u64) {
        self.lock().in_flight.insert(tag);
    }

    /// The outcome is durable: ack it (soon).
    fn settle(&self, tag: u64, acker: lapin::Acker) {
        let mut st = self.lock();
        st.in_flight.remove(&tag);
        st.settled.insert(tag, acker);
        drop(st);
        self.wake.notify_one();
    }

    /// Returned with a nack (or never to be acked here).
    fn forget(&self, tag: u64) {
        if self.lock().in_flight.remove(&tag) {
            self.wake.notify_one();
        }
    }

    /// How many settled deliveries lie below the lowest one in flight.
    fn ackable(&self) -> usize {
        let st = self.lock();
        let low = st.in_flight.first().copied().unwrap_or(u64::MAX);
        st.settled.range(..low).count()
    }

    /// The acker covering every settled delivery below the lowest in flight.
    fn take_ackable(&self) -> Option<(lapin::Acker, usize)> {
        let mut st = self.lock();
        let low = st.in_flight.first().copied().unwrap_or(u64::MAX);
        let keep = st.settled.split_off(&low);
        let ackable = std::mem::replace(&mut st.settled, keep);
        let n = ackable.len();
        ackable.into_iter().next_back().map(|(_, a)| (a, n))
    }

    /// Sends the acks until `done` fires and nothing ackable is left.
    async fn run(self: Arc<Self>, done: CancellationToken, timeout: Duration) {
        // When the oldest ackable delivery must be acked, batch full or not.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let n = self.ackable();
            let due = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if n > 0 && (n >= self.batch || due || done.is_cancelled()) {
                deadline = None;
                if let Some((acker, n)) = self.take_ackable() {
                    let ack = acker.ack(BasicAckOptions { multiple: true });
                    match tokio::time::timeout(timeout, ack).await {
                        Ok(Ok(true)) => {}
                        other => tracing::warn!(
                            deliveries = n,
                            outcome = ?other.map(|r| r.map_err(|e| e.to_string())),
                            "ack not sent (channel closed?); the broker will redeliver and the handler dedupes"
                        ),
                    }
                }
                continue;
            }
            if n == 0 {
                if done.is_cancelled() {
                    return;
                }
                deadline = None;
            } else if deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + ACK_LINGER);
            }
            let linger = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = linger => {}
                _ = done.cancelled() => {}
            }
        }
    }
}

/// Consumes the handler's queue until `stop` fires (Ok) or the channel or
/// stream fails (Err: the supervisor reconnects).
pub async fn run(
    shared: Arc<Shared>,
    topology: Arc<Topology>,
    handler: Arc<dyn Handler>,
    channel: Channel,
    stop: CancellationToken,
) -> Result<(), String> {
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
            if !super::wait_for_database(&shared, &stop).await {
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
                Some(Err(e)) => break Err(format!("consumer of {queue}: {e}")),
                None => break Err(format!("the consumer of {queue} stopped (channel or connection closed)")),
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

/// How a delivery ends.
enum Settle {
    Ack,
    Retry { kind: &'static str, reason: String },
    Dead { kind: &'static str, reason: String },
    Requeue(String),
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
                let ty = delivery.properties.kind().as_ref().map(|t| t.to_string()).unwrap_or_else(|| "unknown".into());
                let reason = format!("message of {} bytes is over the limit of {limit}", delivery.data.len());
                (ty, Settle::Dead { kind: "too_large", reason })
            } else {
                match Envelope::decode_event(&delivery.data) {
                    Err(e) => (
                        e.event_type().unwrap_or("unknown").to_owned(),
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
            let series = self.shared.metrics.series(name, &event_type);
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
                        .series(self.handler.name(), &envelope.event_type)
                        .transient
                        .fetch_add(1, Relaxed);
                    tracing::warn!(%reason, retry_in = ?backoff, "a dependency is down: pausing, keeping the delivery");
                    self.paused.store(true, Relaxed);
                    let waited = tokio::select! {
                        _ = self.stop.cancelled() => false,
                        _ = tokio::time::sleep(backoff) => true,
                    };
                    if !waited || !super::wait_for_database(&self.shared, &self.stop).await {
                        return Settle::Requeue(reason);
                    }
                    backoff = (backoff * 2).min(TRANSIENT_BACKOFF_MAX);
                }
                Err(HandlerError::Retryable { kind, reason }) => return Settle::Retry { kind, reason },
                Err(HandlerError::Permanent { kind, reason }) => return Settle::Dead { kind, reason },
            }
        }
    }

    /// The effects are committed: count it and ack it (coalesced).
    fn succeeded(&self, delivery: Box<Delivery>, series: &Series) {
        series.succeeded.fetch_add(1, Relaxed);
        self.acks.settle(delivery.delivery_tag, delivery.acker);
    }

    async fn settle(&self, delivery: Box<Delivery>, attempt: u32, event_type: &str, settle: Settle, series: &Series) {
        let timeout = self.shared.config.settings.amqp.publish_timeout;
        let policy = self.shared.config.settings.retry_for(self.handler.name());
        let settle = match settle {
            Settle::Retry { kind, reason } if attempt >= policy.max_retries => {
                Settle::Dead { kind, reason: format!("{reason} (after {} attempts)", attempt + 1) }
            }
            other => other,
        };
        match settle {
            Settle::Ack => self.succeeded(delivery, series),
            Settle::Requeue(reason) => {
                tracing::info!(%reason, "shutting down while a dependency is down: returning the delivery");
                nack(&delivery, timeout).await;
                self.acks.forget(delivery.delivery_tag);
            }
            Settle::Retry { kind, reason } => {
                let level = attempt + 1;
                let delay = policy.delay(level);
                let jitter = self.shared.config.settings.retry.jitter;
                let ms = delay.as_millis() as f64;
                let expiration = (ms * (1.0 - rand::rng().random_range(0.0..=jitter))).round().max(1.0) as u64;
                let mut props = self.failure_properties(&delivery, kind, &reason);
                if let Some(hs) = props.headers().clone() {
                    let mut hs = hs;
                    set_u32(&mut hs, h::ATTEMPT, level);
                    props = props.with_headers(hs);
                }
                let props = props.with_expiration(expiration.to_string().into());
                let queue = self.topology.retry_queue(self.handler.name(), level);
                match publish_confirmed(&self.channel, "", &queue, &delivery.data, props, timeout).await {
                    Ok(()) => {
                        tracing::info!(kind, %reason, level, delay_ms = expiration, "retry scheduled");
                        series.retried.fetch_add(1, Relaxed);
                        self.acks.settle(delivery.delivery_tag, delivery.acker);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not schedule the retry; returning the delivery");
                        nack(&delivery, timeout).await;
                        self.acks.forget(delivery.delivery_tag);
                    }
                }
            }
            Settle::Dead { kind, reason } => {
                let mut props = self.failure_properties(&delivery, kind, &reason);
                let id = uuid::Uuid::now_v7();
                if let Some(mut hs) = props.headers().clone() {
                    set_str(&mut hs, h::DEAD_LETTER_ID, &id.to_string());
                    set_u32(&mut hs, h::ATTEMPT, attempt);
                    props = props.with_headers(hs);
                }
                let exchange = self.topology.dead_exchange();
                match publish_confirmed(&self.channel, &exchange, self.handler.name(), &delivery.data, props, timeout)
                    .await
                {
                    Ok(()) => {
                        tracing::warn!(kind, %reason, dead_letter_id = %id, "dead-lettered");
                        report_to_sentry(self.handler.name(), event_type, &delivery, kind);
                        series.dead_lettered.fetch_add(1, Relaxed);
                        self.acks.settle(delivery.delivery_tag, delivery.acker);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not dead-letter; returning the delivery");
                        nack(&delivery, timeout).await;
                        self.acks.forget(delivery.delivery_tag);
                    }
                }
            }
        }
    }

    /// The delivery's properties with our failure headers added.
    fn failure_properties(&self, delivery: &Delivery, kind: &str, reason: &str) -> BasicProperties {
        let mut hs = delivery.properties.headers().clone().unwrap_or_default();
        let now = Utc::now().to_rfc3339();
        if get_str(Some(&hs), h::FIRST_FAILED_AT).is_none() {
            set_str(&mut hs, h::FIRST_FAILED_AT, &now);
        }
        set_str(&mut hs, h::LAST_FAILED_AT, &now);
        set_str(&mut hs, h::HANDLER, self.handler.name());
        set_str(&mut hs, h::ERROR, &shorten(reason));
        set_str(&mut hs, h::ERROR_KIND, kind);
        let mut props = delivery.properties.clone().with_headers(hs);
        if delivery.properties.delivery_mode().is_none() {
            props = props.with_delivery_mode(2);
        }
        props
    }
}

fn shorten(s: &str) -> String {
    if s.len() <= MAX_ERROR_LEN {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
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

/// One Sentry event per dead letter: handler, type, event id and error kind
/// only (never payload text, phones or the error text).
fn report_to_sentry(handler: &str, event_type: &str, delivery: &Delivery, kind: &str) {
    if sentry::Hub::current().client().is_none() {
        return;
    }
    let event_id = delivery.properties.message_id().as_ref().map(|m| m.to_string()).unwrap_or_default();
    sentry::with_scope(
        |scope| {
            scope.set_tag("handler", handler);
            scope.set_tag("event_type", event_type);
            scope.set_tag("event_id", &event_id);
            scope.set_tag("error_kind", kind);
        },
        || sentry::capture_message(&format!("dead-lettered {event_type} in {handler}: {kind}"), sentry::Level::Warning),
    );
}
