//! Event processing against the real RabbitMQ and PostgreSQL, each test in
//! its own database and broker namespace (deleted at the end): the outbox
//! relay, delayed retries, dead-lettering, and two daemons side by side.

mod common;

use atelier_domain::bus::headers;
use atelier_domain::bus::publish::event_properties;
use atelier_domain::bus::{Topology, confirm_channel, publish_confirmed};
use atelier_domain::events::{Envelope, Event, Origin, SystemPing};
use atelier_domain::testing::{TestDb, eventually};
use common::events::{
    PROBE, Probe, Script, TYPES, broker, namespace, overrides, raise, scalar, settings, start, teardown,
};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_in_order_and_marks_rows_sent_only_after_the_confirm() {
    let db = TestDb::new().await;
    let ns = namespace();
    let mut vars = overrides(&ns);
    // First with a broker that cannot be reached: nothing may be marked sent.
    let ids = raise(db.db(), 50).await;
    let mut unreachable = vars.clone();
    unreachable.push(("ATELIER__AMQP__URL".into(), "amqp://guest:guest@127.0.0.1:1/%2f".into()));
    let probe = Probe::new(db.db(), Script::Apply);
    let app = start(&db, &unreachable, vec![probe.clone()]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(scalar(db.db(), "SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL").await, 0);
    app.stop().await.unwrap();

    // Then with the broker: every row goes out, in creation order, and is marked.
    vars.push(("ATELIER__AMQP__CONCURRENCY".into(), "1".into()));
    let app = start(&db, &vars, vec![probe.clone()]).await;
    let more = raise(db.db(), 50).await;
    eventually(LONG, "all 100 events handled", || async { probe.applied.load(Relaxed) == 100 }).await;
    let order = probe.order.lock().unwrap().clone();
    let expected: Vec<_> = ids.iter().chain(more.iter()).copied().collect();
    assert_eq!(order, expected, "delivered in creation order");
    assert_eq!(scalar(db.db(), "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await, 0);
    let metrics =
        reqwest::get(format!("http://{}/metrics", app.http_addr.unwrap())).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("atelier_events_succeeded_total{handler=\"probe\",event_type=\"system.ping\"} 100"),
        "{metrics}"
    );
    assert!(metrics.contains("atelier_outbox_published_total 100"), "{metrics}");
    let ready: serde_json::Value =
        reqwest::get(format!("http://{}/ready", app.http_addr.unwrap())).await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["broker"]["ok"], true, "{ready}");
    assert_eq!(ready["checks"]["consumers"]["ok"], true, "{ready}");
    app.stop().await.unwrap();
    teardown(&settings(&db, &vars)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_failing_twice_is_applied_once_after_two_delayed_retries() {
    let db = TestDb::new().await;
    let ns = namespace();
    let vars = overrides(&ns);
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::FailTimes(2));
    let app = start(&db, &vars, vec![probe.clone()]).await;
    let id = raise(db.db(), 1).await[0];
    eventually(LONG, "the event applied", || async { probe.applied.load(Relaxed) == 1 }).await;
    let calls = probe.calls_of(id);
    assert_eq!(calls.len(), 3, "1 delivery + 2 retries");
    let policy = s.retry_for(PROBE);
    for (i, pair) in calls.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let min = policy.delay(i as u32 + 1).mul_f64(1.0 - s.retry.jitter);
        assert!(gap >= min, "retry {} came after {gap:?}, expected at least {min:?}", i + 1);
    }
    assert_eq!(scalar(db.db(), "SELECT count(*) AS n FROM processed_events").await, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(probe.total_calls(), 3, "nothing more arrives");
    assert_eq!(scalar(db.db(), "SELECT count(*) AS n FROM dead_letters").await, 0);
    assert_eq!(app.shared.metrics.total(PROBE, |s| s.retried.load(Relaxed)), 2);
    app.stop().await.unwrap();
    teardown(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_handler_yields_one_dead_letter_after_all_retries() {
    let db = TestDb::new().await;
    let ns = namespace();
    let vars = overrides(&ns);
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::AlwaysFail);
    let app = start(&db, &vars, vec![probe.clone()]).await;
    let id = raise(db.db(), 1).await[0];
    eventually(LONG, "one dead letter", || async {
        scalar(db.db(), "SELECT count(*) AS n FROM dead_letters").await == 1
    })
    .await;
    let calls = probe.calls_of(id);
    assert_eq!(calls.len(), 1 + 3, "1 delivery + max_retries retries");
    let policy = s.retry_for(PROBE);
    for (i, pair) in calls.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let min = policy.delay(i as u32 + 1).mul_f64(1.0 - s.retry.jitter);
        assert!(gap >= min, "retry {} came after {gap:?}, expected at least {min:?}", i + 1);
    }
    let row = format!(
        "SELECT count(*) AS n FROM dead_letters WHERE event_id = '{id}' AND handler = 'probe' AND attempts = 4 \
         AND error_kind = 'provider_503' AND fingerprint = 'probe:provider_503' AND status = 'dead' \
         AND event_type = 'system.ping' AND last_error LIKE '%503%' AND first_failed_at < last_failed_at \
         AND headers ? 'x-atelier-dead-letter-id'"
    );
    assert_eq!(scalar(db.db(), &row).await, 1, "the dead letter keeps what an operator needs");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(probe.total_calls(), 4, "no further attempt");
    assert_eq!(scalar(db.db(), "SELECT count(*) AS n FROM dead_letters").await, 1, "exactly one");
    assert_eq!(scalar(db.db(), "SELECT count(*) AS n FROM processed_events").await, 0);
    let metrics =
        reqwest::get(format!("http://{}/metrics", app.http_addr.unwrap())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("atelier_dead_letters{status=\"dead\"} 1"), "{metrics}");
    app.stop().await.unwrap();
    teardown(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_an_unknown_version_and_an_oversized_body_are_dead_lettered_at_once_with_their_reason() {
    let db = TestDb::new().await;
    let ns = namespace();
    let mut vars = overrides(&ns);
    vars.push(("ATELIER__AMQP__MAX_MESSAGE_BYTES".into(), "4096".into()));
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::Apply);
    let app = start(&db, &vars, vec![probe.clone()]).await;
    eventually(LONG, "consumers running", || async { app.shared.metrics.consumers_running.load(Relaxed) == 2 }).await;
    let conn = broker(&s).await;
    let ch = confirm_channel(&conn, Duration::from_secs(5)).await.unwrap();
    let topo = Topology::new(&s, &[(PROBE, TYPES)]);
    let t = Duration::from_secs(5);
    let bad_id = uuid::Uuid::now_v7();
    let props = event_properties(&bad_id.to_string(), "system.ping");
    publish_confirmed(&ch, &topo.events_exchange(), "system.ping", b"{not json", props, t).await.unwrap();
    let mut env = Envelope::new(
        &Event::SystemPing(SystemPing { ping_id: uuid::Uuid::now_v7() }),
        None,
        &Origin::new("test"),
        chrono::Utc::now(),
    );
    env.version = 9;
    let props = event_properties(&env.id.to_string(), "system.ping");
    publish_confirmed(&ch, &topo.events_exchange(), "system.ping", &env.encode(), props, t).await.unwrap();
    let big_id = uuid::Uuid::now_v7();
    let props = event_properties(&big_id.to_string(), "system.ping");
    publish_confirmed(&ch, &topo.events_exchange(), "system.ping", &[b' '; 5000], props, t).await.unwrap();
    eventually(LONG, "three dead letters", || async {
        scalar(db.db(), "SELECT count(*) AS n FROM dead_letters").await == 3
    })
    .await;
    let big = format!(
        "SELECT count(*) AS n FROM dead_letters WHERE event_id = '{big_id}' AND error_kind = 'too_large' \
         AND last_error LIKE '%5000 bytes is over the limit of 4096%'"
    );
    assert_eq!(scalar(db.db(), &big).await, 1);
    let malformed = format!(
        "SELECT count(*) AS n FROM dead_letters WHERE event_id = '{bad_id}' AND error_kind = 'malformed' \
         AND attempts = 1 AND last_error LIKE 'malformed envelope%' AND body = '\\x7b6e6f74206a736f6e'::bytea"
    );
    assert_eq!(scalar(db.db(), &malformed).await, 1);
    let version = format!(
        "SELECT count(*) AS n FROM dead_letters WHERE event_id = '{}' AND error_kind = 'unknown_version' \
         AND attempts = 1 AND last_error LIKE '%version 9 is not supported%'",
        env.id
    );
    assert_eq!(scalar(db.db(), &version).await, 1);
    assert_eq!(probe.total_calls(), 0, "the handler never saw them");
    let _ = conn.close(200, "OK".into()).await;
    app.stop().await.unwrap();
    teardown(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_namespace_apply_each_event_once() {
    let db = TestDb::new().await;
    let ns = namespace();
    let vars = overrides(&ns);
    let s = settings(&db, &vars);
    let (p1, p2) = (Probe::new(db.db(), Script::Apply), Probe::new(db.db(), Script::Apply));
    let a = start(&db, &vars, vec![p1.clone()]).await;
    let b = start(&db, &vars, vec![p2.clone()]).await;
    raise(db.db(), 300).await;
    eventually(LONG, "300 events applied", || async {
        scalar(db.db(), "SELECT count(*) AS n FROM processed_events").await == 300
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p1.applied.load(Relaxed) + p2.applied.load(Relaxed), 300, "each applied once");
    assert_eq!(p1.total_calls() + p2.total_calls(), 300, "each published and delivered once");
    assert!(p1.total_calls() > 0 && p2.total_calls() > 0, "both daemons took work");
    assert_eq!(scalar(db.db(), "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await, 0);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    teardown(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_verify_reports_a_queue_declared_with_other_arguments() {
    let db = TestDb::new().await;
    let ns = namespace();
    let vars = overrides(&ns);
    let s = settings(&db, &vars);
    let conn = broker(&s).await;
    let t = Duration::from_secs(5);
    let topo = Topology::new(&s, &[(PROBE, TYPES)]);
    assert_eq!(topo.verify(&conn, t).await.unwrap().len(), 2 + 1 + 4, "everything missing at first");
    topo.apply(&conn, t).await.unwrap();
    topo.apply(&conn, t).await.expect("apply is idempotent");
    assert!(topo.verify(&conn, t).await.unwrap().is_empty());
    let mut other = s.clone();
    other.retry.base_delay = Duration::from_secs(7);
    let drift = Topology::new(&other, &[(PROBE, TYPES)]).verify(&conn, t).await.unwrap();
    assert_eq!(drift.len(), 3, "{drift:?}");
    assert!(drift[0].to_string().contains("x-message-ttl"), "{}", drift[0]);
    let _ = headers::ATTEMPT;
    let _ = conn.close(200, "OK".into()).await;
    teardown(&s).await;
    let conn = broker(&s).await;
    assert_eq!(topo.verify(&conn, t).await.unwrap().len(), 7, "teardown deleted everything");
}

/// A letter whose header text PostgreSQL refuses as read (a NUL) is still
/// stored, its text cleaned and its body exact, instead of looping in the
/// dlq queue; the letter after it is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_with_a_nul_in_its_headers_is_stored_cleaned_not_looped() {
    let db = TestDb::new().await;
    let ns = namespace();
    let vars = overrides(&ns);
    let s = settings(&db, &vars);
    let app = start(&db, &vars, vec![Probe::new(db.db(), Script::Apply)]).await;
    eventually(LONG, "consumers running", || async { app.shared.metrics.consumers_running.load(Relaxed) == 2 }).await;
    let conn = broker(&s).await;
    let ch = confirm_channel(&conn, Duration::from_secs(5)).await.unwrap();
    let topo = Topology::new(&s, &[(PROBE, TYPES)]);
    let (poisoned, plain) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for (key, error) in [(poisoned, "provider said \0bad\0 things"), (plain, "provider said no")] {
        let mut hs = lapin::types::FieldTable::default();
        headers::set_str(&mut hs, headers::DEAD_LETTER_ID, &key.to_string());
        headers::set_str(&mut hs, headers::HANDLER, PROBE);
        headers::set_str(&mut hs, headers::ERROR_KIND, "provider_4xx");
        headers::set_str(&mut hs, headers::ERROR, error);
        let props = event_properties(&uuid::Uuid::now_v7().to_string(), "system.ping").with_headers(hs);
        publish_confirmed(&ch, "", &topo.dlq(), b"body \0 kept", props, Duration::from_secs(5)).await.unwrap();
    }
    eventually(LONG, "both letters stored", || async {
        scalar(db.db(), "SELECT count(*) AS n FROM dead_letters").await == 2
    })
    .await;
    let cleaned = format!(
        "SELECT count(*) AS n FROM dead_letters WHERE dead_letter_key = '{poisoned}' \
         AND last_error = 'provider said bad things' AND body = 'body \\000 kept'::bytea"
    );
    assert_eq!(scalar(db.db(), &cleaned).await, 1, "stored with its text cleaned and its body exact");
    let _ = conn.close(200, "OK".into()).await;
    app.stop().await.unwrap();
    teardown(&s).await;
}

/// A handler that panics takes down neither the consumer nor the deliveries
/// handled beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_leaves_the_consumer_running() {
    let db = TestDb::new().await;
    let ns = namespace();
    let vars = overrides(&ns);
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::PanicOnce);
    let app = start(&db, &vars, vec![probe.clone()]).await;
    raise(db.db(), 5).await;
    eventually(LONG, "the four other events applied", || async { probe.applied.load(Relaxed) == 4 }).await;
    assert_eq!(app.shared.metrics.consumers_running.load(Relaxed), 2, "the consumers still run");
    raise(db.db(), 1).await;
    eventually(LONG, "a later event applied too", || async { probe.applied.load(Relaxed) == 5 }).await;
    app.stop().await.unwrap();
    teardown(&s).await;
}

/// A transient failure keeps the delivery instead of returning it to the
/// queue: more of them than the queue's delivery limit (3 here) neither
/// uses a retry nor dead-letters the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_transient_failures_than_the_delivery_limit_never_dead_letter() {
    let db = TestDb::new().await;
    let ns = namespace();
    let mut vars = overrides(&ns);
    vars.push(("ATELIER__AMQP__DELIVERY_LIMIT".into(), "3".into()));
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::TransientTimes(5));
    let app = start(&db, &vars, vec![probe.clone()]).await;
    let id = raise(db.db(), 1).await[0];
    eventually(LONG, "the event applied", || async { probe.applied.load(Relaxed) == 1 }).await;
    assert_eq!(probe.calls_of(id).len(), 6, "5 transient failures, then applied");
    assert_eq!(scalar(db.db(), "SELECT count(*) AS n FROM dead_letters").await, 0, "never dead-lettered");
    assert_eq!(app.shared.metrics.total(PROBE, |m| m.retried.load(Relaxed)), 0, "no retry used");
    assert_eq!(app.shared.metrics.total(PROBE, |m| m.transient.load(Relaxed)), 5);
    app.stop().await.unwrap();
    teardown(&s).await;
}

/// A message without the `type` property is dead-lettered under the type its
/// envelope names (what the consumer's log line shows), whether the consumer
/// dead-letters it or it reaches `{ns}.dlq` as it is; one naming no type at
/// all is stored without one (shown as unknown), never as a guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_without_the_type_property_is_stored_with_its_envelope_type() {
    let db = TestDb::new().await;
    let ns = namespace();
    let vars = overrides(&ns);
    let s = settings(&db, &vars);
    let probe = Probe::new(db.db(), Script::Apply);
    let app = start(&db, &vars, vec![probe.clone()]).await;
    eventually(LONG, "consumers running", || async { app.shared.metrics.consumers_running.load(Relaxed) == 2 }).await;
    let conn = broker(&s).await;
    let ch = confirm_channel(&conn, Duration::from_secs(5)).await.unwrap();
    let topo = Topology::new(&s, &[(PROBE, TYPES)]);
    let t = Duration::from_secs(5);
    let untyped = |id: &uuid::Uuid| {
        lapin::BasicProperties::default().with_message_id(id.to_string().into()).with_delivery_mode(2)
    };
    let ping = || {
        Envelope::new(
            &Event::SystemPing(SystemPing { ping_id: uuid::Uuid::now_v7() }),
            None,
            &Origin::new("test"),
            chrono::Utc::now(),
        )
    };
    // Through the consumer: an unknown version is dead-lettered at once.
    let mut consumed = ping();
    consumed.version = 9;
    publish_confirmed(&ch, &topo.events_exchange(), "system.ping", &consumed.encode(), untyped(&consumed.id), t)
        .await
        .unwrap();
    // Straight into {ns}.dlq, as another producer's copy would arrive: no type, no message id.
    let direct = ping();
    let (direct_key, blank_key) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for (key, body) in [(direct_key, direct.encode()), (blank_key, br#"{"data": {}}"#.to_vec())] {
        let mut hs = lapin::types::FieldTable::default();
        headers::set_str(&mut hs, headers::DEAD_LETTER_ID, &key.to_string());
        headers::set_str(&mut hs, headers::HANDLER, PROBE);
        headers::set_str(&mut hs, headers::ERROR_KIND, "rule");
        let props = lapin::BasicProperties::default().with_delivery_mode(2).with_headers(hs);
        publish_confirmed(&ch, "", &topo.dlq(), &body, props, t).await.unwrap();
    }
    eventually(LONG, "three dead letters", || async {
        scalar(db.db(), "SELECT count(*) AS n FROM dead_letters").await == 3
    })
    .await;
    let by_consumer = format!(
        "SELECT count(*) AS n FROM dead_letters WHERE event_id = '{}' AND event_type = 'system.ping' \
         AND error_kind = 'unknown_version'",
        consumed.id
    );
    assert_eq!(scalar(db.db(), &by_consumer).await, 1, "the consumer's copy names the envelope's type");
    let by_ingest = format!(
        "SELECT count(*) AS n FROM dead_letters WHERE dead_letter_key = '{direct_key}' \
         AND event_type = 'system.ping' AND event_id = '{}'",
        direct.id
    );
    assert_eq!(scalar(db.db(), &by_ingest).await, 1, "the ingest reads type and id from the envelope");
    let blank = format!(
        "SELECT count(*) AS n FROM dead_letters WHERE dead_letter_key = '{blank_key}' \
         AND event_type IS NULL AND event_id IS NULL"
    );
    assert_eq!(scalar(db.db(), &blank).await, 1, "no type anywhere: stored as unknown, not guessed");
    let _ = conn.close(200, "OK".into()).await;
    app.stop().await.unwrap();
    teardown(&s).await;
}
