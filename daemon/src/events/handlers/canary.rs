//! The internal `canary` handler: `system.ping` → its round trip recorded in
//! `canary_pings` (store::canary), so a health check or a deploy gate can
//! raise a ping through the outbox and wait for its row. A ping belongs to no
//! business: it needs no business_id.

use super::unexpected;
use crate::events::handler::{Handler, HandlerError, Outcome};
use atelier_domain::bus::handlers::{self as registry, HandlerBinding};
use atelier_domain::events::{Envelope, Event};
use atelier_domain::store::{Db, StoreError, canary, processing};
use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;

/// Its name in the registry (queue, processed records, dead letters).
pub const NAME: &str = registry::CANARY.name;

pub struct Canary {
    db: Db,
}

impl Canary {
    pub fn new(db: Db) -> Self {
        Canary { db }
    }

    async fn run(&self, envelope: &Envelope<Event>, event: &Event) -> Result<Outcome, HandlerError> {
        let Event::SystemPing(ping) = event else { return Err(unexpected(NAME, event)) };
        if crate::version::fault() == Some(crate::version::Fault::DropCanaries) {
            // Test fault: this atelierd takes pings and records nothing.
            return Ok(Outcome::Applied);
        }
        let instance = crate::version::instance();
        let mut conn = self.db.conn().await?;
        let outcome = conn
            .transaction(async |conn| {
                if !processing::claim(conn, NAME, envelope.id).await? {
                    return Ok::<_, StoreError>(Outcome::Duplicate);
                }
                let recorded = canary::record_in(
                    conn,
                    ping.ping_id,
                    envelope.id,
                    &envelope.producer,
                    envelope.occurred_at,
                    &instance,
                )
                .await?;
                Ok(if recorded { Outcome::Applied } else { Outcome::Duplicate })
            })
            .await?;
        Ok(outcome)
    }
}

impl Handler for Canary {
    fn binding(&self) -> HandlerBinding {
        registry::CANARY
    }

    fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(self.run(envelope, &envelope.data))
    }
}
