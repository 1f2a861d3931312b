//! Sentry reporting, against a local server that stands in for Sentry (it
//! accepts envelopes as Sentry's ingest endpoint does): a dead-lettered event
//! is reported, named by handler, type, event id and error kind, and never
//! carries the error text or the payload; a panic is reported. Sentry is
//! started before the runtime, as `atelierd` starts it.

mod common;

use atelier_daemon::telemetry;
use atelier_domain::testing::{TestDb, eventually};
use common::events::{Probe, Script, namespace, overrides, raise, scalar, start, teardown};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn dead_letters_and_panics_are_reported_to_sentry_without_error_texts_or_payloads() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    // SAFETY: no other thread runs yet (the runtime is built below).
    unsafe { std::env::set_var("ATELIER_SECRET_TEST_SENTRY_DSN", format!("http://publickey@127.0.0.1:{port}/42")) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let db = rt.block_on(TestDb::new());
    let ns = namespace();
    let mut vars = overrides(&ns);
    vars.push(("ATELIER__SENTRY__DSN_SECRET".into(), "test_sentry_dsn".into()));
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = common::test_config(&db, &extra);
    let _guard = telemetry::init(&config).expect("telemetry with Sentry");

    rt.block_on(async {
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/api/{project}/envelope/",
            axum::routing::post(move |body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                    axum::Json(serde_json::json!({}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let probe = Probe::new(db.db(), Script::AlwaysFail);
        let daemon = start(&db, &vars, vec![probe]).await;
        let id = raise(db.db(), 1).await[0];
        eventually(LONG, "one dead letter", || async {
            scalar(db.db(), "SELECT count(*) AS n FROM dead_letters").await == 1
        })
        .await;
        let reports = || {
            received
                .lock()
                .unwrap()
                .iter()
                .filter(|b| b.contains("dead-lettered system.ping in probe"))
                .cloned()
                .collect::<Vec<_>>()
        };
        eventually(LONG, "the dead letter reported to Sentry", || async { !reports().is_empty() }).await;
        let report = reports().remove(0);
        for tag in [
            "\"handler\":\"probe\"".to_owned(),
            "\"error_kind\":\"provider_503\"".to_owned(),
            "\"event_type\":\"system.ping\"".to_owned(),
            format!("\"event_id\":\"{id}\""),
        ] {
            assert!(report.contains(&tag), "the report names {tag}: {report}");
        }
        assert!(!report.contains("provider answered 503"), "the error text stays out of Sentry: {report}");
        assert!(!report.contains("ping_id"), "the payload stays out of Sentry: {report}");

        // A panic anywhere in the process is reported too.
        let panicked = std::thread::spawn(|| panic!("a deliberate panic for the Sentry test")).join();
        assert!(panicked.is_err());
        eventually(LONG, "the panic reported to Sentry", || async {
            received.lock().unwrap().iter().any(|b| b.contains("a deliberate panic for the Sentry test"))
        })
        .await;
        daemon.stop().await.unwrap();
        let settings = common::events::settings(&db, &vars);
        teardown(&settings).await;
    });
}
