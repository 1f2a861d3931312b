//! What `atelier` writes, whoever reads it: a reader that closes stdout early
//! (`| head -1`) never makes it panic; `-v` tells on stderr what it does and
//! `-q` leaves stderr silent; usage errors exit 2, as JSON when asked.

mod support;

use atelier_domain::testing::TestDb;
use std::io::Read;
use std::process::{Command, Stdio};
use support::{atelier, json};

/// Runs `args` `times` times with stdout into a pipe closed after reading
/// nothing (even runs) or one byte (odd runs), and asserts each exit is
/// `code` with no panic on stderr.
fn survives_a_closed_pipe(args: &[&str], vars: &[(&str, &str)], code: i32, times: usize) {
    for run in 0..times {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
        cmd.args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env_remove("ATELIER_ENV")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run atelier");
        let mut stdout = child.stdout.take().expect("stdout piped");
        if run % 2 == 1 {
            let _ = stdout.read(&mut [0u8; 1]);
        }
        drop(stdout);
        let out = child.wait_with_output().expect("atelier ends");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?} run {run}: {err}");
        assert_eq!(out.status.code(), Some(code), "{args:?} run {run}: {err}");
    }
}

#[test]
fn read_only_commands_without_services_survive_a_closed_pipe() {
    let commands: &[&[&str]] = &[
        &["env", "list"],
        &["env", "list", "--output", "json"],
        &["env", "show"],
        &["env", "show", "--output", "json"],
        &["env", "diff", "dev", "production"],
        &["env", "diff", "dev", "production", "-o", "json"],
        &["-o", "json", "env", "show"],
        &["migrate", "lint", "--all"],
        &["migrate", "lint", "--all", "--output", "json"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["--help"],
        &["migrate", "lint", "--help"],
        &["--version"],
    ];
    for args in commands {
        let code = atelier(args, &[]).status.code().expect("an exit code");
        survives_a_closed_pipe(args, &[], code, 20);
    }
    // Failures print too: a usage error in JSON, a configuration error.
    survives_a_closed_pipe(&["-o", "json", "env", "lst"], &[], 2, 20);
    survives_a_closed_pipe(&["env", "show", "-o", "json"], &[("ATELIER__AMQP__PREFETCH", "many")], 3, 20);
}

#[tokio::test]
async fn read_only_commands_on_a_database_survive_a_closed_pipe() {
    let db = TestDb::new().await;
    let url = format!("{:?}", db.url());
    let vars = [("ATELIER__DATABASE__URL", url.as_str())];
    let commands: &[&[&str]] = &[
        &["--env", "test", "migrate", "status"],
        &["--env", "test", "migrate", "status", "-o", "json"],
        &["--env", "test", "dlq", "stats"],
        &["--env", "test", "dlq", "stats", "-o", "json"],
        &["--env", "test", "dlq", "list"],
        &["--env", "test", "dlq", "list", "-o", "json"],
        &["--env", "test", "webhooks", "urls"],
        &["--env", "test", "users", "list", "-o", "json"],
        &["--env", "test", "status"],
        &["--env", "test", "status", "-o", "json"],
    ];
    for args in commands {
        let first = atelier(args, &vars);
        assert!(first.status.success(), "{args:?}: {}", String::from_utf8_lossy(&first.stderr));
        survives_a_closed_pipe(args, &vars, 0, 20);
    }
}

#[tokio::test]
async fn verbose_tells_what_the_command_does_and_quiet_says_nothing() {
    let db = TestDb::new().await;
    let url = format!("{:?}", db.url());
    let vars = [("ATELIER__DATABASE__URL", url.as_str())];
    let plain = atelier(&["--env", "test", "migrate", "status"], &vars);
    assert!(plain.status.success());
    let verbose = atelier(&["--env", "test", "migrate", "status", "-v"], &vars);
    assert!(verbose.status.success());
    let (plain_err, verbose_err) =
        (String::from_utf8_lossy(&plain.stderr), String::from_utf8_lossy(&verbose.stderr).into_owned());
    assert!(verbose_err.len() > plain_err.len() && verbose_err.contains("DEBUG"), "{verbose_err}");
    assert!(verbose_err.contains(db.name()) && verbose_err.contains("ms"), "{verbose_err}");
    assert_eq!(plain.stdout, verbose.stdout, "-v changes stderr only");
    let very = atelier(&["--env", "test", "migrate", "status", "-vv"], &vars);
    assert!(very.status.success() && very.stderr.len() >= verbose.stderr.len());

    for args in
        [&["--env", "test", "migrate", "status", "-q"][..], &["-q", "env", "show"], &["-q", "migrate", "lint", "--all"]]
    {
        let quiet = atelier(args, &vars);
        assert!(quiet.status.success(), "{args:?}");
        assert!(quiet.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&quiet.stderr));
        assert!(!quiet.stdout.is_empty(), "{args:?}: -q keeps the result");
    }
}

#[test]
fn usage_errors_exit_2_and_are_json_when_asked() {
    for args in
        [&["env", "lst"][..], &["env", "list", "--limit", "3"], &["gate", "--expect-version", "1", "--wait", "x"]]
    {
        let text = atelier(args, &[]);
        assert_eq!(text.status.code(), Some(2), "{args:?}");
        assert!(text.stdout.is_empty());
        let mut with_json = args.to_vec();
        with_json.extend(["-o", "json"]);
        let out = atelier(&with_json, &[]);
        assert_eq!(out.status.code(), Some(2), "{with_json:?}");
        let doc = json(&out);
        assert_eq!(doc["success"], false);
        assert_eq!(doc["error"]["code"], "usage");
        assert_eq!(doc["error"]["exit_code"], 2);
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty() && !message.starts_with("error:") && !message.contains("Usage:"), "{message}");
    }
    let wait = atelier(&["gate", "--expect-version", "1", "--wait", "soon"], &[]);
    let err = String::from_utf8_lossy(&wait.stderr);
    assert!(err.contains("'soon' is not a duration") && err.contains("5m") && !err.contains("at 0"), "{err}");
    let short = atelier(&["-o", "json", "env", "list"], &[]);
    assert!(short.status.success());
    assert_eq!(json(&short)["success"], true);
}
