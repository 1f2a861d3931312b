//! Running the real `atelier` binary as a pipeline would: from the repository
//! root, no terminal on stdin, `ATELIER_ENV` unset, chosen variables set.

#![allow(dead_code)]

use serde_json::Value;
use std::process::{Command, Output};

pub fn atelier(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("ATELIER_ENV")
        .stdin(std::process::Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    output_within(cmd, std::time::Duration::from_secs(180))
}

/// Runs `cmd` to its end like `Command::output`, but kills it (and fails the
/// test, naming it) if it has not ended within `limit`: a hang is a failure
/// with a message, never a test run that never ends.
pub fn output_within(cmd: Command, limit: std::time::Duration) -> Output {
    output_with_input(cmd, None, limit)
}

/// [`output_within`], writing `input` (when given) to the command's stdin first.
pub fn output_with_input(mut cmd: Command, input: Option<&[u8]>, limit: std::time::Duration) -> Output {
    use std::io::{Read, Write};
    let shown = format!("{cmd:?}");
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    if input.is_some() {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().expect("run atelier");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(input);
    }
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for atelier") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output { status, stdout: out_reader.join().expect("stdout read"), stderr: err_reader.join().expect("stderr read") }
}

/// The JSON document on stdout.
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Deletes every queue and the two exchanges of RabbitMQ namespace `ns`.
pub fn delete_namespace(ns: &str) {
    let out = Command::new("rabbitmqctl").args(["list_queues", "-q", "name"]).output().expect("rabbitmqctl");
    for q in String::from_utf8_lossy(&out.stdout).lines().filter(|q| q.starts_with(&format!("{ns}."))) {
        let _ = Command::new("rabbitmqctl").args(["delete_queue", "-q", q]).output();
    }
    for x in ["events", "dead"] {
        let expr = format!(
            "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"{ns}.{x}\">>), false, <<\"test\">>)."
        );
        let _ = Command::new("rabbitmqctl").args(["eval", &expr]).output();
    }
}

/// Deletes RabbitMQ namespace `ns` when dropped, the test passing or not.
pub struct NamespaceGuard(pub String);

impl NamespaceGuard {
    /// A fresh namespace `t-<what>-<uuid>`.
    pub fn new(what: &str) -> NamespaceGuard {
        NamespaceGuard(format!("t-{what}-{}", uuid::Uuid::now_v7().simple()))
    }
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        delete_namespace(&self.0);
    }
}

/// atelierd serving HTTP only (port 0) on `db` with the test environment,
/// and its base URL.
pub async fn serve(db: &atelier_domain::testing::TestDb) -> (atelier_daemon::app::App, String) {
    use atelier_daemon::app::{App, Roles};
    let vars = vec![("ATELIER__DATABASE__URL".to_owned(), format!("{:?}", db.url()))];
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments"));
    let resolved = atelier_domain::config::load_with(&dir, "test", &vars).expect("test configuration");
    let app = App::start(resolved, Roles { http: true, events: false }).await.expect("atelierd starts");
    let url = format!("http://{}", app.http_addr.expect("HTTP is served"));
    (app, url)
}
