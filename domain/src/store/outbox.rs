//! The transactional outbox: business actions insert the events they raise
//! here, in their own transaction; the daemon's relay publishes them through
//! [`relay_batch`], which locks a batch, hands it to the relay's publisher and
//! records what the broker confirmed, all in one transaction. Also the backlog
//! the relay's gauges show.

use super::schema::outbox;
use super::{Conn, StoreError};
use crate::events::{Envelope, Event, Origin};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub business_id: Option<i64>,
    pub envelope: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// Writes `envelope` to the outbox; call it inside the action's transaction.
pub async fn enqueue<C>(conn: &mut C, envelope: &Envelope) -> Result<(), StoreError>
where
    C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg>,
{
    let value = envelope_json(envelope)?;
    diesel::insert_into(outbox::table)
        .values((
            outbox::event_id.eq(envelope.id),
            outbox::event_type.eq(&envelope.event_type),
            outbox::business_id.eq(envelope.business_id),
            outbox::envelope.eq(value),
            outbox::created_at.eq(envelope.occurred_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The outbox's `envelope` column for `envelope`.
pub fn envelope_json(envelope: &Envelope) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(envelope).map_err(|e| StoreError::invalid("envelope", e.to_string()))
}

/// Wraps `event` in an envelope and writes it to the outbox.
pub async fn raise(
    conn: &mut Conn,
    event: &Event,
    business_id: Option<i64>,
    origin: &Origin,
) -> Result<Envelope, StoreError> {
    raise_on(conn, event, business_id, origin).await
}

/// [`raise`] on any connection (`&mut &Conn` pipelines it with other statements).
pub async fn raise_on<C>(
    conn: &mut C,
    event: &Event,
    business_id: Option<i64>,
    origin: &Origin,
) -> Result<Envelope, StoreError>
where
    C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg>,
{
    let envelope = Envelope::new(event, business_id, origin, Utc::now());
    enqueue(conn, &envelope).await?;
    Ok(envelope)
}

/// The outbox rows of one business, oldest first (tests and inspection).
pub async fn for_business(conn: &mut Conn, business_id: i64) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(outbox::table
        .filter(outbox::business_id.eq(business_id))
        .order(outbox::id.asc())
        .select(OutboxRow::as_select())
        .load(conn)
        .await?)
}

/// How many rows wait to be published, and the age of the oldest.
pub async fn backlog(conn: &mut Conn) -> Result<(i64, Option<DateTime<Utc>>), StoreError> {
    let (count, oldest) = outbox::table
        .filter(outbox::published_at.is_null())
        .select((diesel::dsl::count_star(), diesel::dsl::min(outbox::created_at)))
        .first::<(i64, Option<DateTime<Utc>>)>(conn)
        .await?;
    Ok((count, oldest))
}

/// A row waiting to be published, locked by [`relay_batch`]'s transaction.
#[derive(Debug, Clone)]
pub struct Unpublished {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub envelope: serde_json::Value,
}

/// What the publisher did with a locked batch: the rows the broker
/// confirmed, the rows it did not, and why (the first failure).
#[derive(Debug)]
pub struct Published<E> {
    pub sent: Vec<i64>,
    pub failed: Vec<i64>,
    pub error: Option<E>,
}

/// What [`relay_batch`] committed: how many rows it took, how many were
/// marked sent, and the publisher's failure, if any.
#[derive(Debug)]
pub struct Relayed<E> {
    pub taken: usize,
    pub sent: usize,
    pub error: Option<E>,
}

/// Longest publish error kept in `outbox.last_error`.
const MAX_ERROR_CHARS: usize = 500;

/// Relays one batch in one transaction: locks up to `limit` unpublished rows
/// in creation order (`FOR UPDATE SKIP LOCKED`, so relays side by side never
/// take the same row), calls `publish` with them while they stay locked, then
/// marks the confirmed rows sent (`published_at`) and counts an attempt and
/// the error on the others, and commits. A row is thus marked sent only after
/// its confirm and in the transaction that locked it; a crash before the
/// commit publishes it again (consumers dedupe). With no row waiting,
/// `publish` is not called.
pub async fn relay_batch<E, F, Fut>(conn: &mut Conn, limit: i64, publish: F) -> Result<Relayed<E>, StoreError>
where
    F: FnOnce(Vec<Unpublished>) -> Fut + Send,
    Fut: Future<Output = Published<E>> + Send,
    E: std::fmt::Display + Send,
{
    conn.transaction::<_, StoreError, _>(async |conn| {
        let rows: Vec<(i64, Uuid, String, serde_json::Value)> = outbox::table
            .filter(outbox::published_at.is_null())
            .order(outbox::id.asc())
            .limit(limit)
            .select((outbox::id, outbox::event_id, outbox::event_type, outbox::envelope))
            .for_update()
            .skip_locked()
            .load(conn)
            .await?;
        if rows.is_empty() {
            return Ok(Relayed { taken: 0, sent: 0, error: None });
        }
        let rows = rows
            .into_iter()
            .map(|(id, event_id, event_type, envelope)| Unpublished { id, event_id, event_type, envelope })
            .collect();
        let Published { sent, failed, error } = publish(rows).await;
        if !sent.is_empty() {
            diesel::update(outbox::table.filter(outbox::id.eq_any(&sent)))
                .set(outbox::published_at.eq(Utc::now()))
                .execute(conn)
                .await?;
        }
        if let Some(e) = &error {
            let text: String = e.to_string().chars().take(MAX_ERROR_CHARS).collect();
            diesel::update(outbox::table.filter(outbox::id.eq_any(&failed)))
                .set((outbox::attempts.eq(outbox::attempts + 1), outbox::last_error.eq(text)))
                .execute(conn)
                .await?;
        }
        Ok(Relayed { taken: sent.len() + failed.len(), sent: sent.len(), error })
    })
    .await
}
