//! `atelier` as a pipeline runs it: real processes, JSON output, exit codes.

mod support;

use atelier_domain::testing::TestDb;
use support::{atelier, json};

#[test]
fn env_list_marks_the_selected_environment() {
    let out = atelier(&["--env", "staging", "env", "list", "--output", "json"], &[]);
    assert!(out.status.success());
    let doc = json(&out);
    let names: Vec<_> =
        doc["data"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["dev", "production", "staging", "test"]);
    assert_eq!(doc["data"][2]["selected"], true);
}

#[test]
fn env_show_attributes_each_value_and_redacts_credentials() {
    let out = atelier(
        &["env", "show", "--output", "json"],
        &[("ATELIER__AMQP__NAMESPACE", "ns-from-var"), ("ATELIER__AMQP__URL", "amqp://u:pa55word@127.0.0.1:5672/%2f")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("pa55word"), "{text}");
    let doc = json(&out);
    let values = doc["data"]["values"].as_array().unwrap();
    let find = |k: &str| values.iter().find(|v| v["key"] == k).unwrap_or_else(|| panic!("{k} missing")).clone();
    assert_eq!(find("amqp.namespace")["value"], "ns-from-var");
    assert_eq!(find("amqp.namespace")["source"], "$ATELIER__AMQP__NAMESPACE");
    assert_eq!(find("log.format")["source"], "environments/dev.toml");
    assert_eq!(find("retry.max_retries")["source"], "environments/base.toml");
    // The HTTP connection limits, and /metrics' own bind (unset by default).
    assert_eq!(find("http.metrics_bind")["value"], serde_json::Value::Null);
    assert_eq!(find("http.header_timeout")["source"], "environments/base.toml");
    assert_eq!(find("http.idle_timeout")["source"], "environments/base.toml");
    assert_eq!(find("http.max_connections")["value"], 1024);
    let out = atelier(&["env", "show", "--output", "json"], &[("ATELIER__HTTP__METRICS_BIND", "127.0.0.1:9090")]);
    let doc = json(&out);
    let values = doc["data"]["values"].as_array().unwrap();
    let bind = values.iter().find(|v| v["key"] == "http.metrics_bind").unwrap();
    assert_eq!(bind["value"], "127.0.0.1:9090");
    assert_eq!(bind["source"], "$ATELIER__HTTP__METRICS_BIND");
    let out = atelier(&["env", "show", "--output", "json"], &[("ATELIER__HTTP__METRICS_BIND", "nine")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(json(&out)["error"]["message"].as_str().unwrap().contains("http.metrics_bind"));
}

#[test]
fn an_unknown_environment_exits_3_with_a_clear_message() {
    let out = atelier(&["--env", "prod", "env", "show"], &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown environment 'prod'") && err.contains("production"), "{err}");
    let out = atelier(&["env", "show", "--output", "json"], &[("ATELIER__AMQP__PREFETCH", "many")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(json(&out)["error"]["message"].as_str().unwrap().contains("amqp.prefetch"));
}

#[tokio::test]
async fn migrate_status_run_and_rollback() {
    let db = TestDb::empty().await;
    let url = format!("{:?}", db.url());
    let vars = [("ATELIER__DATABASE__URL", url.as_str())];
    let status = json(&atelier(&["--env", "test", "migrate", "status", "--output", "json"], &vars));
    let total = status["count"].as_u64().unwrap();
    assert_eq!(status["data"]["pending"].as_u64(), Some(total));

    let run = atelier(&["--env", "test", "migrate", "run", "--output", "json"], &vars);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stdout));
    assert_eq!(json(&run)["count"].as_u64(), Some(total));
    assert_eq!(
        json(&atelier(&["--env", "test", "migrate", "status", "--output", "json"], &vars))["data"]["pending"],
        0
    );

    let back = atelier(&["--env", "test", "migrate", "rollback", "--steps", "2", "--output", "json"], &vars);
    assert!(back.status.success());
    assert_eq!(json(&back)["count"], 2);
    assert_eq!(
        json(&atelier(&["--env", "test", "migrate", "status", "--output", "json"], &vars))["data"]["pending"],
        2
    );
}

#[test]
fn production_changes_need_confirmation() {
    // No terminal and no --yes: refused before touching anything (the
    // production database is not reachable from here, and need not be).
    let out = atelier(
        &["--env", "production", "migrate", "rollback", "--output", "json"],
        &[
            ("ATELIER__SECRETS__BACKEND", "env"),
            ("ATELIER_SECRET_DATABASE_PASSWORD", "x"),
            ("ATELIER_SECRET_AMQP_PASSWORD", "x"),
        ],
    );
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"x\""));
}

#[test]
fn a_missing_secret_says_where_to_set_it() {
    // Staging keeps its secrets in its encrypted file by default: without it, say how to create it.
    let out = atelier(&["--env", "staging", "migrate", "status"], &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("staging.secrets.json") && err.contains("secrets init"), "{err}");
    // With the env backend, the variable to set.
    let out = atelier(&["--env", "staging", "migrate", "status"], &[("ATELIER__SECRETS__BACKEND", "env")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ATELIER_SECRET_DATABASE_PASSWORD"));
}

#[test]
fn completions_are_generated() {
    let out = atelier(&["completions", "bash"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("atelier"));
}

#[test]
fn migrate_lint_refuses_destructive_or_locking_statements_a_file_does_not_allow() {
    // This build's migrations refuse nothing (warnings only), without a database.
    let out = atelier(&["migrate", "lint", "--all", "--output", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let doc = json(&out);
    let findings = doc["data"]["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["severity"] == "warning" && f["refuses"] == false), "{doc}");

    let dir = std::env::temp_dir().join(format!("atelier-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("up.sql");
    let risky = "ALTER TABLE sales DROP COLUMN notes;\nCREATE INDEX sales_notes ON sales (notes);\n";
    std::fs::write(&file, risky).unwrap();
    let path = file.to_str().unwrap();
    let out = atelier(&["migrate", "lint", path, "--output", "json"], &[]);
    assert_eq!(out.status.code(), Some(5));
    let doc = json(&out);
    let found: Vec<(String, u64)> = doc["data"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap().to_owned(), f["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(found, [("drop-column".to_owned(), 1), ("index-lock".to_owned(), 2)]);

    // Allowed in the file, with reasons: found, reported, not refused.
    let allowed = format!(
        "-- atelier:allow drop-column: nothing reads notes since 0.2.0\n\
         -- atelier:allow index-lock: sales is small in every environment\n{risky}"
    );
    std::fs::write(&file, allowed).unwrap();
    let out = atelier(&["migrate", "lint", path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("allowed ") && text.contains("nothing reads notes since 0.2.0"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn staging_lints_the_pending_migrations_before_it_runs_them() {
    let db = TestDb::empty().await;
    let url = format!("{:?}", db.url());
    // Staging's configuration, pointed at this test's database (trust auth
    // takes any password).
    let vars = [
        ("ATELIER__DATABASE__URL", url.as_str()),
        ("ATELIER__SECRETS__BACKEND", "env"),
        ("ATELIER_SECRET_DATABASE_PASSWORD", "unused"),
    ];
    let lint = atelier(&["--env", "staging", "migrate", "lint", "--output", "json"], &vars);
    assert_eq!(lint.status.code(), Some(0), "{}", String::from_utf8_lossy(&lint.stdout));
    let run = atelier(&["--env", "staging", "migrate", "run", "--output", "json"], &vars);
    assert!(run.status.success(), "{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let status = json(&atelier(&["--env", "staging", "migrate", "status", "--output", "json"], &vars));
    assert_eq!(status["data"]["pending"], 0);
}

#[tokio::test]
async fn migrate_plan_shows_what_run_would_apply_and_changes_nothing() {
    let db = TestDb::new().await;
    let url = format!("{:?}", db.url());
    let vars = [("ATELIER__DATABASE__URL", url.as_str())];
    let plan = json(&atelier(&["--env", "test", "migrate", "plan", "--output", "json"], &vars));
    assert_eq!(plan["count"], 0, "{plan}");

    let back = atelier(&["--env", "test", "migrate", "rollback", "--output", "json"], &vars);
    let reverted = json(&back)["data"]["reverted"][0]["name"].as_str().unwrap().to_owned();
    let plan = json(&atelier(&["--env", "test", "migrate", "plan", "--output", "json"], &vars));
    assert_eq!(plan["count"], 1);
    let step = &plan["data"]["pending"][0];
    assert_eq!(step["migration"], reverted.as_str());
    let on_disk = std::fs::read_to_string(format!("{}/../migrations/{reverted}/up.sql", env!("CARGO_MANIFEST_DIR")));
    assert_eq!(step["sql"].as_str(), Some(on_disk.unwrap().as_str()), "the SQL run would apply");
    assert_eq!(plan["data"]["run_would_refuse"], false);
    let text = String::from_utf8_lossy(&atelier(&["--env", "test", "migrate", "plan"], &vars).stdout).into_owned();
    assert!(text.starts_with(&format!("-- {reverted}\n")) && text.contains("would apply 1 migration(s)"), "{text}");
    let status = json(&atelier(&["--env", "test", "migrate", "status", "--output", "json"], &vars));
    assert_eq!(status["data"]["pending"], 1, "plan applied nothing");
}
