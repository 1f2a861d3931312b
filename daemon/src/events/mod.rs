//! Event processing (the `events` role): a supervisor that connects to
//! RabbitMQ, declares the topology, and runs the outbox relay ([`relay`]), one
//! consumer per handler ([`consumer`]) and the dead-letter ingest
//! ([`dead_letters`]) on that connection; the consumers and the ingest share
//! the AMQP plumbing of `amqp` (consume, ack, nack, the running count). When
//! the connection or any of them fails (the broker restarted, closed the
//! connection, or a consumer stream ended silently: lapin issue 389) it stops
//! the rest, lets in-flight work finish, and reconnects with exponential
//! backoff. On shutdown it stops taking work, waits for in-flight
//! deliveries, then closes each channel and last the connection (a clean stop
//! logs no ERROR). Why a session ended is an [`EventsError`].

mod amqp;
pub mod consumer;
pub mod dead_letters;
pub mod error;
pub mod handler;
pub mod handlers;
pub mod relay;

use crate::error::AppError;
use crate::state::Shared;
use atelier_domain::bus::{self, AmqpUrl, Topology};
pub use error::EventsError;
use handler::Handler;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs event processing with this build's handlers ([`handlers::all`]) until shutdown.
pub async fn run(shared: Arc<Shared>) -> Result<(), AppError> {
    let all = handlers::all(&shared);
    run_with(shared, all).await
}

/// Runs event processing with `handlers` until the daemon's shutdown token fires.
pub async fn run_with(shared: Arc<Shared>, handlers: Vec<Arc<dyn Handler>>) -> Result<(), AppError> {
    let settings = &shared.config.settings;
    let store = atelier_domain::secrets::open(&shared.config);
    let url = AmqpUrl::resolve(&settings.amqp, store.as_ref()).map_err(|e| AppError::Config(e.to_string()))?;
    let specs: Vec<(&str, &[atelier_domain::events::EventType])> =
        handlers.iter().map(|h| (h.name(), h.event_types())).collect();
    let topology = Arc::new(Topology::new(settings, &specs));
    let metrics = shared.metrics.clone();
    metrics.consumers_expected.store(handlers.len() + 1, Relaxed);
    let shutdown = shared.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    while !shutdown.is_cancelled() {
        match session(&shared, &url, &topology, &handlers, &mut first).await {
            Ok(()) => backoff = Duration::from_millis(100),
            // A part stopping because we are shutting down is no failure.
            Err(e) if shutdown.is_cancelled() => tracing::debug!(error = %e, "event processing stopped at shutdown"),
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "event processing interrupted; reconnecting"),
        }
        metrics.broker_connected.store(false, Relaxed);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Ok(())
}

/// One connection's life: declare, run every part, return when one fails,
/// the connection drops, or shutdown (then Ok).
async fn session(
    shared: &Arc<Shared>,
    url: &AmqpUrl,
    topology: &Arc<Topology>,
    handlers: &[Arc<dyn Handler>],
    first: &mut bool,
) -> Result<(), EventsError> {
    let settings = &shared.config.settings;
    let timeout = settings.amqp.publish_timeout;
    let conn = bus::connect(url, &format!("atelierd events {}", topology.ns), settings.amqp.connect_timeout)
        .await
        .map_err(EventsError::Connect)?;
    topology.apply(&conn, timeout).await.map_err(EventsError::Topology)?;
    if !*first {
        shared.metrics.reconnects.fetch_add(1, Relaxed);
    }
    *first = false;
    shared.metrics.broker_connected.store(true, Relaxed);
    tracing::info!(namespace = %topology.ns, handlers = handlers.len(), "connected to RabbitMQ; processing events");

    let stop = shared.shutdown.child_token();
    let mut parts: JoinSet<Result<(), EventsError>> = JoinSet::new();
    // A handle on each channel, closed before the connection: a channel whose
    // last handle drops closes itself later, and when the connection is closing
    // by then lapin logs that at ERROR on every clean stop.
    let mut channels = Vec::new();
    if settings.amqp.relay {
        let ch = bus::confirm_channel(&conn, timeout).await.map_err(EventsError::Channel)?;
        channels.push(ch.clone());
        parts.spawn(relay::run(shared.clone(), topology.clone(), ch, stop.clone()));
    }
    for h in handlers {
        let ch = bus::confirm_channel(&conn, timeout).await.map_err(EventsError::Channel)?;
        channels.push(ch.clone());
        parts.spawn(consumer::run(shared.clone(), topology.clone(), h.clone(), ch, stop.clone()));
    }
    let ch = bus::confirm_channel(&conn, timeout).await.map_err(EventsError::Channel)?;
    channels.push(ch.clone());
    parts.spawn(dead_letters::run(shared.clone(), topology.clone(), ch, stop.clone()));

    let outcome = loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break Ok(()),
            Some(done) = parts.join_next() => break Err(match done {
                Ok(Ok(())) => EventsError::PartStopped,
                Ok(Err(e)) => e,
                Err(e) => EventsError::PartPanicked(e),
            }),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if !conn.status().connected() {
                    break Err(EventsError::ConnectionLost);
                }
            }
        }
    };
    // Stop taking work; let in-flight deliveries finish (App::stop bounds this
    // with daemon.shutdown_timeout).
    stop.cancel();
    while parts.join_next().await.is_some() {}
    for ch in channels.iter().filter(|ch| ch.status().connected()) {
        let _ = tokio::time::timeout(timeout, ch.close(200, "OK".into())).await;
    }
    let _ = tokio::time::timeout(timeout, conn.close(200, "OK".into())).await;
    outcome
}

/// Waits until the database answers, with backoff; false when cancelled first.
pub(crate) async fn wait_for_database(shared: &Shared, cancel: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        if shared.db.ping().await.is_ok() {
            return true;
        }
        tracing::warn!(retry_in = ?delay, "the database does not answer; consumption paused");
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
