//! The `notifications` handler: `sale.created`, `production.created`,
//! `production.completed`, `payment.received` and `order.ready` → one message
//! to the sale's customer over the sale's channel, from the business's
//! template (or the default), at most one per (event type, reference,
//! recipient), its status tracked in `social_messages` (DOMAIN.md, phase D).
//!
//! The send cannot share a transaction with the database, so it is split:
//! 1. `begin_send` commits the attempt: the message row (`pending`), one more
//!    attempt counted, under the row's lock. A message already `sent` (or
//!    later) is never sent again; one whose attempt began less than a lease
//!    ago and has not reported is in flight elsewhere: this delivery retries
//!    later.
//! 2. The provider is called with no transaction or connection held.
//! 3. Its answer is committed: `sent` with the provider's id together with the
//!    `(notifications, event_id)` claim; or the error (`pending` to retry,
//!    `failed` when refused for good) without the claim.
//!
//! The window: if the process dies, or the database is unreachable, between
//! the provider's acceptance and the commit of step 3, the row stays
//! `pending` with no error and the event is not claimed. The broker redelivers
//! it; `begin_send` treats the attempt as in flight until its lease (twice the
//! provider timeout) is over, then sends again: the customer may receive that
//! message twice. The Cloud API offers no idempotency key, so the window can
//! only be kept short (one local commit, retried briefly), not closed. Once
//! step 3 has committed, no redelivery or replay sends again.

use super::providers::{Outbound, Provider, SendError};
use super::{claim_only, tenant, unexpected};
use crate::events::handler::{Handler, HandlerError, Outcome};
use atelier_domain::bus::handlers::{self as registry, HandlerBinding};
use atelier_domain::config::NotificationSettings;
use atelier_domain::events::{Envelope, Event};
use atelier_domain::rules::notifications::{self, MessageStatus};
use atelier_domain::store::notifications::{self as store, Begun, NewNotification};
use atelier_domain::store::{Db, StoreError, Tenant, processing};
use diesel_async::AsyncConnection;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// Its name in the registry (queue, processed records, dead letters).
pub const NAME: &str = registry::NOTIFICATIONS.name;

/// How long an attempt that has not reported counts as in flight: longer
/// than any send can take (the provider timeout), with margin.
pub fn lease(settings: &NotificationSettings) -> Duration {
    settings.timeout.saturating_mul(2)
}

pub struct Notifications {
    db: Db,
    provider: Arc<dyn Provider>,
    lease: Duration,
}

impl Notifications {
    pub fn new(db: Db, provider: Arc<dyn Provider>, lease: Duration) -> Self {
        Notifications { db, provider, lease }
    }

    async fn run(&self, envelope: &Envelope<Event>, event: &Event) -> Result<Outcome, HandlerError> {
        let Some(notice) = notifications::notice(event) else { return Err(unexpected(NAME, event)) };
        let tenant = tenant(envelope)?;
        let mut conn = self.db.conn().await?;
        if processing::is_processed(&mut conn, NAME, envelope.id).await? {
            return Ok(Outcome::Duplicate);
        }
        let Some(sale_id) = notice.sale_id else {
            drop(conn);
            return claim_only(&self.db, NAME, envelope).await;
        };
        let recipient = store::recipient(&mut conn, tenant, sale_id).await?;
        let (Some(phone), Some(channel_type)) =
            (recipient.phone.as_deref(), notifications::messaging_channel(recipient.channel))
        else {
            // No customer, no phone, or a sale made where no chat exists (web,
            // mobile, walk-in): nobody to message.
            drop(conn);
            return claim_only(&self.db, NAME, envelope).await;
        };
        let event_type = notice.event_type.as_str();
        let template = store::template(&mut conn, tenant, event_type).await?;
        let body =
            notice.clone().with_sale(&recipient.invoice_no, recipient.total).render(template.as_deref()).map_err(
                |e| HandlerError::Permanent { kind: "template", reason: format!("{event_type} template: {e}") },
            )?;
        let account = store::channel(&mut conn, tenant, channel_type).await?;
        let new = NewNotification {
            event_type,
            reference: &notice.reference,
            phone,
            customer_id: recipient.customer_id,
            channel_id: account.as_ref().map(|a| a.id),
            channel_type: self.provider.recorded_channel_type(channel_type),
            body: &body,
        };
        let message = match store::begin_send(&mut conn, tenant, &new, self.lease).await? {
            Begun::Send(m) => m,
            Begun::AlreadySent(_) => {
                processing::claim(&mut conn, NAME, envelope.id).await?;
                return Ok(Outcome::Duplicate);
            }
            Begun::InFlight(m) => {
                return Err(HandlerError::Retryable {
                    kind: "in_flight",
                    reason: format!("message {} is being sent by another delivery", m.id),
                });
            }
        };
        // No connection is held while the provider answers.
        drop(conn);
        let sent =
            self.provider.send(Outbound { channel_type, account: account.as_ref(), to: phone, body: &body }).await;
        match sent {
            Ok(accepted) => {
                let id = accepted.provider_message_id.as_deref();
                let claimed = self.commit_sent(tenant, message.id, id, envelope).await?;
                tracing::info!(message_id = message.id, provider = self.provider.name(), "notification sent");
                Ok(if claimed { Outcome::Applied } else { Outcome::Duplicate })
            }
            Err(SendError::Retryable { kind, reason }) => {
                self.record_failure(tenant, message.id, MessageStatus::Pending, &reason).await;
                Err(HandlerError::Retryable { kind, reason })
            }
            Err(SendError::Permanent { kind, reason }) => {
                self.record_failure(tenant, message.id, MessageStatus::Failed, &reason).await;
                Err(HandlerError::Permanent { kind, reason })
            }
        }
    }

    /// Step 3 on success: `sent` and the claim, in one transaction, retried
    /// briefly so a database blip does not open the double-send window.
    async fn commit_sent(
        &self,
        tenant: Tenant,
        message_id: i64,
        provider_message_id: Option<&str>,
        envelope: &Envelope<Event>,
    ) -> Result<bool, HandlerError> {
        let mut last = None;
        for pause in [Duration::ZERO, Duration::from_millis(250), Duration::from_secs(1)] {
            tokio::time::sleep(pause).await;
            let attempt = async {
                let mut conn = self.db.conn().await?;
                conn.transaction(async |conn| {
                    store::mark_sent_in(conn, tenant, message_id, provider_message_id).await?;
                    processing::claim(conn, NAME, envelope.id).await
                })
                .await
            };
            match attempt.await {
                Ok(claimed) => return Ok(claimed),
                Err(e @ StoreError::Unavailable(_)) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        let e = last.unwrap_or(StoreError::Unavailable("no attempt".into()));
        tracing::error!(
            message_id,
            error = %e,
            "the provider accepted the message but recording it failed: a redelivery may send it again"
        );
        Err(e.into())
    }

    /// Records a failed attempt; failing to record it only loses the reason.
    async fn record_failure(&self, tenant: Tenant, message_id: i64, status: MessageStatus, reason: &str) {
        let recorded = async {
            let mut conn = self.db.conn().await?;
            store::mark_failed(&mut conn, tenant, message_id, status, reason).await
        };
        if let Err(e) = recorded.await {
            tracing::warn!(message_id, error = %e, "cannot record the failed send");
        }
    }
}

impl Handler for Notifications {
    fn binding(&self) -> HandlerBinding {
        registry::NOTIFICATIONS
    }

    fn handle<'a>(&'a self, envelope: &'a Envelope<Event>) -> BoxFuture<'a, Result<Outcome, HandlerError>> {
        Box::pin(self.run(envelope, &envelope.data))
    }
}
