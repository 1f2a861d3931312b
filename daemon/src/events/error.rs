//! [`EventsError`]: why a session of event processing, or one of its parts
//! (the relay, a consumer, the dead-letter ingest), ended. The supervisor
//! (`events::run_with`) logs it and reconnects; it never stops the daemon.

use atelier_domain::bus::BusError;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// RabbitMQ could not be reached.
    #[error(transparent)]
    Connect(BusError),
    /// The topology could not be declared.
    #[error("declaring the topology: {0}")]
    Topology(BusError),
    /// A channel (with publisher confirms) could not be opened.
    #[error(transparent)]
    Channel(BusError),
    /// The prefetch of a consumer's channel could not be set.
    #[error("{0}")]
    Prefetch(lapin::Error),
    /// The broker refused to start a consumer on `queue`.
    #[error("consuming {queue}: {source}")]
    Consume { queue: String, source: lapin::Error },
    /// A consumer's stream failed.
    #[error("consumer of {queue}: {source}")]
    Consumer { queue: String, source: lapin::Error },
    /// A consumer's stream ended (its channel or connection closed).
    #[error("the consumer of {queue} stopped (channel or connection closed)")]
    ConsumerEnded { queue: String },
    /// The relay could not publish (the broker failed).
    #[error("outbox relay: {0}")]
    Relay(BusError),
    /// A part returned without being asked to.
    #[error("a part stopped")]
    PartStopped,
    /// A part panicked.
    #[error("a part panicked: {0}")]
    PartPanicked(tokio::task::JoinError),
    /// The connection closed under the session.
    #[error("the connection to RabbitMQ is no longer open")]
    ConnectionLost,
}
