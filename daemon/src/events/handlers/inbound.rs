//! The `inbound` handler: `social.message.received` → the sender's customer
//! (found or created by phone) linked to the message, a lead on order intent,
//! a draft sale on a confirmation from a customer the business already knew
//! (DOMAIN.md, phase D; the rules are `store::inbound`'s and `rules::intent`'s).

use super::{tenant, unexpected};
use crate::events::handler::{Handler, HandlerError, Outcome};
use atelier_domain::bus::handlers::{self as registry, HandlerBinding};
use atelier_domain::events::{Envelope, Event};
use atelier_domain::store::inbound::{self, InboundMessage};
use atelier_domain::store::{Db, StoreError, processing};
use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;

/// Its name in the registry (queue, processed records, dead letters).
pub const NAME: &str = registry::INBOUND.name;

pub struct Inbound {
    db: Db,
}

impl Inbound {
    pub fn new(db: Db) -> Self {
        Inbound { db }
    }

    async fn run(&self, envelope: &Envelope<Event>, event: &Event) -> Result<Outcome, HandlerError> {
        let Event::SocialMessageReceived(m) = event else { return Err(unexpected(NAME, event)) };
        let tenant = tenant(envelope)?;
        let message = InboundMessage {
            message_id: m.message_id,
            channel_type: &m.channel_type,
            phone: m.phone.as_deref(),
            text: &m.text,
        };
        let mut conn = self.db.conn().await?;
        let outcome = conn
            .transaction(async |conn| {
                if !processing::claim(conn, NAME, envelope.id).await? {
                    return Ok::<_, StoreError>(Outcome::Duplicate);
                }
                let done = inbound::process_in(conn, tenant, &message).await?;
                if done.customer_id.is_none() {
                    return Ok(Outcome::Ignored);
                }
                // Ids only: the phone and the text are personal data.
                tracing::info!(
                    message_id = m.message_id,
                    customer_id = done.customer_id,
                    customer_created = done.customer_created,
                    lead_id = done.lead_id,
                    draft_sale_id = done.draft_sale_id,
                    "inbound message processed"
                );
                Ok(Outcome::Applied)
            })
            .await?;
        Ok(outcome)
    }
}

impl Handler for Inbound {
    fn binding(&self) -> HandlerBinding {
        registry::INBOUND
    }

    fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(self.run(envelope, &envelope.data))
    }
}
