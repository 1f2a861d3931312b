//! Inbound social messages (DOMAIN.md, phase D): the sender's phone finds or
//! creates the customer, the message is linked to it, order intent opens a
//! lead, and a confirmation from a customer the business already knew opens a
//! draft sale (never a final one). Everything runs inside the caller's
//! transaction, which also records the event as processed.

use super::schema::{customers, leads, social_messages};
use super::{Conn, StoreError, Tenant, sales};
use crate::rules::intent::{self, InboundActions};
use crate::rules::notifications::normalize_phone;
use crate::rules::sale::Channel;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// The customer with `phone` (already normalized), created when the business
/// has none. Returns its id and whether it existed before. WhatsApp sends
/// numbers without the `+` staff usually type, so `+15551234567` and
/// `15551234567` find the same customer (should both exist, always the same one).
pub async fn find_or_create_customer(conn: &mut Conn, tenant: Tenant, phone: &str) -> Result<(i64, bool), StoreError> {
    let bare = phone.trim_start_matches('+');
    let forms = [format!("+{bare}"), bare.to_owned()];
    let found: Option<i64> = customers::table
        .filter(customers::business_id.eq(tenant.business_id).and(customers::phone.eq_any(&forms)))
        .order(customers::phone.asc())
        .select(customers::id)
        .first(conn)
        .await
        .optional()?;
    if let Some(id) = found {
        return Ok((id, true));
    }
    let by_phone = customers::business_id.eq(tenant.business_id).and(customers::phone.eq(phone));
    let inserted: Option<i64> = diesel::insert_into(customers::table)
        .values((customers::business_id.eq(tenant.business_id), customers::phone.eq(phone)))
        .on_conflict((customers::business_id, customers::phone))
        .do_nothing()
        .returning(customers::id)
        .get_result(conn)
        .await
        .optional()?;
    match inserted {
        Some(id) => Ok((id, false)),
        // Another message from the same phone created it a moment ago: it was
        // not known before this message either.
        None => Ok((customers::table.filter(by_phone).select(customers::id).first(conn).await?, false)),
    }
}

/// An inbound message as the `social.message.received` event carries it.
#[derive(Debug, Clone)]
pub struct InboundMessage<'a> {
    pub message_id: i64,
    pub channel_type: &'a str,
    pub phone: Option<&'a str>,
    pub text: &'a str,
}

/// What processing one inbound message did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    /// `None`: the message has no usable phone, nothing was done.
    pub customer_id: Option<i64>,
    pub customer_created: bool,
    pub lead_id: Option<i64>,
    pub draft_sale_id: Option<i64>,
}

/// Applies the inbound rules to one stored message, inside the caller's
/// transaction. The message must be an inbound message of the business.
pub async fn process_in(conn: &mut Conn, tenant: Tenant, msg: &InboundMessage<'_>) -> Result<Processed, StoreError> {
    let channel = Channel::parse(msg.channel_type)
        .ok_or_else(|| StoreError::invalid("channel_type", format!("'{}' is not a channel", msg.channel_type)))?;
    let stored: i64 = social_messages::table
        .filter(
            social_messages::business_id
                .eq(tenant.business_id)
                .and(social_messages::id.eq(msg.message_id))
                .and(social_messages::direction.eq("inbound")),
        )
        .count()
        .get_result(conn)
        .await?;
    if stored == 0 {
        return Err(StoreError::NotFound("inbound message"));
    }
    let Some(phone) = msg.phone.and_then(normalize_phone) else {
        return Ok(Processed::default());
    };
    let (customer_id, known) = find_or_create_customer(conn, tenant, &phone).await?;
    diesel::update(
        social_messages::table
            .filter(social_messages::business_id.eq(tenant.business_id).and(social_messages::id.eq(msg.message_id))),
    )
    .set((social_messages::customer_id.eq(customer_id), social_messages::updated_at.eq(Utc::now())))
    .execute(conn)
    .await?;
    let InboundActions { create_lead, create_draft_sale } = intent::inbound_actions(intent::detect(msg.text), known);
    let mut done = Processed { customer_id: Some(customer_id), customer_created: !known, ..Default::default() };
    if create_lead {
        done.lead_id = diesel::insert_into(leads::table)
            .values((
                leads::business_id.eq(tenant.business_id),
                leads::customer_id.eq(customer_id),
                leads::message_id.eq(msg.message_id),
                leads::channel_type.eq(msg.channel_type),
            ))
            .on_conflict(leads::message_id)
            .do_nothing()
            .returning(leads::id)
            .get_result(conn)
            .await
            .optional()?;
    }
    if create_draft_sale {
        let sale = sales::create_chat_draft_in(conn, tenant, customer_id, channel, msg.text).await?;
        done.draft_sale_id = Some(sale.id);
    }
    Ok(done)
}
