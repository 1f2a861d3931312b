//! The `whatsapp_cloud` provider: a text message through the Meta Graph API,
//! `POST {base}/{phone_number_id}/messages` with `Authorization: Bearer
//! <token>`. The token and phone number id are the business's WhatsApp
//! channel's (`social_channels.access_token`, `account_id`); the base URL and
//! timeout are the environment's (`notifications.*`). A timeout, an
//! unreachable provider, 5xx and 429 are retryable; any other 4xx is
//! permanent. The token never reaches a log line or an error.

use super::{Accepted, Outbound, Provider, SendError};
use futures_util::future::BoxFuture;
use std::time::Duration;

pub struct WhatsappCloud {
    /// `None` when the HTTP client could not be built (no TLS roots): every
    /// send is then retryable, so messages wait instead of being lost.
    client: Option<reqwest::Client>,
    base_url: String,
}

impl WhatsappCloud {
    pub fn new(base_url: &str, timeout: Duration) -> WhatsappCloud {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("atelierd/", env!("CARGO_PKG_VERSION")))
            .build();
        if let Err(e) = &client {
            tracing::error!(error = %e, "cannot build the WhatsApp Cloud HTTP client");
        }
        WhatsappCloud { client: client.ok(), base_url: base_url.trim_end_matches('/').to_owned() }
    }
}

fn permanent(kind: &'static str, reason: impl Into<String>) -> SendError {
    SendError::Permanent { kind, reason: reason.into() }
}

fn retryable(kind: &'static str, reason: impl Into<String>) -> SendError {
    SendError::Retryable { kind, reason: reason.into() }
}

/// The Graph API's error message, shortened, with the token and the
/// recipient's number cut out should the provider ever echo them (errors go
/// to dead letters and Sentry).
fn graph_error(body: &str, token: &str, to: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut text: String = v["error"]["message"].as_str().unwrap_or_default().chars().take(300).collect();
    if !token.is_empty() {
        text = text.replace(token, "<redacted>");
    }
    if !to.is_empty() {
        text = text.replace(to, "<phone>");
    }
    text
}

impl Provider for WhatsappCloud {
    fn name(&self) -> &'static str {
        "whatsapp_cloud"
    }

    fn recorded_channel_type<'a>(&self, channel_type: &'a str) -> &'a str {
        channel_type
    }

    fn send<'a>(&'a self, m: Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            if m.channel_type != "whatsapp" {
                return Err(permanent(
                    "unsupported_channel",
                    format!("the whatsapp_cloud provider cannot send over {}", m.channel_type),
                ));
            }
            let account = m
                .account
                .ok_or_else(|| permanent("channel_not_configured", "the business has no active whatsapp channel"))?;
            let token = account.access_token().ok_or_else(|| {
                permanent("channel_not_configured", format!("whatsapp channel {} has no access token", account.id))
            })?;
            if account.account_id.is_empty() || !account.account_id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(permanent(
                    "channel_not_configured",
                    format!("whatsapp channel {} has an invalid phone number id", account.id),
                ));
            }
            let client = self.client.as_ref().ok_or_else(|| retryable("http_client", "no HTTP client"))?;
            let url = format!("{}/{}/messages", self.base_url, account.account_id);
            // The Cloud API takes the number with its country code, without '+'.
            let to = m.to.trim_start_matches('+');
            let body = serde_json::json!({
                "messaging_product": "whatsapp",
                "to": to,
                "type": "text",
                "text": { "body": m.body },
            });
            let res = client.post(&url).bearer_auth(token).json(&body).send().await.map_err(|e| {
                let e = e.without_url();
                if e.is_timeout() {
                    retryable("timeout", "whatsapp cloud did not answer in time")
                } else if e.is_connect() {
                    retryable("unreachable", format!("cannot reach whatsapp cloud: {e}"))
                } else {
                    retryable("http", format!("whatsapp cloud request failed: {e}"))
                }
            })?;
            let status = res.status();
            let text = res.text().await.map_err(|e| {
                if e.is_timeout() {
                    retryable("timeout", "whatsapp cloud did not finish its answer in time")
                } else {
                    retryable("http", format!("reading the whatsapp cloud answer: {}", e.without_url()))
                }
            })?;
            if status.is_success() {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let id = v["messages"][0]["id"].as_str().map(str::to_owned);
                if id.is_none() {
                    tracing::warn!(status = status.as_u16(), "whatsapp cloud accepted a message without giving its id");
                }
                return Ok(Accepted { provider_message_id: id });
            }
            let detail = graph_error(&text, token, to);
            let reason = format!("whatsapp cloud answered {}: {detail}", status.as_u16());
            match status.as_u16() {
                429 => Err(retryable("rate_limited", reason)),
                408 | 500..=599 => Err(retryable("provider_unavailable", reason)),
                _ => Err(permanent("provider_refused", reason)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_errors_are_short_and_never_carry_the_token() {
        let body = r#"{"error":{"message":"Invalid token EAAB123 for 15551234567","code":190}}"#;
        assert_eq!(graph_error(body, "EAAB123", "15551234567"), "Invalid token <redacted> for <phone>");
        assert_eq!(graph_error("<html>", "t", "1"), "");
    }
}
