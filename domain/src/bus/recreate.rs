//! Recreating one queue of the topology with this build's arguments, keeping
//! its messages (`atelier topology apply --recreate QUEUE`). RabbitMQ refuses
//! to redeclare a queue with other arguments (406), and quorum queues cannot
//! be deleted "if empty", so the way through is:
//!
//! 1. refuse while a consumer is attached (a running atelierd would take
//!    messages while they move, and a deleted queue cancels its consumers);
//! 2. unbind the queue from `{ns}.events`, so no new event lands in it;
//! 3. move every message to `{queue}.recreate` (a durable quorum queue):
//!    `basic.get`, publish with a publisher confirm, and only then ack;
//! 4. delete the queue once a passive declare says it is empty and unused,
//!    declare it with this build's arguments and bind it again;
//! 5. move the messages back the same way and delete the temporary queue.
//!
//! A message is acked in its old queue only after the broker confirmed its
//! copy, so a failure part-way loses none (at worst one is in both queues,
//! and the handler's `processed_events` keeps its effects single). Running
//! the command again resumes: whatever waits in `{queue}.recreate` is moved
//! back after the redeclare. Properties and headers travel unchanged.

use super::BusError;
use super::publish::{confirm_channel, publish_confirmed};
use super::topology::{Declaration, Topology, channel, declare, with_timeout};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use serde::Serialize;
use std::time::Duration;

/// Why a queue was not recreated.
#[derive(Debug, thiserror::Error)]
pub enum RecreateError {
    #[error("'{name}' is not a queue of this topology; its queues are: {known}")]
    NotInTopology { name: String, known: String },
    #[error(
        "queue {queue} has {consumers} consumer(s) attached: stop the atelierd processes that consume it \
         (their events role), then run this again"
    )]
    ConsumersAttached { queue: String, consumers: u32 },
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// What a recreate did.
#[derive(Debug, Clone, Serialize)]
pub struct Recreated {
    pub queue: String,
    /// The temporary queue the messages waited in (deleted at the end).
    pub temporary: String,
    /// Whether the queue existed before (a missing one is simply declared).
    pub existed: bool,
    /// Messages moved out of the queue.
    pub moved_out: u64,
    /// Messages moved back (more than `moved_out` when an interrupted run
    /// had left some in the temporary queue).
    pub moved_back: u64,
}

/// A passive declare on a fresh channel: `Some((messages, consumers))`, or
/// `None` when the queue does not exist (the 404 closes that channel only).
async fn inspect(conn: &Connection, name: &str, timeout: Duration) -> Result<Option<(u32, u32)>, BusError> {
    let ch = channel(conn, timeout).await?;
    let passive = QueueDeclareOptions { passive: true, durable: true, ..Default::default() };
    let declared = with_timeout(timeout, "passive declare", async {
        Ok(ch.queue_declare(name.into(), passive, FieldTable::default()).await?)
    })
    .await;
    match declared {
        Ok(q) => {
            let _ = ch.close(200, "OK".into()).await;
            Ok(Some((q.message_count(), q.consumer_count())))
        }
        Err(e) if e.reply_code() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Moves every message of `from` to `to` through the default exchange: each
/// is acked in `from` only once the broker confirmed its copy in `to`.
/// `progress(done)` is called after each one.
async fn move_all(
    get: &Channel,
    publish: &Channel,
    from: &str,
    to: &str,
    timeout: Duration,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, BusError> {
    let mut moved = 0;
    loop {
        let got = with_timeout(timeout, "basic.get", async {
            Ok(get.basic_get(from.into(), BasicGetOptions { no_ack: false }).await?)
        })
        .await?;
        let Some(message) = got else { break };
        let delivery = message.delivery;
        publish_confirmed(publish, "", to, &delivery.data, delivery.properties.clone(), timeout).await?;
        let acked =
            with_timeout(timeout, "ack", async { Ok(delivery.acker.ack(BasicAckOptions::default()).await?) }).await?;
        if !acked {
            // The channel closed: the broker will requeue it in `from`; its
            // copy in `to` is confirmed, so nothing is lost. Stop here.
            return Err(BusError::Timeout { op: "ack (channel closed)", timeout });
        }
        moved += 1;
        progress(moved);
    }
    Ok(moved)
}

impl Topology {
    /// Queue `name`'s ready messages and consumers (a passive declare), or
    /// None when it does not exist.
    pub async fn queue_counts(
        conn: &Connection,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<(u32, u32)>, BusError> {
        inspect(conn, name, timeout).await
    }

    /// The temporary queue `recreate_queue` parks `queue`'s messages in.
    pub fn recreate_temporary(queue: &str) -> String {
        format!("{queue}.recreate")
    }

    /// Recreates queue `name` with this build's arguments and keeps its
    /// messages (see the module's comment). `progress(phase, done, total)`
    /// reports the moves: phase `out` then `back`, `total` as the broker
    /// counted when the phase began.
    pub async fn recreate_queue(
        &self,
        conn: &Connection,
        name: &str,
        timeout: Duration,
        progress: &mut dyn FnMut(&'static str, u64, u64),
    ) -> Result<Recreated, RecreateError> {
        let declarations = self.declarations();
        let Some(wanted) = declarations.iter().find(|d| matches!(d, Declaration::Queue { name: n, .. } if n == name))
        else {
            return Err(RecreateError::NotInTopology { name: name.to_owned(), known: self.queue_names().join(", ") });
        };
        let bindings: Vec<&Declaration> =
            declarations.iter().filter(|d| matches!(d, Declaration::Binding { queue, .. } if queue == name)).collect();
        let temporary = Self::recreate_temporary(name);
        let get = channel(conn, timeout).await?;
        let publish = confirm_channel(conn, timeout).await?;

        let mut temp_args = FieldTable::default();
        temp_args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        let temp = Declaration::Queue { name: temporary.clone(), args: temp_args };

        let existed = inspect(conn, name, timeout).await?.is_some();
        let mut moved_out = 0;
        if existed {
            with_timeout(timeout, "declare", declare(&get, &temp, false)).await?;
            // The exchanges first (idempotent), so unbinding never meets a missing one.
            for d in declarations.iter().filter(|d| matches!(d, Declaration::Exchange { .. })) {
                with_timeout(timeout, "declare", declare(&get, d, false)).await?;
            }
            for b in &bindings {
                if let Declaration::Binding { queue, exchange, key } = b {
                    let unbind = get.queue_unbind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        key.as_str().into(),
                        FieldTable::default(),
                    );
                    with_timeout(timeout, "unbind", async { Ok(unbind.await?) }).await?;
                }
            }
            // Move until a passive declare finds it empty and unused: a
            // message that arrived meanwhile (a retry coming back) moves too.
            // The broker's count can trail the acks for a moment: a count
            // with nothing to get is looked at again, for up to 30 s.
            let patience = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let Some((messages, consumers)) = inspect(conn, name, timeout).await? else { break };
                if consumers > 0 {
                    return Err(RecreateError::ConsumersAttached { queue: name.to_owned(), consumers });
                }
                if messages == 0 {
                    let delete = get.queue_delete(name.into(), QueueDeleteOptions::default());
                    with_timeout(timeout, "queue delete", async { Ok(delete.await.map(|_| ())?) }).await?;
                    break;
                }
                let before = moved_out;
                let total = before + u64::from(messages);
                let moved =
                    move_all(&get, &publish, name, &temporary, timeout, &mut |n| progress("out", before + n, total))
                        .await?;
                moved_out += moved;
                if moved == 0 {
                    if tokio::time::Instant::now() > patience {
                        return Err(
                            BusError::Timeout { op: "emptying the queue", timeout: Duration::from_secs(30) }.into()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }

        with_timeout(timeout, "declare", declare(&get, wanted, false)).await?;
        for b in &bindings {
            with_timeout(timeout, "bind", declare(&get, b, false)).await?;
        }

        let mut moved_back = 0;
        if let Some((waiting, _)) = inspect(conn, &temporary, timeout).await? {
            let total = u64::from(waiting);
            moved_back =
                move_all(&get, &publish, &temporary, name, timeout, &mut |n| progress("back", n, total)).await?;
            if let Some((0, 0)) = inspect(conn, &temporary, timeout).await? {
                let delete = get.queue_delete(temporary.as_str().into(), QueueDeleteOptions::default());
                with_timeout(timeout, "queue delete", async { Ok(delete.await.map(|_| ())?) }).await?;
            }
        }
        let _ = tokio::time::timeout(timeout, get.close(200, "OK".into())).await;
        let _ = tokio::time::timeout(timeout, publish.close(200, "OK".into())).await;
        Ok(Recreated { queue: name.to_owned(), temporary, existed, moved_out, moved_back })
    }
}
