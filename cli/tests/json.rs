//! Every subcommand's `--output json`: the command tree is read from the
//! binary's own `--help`, each leaf command must have a row in [`ROWS`], and
//! each row runs against a real database and broker and must print one JSON
//! document with a boolean `success` (true when it exits 0). A command added
//! without a row fails `every_command_has_a_json_row`, naming it.

mod support;

use atelier_domain::testing::TestDb;
use std::process::{Command, Stdio};
use support::{NamespaceGuard, output_with_input};

/// The subcommand names listed under "Commands:" in `atelier PATH --help`.
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    let out = support::atelier(&args, &[]);
    assert!(out.status.success(), "{args:?}");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some((_, commands)) = help.split_once("Commands:\n") else { return Vec::new() };
    commands
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

/// Every leaf command path ("dlq replay", "check", ...).
fn leaves(path: Vec<String>, out: &mut Vec<String>) {
    let borrowed: Vec<&str> = path.iter().map(String::as_str).collect();
    let subs = subcommands(&borrowed);
    if subs.is_empty() {
        out.push(path.join(" "));
    }
    for s in subs {
        let mut p = path.clone();
        p.push(s);
        leaves(p, out);
    }
}

/// What a row's run gets on stdin.
const NO_INPUT: &str = "";

/// (command path, arguments after `--env test -o json`, stdin). `{email}`,
/// `{dir}` are replaced per run. `completions` prints a shell script, never
/// JSON: its row is `None`.
const ROWS: &[(&str, Option<&[&str]>, &str)] = &[
    ("env list", Some(&["env", "list"]), NO_INPUT),
    ("env show", Some(&["env", "show"]), NO_INPUT),
    ("env diff", Some(&["env", "diff", "dev", "test"]), NO_INPUT),
    ("check", Some(&["check"]), NO_INPUT),
    ("status", Some(&["status"]), NO_INPUT),
    ("gate", Some(&["gate", "--expect-version", "0.0.0", "--url", "http://127.0.0.1:1"]), NO_INPUT),
    ("migrate status", Some(&["migrate", "status"]), NO_INPUT),
    ("migrate plan", Some(&["migrate", "plan"]), NO_INPUT),
    ("migrate lint", Some(&["migrate", "lint", "--all"]), NO_INPUT),
    ("migrate run", Some(&["migrate", "run"]), NO_INPUT),
    ("migrate repair", Some(&["migrate", "repair", "--yes"]), NO_INPUT),
    ("migrate rollback", Some(&["migrate", "rollback", "--yes"]), NO_INPUT),
    ("migrate new", Some(&["migrate", "new", "json_probe", "--dir", "{dir}"]), NO_INPUT),
    ("topology apply", Some(&["topology", "apply"]), NO_INPUT),
    ("topology verify", Some(&["topology", "verify"]), NO_INPUT),
    ("dlq stats", Some(&["dlq", "stats"]), NO_INPUT),
    ("dlq list", Some(&["dlq", "list"]), NO_INPUT),
    ("dlq show", Some(&["dlq", "show", "999999"]), NO_INPUT),
    ("dlq replay", Some(&["dlq", "replay", "--all", "--dry-run"]), NO_INPUT),
    ("dlq archive", Some(&["dlq", "archive", "--all"]), NO_INPUT),
    ("dlq restore", Some(&["dlq", "restore", "--all"]), NO_INPUT),
    ("dlq purge", Some(&["dlq", "purge", "--all", "--yes"]), NO_INPUT),
    (
        "users create",
        Some(&[
            "users",
            "create",
            "--email",
            "{email}",
            "--role",
            "admin",
            "--business-name",
            "Json",
            "--password-stdin",
        ]),
        "a-long-enough-password\n",
    ),
    ("users list", Some(&["users", "list"]), NO_INPUT),
    ("users disable", Some(&["users", "disable", "--email", "{email}"]), NO_INPUT),
    ("users enable", Some(&["users", "enable", "--email", "{email}"]), NO_INPUT),
    ("users unlock", Some(&["users", "unlock", "--email", "{email}"]), NO_INPUT),
    // The test environment reads its secrets from variables (the env
    // backend): the file-store commands answer exit 3 in JSON, keygen works.
    ("secrets keygen", Some(&["secrets", "keygen", "--identity-file", "{dir}/json.age"]), NO_INPUT),
    ("secrets init", Some(&["secrets", "init"]), NO_INPUT),
    ("secrets list", Some(&["secrets", "list"]), NO_INPUT),
    ("secrets set", Some(&["secrets", "set", "json_probe", "--kind", "external", "--stdin"]), "a-value\n"),
    ("secrets show", Some(&["secrets", "show", "json_probe"]), NO_INPUT),
    ("secrets rotate", Some(&["secrets", "rotate", "json_probe"]), NO_INPUT),
    ("secrets finish", Some(&["secrets", "finish", "json_probe"]), NO_INPUT),
    ("secrets history", Some(&["secrets", "history", "json_probe"]), NO_INPUT),
    ("deploy", Some(&["deploy", "--version", "9.9.9", "--dry-run"]), NO_INPUT),
    ("rollback", Some(&["rollback", "--yes"]), NO_INPUT),
    ("history", Some(&["history"]), NO_INPUT),
    ("lock status", Some(&["lock", "status"]), NO_INPUT),
    ("lock acquire", Some(&["lock", "acquire", "--message", "json probe", "--ttl", "1m"]), NO_INPUT),
    ("lock release", Some(&["lock", "release"]), NO_INPUT),
    ("webhooks urls", Some(&["webhooks", "urls"]), NO_INPUT),
    ("completions", None, NO_INPUT),
    ("manpages", Some(&["manpages", "{dir}"]), NO_INPUT),
];

#[test]
fn every_command_has_a_json_row() {
    let mut all = Vec::new();
    leaves(Vec::new(), &mut all);
    assert!(all.len() > 20, "{all:?}");
    let missing: Vec<&String> = all.iter().filter(|p| !ROWS.iter().any(|(r, _, _)| r == p)).collect();
    assert!(missing.is_empty(), "commands without a row in cli/tests/json.rs (add one): {missing:?}");
    let stale: Vec<&str> = ROWS.iter().map(|r| r.0).filter(|r| !all.iter().any(|p| p == r)).collect();
    assert!(stale.is_empty(), "rows of cli/tests/json.rs for commands that do not exist: {stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_one_json_document() {
    let db = TestDb::new().await;
    let ns = NamespaceGuard::new("cli-json");
    let url = format!("{:?}", db.url());
    let email = format!("json-{}@studio.example", uuid::Uuid::now_v7().simple());
    let dir = std::env::temp_dir().join(format!("atelier-json-man-{}", uuid::Uuid::now_v7().simple()));
    let dir_s = dir.to_string_lossy().into_owned();
    let mut failures = Vec::new();
    for (path, args, input) in ROWS {
        let Some(args) = args else { continue };
        let args: Vec<String> = args.iter().map(|a| a.replace("{email}", &email).replace("{dir}", &dir_s)).collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
        cmd.args(["--env", "test", "-o", "json"])
            .args(&args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env_remove("ATELIER_ENV")
            .env("ATELIER__DATABASE__URL", &url)
            .env("ATELIER__AMQP__NAMESPACE", &ns.0)
            .env("ATELIER__HTTP__PUBLIC_BASE_URL", "https://json.example");
        let input = (!input.is_empty()).then_some(input.as_bytes());
        if input.is_none() {
            cmd.stdin(Stdio::null());
        }
        let out = output_with_input(cmd, input, std::time::Duration::from_secs(180));
        let code = out.status.code();
        match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            Ok(doc) => match doc["success"].as_bool() {
                Some(ok) if ok == (code == Some(0)) => {}
                Some(ok) => failures.push(format!("{path}: success {ok} but exit {code:?}")),
                None => failures.push(format!("{path}: no boolean success: {doc}")),
            },
            Err(e) => failures.push(format!(
                "{path} ({code:?}): stdout is not one JSON document ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
