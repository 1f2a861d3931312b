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
    pub fn caused_by<D>(producer: &'static str, cause: &Envelope<D>) -> Self {
        Origin { producer, correlation_id: cause.correlation_id, causation_id: Some(cause.id) }
    }
}

/// The JSON envelope every event travels in. On the wire and in the outbox
/// `data` is raw JSON (`Envelope`); a consumer reads a body with
/// [`Envelope::decode_event`] into `Envelope<Event>`, the payload parsed in
/// the same pass straight into its type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<D = Box<RawValue>> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    pub business_id: Option<i64>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub producer: String,
    pub data: D,
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

impl EventError {
    /// The event type named by the body, when it got that far.
    pub fn event_type(&self) -> Option<&str> {
        match self {
            EventError::Malformed(_) => None,
            EventError::UnknownType(t) => Some(t),
            EventError::UnknownVersion { event_type, .. } | EventError::InvalidData { event_type, .. } => {
                Some(event_type)
            }
        }
    }

    /// A stable name for the failure, part of a dead letter's fingerprint.
    pub fn kind(&self) -> &'static str {
        match self {
            EventError::Malformed(_) => "malformed",
            EventError::UnknownType(_) => "unknown_type",
            EventError::UnknownVersion { .. } => "unknown_version",
            EventError::InvalidData { .. } => "invalid_data",
        }
    }
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

    /// Reads a message body into its envelope and typed payload in one pass
    /// (the payload is not scanned twice, as `decode` then `event` would).
    /// The errors are the same as theirs: `Malformed` for a body that is not
    /// an envelope, then `UnknownType`, `UnknownVersion` or `InvalidData`.
    pub fn decode_event(body: &[u8]) -> Result<Envelope<Event>, EventError> {
        let failure = std::cell::RefCell::new(None);
        let mut de = serde_json::Deserializer::from_slice(body);
        let read = serde::de::DeserializeSeed::deserialize(typed::EnvelopeSeed(&failure), &mut de)
            .and_then(|env| de.end().map(|()| env));
        match read {
            Ok(Ok(env)) => Ok(env),
            // The payload's type or version is unknown (the body was read to the end).
            Ok(Err(e)) => Err(Self::classify(body, e)),
            // A payload that parses as JSON but not as its type; a syntax error is malformed.
            Err(e) if e.is_data() => {
                Err(Self::classify(body, failure.into_inner().unwrap_or(EventError::Malformed(e.to_string()))))
            }
            Err(e) => Err(Self::classify(body, EventError::Malformed(e.to_string()))),
        }
    }

    /// The one-pass reading stops at the first payload it cannot type, so a
    /// body that is also broken further on (a syntax error after `data`)
    /// would be called `invalid_data`/`unknown_*` where `decode` then
    /// `event` call it `malformed`, and a number out of range in `data` the
    /// other way round (both found by the event fuzz targets).
    /// Only failures come here: the whole body is read again and its
    /// two-step error wins, so both readings always agree.
    fn classify(body: &[u8], first: EventError) -> EventError {
        match Envelope::decode(body) {
            Err(e) => e,
            Ok(env) => env.event().err().unwrap_or(first),
        }
    }

    fn payload<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        serde_json::from_str(self.data.get()).map_err(|e| EventError::InvalidData {
            event_type: self.event_type.clone(),
            version: self.version,
            reason: e.to_string(),
        })
    }
}

/// The one-pass reading behind [`Envelope::decode_event`]: when `type` and
/// `version` come before `data` (as this crate writes them), `data` is
/// parsed straight into its type; otherwise it is kept raw and parsed after.
mod typed {
    use super::{DateTime, Envelope, Event, EventError, EventType, RawValue, Utc, Uuid};
    use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::cell::RefCell;
    use std::fmt;

    /// Where a payload that failed to parse as its type records why.
    type Failure<'f> = &'f RefCell<Option<EventError>>;

    pub(super) struct EnvelopeSeed<'f>(pub(super) Failure<'f>);

    /// `Ok(Err(..))`: the envelope was read but its payload's type or version is unknown.
    type Read = Result<Envelope<Event>, EventError>;

    impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
        type Value = Read;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Read, D::Error> {
            d.deserialize_map(self)
        }
    }

    /// The payload of a known type and version, with its failure recorded.
    struct PayloadSeed<'f> {
        ty: EventType,
        event_type: &'f str,
        version: u32,
        failure: Failure<'f>,
    }

    impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
        type Value = Event;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
            use serde::Deserialize;
            let event = match self.ty {
                EventType::SaleCreated => Deserialize::deserialize(d).map(Event::SaleCreated),
                EventType::ProductionCreated => Deserialize::deserialize(d).map(Event::ProductionCreated),
                EventType::StepCompleted => Deserialize::deserialize(d).map(Event::StepCompleted),
                EventType::ProductionCompleted => Deserialize::deserialize(d).map(Event::ProductionCompleted),
                EventType::PaymentReceived => Deserialize::deserialize(d).map(Event::PaymentReceived),
                EventType::OrderReady => Deserialize::deserialize(d).map(Event::OrderReady),
                EventType::SocialMessageReceived => Deserialize::deserialize(d).map(Event::SocialMessageReceived),
                EventType::SystemPing => Deserialize::deserialize(d).map(Event::SystemPing),
            };
            event.inspect_err(|e: &D::Error| {
                *self.failure.borrow_mut() = Some(EventError::InvalidData {
                    event_type: self.event_type.to_owned(),
                    version: self.version,
                    reason: e.to_string(),
                });
            })
        }
    }

    /// The payload's type and version, or why they are refused.
    fn known(event_type: &str, version: u32) -> Result<EventType, EventError> {
        let ty = EventType::parse(event_type).ok_or_else(|| EventError::UnknownType(event_type.to_owned()))?;
        if !ty.known_versions().contains(&version) {
            return Err(EventError::UnknownVersion {
                event_type: event_type.to_owned(),
                version,
                known: ty.known_versions(),
            });
        }
        Ok(ty)
    }

    enum Data {
        Typed(Event),
        Raw(Box<RawValue>),
        Refused(EventError),
    }

    impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
        type Value = Read;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an event envelope (a JSON object)")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read, A::Error> {
            let mut id: Option<Uuid> = None;
            let mut event_type: Option<String> = None;
            let mut version: Option<u32> = None;
            let mut occurred_at: Option<DateTime<Utc>> = None;
            let mut business_id: Option<i64> = None;
            let mut correlation_id: Option<Uuid> = None;
            let mut causation_id: Option<Uuid> = None;
            let mut producer: Option<String> = None;
            let mut data: Option<Data> = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match key.as_ref() {
                    "id" => id = Some(map.next_value()?),
                    "type" => event_type = Some(map.next_value()?),
                    "version" => version = Some(map.next_value()?),
                    "occurred_at" => occurred_at = Some(map.next_value()?),
                    "business_id" => business_id = map.next_value()?,
                    "correlation_id" => correlation_id = Some(map.next_value()?),
                    "causation_id" => causation_id = map.next_value()?,
                    "producer" => producer = Some(map.next_value()?),
                    "data" => {
                        data = Some(match (&event_type, version) {
                            (Some(t), Some(v)) => match known(t, v) {
                                Ok(ty) => Data::Typed(map.next_value_seed(PayloadSeed {
                                    ty,
                                    event_type: t,
                                    version: v,
                                    failure: self.0,
                                })?),
                                Err(e) => {
                                    map.next_value::<IgnoredAny>()?;
                                    Data::Refused(e)
                                }
                            },
                            _ => Data::Raw(map.next_value()?),
                        })
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let missing = |field: &'static str| de::Error::missing_field(field);
            let raw = Envelope {
                id: id.ok_or_else(|| missing("id"))?,
                event_type: event_type.ok_or_else(|| missing("type"))?,
                version: version.ok_or_else(|| missing("version"))?,
                occurred_at: occurred_at.ok_or_else(|| missing("occurred_at"))?,
                business_id,
                correlation_id: correlation_id.ok_or_else(|| missing("correlation_id"))?,
                causation_id,
                producer: producer.ok_or_else(|| missing("producer"))?,
                data: (),
            };
            let event = match data.ok_or_else(|| missing("data"))? {
                Data::Typed(event) => event,
                Data::Refused(e) => return Ok(Err(e)),
                // `data` came before `type` or `version`: parse it now.
                Data::Raw(data) => match raw.clone().with_data(data).event() {
                    Ok(event) => event,
                    Err(e) => return Ok(Err(e)),
                },
            };
            Ok(Ok(raw.with_data(event)))
        }
    }

    impl Envelope<()> {
        fn with_data<D>(self, data: D) -> Envelope<D> {
            Envelope {
                id: self.id,
                event_type: self.event_type,
                version: self.version,
                occurred_at: self.occurred_at,
                business_id: self.business_id,
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
                producer: self.producer,
                data,
            }
        }
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

    fn sale() -> Event {
        Event::SaleCreated(SaleCreated {
            sale_id: 5,
            invoice_no: "INV-202611-000001".into(),
            customer_id: None,
            location_id: Some(2),
            channel: "walk_in".into(),
            total_minor: 2500,
            currency: "USD".into(),
            lines: vec![SaleLineData { product_id: 3, quantity: 2, unit_price_minor: 1250, requires_production: true }],
        })
    }

    /// `decode_event` in one pass agrees with `decode` then `event`, on every path.
    #[test]
    fn one_pass_decoding_agrees_with_decode_then_event() {
        let env = Envelope::new(&sale(), Some(4), &Origin::new("t"), Utc::now());
        let typed = Envelope::decode_event(&env.encode()).unwrap();
        assert_eq!((typed.id, typed.business_id, typed.occurred_at), (env.id, env.business_id, env.occurred_at));
        assert_eq!(typed.data, sale());

        // Another producer may write `data` first: it is parsed after the rest.
        let mut v = env.to_json();
        let data = v.as_object_mut().unwrap().remove("data").unwrap();
        let reordered = format!("{{\"data\":{data},{}", &v.to_string()[1..]);
        assert!(reordered.starts_with("{\"data\""));
        assert_eq!(Envelope::decode_event(reordered.as_bytes()).unwrap().data, sale());

        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = env.to_json();
            f(&mut v);
            Envelope::decode_event(v.to_string().as_bytes())
        };
        assert_eq!(with(&|v| v["version"] = 9.into()).unwrap_err().kind(), "unknown_version");
        let unknown = with(&|v| v["type"] = "sale.deleted".into()).unwrap_err();
        assert_eq!(unknown, EventError::UnknownType("sale.deleted".into()));
        assert_eq!(unknown.event_type(), Some("sale.deleted"));
        let invalid = with(&|v| v["data"]["sale_id"] = "five".into()).unwrap_err();
        assert!(matches!(&invalid, EventError::InvalidData { event_type, .. } if event_type == "sale.created"));
        assert!(invalid.to_string().contains("sale_id") || invalid.to_string().contains("invalid type"), "{invalid}");
        assert_eq!(with(&|v| _ = v.as_object_mut().unwrap().remove("producer")).unwrap_err().kind(), "malformed");
        assert_eq!(with(&|v| _ = v.as_object_mut().unwrap().remove("data")).unwrap_err().kind(), "malformed");
        // Unknown envelope fields are ignored, as by `decode`.
        assert!(with(&|v| v["extra"] = true.into()).is_ok());

        for bad in [&b"{not json"[..], b"[]", b"", b"{\"id\":1}"] {
            assert_eq!(Envelope::decode_event(bad).unwrap_err().kind(), "malformed", "{bad:?}");
        }
        // A syntax error inside the payload is malformed, not invalid data.
        let body = String::from_utf8(env.encode()).unwrap();
        let broken = body.replace("\"sale_id\":5", "\"sale_id\":5,,");
        assert_ne!(broken, body);
        assert_eq!(Envelope::decode_event(broken.as_bytes()).unwrap_err().kind(), "malformed");
        // Trailing bytes after the envelope are malformed.
        assert_eq!(Envelope::decode_event(format!("{body} x").as_bytes()).unwrap_err().kind(), "malformed");
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
