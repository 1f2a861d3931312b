//! Domain events: their public names, versioned payloads and the JSON envelope
//! they travel in (DESIGN.md, "Events"). Names are a public contract; a
//! consumer accepts the versions it knows and refuses the rest with a reason.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::{RawValue, to_raw_value};
use uuid::Uuid;

/// Every event type Atelier knows, by its public name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "sale.created")]
    SaleCreated,
    #[serde(rename = "production.created")]
    ProductionCreated,
    #[serde(rename = "production.step.completed")]
    StepCompleted,
    #[serde(rename = "production.completed")]
    ProductionCompleted,
    #[serde(rename = "payment.received")]
    PaymentReceived,
    #[serde(rename = "order.ready")]
    OrderReady,
    #[serde(rename = "social.message.received")]
    SocialMessageReceived,
    /// Internal: the canary's round trip through the broker and the daemon.
    #[serde(rename = "system.ping")]
    SystemPing,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::SaleCreated,
        EventType::ProductionCreated,
        EventType::StepCompleted,
        EventType::ProductionCompleted,
        EventType::PaymentReceived,
        EventType::OrderReady,
        EventType::SocialMessageReceived,
        EventType::SystemPing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SaleCreated => "sale.created",
            EventType::ProductionCreated => "production.created",
            EventType::StepCompleted => "production.step.completed",
            EventType::ProductionCompleted => "production.completed",
            EventType::PaymentReceived => "payment.received",
            EventType::OrderReady => "order.ready",
            EventType::SocialMessageReceived => "social.message.received",
            EventType::SystemPing => "system.ping",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The payload versions this build understands.
    pub fn known_versions(self) -> &'static [u32] {
        &[1]
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleLineData {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub requires_production: bool,
}

/// `sale.created` v1: a sale became final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleCreated {
    pub sale_id: i64,
    pub invoice_no: String,
    pub customer_id: Option<i64>,
    pub location_id: Option<i64>,
    pub channel: String,
    pub total_minor: i64,
    pub currency: String,
    pub lines: Vec<SaleLineData>,
}

/// `production.created` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductionCreated {
    pub order_id: i64,
    pub order_no: String,
    pub sale_id: Option<i64>,
    pub invoice_no: Option<String>,
    pub steps: Vec<String>,
}

/// `production.step.completed` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCompleted {
    pub step_id: i64,
    pub order_id: i64,
    pub order_no: String,
    pub name: String,
    pub cost_minor: i64,
    pub currency: String,
    pub completed_at: DateTime<Utc>,
}

/// `production.completed` v1 and `order.ready` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCompleted {
    pub order_id: i64,
    pub order_no: String,
    pub sale_id: Option<i64>,
    pub invoice_no: Option<String>,
    pub total_cost_minor: i64,
}

/// `payment.received` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceived {
    pub payment_id: i64,
    pub sale_id: i64,
    pub invoice_no: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// `social.message.received` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocialMessageReceived {
    pub message_id: i64,
    pub channel_id: i64,
    pub channel_type: String,
    pub phone: Option<String>,
    pub text: String,
    pub provider_message_id: Option<String>,
}

/// `system.ping` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemPing {
    pub ping_id: Uuid,
}

/// An event with its typed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    SaleCreated(SaleCreated),
    ProductionCreated(ProductionCreated),
    StepCompleted(StepCompleted),
    ProductionCompleted(OrderCompleted),
    PaymentReceived(PaymentReceived),
    OrderReady(OrderCompleted),
    SocialMessageReceived(SocialMessageReceived),
    SystemPing(SystemPing),
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::SaleCreated(_) => EventType::SaleCreated,
            Event::ProductionCreated(_) => EventType::ProductionCreated,
            Event::StepCompleted(_) => EventType::StepCompleted,
            Event::ProductionCompleted(_) => EventType::ProductionCompleted,
            Event::PaymentReceived(_) => EventType::PaymentReceived,
            Event::OrderReady(_) => EventType::OrderReady,
            Event::SocialMessageReceived(_) => EventType::SocialMessageReceived,
            Event::SystemPing(_) => EventType::SystemPing,
        }
    }

    fn data(&self) -> Box<RawValue> {
        let v = match self {
            Event::SaleCreated(d) => to_raw_value(d),
            Event::ProductionCreated(d) => to_raw_value(d),
            Event::StepCompleted(d) => to_raw_value(d),
            Event::ProductionCompleted(d) | Event::OrderReady(d) => to_raw_value(d),
            Event::PaymentReceived(d) => to_raw_value(d),
            Event::SocialMessageReceived(d) => to_raw_value(d),
            Event::SystemPing(d) => to_raw_value(d),
        };
        // Plain structs of strings and numbers always serialize.
        v.unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default())
    }
}

/// Where an event comes from and what caused it, carried into the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub producer: &'static str,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

impl Origin {
    /// A new chain of events (an API request, a CLI command).
    pub fn new(producer: &'static str) -> Self {
        Origin { producer, correlation_id: Uuid::now_v7(), causation_id: None }
    }

    /// Events raised while handling `cause`: same correlation, caused by it.
    pub fn caused_by(producer: &'static str, cause: &Envelope) -> Self {
        Origin { producer, correlation_id: cause.correlation_id, causation_id: Some(cause.id) }
    }
}

/// The JSON envelope every event travels in. `data` stays raw JSON until
/// [`Envelope::event`] reads it into its typed payload: a consumer parses the
/// payload once, straight into the type it knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub business_id: Option<i64>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub producer: String,
    pub data: Box<RawValue>,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.event_type == other.event_type
            && self.version == other.version
            && self.occurred_at == other.occurred_at
            && self.business_id == other.business_id
            && self.correlation_id == other.correlation_id
            && self.causation_id == other.causation_id
            && self.producer == other.producer
            && self.data.get() == other.data.get()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    #[error("{event_type} version {version} is not supported (this build knows {known:?})")]
    UnknownVersion { event_type: String, version: u32, known: &'static [u32] },
    #[error("invalid {event_type} v{version} data: {reason}")]
    InvalidData { event_type: String, version: u32, reason: String },
}

impl Envelope {
    pub fn new(event: &Event, business_id: Option<i64>, origin: &Origin, now: DateTime<Utc>) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            event_type: event.event_type().as_str().to_owned(),
            version: 1,
            occurred_at: now,
            business_id,
            correlation_id: origin.correlation_id,
            causation_id: origin.causation_id,
            producer: origin.producer.to_owned(),
            data: event.data(),
        }
    }

    /// Parses an envelope from a message body. The payload stays raw until [`Envelope::event`].
    pub fn decode(body: &[u8]) -> Result<Envelope, EventError> {
        serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))
    }

    pub fn encode(&self) -> Vec<u8> {
        // An Envelope is plain data: serializing it cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The typed event, when this build knows the type and version.
    pub fn event(&self) -> Result<Event, EventError> {
        let ty = EventType::parse(&self.event_type).ok_or_else(|| EventError::UnknownType(self.event_type.clone()))?;
        if !ty.known_versions().contains(&self.version) {
            return Err(EventError::UnknownVersion {
                event_type: self.event_type.clone(),
                version: self.version,
                known: ty.known_versions(),
            });
        }
        Ok(match ty {
            EventType::SaleCreated => Event::SaleCreated(self.payload()?),
            EventType::ProductionCreated => Event::ProductionCreated(self.payload()?),
            EventType::StepCompleted => Event::StepCompleted(self.payload()?),
            EventType::ProductionCompleted => Event::ProductionCompleted(self.payload()?),
            EventType::PaymentReceived => Event::PaymentReceived(self.payload()?),
            EventType::OrderReady => Event::OrderReady(self.payload()?),
            EventType::SocialMessageReceived => Event::SocialMessageReceived(self.payload()?),
            EventType::SystemPing => Event::SystemPing(self.payload()?),
        })
    }

    /// The envelope as a JSON value (the outbox stores it as `jsonb`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The payload as a JSON value, for inspection (tests, tools).
    pub fn data_json(&self) -> serde_json::Value {
        serde_json::from_str(self.data.get()).unwrap_or_default()
    }

    /// Reads an envelope back from its JSON value (an outbox row).
    pub fn from_json(value: &serde_json::Value) -> Result<Envelope, EventError> {
        Envelope::decode(value.to_string().as_bytes())
    }

    fn payload<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        serde_json::from_str(self.data.get()).map_err(|e| EventError::InvalidData {
            event_type: self.event_type.clone(),
            version: self.version,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> Event {
        Event::SystemPing(SystemPing { ping_id: Uuid::nil() })
    }

    #[test]
    fn envelopes_round_trip() {
        let env = Envelope::new(&ping(), Some(1), &Origin::new("test"), Utc::now());
        let back = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.event().unwrap(), ping());
        assert_eq!(env.event_type, "system.ping");
    }

    #[test]
    fn the_wire_format_has_the_documented_fields() {
        let env = Envelope::new(&ping(), Some(1), &Origin::new("atelierd/http"), Utc::now());
        let v: serde_json::Value = serde_json::from_slice(&env.encode()).unwrap();
        for key in [
            "id",
            "type",
            "version",
            "occurred_at",
            "business_id",
            "correlation_id",
            "causation_id",
            "producer",
            "data",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn caused_events_keep_the_correlation() {
        let first = Envelope::new(&ping(), None, &Origin::new("a"), Utc::now());
        let next = Envelope::new(&ping(), None, &Origin::caused_by("b", &first), Utc::now());
        assert_eq!(next.correlation_id, first.correlation_id);
        assert_eq!(next.causation_id, Some(first.id));
    }

    #[test]
    fn unknown_types_versions_and_bad_data_are_refused_with_a_reason() {
        assert!(matches!(Envelope::decode(b"{not json"), Err(EventError::Malformed(_))));
        let mut env = Envelope::new(&ping(), None, &Origin::new("t"), Utc::now());
        env.version = 9;
        assert!(matches!(env.event(), Err(EventError::UnknownVersion { version: 9, .. })));
        env.version = 1;
        env.event_type = "sale.deleted".into();
        assert_eq!(env.event(), Err(EventError::UnknownType("sale.deleted".into())));
        env.event_type = "sale.created".into();
        assert!(matches!(env.event(), Err(EventError::InvalidData { .. })));
    }

    #[test]
    fn names_are_the_public_contract() {
        let names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "sale.created",
                "production.created",
                "production.step.completed",
                "production.completed",
                "payment.received",
                "order.ready",
                "social.message.received",
                "system.ping"
            ]
        );
    }
}
