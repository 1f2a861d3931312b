//! How a handled delivery ends ([`Settle`]) and making that outcome durable
//! before it is acked: success (ack, coalesced), a retry (a copy with
//! `x-atelier-attempt` + 1 to the next retry level's queue, confirmed), a
//! dead letter (a copy to `{ns}.dead`, confirmed, and one Sentry event), or,
//! at shutdown while a dependency is down, a return to the queue. A copy the
//! broker does not confirm returns the delivery instead.
//!
//! The dead-letter copy keeps every header the delivery had (so a failed
//! replay still carries its `x-atelier-replay-id`) and gets the event's type
//! as its `type` property when the producer left it out, so the store shows
//! the type the log line shows.

use super::{UNKNOWN_TYPE, Work};
use crate::events::amqp::nack;
use crate::metrics::Series;
use atelier_domain::bus::headers::{self as h, get_str, set_str, set_u32};
use atelier_domain::bus::publish_confirmed;
use chrono::Utc;
use lapin::BasicProperties;
use lapin::message::Delivery;
use rand::Rng;
use std::sync::atomic::Ordering::Relaxed;

/// Longest error text kept in headers and the dead-letter store.
const MAX_ERROR_LEN: usize = 500;

/// How a delivery ends.
pub(super) enum Settle {
    Ack,
    Retry { kind: &'static str, reason: String },
    Dead { kind: &'static str, reason: String },
    Requeue(String),
}

impl Work {
    /// The effects are committed: count it and ack it (coalesced).
    pub(super) fn succeeded(&self, delivery: Box<Delivery>, series: &Series) {
        series.succeeded.fetch_add(1, Relaxed);
        self.acks.settle(delivery.delivery_tag, delivery.acker);
    }

    pub(super) async fn settle(
        &self,
        delivery: Box<Delivery>,
        attempt: u32,
        event_type: &str,
        settle: Settle,
        series: &Series,
    ) {
        let timeout = self.shared.config.settings.amqp.publish_timeout;
        let policy = self.shared.config.settings.retry_for(self.handler.name());
        let settle = match settle {
            Settle::Retry { kind, reason } if attempt >= policy.max_retries => {
                Settle::Dead { kind, reason: format!("{reason} (after {} attempts)", attempt + 1) }
            }
            other => other,
        };
        match settle {
            Settle::Ack => self.succeeded(delivery, series),
            Settle::Requeue(reason) => {
                tracing::info!(%reason, "shutting down while a dependency is down: returning the delivery");
                nack(&delivery, timeout).await;
                self.acks.forget(delivery.delivery_tag);
            }
            Settle::Retry { kind, reason } => {
                let level = attempt + 1;
                let delay = policy.delay(level);
                let jitter = self.shared.config.settings.retry.jitter;
                let ms = delay.as_millis() as f64;
                let expiration = (ms * (1.0 - rand::rng().random_range(0.0..=jitter))).round().max(1.0) as u64;
                let mut props = self.failure_properties(&delivery, kind, &reason);
                if let Some(hs) = props.headers().clone() {
                    let mut hs = hs;
                    set_u32(&mut hs, h::ATTEMPT, level);
                    props = props.with_headers(hs);
                }
                let props = props.with_expiration(expiration.to_string().into());
                let queue = self.topology.retry_queue(self.handler.name(), level);
                match publish_confirmed(&self.channel, "", &queue, &delivery.data, props, timeout).await {
                    Ok(()) => {
                        tracing::info!(kind, %reason, level, delay_ms = expiration, "retry scheduled");
                        series.retried.fetch_add(1, Relaxed);
                        self.acks.settle(delivery.delivery_tag, delivery.acker);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not schedule the retry; returning the delivery");
                        nack(&delivery, timeout).await;
                        self.acks.forget(delivery.delivery_tag);
                    }
                }
            }
            Settle::Dead { kind, reason } => {
                let mut props = self.failure_properties(&delivery, kind, &reason);
                if props.kind().as_ref().is_none_or(|t| t.as_str().is_empty()) && event_type != UNKNOWN_TYPE {
                    props = props.with_type(event_type.into());
                }
                let id = uuid::Uuid::now_v7();
                if let Some(mut hs) = props.headers().clone() {
                    set_str(&mut hs, h::DEAD_LETTER_ID, &id.to_string());
                    set_u32(&mut hs, h::ATTEMPT, attempt);
                    props = props.with_headers(hs);
                }
                let exchange = self.topology.dead_exchange();
                match publish_confirmed(&self.channel, &exchange, self.handler.name(), &delivery.data, props, timeout)
                    .await
                {
                    Ok(()) => {
                        tracing::warn!(kind, %reason, dead_letter_id = %id, "dead-lettered");
                        report_to_sentry(self.handler.name(), event_type, &delivery, kind);
                        series.dead_lettered.fetch_add(1, Relaxed);
                        self.acks.settle(delivery.delivery_tag, delivery.acker);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not dead-letter; returning the delivery");
                        nack(&delivery, timeout).await;
                        self.acks.forget(delivery.delivery_tag);
                    }
                }
            }
        }
    }

    /// The delivery's properties with our failure headers added.
    fn failure_properties(&self, delivery: &Delivery, kind: &str, reason: &str) -> BasicProperties {
        let mut hs = delivery.properties.headers().clone().unwrap_or_default();
        let now = Utc::now().to_rfc3339();
        if get_str(Some(&hs), h::FIRST_FAILED_AT).is_none() {
            set_str(&mut hs, h::FIRST_FAILED_AT, &now);
        }
        set_str(&mut hs, h::LAST_FAILED_AT, &now);
        set_str(&mut hs, h::HANDLER, self.handler.name());
        set_str(&mut hs, h::ERROR, &shorten(reason));
        set_str(&mut hs, h::ERROR_KIND, kind);
        let mut props = delivery.properties.clone().with_headers(hs);
        if delivery.properties.delivery_mode().is_none() {
            props = props.with_delivery_mode(2);
        }
        props
    }
}

fn shorten(s: &str) -> String {
    if s.len() <= MAX_ERROR_LEN {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// One Sentry event per dead letter: handler, type, event id and error kind
/// only (never payload text, phones or the error text).
fn report_to_sentry(handler: &str, event_type: &str, delivery: &Delivery, kind: &str) {
    if sentry::Hub::current().client().is_none() {
        return;
    }
    let event_id = delivery.properties.message_id().as_ref().map(|m| m.to_string()).unwrap_or_default();
    sentry::with_scope(
        |scope| {
            scope.set_tag("handler", handler);
            scope.set_tag("event_type", event_type);
            scope.set_tag("event_id", &event_id);
            scope.set_tag("error_kind", kind);
        },
        || sentry::capture_message(&format!("dead-lettered {event_type} in {handler}: {kind}"), sentry::Level::Warning),
    );
}
