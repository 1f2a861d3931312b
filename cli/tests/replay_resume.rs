//! A streamed `atelier dlq replay` killed mid-run (SIGKILL, no chance to tidy
//! up) and run again: every letter reaches its handler's queue, always under
//! the one replay id its letter records (so the handler's `processed_events`
//! keeps the effects single), only letters in flight at the kill can reach it
//! twice, and every letter ends `replayed` with one replay. Real PostgreSQL
//! (own database), RabbitMQ (own namespace, deleted even on failure) and the
//! real `atelier` binary; no atelierd, so the queue keeps what was published.

mod support;

use atelier_domain::bus::{self, AmqpUrl, Topology};
use atelier_domain::config;
use atelier_domain::testing::{TestDb, eventually};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

const LETTERS: i64 = 5000;

/// Deletes the namespace's queues and exchanges if the test ends before its
/// own (faster) teardown did: on failure too.
struct Namespace(Option<String>);

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(ns) = self.0.take() {
            support::delete_namespace(&ns);
        }
    }
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut c = db.db().conn().await.unwrap();
    diesel::sql_query(sql).get_result::<N>(&mut c).await.map(|r| r.n).unwrap()
}

fn replay(vars: &[(String, String)], extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.args(["--env", "test", "--output", "json", "dlq", "replay", "--all", "--actor", "resume-test"])
        .args(extra)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("ATELIER_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_mid_run_and_run_again_delivers_every_letter_under_its_one_replay_id() {
    let db = TestDb::new().await;
    let ns = format!("t-resume-{}", uuid::Uuid::now_v7().simple());
    let mut guard = Namespace(Some(ns.clone()));
    let vars: Vec<(String, String)> = vec![
        ("ATELIER__DATABASE__URL".into(), format!("{:?}", db.url())),
        ("ATELIER__AMQP__NAMESPACE".into(), ns.clone()),
    ];
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments"));
    let settings = config::load_with(&dir, "test", &vars).unwrap().settings;
    let url = AmqpUrl::resolve(&settings.amqp, &atelier_domain::secrets::EnvSecrets).unwrap();
    let amqp = bus::connect(&url, "replay resume test", Duration::from_secs(30)).await.unwrap();
    let topology = Topology::standard(&settings);
    topology.apply(&amqp, Duration::from_secs(30)).await.unwrap();
    let queue = topology.handler_queue("production");

    // LETTERS dead letters of ~1 KiB for the production handler.
    {
        let mut c = db.db().conn().await.unwrap();
        diesel::sql_query(format!(
            "INSERT INTO dead_letters (dead_letter_key, handler, event_id, event_type, body, headers, attempts, \
             first_failed_at, last_failed_at, last_error, error_kind, fingerprint) \
             SELECT gen_random_uuid(), 'production', gen_random_uuid(), 'sale.created', \
             convert_to(json_build_object('n', n, 'pad', repeat('x', 1000))::text, 'UTF8'), '{{}}', 4, now(), now(), \
             'provider timeout', 'retryable', 'production:retryable' FROM generate_series(1, {LETTERS}) AS n"
        ))
        .execute(&mut c)
        .await
        .unwrap();
    }

    // First run, paced so it cannot finish before the kill (at least 10 s):
    // killed once some letters are recorded replayed.
    let mut first = replay(&vars, &["--rate", "500"]).spawn().expect("run atelier");
    eventually(Duration::from_secs(60), "the first run records some letters replayed", || async {
        count(&db, "SELECT count(*) AS n FROM dead_letters WHERE status = 'replayed'").await >= 200
    })
    .await;
    first.kill().expect("SIGKILL the first run");
    first.wait().unwrap();
    let after_kill = count(&db, "SELECT count(*) AS n FROM dead_letters WHERE status = 'replayed'").await;
    assert!(after_kill < LETTERS, "the first run was stopped mid-run ({after_kill} of {LETTERS} replayed)");

    // Second run: resumes the interrupted replays and finishes the rest.
    let out = replay(&vars, &[]).output().expect("run atelier");
    let doc = support::json(&out);
    assert!(out.status.success(), "{doc} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(doc["data"]["replayed"].as_i64().unwrap() + after_kill, LETTERS, "{doc}");

    // Every letter replayed, with exactly one replay, published.
    assert_eq!(count(&db, "SELECT count(*) AS n FROM dead_letters WHERE status = 'replayed'").await, LETTERS);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM dead_letter_replays").await, LETTERS);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM dead_letter_replays WHERE published_at IS NULL").await, 0);

    // What reached the queue: each letter's event, always under its replay id.
    let mut expected: HashMap<String, String> = HashMap::new();
    {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            event_id: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            replay_id: String,
        }
        let mut c = db.db().conn().await.unwrap();
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT l.event_id::text AS event_id, r.replay_id::text AS replay_id \
             FROM dead_letters l JOIN dead_letter_replays r ON r.dead_letter_id = l.id",
        )
        .load(&mut c)
        .await
        .unwrap();
        for r in rows {
            expected.insert(r.event_id, r.replay_id);
        }
    }
    let channel = amqp.create_channel().await.unwrap();
    let depth = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count() as usize;
    assert!(depth >= LETTERS as usize, "{depth} messages in {queue}, fewer than the {LETTERS} letters");
    // Drained by a consumer (no ack, prefetch 1000): (event id, replay id) per message.
    channel.basic_qos(1000, BasicQosOptions::default()).await.unwrap();
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "resume-test".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Option<String>, Option<String>)>();
    consumer.set_delegate(move |delivery: lapin::message::DeliveryResult| {
        let tx = tx.clone();
        async move {
            if let Ok(Some(d)) = delivery {
                let event_id = d.properties.message_id().as_ref().map(|m| m.to_string());
                let replay_id = match d.properties.headers().as_ref().and_then(|h| h.inner().get("x-atelier-replay-id"))
                {
                    Some(AMQPValue::LongString(s)) => Some(s.to_string()),
                    _ => None,
                };
                let _ = tx.send((event_id, replay_id));
            }
        }
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..depth {
        let (event_id, replay_id) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("a message within 60 s")
            .expect("the consumer is open");
        let event_id = event_id.expect("a message id");
        let replay_id = replay_id.expect("an x-atelier-replay-id header");
        assert_eq!(expected.get(&event_id), Some(&replay_id), "event {event_id} arrived under another replay id");
        *seen.entry(event_id).or_default() += 1;
    }
    assert_eq!(seen.len(), LETTERS as usize, "every letter reached the queue");
    let twice = depth - LETTERS as usize;
    // Only letters in flight when the first run was killed (published, not yet
    // recorded) go out again: at most the window of unconfirmed messages
    // (1000), the confirmed batch being filled (500), the two batches queued
    // for the recorder and the one it commits (3 × 500), whatever the timing.
    assert!(twice <= 3000, "{twice} letters reached the queue twice, more than were in flight");
    println!("{LETTERS} letters; first run killed after {after_kill} recorded; {twice} published again on resume");
    topology.delete(&amqp, Duration::from_secs(30)).await.unwrap();
    guard.0 = None;
    amqp.close(200, "done".into()).await.ok();
}
