//! `atelier gate` end to end: the real binary against a real atelierd (HTTP
//! on port 0, its own database) as a pipeline runs it, in JSON and in text.

mod support;

use atelier_domain::store::migrations::{self, Limits};
use atelier_domain::testing::{TestDb, eventually};
use std::process::Output;
use std::time::Duration;
use support::json;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs `atelier` off the runtime's threads (the daemon serves on them).
async fn atelier(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::atelier(&args, &[])
    })
    .await
    .unwrap()
}

fn gate(env: &str, url: &str, version: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--env", env, "gate", "--url", url, "--expect-version", version];
    args.extend(extra);
    args.into_iter().map(str::to_owned).collect()
}

fn limits() -> Limits {
    Limits { lock_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(30) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_passes_at_the_running_version_and_fails_at_another_or_in_another_environment() {
    let db = TestDb::new().await;
    let (app, url) = support::serve(&db).await;

    let out = atelier(gate("test", &url, VERSION, &["--output", "json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let doc = json(&out);
    assert_eq!(doc["success"], true);
    assert_eq!(doc["data"]["checks"][0]["name"], "version");
    assert_eq!(doc["data"]["checks"][1]["name"], "ready");

    let out = atelier(gate("test", &url, "9.9.9", &["--output", "json"])).await;
    assert_eq!(out.status.code(), Some(5));
    let doc = json(&out);
    assert_eq!(doc["success"], false);
    assert_eq!(doc["data"]["checks"][0]["detail"], format!("runs {VERSION}, expected 9.9.9"));
    assert_eq!(doc["data"]["checks"][1]["ok"], true);

    // Pointed at another environment's atelierd by mistake.
    let out = atelier(gate("dev", &url, VERSION, &[])).await;
    assert_eq!(out.status.code(), Some(5));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL version: this is test's atelierd, not dev's"), "{text}");
    assert!(text.contains("dev is not healthy at"), "{text}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_fails_while_migrations_are_pending_and_waits_for_them() {
    let db = TestDb::new().await;
    let (app, url) = support::serve(&db).await;
    migrations::rollback(db.url(), limits(), 1, |_| {}).await.unwrap();

    let out = atelier(gate("test", &url, VERSION, &["--output", "json"])).await;
    assert_eq!(out.status.code(), Some(5));
    let ready = &json(&out)["data"]["checks"][1];
    assert_eq!(ready["ok"], false);
    let detail = ready["detail"].as_str().unwrap();
    assert!(detail.starts_with("/ready answered 503: migrations (1 pending: "), "{detail}");

    // Waiting, it passes once the migration is applied.
    use atelier_daemon::metrics::{HttpMethod, HttpStatus};
    let metrics = &app.shared.metrics;
    let not_ready = metrics.http(HttpMethod::Get, metrics.route(Some("/ready")), HttpStatus::of(503));
    let waiting = tokio::spawn(atelier(gate("test", &url, VERSION, &["--wait", "60s", "--output", "json"])));
    eventually(Duration::from_secs(30), "the waiting gate found atelierd not ready", || async {
        not_ready.count() >= 2
    })
    .await;
    assert!(!waiting.is_finished(), "still waiting while not ready");
    migrations::run(db.url(), limits(), |_| {}).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), waiting).await.expect("passes within 30 s").unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_exits_4_when_atelierd_cannot_be_reached() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let out = atelier(gate("test", &url, VERSION, &["--output", "json"])).await;
    assert_eq!(out.status.code(), Some(4));
    let doc = json(&out);
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("atelierd of test cannot be reached at {url}: ")), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");

    let out = atelier(gate("test", "ftp://example", VERSION, &[])).await;
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_gate_says_what_is_pending_and_waits_the_whole_time() {
    let db = TestDb::new().await;
    let (app, url) = support::serve(&db).await;
    let started = std::time::Instant::now();
    let out = atelier(gate("test", &url, "9.9.9", &["--wait", "5s"])).await;
    let waited = started.elapsed();
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    // Never less than the wait it was given (under load it can only be more).
    assert!(waited >= Duration::from_secs(5), "gave up after {waited:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("waiting (") && err.contains(&format!("version: runs {VERSION}, expected 9.9.9")), "{err}");
    // Said once while it did not change, not at every look.
    assert_eq!(err.matches("waiting (").count(), 1, "{err}");
    // -q: stderr stays quiet.
    let quiet = atelier(gate("test", &url, "9.9.9", &["--wait", "3s", "-q"])).await;
    assert_eq!(quiet.status.code(), Some(5));
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("waiting ("), "-q: only errors");
    app.stop().await.unwrap();
}
