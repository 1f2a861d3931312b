//! The topology of namespace `ns` (DESIGN.md, "Topology"): its names, its
//! idempotent declaration, a `verify` that reports drift, and deletion (tests).
//!
//! - `{ns}.events`: topic exchange, routing key = event type;
//! - `{ns}.q.{handler}`: quorum queue bound to the handler's event types,
//!   dead-lettering at least once to `{ns}.dead`, with a delivery limit;
//! - `{ns}.q.{handler}.retry.{n}`: quorum queue per retry level n with
//!   `x-message-ttl` = delay n, dead-lettering back to `{ns}.q.{handler}`;
//! - `{ns}.dead`: fanout exchange; `{ns}.dlq`: quorum queue bound to it.
//!
//! Drift is found with the broker's own rules: a passive declare answers 404
//! for a missing name, and a redeclare with other arguments is refused with
//! 406 PRECONDITION_FAILED. A refused declare closes its channel, so each
//! check runs on a fresh one. Bindings cannot be read over AMQP: `apply`
//! (re)binds, `verify` does not check them.

use super::{BusError, handlers};
use crate::config::{RetryPolicy, Settings};
use crate::events::EventType;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use serde::Serialize;
use std::time::Duration;

/// One handler's part of the topology.
#[derive(Debug, Clone)]
pub struct HandlerSpec {
    pub name: String,
    pub event_types: Vec<EventType>,
    pub retry: RetryPolicy,
}

/// The whole topology of one namespace.
#[derive(Debug, Clone)]
pub struct Topology {
    pub ns: String,
    pub handlers: Vec<HandlerSpec>,
    pub delivery_limit: u32,
}

/// One thing that differs between the broker and what this build declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum Drift {
    Missing { kind: &'static str, name: String },
    Differs { kind: &'static str, name: String, detail: String },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::Missing { kind, name } => write!(f, "{kind} {name} is missing"),
            Drift::Differs { kind, name, detail } => write!(f, "{kind} {name} differs: {detail}"),
        }
    }
}

/// A declaration: what `apply` creates and `verify` checks.
#[derive(Debug, Clone)]
pub enum Declaration {
    Exchange { name: String, kind: ExchangeKind },
    Queue { name: String, args: FieldTable },
    Binding { queue: String, exchange: String, key: String },
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

fn int(v: u64) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Topology {
    /// The topology for `handlers` (name, event types) in the configured namespace.
    pub fn new(settings: &Settings, handlers: &[(&str, &[EventType])]) -> Topology {
        Topology {
            ns: settings.amqp.namespace.clone(),
            handlers: handlers
                .iter()
                .map(|(name, types)| HandlerSpec {
                    name: (*name).to_owned(),
                    event_types: types.to_vec(),
                    retry: settings.retry_for(name),
                })
                .collect(),
            delivery_limit: settings.amqp.delivery_limit,
        }
    }

    /// The topology of this build's standard handlers (the registry, [`handlers::STANDARD`]).
    pub fn standard(settings: &Settings) -> Topology {
        let specs: Vec<(&str, &[EventType])> = handlers::STANDARD.iter().map(|b| (b.name, b.event_types)).collect();
        Topology::new(settings, &specs)
    }

    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.ns)
    }

    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.ns)
    }

    pub fn dlq(&self) -> String {
        format!("{}.dlq", self.ns)
    }

    pub fn handler_queue(&self, handler: &str) -> String {
        format!("{}.q.{handler}", self.ns)
    }

    pub fn retry_queue(&self, handler: &str, level: u32) -> String {
        format!("{}.q.{handler}.retry.{level}", self.ns)
    }

    pub fn handler(&self, name: &str) -> Option<&HandlerSpec> {
        self.handlers.iter().find(|h| h.name == name)
    }

    /// Everything to declare, in an order that works: exchanges, queues, bindings.
    pub fn declarations(&self) -> Vec<Declaration> {
        let mut out = vec![
            Declaration::Exchange { name: self.events_exchange(), kind: ExchangeKind::Topic },
            Declaration::Exchange { name: self.dead_exchange(), kind: ExchangeKind::Fanout },
        ];
        let mut dlq = FieldTable::default();
        dlq.insert("x-queue-type".into(), s("quorum"));
        out.push(Declaration::Queue { name: self.dlq(), args: dlq });
        out.push(Declaration::Binding { queue: self.dlq(), exchange: self.dead_exchange(), key: String::new() });
        for h in &self.handlers {
            let queue = self.handler_queue(&h.name);
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), s("quorum"));
            args.insert("x-dead-letter-exchange".into(), s(&self.dead_exchange()));
            args.insert("x-dead-letter-strategy".into(), s("at-least-once"));
            args.insert("x-overflow".into(), s("reject-publish"));
            args.insert("x-delivery-limit".into(), int(self.delivery_limit.into()));
            out.push(Declaration::Queue { name: queue.clone(), args });
            for level in 1..=h.retry.max_retries {
                let mut args = FieldTable::default();
                args.insert("x-queue-type".into(), s("quorum"));
                let ttl = u64::try_from(h.retry.delay(level).as_millis()).unwrap_or(u64::MAX);
                args.insert("x-message-ttl".into(), int(ttl));
                args.insert("x-dead-letter-exchange".into(), s(""));
                args.insert("x-dead-letter-routing-key".into(), s(&queue));
                args.insert("x-dead-letter-strategy".into(), s("at-least-once"));
                args.insert("x-overflow".into(), s("reject-publish"));
                out.push(Declaration::Queue { name: self.retry_queue(&h.name, level), args });
            }
            for t in &h.event_types {
                out.push(Declaration::Binding {
                    queue: queue.clone(),
                    exchange: self.events_exchange(),
                    key: t.as_str().to_owned(),
                });
            }
        }
        out
    }

    /// Every queue name, for deletion and listings.
    pub fn queue_names(&self) -> Vec<String> {
        self.declarations()
            .into_iter()
            .filter_map(|d| match d {
                Declaration::Queue { name, .. } => Some(name),
                _ => None,
            })
            .collect()
    }

    /// Declares everything (idempotent). Fails with the broker's reason when
    /// something exists with other arguments (406): `verify` says what.
    pub async fn apply(&self, conn: &Connection, timeout: Duration) -> Result<(), BusError> {
        let ch = channel(conn, timeout).await?;
        for d in self.declarations() {
            with_timeout(timeout, "declare", declare(&ch, &d, false)).await?;
        }
        let _ = ch.close(200, "OK".into()).await;
        Ok(())
    }

    /// What differs between the broker and this topology (empty: no drift).
    pub async fn verify(&self, conn: &Connection, timeout: Duration) -> Result<Vec<Drift>, BusError> {
        let mut drift = Vec::new();
        for d in self.declarations() {
            let (kind, name) = match &d {
                Declaration::Exchange { name, .. } => ("exchange", name.clone()),
                Declaration::Queue { name, .. } => ("queue", name.clone()),
                Declaration::Binding { .. } => continue,
            };
            // Exists? A passive declare on a fresh channel (a 404 closes it).
            let ch = channel(conn, timeout).await?;
            match with_timeout(timeout, "passive declare", declare(&ch, &d, true)).await {
                Ok(()) => {}
                Err(e) if e.reply_code() == Some(404) => {
                    drift.push(Drift::Missing { kind, name });
                    continue;
                }
                Err(e) => return Err(e),
            }
            let _ = ch.close(200, "OK".into()).await;
            // Same arguments? A full redeclare is refused with 406 otherwise.
            let ch = channel(conn, timeout).await?;
            match with_timeout(timeout, "declare", declare(&ch, &d, false)).await {
                Ok(()) => {
                    let _ = ch.close(200, "OK".into()).await;
                }
                Err(e) if e.reply_code() == Some(406) => {
                    let detail = match &e {
                        BusError::Amqp(a) => match a.kind() {
                            lapin::ErrorKind::ProtocolError(p) => p.get_message().to_string(),
                            _ => a.to_string(),
                        },
                        other => other.to_string(),
                    };
                    drift.push(Drift::Differs { kind, name, detail });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(drift)
    }

    /// Whether the broker has the queue `name` (a passive declare on a fresh
    /// channel; a 404 closes that channel only). A message published through
    /// the default exchange to a queue that does not exist is dropped by the
    /// broker and still confirmed, so a publisher that must not lose it asks first.
    pub async fn queue_exists(&self, conn: &Connection, name: &str, timeout: Duration) -> Result<bool, BusError> {
        let ch = channel(conn, timeout).await?;
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let declared = ch.queue_declare(name.into(), passive, lapin::types::FieldTable::default());
        match with_timeout(timeout, "passive declare", async { declared.await.map_err(BusError::from) }).await {
            Ok(_) => {
                let _ = ch.close(200, "OK".into()).await;
                Ok(true)
            }
            Err(e) if e.reply_code() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes every queue and exchange of this topology (tests, teardown).
    pub async fn delete(&self, conn: &Connection, timeout: Duration) -> Result<(), BusError> {
        for d in self.declarations() {
            let ch = channel(conn, timeout).await?;
            let r = match &d {
                Declaration::Queue { name, .. } => {
                    with_timeout(timeout, "queue delete", async {
                        ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default()).await.map(|_| ())?;
                        Ok(())
                    })
                    .await
                }
                Declaration::Exchange { name, .. } => {
                    with_timeout(timeout, "exchange delete", async {
                        ch.exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default()).await?;
                        Ok(())
                    })
                    .await
                }
                Declaration::Binding { .. } => Ok(()),
            };
            match r {
                Ok(()) => {
                    let _ = ch.close(200, "OK".into()).await;
                }
                Err(e) if e.reply_code() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

pub(super) async fn channel(conn: &Connection, timeout: Duration) -> Result<Channel, BusError> {
    with_timeout(timeout, "opening a channel", async { Ok(conn.create_channel().await?) }).await
}

pub(super) async fn with_timeout<T>(
    timeout: Duration,
    op: &'static str,
    f: impl std::future::Future<Output = Result<T, BusError>>,
) -> Result<T, BusError> {
    tokio::time::timeout(timeout, f).await.map_err(|_| BusError::Timeout { op, timeout })?
}

pub(super) async fn declare(ch: &Channel, d: &Declaration, passive: bool) -> Result<(), BusError> {
    match d {
        Declaration::Exchange { name, kind } => {
            let opts = ExchangeDeclareOptions { passive, durable: true, ..Default::default() };
            ch.exchange_declare(name.as_str().into(), kind.clone(), opts, FieldTable::default()).await?;
        }
        Declaration::Queue { name, args } => {
            let opts = QueueDeclareOptions { passive, durable: true, ..Default::default() };
            ch.queue_declare(name.as_str().into(), opts, args.clone()).await?;
        }
        Declaration::Binding { queue, exchange, key } => {
            if !passive {
                ch.queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../environments");
        crate::config::load_with(&dir, "dev", &[("ATELIER__AMQP__NAMESPACE".into(), "ns1".into())]).unwrap().settings
    }

    #[test]
    fn names_follow_the_design() {
        let t = Topology::standard(&settings());
        assert_eq!(t.events_exchange(), "ns1.events");
        assert_eq!(t.dead_exchange(), "ns1.dead");
        assert_eq!(t.dlq(), "ns1.dlq");
        assert_eq!(t.handler_queue("production"), "ns1.q.production");
        assert_eq!(t.retry_queue("production", 2), "ns1.q.production.retry.2");
        let queues = t.queue_names();
        // dlq + 5 handlers × (1 + 3 retry levels)
        assert_eq!(queues.len(), 1 + 5 * 4, "{queues:?}");
    }

    #[test]
    fn retry_queues_expire_back_into_their_handler_queue() {
        let t = Topology::standard(&settings());
        let d = t.declarations();
        let args = d
            .iter()
            .find_map(|d| match d {
                Declaration::Queue { name, args } if name == "ns1.q.accounting.retry.2" => Some(args.clone()),
                _ => None,
            })
            .unwrap();
        let ttl = t.handler("accounting").unwrap().retry.delay(2).as_millis() as i64;
        assert_eq!(args.inner().get("x-message-ttl"), Some(&AMQPValue::LongLongInt(ttl)));
        assert_eq!(args.inner().get("x-dead-letter-routing-key"), Some(&s("ns1.q.accounting")));
        assert_eq!(args.inner().get("x-dead-letter-exchange"), Some(&s("")));
    }
}
