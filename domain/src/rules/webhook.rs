//! Inbound channel webhooks, the pure parts: which signature header each
//! channel type uses, checking it (HMAC-SHA256 over the raw body, constant
//! time) against the current and, during a rotation, the previous secret, and
//! reading the messages out of a provider's payload once it is authentic,
//! and which of the signing channels each message is for.
//!
//! - Meta (whatsapp, facebook, instagram): `X-Hub-Signature-256: sha256=<hex>`,
//!   HMAC-SHA256 of the raw body keyed with the channel's webhook secret.
//! - Telegram: `X-Atelier-Signature-256: sha256=<hex>`, the same HMAC (Telegram
//!   itself cannot sign bodies: a relay in front of it does), or Telegram's own
//!   `X-Telegram-Bot-Api-Secret-Token: <secret>` compared in constant time.

use hmac::{KeyInit, Mac};
use serde::Deserialize;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const META_SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const TELEGRAM_SIGNATURE_HEADER: &str = "x-atelier-signature-256";
pub const TELEGRAM_TOKEN_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The channel types a business can configure.
pub const CHANNEL_TYPES: [&str; 4] = ["whatsapp", "facebook", "instagram", "telegram"];

/// The webhook routes (GET verification, POST messages), below `/api/v1`.
pub const ROUTE: &str = "/social/webhook/{channel_type}";

/// The URL a business registers with its channel's provider: atelierd's
/// public base, the route, and the business (providers call back without
/// any other way to say whose channel it is).
pub fn url(public_base_url: &str, business_id: i64, channel_type: &str) -> String {
    let path = ROUTE.replace("{channel_type}", channel_type);
    format!("{}/api/v1{path}?business_id={business_id}", public_base_url.trim_end_matches('/'))
}

pub fn is_meta(channel_type: &str) -> bool {
    matches!(channel_type, "whatsapp" | "facebook" | "instagram")
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
pub fn verify_hmac(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(body);
    m.verify_slice(&sig).is_ok()
}

/// Constant-time equality of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The signature material a request carries, by header name (lowercase).
pub struct Presented<'a> {
    pub signature: Option<&'a str>,
    pub telegram_token: Option<&'a str>,
}

/// Whether the request is signed by `secret` for a channel of `channel_type`.
pub fn authentic(channel_type: &str, secret: &str, body: &[u8], presented: &Presented<'_>) -> bool {
    if secret.is_empty() {
        return false;
    }
    if let Some(sig) = presented.signature
        && verify_hmac(secret.as_bytes(), body, sig)
    {
        return true;
    }
    channel_type == "telegram" && presented.telegram_token.is_some_and(|t| same_secret(t, secret))
}

/// What a request of `channel_type` presents, read with `header` (by
/// lowercase name): Meta's signature header for Meta channels, our relay's
/// for Telegram, and Telegram's own secret token for Telegram only.
pub fn presented<'a>(channel_type: &str, header: impl Fn(&str) -> Option<&'a str>) -> Presented<'a> {
    let signature_header = if is_meta(channel_type) { META_SIGNATURE_HEADER } else { TELEGRAM_SIGNATURE_HEADER };
    Presented {
        signature: header(signature_header),
        telegram_token: if channel_type == "telegram" { header(TELEGRAM_TOKEN_HEADER) } else { None },
    }
}

/// Whether a channel with `current` and, during a rotation, `previous` as
/// its webhook secret vouches for the request: either secret is accepted
/// until the rotation is finished (and `previous` dropped).
pub fn signed_by(
    channel_type: &str,
    current: &str,
    previous: Option<&str>,
    body: &[u8],
    presented: &Presented<'_>,
) -> bool {
    authentic(channel_type, current, body, presented)
        || previous.is_some_and(|p| authentic(channel_type, p, body, presented))
}

/// Which of the channels that signed a request a message is for (an index
/// into `signing_accounts`, their account ids): the one whose account id the
/// message names, or else the only one when a single channel signed. `None`:
/// the message is for no signing channel and is skipped.
pub fn route(message_account: Option<&str>, signing_accounts: &[&str]) -> Option<usize> {
    signing_accounts.iter().position(|a| message_account == Some(*a)).or((signing_accounts.len() == 1).then_some(0))
}

/// One inbound message as read from a provider's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The provider's account the message came to (Meta `phone_number_id` or
    /// page id; Telegram: none).
    pub account_id: Option<String>,
    pub provider_message_id: String,
    pub from: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

#[derive(Deserialize)]
struct MetaPayload {
    #[serde(default)]
    entry: Vec<MetaEntry>,
}
#[derive(Deserialize)]
struct MetaEntry {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    changes: Vec<MetaChange>,
    /// Messenger and Instagram: one event per message (no `changes`).
    #[serde(default)]
    messaging: Vec<MessagingEvent>,
}
#[derive(Deserialize)]
struct MessagingEvent {
    sender: MessagingParty,
    #[serde(default)]
    recipient: Option<MessagingParty>,
    #[serde(default)]
    message: Option<MessagingMessage>,
}
#[derive(Deserialize)]
struct MessagingParty {
    id: String,
}
#[derive(Deserialize)]
struct MessagingMessage {
    mid: String,
    #[serde(default)]
    text: Option<String>,
    /// Our own messages echoed back to the page.
    #[serde(default)]
    is_echo: bool,
}
#[derive(Deserialize)]
struct MetaChange {
    #[serde(default)]
    value: Option<MetaValue>,
}
#[derive(Deserialize)]
struct MetaValue {
    #[serde(default)]
    metadata: Option<MetaMetadata>,
    #[serde(default)]
    messages: Vec<MetaMessage>,
}
#[derive(Deserialize)]
struct MetaMetadata {
    #[serde(default)]
    phone_number_id: Option<String>,
}
#[derive(Deserialize)]
struct MetaMessage {
    id: String,
    from: String,
    #[serde(default)]
    text: Option<MetaText>,
}
#[derive(Deserialize)]
struct MetaText {
    body: String,
}

#[derive(Deserialize)]
struct TelegramUpdate {
    #[serde(default)]
    message: Option<TelegramMessage>,
}
#[derive(Deserialize)]
struct TelegramMessage {
    message_id: i64,
    chat: TelegramChat,
    #[serde(default)]
    text: Option<String>,
}
#[derive(Deserialize)]
struct TelegramChat {
    id: i64,
}

/// Reads the text messages of an authentic payload. Statuses, reactions and
/// media without text carry no message and are skipped.
pub fn parse(channel_type: &str, body: &[u8]) -> Result<Vec<InboundMessage>, PayloadError> {
    let bad = |e: serde_json::Error| PayloadError(format!("malformed {channel_type} payload: {e}"));
    if channel_type == "telegram" {
        let u: TelegramUpdate = serde_json::from_slice(body).map_err(bad)?;
        return Ok(u
            .message
            .and_then(|m| {
                m.text.map(|text| InboundMessage {
                    account_id: None,
                    provider_message_id: m.message_id.to_string(),
                    from: m.chat.id.to_string(),
                    text,
                })
            })
            .into_iter()
            .collect());
    }
    let p: MetaPayload = serde_json::from_slice(body).map_err(bad)?;
    let mut out = Vec::new();
    for entry in p.entry {
        // Messenger and Instagram: the sender is a page-scoped id (the
        // address a reply goes to, as a phone is on WhatsApp).
        for event in entry.messaging {
            let Some(message) = event.message else { continue };
            let Some(text) = message.text.filter(|_| !message.is_echo) else { continue };
            out.push(InboundMessage {
                account_id: event.recipient.map(|r| r.id).or_else(|| entry.id.clone()),
                provider_message_id: message.mid,
                from: event.sender.id,
                text,
            });
        }
        for change in entry.changes {
            let Some(value) = change.value else { continue };
            let account = value.metadata.and_then(|m| m.phone_number_id).or_else(|| entry.id.clone());
            for m in value.messages {
                let Some(text) = m.text else { continue };
                out.push(InboundMessage {
                    account_id: account.clone(),
                    provider_message_id: m.id,
                    from: m.from,
                    text: text.body,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_type_presents_its_own_headers() {
        let headers = |name: &str| match name {
            META_SIGNATURE_HEADER => Some("meta"),
            TELEGRAM_SIGNATURE_HEADER => Some("relay"),
            TELEGRAM_TOKEN_HEADER => Some("token"),
            _ => None,
        };
        for meta in ["whatsapp", "facebook", "instagram"] {
            let p = presented(meta, headers);
            assert_eq!((p.signature, p.telegram_token), (Some("meta"), None));
        }
        let p = presented("telegram", headers);
        assert_eq!((p.signature, p.telegram_token), (Some("relay"), Some("token")));
        let p = presented("telegram", |_| None);
        assert_eq!((p.signature, p.telegram_token), (None, None));
    }

    #[test]
    fn during_a_rotation_the_previous_secret_is_accepted_too() {
        let body = b"{}";
        let by_old = sign(b"old", body);
        let p = Presented { signature: Some(&by_old), telegram_token: None };
        assert!(signed_by("whatsapp", "new", Some("old"), body, &p));
        assert!(!signed_by("whatsapp", "new", None, body, &p));
        let by_new = sign(b"new", body);
        let p = Presented { signature: Some(&by_new), telegram_token: None };
        assert!(signed_by("whatsapp", "new", Some("old"), body, &p));
        assert!(signed_by("whatsapp", "new", None, body, &p));
        assert!(!signed_by("whatsapp", "other", Some("old"), body, &p));
        let t = Presented { signature: None, telegram_token: Some("old") };
        assert!(signed_by("telegram", "new", Some("old"), body, &t));
        assert!(!signed_by(
            "telegram",
            "new",
            Some(""),
            body,
            &Presented { signature: None, telegram_token: Some("") }
        ));
    }

    #[test]
    fn a_message_goes_to_the_channel_it_names_or_the_only_signer() {
        assert_eq!(route(Some("b"), &["a", "b"]), Some(1));
        assert_eq!(route(Some("c"), &["a", "b"]), None);
        assert_eq!(route(None, &["a", "b"]), None);
        assert_eq!(route(Some("c"), &["a"]), Some(0));
        assert_eq!(route(None, &["a"]), Some(0));
        assert_eq!(route(Some("a"), &[]), None);
    }

    #[test]
    fn the_url_to_register_is_the_public_base_the_route_and_the_business() {
        assert_eq!(
            url("https://studio.example/", 7, "whatsapp"),
            "https://studio.example/api/v1/social/webhook/whatsapp?business_id=7"
        );
    }

    #[test]
    fn signatures_verify_against_the_raw_body_only() {
        let body = br#"{"entry":[]}"#;
        let sig = sign(b"s3cret", body);
        assert!(verify_hmac(b"s3cret", body, &sig));
        assert!(!verify_hmac(b"other", body, &sig));
        assert!(!verify_hmac(b"s3cret", br#"{"entry": []}"#, &sig));
        assert!(!verify_hmac(b"s3cret", body, "sha1=abc"));
        assert!(!verify_hmac(b"s3cret", body, "sha256=zz"));
        let p = Presented { signature: Some(&sig), telegram_token: None };
        assert!(authentic("whatsapp", "s3cret", body, &p));
        assert!(!authentic("whatsapp", "", body, &p));
        let t = Presented { signature: None, telegram_token: Some("tok") };
        assert!(authentic("telegram", "tok", body, &t));
        assert!(!authentic("whatsapp", "tok", body, &t));
    }

    #[test]
    fn meta_payloads_yield_their_text_messages() {
        let body =
            br#"{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{
            "metadata":{"phone_number_id":"1555"},
            "messages":[{"id":"wamid.1","from":"15551234567","type":"text","text":{"body":"I want to order"}},
                        {"id":"wamid.2","from":"15551234567","type":"image"}]}}]}]}"#;
        let m = parse("whatsapp", body).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].account_id.as_deref(), Some("1555"));
        assert_eq!((m[0].provider_message_id.as_str(), m[0].text.as_str()), ("wamid.1", "I want to order"));
        assert!(parse("whatsapp", b"{not json").is_err());
        assert_eq!(parse("facebook", br#"{"entry":[{"changes":[{"value":{"statuses":[]}}]}]}"#).unwrap(), vec![]);
    }

    #[test]
    fn messenger_and_instagram_payloads_yield_their_text_messages() {
        let body = br#"{"object":"page","entry":[{"id":"PAGE1","time":1,"messaging":[
            {"sender":{"id":"PSID7"},"recipient":{"id":"PAGE1"},"timestamp":1,"message":{"mid":"m_1","text":"I want to order"}},
            {"sender":{"id":"PAGE1"},"recipient":{"id":"PSID7"},"message":{"mid":"m_2","text":"Thanks!","is_echo":true}},
            {"sender":{"id":"PSID7"},"recipient":{"id":"PAGE1"},"read":{"watermark":1}},
            {"sender":{"id":"PSID7"},"recipient":{"id":"PAGE1"},"message":{"mid":"m_3","attachments":[]}}]}]}"#;
        for channel in ["facebook", "instagram"] {
            let m = parse(channel, body).unwrap();
            assert_eq!(
                m,
                vec![InboundMessage {
                    account_id: Some("PAGE1".into()),
                    provider_message_id: "m_1".into(),
                    from: "PSID7".into(),
                    text: "I want to order".into(),
                }],
                "{channel}: the text message only (no echo, read receipt or attachment)"
            );
        }
    }

    #[test]
    fn telegram_updates_yield_their_message() {
        let m =
            parse("telegram", br#"{"update_id":1,"message":{"message_id":42,"chat":{"id":99},"text":"yes"}}"#).unwrap();
        assert_eq!(m[0].provider_message_id, "42");
        assert_eq!(m[0].from, "99");
    }
}
