//! `daemon_instances`: each running atelierd's heartbeat (written at start
//! and every few seconds, removed on a clean stop), and the reads of
//! `atelier status` (the live instances, the current deployment).

use super::StoreError;
use super::schema::{daemon_instances, deployments};
use crate::store::Conn;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

/// One atelierd process, as its heartbeat says.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Serialize)]
#[diesel(table_name = daemon_instances)]
pub struct Instance {
    pub id: Uuid,
    pub host: String,
    pub pid: i32,
    pub version: String,
    /// `http`, `events` or `http,events`.
    pub roles: String,
    /// Base URL of its /ready (None: it serves no HTTP).
    pub http_url: Option<String>,
    /// Base URL of its /metrics, when not the same as `http_url`.
    pub metrics_url: Option<String>,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

/// Writes (or refreshes) `instance`'s row.
pub async fn beat(conn: &mut Conn, instance: &Instance) -> Result<(), StoreError> {
    diesel::insert_into(daemon_instances::table)
        .values(instance)
        .on_conflict(daemon_instances::id)
        .do_update()
        .set(daemon_instances::heartbeat_at.eq(instance.heartbeat_at))
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes the row of the instance `id` (a clean stop).
pub async fn remove(conn: &mut Conn, id: Uuid) -> Result<(), StoreError> {
    diesel::delete(daemon_instances::table.find(id)).execute(conn).await?;
    Ok(())
}

/// Every instance, the most recent heartbeat first (old heartbeats
/// included: the caller says which are stale).
pub async fn all(conn: &mut Conn) -> Result<Vec<Instance>, StoreError> {
    Ok(daemon_instances::table
        .select(Instance::as_select())
        .order(daemon_instances::heartbeat_at.desc())
        .load(conn)
        .await?)
}

/// The current deployment: the newest row of `deployments`.
#[derive(Debug, Clone, Queryable, Serialize)]
pub struct Deployment {
    pub id: i64,
    pub version: String,
    pub slot: String,
    pub status: String,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn current_deployment(conn: &mut Conn) -> Result<Option<Deployment>, StoreError> {
    Ok(deployments::table
        .select((
            deployments::id,
            deployments::version,
            deployments::slot,
            deployments::status,
            deployments::actor,
            deployments::started_at,
            deployments::finished_at,
        ))
        .order(deployments::id.desc())
        .first(conn)
        .await
        .optional()?)
}
