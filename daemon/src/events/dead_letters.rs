//! Dead-letter ingest: drains `{ns}.dlq` into the `dead_letters` table (the
//! operator's view). Each message is inserted (ON CONFLICT on its
//! `x-atelier-dead-letter-id` DO NOTHING, so a redelivery keeps one row) and
//! acked only after the insert committed. A message RabbitMQ dead-lettered by
//! itself (the delivery limit) carries no id of ours: it gets a fresh one and
//! the kind `delivery_limit`. While the database is down it pauses. A letter
//! the table refuses (a NUL in a header's text) is stored with its text
//! cleaned; one that still cannot be stored stays in `{ns}.dlq`, retried
//! every [`REFUSED_PAUSE`] with an error in the log, never dropped.
//!
//! The event's type and id come from the message's `type` and `message_id`
//! properties, else from its envelope (the body's `type` and `id`), as the
//! consumer's log line has them; a value neither tells is stored as unknown
//! (no type; handler and error kind [`dlq::UNKNOWN`]). A message carrying
//! `x-atelier-replay-id` failed again after a replay and is linked to the
//! letter that replay published.

use crate::events::EventsError;
use crate::events::amqp::{Running, ack, consume, nack};
use crate::state::Shared;
use atelier_domain::bus::Topology;
use atelier_domain::bus::headers::{self as h, get_str, get_u32};
use atelier_domain::store::{StoreError, dlq};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::BasicCancelOptions;
use lapin::types::FieldTable;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How long ingest waits before retrying a letter the database refused.
const REFUSED_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn run(
    shared: Arc<Shared>,
    topology: Arc<Topology>,
    channel: Channel,
    stop: CancellationToken,
) -> Result<(), EventsError> {
    let settings = &shared.config.settings;
    let timeout = settings.amqp.publish_timeout;
    let queue = topology.dlq();
    let (mut consumer, tag) = consume(&channel, &queue, "dlq", settings.amqp.prefetch).await?;
    let _running = Running::new(shared.metrics.clone());
    let outcome = loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => match ingest(&shared, &delivery).await {
                    Ok(()) => { ack(&delivery, timeout).await; }
                    Err(e @ StoreError::Unavailable(_)) => {
                        tracing::warn!(error = %e, "dead-letter ingest failed; returning the message and pausing");
                        nack(&delivery, timeout).await;
                        if !super::wait_for_database(&shared, &stop).await {
                            break Ok(());
                        }
                    }
                    Err(e) => {
                        // Not the database being down: this letter is refused. Keep it
                        // in the queue (never drop a dead letter) without spinning on it.
                        tracing::error!(
                            error = %e,
                            "the database refused a dead letter; it stays in the dlq queue and is retried in {REFUSED_PAUSE:?}"
                        );
                        nack(&delivery, timeout).await;
                        tokio::select! {
                            _ = stop.cancelled() => break Ok(()),
                            _ = tokio::time::sleep(REFUSED_PAUSE) => {}
                        }
                    }
                },
                Some(Err(source)) => break Err(EventsError::Consumer { queue: queue.clone(), source }),
                None => break Err(EventsError::ConsumerEnded { queue: queue.clone() }),
            },
        }
    };
    if outcome.is_ok() {
        let _ = tokio::time::timeout(timeout, channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()))
            .await;
    }
    outcome
}

fn time(headers: Option<&FieldTable>, name: &str) -> Option<DateTime<Utc>> {
    get_str(headers, name).and_then(|s| DateTime::parse_from_rfc3339(&s).ok()).map(|t| t.with_timezone(&Utc))
}

/// Inserts one dead letter (idempotent on its key).
async fn ingest(shared: &Shared, delivery: &Delivery) -> Result<(), StoreError> {
    let headers = delivery.properties.headers().as_ref();
    let ours = get_str(headers, h::DEAD_LETTER_ID).and_then(|s| uuid::Uuid::parse_str(&s).ok());
    let key = ours.unwrap_or_else(uuid::Uuid::now_v7);
    let (handler, kind, error) = match ours {
        Some(_) => (
            get_str(headers, h::HANDLER).unwrap_or_else(|| dlq::UNKNOWN.into()),
            get_str(headers, h::ERROR_KIND).unwrap_or_else(|| dlq::UNKNOWN.into()),
            get_str(headers, h::ERROR).unwrap_or_default(),
        ),
        None => {
            // Dead-lettered by the broker: the first x-death entry's queue names the handler.
            let queue = get_str(headers, "x-first-death-queue").unwrap_or_default();
            let handler = queue.rsplit_once(".q.").map(|(_, h)| h.to_owned()).unwrap_or_else(|| dlq::UNKNOWN.into());
            let reason = get_str(headers, "x-first-death-reason").unwrap_or_else(|| dlq::UNKNOWN.into());
            (handler, "delivery_limit".to_owned(), format!("dead-lettered by the broker ({reason})"))
        }
    };
    let envelope = Envelope::of(&delivery.data);
    let event_id =
        delivery.properties.message_id().as_ref().and_then(|m| uuid::Uuid::parse_str(m.as_str()).ok()).or(envelope.id);
    let event_type =
        delivery.properties.kind().as_ref().map(|t| t.to_string()).filter(|t| !t.is_empty()).or(envelope.event_type);
    let replay_id = get_str(headers, h::REPLAY_ID).and_then(|s| uuid::Uuid::parse_str(&s).ok());
    let attempts = get_u32(headers, h::ATTEMPT).unwrap_or(0).saturating_add(1);
    let now = Utc::now();
    let first = time(headers, h::FIRST_FAILED_AT).unwrap_or(now);
    let last = time(headers, h::LAST_FAILED_AT).unwrap_or(now);
    let mut conn = shared.db.conn().await?;
    let letter = dlq::NewDeadLetter {
        dead_letter_key: key,
        handler,
        event_id,
        event_type,
        body: delivery.data.clone(),
        headers: h::to_json(headers),
        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
        first_failed_at: first,
        last_failed_at: last,
        last_error: error,
        error_kind: kind,
        replay_id,
    };
    match dlq::ingest(&mut conn, &letter).await {
        Ok(_) => Ok(()),
        Err(StoreError::Database(e)) => {
            tracing::warn!(error = %e, "dead letter refused as read; storing it with NULs removed from its text");
            dlq::ingest(&mut conn, &letter.cleaned()).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// What the body's envelope says of the event, as far as it can be read: a
/// dead letter may be malformed, so nothing here must parse for the rest.
#[derive(Debug, Default, PartialEq)]
struct Envelope {
    id: Option<uuid::Uuid>,
    event_type: Option<String>,
}

impl Envelope {
    fn of(body: &[u8]) -> Envelope {
        let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Envelope::default();
        };
        Envelope {
            id: o.get("id").and_then(|v| v.as_str()).and_then(|s| uuid::Uuid::parse_str(s).ok()),
            event_type: o.get("type").and_then(|v| v.as_str()).filter(|t| !t.is_empty()).map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Envelope;

    #[test]
    fn the_envelope_tells_the_type_and_id_when_it_can() {
        let id = uuid::Uuid::now_v7();
        let e = Envelope::of(format!(r#"{{"id":"{id}","type":"sale.created","data":{{}}}}"#).as_bytes());
        assert_eq!(e, Envelope { id: Some(id), event_type: Some("sale.created".into()) });
        assert_eq!(Envelope::of(b"not json"), Envelope::default());
        assert_eq!(Envelope::of(br#"{"type": 7, "id": "x"}"#), Envelope::default());
        assert_eq!(Envelope::of(br#"["sale.created"]"#), Envelope::default());
    }
}
