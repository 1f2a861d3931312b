//! Schema migrations, embedded from `migrations/` into both binaries and run
//! through diesel-async's connection wrapper (no diesel CLI, no libpq).
//! Migrators serialize on a PostgreSQL advisory lock held on their one
//! connection, and run with `lock_timeout` and `statement_timeout` set.
//! Connecting and each batch of queries log their timing at debug (`atelier -v`).

use super::{DatabaseUrl, StoreError};
use diesel::Connection;
use diesel::RunQueryDsl;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

// UP_SQL: (name, up.sql) of every embedded migration, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/migration_sql.rs"));

/// The `up.sql` of the embedded migration `name`.
pub fn up_sql(name: &str) -> Option<&'static str> {
    UP_SQL.iter().find(|(n, _)| *n == name).map(|(_, sql)| *sql)
}

/// The lint findings of the embedded migrations named (every one when
/// `names` is `None`), in order: (name, findings), those without any left out.
pub fn lint(names: Option<&[String]>) -> Vec<(String, Vec<crate::rules::migration_lint::Finding>)> {
    UP_SQL
        .iter()
        .filter(|(name, _)| names.is_none_or(|n| n.iter().any(|m| m == name)))
        .map(|(name, sql)| (name.to_string(), crate::rules::migration_lint::lint(sql)))
        .filter(|(_, findings)| !findings.is_empty())
        .collect()
}

/// The advisory lock key every migrator takes ("atelier_migrate").
const MIGRATION_LOCK: i64 = 0x0061_7465_6c69_6572;

type Wrapper = AsyncConnectionWrapper<AsyncPgConnection>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    /// `2026-11-25-000001_tenancy`
    pub name: String,
    pub version: String,
    pub applied: bool,
}

/// How long a migration may wait for a lock and run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
}

impl From<&crate::config::DatabaseSettings> for Limits {
    fn from(s: &crate::config::DatabaseSettings) -> Self {
        Limits { lock_timeout: s.migration_lock_timeout, statement_timeout: s.migration_statement_timeout }
    }
}

fn all_migrations() -> Result<Vec<Box<dyn Migration<Pg>>>, StoreError> {
    MigrationSource::<Pg>::migrations(&MIGRATIONS).map_err(|e| StoreError::Conflict(e.to_string()))
}

/// The embedded migrations in order, each with whether the database has it.
pub async fn status(url: &DatabaseUrl) -> Result<Vec<MigrationInfo>, StoreError> {
    blocking(url, None, |conn| {
        let applied: HashSet<String> =
            conn.applied_migrations().map_err(boxed)?.into_iter().map(|v| v.to_string()).collect();
        Ok(all_migrations()?
            .iter()
            .map(|m| {
                let version = m.name().version().to_string();
                MigrationInfo { name: m.name().to_string(), applied: applied.contains(&version), version }
            })
            .collect())
    })
    .await
}

/// Applies every pending migration, in order, each in its own transaction;
/// `on_applied` hears of each as it lands. Returns what it applied.
pub async fn run(
    url: &DatabaseUrl,
    limits: Limits,
    mut on_applied: impl FnMut(&MigrationInfo) + Send + 'static,
) -> Result<Vec<MigrationInfo>, StoreError> {
    blocking(url, Some(limits), move |conn| {
        let mut done = Vec::new();
        for m in conn.pending_migrations(MIGRATIONS).map_err(boxed)? {
            conn.run_migration(&m).map_err(|e| migration_failed(&m.name().to_string(), e))?;
            let info =
                MigrationInfo { name: m.name().to_string(), version: m.name().version().to_string(), applied: true };
            on_applied(&info);
            done.push(info);
        }
        Ok(done)
    })
    .await
}

/// Reverts the last `steps` applied migrations, newest first.
pub async fn rollback(
    url: &DatabaseUrl,
    limits: Limits,
    steps: usize,
    mut on_reverted: impl FnMut(&MigrationInfo) + Send + 'static,
) -> Result<Vec<MigrationInfo>, StoreError> {
    blocking(url, Some(limits), move |conn| {
        let mut done = Vec::new();
        for _ in 0..steps {
            if conn.applied_migrations().map_err(boxed)?.is_empty() {
                break;
            }
            let version = conn.revert_last_migration(MIGRATIONS).map_err(|e| migration_failed("last", e))?;
            let name = all_migrations()?
                .iter()
                .find(|m| m.name().version() == version)
                .map(|m| m.name().to_string())
                .unwrap_or_else(|| version.to_string());
            let info = MigrationInfo { name, version: version.to_string(), applied: false };
            on_reverted(&info);
            done.push(info);
        }
        Ok(done)
    })
    .await
}

/// Creates the database `url` names when it does not exist (dev). Returns
/// whether it created it.
pub async fn create_database_if_missing(url: &DatabaseUrl) -> Result<bool, StoreError> {
    use diesel::sql_types::Text;
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        #[allow(dead_code)]
        one: i32,
    }
    let name = url.database().to_owned();
    blocking(&url.maintenance(), None, move |conn| {
        let found: Vec<Found> = diesel::sql_query("SELECT 1 AS one FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(&name)
            .load(conn)?;
        if !found.is_empty() {
            return Ok(false);
        }
        diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name))).execute(conn)?;
        Ok(true)
    })
    .await
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn boxed(e: Box<dyn std::error::Error + Send + Sync>) -> StoreError {
    StoreError::Conflict(format!("migrations: {e}"))
}

fn migration_failed(name: &str, e: Box<dyn std::error::Error + Send + Sync>) -> StoreError {
    StoreError::Conflict(format!("migration {name} failed and was rolled back: {e}"))
}

/// Runs `f` on a fresh wrapped connection in a blocking thread (the harness
/// is synchronous). With `limits`, takes the migration lock first.
async fn blocking<T: Send + 'static>(
    url: &DatabaseUrl,
    limits: Option<Limits>,
    f: impl FnOnce(&mut Wrapper) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let url = url.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        tracing::debug!("connecting to {url}");
        let mut conn = Wrapper::establish(&url.expose())
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {url}: {e}")))?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), "connected to {url}");
        if let Some(limits) = limits {
            // Session-level: held until this connection closes, whatever happens.
            // Taken before the timeouts are set, so a second migrator waits its turn.
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(&mut conn)?;
            diesel::sql_query(format!("SET lock_timeout = {}", limits.lock_timeout.as_millis().max(1)))
                .execute(&mut conn)?;
            diesel::sql_query(format!("SET statement_timeout = {}", limits.statement_timeout.as_millis().max(1)))
                .execute(&mut conn)?;
        }
        let started = std::time::Instant::now();
        let done = f(&mut conn);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), ok = done.is_ok(), "migration queries on {url}");
        done
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("migration task failed: {e}")))?
}
