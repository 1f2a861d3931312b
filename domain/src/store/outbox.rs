//! The transactional outbox: business actions insert the events they raise
//! here, in their own transaction; the daemon's relay publishes them.

use super::schema::outbox;
use super::{Conn, StoreError};
use crate::events::{Envelope, Event, Origin};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
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
