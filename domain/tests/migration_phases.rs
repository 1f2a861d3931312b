//! Phases and the contract gate against a real PostgreSQL, with a set of
//! migrations injected from a directory: the embedded ones plus a contract
//! migration and an expand one after it (the embedded set has no contract one).

use atelier_domain::rules::migration_integrity::State;
use atelier_domain::rules::migration_lint::Phase;
use atelier_domain::store::migrations::{self, Catalog, Limits, RunError, RunOptions};
use atelier_domain::testing::TestDb;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMITS: Limits = Limits { lock_timeout: Duration::from_secs(10), statement_timeout: Duration::from_secs(60) };
const CONTRACT: &str = "2099-01-01-000001_drop_legacy_note";
const LATER_EXPAND: &str = "2099-01-01-000002_add_reminder";

/// A copy of `migrations/` plus the contract and the later expand migration.
fn catalog_dir(tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let dir = std::env::temp_dir().join(format!("atelier-phases-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let to = dir.join(entry.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for f in ["up.sql", "down.sql"] {
            std::fs::copy(entry.path().join(f), to.join(f)).unwrap();
        }
    }
    let write = |name: &str, up: &str, down: &str| {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("up.sql"), up).unwrap();
        std::fs::write(dir.join(name).join("down.sql"), down).unwrap();
    };
    write(
        CONTRACT,
        "-- atelier:phase contract\n-- atelier:allow drop-table: the note table is unused since 0.1\nDROP TABLE legacy_note;\n",
        "CREATE TABLE legacy_note (id BIGINT PRIMARY KEY);\n",
    );
    write(LATER_EXPAND, "CREATE TABLE reminder (id BIGINT PRIMARY KEY);\n", "DROP TABLE reminder;\n");
    dir
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    found: bool,
}

async fn exec(db: &TestDb, sql: &str) {
    let mut conn = db.db().conn().await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

async fn table_exists(db: &TestDb, table: &str) -> bool {
    let mut conn = db.db().conn().await.unwrap();
    let f: Found = diesel::sql_query(format!("SELECT to_regclass('{table}') IS NOT NULL AS found"))
        .get_result(&mut conn)
        .await
        .unwrap();
    f.found
}

fn options(phase: Phase) -> RunOptions {
    RunOptions { phase, refuse_drift: true, ..RunOptions::lenient("tester@host") }
}

#[tokio::test]
async fn a_contract_migration_waits_then_runs_once_no_older_deployment_is_live() {
    let db = TestDb::new().await;
    let dir = catalog_dir("gate");
    let catalog = Catalog::from_dir(&dir);
    exec(&db, "CREATE TABLE legacy_note (id BIGINT PRIMARY KEY)").await;

    // Default phase: the contract migration waits, the expand one after it is applied.
    let report = migrations::apply(db.url(), LIMITS, &catalog, options(Phase::Expand), |_| {}).await.unwrap();
    let applied: Vec<&str> = report.applied.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(applied, [LATER_EXPAND]);
    assert_eq!(report.waiting.len(), 1);
    assert_eq!(report.waiting[0].name, CONTRACT);
    assert!(table_exists(&db, "legacy_note").await && table_exists(&db, "reminder").await);
    let status = migrations::status_of(db.url(), &catalog).await.unwrap();
    let contract = status.iter().find(|m| m.name == CONTRACT).unwrap();
    assert_eq!((contract.state, contract.phase), (State::Pending, Some(Phase::Contract)));

    // An older version is live in a slot (running a deploy): refused, naming the slot and its version.
    exec(&db, "INSERT INTO deployments (version, slot, status, actor) VALUES ('0.0.1', 'blue', 'running', 'ci')").await;
    match migrations::apply(db.url(), LIMITS, &catalog, options(Phase::Contract), |_| {}).await {
        Err(RunError::Refused(why)) => {
            assert!(why.contains(CONTRACT) && why.contains("blue") && why.contains("0.0.1"), "{why}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(table_exists(&db, "legacy_note").await, "nothing applied");

    // The old deploy is over and this build's version is live in both slots: allowed.
    let own = env!("CARGO_PKG_VERSION");
    exec(&db, "UPDATE deployments SET status = 'failed', finished_at = now()").await;
    exec(
        &db,
        &format!(
            "INSERT INTO deployments (version, slot, status, actor, finished_at) VALUES \
             ('{own}', 'blue', 'succeeded', 'ci', now()), ('{own}', 'green', 'succeeded', 'ci', now())"
        ),
    )
    .await;
    let report = migrations::apply(db.url(), LIMITS, &catalog, options(Phase::Contract), |_| {}).await.unwrap();
    let applied: Vec<&str> = report.applied.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(applied, [CONTRACT]);
    assert!(!table_exists(&db, "legacy_note").await);
    let status = migrations::status_of(db.url(), &catalog).await.unwrap();
    let contract = status.iter().find(|m| m.name == CONTRACT).unwrap();
    assert_eq!(contract.state, State::Applied);
    let record = contract.record.as_ref().unwrap();
    assert_eq!(record.phase, Phase::Contract);
    assert!(record.applied_by == "tester@host" && record.duration_ms.is_some() && !record.adopted, "{record:?}");

    // This build's embedded set does not know those two: missing, and the contract one says so.
    let embedded = migrations::status(db.url()).await.unwrap();
    let missing: Vec<(&str, Option<Phase>)> =
        embedded.iter().filter(|m| m.state == State::Missing).map(|m| (m.name.as_str(), m.phase)).collect();
    assert_eq!(missing, [(CONTRACT, Some(Phase::Contract)), (LATER_EXPAND, Some(Phase::Expand))]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_fresh_run_records_every_migration_with_checksums_actor_and_duration() {
    let db = TestDb::empty().await;
    let applied = migrations::run(db.url(), LIMITS, |_| {}).await.unwrap();
    let status = migrations::status(db.url()).await.unwrap();
    assert_eq!(applied.len(), status.len());
    for m in &status {
        assert_eq!(m.state, State::Applied, "{m:?}");
        let r = m.record.as_ref().unwrap();
        assert!(r.applied_by.contains('@') && r.duration_ms.is_some() && !r.adopted, "{r:?}");
        assert_eq!(
            r.up_sha256,
            atelier_domain::rules::migration_integrity::checksum(migrations::up_sql(&m.name).unwrap())
        );
    }
    // Rolled back and re-applied: the record follows.
    migrations::rollback(db.url(), LIMITS, 2, |_| {}).await.unwrap();
    assert!(
        !table_exists(&db, "atelier_migrations").await || {
            let s = migrations::status(db.url()).await.unwrap();
            s.iter().filter(|m| m.state == State::Pending).count() == 2
        }
    );
    migrations::run(db.url(), LIMITS, |_| {}).await.unwrap();
    assert!(migrations::status(db.url()).await.unwrap().iter().all(|m| m.state == State::Applied));
}

#[tokio::test]
async fn a_no_transaction_migration_runs_outside_a_transaction() {
    let db = TestDb::new().await;
    let dir = catalog_dir("no-transaction");
    // CREATE INDEX CONCURRENTLY fails inside a transaction block: it builds
    // here only because the file says it runs outside one.
    let name = "2099-01-01-000003_index_sales_notes";
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(
        dir.join(name).join("up.sql"),
        "-- atelier:no-transaction\nCREATE INDEX CONCURRENTLY sales_notes_idx ON sales (notes);\n",
    )
    .unwrap();
    std::fs::write(dir.join(name).join("down.sql"), "DROP INDEX sales_notes_idx;\n").unwrap();
    exec(&db, "CREATE TABLE legacy_note (id BIGINT PRIMARY KEY)").await;
    let catalog = Catalog::from_dir(&dir);
    let report = migrations::apply(db.url(), LIMITS, &catalog, options(Phase::Expand), |_| {}).await.unwrap();
    assert!(report.applied.iter().any(|m| m.name == name), "{report:?}");
    assert!(table_exists(&db, "sales_notes_idx").await);

    // The same statement without the directive is refused by PostgreSQL: no index.
    let db = TestDb::new().await;
    exec(&db, "CREATE TABLE legacy_note (id BIGINT PRIMARY KEY)").await;
    std::fs::write(dir.join(name).join("up.sql"), "CREATE INDEX CONCURRENTLY sales_notes_idx ON sales (notes);\n")
        .unwrap();
    let err = migrations::apply(db.url(), LIMITS, &catalog, options(Phase::Expand), |_| {}).await.unwrap_err();
    assert!(format!("{err}").contains("transaction block"), "{err}");
    assert!(!table_exists(&db, "sales_notes_idx").await);
    std::fs::remove_dir_all(&dir).unwrap();
}
