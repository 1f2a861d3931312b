//! The `log` provider (the dev default): records each message as sent and
//! sends nothing. Its log line carries no phone and no text (personal data).

use super::{Accepted, Outbound, Provider, SendError};
use futures_util::future::BoxFuture;

pub struct LogProvider;

impl Provider for LogProvider {
    fn name(&self) -> &'static str {
        "log"
    }

    fn recorded_channel_type<'a>(&self, _channel_type: &'a str) -> &'a str {
        "log"
    }

    fn send<'a>(&'a self, message: Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            let id = format!("log-{}", uuid::Uuid::now_v7());
            tracing::info!(
                provider = "log",
                channel_type = message.channel_type,
                chars = message.body.chars().count(),
                provider_message_id = %id,
                "notification recorded as sent (not sent: provider is log)"
            );
            Ok(Accepted { provider_message_id: Some(id) })
        })
    }
}
