//! Deployments, their journal and the deploy lease (`atelier deploy`,
//! `rollback`, `history`, `lock`). A deployment is a row of `deployments`
//! (a deploy or a rollback); each step of its checklist is a row of
//! `deployment_steps`, written when the step starts and completed when it
//! ends, so a deploy killed mid-way is found by the next command. The
//! environment's *current* deployment is its newest succeeded one: a failed
//! or rolled-back deployment never changes it. The lease (`deploy_lease`, one
//! row) is held by one command at a time, heartbeated, and taken over only
//! after it expired; every acquisition, refusal, takeover and release is
//! audited in `deploy_lock_events`.

use super::schema::{deploy_lease, deploy_lock_events, deployment_steps, deployments};
use super::{Conn, StoreError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = deployments, check_for_backend(diesel::pg::Pg))]
pub struct Deployment {
    pub id: i64,
    pub version: String,
    pub slot: String,
    pub status: String,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub checks: serde_json::Value,
    pub error: Option<String>,
    pub previous_deployment_id: Option<i64>,
    pub kind: String,
    pub migrations: serde_json::Value,
    pub failed_step: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = deployment_steps, check_for_backend(diesel::pg::Pg))]
pub struct Step {
    pub id: i64,
    pub deployment_id: i64,
    pub step: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub detail: String,
}

/// A deployment about to start.
pub struct NewDeployment<'a> {
    pub version: &'a str,
    pub slot: &'a str,
    pub actor: &'a str,
    pub kind: &'a str,
    pub previous: Option<i64>,
}

/// Records a deployment as running. Fails with a conflict when another one
/// is running (the `deployments_one_running` index).
pub async fn begin(conn: &mut Conn, new: NewDeployment<'_>) -> Result<Deployment, StoreError> {
    diesel::insert_into(deployments::table)
        .values((
            deployments::version.eq(new.version),
            deployments::slot.eq(new.slot),
            deployments::status.eq("running"),
            deployments::actor.eq(new.actor),
            deployments::kind.eq(new.kind),
            deployments::previous_deployment_id.eq(new.previous),
        ))
        .returning(Deployment::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::Conflict("another deployment is running".into())
            }
            e => e.into(),
        })
}

/// Ends a running deployment with `status` (succeeded, failed, rolled_back).
pub async fn finish(
    conn: &mut Conn,
    id: i64,
    status: &str,
    failed_step: Option<&str>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    diesel::update(deployments::table.find(id))
        .set((
            deployments::status.eq(status),
            deployments::finished_at.eq(Utc::now()),
            deployments::failed_step.eq(failed_step),
            deployments::error.eq(error),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the migrations a deployment applied (names).
pub async fn set_migrations(conn: &mut Conn, id: i64, names: &[String]) -> Result<(), StoreError> {
    diesel::update(deployments::table.find(id))
        .set(deployments::migrations.eq(serde_json::json!(names)))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<Deployment>, StoreError> {
    Ok(deployments::table.find(id).select(Deployment::as_select()).first(conn).await.optional()?)
}

/// The environment's current deployment: its newest succeeded one.
pub async fn current(conn: &mut Conn) -> Result<Option<Deployment>, StoreError> {
    Ok(deployments::table
        .filter(deployments::status.eq("succeeded"))
        .order(deployments::id.desc())
        .select(Deployment::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The succeeded deployment before `current` whose version differs from it:
/// where `rollback` goes by default.
pub async fn previous_success(conn: &mut Conn, current: &Deployment) -> Result<Option<Deployment>, StoreError> {
    Ok(deployments::table
        .filter(deployments::status.eq("succeeded"))
        .filter(deployments::id.lt(current.id))
        .filter(deployments::version.ne(&current.version))
        .order(deployments::id.desc())
        .select(Deployment::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The running deployment, if any (a live one, or one whose command died).
pub async fn running(conn: &mut Conn) -> Result<Option<Deployment>, StoreError> {
    Ok(deployments::table
        .filter(deployments::status.eq("running"))
        .select(Deployment::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The newest `limit` deployments, newest first.
pub async fn history(conn: &mut Conn, limit: i64) -> Result<Vec<Deployment>, StoreError> {
    Ok(deployments::table.order(deployments::id.desc()).limit(limit).select(Deployment::as_select()).load(conn).await?)
}

/// The newest succeeded deployment of `version`, if any.
pub async fn last_success_of(conn: &mut Conn, version: &str) -> Result<Option<Deployment>, StoreError> {
    Ok(deployments::table
        .filter(deployments::status.eq("succeeded"))
        .filter(deployments::version.eq(version))
        .order(deployments::id.desc())
        .select(Deployment::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Journals the start of `step`; returns the step's id.
pub async fn step_start(conn: &mut Conn, deployment_id: i64, step: &str) -> Result<i64, StoreError> {
    Ok(diesel::insert_into(deployment_steps::table)
        .values((deployment_steps::deployment_id.eq(deployment_id), deployment_steps::step.eq(step)))
        .returning(deployment_steps::id)
        .get_result(conn)
        .await?)
}

/// Journals the end of a step: `outcome` ok, failed, undone or skipped.
pub async fn step_end(conn: &mut Conn, step_id: i64, outcome: &str, detail: &str) -> Result<(), StoreError> {
    diesel::update(deployment_steps::table.find(step_id))
        .set((
            deployment_steps::outcome.eq(outcome),
            deployment_steps::detail.eq(detail),
            deployment_steps::finished_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A deployment's journal, in order.
pub async fn steps(conn: &mut Conn, deployment_id: i64) -> Result<Vec<Step>, StoreError> {
    Ok(deployment_steps::table
        .filter(deployment_steps::deployment_id.eq(deployment_id))
        .order(deployment_steps::id)
        .select(Step::as_select())
        .load(conn)
        .await?)
}

/// Contract migrations applied after `since`: each would break a version
/// deployed before it (a rollback to it is refused, naming them).
pub async fn contract_migrations_since(conn: &mut Conn, since: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let exists: Vec<Row> = diesel::sql_query(
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name = 'atelier_migrations'",
    )
    .load(conn)
    .await?;
    if exists.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT version || '_' || name AS name FROM atelier_migrations \
         WHERE phase = 'contract' AND applied_at > $1 ORDER BY version",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// Who holds (or wants) the lease.
#[derive(Debug, Clone, Serialize)]
pub struct Owner {
    pub user: String,
    pub host: String,
    pub pid: i64,
    pub command: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = deploy_lease, check_for_backend(diesel::pg::Pg))]
pub struct Lease {
    #[serde(skip)]
    pub token: Uuid,
    pub owner_user: String,
    pub owner_host: String,
    pub owner_pid: i64,
    pub command: String,
    pub message: Option<String>,
    pub acquired_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// "alice@host (pid 42, `atelier deploy`) since <time>".
    pub fn describe(&self) -> String {
        let message = self.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        format!(
            "{}@{} (pid {}, `{}`) since {}, expires {}{message}",
            self.owner_user,
            self.owner_host,
            self.owner_pid,
            self.command,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
        )
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = deploy_lock_events, check_for_backend(diesel::pg::Pg))]
pub struct LockEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    pub owner_user: String,
    pub owner_host: String,
    pub owner_pid: i64,
    pub command: String,
    pub detail: String,
}

/// What [`acquire`] got.
#[derive(Debug)]
pub enum Acquire {
    /// The lease is ours; `took_over` is the expired lease it replaced.
    Acquired { lease: Lease, took_over: Option<Lease> },
    /// Someone else holds a live lease.
    Held(Lease),
}

async fn audit(conn: &mut Conn, action: &str, owner: &Owner, detail: &str) -> Result<(), StoreError> {
    diesel::insert_into(deploy_lock_events::table)
        .values((
            deploy_lock_events::action.eq(action),
            deploy_lock_events::owner_user.eq(&owner.user),
            deploy_lock_events::owner_host.eq(&owner.host),
            deploy_lock_events::owner_pid.eq(owner.pid),
            deploy_lock_events::command.eq(&owner.command),
            deploy_lock_events::detail.eq(detail),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

fn expiry(ttl: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30))
}

/// Takes the lease for `owner` for `ttl` unless a live one is held; an
/// expired one is taken over (and the audit says whose it was).
pub async fn acquire(
    conn: &mut Conn,
    owner: &Owner,
    message: Option<&str>,
    ttl: Duration,
) -> Result<Acquire, StoreError> {
    let owner = owner.clone();
    let message = message.map(str::to_owned);
    conn.transaction(async move |conn| {
        // Serializes acquirers even when no row exists yet.
        diesel::sql_query("SELECT pg_advisory_xact_lock(7412650301)").execute(conn).await?;
        let held: Option<Lease> =
            deploy_lease::table.find(1i64).select(Lease::as_select()).for_update().first(conn).await.optional()?;
        let took_over = match held {
            Some(lease) if lease.expires_at > Utc::now() => {
                audit(conn, "refused", &owner, &format!("held by {}", lease.describe())).await?;
                return Ok(Acquire::Held(lease));
            }
            other => other,
        };
        let values = (
            deploy_lease::id.eq(1i64),
            deploy_lease::token.eq(Uuid::now_v7()),
            deploy_lease::owner_user.eq(&owner.user),
            deploy_lease::owner_host.eq(&owner.host),
            deploy_lease::owner_pid.eq(owner.pid),
            deploy_lease::command.eq(&owner.command),
            deploy_lease::message.eq(message.as_deref()),
            deploy_lease::acquired_at.eq(Utc::now()),
            deploy_lease::heartbeat_at.eq(Utc::now()),
            deploy_lease::expires_at.eq(expiry(ttl)),
        );
        let lease: Lease = diesel::insert_into(deploy_lease::table)
            .values(values)
            .on_conflict(deploy_lease::id)
            .do_update()
            .set(values)
            .returning(Lease::as_returning())
            .get_result(conn)
            .await?;
        match &took_over {
            Some(old) => audit(conn, "taken_over", &owner, &format!("expired lease of {}", old.describe())).await?,
            None => audit(conn, "acquired", &owner, message.as_deref().unwrap_or("")).await?,
        }
        Ok(Acquire::Acquired { lease, took_over })
    })
    .await
}

/// Extends the lease held under `token`; false when it is no longer ours.
pub async fn heartbeat(conn: &mut Conn, token: Uuid, ttl: Duration) -> Result<bool, StoreError> {
    let n = diesel::update(deploy_lease::table.filter(deploy_lease::token.eq(token)))
        .set((deploy_lease::heartbeat_at.eq(Utc::now()), deploy_lease::expires_at.eq(expiry(ttl))))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Releases the lease held under `token` (audited); false when it was not ours.
pub async fn release(conn: &mut Conn, token: Uuid, owner: &Owner) -> Result<bool, StoreError> {
    let n = diesel::delete(deploy_lease::table.filter(deploy_lease::token.eq(token))).execute(conn).await?;
    if n == 1 {
        audit(conn, "released", owner, "").await?;
    }
    Ok(n == 1)
}

/// Releases whatever lease is held (`atelier lock release`), audited with
/// whose it was; returns it.
pub async fn force_release(conn: &mut Conn, by: &Owner) -> Result<Option<Lease>, StoreError> {
    let by = by.clone();
    conn.transaction(async move |conn| {
        let held: Option<Lease> =
            deploy_lease::table.find(1i64).select(Lease::as_select()).for_update().first(conn).await.optional()?;
        if let Some(lease) = &held {
            diesel::delete(deploy_lease::table.find(1i64)).execute(conn).await?;
            audit(conn, "released", &by, &format!("lease of {}", lease.describe())).await?;
        }
        Ok(held)
    })
    .await
}

/// Whether the lease's table exists (a database migrated by this build).
pub async fn lease_table_exists(conn: &mut Conn) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let f: Found =
        diesel::sql_query("SELECT to_regclass('public.deploy_lease') IS NOT NULL AS found").get_result(conn).await?;
    Ok(f.found)
}

/// The lease as it stands (expired or not).
pub async fn lease(conn: &mut Conn) -> Result<Option<Lease>, StoreError> {
    Ok(deploy_lease::table.find(1i64).select(Lease::as_select()).first(conn).await.optional()?)
}

/// The newest `limit` lock events, newest first.
pub async fn lock_events(conn: &mut Conn, limit: i64) -> Result<Vec<LockEvent>, StoreError> {
    Ok(deploy_lock_events::table
        .order(deploy_lock_events::id.desc())
        .limit(limit)
        .select(LockEvent::as_select())
        .load(conn)
        .await?)
}

/// Canary pings handled by `handled_by` among `ping_ids`.
pub async fn pings_handled_by(conn: &mut Conn, ping_ids: &[Uuid], handled_by: &str) -> Result<i64, StoreError> {
    use super::schema::canary_pings;
    Ok(canary_pings::table
        .filter(canary_pings::ping_id.eq_any(ping_ids))
        .filter(canary_pings::handled_by.eq(handled_by))
        .count()
        .get_result(conn)
        .await?)
}

/// Dead letters recorded since `since` (the gate's soak check).
pub async fn dead_letters_since(conn: &mut Conn, since: DateTime<Utc>) -> Result<i64, StoreError> {
    use super::schema::dead_letters;
    Ok(dead_letters::table.filter(dead_letters::first_failed_at.ge(since)).count().get_result(conn).await?)
}
