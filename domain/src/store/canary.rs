//! The canary's round trips: each `system.ping` handled is recorded once in
//! `canary_pings`, so a health check or a deploy gate that raised a ping can
//! wait for its row and read how long the trip took.

use super::schema::canary_pings;
use super::{Conn, StoreError, outbox};
use crate::events::{Event, Origin, SystemPing};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = canary_pings, check_for_backend(diesel::pg::Pg))]
pub struct Ping {
    pub id: i64,
    pub ping_id: Uuid,
    pub event_id: Uuid,
    pub producer: String,
    pub sent_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// Which atelierd handled it (its deployment slot, or host:pid).
    pub handled_by: Option<String>,
}

impl Ping {
    /// From the ping's raising to its handling (zero if the clocks disagree).
    pub fn round_trip(&self) -> std::time::Duration {
        (self.received_at - self.sent_at).to_std().unwrap_or_default()
    }
}

/// Raises a `system.ping` through the outbox (it leaves with the next relay
/// pass) and returns its id: wait for [`get`] to find it.
pub async fn raise(conn: &mut Conn, origin: &Origin) -> Result<Uuid, StoreError> {
    let ping_id = Uuid::now_v7();
    outbox::raise(conn, &Event::SystemPing(SystemPing { ping_id }), None, origin).await?;
    Ok(ping_id)
}

/// Records a ping's arrival inside the caller's transaction, with which
/// atelierd handled it (its deployment slot, or host:pid). Returns false,
/// changing nothing, when the ping was already recorded.
pub async fn record_in(
    conn: &mut Conn,
    ping_id: Uuid,
    event_id: Uuid,
    producer: &str,
    sent_at: DateTime<Utc>,
    handled_by: &str,
) -> Result<bool, StoreError> {
    let n = diesel::insert_into(canary_pings::table)
        .values((
            canary_pings::ping_id.eq(ping_id),
            canary_pings::event_id.eq(event_id),
            canary_pings::producer.eq(producer),
            canary_pings::sent_at.eq(sent_at),
            canary_pings::received_at.eq(Utc::now()),
            canary_pings::handled_by.eq(handled_by),
        ))
        .on_conflict(canary_pings::ping_id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// The recorded round trip of `ping_id`, once the daemon has handled it.
pub async fn get(conn: &mut Conn, ping_id: Uuid) -> Result<Option<Ping>, StoreError> {
    Ok(canary_pings::table
        .filter(canary_pings::ping_id.eq(ping_id))
        .select(Ping::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Deletes pings received before `before` (the table only needs recent ones).
pub async fn prune(conn: &mut Conn, before: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(diesel::delete(canary_pings::table.filter(canary_pings::received_at.lt(before))).execute(conn).await?)
}
