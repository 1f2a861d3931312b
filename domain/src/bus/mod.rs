//! The bus: RabbitMQ as Atelier uses it. The registry of standard handlers
//! and their bindings ([`handlers`]), names and declaration of the topology
//! ([`topology`]), the connection (URL from `amqp.url`, password from
//! the secret `amqp.password_secret` names), publishing with publisher
//! confirms and a timeout on every publish and confirm ([`publish`]), and the
//! header names our messages carry ([`headers`]). Connecting logs its timing
//! at debug (`atelier -v`).

pub mod handlers;
pub mod headers;
pub mod publish;
pub mod recreate;
pub mod topology;

pub use publish::{confirm_channel, publish_confirmed};
pub use recreate::{RecreateError, Recreated};
pub use topology::{Drift, HandlerSpec, Topology};

use crate::config::AmqpSettings;
use crate::secrets::{SecretError, SecretStore};
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("amqp.url is not a valid URL")]
    InvalidUrl,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("{op} timed out after {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
    #[error("the broker refused (nack) the message published to '{exchange}' with key '{routing_key}'")]
    Nacked { exchange: String, routing_key: String },
    #[error("publisher confirms are not enabled on this channel")]
    NoConfirms,
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
}

impl BusError {
    /// The AMQP reply code the broker closed the channel with (404, 406, ...).
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            BusError::Amqp(e) => match e.kind() {
                lapin::ErrorKind::ProtocolError(p) => Some(p.get_id()),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The broker URL with its password filled in from the secret store. Its
/// Debug and Display show the URL without any password.
#[derive(Clone)]
pub struct AmqpUrl {
    url: url::Url,
}

impl AmqpUrl {
    pub fn resolve(settings: &AmqpSettings, secrets: &dyn SecretStore) -> Result<AmqpUrl, BusError> {
        let mut url = url::Url::parse(&settings.url).map_err(|_| BusError::InvalidUrl)?;
        if let Some(name) = &settings.password_secret {
            let password = secrets.require(name)?;
            url.set_password(Some(password.expose())).map_err(|_| BusError::InvalidUrl)?;
        }
        Ok(AmqpUrl { url })
    }

    /// The URL with no password, for messages.
    pub fn redacted(&self) -> String {
        let mut u = self.url.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("REDACTED"));
        }
        u.to_string()
    }

    fn expose(&self) -> &str {
        self.url.as_str()
    }
}

impl std::fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Opens a connection named `name` (shown in the management UI), giving up
/// after `timeout`. The error never contains the password.
pub async fn connect(url: &AmqpUrl, name: &str, timeout: Duration) -> Result<Connection, BusError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let fail = |reason: String| BusError::Connect { url: url.redacted(), reason };
    let started = std::time::Instant::now();
    tracing::debug!(connection = name, "connecting to {}", url.redacted());
    match tokio::time::timeout(timeout, Connection::connect(url.expose(), props)).await {
        Ok(Ok(c)) => {
            tracing::debug!(elapsed_ms = started.elapsed().as_millis(), "connected to {}", url.redacted());
            Ok(c)
        }
        Ok(Err(e)) => Err(fail(scrub(&e.to_string(), url))),
        Err(_) => Err(fail(format!("no answer within {timeout:?}"))),
    }
}

/// Removes the password from a message that might quote the URL.
fn scrub(text: &str, url: &AmqpUrl) -> String {
    match url.url.password() {
        Some(p) if !p.is_empty() => text.replace(p, "REDACTED"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretValue;

    struct One;
    impl SecretStore for One {
        fn get(&self, _: &str) -> Result<Option<SecretValue>, SecretError> {
            Ok(Some(SecretValue::new("hunter2")))
        }
        fn hint(&self, _: &str) -> String {
            String::new()
        }
    }

    #[test]
    fn the_password_comes_from_the_secret_and_never_prints() {
        let settings = AmqpSettings {
            url: "amqp://atelier@mq:5672/vh".into(),
            password_secret: Some("amqp_password".into()),
            namespace: "n".into(),
            prefetch: 1,
            publish_timeout: Duration::from_secs(1),
            delivery_limit: 20,
            concurrency: 1,
            max_message_bytes: 1024,
            connect_timeout: Duration::from_secs(1),
            outbox_poll: Duration::from_secs(1),
            relay: true,
            outbox_batch: 1,
        };
        let url = AmqpUrl::resolve(&settings, &One).unwrap();
        assert!(url.expose().contains("hunter2"));
        assert!(!format!("{url} {url:?}").contains("hunter2"));
        assert_eq!(scrub("x hunter2 y", &url), "x REDACTED y");
    }
}
