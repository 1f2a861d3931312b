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

/// The real binary, events role included, with JSON logs: SIGTERM stops it
/// with exit 0 and not one ERROR line (lapin logged 'Closing' at ERROR).
#[tokio::test]
async fn a_clean_sigterm_logs_no_error() {
    use atelier_domain::bus::{self, AmqpUrl, Topology};
    use std::io::BufRead;
    let db = atelier_domain::testing::TestDb::new().await;
    let ns = format!("t-sigterm-{}", std::process::id());
    let url = format!("{:?}", db.url());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_atelierd"))
        .args(["--env", "test"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("RUST_LOG")
        .envs([
            ("ATELIER__DATABASE__URL", url.as_str()),
            ("ATELIER__AMQP__NAMESPACE", ns.as_str()),
            ("ATELIER__LOG__FORMAT", "json"),
            ("ATELIER__LOG__LEVEL", "info"),
            ("ATELIER__HTTP__BIND", "127.0.0.1:0"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("atelierd starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("processing events") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    rx.recv_timeout(std::time::Duration::from_secs(30)).expect("atelierd processes events");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let lines = reader.join().unwrap();
    assert!(status.success(), "{status}: {lines:#?}");
    assert!(lines.iter().any(|l| l.contains("processing events")));
    for line in &lines {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_ne!(doc["level"], "ERROR", "{line}");
    }
    let settings = common::test_config(&db, &[("ATELIER__AMQP__NAMESPACE", ns.as_str())]).settings;
    let conn = bus::connect(
        &AmqpUrl::resolve(&settings.amqp, &atelier_domain::secrets::EnvSecrets).unwrap(),
        "t",
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    Topology::standard(&settings).delete(&conn, std::time::Duration::from_secs(10)).await.unwrap();
    let _ = conn.close(200, "OK".into()).await;
}
