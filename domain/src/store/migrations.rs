//! Schema migrations, embedded from `migrations/` into both binaries and run
//! through diesel-async's connection wrapper (no diesel CLI, no libpq).
//! Migrators serialize on a PostgreSQL advisory lock held on their one
//! connection, whose `application_name` names its owner (command, pid, host)
//! so a second migrator says who holds it, and waits for it or gives up
//! (`RunError::Busy`). Every statement runs with `lock_timeout` and
//! `statement_timeout` set; a migration that hits the lock timeout is rolled
//! back and retried with backoff and jitter (`LockRetry`), each wait naming
//! the sessions that blocked it (a watcher on a second connection reads
//! `pg_blocking_pids` while a statement runs). A `-- atelier:no-transaction`
//! migration that leaves an INVALID index behind (a failed `CREATE INDEX
//! CONCURRENTLY`) stops the run, naming it (`RunError::InvalidIndex`).
//! `relation_sizes` gives `migrate plan` the live size of what a statement locks.
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
use std::sync::{Arc, Condvar, Mutex};
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

/// The advisory lock key every migrator takes ("atelier_migrate"); its
/// holder is found in `pg_locks` as classid = the high 32 bits, objid = the low.
pub const MIGRATION_LOCK: i64 = 0x0061_7465_6c69_6572;

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
    up: String,
    no_transaction: bool,
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

    /// The name and `up.sql` of each migration of the catalog, in order.
    pub fn up_sqls(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.files()?.into_iter().map(|f| (f.known.name, f.up)).collect())
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
                Ok(MigrationFile { migration, known, up, no_transaction: said.no_transaction })
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
    blocking(url, move |conn| {
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
    /// How a migration that hits the lock timeout is retried.
    pub retry: LockRetry,
    /// How long to wait for the migration lock another migrator holds:
    /// None waits as long as it takes (saying who holds it every few
    /// seconds); `Some(d)` gives up after `d` with `RunError::Busy`.
    pub lock_wait: Option<Duration>,
    /// What this migrator is, recorded as its owner of the migration lock
    /// (with the pid and host): `atelier migrate run`, `atelierd`.
    pub command: String,
    /// Hears of each lock-timeout wait as it starts (besides the log).
    pub on_wait: Option<WaitHook>,
}

impl RunOptions {
    /// Expand migrations, no refusal, this build, waiting for the migration
    /// lock: what the daemon's auto-migrate and the test template use.
    pub fn lenient(actor: &str) -> Self {
        RunOptions {
            actor: actor.to_owned(),
            phase: Phase::Expand,
            refuse_drift: false,
            build_version: env!("CARGO_PKG_VERSION").to_owned(),
            retry: LockRetry::default(),
            lock_wait: None,
            command: "atelier".to_owned(),
            on_wait: None,
        }
    }
}

/// How a migration whose statement hit `lock_timeout` is retried: up to
/// `retries` times, the n-th after `delay` x 2^(n-1) (capped at 30 s),
/// jittered down to half of that, so two blocked migrators do not retry in step.
#[derive(Debug, Clone, Copy)]
pub struct LockRetry {
    pub retries: u32,
    pub delay: Duration,
}

impl Default for LockRetry {
    fn default() -> Self {
        LockRetry { retries: 10, delay: Duration::from_millis(500) }
    }
}

impl From<&crate::config::DatabaseSettings> for LockRetry {
    fn from(s: &crate::config::DatabaseSettings) -> Self {
        LockRetry { retries: s.migration_lock_retries, delay: s.migration_retry_delay }
    }
}

impl LockRetry {
    /// The wait before retry `n` (1-based), jittered.
    pub fn backoff(&self, n: u32) -> Duration {
        let full = self.delay.saturating_mul(1u32 << n.saturating_sub(1).min(16)).min(Duration::from_secs(30));
        full.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// A session that held a lock a migration's statement waited for (from
/// `pg_blocking_pids`). `query` is the first line of its current or last
/// statement, cut at 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    pub state: String,
    pub query_start: Option<String>,
    pub query: String,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let app = if self.application_name.is_empty() { "(no application_name)" } else { &self.application_name };
        write!(f, "pid {} {app}, {}", self.pid, if self.state.is_empty() { "?" } else { &self.state })?;
        if let Some(at) = &self.query_start {
            write!(f, " since {at}")?;
        }
        write!(f, ": {}", self.query)
    }
}

/// One wait after a lock timeout: the migration, which retry comes next (of
/// how many), after how long, and who blocked it.
#[derive(Debug, Clone, Serialize)]
pub struct LockWait {
    pub migration: String,
    pub retry: u32,
    pub retries: u32,
    pub retry_in_ms: u64,
    pub blockers: Vec<Blocker>,
}

impl std::fmt::Display for LockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} hit the lock timeout (rolled back); retry {} of {} in {} ms; blocked by: ",
            self.migration, self.retry, self.retries, self.retry_in_ms
        )?;
        if self.blockers.is_empty() {
            f.write_str("(the blocking session ended before it was seen)")
        } else {
            let all: Vec<String> = self.blockers.iter().map(ToString::to_string).collect();
            f.write_str(&all.join("; "))
        }
    }
}

/// A callback for each `LockWait`.
#[derive(Clone)]
pub struct WaitHook(pub Arc<dyn Fn(&LockWait) + Send + Sync>);

impl std::fmt::Debug for WaitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitHook")
    }
}

/// The session holding the migration lock, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockOwner {
    /// Its server process.
    pub backend_pid: i32,
    /// What it said it is: `atelier migrate run pid 4242 on build-7`.
    pub application_name: String,
    /// Its client's address (`local` over a unix socket).
    pub client: String,
    /// When it connected.
    pub since: String,
}

impl std::fmt::Display for LockOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let app = if self.application_name.is_empty() { "(no application_name)" } else { &self.application_name };
        write!(f, "{app} (server pid {}, from {}, connected {})", self.backend_pid, self.client, self.since)
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
    /// Each wait after a lock timeout, in order.
    pub waits: Vec<LockWait>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Nothing applied: the reason names the migration or the slot.
    #[error("{0}")]
    Refused(String),
    /// Another migrator holds the migration lock (nothing applied).
    #[error(
        "nothing applied: the migration lock is held by {}; waited {} ms (`--wait DURATION` waits longer)",
        owner.as_ref().map(ToString::to_string).unwrap_or_else(|| "another migrator (gone as we looked)".into()),
        waited.as_millis()
    )]
    Busy { owner: Option<LockOwner>, waited: Duration },
    /// A migration hit the lock timeout on every attempt: it is rolled back,
    /// the ones before it stay applied.
    #[error(
        "migration {migration} was rolled back: it hit the lock timeout {attempts} time(s); blocked by: {}",
        if blockers.is_empty() { "(not seen)".to_string() } else {
            blockers.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        }
    )]
    LockTimeout { migration: String, attempts: u32, blockers: Vec<Blocker> },
    /// A `-- atelier:no-transaction` migration left an INVALID index (a
    /// failed `CREATE INDEX CONCURRENTLY`): PostgreSQL keeps it, maintains it
    /// on every write, and never uses it.
    #[error(
        "migration {migration} left the index {index} on {table} INVALID{}: drop it \
         (DROP INDEX CONCURRENTLY {index};) and run the migration again",
        cause.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    InvalidIndex { migration: String, index: String, table: String, cause: Option<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RunError {
    fn into_store(self) -> StoreError {
        match self {
            RunError::Store(e) => e,
            other => StoreError::Conflict(other.to_string()),
        }
    }
}

/// Applies every pending embedded expand migration with lenient options
/// (`RunOptions::lenient`); `on_applied` hears of each as it lands.
pub async fn run(
    url: &DatabaseUrl,
    limits: Limits,
    on_applied: impl FnMut(&MigrationInfo) + Send + 'static,
) -> Result<Vec<MigrationInfo>, StoreError> {
    let options = RunOptions { command: "atelierd".into(), ..RunOptions::lenient(&actor(None)) };
    match apply(url, limits, &Catalog::embedded(), options, on_applied).await {
        Ok(report) => Ok(report.applied),
        Err(e) => Err(e.into_store()),
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
    let lock = LockSpec { limits, wait: options.lock_wait, command: options.command.clone() };
    let url_for_watch = url.clone();
    blocking_run(url, lock, move |conn| {
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
        let mut watcher = (!take.is_empty()).then(|| Watcher::start(url_for_watch, conn, limits.lock_timeout));
        for f in take {
            let started = Instant::now();
            let mut retry = 0;
            loop {
                if let Some(w) = watcher.as_mut() {
                    w.arm();
                }
                let result = conn.run_migration(&*f.migration);
                let blockers = watcher.as_mut().map(Watcher::disarm).unwrap_or_default();
                if f.no_transaction {
                    let cause = result.as_ref().err().map(|e| e.to_string());
                    if let Some((index, table)) = invalid_index(conn, &f.up)? {
                        return Err(RunError::InvalidIndex { migration: f.known.name.clone(), index, table, cause });
                    }
                }
                match result {
                    Ok(_) => break,
                    Err(e) if is_lock_timeout(&*e) && retry < options.retry.retries => {
                        retry += 1;
                        let pause = options.retry.backoff(retry);
                        let wait = LockWait {
                            migration: f.known.name.clone(),
                            retry,
                            retries: options.retry.retries,
                            retry_in_ms: pause.as_millis() as u64,
                            blockers,
                        };
                        tracing::warn!(migration = %wait.migration, retry, "{wait}");
                        if let Some(hook) = &options.on_wait {
                            (hook.0)(&wait);
                        }
                        report.waits.push(wait);
                        std::thread::sleep(pause);
                    }
                    Err(e) if is_lock_timeout(&*e) => {
                        return Err(RunError::LockTimeout {
                            migration: f.known.name.clone(),
                            attempts: retry + 1,
                            blockers,
                        });
                    }
                    Err(e) => return Err(migration_failed(&f.known.name, e).into()),
                }
            }
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
        drop(watcher.take());
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
    let lock = LockSpec { limits, wait: None, command: "atelier migrate rollback".into() };
    let run = blocking_run(url, lock, move |conn| {
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
    run.map_err(RunError::into_store)
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
    let lock = LockSpec { limits, wait: None, command: "atelier migrate repair".into() };
    let run = blocking_run(url, lock, move |conn| {
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
    run.map_err(RunError::into_store)
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
    blocking(&url.maintenance(), move |conn| -> Result<bool, StoreError> {
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

/// Whether a migration failed on `lock_timeout` (SQLSTATE 55P03, "canceling
/// statement due to lock timeout"): rolled back, worth retrying.
fn is_lock_timeout(e: &(dyn std::error::Error + Send + Sync)) -> bool {
    e.to_string().contains("due to lock timeout")
}

/// The first INVALID index in this database's schemas whose name `up_sql`
/// mentions: (index, table).
fn invalid_index(conn: &mut Wrapper, up_sql: &str) -> Result<Option<(String, String)>, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        index: String,
        #[diesel(sql_type = Text)]
        table_name: String,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT c.relname::text AS index, t.relname::text AS table_name FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND n.nspname = ANY (current_schemas(false)) ORDER BY c.relname",
    )
    .load(conn)?;
    let sql = up_sql.to_lowercase();
    let named = |name: &str| {
        sql.match_indices(name).any(|(at, _)| {
            let before = sql[..at].chars().next_back();
            let after = sql[at + name.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !ident(before) && !ident(after)
        })
    };
    Ok(rows.into_iter().find(|r| named(&r.index.to_lowercase())).map(|r| (r.index, r.table_name)))
}

/// The live size of a relation a statement locks (`pg_class`).
#[derive(Debug, Clone, Serialize)]
pub struct RelationSize {
    /// As the statement names it.
    pub name: String,
    /// The table: the relation itself, or the table of an index.
    pub table: String,
    /// The table with its indexes and TOAST (`pg_total_relation_size`).
    pub total_bytes: i64,
    /// `pg_class.reltuples`; None when the table was never analyzed.
    pub estimated_rows: Option<i64>,
}

/// The size of each relation of `names` that exists (in the search path), in order.
pub async fn relation_sizes(url: &DatabaseUrl, names: Vec<String>) -> Result<Vec<RelationSize>, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        table_name: String,
        #[diesel(sql_type = BigInt)]
        total_bytes: i64,
        #[diesel(sql_type = BigInt)]
        estimated_rows: i64,
    }
    blocking(url, move |conn| {
        let mut out = Vec::new();
        for name in names {
            let rows: Vec<Row> = diesel::sql_query(
                "SELECT t.relname::text AS table_name, pg_total_relation_size(t.oid) AS total_bytes, \
                 t.reltuples::bigint AS estimated_rows FROM pg_class c \
                 LEFT JOIN pg_index i ON i.indexrelid = c.oid \
                 JOIN pg_class t ON t.oid = COALESCE(i.indrelid, c.oid) WHERE c.oid = to_regclass($1)",
            )
            .bind::<Text, _>(&name)
            .load(conn)?;
            if let Some(r) = rows.into_iter().next() {
                out.push(RelationSize {
                    name,
                    table: r.table_name,
                    total_bytes: r.total_bytes,
                    estimated_rows: (r.estimated_rows >= 0).then_some(r.estimated_rows),
                });
            }
        }
        Ok(out)
    })
    .await
}

/// Who is asking for the migration lock, and how patiently.
struct LockSpec {
    limits: Limits,
    wait: Option<Duration>,
    /// `atelier migrate run`, `atelierd`: with the pid and host, the owner's name.
    command: String,
}

/// What a migrator's session calls itself (`application_name`, at most 63
/// bytes): the command, this process's pid and the host.
fn owner_name(command: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    let mut name = format!("{command} pid {} on {host}", std::process::id());
    name.retain(|c| c.is_ascii() && !c.is_ascii_control());
    name.truncate(63);
    name
}

/// The session holding the migration lock in this database, if any.
fn lock_owner(conn: &mut Wrapper) -> Result<Option<LockOwner>, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
        #[diesel(sql_type = Text)]
        application_name: String,
        #[diesel(sql_type = Text)]
        client: String,
        #[diesel(sql_type = Text)]
        since: String,
    }
    let (hi, lo) = ((MIGRATION_LOCK >> 32) as u32, (MIGRATION_LOCK & 0xffff_ffff) as u32);
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT a.pid, COALESCE(a.application_name, '') AS application_name, \
         COALESCE(host(a.client_addr), 'local') AS client, COALESCE(to_json(a.backend_start) #>> '{{}}', '') AS since \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = {hi}::oid AND l.objid = {lo}::oid \
         AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ))
    .load(conn)?;
    Ok(rows.into_iter().next().map(|r| LockOwner {
        backend_pid: r.pid,
        application_name: r.application_name,
        client: r.client,
        since: r.since,
    }))
}

/// Takes the migration lock on `conn`, naming this session its owner first;
/// while another holds it, waits per `spec.wait`, saying who holds it.
fn take_lock(conn: &mut Wrapper, spec: &LockSpec) -> Result<(), RunError> {
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    diesel::sql_query("SELECT set_config('application_name', $1, false)")
        .bind::<Text, _>(owner_name(&spec.command))
        .execute(conn)
        .map_err(StoreError::from)?;
    let started = Instant::now();
    let mut said = None::<Instant>;
    loop {
        let l: Locked = diesel::sql_query(format!("SELECT pg_try_advisory_lock({MIGRATION_LOCK}) AS locked"))
            .get_result(conn)
            .map_err(StoreError::from)?;
        if l.locked {
            return Ok(());
        }
        let owner = lock_owner(conn)?;
        let waited = started.elapsed();
        if spec.wait.is_some_and(|w| waited >= w) {
            return Err(RunError::Busy { owner, waited });
        }
        if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
            let who = owner.as_ref().map(ToString::to_string).unwrap_or_else(|| "another migrator".into());
            tracing::warn!("waiting for the migration lock, held by {who}");
            said = Some(Instant::now());
        }
        let left = spec.wait.map(|w| w.saturating_sub(waited)).unwrap_or(Duration::MAX);
        std::thread::sleep(left.min(Duration::from_millis(200)));
    }
}

/// Watches, from a second connection, which sessions block the migrator's
/// statement while it runs (`pg_blocking_pids`). It connects only once a
/// statement has run a while, so a quick migration costs nothing.
struct Watcher {
    shared: Arc<(Mutex<Watch>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Watch {
    armed_at: Option<Instant>,
    epoch: u64,
    stop: bool,
    seen: Vec<Blocker>,
}

impl Watcher {
    fn start(url: DatabaseUrl, conn: &mut Wrapper, lock_timeout: Duration) -> Watcher {
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<Pid>(conn).map(|p| p.pid).ok();
        let shared = Arc::new((Mutex::new(Watch::default()), Condvar::new()));
        let delay = (lock_timeout / 4).min(Duration::from_millis(500));
        let every = (lock_timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(200));
        let inner = shared.clone();
        let thread = pid.map(|pid| std::thread::spawn(move || watch(url, pid, inner, delay, every)));
        Watcher { shared, thread }
    }

    fn arm(&mut self) {
        let (m, cv) = &*self.shared;
        let mut w = m.lock().unwrap_or_else(|e| e.into_inner());
        w.armed_at = Some(Instant::now());
        w.epoch += 1;
        w.seen.clear();
        cv.notify_all();
    }

    fn disarm(&mut self) -> Vec<Blocker> {
        let (m, cv) = &*self.shared;
        let mut w = m.lock().unwrap_or_else(|e| e.into_inner());
        w.armed_at = None;
        w.epoch += 1;
        cv.notify_all();
        std::mem::take(&mut w.seen)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.shared;
            m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The watcher's loop: while armed for longer than `delay`, every `every`,
/// records the sessions blocking `pid`.
fn watch(url: DatabaseUrl, pid: i32, shared: Arc<(Mutex<Watch>, Condvar)>, delay: Duration, every: Duration) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
        #[diesel(sql_type = Text)]
        application_name: String,
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = Nullable<Text>)]
        query_start: Option<String>,
        #[diesel(sql_type = Text)]
        query: String,
    }
    let (m, cv) = &*shared;
    let mut conn: Option<Wrapper> = None;
    loop {
        let epoch = {
            let mut w = m.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if w.stop {
                    return;
                }
                match w.armed_at {
                    None => w = cv.wait(w).unwrap_or_else(|e| e.into_inner()),
                    Some(at) if at.elapsed() < delay => {
                        w = cv.wait_timeout(w, delay - at.elapsed()).unwrap_or_else(|e| e.into_inner()).0
                    }
                    Some(_) => break w.epoch,
                }
            }
        };
        if conn.is_none() {
            match Wrapper::establish(&url.expose()) {
                Ok(mut c) => {
                    let _ =
                        diesel::sql_query("SET application_name = 'atelier migrate (lock watcher)'").execute(&mut c);
                    conn = Some(c);
                }
                Err(e) => tracing::debug!("lock watcher cannot connect: {e}"),
            }
        }
        let rows: Vec<Row> = conn
            .as_mut()
            .and_then(|c| {
                diesel::sql_query(
                    "SELECT pid, COALESCE(application_name, '') AS application_name, COALESCE(state, '') AS state, \
                     to_json(query_start) #>> '{}' AS query_start, \
                     left(split_part(COALESCE(query, ''), E'\\n', 1), 200) AS query \
                     FROM pg_stat_activity WHERE pid = ANY (pg_blocking_pids($1)) ORDER BY pid",
                )
                .bind::<diesel::sql_types::Integer, _>(pid)
                .load(c)
                .map_err(|e| tracing::debug!("lock watcher query failed: {e}"))
                .ok()
            })
            .unwrap_or_default();
        let mut w = m.lock().unwrap_or_else(|e| e.into_inner());
        if w.epoch == epoch {
            for r in rows {
                if !w.seen.iter().any(|b| b.pid == r.pid) {
                    w.seen.push(Blocker {
                        pid: r.pid,
                        application_name: r.application_name,
                        state: r.state,
                        query_start: r.query_start,
                        query: r.query.trim().to_owned(),
                    });
                }
            }
        }
        if !w.stop && w.epoch == epoch {
            let _ = cv.wait_timeout(w, every);
        }
    }
}

/// Runs `f` on a fresh wrapped connection in a blocking thread (the harness
/// is synchronous).
async fn blocking<T: Send + 'static, E: From<StoreError> + Send + 'static>(
    url: &DatabaseUrl,
    f: impl FnOnce(&mut Wrapper) -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    let url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = connect(&url)?;
        let started = std::time::Instant::now();
        let done = f(&mut conn);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), ok = done.is_ok(), "migration queries on {url}");
        done
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("migration task failed: {e}")))?
}

fn connect(url: &DatabaseUrl) -> Result<Wrapper, StoreError> {
    let started = std::time::Instant::now();
    tracing::debug!("connecting to {url}");
    let conn = Wrapper::establish(&url.expose())
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to {url}: {e}")))?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis(), "connected to {url}");
    Ok(conn)
}

/// `blocking` under the migration lock, for changes: the lock (session-level,
/// held until this connection closes, whatever happens) first, then the
/// timeouts, so waiting for the lock is not cut short by them.
async fn blocking_run<T: Send + 'static>(
    url: &DatabaseUrl,
    lock: LockSpec,
    f: impl FnOnce(&mut Wrapper) -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    let url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = connect(&url)?;
        take_lock(&mut conn, &lock)?;
        let limits = lock.limits;
        for sql in [
            format!("SET lock_timeout = {}", limits.lock_timeout.as_millis().max(1)),
            format!("SET statement_timeout = {}", limits.statement_timeout.as_millis().max(1)),
        ] {
            diesel::sql_query(sql).execute(&mut conn).map_err(StoreError::from)?;
        }
        let started = std::time::Instant::now();
        let done = f(&mut conn);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), ok = done.is_ok(), "migration queries on {url}");
        done
    })
    .await
    .map_err(|e| RunError::Store(StoreError::Unavailable(format!("migration task failed: {e}"))))?
}
