//! The internal `canary` handler: `system.ping` → its round trip recorded in
//! `canary_pings` (store::canary), so a health check or a deploy gate can
//! raise a ping through the outbox and wait for its row. A ping belongs to no
//! business: it needs no business_id.

use super::unexpected;
use crate::events::handler::{Handler, HandlerError, Outcome};
use atelier_domain::events::{Envelope, Event, EventType};
use atelier_domain::store::{Db, StoreError, canary, processing};
use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;

pub const NAME: &str = "canary";

pub struct Canary {
    db: Db,
}

impl Canary {
    pub fn new(db: Db) -> Self {
        Canary { db }
    }

    async fn run(&self, envelope: &Envelope<Event>, event: &Event) -> Result<Outcome, HandlerError> {
        let Event::SystemPing(ping) = event else { return Err(unexpected(NAME, event)) };
        let mut conn = self.db.conn().await?;
        let outcome = conn
            .transaction(async |conn| {
                if !processing::claim(conn, NAME, envelope.id).await? {
                    return Ok::<_, StoreError>(Outcome::Duplicate);
                }
                let recorded =
                    canary::record_in(conn, ping.ping_id, envelope.id, &envelope.producer, envelope.occurred_at)
                        .await?;
                Ok(if recorded { Outcome::Applied } else { Outcome::Duplicate })
            })
            .await?;
        Ok(outcome)
    }
}

impl Handler for Canary {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [EventType] {
        &[EventType::SystemPing]
    }

    fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(self.run(envelope, &envelope.data))
    }
}
