//! Exactly-once effects: a handler records `(handler, event_id)` in
//! `processed_events` in the same transaction as its effects, so a
//! redelivery, a replay or a second daemon never applies an event twice.

use super::schema::processed_events;
use super::{Conn, StoreError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

/// Claims `(handler, event_id)` inside the caller's transaction. Returns
/// false when the event was already processed (by an earlier delivery, a
/// replay or another daemon): the caller then applies nothing. A concurrent
/// claimer of the same event waits on the primary key until the first
/// transaction ends, then finds it taken (or free again, if it rolled back).
///
/// ```ignore
/// conn.transaction(async |conn| {
///     if !processing::claim(conn, "production", envelope.id).await? {
///         return Ok(None);
///     }
///     // ... the handler's effects, committed with the claim
/// }).await
/// ```
pub async fn claim(conn: &mut Conn, handler: &str, event_id: Uuid) -> Result<bool, StoreError> {
    let claimed = diesel::insert_into(processed_events::table)
        .values((processed_events::handler.eq(handler), processed_events::event_id.eq(event_id)))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(claimed == 1)
}

/// Whether `handler` has processed `event_id`.
pub async fn is_processed(conn: &mut Conn, handler: &str, event_id: Uuid) -> Result<bool, StoreError> {
    let n: i64 = processed_events::table
        .filter(processed_events::handler.eq(handler).and(processed_events::event_id.eq(event_id)))
        .count()
        .get_result(conn)
        .await?;
    Ok(n > 0)
}
