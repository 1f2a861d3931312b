//! The migrations against a real PostgreSQL: all up, all down, all up again.

use atelier_domain::store::migrations::{self, Limits};
use atelier_domain::testing::TestDb;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use std::time::Duration;

const LIMITS: Limits = Limits { lock_timeout: Duration::from_secs(10), statement_timeout: Duration::from_secs(60) };

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn user_tables(db: &TestDb) -> i64 {
    let mut conn = db.db().conn().await.unwrap();
    let c: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    c.n
}

#[tokio::test]
async fn all_up_all_down_all_up_again() {
    let db = TestDb::empty().await;
    let all = migrations::status(db.url()).await.unwrap();
    assert!(all.len() >= 6 && all.iter().all(|m| !m.applied));

    let applied = migrations::run(db.url(), LIMITS, |_| {}).await.unwrap();
    assert_eq!(applied.len(), all.len());
    assert!(migrations::status(db.url()).await.unwrap().iter().all(|m| m.applied));
    let tables = user_tables(&db).await;
    assert!(tables >= 20, "only {tables} tables");

    let reverted = migrations::rollback(db.url(), LIMITS, usize::MAX, |_| {}).await.unwrap();
    assert_eq!(reverted.len(), all.len());
    assert_eq!(reverted[0].name, all.last().unwrap().name, "newest first");
    assert_eq!(user_tables(&db).await, 0, "down.sql left tables behind");

    let again = migrations::run(db.url(), LIMITS, |_| {}).await.unwrap();
    assert_eq!(again.len(), all.len());
    assert_eq!(user_tables(&db).await, tables);
    // Nothing pending: a second run applies nothing.
    assert!(migrations::run(db.url(), LIMITS, |_| {}).await.unwrap().is_empty());
}

#[tokio::test]
async fn rollback_reverts_only_the_last_n() {
    let db = TestDb::empty().await;
    migrations::run(db.url(), LIMITS, |_| {}).await.unwrap();
    let reverted = migrations::rollback(db.url(), LIMITS, 1, |_| {}).await.unwrap();
    assert_eq!(reverted.len(), 1);
    let status = migrations::status(db.url()).await.unwrap();
    assert_eq!(status.iter().filter(|m| !m.applied).count(), 1);
    assert!(!status.last().unwrap().applied);
}

#[tokio::test]
async fn concurrent_migrators_serialize() {
    let db = TestDb::empty().await;
    let (a, b) = tokio::join!(migrations::run(db.url(), LIMITS, |_| {}), migrations::run(db.url(), LIMITS, |_| {}));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), migrations::status(db.url()).await.unwrap().len(), "each migration ran once");
}
