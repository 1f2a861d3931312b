//! The operational endpoints of a daemon on port 0 with its own database.

mod common;

use common::spawn_app;

#[tokio::test]
async fn health_ready_and_version_answer() {
    let mut app = spawn_app().await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = app.client.get(app.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["migrations"]["pending"], serde_json::json!([]));
    let version: serde_json::Value = app.client.get(app.url("/version")).send().await.unwrap().json().await.unwrap();
    assert_eq!(version["env"], "test");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    app.stop().await;
}

#[tokio::test]
async fn ready_reports_pending_migrations() {
    use atelier_domain::store::migrations::{self, Limits};
    let mut app = spawn_app().await;
    let limits = Limits {
        lock_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(30),
    };
    migrations::rollback(app.db.url(), limits, 1, |_| {}).await.unwrap();
    let res = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["migrations"]["ok"], false, "{body}");
    app.stop().await;
}
