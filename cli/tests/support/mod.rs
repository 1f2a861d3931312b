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
    cmd.output().expect("run atelier")
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
