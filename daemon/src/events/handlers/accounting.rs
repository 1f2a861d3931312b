//! The `accounting` handler: `production.step.completed` → the step's expense
//! (a debit in "Production Cost" referencing the step), booked once, when its
//! cost is above 0 (DOMAIN.md, phase C).

use super::{tenant, unexpected};
use crate::events::handler::{Handler, HandlerError, Outcome};
use atelier_domain::bus::handlers::{self as registry, HandlerBinding};
use atelier_domain::events::{Envelope, Event};
use atelier_domain::rules::costing;
use atelier_domain::rules::production::expense_due;
use atelier_domain::store::{Db, StoreError, accounting, processing, production};
use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;

/// Its name in the registry (queue, processed records, dead letters).
pub const NAME: &str = registry::ACCOUNTING.name;

pub struct Accounting {
    db: Db,
}

impl Accounting {
    pub fn new(db: Db) -> Self {
        Accounting { db }
    }

    async fn run(&self, envelope: &Envelope<Event>, event: &Event) -> Result<Outcome, HandlerError> {
        let Event::StepCompleted(done) = event else { return Err(unexpected(NAME, event)) };
        let tenant = tenant(envelope)?;
        let mut conn = self.db.conn().await?;
        let outcome = conn
            .transaction(async |conn| {
                if !processing::claim(conn, NAME, envelope.id).await? {
                    return Ok::<_, StoreError>(Outcome::Duplicate);
                }
                // The cost comes from the step's row, not the payload: a step's
                // cost is frozen once it completes (store::production refuses
                // to change it), so the row is the booked truth, and reading it
                // also proves the step is the event's business's and completed.
                let step = production::step(conn, tenant, done.step_id, None).await?;
                expense_due(step.id, step.state().status)?;
                let Some(expense) = costing::step_expense(step.id, &step.name, &done.order_no, step.cost_minor) else {
                    return Ok(Outcome::Ignored);
                };
                Ok(match accounting::book_step_expense_in(conn, tenant, &expense).await? {
                    Some(tx) => {
                        tracing::info!(transaction_id = tx.id, step_id = step.id, "step expense booked");
                        Outcome::Applied
                    }
                    // Booked by an earlier event for the same step (its reference is unique).
                    None => Outcome::Duplicate,
                })
            })
            .await?;
        Ok(outcome)
    }
}

impl Handler for Accounting {
    fn binding(&self) -> HandlerBinding {
        registry::ACCOUNTING
    }

    fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(self.run(envelope, &envelope.data))
    }
}
