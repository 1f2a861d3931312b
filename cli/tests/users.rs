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

/// `users unlock` lifts a login lockout (account or address) and `users
/// enable` undoes `disable`; each is in the account audit with its actor.
#[tokio::test]
async fn users_unlock_and_enable_are_audited() {
    use atelier_domain::rules::lockout::{self, Limits};
    use atelier_domain::store::login_throttle;
    let db = TestDb::new().await;
    let out = atelier(
        &[
            "users",
            "create",
            "--email",
            "ann@studio.example",
            "--role",
            "admin",
            "--business-name",
            "Ann's",
            "--password-stdin",
        ],
        &db,
        Some("s3cret-password\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut conn = db.db().conn().await.unwrap();
    let limits = Limits {
        failures: 2,
        window: std::time::Duration::from_secs(600),
        duration: std::time::Duration::from_secs(600),
    };
    let now = chrono::Utc::now();
    let account = lockout::account_key("ann@studio.example");
    for _ in 0..2 {
        login_throttle::record_failure(&mut conn, &account, &limits, now).await.unwrap();
    }
    assert!(login_throttle::locked_for(&mut conn, std::slice::from_ref(&account), now).await.unwrap().is_some());

    let out = atelier(&["users", "unlock", "--email", "Ann@Studio.example", "--actor", "on-call"], &db, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["data"]["lifted"], true);
    assert!(login_throttle::locked_for(&mut conn, std::slice::from_ref(&account), now).await.unwrap().is_none());
    // Nothing left to lift: not an error, and it says so.
    let out = atelier(&["users", "unlock", "--email", "ann@studio.example", "--actor", "on-call"], &db, None);
    assert!(out.status.success());
    assert_eq!(json(&out)["data"]["lifted"], false);
    // An address, written as an operator would.
    let client = lockout::client_key("2001:db8::7");
    login_throttle::record_failure(&mut conn, &client, &limits, now).await.unwrap();
    let out = atelier(&["users", "unlock", "--client", " 2001:DB8:0::7 ", "--actor", "on-call"], &db, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["data"]["lifted"], true);
    // Usage errors: a malformed address, neither selector.
    assert_eq!(atelier(&["users", "unlock", "--client", "10.0.0"], &db, None).status.code(), Some(2));
    assert_eq!(atelier(&["users", "unlock"], &db, None).status.code(), Some(2));

    assert!(atelier(&["users", "disable", "--email", "ann@studio.example"], &db, None).status.success());
    let out = atelier(&["users", "enable", "--email", "ann@studio.example", "--actor", "on-call"], &db, None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["data"]["active"], true);
    assert_eq!(atelier(&["users", "enable", "--email", "nobody@studio.example"], &db, None).status.code(), Some(1));
    let audit = login_throttle::audit_of(&mut conn, &account).await.unwrap();
    let actions: Vec<(&str, &str)> = audit.iter().map(|a| (a.action.as_str(), a.actor.as_str())).collect();
    assert_eq!(actions[0], ("enable", "on-call"));
    assert_eq!(actions[1].0, "disable");
    assert_eq!(&actions[2..], [("unlock", "on-call"), ("unlock", "on-call")]);
    let help = Command::new(env!("CARGO_BIN_EXE_atelier")).args(["users", "unlock", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}
