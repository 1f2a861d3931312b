//! `atelier check` (the preflight) against the real PostgreSQL and RabbitMQ:
//! a database of its own and a topology namespace of its own, deleted at
//! the end.

mod support;

use atelier_domain::store::migrations::{self, Limits};
use atelier_domain::testing::TestDb;
use serde_json::Value;
use std::time::Duration;
use support::{atelier, delete_namespace, json};

fn check(vars: &[(&str, &str)]) -> (Option<i32>, Value) {
    let out = atelier(&["--env", "test", "check", "--output", "json"], vars);
    (out.status.code(), json(&out))
}

/// The check named `name` of a `check` document: (ok, detail).
fn named(doc: &Value, name: &str) -> (bool, String) {
    let c = doc["data"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    (c["ok"] == true, c["detail"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_when_all_holds_and_names_each_problem_with_the_most_telling_exit_code() {
    let db = TestDb::new().await;
    let ns = format!("t-check-{}", std::process::id());
    let url = format!("{:?}", db.url());
    let vars = [("ATELIER__DATABASE__URL", url.as_str()), ("ATELIER__AMQP__NAMESPACE", ns.as_str())];

    // The namespace has no topology yet: 5, and the topology check says so.
    let (code, doc) = check(&vars);
    assert_eq!(code, Some(5), "{doc}");
    let (ok, detail) = named(&doc, "topology");
    assert!(!ok && detail.contains("is missing"), "{detail}");
    assert!(named(&doc, "database").0 && named(&doc, "migrations").0 && named(&doc, "broker").0, "{doc}");

    let out = atelier(&["--env", "test", "topology", "apply"], &vars);
    assert!(out.status.success());
    let (code, doc) = check(&vars);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["success"], true);
    let names: Vec<&str> =
        doc["data"]["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["config", "secrets", "database", "migrations", "broker", "topology"]);

    // A migration pending: 5, named.
    let limits = Limits { lock_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(30) };
    migrations::rollback(db.url(), limits, 1, |_| {}).await.unwrap();
    let (code, doc) = check(&vars);
    assert_eq!(code, Some(5));
    let (ok, detail) = named(&doc, "migrations");
    assert!(!ok && detail.starts_with("1 pending (") && detail.contains("atelier migrate run"), "{detail}");

    // PostgreSQL unreachable outweighs the rest: 4.
    let nowhere = [("ATELIER__DATABASE__URL", "postgres://postgres@127.0.0.1:1/atelier"), vars[1]];
    let (code, doc) = check(&nowhere);
    assert_eq!(code, Some(4), "{doc}");
    assert!(!named(&doc, "database").0 && named(&doc, "migrations").1.starts_with("not checked"));

    // A secret the configuration names but nobody set outweighs all: 3, with where to set it.
    let unset = [vars[0], vars[1], ("ATELIER__AMQP__PASSWORD_SECRET", "check_amqp_password")];
    let (code, doc) = check(&unset);
    assert_eq!(code, Some(3), "{doc}");
    let (ok, detail) = named(&doc, "secrets");
    assert!(!ok && detail.contains("ATELIER_SECRET_CHECK_AMQP_PASSWORD"), "{detail}");
    delete_namespace(&ns);
}

#[test]
fn a_database_url_without_its_password_says_which_key_which_secret_and_how_to_set_it() {
    let vars = [
        ("ATELIER__DATABASE__URL", "postgres://atelier@127.0.0.1:1/atelier_nowhere"),
        ("ATELIER__DATABASE__PASSWORD_SECRET", "check_db_password"),
        ("ATELIER__AMQP__URL", "amqp://guest@127.0.0.1:1/%2f"),
    ];
    let (code, doc) = check(&vars);
    assert_eq!(code, Some(3), "{doc}");
    let (ok, detail) = named(&doc, "database");
    assert!(!ok, "{detail}");
    for words in [
        "database.url is set (postgres://atelier@127.0.0.1:1/atelier_nowhere) but its password is missing",
        "database.password_secret names the secret 'check_db_password'",
        "set the variable ATELIER_SECRET_CHECK_DB_PASSWORD",
    ] {
        assert!(detail.contains(words), "{detail}");
    }
}
