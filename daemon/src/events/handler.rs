//! The contract between the consumer machinery and the handlers: a handler
//! gives its binding (its name, so its queue `{ns}.q.{name}`, and the event
//! types it is bound to; a standard handler's comes from the registry
//! `atelier_domain::bus::handlers`), and handles one decoded event, saying by its error how the
//! failure must be treated (DESIGN.md, "Failure classes").

use atelier_domain::bus::handlers::HandlerBinding;
use atelier_domain::events::{Envelope, Event, EventType};
use atelier_domain::store::StoreError;
use futures_util::future::BoxFuture;

/// How a failed delivery is treated.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Infrastructure is down (database, broker): pause consumption until it
    /// is back. Never uses up a retry, never dead-letters.
    #[error("transient: {0}")]
    Transient(String),
    /// Worth trying again later (a provider timeout, 5xx, 429): the next
    /// delayed-retry level, then the dead-letter store after `max_retries`.
    #[error("retryable ({kind}): {reason}")]
    Retryable { kind: &'static str, reason: String },
    /// Will never succeed (malformed, unknown version, a business rule
    /// refused): dead-lettered at once with the reason.
    #[error("permanent ({kind}): {reason}")]
    Permanent { kind: &'static str, reason: String },
}

impl HandlerError {
    /// The error kind, part of a dead letter's fingerprint (handler + kind).
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::Transient(_) => "transient",
            HandlerError::Retryable { kind, .. } | HandlerError::Permanent { kind, .. } => kind,
        }
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => HandlerError::Transient(m),
            StoreError::Database(e) => HandlerError::Retryable { kind: "database", reason: e.to_string() },
            StoreError::NotFound(what) => {
                HandlerError::Permanent { kind: "not_found", reason: format!("{what} not found") }
            }
            StoreError::Refused(rule) => HandlerError::Permanent { kind: "rule", reason: rule.to_string() },
            other => HandlerError::Permanent { kind: "invalid", reason: other.to_string() },
        }
    }
}

/// What a successful delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The effects were applied (and committed with the processed record).
    Applied,
    /// This handler had already processed the event: nothing was applied.
    Duplicate,
    /// The event needs nothing from this handler (a normal sale for `production`).
    Ignored,
}

/// One handler: its own queue, its bindings, its reaction.
pub trait Handler: Send + Sync + 'static {
    /// The handler's name and the event types its queue is bound to: a
    /// standard handler returns its entry of the registry
    /// (`atelier_domain::bus::handlers`); a test's handler, its own.
    fn binding(&self) -> HandlerBinding;

    /// The handler's name: `production`, `accounting`, `notifications`, `inbound`, `canary`.
    fn name(&self) -> &'static str {
        self.binding().name
    }

    /// The event types its queue is bound to.
    fn event_types(&self) -> &'static [EventType] {
        self.binding().event_types
    }

    /// Handles one event, its typed payload in `envelope.data`. Effects
    /// commit together with the record of `(self.name(), envelope.id)` in
    /// `processed_events`.
    fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>>;
}
