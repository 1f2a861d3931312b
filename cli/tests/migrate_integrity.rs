//! `atelier migrate status | run | repair` over an edited, missing or
//! unrecorded migration: reported by status, refused by run where the policy
//! is careful (staging: exit 5), let through in the test environment.

mod support;

use atelier_domain::testing::TestDb;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use support::{atelier, json};

/// The newest embedded migration's version (recorded since checksums exist).
const INTEGRITY: &str = "20261201000023";

async fn exec(db: &TestDb, sql: &str) {
    let mut conn = db.db().conn().await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

struct Env {
    url: String,
}

impl Env {
    fn vars(&self) -> [(&str, &str); 3] {
        [
            ("ATELIER__DATABASE__URL", self.url.as_str()),
            ("ATELIER__SECRETS__BACKEND", "env"),
            ("ATELIER_SECRET_DATABASE_PASSWORD", "unused"),
        ]
    }
    fn run(&self, env: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--env", env];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--output", "json"]);
        atelier(&all, &self.vars())
    }
    fn status(&self) -> Value {
        let out = self.run("test", &["migrate", "status"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json(&out)
    }
    fn state_of(&self, version: &str) -> Value {
        let doc = self.status();
        doc["data"]["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["version"] == version)
            .unwrap_or_else(|| panic!("{version} not in {doc}"))
            .clone()
    }
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

async fn migrated() -> (TestDb, Env) {
    let db = TestDb::new().await;
    let env = Env { url: format!("{:?}", db.url()) };
    (db, env)
}

#[tokio::test]
async fn an_edited_migration_is_reported_refused_in_staging_and_repaired_with_an_audit_row() {
    let (db, env) = migrated().await;
    let first = "20261125000001";
    assert_eq!(env.state_of(first)["state"], "applied");
    let bogus = "0".repeat(64);
    exec(&db, &format!("UPDATE atelier_migrations SET up_sha256 = '{bogus}' WHERE version = '{first}'")).await;

    let m = env.state_of(first);
    assert_eq!(m["state"], "edited", "{m}");
    assert_eq!(m["edits"][0]["file"], "migrations/2026-11-25-000001_tenancy/up.sql");
    assert_eq!(m["edits"][0]["recorded"], bogus.as_str());
    assert_eq!(m["edits"][0]["current"].as_str().unwrap().len(), 64);
    assert_eq!(env.status()["data"]["states"]["edited"], 1);

    let run = env.run("staging", &["migrate", "run"]);
    assert_eq!(run.status.code(), Some(5), "{}", text(&run));
    assert!(text(&run).contains("2026-11-25-000001_tenancy") && text(&run).contains(&bogus), "{}", text(&run));
    let run = env.run("test", &["migrate", "run"]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(json(&run)["data"]["drift"][0]["state"], "edited");

    // repair asks first; with --yes it re-records and audits.
    let refused = env.run("staging", &["migrate", "repair"]);
    assert_eq!(refused.status.code(), Some(6), "{}", text(&refused));
    let repair = env.run("staging", &["--yes", "migrate", "repair", "--actor", "alice"]);
    assert!(repair.status.success(), "{}", text(&repair));
    let doc = json(&repair);
    assert_eq!(doc["count"], 1);
    assert_eq!(doc["data"]["repaired"][0]["old_up_sha256"], bogus.as_str());
    assert_eq!(env.state_of(first)["state"], "applied");

    #[derive(diesel::QueryableByName)]
    struct Audit {
        #[diesel(sql_type = diesel::sql_types::Text)]
        actor: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        old_up_sha256: Option<String>,
    }
    let mut conn = db.db().conn().await.unwrap();
    let rows: Vec<Audit> = diesel::sql_query("SELECT actor, version, old_up_sha256 FROM atelier_migration_repairs")
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].actor.starts_with("alice@"), "{}", rows[0].actor);
    assert_eq!((rows[0].version.as_str(), rows[0].old_up_sha256.as_deref()), (first, Some(bogus.as_str())));
    let run = env.run("staging", &["migrate", "run"]);
    assert!(run.status.success(), "{}", text(&run));
}

#[tokio::test]
async fn a_migration_this_build_does_not_know_is_missing_and_refused_in_staging() {
    let (db, env) = migrated().await;
    exec(&db, "INSERT INTO __diesel_schema_migrations (version) VALUES ('29990101000001')").await;
    let m = env.state_of("29990101000001");
    assert_eq!(m["state"], "missing", "{m}");
    assert!(m["note"].as_str().unwrap().contains("newer version"), "{m}");
    let run = env.run("staging", &["migrate", "run"]);
    assert_eq!(run.status.code(), Some(5), "{}", text(&run));
    assert!(text(&run).contains("29990101000001"), "{}", text(&run));
    let run = env.run("test", &["migrate", "run"]);
    assert!(run.status.success(), "{}", text(&run));
}

#[tokio::test]
async fn an_unrecorded_migration_is_unknown_history_refused_in_staging_and_adopted_in_test() {
    let (db, env) = migrated().await;
    exec(&db, &format!("DELETE FROM atelier_migrations WHERE version = '{INTEGRITY}'")).await;
    let m = env.state_of(INTEGRITY);
    assert_eq!((m["state"].as_str(), m["drift"].as_bool()), (Some("unknown_history"), Some(true)), "{m}");
    let run = env.run("staging", &["migrate", "run"]);
    assert_eq!(run.status.code(), Some(5), "{}", text(&run));
    assert!(text(&run).contains("2026-12-01-000023_migration_integrity"), "{}", text(&run));
    let run = env.run("test", &["migrate", "run"]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(json(&run)["data"]["adopted"][0]["version"], INTEGRITY);
    let m = env.state_of(INTEGRITY);
    assert_eq!((m["state"].as_str(), m["record"]["adopted"].as_bool()), (Some("applied"), Some(true)), "{m}");
}

#[tokio::test]
async fn history_from_before_checksums_is_adopted_even_in_staging() {
    let (db, env) = migrated().await;
    exec(&db, &format!("DELETE FROM atelier_migrations WHERE version < '{INTEGRITY}'")).await;
    let doc = env.status();
    assert_eq!(doc["data"]["states"]["unknown_history"], doc["count"].as_u64().unwrap() - 1, "{doc}");
    let run = env.run("staging", &["migrate", "run"]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(json(&run)["data"]["adopted"].as_array().unwrap().len() as u64, doc["count"].as_u64().unwrap() - 1);
    assert_eq!(env.status()["data"]["states"]["applied"], doc["count"]);
}

#[tokio::test]
async fn contract_is_a_phase_run_accepts() {
    // The embedded set has no contract migration: --phase contract applies
    // what is pending and says nothing waits (the gate itself is tested with
    // an injected set in domain/tests/migration_phases.rs).
    let db = TestDb::empty().await;
    let env = Env { url: format!("{:?}", db.url()) };
    let run = env.run("test", &["migrate", "run", "--phase", "contract"]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(json(&run)["data"]["phase"], "contract");
    assert_eq!(json(&run)["data"]["waiting"], serde_json::json!([]));
    let bad = env.run("test", &["migrate", "run", "--phase", "sideways"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}
