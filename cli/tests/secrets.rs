//! `atelier secrets`: the encrypted file's whole life through the real
//! binary (keygen, init, set, list, show, rotate, finish, history), clear
//! errors for a corrupt file and a wrong identity (exit 3), a rotation killed
//! mid-way and resumed or aborted, waiting for daemons, and a scan of every
//! output (with -v debug logs) for every value involved, in every encoding.

mod support;

use base64::Engine;
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory, removed on drop (even when the test fails).
struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let d = std::env::temp_dir().join(format!("atelier-cli-secrets-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An environment (`test`) whose secrets live in a file of this test, readable with its identity.
struct Env {
    dir: TempDir,
    vars: Vec<(String, String)>,
    /// Every stdout and stderr seen, for the leak scan.
    seen: Vec<String>,
}

impl Env {
    fn new(tag: &str) -> Env {
        let dir = TempDir::new(tag);
        let identity = dir.path("identity.txt");
        let out = support::atelier(&["secrets", "keygen", "--identity-file", &identity, "-o", "json"], &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let recipient = support::json(&out)["data"]["recipient"].as_str().unwrap().to_owned();
        assert!(recipient.starts_with("age1"), "{recipient}");
        let vars = vec![
            ("ATELIER__SECRETS__BACKEND".into(), "file".into()),
            ("ATELIER__SECRETS__FILE".into(), dir.path("test.secrets.json")),
            ("ATELIER__SECRETS__RECIPIENTS".into(), recipient),
            ("ATELIER_SECRETS_IDENTITY_FILE".into(), identity),
            ("ATELIER_ACTOR".into(), "alice".into()),
        ];
        Env { dir, vars, seen: Vec::new() }
    }

    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
        cmd.args(["--env", "test", "-v"])
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env_remove("ATELIER_ENV")
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied());
        cmd
    }

    /// Runs `atelier --env test -v ARGS` with `stdin` on its standard input.
    fn run_with(&mut self, args: &[&str], extra: &[(&str, &str)], stdin: &str) -> Output {
        let mut child = self
            .command(args, extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run atelier");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        self.seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
        self.seen.push(String::from_utf8_lossy(&out.stderr).into_owned());
        out
    }

    fn run(&mut self, args: &[&str]) -> Output {
        self.run_with(args, &[], "")
    }

    fn ok(&mut self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        support::json(&out)
    }

    fn file(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.0.join("test.secrets.json")).unwrap()).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stages(list: &Value, name: &str) -> Vec<(String, u64)> {
    let row = list["data"].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap();
    row["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["stage"].as_str().unwrap().to_owned(), v["version"].as_u64().unwrap()))
        .collect()
}

/// A value in every form it could leak in: itself, base64 (both alphabets), hex.
fn forms(value: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let mut out = vec![value.to_owned(), STANDARD.encode(value), URL_SAFE_NO_PAD.encode(value), hex::encode(value)];
    // A token key's own bytes (kid:base64key), in the same forms.
    if let Some((_, key)) = value.split_once(':')
        && let Ok(bytes) = STANDARD.decode(key)
    {
        out.extend([key.to_owned(), URL_SAFE_NO_PAD.encode(&bytes), hex::encode(&bytes)]);
    }
    out
}

#[test]
fn a_whole_rotation_of_each_kind_never_shows_a_value() {
    let mut env = Env::new("life");
    let init = env.ok(&["secrets", "init", "-o", "json"]);
    assert_eq!(init["data"]["created"][0], "jwt_signing_key");
    let list = env.ok(&["secrets", "list", "-o", "json"]);
    assert_eq!(stages(&list, "jwt_signing_key"), [("current".into(), 1)]);
    assert_eq!(list["data"][0]["kind"], "jwt_keys");
    assert!(list["data"][0]["due_at"].is_string() && list["data"][0]["overdue"] == false, "{list}");

    // external: set, then a pending value promoted after "testing" it.
    let (first, second) = ("ext-value-first-93c1", "ext-value-second-71ab");
    let out = env.run_with(&["secrets", "set", "meta_app_token", "--stdin", "-o", "json"], &[], &format!("{first}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(support::json(&out)["data"]["version"], 1);
    let out = env.run_with(
        &["secrets", "set", "meta_app_token", "--stage", "pending", "--stdin", "-o", "json"],
        &[],
        &format!("{second}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list = env.ok(&["secrets", "list", "-o", "json"]);
    assert_eq!(stages(&list, "meta_app_token"), [("current".into(), 1), ("pending".into(), 2)]);
    // rotate (without --promote) of an external secret says what to do instead.
    let refused = env.run(&["secrets", "rotate", "meta_app_token"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("--stage pending") && stderr(&refused).contains("--promote"),
        "{}",
        stderr(&refused)
    );
    let promoted = env.ok(&["secrets", "rotate", "meta_app_token", "--promote", "-o", "json"]);
    assert_eq!(promoted["data"]["stage"], "current");
    let list = env.ok(&["secrets", "list", "-o", "json"]);
    assert_eq!(stages(&list, "meta_app_token"), [("previous".into(), 1), ("current".into(), 2)]);
    env.ok(&["secrets", "finish", "meta_app_token", "-o", "json"]);

    // generated (token keys): pending first, accepted but not signing.
    let rotated = env.run_with(
        &["secrets", "rotate", "jwt_signing_key", "-o", "json"],
        &[("ATELIER__SECRETS__ACTIVATION_DELAY", "1h")],
        "",
    );
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let rotated = support::json(&rotated);
    assert_eq!((rotated["data"]["version"].as_u64(), rotated["data"]["stage"].as_str()), (Some(2), Some("pending")));
    assert!(rotated["data"]["activates_at"].is_string());
    let early = env.run(&["secrets", "finish", "jwt_signing_key"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(stderr(&early).contains("not current yet"), "{}", stderr(&early));
    // abort: the pending version goes, current is untouched.
    let aborted = env.ok(&["secrets", "rotate", "jwt_signing_key", "--abort", "-o", "json"]);
    assert_eq!(aborted["data"]["aborted"], 2);
    assert_eq!(stages(&env.ok(&["secrets", "list", "-o", "json"]), "jwt_signing_key"), [("current".into(), 1)]);
    // Again, with no activation delay: current at once, v1 previous.
    let out = env.run_with(
        &["secrets", "rotate", "jwt_signing_key", "-o", "json"],
        &[("ATELIER__SECRETS__ACTIVATION_DELAY", "0s")],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list = env.ok(&["secrets", "list", "-o", "json"]);
    assert_eq!(stages(&list, "jwt_signing_key"), [("previous".into(), 1), ("current".into(), 2)]);
    // finish waits for the longest token lifetime, unless --force (confirmed).
    let early = env.run(&["secrets", "finish", "jwt_signing_key"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(stderr(&early).contains("--force"), "{}", stderr(&early));
    let unconfirmed = env.run(&["secrets", "finish", "jwt_signing_key", "--force"]);
    assert_eq!(unconfirmed.status.code(), Some(6), "{}", stderr(&unconfirmed));
    env.ok(&["--yes", "secrets", "finish", "jwt_signing_key", "--force", "-o", "json"]);
    let show = env.ok(&["secrets", "show", "jwt_signing_key", "-o", "json"]);
    assert_eq!(show["data"]["versions"].as_array().unwrap().len(), 1);
    assert!(show["data"].get("value").is_none(), "{show}");

    // The audit trail: who, which version, which step; never a value.
    let history = env.ok(&["secrets", "history", "jwt_signing_key", "-o", "json"]);
    let steps: Vec<(String, Option<u64>)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["step"].as_str().unwrap().to_owned(), a["version"].as_u64()))
        .collect();
    let expected: Vec<(String, Option<u64>)> = [
        ("init", None),
        ("create", Some(1)),
        ("create", Some(2)),
        ("abort", Some(2)),
        ("create", Some(2)),
        ("activate", Some(2)),
        ("finish --force", Some(1)),
    ]
    .into_iter()
    .map(|(s, v)| (s.to_owned(), v))
    .collect();
    assert_eq!(steps, expected, "{history}");
    assert!(
        history["data"].as_array().unwrap().iter().filter(|a| a["step"] != "activate").all(|a| a["actor"] == "alice")
    );
    let text = env.run(&["secrets", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("meta_app_token"), "{}", stderr(&text));

    // Reveal: refused without a terminal or --yes, audited when done. Its outputs are the only ones with values.
    let refused = env.run(&["secrets", "show", "meta_app_token", "--reveal"]);
    assert_eq!(refused.status.code(), Some(6));
    let seen = env.seen.clone();
    let reveal = |env: &mut Env, name: &str| -> String {
        let doc = env.ok(&["--yes", "secrets", "show", name, "--reveal", "-o", "json"]);
        doc["data"]["value"].as_str().unwrap().to_owned()
    };
    assert_eq!(reveal(&mut env, "meta_app_token"), second);
    let jwt = reveal(&mut env, "jwt_signing_key");
    assert!(jwt.starts_with("k2-"), "a token key is kid:base64key");
    let history = env.ok(&["secrets", "history", "meta_app_token", "-o", "json"]);
    assert!(
        history["data"].as_array().unwrap().iter().any(|a| a["step"] == "reveal" && a["version"] == 2),
        "{history}"
    );

    // The leak scan: every output before the reveals, and the file itself.
    let file = std::fs::read_to_string(env.dir.0.join("test.secrets.json")).unwrap();
    assert!(seen.iter().any(|s| s.contains("DEBUG") || s.contains("done")), "-v logged something");
    for value in [first, second, jwt.as_str()] {
        for needle in forms(value) {
            for text in seen.iter().chain([&file]) {
                assert!(!text.contains(&needle), "a value leaked: {text}");
            }
        }
    }
}

#[test]
fn a_corrupt_file_a_wrong_identity_and_a_bad_recipient_are_clear_errors() {
    let mut env = Env::new("errors");
    env.ok(&["secrets", "init", "-o", "json"]);
    let other = env.dir.path("other.txt");
    env.ok(&["secrets", "keygen", "--identity-file", &other, "-o", "json"]);
    let expect = |out: Output, words: &[&str]| {
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let doc = support::json(&out);
        let message = doc["error"]["message"].as_str().unwrap().to_owned();
        assert!(words.iter().all(|w| message.contains(w)), "{message}");
    };
    // A wrong identity and none at all: say which variable and what to use.
    let wrong = env.run_with(
        &["--yes", "secrets", "show", "jwt_signing_key", "--reveal", "-o", "json"],
        &[("ATELIER_SECRETS_IDENTITY_FILE", &other)],
        "",
    );
    expect(wrong, &["wrong identity", "recipients"]);
    let mut cmd = env.command(&["--yes", "secrets", "show", "jwt_signing_key", "--reveal", "-o", "json"], &[]);
    let none = cmd.env_remove("ATELIER_SECRETS_IDENTITY_FILE").output().unwrap();
    expect(none, &["no identity", "ATELIER_SECRETS_IDENTITY_FILE"]);
    // An identity given in the variable itself works.
    let identity = std::fs::read_to_string(env.dir.0.join("identity.txt")).unwrap();
    let key = identity.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap().to_owned();
    let mut cmd = env.command(
        &["--yes", "secrets", "show", "jwt_signing_key", "--reveal", "-o", "json"],
        &[("ATELIER_SECRETS_IDENTITY", &key)],
    );
    assert!(cmd.env_remove("ATELIER_SECRETS_IDENTITY_FILE").output().unwrap().status.success());
    // A recipient that is not an age key.
    let bad = env.run_with(
        &["secrets", "rotate", "jwt_signing_key", "-o", "json"],
        &[("ATELIER__SECRETS__RECIPIENTS", "age1nope")],
        "",
    );
    expect(bad, &["not an age public key"]);
    // A corrupt file: where, and what to do; nothing written.
    let path = env.dir.0.join("test.secrets.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    expect(env.run(&["secrets", "list", "-o", "json"]), &["corrupt", "restore it"]);
    expect(env.run(&["secrets", "rotate", "jwt_signing_key", "-o", "json"]), &["corrupt"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text[..text.len() / 2]);
    // The env backend lists what the configuration names, and whether each variable is set.
    let listed = env.run_with(
        &["secrets", "list", "-o", "json"],
        &[
            ("ATELIER__SECRETS__BACKEND", "env"),
            ("ATELIER_SECRET_JWT_SIGNING_KEY", "k1:c2VjcmV0LXZhbHVlLW9mLXRoZS1lbnYtYmFja2VuZA=="),
        ],
        "",
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    let rows = support::json(&listed);
    let jwt = rows["data"].as_array().unwrap().iter().find(|r| r["name"] == "jwt_signing_key").unwrap().clone();
    assert_eq!((jwt["set"].as_bool(), jwt["variable"].as_str()), (Some(true), Some("ATELIER_SECRET_JWT_SIGNING_KEY")));
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("c2VjcmV0"), "no value in the list");
    // The env backend is read-only: say so.
    let env_backend =
        env.run_with(&["secrets", "rotate", "x", "-o", "json"], &[("ATELIER__SECRETS__BACKEND", "env")], "");
    expect(env_backend, &["read-only"]);
}

/// A stand-in for a daemon's /ready that reports `body` (a test double of our own endpoint's shape,
/// which `daemon/tests/secrets.rs` checks against a real atelierd). Stops with the test process.
fn fake_daemon(body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut stream = stream;
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rotation_killed_while_it_waits_for_the_daemons_is_resumed_or_aborted() {
    let mut env = Env::new("crash");
    env.ok(&["secrets", "init", "-o", "json"]);
    let lagging =
        fake_daemon(r#"{"status":"ready","secrets":[{"secret":"jwt_signing_key","current":1,"accepted":[1]}]}"#);
    // The rotation waits (up to 10 minutes) for a daemon that never loads v2: kill it there.
    let mut child = env
        .command(
            &["secrets", "rotate", "jwt_signing_key"],
            &[("ATELIER__SECRETS__DAEMONS", &lagging), ("ATELIER__SECRETS__DAEMON_WAIT", "10m")],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the pending version is written", || {
        env.file()["secrets"]["jwt_signing_key"]["versions"].as_array().unwrap().iter().any(|v| v["stage"] == "pending")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let path = env.dir.0.join("test.secrets.json");
    assert!(
        std::fs::read_dir(&env.dir.0).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
    );
    // Resumed: the same pending version, waited for again.
    let resumed = env.ok(&["secrets", "rotate", "jwt_signing_key", "-o", "json"]);
    assert_eq!((resumed["data"]["resumed"].as_bool(), resumed["data"]["version"].as_u64()), (Some(true), Some(2)));
    // A daemon that does not load it within daemon_wait is named (exit 5).
    let out = env.run_with(
        &["secrets", "rotate", "jwt_signing_key", "-o", "json"],
        &[("ATELIER__SECRETS__DAEMONS", &lagging), ("ATELIER__SECRETS__DAEMON_WAIT", "1s")],
        "",
    );
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let doc = support::json(&out);
    assert_eq!(doc["data"]["daemons_not_loaded"][0]["url"], lagging.as_str(), "{doc}");
    // One that has loaded it: rotate goes on.
    let loaded =
        fake_daemon(r#"{"status":"ready","secrets":[{"secret":"jwt_signing_key","current":1,"accepted":[1,2]}]}"#);
    let vars = [("ATELIER__SECRETS__DAEMONS", loaded.as_str()), ("ATELIER__SECRETS__DAEMON_WAIT", "60s")];
    let out = env.run_with(&["secrets", "rotate", "jwt_signing_key", "-o", "json"], &vars, "");
    assert!(out.status.success(), "{}", stderr(&out));
    // Or undone: current untouched.
    env.ok(&["secrets", "rotate", "jwt_signing_key", "--abort", "-o", "json"]);
    let versions = env.file()["secrets"]["jwt_signing_key"]["versions"].clone();
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    assert_eq!((versions[0]["stage"].as_str(), versions[0]["version"].as_u64()), (Some("current"), Some(1)));
    let mut text = String::new();
    std::fs::File::open(&path).unwrap().read_to_string(&mut text).unwrap();
    assert!(text.contains("\"step\": \"abort\""));
}

#[test]
fn list_says_when_a_secret_is_due_and_check_warns_when_it_is_overdue() {
    let mut env = Env::new("due");
    env.ok(&["secrets", "init", "-o", "json"]);
    let due = [("ATELIER__SECRETS__MAX_AGE__JWT_KEYS", "1s")];
    wait_for("the key is a second old", || {
        let out = env.command(&["secrets", "list", "-o", "json"], &due).output().unwrap();
        support::json(&out)["data"][0]["overdue"] == true
    });
    let out = env.run_with(&["secrets", "list"], &due, "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OVERDUE"), "{}", String::from_utf8_lossy(&out.stdout));
    // check: the secrets check passes with a warning (whatever the database and broker say).
    let nowhere = [
        due[0],
        ("ATELIER__DATABASE__URL", "postgres://postgres@127.0.0.1:1/x"),
        ("ATELIER__AMQP__URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
    ];
    let out = env.run_with(&["check", "-o", "json"], &nowhere, "");
    let doc = support::json(&out);
    let check = doc["data"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "secrets").unwrap().clone();
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["detail"].as_str().unwrap().contains("overdue for rotation: jwt_signing_key"), "{check}");
    // status: the store's dates beside each secret, even with the database and broker down.
    let out = env.run_with(&["status", "-o", "json"], &nowhere, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let secrets = support::json(&out)["data"]["secrets"].clone();
    assert_eq!(secrets["backend"], "file", "{secrets}");
    let key = secrets["secrets"].as_array().unwrap().iter().find(|r| r["name"] == "jwt_signing_key").unwrap().clone();
    assert_eq!(key["current_version"], 1, "{key}");
    assert!(key["last_rotated"].is_string(), "{key}");
    assert_eq!(key["overdue"], true, "{key}");
    let out = env.run_with(&["status"], &nowhere, "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("v1 rotated") && text.contains("OVERDUE"), "{text}");
}
