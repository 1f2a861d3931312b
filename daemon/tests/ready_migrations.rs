//! `/ready` while a newer version's migrations are applied under this build:
//! an unknown expand migration keeps it ready, an unknown contract one does not.

mod common;

use common::spawn_app;
use diesel_async::RunQueryDsl;

#[tokio::test]
async fn an_unknown_expand_migration_keeps_ready_an_unknown_contract_one_does_not() {
    let mut app = spawn_app().await;
    let exec = |sql: String| {
        let db = app.db.db().clone();
        async move {
            let mut conn = db.conn().await.unwrap();
            diesel::sql_query(sql).execute(&mut conn).await.unwrap();
        }
    };
    let record = |version: &str, phase: &str| {
        format!(
            "INSERT INTO atelier_migrations (version, name, up_sha256, down_sha256, phase, applied_by) \
             VALUES ('{version}', 'newer_{version}', 'x', 'y', '{phase}', 'ci@host')"
        )
    };
    exec("INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000001')".into()).await;
    exec(record("29990101000001", "expand")).await;
    let res = app.client.get(app.url("/ready")).send().await.unwrap();
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");

    exec("INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000002')".into()).await;
    exec(record("29990101000002", "contract")).await;
    let res = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    let check = &body["checks"]["migrations"];
    assert_eq!(check["ok"], false, "{body}");
    assert_eq!(check["unknown_contract"], serde_json::json!(["newer_29990101000002"]), "{body}");
    assert!(check["reason"].as_str().unwrap().contains("contract"), "{body}");
    app.stop().await;
}
