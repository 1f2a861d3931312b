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

#[tokio::test]
async fn metrics_count_requests_by_method_route_template_and_status() {
    let mut app = spawn_app().await;
    for path in ["/health", "/health", "/api/v1/sales/12345", "/api/v1/no/such/route", "/nowhere"] {
        app.client.get(app.url(path)).send().await.unwrap();
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |labels: &str| {
        let line = format!("atelier_http_request_duration_seconds_count{{{labels}}} ");
        text.lines().find_map(|l| l.strip_prefix(&line)).map(|n| n.parse::<u64>().unwrap())
    };
    assert_eq!(count(r#"method="GET",route="/health",status="200""#), Some(2), "{text}");
    // The route's template, never the raw path (ids would make a series each).
    assert_eq!(count(r#"method="GET",route="/api/v1/sales/{id}",status="401""#), Some(1), "{text}");
    assert!(!text.contains("12345"), "{text}");
    assert!(!text.contains("/nowhere") && !text.contains("/no/such"), "{text}");
    assert_eq!(count(r#"method="GET",route="unmatched",status="404""#), Some(2), "{text}");
    assert!(text.contains(
        r#"atelier_http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="+Inf"} 2"#
    ));
    app.stop().await;
}
