//! Environment policy is configuration: a new environment is a new file in
//! the config directory (`ATELIER_CONFIG_DIR`), no code change. `qa.toml` with
//! production's `[policy]` behaves like production: changes need `--yes`
//! (exit 6), `migrate run` lints first, and `check` fails without token keys.

mod support;

use atelier_domain::testing::TestDb;
use std::path::PathBuf;
use support::{atelier, json};

/// A config directory of its own: the repository's base.toml, and qa.toml
/// holding only production's `[policy]` table.
struct QaConfig(PathBuf);

impl QaConfig {
    fn new(tag: &str) -> QaConfig {
        let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments"));
        let dir = std::env::temp_dir().join(format!("atelier-qa-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(repo.join("base.toml"), dir.join("base.toml")).unwrap();
        let production = std::fs::read_to_string(repo.join("production.toml")).unwrap();
        let policy = &production[production.find("[policy]").expect("production states its policy")..];
        std::fs::write(dir.join("qa.toml"), policy).unwrap();
        QaConfig(dir)
    }

    fn dir(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for QaConfig {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

#[test]
fn a_new_environment_shows_its_policy_and_where_it_came_from() {
    let qa = QaConfig::new("show");
    let out = atelier(&["--env", "qa", "env", "show", "--output", "json"], &[("ATELIER_CONFIG_DIR", qa.dir())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    let values = doc["data"]["values"].as_array().unwrap();
    for key in ["policy.confirm_changes", "policy.lint_before_migrate", "policy.allow_ephemeral_token_key"] {
        let v = values.iter().find(|v| v["key"] == key).unwrap_or_else(|| panic!("{key} missing"));
        assert!(v["source"].as_str().unwrap().ends_with("qa.toml"), "{v}");
    }
}

#[test]
fn a_change_to_qa_is_refused_without_yes() {
    let qa = QaConfig::new("confirm");
    let out = atelier(&["--env", "qa", "migrate", "rollback", "--output", "json"], &[("ATELIER_CONFIG_DIR", qa.dir())]);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(json(&out)["error"]["message"].as_str().unwrap().contains("in qa was not confirmed"));
}

#[tokio::test]
async fn migrate_run_in_qa_lints_first_and_needs_yes() {
    let qa = QaConfig::new("migrate");
    let db = TestDb::empty().await;
    let url = format!("{:?}", db.url());
    let vars = [("ATELIER_CONFIG_DIR", qa.dir()), ("ATELIER__DATABASE__URL", url.as_str())];
    let plan = json(&atelier(&["--env", "qa", "migrate", "plan", "--output", "json"], &vars));
    assert_eq!(plan["data"]["run_lints_first"], true, "{plan}");
    let test_plan = json(&atelier(&["--env", "test", "migrate", "plan", "--output", "json"], &vars[1..]));
    assert_eq!(test_plan["data"]["run_lints_first"], false, "{test_plan}");

    let run = atelier(&["--env", "qa", "migrate", "run", "--output", "json"], &vars);
    assert_eq!(run.status.code(), Some(6), "{}", String::from_utf8_lossy(&run.stdout));
    let run = atelier(&["--env", "qa", "--yes", "migrate", "run", "--output", "json"], &vars);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stdout));
    let status = json(&atelier(&["--env", "qa", "migrate", "status", "--output", "json"], &vars));
    assert_eq!(status["data"]["pending"], 0);
}

#[tokio::test]
async fn check_in_qa_fails_without_token_keys() {
    let qa = QaConfig::new("check");
    let db = TestDb::new().await;
    let url = format!("{:?}", db.url());
    let ns = format!("t-qa-check-{}", std::process::id());
    let vars = [
        ("ATELIER_CONFIG_DIR", qa.dir()),
        ("ATELIER__DATABASE__URL", url.as_str()),
        ("ATELIER__AMQP__NAMESPACE", ns.as_str()),
    ];
    let out = atelier(&["--env", "qa", "check", "--output", "json"], &vars);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    let doc = json(&out);
    let secrets = doc["data"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "secrets").unwrap().clone();
    assert_eq!(secrets["ok"], false, "{secrets}");
    let detail = secrets["detail"].as_str().unwrap();
    assert!(detail.contains("auth.jwt_secret") && detail.contains("ATELIER_SECRET_JWT_SIGNING_KEY"), "{detail}");
}
