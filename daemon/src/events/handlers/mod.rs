//! The handlers of the business's events (DESIGN.md, "Handlers"), each with
//! its own queue: `production`, `accounting`, `notifications`, `inbound` and
//! the internal `canary`. Each records `(handler, event_id)` with
//! `store::processing::claim` in the same transaction as its effects, so a
//! redelivery, a replay or a second daemon never applies an event twice.
//! [`all`] builds them from what the daemon shares. Each takes its name and
//! bindings from the registry `atelier_domain::bus::handlers` (whose module
//! docs say how to add a handler).

pub mod accounting;
pub mod canary;
pub mod inbound;
pub mod notifications;
pub mod production;
pub mod providers;

use super::handler::{Handler, HandlerError, Outcome};
use crate::state::Shared;
use atelier_domain::events::{Envelope, Event};
use atelier_domain::store::{Db, Tenant, processing};
use std::sync::Arc;

/// Every handler the daemon runs, built from its configuration and database.
pub fn all(shared: &Arc<Shared>) -> Vec<Arc<dyn Handler>> {
    let db = shared.db.clone();
    let provider = providers::from_settings(&shared.config.settings.notifications);
    let lease = notifications::lease(&shared.config.settings.notifications);
    vec![
        Arc::new(production::Production::new(db.clone())),
        Arc::new(accounting::Accounting::new(db.clone())),
        Arc::new(notifications::Notifications::new(db.clone(), provider, lease)),
        Arc::new(inbound::Inbound::new(db.clone())),
        Arc::new(canary::Canary::new(db)),
    ]
}

/// The business an event acts for. Business events without one are refused.
pub(crate) fn tenant<D>(envelope: &Envelope<D>) -> Result<Tenant, HandlerError> {
    envelope.business_id.map(Tenant::new).ok_or_else(|| HandlerError::Permanent {
        kind: "no_business",
        reason: format!("{} event {} carries no business_id", envelope.event_type, envelope.id),
    })
}

/// An event the handler's queue should never have received.
pub(crate) fn unexpected(handler: &str, event: &Event) -> HandlerError {
    HandlerError::Permanent {
        kind: "unexpected_event",
        reason: format!("the {handler} handler does not handle {}", event.event_type()),
    }
}

/// Records the event as processed with no other effect (it needed nothing).
pub(crate) async fn claim_only<D>(db: &Db, handler: &str, envelope: &Envelope<D>) -> Result<Outcome, HandlerError> {
    let mut conn = db.conn().await?;
    Ok(if processing::claim(&mut conn, handler, envelope.id).await? { Outcome::Ignored } else { Outcome::Duplicate })
}
