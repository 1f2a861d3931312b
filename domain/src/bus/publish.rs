//! Publishing with publisher confirms: a message counts as sent only when the
//! broker acked it, and every publish and confirm has a timeout (lapin issue
//! 409: `basic_publish` can hang forever when the broker goes away).

use super::BusError;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use std::time::Duration;

/// A new channel in confirm mode.
pub async fn confirm_channel(conn: &Connection, timeout: Duration) -> Result<Channel, BusError> {
    let op = async {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok::<_, BusError>(ch)
    };
    tokio::time::timeout(timeout, op).await.map_err(|_| BusError::Timeout { op: "opening a channel", timeout })?
}

/// Publishes one message and waits for the broker's confirm. The channel must
/// be in confirm mode ([`confirm_channel`]). Ok only when the broker acked.
pub async fn publish_confirmed(
    channel: &lapin::Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: lapin::BasicProperties,
    timeout: Duration,
) -> Result<(), BusError> {
    let confirm = start_publish(channel, exchange, routing_key, body, properties, timeout).await?;
    await_confirm(confirm, exchange, routing_key, timeout).await
}

/// The first half of a publish: sends the message, returns its pending confirm.
/// Used to pipeline a batch (send all, then await every confirm).
pub async fn start_publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<PublisherConfirm, BusError> {
    let publish =
        channel.basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), body, properties);
    Ok(tokio::time::timeout(timeout, publish).await.map_err(|_| BusError::Timeout { op: "publish", timeout })??)
}

/// The second half: waits for the broker's ack of one message.
pub async fn await_confirm(
    confirm: PublisherConfirm,
    exchange: &str,
    routing_key: &str,
    timeout: Duration,
) -> Result<(), BusError> {
    let confirmation = tokio::time::timeout(timeout, confirm)
        .await
        .map_err(|_| BusError::Timeout { op: "publisher confirm", timeout })?;
    confirmed(confirmation, exchange, routing_key)
}

/// The confirm of one message if the broker already answered, without
/// waiting: `None` while it is outstanding. Used to settle a window of
/// pipelined publishes as their confirms arrive.
pub fn confirm_now(confirm: &mut PublisherConfirm, exchange: &str, routing_key: &str) -> Option<Result<(), BusError>> {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    match std::pin::Pin::new(confirm).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => Some(confirmed(r, exchange, routing_key)),
        Poll::Pending => None,
    }
}

/// Ok only for the broker's ack.
fn confirmed(confirmation: lapin::Result<Confirmation>, exchange: &str, routing_key: &str) -> Result<(), BusError> {
    match confirmation? {
        Confirmation::Ack(_) => Ok(()),
        Confirmation::Nack(_) => {
            Err(BusError::Nacked { exchange: exchange.to_owned(), routing_key: routing_key.to_owned() })
        }
        Confirmation::NotRequested => Err(BusError::NoConfirms),
    }
}

/// The properties of an event: persistent, JSON, with its id and type.
pub fn event_properties(event_id: &str, event_type: &str) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(event_id.into())
        .with_type(event_type.into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}
