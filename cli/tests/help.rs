//! Help that teaches: completion of `--env` from environments/, man pages,
//! and `env diff` (the check before promoting).

mod support;

use support::{atelier, json};

#[test]
fn env_completes_environment_names_not_files() {
    let out = atelier(&["completions", "bash"], &[]);
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    // bash: the --env case offers the environments' names.
    let env_case = script.split("--env)").nth(1).unwrap_or_else(|| panic!("no --env case: {script}"));
    let offered = env_case.split(";;").next().unwrap_or_default();
    for name in ["dev", "test", "staging", "production"] {
        assert!(offered.contains(name), "{name} not offered: {offered}");
    }
    assert!(!offered.contains("compgen -f"), "file names offered: {offered}");
    let zsh = atelier(&["completions", "zsh"], &[]);
    assert!(String::from_utf8_lossy(&zsh.stdout).contains("staging"));
}

#[test]
fn manpages_writes_a_page_per_command_with_its_examples() {
    let dir = std::env::temp_dir().join(format!("atelier-man-{}", uuid::Uuid::now_v7().simple()));
    let out = atelier(&["manpages", dir.to_str().unwrap(), "-o", "json"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    let pages: Vec<String> =
        doc["data"]["pages"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
    for page in ["atelier.1", "atelier-dlq-replay.1", "atelier-topology-apply.1", "atelier-env-diff.1"] {
        assert!(pages.contains(&page.to_owned()), "{page} missing: {pages:?}");
    }
    let replay = std::fs::read_to_string(dir.join("atelier-dlq-replay.1")).unwrap();
    assert!(replay.contains("Examples:") && replay.contains("\\-\\-dry\\-run"), "{replay}");
    let _ = std::fs::remove_dir_all(&dir);
    // A directory that cannot be made: a clear error, exit 1.
    let bad = atelier(&["manpages", "/proc/atelier-man"], &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot write man pages into /proc/atelier-man"));
}

#[test]
fn env_diff_shows_what_differs_with_its_layer() {
    let out = atelier(&["env", "diff", "staging", "production", "-o", "json"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    let diffs = doc["data"]["differences"].as_array().unwrap();
    let confirm = diffs.iter().find(|d| d["key"] == "policy.confirm_changes").unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(confirm["a"]["value"], false);
    assert_eq!(confirm["b"]["value"], true);
    assert_eq!(confirm["b"]["source"], "environments/production.toml");
    assert!(diffs.iter().all(|d| d["key"] != "secrets.backend"), "the same on both sides: {doc}");
    assert_eq!(doc["count"], diffs.len());

    let out = atelier(&["env", "diff", "dev", "test"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("amqp.namespace") && text.contains("(environments/test.toml)"), "{text}");
    assert!(text.contains("key(s) differ"), "{text}");

    let same = atelier(&["env", "diff", "test", "test"], &[]);
    assert!(String::from_utf8_lossy(&same.stdout).contains("the same configuration"));
    let unknown = atelier(&["env", "diff", "staging", "prod"], &[]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("prod"));
}
