//! `atelier status` against the real PostgreSQL, RabbitMQ and a running
//! atelierd: every part shown, and what cannot be reached shown as such.

mod support;

use atelier_domain::testing::TestDb;
use support::{NamespaceGuard, atelier, json, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_part_and_the_running_daemon() {
    let db = TestDb::new().await;
    let guard = NamespaceGuard::new("cli-status");
    let url = format!("{:?}", db.url());
    let vars = [("ATELIER__DATABASE__URL", url.as_str()), ("ATELIER__AMQP__NAMESPACE", guard.0.as_str())];
    let applied = atelier(&["--env", "test", "topology", "apply"], &vars);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));

    let (app, base) = serve(&db).await;
    let out = atelier(&["--env", "test", "status", "-o", "json"], &vars);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    let data = &doc["data"];
    assert_eq!(doc["success"], true);
    let daemons = data["daemons"].as_array().unwrap_or_else(|| panic!("{data}"));
    let me = daemons.iter().find(|d| d["url"] == base.as_str()).unwrap_or_else(|| panic!("{data}"));
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(me["roles"], "http");
    assert_eq!(me["stale"], false);
    assert_eq!(me["ready"]["ok"], true, "{me}");
    assert!(me["uptime_seconds"].as_i64().is_some());
    assert!(data["deployment"].is_null(), "{data}");
    assert_eq!(data["migrations"]["pending"].as_array().map(Vec::len), Some(0), "{data}");
    assert_eq!(data["outbox"]["backlog"], 0, "{data}");
    let queues = data["queues"].as_array().unwrap_or_else(|| panic!("{data}"));
    let production = format!("{}.q.production", guard.0);
    let q = queues.iter().find(|q| q["name"] == production.as_str()).unwrap_or_else(|| panic!("{data}"));
    assert_eq!((q["messages"].as_u64(), q["consumers"].as_u64()), (Some(0), Some(0)), "{q}");
    assert!(data["dead_letters"]["by_status"].is_object(), "{data}");
    assert_eq!(data["secrets"]["backend"], "env");

    let text = atelier(&["--env", "test", "status"], &vars);
    assert!(text.status.success());
    let screen = String::from_utf8_lossy(&text.stdout);
    for part in [
        "daemons:",
        "deployment: none recorded",
        "migrations:",
        "outbox: 0 waiting",
        "queues",
        "dead letters:",
        "secrets",
    ] {
        assert!(screen.contains(part), "{part}: {screen}");
    }
    assert!(screen.contains(&production) && screen.contains("  ready"), "{screen}");

    // A clean stop removes the daemon's row.
    app.stop().await.expect("atelierd stops cleanly");
    let after = json(&atelier(&["--env", "test", "status", "-o", "json"], &vars));
    let left = after["data"]["daemons"].as_array().unwrap_or_else(|| panic!("{after}"));
    assert!(left.iter().all(|d| d["url"] != base.as_str()), "{after}");
}

#[test]
fn status_shows_what_cannot_be_reached_and_still_exits_0() {
    let vars = [
        ("ATELIER__DATABASE__URL", "postgres://postgres@127.0.0.1:1/nothing"),
        ("ATELIER__AMQP__URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
    ];
    let out = atelier(&["--env", "test", "status", "-o", "json"], &vars);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    for part in ["daemons", "deployment", "migrations", "outbox", "queues", "dead_letters"] {
        let why = doc["data"][part]["unreachable"].as_str().unwrap_or_else(|| panic!("{part}: {doc}"));
        assert!(!why.is_empty() && !why.contains("Some("), "{part}: {why}");
    }
    let text = atelier(&["--env", "test", "status"], &vars);
    assert_eq!(text.status.code(), Some(0));
    let screen = String::from_utf8_lossy(&text.stdout);
    // The database's reason once, not under each part it holds; the broker's under queues.
    assert_eq!(screen.matches("database unreachable: ").count(), 1, "{screen}");
    assert!(screen.contains("queues") && screen.contains("  unreachable: "), "{screen}");
}
