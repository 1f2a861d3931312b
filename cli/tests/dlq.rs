//! `atelier dlq` as the on-call engineer runs it: nothing is silent. Names
//! that are not handlers or event types are a wrong command line (exit 2),
//! ids that do not exist exit 5 naming them, a change without a selector
//! needs `--all`, a legitimately empty result says so and exits 0, `show`
//! takes the dead-letter UUID of the logs, and a replay that fails again is
//! linked to the letter it came from, with the login's user as the actor.
//! Real PostgreSQL (own database) and, for the replay, RabbitMQ (own
//! namespace) with atelierd's events role.

mod support;

use atelier_daemon::app::{App, Roles};
use atelier_domain::bus::{self, AmqpUrl, Topology};
use atelier_domain::config;
use atelier_domain::store::dlq::{self, NewDeadLetter};
use atelier_domain::testing::{TestDb, eventually};
use chrono::Utc;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::Duration;
use uuid::Uuid;

/// The real binary against `db`, in the test environment, with `vars` set
/// and `USER`/`LOGNAME` removed (the actor must then be the OS user id).
fn atelier(db: &TestDb, json: bool, args: &[&str], vars: &[(String, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.args(["--env", "test"]);
    if json {
        cmd.args(["--output", "json"]);
    }
    cmd.args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("ATELIER_ENV")
        .env_remove("ATELIER_ACTOR")
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env("ATELIER__DATABASE__URL", format!("{:?}", db.url()))
        .stdin(std::process::Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run atelier")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn doc(out: &Output) -> Value {
    support::json(out)
}

fn letter(handler: &str, event_type: Option<&str>, body: &[u8]) -> NewDeadLetter {
    let now = Utc::now();
    NewDeadLetter {
        dead_letter_key: Uuid::now_v7(),
        handler: handler.into(),
        event_id: Some(Uuid::now_v7()),
        event_type: event_type.map(str::to_owned),
        body: body.to_vec(),
        headers: serde_json::json!({}),
        attempts: 1,
        first_failed_at: now,
        last_failed_at: now,
        last_error: "it failed".into(),
        error_kind: "rule".into(),
        replay_id: None,
    }
}

/// Stores `l` and returns its id.
async fn store(db: &TestDb, l: &NewDeadLetter) -> i64 {
    let mut c = db.db().conn().await.unwrap();
    assert!(dlq::ingest(&mut c, l).await.unwrap());
    dlq::show(&mut c, dlq::LetterRef::Key(l.dead_letter_key)).await.unwrap().letter.id
}

#[tokio::test]
async fn names_that_do_not_exist_are_refused_and_empty_results_say_so() {
    let db = TestDb::new().await;
    let none: &[(String, String)] = &[];
    // An empty store is legitimately empty.
    let out = atelier(&db, false, &["dlq", "list"], none);
    assert_eq!((code(&out), text(&out).trim()), (0, "No dead letters."), "{}", text(&out));
    let out = atelier(&db, false, &["dlq", "stats"], none);
    assert_eq!((code(&out), text(&out).trim()), (0, "No dead letters."));

    let production = letter("production", Some("sale.created"), b"{}");
    let id = store(&db, &production).await;
    let stranger = store(&db, &letter("production", Some("gift.wrapped"), b"{}")).await;
    let untyped = store(&db, &letter("production", None, b"{}")).await;

    // A handler or an event type that is not one: exit 2, naming the known ones; every command with a selector.
    for cmd in ["list", "replay", "archive", "restore", "purge"] {
        let out = atelier(&db, true, &["dlq", cmd, "--handler", "billing"], none);
        assert_eq!(code(&out), 2, "{cmd}: {}", text(&out));
        let d = doc(&out);
        assert_eq!(d["error"]["code"], "usage", "{d}");
        let msg = d["error"]["message"].as_str().unwrap();
        assert!(msg.contains("billing") && msg.contains("notifications") && msg.contains("production"), "{msg}");
        let out = atelier(&db, true, &["dlq", cmd, "--type", "sale.exploded"], none);
        assert_eq!(code(&out), 2, "{cmd}: {}", text(&out));
        let msg = doc(&out)["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("sale.exploded") && msg.contains("sale.created"), "{msg}");
        // Ids no letter has: exit 5 naming them (the existing one is not named).
        let out = atelier(&db, true, &["dlq", cmd, &id.to_string(), "999999"], none);
        assert_eq!(code(&out), 5, "{cmd}: {}", text(&out));
        let msg = doc(&out)["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("#999999") && !msg.contains(&format!("#{id},")), "{msg}");
        let out = atelier(&db, true, &["dlq", cmd, "--fingerprint", "production:nothing_like_it"], none);
        assert_eq!(code(&out), 5, "{cmd}: {}", text(&out));
    }
    // A type no build knows but a stored letter has is a real selection.
    let out = atelier(&db, true, &["dlq", "list", "--type", "gift.wrapped"], none);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(doc(&out)["data"][0]["id"], stranger);

    // A real handler with no letters: plainly empty, exit 0.
    let out = atelier(&db, false, &["dlq", "list", "--handler", "canary"], none);
    assert_eq!((code(&out), text(&out).trim()), (0, "No dead letters match."));
    let out = atelier(&db, false, &["dlq", "replay", "--handler", "canary"], none);
    assert_eq!((code(&out), text(&out).trim()), (0, "No dead letters match."));

    // A bulk change without a selector needs --all (exit 2 without it), like purge.
    for cmd in ["archive", "restore", "purge", "replay"] {
        let out = atelier(&db, true, &["dlq", cmd], none);
        assert_eq!(code(&out), 2, "{cmd}: {}", text(&out));
        assert!(doc(&out)["error"]["message"].as_str().unwrap().contains("--all"));
    }
    let out = atelier(&db, true, &["dlq", "archive", "--all", "--handler", "production"], none);
    assert_eq!(code(&out), 2, "--all with a filter is contradictory: {}", text(&out));
    let out = atelier(&db, true, &["dlq", "archive", "--all"], none);
    assert_eq!((code(&out), doc(&out)["data"]["archived"].as_i64()), (0, Some(3)), "{}", text(&out));
    // Nothing left to archive: it says what the selection holds instead.
    let out = atelier(&db, false, &["dlq", "archive", &id.to_string()], none);
    assert_eq!(code(&out), 0);
    assert!(text(&out).contains("No dead letters match") && text(&out).contains("1 archived"), "{}", text(&out));
    let out = atelier(&db, false, &["dlq", "replay", &id.to_string()], none);
    assert!(code(&out) == 0 && text(&out).contains("1 archived"), "{}", text(&out));
    let out = atelier(&db, true, &["dlq", "restore", &untyped.to_string()], none);
    assert_eq!(doc(&out)["data"]["restored"], 1);

    // show: the row id, the dead-letter id of the logs, and what does not exist.
    let by_key = atelier(&db, true, &["dlq", "show", &production.dead_letter_key.to_string()], none);
    assert_eq!((code(&by_key), doc(&by_key)["data"]["id"].as_i64()), (0, Some(id)), "{}", text(&by_key));
    let out = atelier(&db, true, &["dlq", "show", &Uuid::now_v7().to_string()], none);
    assert_eq!(code(&out), 5, "{}", text(&out));
    let out = atelier(&db, true, &["dlq", "show", "999999"], none);
    assert_eq!(code(&out), 5, "{}", text(&out));
    let out = atelier(&db, true, &["dlq", "show", "the-bad-one"], none);
    assert_eq!(code(&out), 2, "{}", text(&out));

    // Unknown is spelled one way: list and show agree.
    let out = atelier(&db, false, &["dlq", "list", &untyped.to_string()], none);
    assert!(text(&out).contains(dlq::UNKNOWN) && !text(&out).contains(" ? "), "{}", text(&out));
    let out = atelier(&db, false, &["dlq", "show", &untyped.to_string()], none);
    assert!(text(&out).contains(&format!("event_type       {}", dlq::UNKNOWN)), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_fails_again_is_linked_to_the_letter_it_came_from() {
    let db = TestDb::new().await;
    let ns = format!("t-dlq-{}", Uuid::now_v7().simple());
    let vars: Vec<(String, String)> = vec![
        ("ATELIER__DATABASE__URL".into(), format!("{:?}", db.url())),
        ("ATELIER__AMQP__NAMESPACE".into(), ns.clone()),
    ];
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments"));
    let resolved = config::load_with(&dir, "test", &vars).unwrap();
    let settings = resolved.settings.clone();

    // A letter whose event no build handles (version 9): its replay fails again at once.
    let event_id = Uuid::now_v7();
    let body = serde_json::json!({
        "id": event_id, "type": "sale.created", "version": 9, "occurred_at": Utc::now(),
        "business_id": null, "correlation_id": Uuid::now_v7(), "causation_id": null,
        "producer": "test", "data": {}
    });
    let mut original = letter("production", Some("sale.created"), &serde_json::to_vec(&body).unwrap());
    original.event_id = Some(event_id);
    let first = store(&db, &original).await;

    // Before the namespace's queues exist, a replay would be dropped by the
    // broker (and still confirmed): refused, and the letter stays waiting.
    let out = atelier(&db, true, &["dlq", "replay", &first.to_string()], &vars);
    assert_eq!(code(&out), 5, "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    let shown = doc(&atelier(&db, true, &["dlq", "show", &first.to_string()], &vars));
    assert_eq!(shown["data"]["status"], "dead", "{shown}");

    let app = App::start(resolved, Roles { http: false, events: true }).await.expect("atelierd starts");
    let metrics = app.shared.metrics.clone();
    eventually(Duration::from_secs(30), "atelierd's consumers run", || async {
        use std::sync::atomic::Ordering::Relaxed;
        metrics.broker_connected.load(Relaxed)
            && metrics.consumers_running.load(Relaxed) >= metrics.consumers_expected.load(Relaxed)
    })
    .await;

    let out = atelier(&db, true, &["dlq", "replay", &first.to_string()], &vars);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid()
    };
    let actor = format!("uid {uid}");
    assert_eq!(doc(&out)["data"]["actor"], actor.as_str(), "no $USER or $LOGNAME: the OS user id");

    let failed_again_as = || async {
        let mut c = db.db().conn().await.unwrap();
        let d = dlq::show(&mut c, dlq::LetterRef::Id(first)).await.unwrap();
        d.replays.first().and_then(|r| r.failed_again_as)
    };
    eventually(Duration::from_secs(30), "the replay is dead-lettered again", || async {
        failed_again_as().await.is_some()
    })
    .await;
    let again = failed_again_as().await;
    let again = again.unwrap();
    assert_ne!(again, first);

    let shown = doc(&atelier(&db, true, &["dlq", "show", &first.to_string()], &vars));
    assert_eq!(shown["data"]["replays"][0]["failed_again_as"], again, "{shown}");
    assert_eq!(shown["data"]["replays"][0]["actor"], actor.as_str());
    assert_eq!(shown["data"]["status"], "replayed");
    let out = atelier(&db, false, &["dlq", "show", &first.to_string()], &vars);
    assert!(text(&out).contains(&format!("failed again as #{again}")), "{}", text(&out));
    let out = atelier(&db, false, &["dlq", "show", &again.to_string()], &vars);
    assert!(text(&out).contains(&format!("replay of #{first}")), "{}", text(&out));
    let shown = doc(&atelier(&db, true, &["dlq", "show", &again.to_string()], &vars));
    assert_eq!(shown["data"]["replay_of"], first);
    assert_eq!(shown["data"]["event_type"], "sale.created");
    assert_eq!(shown["data"]["event_id"], event_id.to_string());
    assert_eq!(shown["data"]["error_kind"], "unknown_version");

    app.stop().await.unwrap();
    let url = AmqpUrl::resolve(&settings.amqp, &atelier_domain::secrets::EnvSecrets).unwrap();
    let conn = bus::connect(&url, "test teardown", Duration::from_secs(5)).await.unwrap();
    Topology::standard(&settings).delete(&conn, Duration::from_secs(5)).await.ok();
}
