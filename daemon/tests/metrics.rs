//! `/metrics` cannot be grown from outside: after thousands of hostile
//! requests (and hostile events) the number of series stays within the bound
//! computed from the labels' closed sets; `http.metrics_bind` serves it apart.

mod common;

use atelier_daemon::metrics::{EventLabel, HttpMethod, HttpStatus};
use atelier_domain::bus::publish::event_properties;
use atelier_domain::bus::{Topology, confirm_channel, publish_confirmed};
use atelier_domain::events::{Envelope, Event, Origin, SystemPing};
use atelier_domain::testing::{TestDb, eventually};
use common::events::{PROBE, Probe, Script, TYPES, broker, namespace, overrides, settings, start, teardown};
use common::spawn_app;
use futures_util::StreamExt;
use rand::Rng;
use rand::distr::{Alphanumeric, SampleString};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// The series (sample lines) of a Prometheus text body.
fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

/// Lines one histogram series takes (its buckets, +Inf, _sum, _count), read
/// from the body: the series of GET /health answered 200.
fn histogram_lines(text: &str) -> usize {
    text.lines().filter(|l| l.contains(r#"method="GET",route="/health",status="200""#)).count()
}

/// Gauges and counters without labels, and the dead letters' statuses (the
/// table's CHECK: dead, replaying, replayed, archived).
fn fixed_series(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#') && !l.contains('{') && !l.is_empty()).count() + 4
}

fn token(rng: &mut impl Rng, len: usize) -> String {
    Alphanumeric.sample_string(rng, len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_requests_leave_the_series_within_the_bound() {
    let mut app = spawn_app().await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let mut rng = rand::rng();
    let mut requests = Vec::new();
    let mut hostile_texts = Vec::new();
    for i in 0..3000 {
        let word = token(&mut rng, 12);
        hostile_texts.push(word.clone());
        let req = match i % 10 {
            // Invented methods of long text, on random paths and real routes.
            0..=3 => {
                let len = rng.random_range(50..1500);
                let method = reqwest::Method::from_bytes(token(&mut rng, len).as_bytes()).unwrap();
                let path = if i % 2 == 0 { format!("/{word}") } else { "/api/v1/sales".into() };
                client.request(method, app.url(&path))
            }
            // Random paths with long query strings, some under a matched template.
            4 | 5 => {
                let q = token(&mut rng, 4000);
                let path = if i % 2 == 0 { format!("/api/v1/{word}/{word}") } else { format!("/api/v1/sales/{word}") };
                client.get(app.url(&format!("{path}?{word}={q}")))
            }
            // Odd statuses: 405, 415, 413, 400, 414, 431.
            6 => client.delete(app.url("/health")),
            7 => client.post(app.url("/api/v1/auth/login")).header("content-type", format!("text/{word}")).body("x"),
            8 => match i % 3 {
                // A few bodies over http.body_limit (1 MiB in test).
                0 if i < 300 => {
                    client.post(app.url("/api/v1/auth/login")).json(&serde_json::json!({"x": "y".repeat(1_100_000)}))
                }
                0 => client.get(app.url(&format!("/api/v1/openapi.json?{word}"))),
                1 => client.post(app.url("/api/v1/auth/login")).header("content-type", "application/json").body("{"),
                _ => client.get(app.url(&format!("/{}", token(&mut rng, 9000)))),
            },
            _ => client.get(app.url("/health")).header(format!("x-{word}"), token(&mut rng, 17_000)),
        };
        requests.push(req);
    }
    let statuses: Vec<u16> = futures_util::stream::iter(requests)
        .map(|r| async move { r.send().await.map(|res| res.status().as_u16()).unwrap_or(0) })
        .buffer_unordered(32)
        .collect()
        .await;
    for expected in [404, 405, 413, 414, 415, 431] {
        assert!(statuses.contains(&expected), "{expected} provoked: {statuses:?}");
    }
    client.get(app.url("/health")).send().await.unwrap();
    let text = client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();

    let per_histogram = histogram_lines(&text);
    assert_eq!(per_histogram, 18, "{text}");
    let routes = app.app.as_ref().unwrap().shared.metrics.route_count();
    let http_bound = HttpMethod::ALL.len() * routes * HttpStatus::COUNT * per_histogram;
    let bound = http_bound + fixed_series(&text);
    let n = series(&text);
    println!("after {} hostile requests: {n} series, {} bytes (bound {bound})", statuses.len(), text.len());
    assert!(n <= bound, "{n} series over the bound {bound}");
    // Far below the bound in practice: a few statuses per route.
    assert!(n < 2000, "{n} series");
    assert!(text.len() < 256 * 1024, "{} bytes", text.len());
    assert!(text.lines().all(|l| l.len() < 256), "a line longer than any closed label makes");
    for word in &hostile_texts {
        assert!(!text.contains(word.as_str()), "{word} reached /metrics");
    }
    assert!(text.contains(r#"method="other""#), "{text}");
    assert!(text.contains(r#"route="unmatched""#), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_invented_types_are_counted_as_other() {
    let db = TestDb::new().await;
    let ns = namespace();
    let vars = overrides(&ns);
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::Apply);
    let app = start(&db, &vars, vec![probe.clone()]).await;
    let metrics = app.shared.metrics.clone();
    eventually(Duration::from_secs(30), "consumers running", || async { metrics.consumers_running.load(Relaxed) == 2 })
        .await;
    let conn = broker(&s).await;
    let ch = confirm_channel(&conn, Duration::from_secs(5)).await.unwrap();
    let queue = Topology::new(&s, &[(PROBE, TYPES)]).handler_queue(PROBE);
    let mut hostile = Vec::new();
    const N: u64 = 300;
    for i in 0..N {
        // An AMQP short string: at most 255 bytes.
        let ty = Alphanumeric.sample_string(&mut rand::rng(), 250);
        let body = if i % 2 == 0 {
            b"{not json".to_vec()
        } else {
            let mut env = Envelope::new(
                &Event::SystemPing(SystemPing { ping_id: uuid::Uuid::now_v7() }),
                None,
                &Origin::new("test"),
                chrono::Utc::now(),
            );
            env.event_type = ty.clone();
            env.encode()
        };
        let props = event_properties(&uuid::Uuid::now_v7().to_string(), &ty);
        publish_confirmed(&ch, "", &queue, &body, props, Duration::from_secs(5)).await.unwrap();
        hostile.push(ty);
    }
    eventually(Duration::from_secs(60), "every hostile event consumed", || async {
        metrics.total(PROBE, |s| s.consumed.load(Relaxed)) >= N
    })
    .await;
    let url = format!("http://{}/metrics", app.http_addr.unwrap());
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    for ty in &hostile {
        assert!(!text.contains(ty.as_str()), "an invented type reached /metrics");
    }
    assert!(text.contains(r#"atelier_events_consumed_total{handler="probe",event_type="other"} 300"#), "{text}");
    let event_lines = text.lines().filter(|l| l.contains("handler=\"")).count();
    // Five counters and one histogram (18 lines) per (handler, type).
    let bound = EventLabel::COUNT * (5 + 18);
    println!("after {N} hostile events: {event_lines} event series lines (bound {bound})");
    assert!(event_lines <= bound, "{event_lines} over {bound}");
    let _ = conn.close(200, "OK".into()).await;
    app.stop().await.unwrap();
    teardown(&s).await;
}

#[tokio::test]
async fn metrics_bind_serves_metrics_there_and_not_on_the_api_port() {
    let db = TestDb::new().await;
    let config = common::test_config(&db, &[("ATELIER__HTTP__METRICS_BIND", "127.0.0.1:0")]);
    let app = atelier_daemon::app::App::start(config, atelier_daemon::app::Roles { http: true, events: false })
        .await
        .expect("atelierd starts");
    let api = app.http_addr.unwrap();
    let metrics = app.metrics_addr.expect("a metrics bind");
    assert_ne!(api.port(), metrics.port());
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("http://{api}/health")).send().await.unwrap().status(), 200);
    let on_api = client.get(format!("http://{api}/metrics")).send().await.unwrap();
    assert_eq!(on_api.status(), 404);
    let body: serde_json::Value = on_api.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let res = client.get(format!("http://{metrics}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains(r#"method="GET",route="/health",status="200""#), "{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "the API port's 404 is counted: {text}");
    // The metrics bind serves nothing else.
    assert_eq!(client.get(format!("http://{metrics}/health")).send().await.unwrap().status(), 404);
    app.stop().await.unwrap();
}
