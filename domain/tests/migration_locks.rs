//! Lock-safe migration runs against a real PostgreSQL, with migrations
//! injected from a temporary directory (a copy of `migrations/` plus the
//! test's own): a migration blocked by a long transaction retries and names
//! it; two migrators never both apply, and the second names the owner of the
//! lock; a failed `CREATE INDEX CONCURRENTLY` is reported as an INVALID
//! index; and an expand migration (a column and a concurrent index) on a
//! 200k-row table under a steady writer costs the writer no error (figures
//! printed, not asserted).

use atelier_domain::rules::migration_integrity::State;
use atelier_domain::store::migrations::{
    self, Catalog, Limits, LockRetry, LockWait, RunError, RunOptions, RunReport, WaitHook,
};
use atelier_domain::testing::{TestDb, eventually};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A copy of `migrations/` in a temporary directory, plus `extra` (name, up.sql).
fn catalog(tag: &str, extra: &[(&str, &str)]) -> (Catalog, TempDir) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let dir = std::env::temp_dir().join(format!("atelier-locks-{tag}-{}", uuid::Uuid::now_v7().simple()));
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let to = dir.join(entry.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for f in ["up.sql", "down.sql"] {
            std::fs::copy(entry.path().join(f), to.join(f)).unwrap();
        }
    }
    for (name, up) in extra {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("up.sql"), up).unwrap();
        std::fs::write(dir.join(name).join("down.sql"), "SELECT 1;\n").unwrap();
    }
    (Catalog::from_dir(&dir), TempDir(dir))
}

/// Removes the catalog's directory, even when the test fails.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn exec(db: &TestDb, sql: &str) {
    let mut conn = db.db().conn().await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    found: bool,
}

async fn holds(db: &TestDb, sql: &str) -> bool {
    let mut conn = db.db().conn().await.unwrap();
    diesel::sql_query(sql).get_result::<Found>(&mut conn).await.unwrap().found
}

/// Options whose lock-timeout retries come quickly and many, recording each wait.
fn options(command: &str, waits: &Arc<Mutex<Vec<LockWait>>>) -> RunOptions {
    let seen = waits.clone();
    RunOptions {
        retry: LockRetry { retries: 40, delay: Duration::from_millis(100) },
        command: command.to_owned(),
        on_wait: Some(WaitHook(Arc::new(move |w: &LockWait| seen.lock().unwrap().push(w.clone())))),
        ..RunOptions::lenient("tester@host")
    }
}

const SHORT: Limits = Limits { lock_timeout: Duration::from_millis(300), statement_timeout: Duration::from_secs(60) };

fn names(report: &RunReport) -> Vec<&str> {
    report.applied.iter().map(|m| m.name.as_str()).collect()
}

/// A session that reads `table` in a transaction it keeps open (ACCESS
/// SHARE, which every ALTER TABLE waits for), as `application_name`.
async fn long_transaction(db: &TestDb, application_name: &str, table: &str) -> atelier_domain::store::PooledConn {
    let mut conn = db.db().conn().await.unwrap();
    for sql in [
        format!("SET application_name = '{application_name}'"),
        "BEGIN".to_owned(),
        format!("SELECT count(*) FROM {table}"),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    conn
}

#[tokio::test]
async fn a_migration_blocked_by_a_long_transaction_retries_names_the_blocker_and_succeeds_after_it_ends() {
    let db = TestDb::new().await;
    exec(&db, "CREATE TABLE ledger (id BIGINT PRIMARY KEY, v INT)").await;
    let name = "2099-02-01-000001_ledger_note";
    let (catalog, _dir) = catalog("blocked", &[(name, "ALTER TABLE ledger ADD COLUMN note TEXT;\n")]);
    let mut blocker = long_transaction(&db, "test-long-transaction", "ledger").await;

    let waits = Arc::new(Mutex::new(Vec::new()));
    let run = {
        let (url, catalog, options) = (db.url().clone(), catalog.clone(), options("migrator", &waits));
        tokio::spawn(async move { migrations::apply(&url, SHORT, &catalog, options, |_| {}).await })
    };
    let named = |w: &LockWait| w.blockers.iter().any(|b| b.application_name == "test-long-transaction");
    eventually(Duration::from_secs(60), "a lock-timeout wait naming the long transaction", || {
        let found = waits.lock().unwrap().iter().any(named);
        async move { found }
    })
    .await;
    assert!(!holds(&db, "SELECT count(*) = 1 AS found FROM information_schema.columns WHERE column_name = 'note' AND table_name = 'ledger'").await);
    diesel::sql_query("COMMIT").execute(&mut blocker).await.unwrap();

    let report = tokio::time::timeout(Duration::from_secs(120), run).await.expect("the run ends").unwrap().unwrap();
    assert_eq!(names(&report), [name]);
    let waited: Vec<&LockWait> = report.waits.iter().filter(|w| named(w)).collect();
    assert!(!waited.is_empty(), "{:?}", report.waits);
    let b = waited[0].blockers.iter().find(|b| b.application_name == "test-long-transaction").unwrap();
    assert_eq!(b.state, "idle in transaction", "{b:?}");
    assert!(b.query.contains("SELECT count(*) FROM ledger") && b.query_start.is_some(), "{b:?}");
    assert!(waited[0].to_string().contains("test-long-transaction"), "the log line names it: {}", waited[0]);
    assert!(holds(&db, "SELECT count(*) = 1 AS found FROM information_schema.columns WHERE column_name = 'note' AND table_name = 'ledger'").await);
    let status = migrations::status_of(db.url(), &catalog).await.unwrap();
    assert_eq!(status.iter().find(|m| m.name == name).unwrap().state, State::Applied);
}

#[tokio::test]
async fn a_migration_still_blocked_after_its_retries_is_rolled_back_naming_the_blocker() {
    let db = TestDb::new().await;
    exec(&db, "CREATE TABLE ledger (id BIGINT PRIMARY KEY, v INT)").await;
    let name = "2099-02-01-000001_ledger_note";
    let (catalog, _dir) = catalog("gives-up", &[(name, "ALTER TABLE ledger ADD COLUMN note TEXT;\n")]);
    let mut blocker = long_transaction(&db, "test-never-ends", "ledger").await;
    let waits = Arc::new(Mutex::new(Vec::new()));
    let options =
        RunOptions { retry: LockRetry { retries: 2, delay: Duration::from_millis(50) }, ..options("m", &waits) };
    match migrations::apply(db.url(), SHORT, &catalog, options, |_| {}).await {
        Err(e @ RunError::LockTimeout { .. }) => {
            let RunError::LockTimeout { migration, attempts, .. } = &e else { unreachable!() };
            assert_eq!((migration.as_str(), *attempts), (name, 3), "{e}");
        }
        other => panic!("expected a lock timeout, got {other:?}"),
    }
    assert_eq!(waits.lock().unwrap().len(), 2);
    diesel::sql_query("COMMIT").execute(&mut blocker).await.unwrap();
    let status = migrations::status_of(db.url(), &catalog).await.unwrap();
    assert_eq!(status.iter().find(|m| m.name == name).unwrap().state, State::Pending, "rolled back");
}

#[tokio::test]
async fn two_concurrent_runs_never_both_apply_and_a_second_migrator_names_the_owner() {
    let db = TestDb::new().await;
    let first = "2099-02-01-000001_race_once";
    let second = "2099-02-01-000002_race_once_x";
    let (catalog, _dir) = catalog("race", &[(first, "CREATE TABLE race_once (id INT);\nSELECT pg_sleep(0.3);\n")]);

    // Two at once, both willing to wait: one applies, the other finds nothing to do.
    let run = |command: &str| {
        let waits = Arc::new(Mutex::new(Vec::new()));
        let options = RunOptions { lock_wait: Some(Duration::from_secs(60)), ..options(command, &waits) };
        let (url, catalog) = (db.url().clone(), catalog.clone());
        tokio::spawn(async move { migrations::apply(&url, SHORT, &catalog, options, |_| {}).await })
    };
    let (a, b) = (run("migrator-a"), run("migrator-b"));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    let mut applied = names(&a);
    applied.extend(names(&b));
    assert_eq!(applied, [first], "exactly one applies it");

    // One holds the lock (blocked on a long transaction); a second without --wait is told who.
    let (catalog, _dir2) = catalog_with_second(first, second);
    let mut blocker = long_transaction(&db, "test-reader", "race_once").await;
    let waits = Arc::new(Mutex::new(Vec::new()));
    let holder = {
        let (url, catalog, options) = (db.url().clone(), catalog.clone(), options("test-migrator-a", &waits));
        tokio::spawn(async move { migrations::apply(&url, SHORT, &catalog, options, |_| {}).await })
    };
    eventually(Duration::from_secs(60), "the first migrator waiting on the reader", || {
        let waiting = !waits.lock().unwrap().is_empty();
        async move { waiting }
    })
    .await;
    let second_try = RunOptions { lock_wait: Some(Duration::ZERO), ..options("test-migrator-b", &waits) };
    match migrations::apply(db.url(), SHORT, &catalog, second_try, |_| {}).await {
        Err(e @ RunError::Busy { .. }) => {
            let RunError::Busy { owner, .. } = &e else { unreachable!() };
            let owner = owner.as_ref().expect("the owner is named");
            let expected = format!("test-migrator-a pid {} on ", std::process::id());
            assert!(owner.application_name.starts_with(&expected), "{owner:?}");
            assert!(e.to_string().contains(&expected), "{e}");
        }
        other => panic!("expected busy, got {other:?}"),
    }
    diesel::sql_query("COMMIT").execute(&mut blocker).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(120), holder).await.expect("ends").unwrap().unwrap();
    assert_eq!(names(&report), [second]);
}

/// The race's catalog again, with a second migration that waits on readers of `race_once`.
fn catalog_with_second(first: &str, second: &str) -> (Catalog, TempDir) {
    catalog(
        "race2",
        &[
            (first, "CREATE TABLE race_once (id INT);\nSELECT pg_sleep(0.3);\n"),
            (second, "ALTER TABLE race_once ADD COLUMN x INT;\n"),
        ],
    )
}

#[tokio::test]
async fn a_failed_concurrent_index_is_reported_as_invalid_and_named() {
    let db = TestDb::new().await;
    exec(&db, "CREATE TABLE dup (id BIGINT PRIMARY KEY, v INT)").await;
    exec(&db, "INSERT INTO dup VALUES (1, 7), (2, 7)").await;
    let name = "2099-02-01-000001_dup_v_key";
    let up = "-- atelier:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY dup_v_key ON dup (v);\n";
    let (catalog, _dir) = catalog("invalid", &[(name, up)]);
    let waits = Arc::new(Mutex::new(Vec::new()));
    match migrations::apply(db.url(), SHORT, &catalog, options("m", &waits), |_| {}).await {
        Err(e @ RunError::InvalidIndex { .. }) => {
            let RunError::InvalidIndex { migration, index, table, cause } = &e else { unreachable!() };
            assert_eq!((migration.as_str(), index.as_str(), table.as_str()), (name, "dup_v_key", "dup"));
            assert!(cause.as_deref().is_some_and(|c| c.contains("could not create unique index")), "{cause:?}");
            assert!(e.to_string().contains("DROP INDEX CONCURRENTLY dup_v_key"), "{e}");
        }
        other => panic!("expected an invalid index, got {other:?}"),
    }
    let status = migrations::status_of(db.url(), &catalog).await.unwrap();
    assert_eq!(status.iter().find(|m| m.name == name).unwrap().state, State::Pending);

    // After the operator drops it and fixes the data, the run goes through.
    exec(&db, "DROP INDEX CONCURRENTLY dup_v_key").await;
    exec(&db, "UPDATE dup SET v = 8 WHERE id = 2").await;
    let report = migrations::apply(db.url(), SHORT, &catalog, options("m", &waits), |_| {}).await.unwrap();
    assert_eq!(names(&report), [name]);
}

/// What the writer saw: each operation's latency, and its errors.
#[derive(Default)]
struct Writes {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

#[tokio::test]
async fn an_expand_migration_on_a_200k_row_table_costs_a_steady_writer_no_error() {
    let db = TestDb::new().await;
    exec(&db, "CREATE TABLE ledger (id BIGSERIAL PRIMARY KEY, v INT NOT NULL)").await;
    exec(&db, "INSERT INTO ledger (v) SELECT g FROM generate_series(1, 200000) g").await;
    exec(&db, "ANALYZE ledger").await;
    let column = "2099-02-01-000001_ledger_memo";
    let index = "2099-02-01-000002_ledger_memo_index";
    let (catalog, _dir) = catalog(
        "zero-downtime",
        &[
            (column, "ALTER TABLE ledger ADD COLUMN memo TEXT;\n"),
            (index, "-- atelier:no-transaction\nCREATE INDEX CONCURRENTLY ledger_memo_idx ON ledger (memo);\n"),
        ],
    );
    let limits = Limits { lock_timeout: Duration::from_secs(2), statement_timeout: Duration::from_secs(120) };

    // A writer: an insert or an update every 5 ms (200/s), each on its own.
    let writes = Arc::new(Mutex::new(Writes::default()));
    let writing_since = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (pool, writes, stop) = (db.db().clone(), writes.clone(), stop.clone());
        tokio::spawn(async move {
            let mut conn = pool.conn().await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: i64 = 0;
            while !std::sync::atomic::AtomicBool::load(&stop, std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let sql = if n % 2 == 0 {
                    format!("INSERT INTO ledger (v) VALUES ({n})")
                } else {
                    format!("UPDATE ledger SET v = v + 1 WHERE id = {}", 1 + (n * 7919) % 200_000)
                };
                let started = Instant::now();
                let result = diesel::sql_query(sql).execute(&mut conn).await;
                let mut w = writes.lock().unwrap();
                w.latencies.push(started.elapsed());
                if let Err(e) = result {
                    w.errors.push(e.to_string());
                }
            }
        })
    };
    let ops = || writes.lock().unwrap().latencies.len();
    eventually(Duration::from_secs(60), "the writer under way", || {
        let n = ops();
        async move { n >= 100 }
    })
    .await;
    let before = ops();
    let started = Instant::now();
    let waits = Arc::new(Mutex::new(Vec::new()));
    let report = migrations::apply(db.url(), limits, &catalog, options("m", &waits), |_| {}).await.unwrap();
    let migrating = started.elapsed();
    let during = ops() - before;
    eventually(Duration::from_secs(60), "the writer going on after the migration", || {
        let n = ops();
        async move { n >= before + during + 100 }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let writing = writing_since.elapsed();

    assert_eq!(names(&report), [column, index]);
    assert!(
        holds(&db, "SELECT indisvalid AS found FROM pg_index WHERE indexrelid = 'ledger_memo_idx'::regclass").await
    );
    // What `migrate plan` shows of it: the table's live size and rows, an index resolved to its table.
    let sizes = migrations::relation_sizes(db.url(), vec!["ledger".into(), "ledger_memo_idx".into(), "nope".into()])
        .await
        .unwrap();
    let found: Vec<(&str, &str)> = sizes.iter().map(|s| (s.name.as_str(), s.table.as_str())).collect();
    assert_eq!(found, [("ledger", "ledger"), ("ledger_memo_idx", "ledger")]);
    assert!(sizes[0].total_bytes > 1_000_000 && sizes[0].estimated_rows.is_some_and(|r| r > 100_000), "{sizes:?}");
    let w = writes.lock().unwrap();
    assert!(w.errors.is_empty(), "the writer saw errors: {:?}", w.errors);
    let mut sorted = w.latencies.clone();
    sorted.sort();
    let p = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "zero-downtime: {} writes ({during} during the {:.0} ms migration), {:.0}/s, 0 errors, p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; lock_timeout {} ms, {} lock-timeout retries",
        sorted.len(),
        ms(migrating),
        sorted.len() as f64 / writing.as_secs_f64(),
        ms(p(0.5)),
        ms(p(0.99)),
        ms(*sorted.last().unwrap()),
        limits.lock_timeout.as_millis(),
        report.waits.len()
    );
}
