//! `atelier users` as an operator runs it: the first admin of a new studio
//! with its password on stdin, listing, disabling; JSON output.

use atelier_domain::testing::TestDb;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn atelier(args: &[&str], db: &TestDb, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.args(["--env", "test", "--output", "json"])
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("ATELIER__DATABASE__URL", format!("{:?}", db.url()))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run atelier");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("atelier output")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {} / {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

#[tokio::test]
async fn users_create_list_and_disable() {
    let db = TestDb::new().await;
    let out = atelier(
        &[
            "users",
            "create",
            "--email",
            "Owner@Studio.example",
            "--role",
            "admin",
            "--business-name",
            "Indigo Studio",
            "--password-stdin",
        ],
        &db,
        Some("s3cret-password\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret-password") && !text.contains("argon2"), "{text}");
    assert_eq!(doc["data"]["user"]["email"], "owner@studio.example");
    let business = doc["data"]["business"]["id"].as_i64().unwrap();
    let b = business.to_string();
    let out = atelier(
        &[
            "users",
            "create",
            "--email",
            "w@studio.example",
            "--role",
            "production_worker",
            "--business-id",
            &b,
            "--password-stdin",
        ],
        &db,
        Some("another-password\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // No terminal and no --password-stdin: refused, nothing created.
    let out = atelier(
        &["users", "create", "--email", "x@studio.example", "--role", "cashier", "--business-id", &b],
        &db,
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let out = atelier(
        &["users", "create", "--email", "y@studio.example", "--role", "root", "--business-id", &b, "--password-stdin"],
        &db,
        Some("whatever-pass\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let doc = json(&atelier(&["users", "list", "--business-id", &b], &db, None));
    assert_eq!(doc["count"], 2);
    let out = atelier(&["users", "disable", "--email", "w@studio.example"], &db, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["data"]["active"], false);
    let doc = json(&atelier(&["users", "list"], &db, None));
    assert_eq!(doc["data"][1]["active"], false, "{doc}");
}
