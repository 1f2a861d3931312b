//! `/social`: the channel webhooks (GET verification with the channel's verify
//! token; POST inbound messages, signature checked before the body is read as
//! JSON; which secret and channel accept a message is `rules::webhook`'s), channel configuration (admins; secrets are stored, never returned),
//! and the messages and leads staff read.
//!
//! The POST answers in milliseconds: it stores each message once (provider
//! message id) with its `social.message.received` event in the outbox; the
//! daemon's inbound handler does the rest.

use super::error::{ApiError, ApiResult, list, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Page, bytes_rejection, paged};
use super::origin;
use crate::state::Shared;
use atelier_domain::rules::limits;
use atelier_domain::rules::webhook::{self, CHANNEL_TYPES};
use atelier_domain::store::StoreError;
use atelier_domain::store::social::{self, ChannelConfig};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

fn channel_type(t: &str) -> Result<&str, ApiError> {
    CHANNEL_TYPES
        .iter()
        .find(|c| **c == t)
        .copied()
        .ok_or_else(|| ApiError::not_found("no such channel type: expected whatsapp, facebook, instagram or telegram"))
}

fn query_map(raw: Option<String>) -> Result<HashMap<String, String>, ApiError> {
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect();
    limits::check_query(q.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|v| ApiError::bad_request("invalid_query", v.to_string()))?;
    Ok(q)
}

/// Why one inbound message cannot be stored (a NUL, an overlong field), so
/// that it is skipped and the rest of the delivery stored.
fn unstorable(m: &webhook::InboundMessage) -> Option<String> {
    let fields = [
        ("account_id", m.account_id.as_deref().unwrap_or(""), 100),
        ("id", m.provider_message_id.as_str(), 200),
        ("from", m.from.as_str(), 64),
        ("text", m.text.as_str(), 4096),
    ];
    fields.iter().find_map(|(name, value, max)| limits::check_text(name, value, *max).err().map(|v| v.to_string()))
}

fn business_id(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    q.get("business_id")
        .ok_or_else(|| ApiError::bad_request("invalid_query", "business_id: required"))?
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request("invalid_query", "business_id: must be an integer"))
}

/// `GET /social/webhook/{channel_type}`: Meta's verification. The challenge
/// is echoed (as text) only when `hub.verify_token` is the channel's.
pub async fn verify(
    State(shared): State<Arc<Shared>>,
    Path(kind): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let kind = channel_type(&kind)?;
    let q = query_map(raw)?;
    let business = business_id(&q)?;
    if q.get("hub.mode").map(String::as_str) != Some("subscribe") {
        return Err(ApiError::bad_request("invalid_query", "hub.mode: expected subscribe"));
    }
    let challenge = q.get("hub.challenge").filter(|c| !c.is_empty() && c.len() <= 256);
    let challenge = challenge.ok_or_else(|| ApiError::bad_request("invalid_query", "hub.challenge: required"))?;
    let token = q.get("hub.verify_token").map(String::as_str).unwrap_or("");
    let mut conn = shared.db.conn().await?;
    if token.is_empty() || !social::verify_token_matches(&mut conn, business, kind, token).await? {
        return Err(ApiError::forbidden("the verify token does not match this channel's"));
    }
    Ok((StatusCode::OK, [("content-type", "text/plain; charset=utf-8")], challenge.clone()).into_response())
}

/// `POST /social/webhook/{channel_type}?business_id=<id>`: inbound messages.
pub async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(kind): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let kind = channel_type(&kind)?;
    let business = business_id(&query_map(raw)?)?;
    let body = body.map_err(bytes_rejection)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let presented = webhook::presented(kind, header);
    if presented.signature.is_none() && presented.telegram_token.is_none() {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "the request is not signed"));
    }
    let mut conn = shared.db.conn().await?;
    // Signature first: nothing of the body is read before a channel's secret
    // (current, or previous during a rotation) vouches for it.
    let channels = social::channels_for_webhook(&mut conn, business, kind).await?;
    let signed_by: Vec<_> = channels
        .into_iter()
        .filter(|c| {
            webhook::signed_by(kind, &c.webhook_secret, c.webhook_secret_previous.as_deref(), &body, &presented)
        })
        .collect();
    if signed_by.is_empty() {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "the signature does not match"));
    }
    let messages = webhook::parse(kind, &body).map_err(|e| ApiError::bad_request("malformed_json", e.0))?;
    let origin = origin();
    let (mut stored, mut duplicates, mut unrouted) = (0, 0, 0);
    // One bad message never costs the others: it is skipped and reported, and
    // the delivery is answered 200 so that the provider does not retry it
    // forever. Only an unreachable database fails the delivery (503: retried).
    let mut skipped = Vec::new();
    let accounts: Vec<&str> = signed_by.iter().map(|c| c.account_id.as_str()).collect();
    for (index, m) in messages.iter().enumerate() {
        if index >= limits::MAX_WEBHOOK_MESSAGES {
            skipped.push(json!({"index": index, "reason": format!("over {} messages in one delivery", limits::MAX_WEBHOOK_MESSAGES)}));
            continue;
        }
        if let Some(reason) = unstorable(m) {
            skipped.push(json!({"index": index, "reason": reason}));
            continue;
        }
        let Some(channel) = webhook::route(m.account_id.as_deref(), &accounts).map(|i| &signed_by[i]) else {
            unrouted += 1;
            continue;
        };
        match social::store_inbound(&mut conn, channel, m, &origin).await {
            Ok(Some(_)) => stored += 1,
            Ok(None) => duplicates += 1,
            Err(e @ StoreError::Unavailable(_)) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(index, error = %e, channel_type = kind, business, "a webhook message was skipped");
                skipped.push(json!({"index": index, "reason": "refused by the store"}));
            }
        }
    }
    if unrouted > 0 {
        tracing::warn!(unrouted, channel_type = kind, business, "webhook messages for no signing channel were skipped");
    }
    Ok(ok(json!({"received": messages.len(), "stored": stored, "duplicates": duplicates, "skipped": skipped})))
}

pub async fn list_channels(State(shared): State<Arc<Shared>>, caller: Caller) -> ApiResult {
    let mut conn = shared.db.conn().await?;
    Ok(list(social::list_channels(&mut conn, caller.tenant).await?, None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureBody {
    channel_type: String,
    account_id: String,
    display_number: Option<String>,
    access_token: Option<String>,
    webhook_secret: Option<String>,
    verify_token: Option<String>,
    active: Option<bool>,
    #[serde(default)]
    finish_rotation: bool,
}

/// `PUT /social/channels`: creates or updates the channel (type, account id).
pub async fn configure(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiJson(b): ApiJson<ConfigureBody>,
) -> ApiResult {
    let cfg = ChannelConfig {
        channel_type: b.channel_type,
        account_id: b.account_id,
        display_number: b.display_number,
        access_token: b.access_token,
        webhook_secret: b.webhook_secret,
        verify_token: b.verify_token,
        active: b.active,
        finish_rotation: b.finish_rotation,
    };
    let mut conn = shared.db.conn().await?;
    Ok(ok(social::configure(&mut conn, caller.tenant, cfg).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    direction: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_messages(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> ApiResult {
    let page = Page::resolve(q.limit, q.offset)?;
    if let Some(d) = &q.direction
        && d != "inbound"
        && d != "outbound"
    {
        return Err(ApiError::invalid("direction", "expected inbound or outbound"));
    }
    let mut conn = shared.db.conn().await?;
    Ok(paged(social::list_messages(&mut conn, caller.tenant, q.direction.as_deref(), page.limit, page.offset).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadsQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_leads(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LeadsQuery>,
) -> ApiResult {
    let page = Page::resolve(q.limit, q.offset)?;
    let mut conn = shared.db.conn().await?;
    Ok(paged(social::list_leads(&mut conn, caller.tenant, page.limit, page.offset).await?))
}
