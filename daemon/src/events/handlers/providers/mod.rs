//! Notification providers behind one trait: `log` (records each message as
//! sent, sends nothing: the dev default) and `whatsapp_cloud` (the Meta Graph
//! API). A provider says by its error whether a failed send is worth retrying.
//! Providers never put a token, a phone or a message text in their errors.

pub mod log;
pub mod whatsapp_cloud;

use atelier_domain::config::{NotificationProviderKind, NotificationSettings};
use atelier_domain::store::notifications::ChannelAccount;
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// One message to send.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    /// The sale's channel: `whatsapp`, `facebook`, `instagram` or `telegram`.
    pub channel_type: &'a str,
    /// The business's account on that channel, if it configured one.
    pub account: Option<&'a ChannelAccount>,
    /// The recipient's phone.
    pub to: &'a str,
    pub body: &'a str,
}

/// The provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The provider's id of the message (`wamid...`), used to match its status reports.
    pub provider_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later: a timeout, the provider unreachable, 5xx, 429.
    #[error("{reason}")]
    Retryable { kind: &'static str, reason: String },
    /// Will not succeed as is: the provider refused the request (4xx), or the
    /// channel is not configured for this provider.
    #[error("{reason}")]
    Permanent { kind: &'static str, reason: String },
}

pub trait Provider: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The channel type recorded on the message: the channel's own, or the
    /// provider's when it sends over none (`log`).
    fn recorded_channel_type<'a>(&self, channel_type: &'a str) -> &'a str;

    fn send<'a>(&'a self, message: Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>>;
}

/// The provider the configuration names.
pub fn from_settings(settings: &NotificationSettings) -> Arc<dyn Provider> {
    match settings.provider {
        NotificationProviderKind::Log => Arc::new(log::LogProvider),
        NotificationProviderKind::WhatsappCloud => {
            Arc::new(whatsapp_cloud::WhatsappCloud::new(&settings.whatsapp_base_url, settings.timeout))
        }
    }
}
