//! The `production` handler: `sale.created` → the sale's production order with
//! the business's default steps when any line's product requires production
//! (DOMAIN.md, phase A). A normal sale is ignored, and still recorded as
//! processed so a replay costs one lookup.

use super::{tenant, unexpected};
use crate::events::handler::{Handler, HandlerError, Outcome};
use atelier_domain::bus::handlers::{self as registry, HandlerBinding};
use atelier_domain::events::{Envelope, Event, Origin};
use atelier_domain::store::production::{self, ForSale};
use atelier_domain::store::{Db, StoreError, processing};
use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;

/// Its name in the registry (queue, processed records, dead letters).
pub const NAME: &str = registry::PRODUCTION.name;

pub struct Production {
    db: Db,
}

impl Production {
    pub fn new(db: Db) -> Self {
        Production { db }
    }

    async fn run(&self, envelope: &Envelope<Event>, event: &Event) -> Result<Outcome, HandlerError> {
        let Event::SaleCreated(sale) = event else { return Err(unexpected(NAME, event)) };
        let tenant = tenant(envelope)?;
        let origin = Origin::caused_by("atelierd/production", envelope);
        let mut conn = self.db.conn().await?;
        let outcome = conn
            .transaction(async |conn| {
                if !processing::claim(conn, NAME, envelope.id).await? {
                    return Ok::<_, StoreError>(Outcome::Duplicate);
                }
                Ok(match production::create_for_sale_in(conn, tenant, sale.sale_id, &origin).await? {
                    ForSale::Created(order) => {
                        tracing::info!(order_id = order.order.id, order_no = %order.order.order_no, "production order created");
                        Outcome::Applied
                    }
                    // Created by an earlier event for the same sale: nothing to add.
                    ForSale::AlreadyExists(_) => Outcome::Duplicate,
                    ForSale::NotNeeded => Outcome::Ignored,
                })
            })
            .await?;
        Ok(outcome)
    }
}

impl Handler for Production {
    fn binding(&self) -> HandlerBinding {
        registry::PRODUCTION
    }

    fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(self.run(envelope, &envelope.data))
    }
}
