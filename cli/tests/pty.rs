//! `atelier` as a person uses it, in a pseudo-terminal (expectrl): the
//! confirmation prompt of a protected environment, the password prompt that
//! does not echo, and the progress bar of a long command.

mod support;

use atelier_domain::testing::TestDb;
use expectrl::{Eof, Session, WaitStatus};
use std::process::Command;
use std::time::Duration;

/// `atelier args` on a pseudo-terminal, from the repository root, with `vars`.
fn spawn(args: &[&str], vars: &[(&str, &str)]) -> Session {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.args(args).current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).env_remove("ATELIER_ENV");
    cmd.env("TERM", "xterm").env_remove("NO_COLOR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut session = Session::spawn(cmd).expect("spawn atelier on a pty");
    session.set_expect_timeout(Some(Duration::from_secs(90)));
    session
}

/// Waits for the session's end (after the last `expect`), and its exit code.
fn finish(session: &mut Session, seen: &mut String) -> i32 {
    let _ = session.expect(Eof);
    match session.get_process().wait().expect("exit status") {
        WaitStatus::Exited(_, code) => code,
        other => panic!("atelier did not exit normally: {other:?}\n{seen}"),
    }
}

/// Waits for `needle`, keeping what came before it (and it) in `seen`.
fn expect(session: &mut Session, needle: &str, seen: &mut String) {
    match session.expect(needle) {
        Ok(found) => {
            seen.push_str(&String::from_utf8_lossy(found.before()));
            seen.push_str(needle);
        }
        Err(e) => panic!("waiting for {needle:?}: {e}\nso far: {seen}"),
    }
}

/// A database name no one else uses, dropped at the end even on failure.
struct ScratchDb(String);

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.0))
            .output();
    }
}

#[test]
fn a_protected_environment_asks_for_its_name_and_long_work_shows_progress() {
    let db = ScratchDb(format!("atelier_pty_{}", uuid::Uuid::now_v7().simple()));
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", db.0);
    let vars = [
        ("ATELIER__DATABASE__URL", url.as_str()),
        ("ATELIER__DATABASE__CREATE_IF_MISSING", "true"),
        ("ATELIER__POLICY__CONFIRM_CHANGES", "true"),
    ];
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("up.sql").is_file()))
        .count();

    // A wrong answer: nothing applied, exit 6.
    let mut seen = String::new();
    let mut s = spawn(&["--env", "test", "migrate", "run"], &vars);
    expect(&mut s, "Type the environment's name to confirm: ", &mut seen);
    assert!(seen.contains(&format!("Apply {migrations} migration(s)")), "{seen}");
    s.send_line("production").unwrap();
    expect(&mut s, "was not confirmed", &mut seen);
    assert_eq!(finish(&mut s, &mut seen), 6, "{seen}");

    // The environment's name: applied, with a progress bar on the terminal.
    let mut seen = String::new();
    let mut s = spawn(&["--env", "test", "migrate", "run"], &vars);
    expect(&mut s, "Type the environment's name to confirm: ", &mut seen);
    s.send_line("test").unwrap();
    // The bar: its message and its count of the migrations.
    expect(&mut s, "migrating", &mut seen);
    expect(&mut s, &format!("/{migrations}"), &mut seen);
    expect(&mut s, &format!("{migrations} migration(s) applied"), &mut seen);
    assert_eq!(finish(&mut s, &mut seen), 0, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_prompt_does_not_echo() {
    let db = TestDb::new().await;
    let url = format!("{:?}", db.url());
    let vars = [("ATELIER__DATABASE__URL", url.as_str())];
    let password = format!("pw-{}", uuid::Uuid::now_v7().simple());
    let email = format!("pty-{}@studio.example", uuid::Uuid::now_v7().simple());
    let args = ["--env", "test", "users", "create", "--email", &email, "--role", "admin", "--business-name", "Pty"];

    let mut seen = String::new();
    let mut s = spawn(&args, &vars);
    expect(&mut s, "Password: ", &mut seen);
    s.send_line(&password).unwrap();
    expect(&mut s, "Again: ", &mut seen);
    s.send_line(&password).unwrap();
    expect(&mut s, &format!("created {email}"), &mut seen);
    assert_eq!(finish(&mut s, &mut seen), 0, "{seen}");
    assert!(!seen.contains(&password), "the password was echoed: {seen}");

    // Two different answers: refused, nothing created.
    let other = format!("pty2-{}@studio.example", uuid::Uuid::now_v7().simple());
    let args = ["--env", "test", "users", "create", "--email", &other, "--role", "admin", "--business-name", "Pty2"];
    let mut seen = String::new();
    let mut s = spawn(&args, &vars);
    expect(&mut s, "Password: ", &mut seen);
    s.send_line("one-password").unwrap();
    expect(&mut s, "Again: ", &mut seen);
    s.send_line("another-password").unwrap();
    expect(&mut s, "the passwords differ", &mut seen);
    assert_eq!(finish(&mut s, &mut seen), 1, "{seen}");
    assert!(!seen.contains("one-password") && !seen.contains("another-password"), "echoed: {seen}");
    let list = support::atelier(&["--env", "test", "users", "list", "-o", "json"], &vars);
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&other));
}
