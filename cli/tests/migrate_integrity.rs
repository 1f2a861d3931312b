//! `atelier migrate status | run | repair` over an edited, missing or
//! unrecorded migration: reported by status, refused by run where the policy
//! is careful (staging: exit 5), let through in the test environment. Also
//! `migrate run` while another migrator holds the lock (exit 7, naming it;
//! `--wait`), `migrate plan`'s locks and `migrate new`.

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
    fn vars(&self) -> [(&str, &str); 2] {
        [("ATELIER__DATABASE__URL", self.url.as_str()), ("ATELIER_SECRET_DATABASE_PASSWORD", "unused")]
    }
    fn run(&self, env: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--env", env];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--output", "json"]);
        atelier(&all, &self.vars())
    }
    fn status(&self) -> Value {
        let out = self.run("test", &["migrate", "status"]);
        let doc = json(&out);
        // Exit 5 exactly when something drifted (edited, missing, applied unrecorded).
        let drift = doc["data"]["migrations"].as_array().unwrap().iter().any(|m| m["drift"] == true);
        assert_eq!(doc["data"]["drift"], drift, "{doc}");
        assert_eq!(out.status.code(), Some(if drift { 5 } else { 0 }), "{}", String::from_utf8_lossy(&out.stderr));
        doc
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
    // The migrations before the integrity one (later ones were recorded when applied).
    let before = doc["data"]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["version"].as_str().unwrap() < INTEGRITY)
        .count() as u64;
    assert_eq!(doc["data"]["states"]["unknown_history"], before, "{doc}");
    let run = env.run("staging", &["migrate", "run"]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(json(&run)["data"]["adopted"].as_array().unwrap().len() as u64, before);
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

use atelier_domain::store::migrations::MIGRATION_LOCK;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn run_exits_7_naming_the_lock_holder_and_with_wait_goes_on_once_it_is_free() {
    let (db, env) = migrated().await;
    let mut holder = db.db().conn().await.unwrap();
    for sql in [
        "SET application_name = 'atelier migrate run pid 4242 on build-7'".to_owned(),
        format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
    ] {
        diesel::sql_query(sql).execute(&mut holder).await.unwrap();
    }
    let out = env.run("test", &["migrate", "run"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["error"]["code"], "busy", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("atelier migrate run pid 4242 on build-7") && message.contains("--wait"), "{message}");

    // With --wait, it waits (seen in pg_stat_activity), then runs once the lock is free.
    let vars: Vec<(String, String)> = env.vars().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let waiter = std::thread::spawn(move || {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        atelier(&["--env", "test", "migrate", "run", "--wait", "120s", "-o", "json"], &vars)
    });
    let pool = db.db().clone();
    atelier_domain::testing::eventually(std::time::Duration::from_secs(60), "the second run waiting", || {
        let pool = pool.clone();
        async move {
            let mut conn = pool.conn().await.unwrap();
            let q = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name LIKE 'atelier migrate run pid %' AND application_name NOT LIKE '%pid 4242 %'",
            );
            q.get_result::<Count>(&mut conn).await.unwrap().n == 1
        }
    })
    .await;
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(&mut holder).await.unwrap();
    let out = waiter.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&out)["data"]["applied"], serde_json::json!([]));
}

#[tokio::test]
async fn plan_names_each_pending_statements_lock_and_the_tables_live_size() {
    let (_db, env) = migrated().await;
    let back = env.run("test", &["migrate", "rollback"]);
    assert!(back.status.success(), "{}", text(&back));
    let plan = env.run("test", &["migrate", "plan"]);
    assert!(plan.status.success(), "{}", text(&plan));
    let doc = json(&plan);
    let step = &doc["data"]["pending"][0];
    assert!(step["phase"] == "expand" || step["phase"] == "contract", "{step}");
    let statements = step["statements"].as_array().unwrap();
    assert!(!statements.is_empty(), "{step}");
    for st in statements {
        assert_eq!(st["phase"], step["phase"], "{st}");
        assert!(["catalog", "rows", "scan", "rewrite"].contains(&st["effect"].as_str().unwrap()), "{st}");
        // A statement on an existing table has its lock and the table's live size.
        if !st["table"].is_null() {
            assert!(st["lock"].is_string() && st["table_bytes"].as_i64().unwrap() > 0, "{st}");
        }
    }
}

#[test]
fn new_writes_the_next_numbered_migration_with_its_phase_header_and_it_lints_clean() {
    let dir = std::env::temp_dir().join(format!("atelier-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("2026-01-01-000041_older")).unwrap();
    let d = dir.to_str().unwrap();
    let out = atelier(&["--env", "test", "migrate", "new", "add_sales_remarks", "--dir", d, "-o", "json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let name = json(&out)["data"]["name"].as_str().unwrap().to_owned();
    assert!(name.ends_with("-000042_add_sales_remarks") && name.len() == "2026-01-01-000042_add_sales_remarks".len());
    let up = std::fs::read_to_string(dir.join(&name).join("up.sql")).unwrap();
    assert!(up.contains("-- atelier:phase expand\n") && !up.contains("no-transaction"), "{up}");
    assert!(dir.join(&name).join("down.sql").exists());
    let up_path = dir.join(&name).join("up.sql");
    let lint = atelier(&["migrate", "lint", up_path.to_str().unwrap()], &[]);
    assert_eq!(lint.status.code(), Some(0), "{}", text(&lint));

    let out = atelier(
        &["--env", "test", "migrate", "new", "drop_notes", "--phase", "contract", "--no-transaction", "--dir", d],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let made = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().into_string().unwrap());
    let contract = made.into_iter().find(|n| n.ends_with("-000043_drop_notes")).expect("numbered after the last");
    let up = std::fs::read_to_string(dir.join(contract).join("up.sql")).unwrap();
    assert!(up.contains("-- atelier:phase contract\n") && up.contains("-- atelier:no-transaction\n"), "{up}");

    let bad = atelier(&["--env", "test", "migrate", "new", "Add-Thing", "--dir", d], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("lower-case"), "{}", text(&bad));
    std::fs::remove_dir_all(&dir).unwrap();
}
