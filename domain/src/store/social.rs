//! Social channels: each business's WhatsApp/Facebook/Instagram/Telegram
//! accounts (credentials and webhook secrets stored, never returned), inbound
//! messages stored once per provider message id with their
//! `social.message.received` event in the same transaction, and the messages
//! and leads staff read.

use super::schema::{leads, social_channels, social_messages};
use super::{Conn, Page, StoreError, Tenant, outbox};
use crate::events::{Event, Origin, SocialMessageReceived};
use crate::rules::webhook::{CHANNEL_TYPES, InboundMessage, same_secret};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

/// A channel with its secrets: for the webhook check only, never serialized.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = social_channels, check_for_backend(diesel::pg::Pg))]
pub struct Channel {
    pub id: i64,
    pub business_id: i64,
    pub channel_type: String,
    pub account_id: String,
    pub display_number: Option<String>,
    pub access_token: Option<String>,
    pub webhook_secret: String,
    pub webhook_secret_previous: Option<String>,
    pub verify_token: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({} {} {})", self.id, self.channel_type, self.account_id)
    }
}

/// What the API shows of a channel: whether secrets are set, never their values.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelView {
    pub id: i64,
    pub channel_type: String,
    pub account_id: String,
    pub display_number: Option<String>,
    pub active: bool,
    pub has_access_token: bool,
    pub has_verify_token: bool,
    /// A previous webhook secret is still accepted (a rotation is under way).
    pub rotating_webhook_secret: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Channel> for ChannelView {
    fn from(c: &Channel) -> Self {
        ChannelView {
            id: c.id,
            channel_type: c.channel_type.clone(),
            account_id: c.account_id.clone(),
            display_number: c.display_number.clone(),
            active: c.active,
            has_access_token: c.access_token.is_some(),
            has_verify_token: c.verify_token.is_some(),
            rotating_webhook_secret: c.webhook_secret_previous.is_some(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A channel's configuration as an admin sends it. `None` keeps what is stored.
#[derive(Clone, Default)]
pub struct ChannelConfig {
    pub channel_type: String,
    pub account_id: String,
    pub display_number: Option<String>,
    pub access_token: Option<String>,
    /// A new secret: the current one becomes the previous (still accepted)
    /// until the rotation is finished.
    pub webhook_secret: Option<String>,
    pub verify_token: Option<String>,
    pub active: Option<bool>,
    /// Drop the previous webhook secret (the provider uses the new one).
    pub finish_rotation: bool,
}

pub fn check_channel_type(t: &str) -> Result<(), StoreError> {
    if CHANNEL_TYPES.contains(&t) {
        Ok(())
    } else {
        Err(StoreError::invalid("channel_type", "expected whatsapp, facebook, instagram or telegram"))
    }
}

pub async fn list_channels(conn: &mut Conn, tenant: Tenant) -> Result<Vec<ChannelView>, StoreError> {
    let rows: Vec<Channel> = social_channels::table
        .filter(social_channels::business_id.eq(tenant.business_id))
        .order(social_channels::id.asc())
        .select(Channel::as_select())
        .load(conn)
        .await?;
    Ok(rows.iter().map(ChannelView::from).collect())
}

/// Every business's channels (or one business's), for operators: the
/// business's id and name with each channel's view, by business then channel.
pub async fn channels_of_every_business(
    conn: &mut Conn,
    business: Option<i64>,
) -> Result<Vec<(i64, String, ChannelView)>, StoreError> {
    use super::schema::businesses;
    let mut q = social_channels::table.select(Channel::as_select()).into_boxed();
    if let Some(b) = business {
        q = q.filter(social_channels::business_id.eq(b));
    }
    let rows: Vec<Channel> =
        q.order((social_channels::business_id.asc(), social_channels::id.asc())).load(conn).await?;
    let ids: Vec<i64> = rows.iter().map(|c| c.business_id).collect();
    let names: std::collections::HashMap<i64, String> = businesses::table
        .filter(businesses::id.eq_any(&ids))
        .select((businesses::id, businesses::name))
        .load::<(i64, String)>(conn)
        .await?
        .into_iter()
        .collect();
    Ok(rows.iter().map(|c| (c.business_id, names.get(&c.business_id).cloned().unwrap_or_default(), c.into())).collect())
}

/// Creates or updates the channel (business, type, account id).
pub async fn configure(conn: &mut Conn, tenant: Tenant, cfg: ChannelConfig) -> Result<ChannelView, StoreError> {
    check_channel_type(&cfg.channel_type)?;
    let account = cfg.account_id.trim().to_owned();
    if account.is_empty() || account.len() > 100 {
        return Err(StoreError::invalid("account_id", "must be 1 to 100 characters"));
    }
    if let Some(s) = &cfg.webhook_secret
        && (s.len() < 16 || s.len() > 512)
    {
        return Err(StoreError::invalid("webhook_secret", "must be 16 to 512 characters"));
    }
    conn.transaction(async |conn| {
        let existing: Option<Channel> = social_channels::table
            .filter(
                social_channels::business_id
                    .eq(tenant.business_id)
                    .and(social_channels::channel_type.eq(&cfg.channel_type))
                    .and(social_channels::account_id.eq(&account)),
            )
            .select(Channel::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let now = Utc::now();
        let saved: Channel = match existing {
            None => {
                let secret = cfg
                    .webhook_secret
                    .clone()
                    .ok_or_else(|| StoreError::invalid("webhook_secret", "required for a new channel"))?;
                diesel::insert_into(social_channels::table)
                    .values((
                        social_channels::business_id.eq(tenant.business_id),
                        social_channels::channel_type.eq(&cfg.channel_type),
                        social_channels::account_id.eq(&account),
                        social_channels::display_number.eq(&cfg.display_number),
                        social_channels::access_token.eq(&cfg.access_token),
                        social_channels::webhook_secret.eq(secret),
                        social_channels::verify_token.eq(&cfg.verify_token),
                        social_channels::active.eq(cfg.active.unwrap_or(true)),
                    ))
                    .returning(Channel::as_returning())
                    .get_result(conn)
                    .await?
            }
            Some(c) => {
                let (secret, previous) = match &cfg.webhook_secret {
                    Some(new) if new != &c.webhook_secret => (new.clone(), Some(c.webhook_secret.clone())),
                    _ => (c.webhook_secret.clone(), c.webhook_secret_previous.clone()),
                };
                let previous = if cfg.finish_rotation { None } else { previous };
                diesel::update(social_channels::table.find(c.id))
                    .set((
                        social_channels::display_number.eq(cfg.display_number.clone().or(c.display_number.clone())),
                        social_channels::access_token.eq(cfg.access_token.clone().or(c.access_token.clone())),
                        social_channels::webhook_secret.eq(secret),
                        social_channels::webhook_secret_previous.eq(previous),
                        social_channels::verify_token.eq(cfg.verify_token.clone().or(c.verify_token.clone())),
                        social_channels::active.eq(cfg.active.unwrap_or(c.active)),
                        social_channels::updated_at.eq(now),
                    ))
                    .returning(Channel::as_returning())
                    .get_result(conn)
                    .await?
            }
        };
        Ok(ChannelView::from(&saved))
    })
    .await
}

/// The active channels of a type in a business, with their secrets (the
/// webhook finds the one whose secret signed the request).
pub async fn channels_for_webhook(
    conn: &mut Conn,
    business_id: i64,
    channel_type: &str,
) -> Result<Vec<Channel>, StoreError> {
    Ok(social_channels::table
        .filter(
            social_channels::business_id
                .eq(business_id)
                .and(social_channels::channel_type.eq(channel_type))
                .and(social_channels::active.eq(true)),
        )
        .order(social_channels::id.asc())
        .select(Channel::as_select())
        .load(conn)
        .await?)
}

/// Whether `token` is the verify token of an active channel of this type (Meta's GET check).
pub async fn verify_token_matches(
    conn: &mut Conn,
    business_id: i64,
    channel_type: &str,
    token: &str,
) -> Result<bool, StoreError> {
    let channels = channels_for_webhook(conn, business_id, channel_type).await?;
    Ok(channels.iter().any(|c| c.verify_token.as_deref().is_some_and(|v| same_secret(v, token))))
}

/// Stores an inbound message once per (channel, provider message id), with
/// its `social.message.received` event in the same transaction. Returns the
/// new message's id, or `None` when the provider sent it before.
pub async fn store_inbound(
    conn: &mut Conn,
    channel: &Channel,
    msg: &InboundMessage,
    origin: &Origin,
) -> Result<Option<i64>, StoreError> {
    conn.transaction(async |conn| {
        let id: Option<i64> = diesel::insert_into(social_messages::table)
            .values((
                social_messages::business_id.eq(channel.business_id),
                social_messages::channel_id.eq(channel.id),
                social_messages::channel_type.eq(&channel.channel_type),
                social_messages::direction.eq("inbound"),
                social_messages::provider_message_id.eq(&msg.provider_message_id),
                social_messages::phone.eq(&msg.from),
                social_messages::body.eq(&msg.text),
                social_messages::status.eq("received"),
            ))
            .on_conflict_do_nothing()
            .returning(social_messages::id)
            .get_result(conn)
            .await
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        let event = Event::SocialMessageReceived(SocialMessageReceived {
            message_id: id,
            channel_id: channel.id,
            channel_type: channel.channel_type.clone(),
            phone: Some(msg.from.clone()),
            text: msg.text.clone(),
            provider_message_id: Some(msg.provider_message_id.clone()),
        });
        outbox::raise(conn, &event, Some(channel.business_id), origin).await?;
        Ok(Some(id))
    })
    .await
}

/// A message in or out, as stored (one type for the API and the notifier).
pub use super::notifications::Message;

pub async fn list_messages(
    conn: &mut Conn,
    tenant: Tenant,
    direction: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Message>, i64), StoreError> {
    let scoped = || {
        let mut q = social_messages::table.filter(social_messages::business_id.eq(tenant.business_id)).into_boxed();
        if let Some(d) = direction {
            q = q.filter(social_messages::direction.eq(d.to_owned()));
        }
        q
    };
    super::page(
        conn,
        scoped,
        |q| q.order((social_messages::created_at.desc(), social_messages::id.desc())),
        Page::new(limit, offset),
    )
    .await
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = leads, check_for_backend(diesel::pg::Pg))]
pub struct Lead {
    pub id: i64,
    pub customer_id: i64,
    pub message_id: i64,
    pub channel_type: String,
    pub status: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn list_leads(
    conn: &mut Conn,
    tenant: Tenant,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Lead>, i64), StoreError> {
    let scoped = || leads::table.filter(leads::business_id.eq(tenant.business_id)).into_boxed();
    super::page(conn, scoped, |q| q.order((leads::created_at.desc(), leads::id.desc())), Page::new(limit, offset)).await
}
