//! Outbound notifications in `social_messages`: whom a sale's notifications
//! go to, the business's templates and channel credentials, and the life of
//! one message (pending → sent → delivered → read, or failed), at most one per
//! (event type, reference, recipient). The send itself happens outside any
//! transaction, between [`begin_send`] and [`mark_sent_in`] / [`mark_failed`].

use super::schema::{customers, notification_templates, sales, social_channels, social_messages};
use super::{Conn, StoreError, Tenant};
use crate::rules::money::{Currency, Money};
use crate::rules::notifications::{self, MessageStatus, SendDecision};
use crate::rules::sale::Channel;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use std::time::Duration;

/// Where a sale's notifications go.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub sale_id: i64,
    pub invoice_no: String,
    pub total: Money,
    pub channel: Channel,
    pub customer_id: Option<i64>,
    /// The customer's phone; `None` when the sale has no customer or it has no phone.
    pub phone: Option<String>,
}

/// The recipient of the notifications of a sale of the tenant.
pub async fn recipient(conn: &mut Conn, tenant: Tenant, sale_id: i64) -> Result<Recipient, StoreError> {
    let (invoice_no, total_minor, currency, channel, customer_id, phone): (
        String,
        i64,
        String,
        String,
        Option<i64>,
        Option<String>,
    ) = sales::table
        .left_join(
            customers::table
                .on(customers::id.nullable().eq(sales::customer_id).and(customers::business_id.eq(sales::business_id))),
        )
        .filter(sales::business_id.eq(tenant.business_id).and(sales::id.eq(sale_id)))
        .select((
            sales::invoice_no,
            sales::total_minor,
            sales::currency,
            sales::channel,
            sales::customer_id,
            customers::phone.nullable(),
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("sale"))?;
    let currency: Currency = currency.parse()?;
    let channel = Channel::parse(&channel)
        .ok_or_else(|| StoreError::invalid("channel", format!("sale {sale_id} has an unknown channel")))?;
    Ok(Recipient { sale_id, invoice_no, total: Money::new(total_minor, currency), channel, customer_id, phone })
}

/// The business's active template for `event_type`, if it configured one.
pub async fn template(conn: &mut Conn, tenant: Tenant, event_type: &str) -> Result<Option<String>, StoreError> {
    Ok(notification_templates::table
        .filter(
            notification_templates::business_id
                .eq(tenant.business_id)
                .and(notification_templates::event_type.eq(event_type))
                .and(notification_templates::active.eq(true)),
        )
        .select(notification_templates::body)
        .first(conn)
        .await
        .optional()?)
}

/// A business's channel account with its credentials. The token never shows
/// in Debug output.
#[derive(Clone)]
pub struct ChannelAccount {
    pub id: i64,
    pub channel_type: String,
    /// The provider's account: WhatsApp's phone number id.
    pub account_id: String,
    access_token: Option<String>,
}

impl ChannelAccount {
    /// The API token: hand it only to the provider's request.
    pub fn access_token(&self) -> Option<&str> {
        self.access_token.as_deref().filter(|t| !t.is_empty())
    }
}

impl std::fmt::Debug for ChannelAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelAccount")
            .field("id", &self.id)
            .field("channel_type", &self.channel_type)
            .field("account_id", &self.account_id)
            .field("access_token", &self.access_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The business's active account of `channel_type` (the oldest, if several).
pub async fn channel(
    conn: &mut Conn,
    tenant: Tenant,
    channel_type: &str,
) -> Result<Option<ChannelAccount>, StoreError> {
    let row: Option<(i64, String, String, Option<String>)> = social_channels::table
        .filter(
            social_channels::business_id
                .eq(tenant.business_id)
                .and(social_channels::channel_type.eq(channel_type))
                .and(social_channels::active.eq(true)),
        )
        .order(social_channels::id.asc())
        .select((
            social_channels::id,
            social_channels::channel_type,
            social_channels::account_id,
            social_channels::access_token,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(id, channel_type, account_id, access_token)| ChannelAccount {
        id,
        channel_type,
        account_id,
        access_token,
    }))
}

/// An outbound (or inbound) message as stored.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = social_messages, check_for_backend(diesel::pg::Pg))]
pub struct Message {
    pub id: i64,
    #[serde(skip)]
    pub business_id: i64,
    pub channel_id: Option<i64>,
    pub channel_type: String,
    pub direction: String,
    pub provider_message_id: Option<String>,
    pub customer_id: Option<i64>,
    pub phone: Option<String>,
    pub body: String,
    pub status: String,
    pub event_type: Option<String>,
    pub reference: Option<String>,
    pub error: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Message {
    pub fn status(&self) -> MessageStatus {
        MessageStatus::parse(&self.status).unwrap_or(MessageStatus::Pending)
    }
}

/// The notification a delivery wants to send.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub event_type: &'a str,
    pub reference: &'a str,
    pub phone: &'a str,
    pub customer_id: Option<i64>,
    pub channel_id: Option<i64>,
    /// The channel type recorded: the provider's (`log` for the log provider).
    pub channel_type: &'a str,
    pub body: &'a str,
}

/// What [`begin_send`] found.
#[derive(Debug, Clone)]
pub enum Begun {
    /// The attempt is recorded (attempts + 1): send now, then report.
    Send(Message),
    /// The provider already accepted this message.
    AlreadySent(Message),
    /// Another delivery is sending it now (see `rules::notifications::send_decision`).
    InFlight(Message),
}

/// Records the start of an attempt, in its own short transaction: creates the
/// message `pending` on first need, or takes the existing one (the unique
/// index allows one per event type, reference and phone) and decides, under
/// its row lock, whether this delivery may send it.
pub async fn begin_send(
    conn: &mut Conn,
    tenant: Tenant,
    new: &NewNotification<'_>,
    lease: Duration,
) -> Result<Begun, StoreError> {
    conn.transaction(async |conn| {
        diesel::insert_into(social_messages::table)
            .values((
                social_messages::business_id.eq(tenant.business_id),
                social_messages::channel_id.eq(new.channel_id),
                social_messages::channel_type.eq(new.channel_type),
                social_messages::direction.eq("outbound"),
                social_messages::customer_id.eq(new.customer_id),
                social_messages::phone.eq(new.phone),
                social_messages::body.eq(new.body),
                social_messages::status.eq(MessageStatus::Pending.as_str()),
                social_messages::event_type.eq(new.event_type),
                social_messages::reference.eq(new.reference),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let current: Message = social_messages::table
            .filter(
                social_messages::business_id
                    .eq(tenant.business_id)
                    .and(social_messages::direction.eq("outbound"))
                    .and(social_messages::event_type.eq(new.event_type))
                    .and(social_messages::reference.eq(new.reference))
                    .and(social_messages::phone.eq(new.phone)),
            )
            .select(Message::as_select())
            .for_update()
            .first(conn)
            .await?;
        let now = Utc::now();
        match notifications::send_decision(
            current.status(),
            current.error.is_some(),
            current.attempts,
            current.updated_at,
            now,
            lease,
        ) {
            SendDecision::AlreadySent => Ok(Begun::AlreadySent(current)),
            SendDecision::InFlight => Ok(Begun::InFlight(current)),
            SendDecision::Send => {
                let started: Message = diesel::update(social_messages::table.find(current.id))
                    .set((
                        social_messages::status.eq(MessageStatus::Pending.as_str()),
                        social_messages::attempts.eq(social_messages::attempts + 1),
                        social_messages::error.eq(None::<String>),
                        social_messages::channel_id.eq(new.channel_id),
                        social_messages::channel_type.eq(new.channel_type),
                        social_messages::body.eq(new.body),
                        social_messages::updated_at.eq(now),
                    ))
                    .returning(Message::as_returning())
                    .get_result(conn)
                    .await?;
                Ok(Begun::Send(started))
            }
        }
    })
    .await
}

/// The provider accepted the message: `sent`, with its id. Inside the
/// caller's transaction (with the handler's processed record).
pub async fn mark_sent_in(
    conn: &mut Conn,
    tenant: Tenant,
    message_id: i64,
    provider_message_id: Option<&str>,
) -> Result<(), StoreError> {
    diesel::update(
        social_messages::table
            .filter(social_messages::business_id.eq(tenant.business_id).and(social_messages::id.eq(message_id))),
    )
    .set((
        social_messages::status.eq(MessageStatus::Sent.as_str()),
        social_messages::provider_message_id.eq(provider_message_id),
        social_messages::error.eq(None::<String>),
        social_messages::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The attempt failed: the message stays `pending` (to be retried) or becomes
/// `failed` (refused for good), with the reason. `error` must hold no secret.
pub async fn mark_failed(
    conn: &mut Conn,
    tenant: Tenant,
    message_id: i64,
    status: MessageStatus,
    error: &str,
) -> Result<(), StoreError> {
    let error: String = error.chars().take(1000).collect();
    diesel::update(
        social_messages::table.filter(
            social_messages::business_id
                .eq(tenant.business_id)
                .and(social_messages::id.eq(message_id))
                .and(social_messages::status.eq_any([MessageStatus::Pending.as_str(), MessageStatus::Failed.as_str()])),
        ),
    )
    .set((
        social_messages::status.eq(status.as_str()),
        social_messages::error.eq(error),
        social_messages::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// A provider's report on a message it accepted (`delivered`, `read`,
/// `failed`), applied only when it moves the status forward. Returns whether
/// it changed anything.
pub async fn record_status_report(
    conn: &mut Conn,
    tenant: Tenant,
    provider_message_id: &str,
    reported: MessageStatus,
) -> Result<bool, StoreError> {
    conn.transaction(async |conn| {
        let found: Option<Message> = social_messages::table
            .filter(
                social_messages::business_id
                    .eq(tenant.business_id)
                    .and(social_messages::direction.eq("outbound"))
                    .and(social_messages::provider_message_id.eq(provider_message_id)),
            )
            .select(Message::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some(m) = found else { return Ok(false) };
        if !m.status().advances_to(reported) {
            return Ok(false);
        }
        diesel::update(social_messages::table.find(m.id))
            .set((social_messages::status.eq(reported.as_str()), social_messages::updated_at.eq(Utc::now())))
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// The business's outbound messages of one event type and reference.
pub async fn outbound_for(
    conn: &mut Conn,
    tenant: Tenant,
    event_type: &str,
    reference: &str,
) -> Result<Vec<Message>, StoreError> {
    Ok(social_messages::table
        .filter(
            social_messages::business_id
                .eq(tenant.business_id)
                .and(social_messages::direction.eq("outbound"))
                .and(social_messages::event_type.eq(event_type))
                .and(social_messages::reference.eq(reference)),
        )
        .order(social_messages::id.asc())
        .select(Message::as_select())
        .load(conn)
        .await?)
}
