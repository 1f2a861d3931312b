//! Schema migrations, embedded from `migrations/` into both binaries and run
//! through diesel-async's connection wrapper (no diesel CLI, no libpq).
//! Migrators serialize on a PostgreSQL advisory lock held on their one
//! connection, and run with `lock_timeout` and `statement_timeout` set.
//! Beside diesel's list of applied versions, our `atelier_migrations` table
//! records what was applied (checksums, who, when, how long, phase), written
//! on the migrator's connection right after each migration; `status`
//! compares it with this build's files (`rules::migration_integrity`), `run`
//! applies by phase, `repair` re-records and audits. Tests inject their own
//! set of migrations with `Catalog::from_dir`.
//! Connecting and each batch of queries log their timing at debug (`atelier -v`).

use super::{DatabaseUrl, StoreError};
use crate::rules::migration_integrity::{self as integrity, Edit, Known, LiveSlot, Record, State, Verdict};
use crate::rules::migration_lint::{Phase, directives};
use diesel::Connection;
use diesel::RunQueryDsl;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, FileBasedMigrations, MigrationHarness, embed_migrations};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

// UP_SQL: (name, up.sql) of every embedded migration, written by build.rs.
include!(concat!(env!("OUT_DIR"), "/migration_sql.rs"));

/// The `down.sql` of the embedded migration `name`.
pub fn down_sql(name: &str) -> Option<&'static str> {
    DOWN_SQL.iter().find(|(n, _)| *n == name).map(|(_, sql)| *sql)
}

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

/// One migration as `status`, `run`, `rollback` and `repair` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    /// `2026-11-25-000001_tenancy`
    pub name: String,
    pub version: String,
    /// In diesel's list of applied versions.
    pub applied: bool,
    pub state: State,
    /// Edited, missing, or applied unrecorded since checksums exist: what
    /// `run` refuses over where `policy.refuse_migration_drift` is set.
    pub drift: bool,
    /// `expand` or `contract`; None for a missing migration without a record.
    pub phase: Option<Phase>,
    /// Edited: each file whose checksum differs, with both checksums.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<Edit>,
    /// What an operator should know of its state, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Our record of it, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
}

impl MigrationInfo {
    fn from_verdict(v: Verdict) -> Self {
        let note = match v.state {
            State::Edited => Some(format!(
                "edited after it was applied: {}",
                v.edits
                    .iter()
                    .map(|e| format!("{} recorded {} now {}", e.file, e.recorded, e.current))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            State::Missing => Some("applied, but this build does not know it (applied by a newer version)".into()),
            State::UnknownHistory if v.predates_checksums => {
                Some("applied before checksums were recorded: `migrate run` adopts it".into())
            }
            State::UnknownHistory => Some(
                "applied without a record (a crash between applying and recording, or a deleted record): \
                 adopted by `migrate run` where policy.refuse_migration_drift is off, else by `migrate repair`"
                    .into(),
            ),
            State::Applied if v.record.as_ref().is_some_and(|r| r.adopted) => {
                Some("adopted: applied before its checksums were recorded".into())
            }
            _ => None,
        };
        MigrationInfo {
            applied: v.state != State::Pending,
            drift: v.is_drift(),
            name: v.name,
            version: v.version,
            state: v.state,
            phase: v.phase,
            edits: v.edits,
            note,
            record: v.record,
        }
    }
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

/// A set of migrations: the ones embedded in this build, or (tests) a
/// directory laid out like `migrations/`.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    dir: Option<PathBuf>,
}

/// One migration of a catalog, with its SQL.
struct MigrationFile {
    migration: Box<dyn Migration<Pg>>,
    known: Known,
}

impl Catalog {
    /// The migrations embedded in this build.
    pub fn embedded() -> Self {
        Catalog { dir: None }
    }

    /// The migrations of `dir` (`<name>/up.sql`, `<name>/down.sql`), read at run time.
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        Catalog { dir: Some(dir.into()) }
    }

    fn files(&self) -> Result<Vec<MigrationFile>, StoreError> {
        let conflict = |e: &dyn std::fmt::Display| StoreError::Conflict(format!("migrations: {e}"));
        let migrations = match &self.dir {
            None => MigrationSource::<Pg>::migrations(&MIGRATIONS).map_err(|e| conflict(&e))?,
            Some(dir) => {
                let source = FileBasedMigrations::from_path(dir).map_err(|e| conflict(&e))?;
                let mut all = MigrationSource::<Pg>::migrations(&source).map_err(|e| conflict(&e))?;
                all.sort_by_key(|m| m.name().version().to_string());
                all
            }
        };
        migrations
            .into_iter()
            .map(|migration| {
                let name = migration.name().to_string();
                let (up, down) = match &self.dir {
                    None => {
                        (up_sql(&name).unwrap_or_default().to_owned(), down_sql(&name).unwrap_or_default().to_owned())
                    }
                    Some(dir) => {
                        let read = |f: &str| std::fs::read_to_string(dir.join(&name).join(f)).unwrap_or_default();
                        (read("up.sql"), read("down.sql"))
                    }
                };
                let said = directives(&up);
                let known = Known {
                    version: migration.name().version().to_string(),
                    name,
                    up_sha256: integrity::checksum(&up),
                    down_sha256: integrity::checksum(&down),
                    phase: said.phase,
                };
                let migration: Box<dyn Migration<Pg>> =
                    if said.no_transaction { Box::new(OutsideTransaction(migration)) } else { migration };
                Ok(MigrationFile { migration, known })
            })
            .collect()
    }
}

/// A migration whose file says `-- atelier:no-transaction`: applied as
/// written, outside a transaction, because `CREATE INDEX CONCURRENTLY` and
/// its kin refuse to run inside one. PostgreSQL still runs a file of several
/// statements as one implicit transaction, so such a file holds one statement
/// (the lint's `needs-no-transaction` says so).
struct OutsideTransaction(Box<dyn Migration<Pg>>);

struct NoTransaction;

impl diesel::migration::MigrationMetadata for NoTransaction {
    fn run_in_transaction(&self) -> bool {
        false
    }
}

impl Migration<Pg> for OutsideTransaction {
    fn run(&self, conn: &mut dyn diesel::connection::BoxableConnection<Pg>) -> diesel::migration::Result<()> {
        self.0.run(conn)
    }

    fn revert(&self, conn: &mut dyn diesel::connection::BoxableConnection<Pg>) -> diesel::migration::Result<()> {
        self.0.revert(conn)
    }

    fn metadata(&self) -> &dyn diesel::migration::MigrationMetadata {
        &NoTransaction
    }

    fn name(&self) -> &dyn diesel::migration::MigrationName {
        self.0.name()
    }
}

/// The embedded migrations in order, each with its state, then any applied
/// migration this build does not know.
pub async fn status(url: &DatabaseUrl) -> Result<Vec<MigrationInfo>, StoreError> {
    status_of(url, &Catalog::embedded()).await
}

/// `status` against the migrations of `catalog`.
pub async fn status_of(url: &DatabaseUrl, catalog: &Catalog) -> Result<Vec<MigrationInfo>, StoreError> {
    let catalog = catalog.clone();
    blocking(url, None, move |conn| {
        let files = catalog.files()?;
        Ok(verdicts(conn, &files)?.into_iter().map(MigrationInfo::from_verdict).collect())
    })
    .await
}

fn verdicts(conn: &mut Wrapper, files: &[MigrationFile]) -> Result<Vec<Verdict>, StoreError> {
    let applied: HashSet<String> =
        conn.applied_migrations().map_err(boxed)?.into_iter().map(|v| v.to_string()).collect();
    let records = if table_exists(conn, "atelier_migrations")? { Some(load_records(conn)?) } else { None };
    let known: Vec<Known> = files.iter().map(|f| f.known.clone()).collect();
    Ok(integrity::classify(&known, &applied, records.as_deref()))
}

/// What `apply` is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Recorded as who applied (`actor@host`).
    pub actor: String,
    /// `expand`: the pending expand migrations; `contract`: every pending one.
    pub phase: Phase,
    /// Refuse while a migration is edited, missing or applied unrecorded
    /// (`policy.refuse_migration_drift`).
    pub refuse_drift: bool,
    /// This build's version, for the contract gate.
    pub build_version: String,
}

impl RunOptions {
    /// Expand migrations, no refusal, this build: what the daemon's
    /// auto-migrate and the test template use.
    pub fn lenient(actor: &str) -> Self {
        RunOptions {
            actor: actor.to_owned(),
            phase: Phase::Expand,
            refuse_drift: false,
            build_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// What `apply` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub applied: Vec<MigrationInfo>,
    /// Pending contract migrations left for `--phase contract`.
    pub waiting: Vec<MigrationInfo>,
    /// Applied without our record, recorded now with this build's checksums.
    pub adopted: Vec<MigrationInfo>,
    /// Edited or missing, left as they are (where the policy does not refuse).
    pub drift: Vec<MigrationInfo>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Nothing applied: the reason names the migration or the slot.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies every pending embedded expand migration with lenient options
/// (`RunOptions::lenient`); `on_applied` hears of each as it lands.
pub async fn run(
    url: &DatabaseUrl,
    limits: Limits,
    on_applied: impl FnMut(&MigrationInfo) + Send + 'static,
) -> Result<Vec<MigrationInfo>, StoreError> {
    match apply(url, limits, &Catalog::embedded(), RunOptions::lenient(&actor(None)), on_applied).await {
        Ok(report) => Ok(report.applied),
        Err(RunError::Store(e)) => Err(e),
        Err(RunError::Refused(why)) => Err(StoreError::Conflict(why)),
    }
}

/// Applies the pending migrations of `catalog` that `options.phase` takes, in
/// order, each in its own transaction, and records each right after it on
/// the same connection. Expand migrations after a waiting contract one are
/// applied: an expand migration never depends on a contract one. Adopts
/// unknown history (when it predates checksums, or the policy does not
/// refuse). Refuses, applying nothing, over drift when `refuse_drift`, and a
/// contract migration while a live slot runs a version older than this build.
pub async fn apply(
    url: &DatabaseUrl,
    limits: Limits,
    catalog: &Catalog,
    options: RunOptions,
    mut on_applied: impl FnMut(&MigrationInfo) + Send + 'static,
) -> Result<RunReport, RunError> {
    let catalog = catalog.clone();
    blocking_run(url, limits, move |conn| {
        let files = catalog.files()?;
        let verdicts = verdicts(conn, &files)?;
        let drift: Vec<&Verdict> = verdicts.iter().filter(|v| v.is_drift()).collect();
        if options.refuse_drift && !drift.is_empty() {
            let named: Vec<String> = drift.iter().map(|v| format!("{} ({})", v.name, refusal_detail(v))).collect();
            return Err(RunError::Refused(format!(
                "nothing applied: {} (look, then `atelier migrate repair` re-records edited and unrecorded ones)",
                named.join("; ")
            )));
        }
        let mut report = RunReport {
            drift: drift.iter().map(|v| MigrationInfo::from_verdict((*v).clone())).collect(),
            ..RunReport::default()
        };
        let pending: Vec<&MigrationFile> = files
            .iter()
            .filter(|f| verdicts.iter().any(|v| v.version == f.known.version && v.state == State::Pending))
            .collect();
        let (take, wait): (Vec<&MigrationFile>, Vec<&MigrationFile>) =
            pending.into_iter().partition(|f| options.phase == Phase::Contract || f.known.phase == Phase::Expand);
        report.waiting = wait.iter().map(|f| pending_info(&f.known)).collect();
        if let Some(first) = take.iter().find(|f| f.known.phase == Phase::Contract) {
            let live = live_slots(conn)?;
            if let Some(slot) = integrity::contract_blocker(&live, &options.build_version) {
                return Err(RunError::Refused(format!(
                    "nothing applied: contract migration {} waits while slot {} runs version {} ({}), older than \
                     this build's {}; run it once every live slot runs {} or newer",
                    first.known.name,
                    slot.slot,
                    slot.version,
                    slot.status,
                    options.build_version,
                    options.build_version
                )));
            }
        }
        // Applied in this run before the record table exists (a fresh
        // database): recorded as soon as it does.
        let mut unrecorded: Vec<(&Known, i64)> = Vec::new();
        for f in take {
            let started = Instant::now();
            conn.run_migration(&*f.migration).map_err(|e| migration_failed(&f.known.name, e))?;
            unrecorded.push((&f.known, started.elapsed().as_millis() as i64));
            if table_exists(conn, "atelier_migrations")? {
                for (known, ms) in unrecorded.drain(..) {
                    record(conn, known, &options.actor, Some(ms), false)?;
                }
            }
            let mut info = pending_info(&f.known);
            info.applied = true;
            info.state = State::Applied;
            on_applied(&info);
            report.applied.push(info);
        }
        if table_exists(conn, "atelier_migrations")? {
            for v in verdicts.iter().filter(|v| v.state == State::UnknownHistory) {
                if let Some(f) = files.iter().find(|f| f.known.version == v.version) {
                    record(conn, &f.known, &options.actor, None, true)?;
                    let mut info = MigrationInfo::from_verdict(v.clone());
                    info.note = Some(if v.predates_checksums {
                        "adopted: applied before checksums were recorded; this build's checksums recorded".into()
                    } else {
                        "adopted: applied without a record (a crash between applying and recording?); this \
                         build's checksums recorded"
                            .into()
                    });
                    report.adopted.push(info);
                }
            }
        }
        Ok(report)
    })
    .await
}

fn refusal_detail(v: &Verdict) -> String {
    match v.state {
        State::Edited => format!(
            "edited after it was applied: {}",
            v.edits
                .iter()
                .map(|e| format!("{} recorded {} now {}", e.file, e.recorded, e.current))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        State::Missing => "applied, unknown to this build (applied by a newer version)".into(),
        _ => "applied without a record".into(),
    }
}

fn pending_info(k: &Known) -> MigrationInfo {
    MigrationInfo {
        name: k.name.clone(),
        version: k.version.clone(),
        applied: false,
        state: State::Pending,
        drift: false,
        phase: Some(k.phase),
        edits: Vec::new(),
        note: (k.phase == Phase::Contract).then(|| "contract: waits for `migrate run --phase contract`".into()),
        record: None,
    }
}

/// Reverts the last `steps` applied embedded migrations, newest first, and
/// drops our record of each.
pub async fn rollback(
    url: &DatabaseUrl,
    limits: Limits,
    steps: usize,
    mut on_reverted: impl FnMut(&MigrationInfo) + Send + 'static,
) -> Result<Vec<MigrationInfo>, StoreError> {
    let run = blocking_run(url, limits, move |conn| {
        let files = Catalog::embedded().files()?;
        let mut done = Vec::new();
        for _ in 0..steps {
            if conn.applied_migrations().map_err(boxed)?.is_empty() {
                break;
            }
            let version = conn.revert_last_migration(MIGRATIONS).map_err(|e| migration_failed("last", e))?;
            let version = version.to_string();
            if table_exists(conn, "atelier_migrations")? {
                diesel::sql_query("DELETE FROM atelier_migrations WHERE version = $1")
                    .bind::<Text, _>(&version)
                    .execute(conn)
                    .map_err(StoreError::from)?;
            }
            let known = files.iter().find(|f| f.known.version == version).map(|f| &f.known);
            let mut info = match known {
                Some(k) => pending_info(k),
                None => MigrationInfo {
                    name: version.clone(),
                    version: version.clone(),
                    applied: false,
                    state: State::Pending,
                    drift: false,
                    phase: None,
                    edits: Vec::new(),
                    note: None,
                    record: None,
                },
            };
            info.note = None;
            on_reverted(&info);
            done.push(info);
        }
        Ok(done)
    })
    .await;
    run.map_err(|e| match e {
        RunError::Store(e) => e,
        RunError::Refused(why) => StoreError::Conflict(why),
    })
}

/// One migration `repair` re-recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    pub name: String,
    pub version: String,
    /// The state it was in: `edited` or `unknown_history`.
    pub was: State,
    pub old_up_sha256: Option<String>,
    pub old_down_sha256: Option<String>,
    pub new_up_sha256: String,
    pub new_down_sha256: String,
}

/// The edited and unrecorded migrations `repair` would re-record (nothing changed).
pub async fn repairable(url: &DatabaseUrl) -> Result<Vec<MigrationInfo>, StoreError> {
    Ok(status(url).await?.into_iter().filter(|m| matches!(m.state, State::Edited | State::UnknownHistory)).collect())
}

/// Re-records this build's checksums for every edited or unrecorded embedded
/// migration, with a row per migration in `atelier_migration_repairs` (who,
/// when, old and new checksums), in one transaction under the migration lock.
/// Missing migrations are left: this build has no file to checksum.
pub async fn repair(url: &DatabaseUrl, limits: Limits, actor: &str) -> Result<Vec<Repaired>, StoreError> {
    let actor = actor.to_owned();
    let run = blocking_run(url, limits, move |conn| {
        if !table_exists(conn, "atelier_migrations")? {
            return Err(RunError::Refused(
                "nothing recorded yet: `atelier migrate run` creates the record and adopts what is applied".into(),
            ));
        }
        let files = Catalog::embedded().files()?;
        let verdicts = verdicts(conn, &files)?;
        let result: Result<Vec<Repaired>, StoreError> = conn.transaction(|conn| {
            let mut done = Vec::new();
            for v in verdicts.iter().filter(|v| matches!(v.state, State::Edited | State::UnknownHistory)) {
                let Some(f) = files.iter().find(|f| f.known.version == v.version) else { continue };
                let k = &f.known;
                match &v.record {
                    Some(_) => {
                        diesel::sql_query(
                            "UPDATE atelier_migrations SET up_sha256 = $2, down_sha256 = $3, phase = $4 WHERE version = $1",
                        )
                        .bind::<Text, _>(&k.version)
                        .bind::<Text, _>(&k.up_sha256)
                        .bind::<Text, _>(&k.down_sha256)
                        .bind::<Text, _>(k.phase.as_str())
                        .execute(conn)?;
                    }
                    None => record(conn, k, &actor, None, true)?,
                }
                let r = Repaired {
                    name: k.name.clone(),
                    version: k.version.clone(),
                    was: v.state,
                    old_up_sha256: v.record.as_ref().map(|r| r.up_sha256.clone()),
                    old_down_sha256: v.record.as_ref().map(|r| r.down_sha256.clone()),
                    new_up_sha256: k.up_sha256.clone(),
                    new_down_sha256: k.down_sha256.clone(),
                };
                diesel::sql_query(
                    "INSERT INTO atelier_migration_repairs (version, name, actor, old_up_sha256, old_down_sha256, \
                     new_up_sha256, new_down_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind::<Text, _>(&r.version)
                .bind::<Text, _>(&r.name)
                .bind::<Text, _>(&actor)
                .bind::<Nullable<Text>, _>(&r.old_up_sha256)
                .bind::<Nullable<Text>, _>(&r.old_down_sha256)
                .bind::<Text, _>(&r.new_up_sha256)
                .bind::<Text, _>(&r.new_down_sha256)
                .execute(conn)?;
                done.push(r);
            }
            Ok(done)
        });
        Ok(result?)
    })
    .await;
    run.map_err(|e| match e {
        RunError::Store(e) => e,
        RunError::Refused(why) => StoreError::Conflict(why),
    })
}

/// Who applies: `actor` (or `$USER`, `$LOGNAME`, else "unknown") at this host.
pub fn actor(actor: Option<&str>) -> String {
    let who = actor
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{who}@{host}")
}

fn table_exists(conn: &mut Wrapper, table: &str) -> Result<bool, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    let f: Found =
        diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS found").bind::<Text, _>(table).get_result(conn)?;
    Ok(f.found)
}

#[derive(diesel::QueryableByName)]
struct RecordRow {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    up_sha256: String,
    #[diesel(sql_type = Text)]
    down_sha256: String,
    #[diesel(sql_type = Text)]
    phase: String,
    #[diesel(sql_type = Text)]
    applied_by: String,
    #[diesel(sql_type = Text)]
    applied_at: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    duration_ms: Option<i64>,
    #[diesel(sql_type = Bool)]
    adopted: bool,
}

fn load_records(conn: &mut Wrapper) -> Result<Vec<Record>, StoreError> {
    let rows: Vec<RecordRow> = diesel::sql_query(
        "SELECT version, name, up_sha256, down_sha256, phase, applied_by, \
         to_json(applied_at) #>> '{}' AS applied_at, duration_ms, adopted FROM atelier_migrations ORDER BY version",
    )
    .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| Record {
            version: r.version,
            name: r.name,
            up_sha256: r.up_sha256,
            down_sha256: r.down_sha256,
            phase: if r.phase == "contract" { Phase::Contract } else { Phase::Expand },
            applied_by: r.applied_by,
            applied_at: r.applied_at,
            duration_ms: r.duration_ms,
            adopted: r.adopted,
        })
        .collect())
}

/// Records (or re-records) `k` as applied; an adopted one keeps diesel's
/// time of applying.
fn record(conn: &mut Wrapper, k: &Known, actor: &str, ms: Option<i64>, adopted: bool) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO atelier_migrations (version, name, up_sha256, down_sha256, phase, applied_by, applied_at, \
         duration_ms, adopted) VALUES ($1, $2, $3, $4, $5, $6, \
         CASE WHEN $8 THEN COALESCE((SELECT run_on FROM __diesel_schema_migrations WHERE version = $1), now()) \
         ELSE now() END, $7, $8) \
         ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, up_sha256 = EXCLUDED.up_sha256, \
         down_sha256 = EXCLUDED.down_sha256, phase = EXCLUDED.phase, applied_by = EXCLUDED.applied_by, \
         applied_at = EXCLUDED.applied_at, duration_ms = EXCLUDED.duration_ms, adopted = EXCLUDED.adopted",
    )
    .bind::<Text, _>(&k.version)
    .bind::<Text, _>(&k.name)
    .bind::<Text, _>(&k.up_sha256)
    .bind::<Text, _>(&k.down_sha256)
    .bind::<Text, _>(k.phase.as_str())
    .bind::<Text, _>(actor)
    .bind::<Nullable<BigInt>, _>(ms)
    .bind::<Bool, _>(adopted)
    .execute(conn)?;
    Ok(())
}

/// The deployment live in each slot: its newest running or succeeded one.
fn live_slots(conn: &mut Wrapper) -> Result<Vec<LiveSlot>, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        slot: String,
        #[diesel(sql_type = Text)]
        version: String,
        #[diesel(sql_type = Text)]
        status: String,
    }
    if !table_exists(conn, "deployments")? {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT DISTINCT ON (slot) slot, version, status FROM deployments \
         WHERE status IN ('running', 'succeeded') ORDER BY slot, id DESC",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|r| LiveSlot { slot: r.slot, version: r.version, status: r.status }).collect())
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
    blocking(&url.maintenance(), None, move |conn| -> Result<bool, StoreError> {
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
async fn blocking<T: Send + 'static, E: From<StoreError> + Send + 'static>(
    url: &DatabaseUrl,
    limits: Option<Limits>,
    f: impl FnOnce(&mut Wrapper) -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
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
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .execute(&mut conn)
                .map_err(StoreError::from)?;
            diesel::sql_query(format!("SET lock_timeout = {}", limits.lock_timeout.as_millis().max(1)))
                .execute(&mut conn)
                .map_err(StoreError::from)?;
            diesel::sql_query(format!("SET statement_timeout = {}", limits.statement_timeout.as_millis().max(1)))
                .execute(&mut conn)
                .map_err(StoreError::from)?;
        }
        let started = std::time::Instant::now();
        let done = f(&mut conn);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), ok = done.is_ok(), "migration queries on {url}");
        done
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("migration task failed: {e}")))?
}

/// `blocking` under the migration lock, for changes.
async fn blocking_run<T: Send + 'static>(
    url: &DatabaseUrl,
    limits: Limits,
    f: impl FnOnce(&mut Wrapper) -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    blocking(url, Some(limits), f).await
}
