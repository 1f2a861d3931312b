//! `atelier deploy`, `rollback`, `history` and `lock` with the process
//! driver: real atelierd releases (copies of this build, stamped with their
//! version), a real nginx, PostgreSQL and RabbitMQ. Each test is a stage of
//! its own (database, namespace, ports, nginx, releases and run directories),
//! so they run in parallel; its guard kills what it started and deletes its
//! namespace even when the test fails. Bad versions misbehave
//! deterministically through `ATELIER_TEST_FAULT` in their release's `env`.

mod support;

use atelier_domain::store::deploy;
use atelier_domain::testing::TestDb;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{delete_namespace, json};

/// A fixed token key, so both slots accept the same tokens.
const JWT_KEY: &str = "k1:c3RhZ2UtdGVzdC1rZXktYWJjZGVmZ2hpamtsbW5vcHFyc3R1dg==";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn atelierd() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_atelier")).with_file_name("atelierd");
    assert!(bin.is_file(), "{} is missing: build it first (cargo build -p atelier-daemon)", bin.display());
    bin
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')))
}

fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).stderr(Stdio::null()).status();
}

/// One environment to deploy to, and everything it started.
pub struct Stage {
    pub db: TestDb,
    ns: String,
    dir: PathBuf,
    pub proxy: String,
    vars: Vec<(String, String)>,
}

impl Stage {
    /// A stage whose deploy settings are `deploy` (key, value) over fast test defaults.
    pub async fn new(deploy: &[(&str, &str)]) -> Stage {
        let db = TestDb::new().await;
        let ns = format!("t-{}", uuid::Uuid::now_v7().simple());
        let dir = std::env::temp_dir().join(format!("atelier-deploy-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let proxy = format!("127.0.0.1:{}", free_port());
        let mut settings: Vec<(String, String)> = [
            ("releases", dir.join("releases").display().to_string()),
            ("run_dir", dir.join("run").display().to_string()),
            ("proxy_listen", proxy.clone()),
            ("blue_port", free_port().to_string()),
            ("green_port", free_port().to_string()),
            ("analysis", "2s".into()),
            ("ready_timeout", "60s".into()),
            ("canary_timeout", "60s".into()),
            ("drain_timeout", "30s".into()),
            ("lease_ttl", "30s".into()),
            ("heartbeat", "1s".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in deploy {
            settings.retain(|(key, _)| key != k);
            settings.push((k.to_string(), v.to_string()));
        }
        let mut vars: Vec<(String, String)> =
            settings.into_iter().map(|(k, v)| (format!("ATELIER__DEPLOY__{}", k.to_uppercase()), v)).collect();
        vars.extend([
            ("ATELIER__DATABASE__URL".to_owned(), db.url().expose()),
            ("ATELIER__AMQP__NAMESPACE".to_owned(), ns.clone()),
            ("ATELIER_SECRET_JWT_SIGNING_KEY".to_owned(), JWT_KEY.to_owned()),
            ("ATELIER_ACTOR".to_owned(), "ci".to_owned()),
        ]);
        Stage { db, ns, dir, proxy: format!("http://{proxy}"), vars }
    }

    /// `atelier --env test -o json ARGS`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
        cmd.args(["--env", "test", "--output", "json"])
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env_remove("ATELIER_ENV")
            .env_remove(atelier_cli_stall())
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run atelier")
    }

    /// Deploys `version` from this build (installed and stamped by `--artifact`).
    pub fn deploy(&self, version: &str) -> Output {
        self.deploy_with(version, &[])
    }

    /// Deploys `version` with deploy settings `overrides` for this command only.
    pub fn deploy_with(&self, version: &str, overrides: &[(&str, &str)]) -> Output {
        let bin = atelierd();
        let mut cmd = self.command(&["deploy", "--version", version, "--artifact", bin.to_str().unwrap()]);
        for (k, v) in overrides {
            cmd.env(format!("ATELIER__DEPLOY__{}", k.to_uppercase()), v);
        }
        cmd.output().expect("run atelier")
    }

    /// Makes release `version` misbehave: `ATELIER_TEST_FAULT=fault`.
    pub fn faulty(&self, version: &str, fault: &str) {
        let dir = self.dir.join("releases").join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("env"), format!("ATELIER_TEST_FAULT={fault}\n")).unwrap();
    }

    /// The exit code, or a panic showing what the command and the slots said.
    pub fn expect(&self, out: &Output, code: i32) -> Value {
        if out.status.code() != Some(code) {
            panic!(
                "expected exit {code}, got {:?}\nstdout: {}\nstderr: {}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
        json(out)
    }

    fn logs(&self) -> String {
        let mut t = String::new();
        for f in ["blue.log", "green.log", "nginx/error.log"] {
            let text = std::fs::read_to_string(self.dir.join("run").join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            t += &format!("--- {f}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        t
    }

    /// The current deployment as the database records it: (version, slot).
    pub async fn current(&self) -> Option<(String, String)> {
        let mut conn = self.db.db().conn().await.unwrap();
        deploy::current(&mut conn).await.unwrap().map(|d| (d.version, d.slot))
    }

    /// What the proxy answers: (version, slot) of the atelierd behind it.
    pub async fn behind_proxy(&self) -> Option<(String, String)> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let v: Value = client.get(format!("{}/version", self.proxy)).send().await.ok()?.json().await.ok()?;
        Some((v["version"].as_str()?.to_owned(), v["slot"].as_str()?.to_owned()))
    }

    fn pid(&self, file: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("run").join(file)).ok()?.trim().parse().ok()
    }

    /// Whether `slot`'s atelierd runs.
    pub fn running(&self, slot: &str) -> bool {
        self.pid(&format!("{slot}.pid")).is_some_and(alive)
    }
}

/// The stall variable's name (kept in one place with the CLI's).
fn atelier_cli_stall() -> &'static str {
    "ATELIER_DEPLOY_STALL_AT"
}

impl Drop for Stage {
    fn drop(&mut self) {
        for f in ["blue.pid", "green.pid"] {
            if let Some(pid) = self.pid(f) {
                kill(pid, "-KILL");
            }
        }
        if let Some(pid) = self.pid("nginx/nginx.pid") {
            kill(pid, "-QUIT");
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            kill(pid, "-KILL");
        }
        delete_namespace(&self.ns);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn steps(record: &Value) -> Vec<(String, String)> {
    record["data"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap().to_owned(), s["outcome"].as_str().unwrap().to_owned()))
        .collect()
}

fn pair(v: &str, s: &str) -> Option<(String, String)> {
    Some((v.to_owned(), s.to_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_v1_then_v2_then_rollback_each_recorded_and_shown_by_history() {
    let stage = Stage::new(&[]).await;
    let first = stage.expect(&stage.deploy("1.0.0"), 0);
    assert_eq!(first["data"]["deployment"]["status"], "succeeded", "{first}");
    let names: Vec<String> = steps(&first).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        names,
        ["lock", "preflight", "gate", "migrate", "start", "ready", "canary", "switch", "analysis", "drain", "record"]
    );
    assert_eq!(stage.behind_proxy().await, pair("1.0.0", "blue"));
    assert_eq!(stage.current().await, pair("1.0.0", "blue"));

    let second = stage.expect(&stage.deploy("2.0.0"), 0);
    assert!(steps(&second).iter().all(|(_, o)| o == "ok" || o == "skipped"), "{second}");
    assert_eq!(stage.behind_proxy().await, pair("2.0.0", "green"));
    assert_eq!(stage.current().await, pair("2.0.0", "green"));
    assert!(!stage.running("blue"), "the old slot was drained");
    assert!(stage.running("green"));

    let back = stage.expect(&stage.run(&["rollback"]), 0);
    assert_eq!(back["data"]["deployment"]["kind"], "rollback", "{back}");
    let back_steps = steps(&back);
    assert!(back_steps.contains(&("migrate".into(), "skipped".into())), "a rollback runs no migration: {back}");
    assert_eq!(stage.behind_proxy().await, pair("1.0.0", "blue"));
    assert_eq!(stage.current().await, pair("1.0.0", "blue"));
    assert!(!stage.running("green"));

    let history = stage.expect(&stage.run(&["history", "--limit", "10"]), 0);
    let rows: Vec<(String, String, String, String)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap().to_owned();
            (s("kind"), s("version"), s("slot"), s("status"))
        })
        .collect();
    let expected = [("rollback", "1.0.0", "blue"), ("deploy", "2.0.0", "green"), ("deploy", "1.0.0", "blue")];
    assert_eq!(rows.len(), 3, "{history}");
    for (row, (kind, version, slot)) in rows.iter().zip(expected) {
        assert_eq!(
            (row.0.as_str(), row.1.as_str(), row.2.as_str(), row.3.as_str()),
            (kind, version, slot, "succeeded")
        );
    }
    assert_eq!(history["data"][0]["actor"].as_str().unwrap().split('@').next(), Some("ci"));
}

/// Deploys 1.0.0, then `bad` (with `fault` and deploy settings `settings`),
/// which must fail at `step`; then the previous deployment is current again,
/// traffic is on it, and the bad slot is stopped.
async fn bad_version_rolls_back(fault: &str, step: &str, settings: &[(&str, &str)]) {
    let stage = Stage::new(&[]).await;
    stage.expect(&stage.deploy("1.0.0"), 0);
    let bad = format!("2.0.0-{fault}");
    stage.faulty(&bad, fault);
    let record = stage.expect(&stage.deploy_with(&bad, settings), 8);
    let d = &record["data"]["deployment"];
    assert_eq!(d["status"], "rolled_back", "{record}");
    assert_eq!(d["failed_step"], step, "{record}");
    assert!(record["data"]["error"].as_str().unwrap().contains(&format!("failed at step {step}")), "{record}");
    let journal = steps(&record);
    assert!(journal.contains(&(step.to_owned(), "failed".to_owned())), "{record}");
    assert!(journal.contains(&("undo:start".to_owned(), "undone".to_owned())), "{record}");
    // The invariant: a failed deployment never changes the current one.
    assert_eq!(stage.current().await, pair("1.0.0", "blue"));
    assert_eq!(stage.behind_proxy().await, pair("1.0.0", "blue"));
    assert!(!stage.running("green"), "the bad slot was stopped");
    assert!(stage.running("blue"));
    let history = stage.expect(&stage.run(&["history"]), 0);
    assert_eq!(history["data"][0]["failed_step"], step, "{history}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_never_gets_ready_rolls_back_at_the_ready_step() {
    bad_version_rolls_back("never_ready", "ready", &[("ready_timeout", "6s")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_whose_canary_is_not_handled_by_its_own_consumers_rolls_back_at_the_canary_step() {
    bad_version_rolls_back("drop_canaries", "canary", &[("canary_timeout", "6s")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_whose_5xx_rise_after_the_switch_rolls_back_at_analysis_and_traffic_returns() {
    // The first 5xx fails the analysis; 30 s is room for a loaded machine.
    bad_version_rolls_back("5xx", "analysis", &[("analysis", "30s")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_concurrent_deploy_is_refused_and_a_killed_one_is_taken_over_after_expiry_and_rolled_back() {
    let stage = Stage::new(&[("lease_ttl", "3s")]).await;
    stage.expect(&stage.deploy("1.0.0"), 0);
    // A deploy that stops at its canary, holding the lease.
    let bin = atelierd();
    let mut stalled = stage
        .command(&["deploy", "--version", "2.0.0", "--artifact", bin.to_str().unwrap()])
        .env(atelier_cli_stall(), "canary")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = stage.db.db().clone();
    atelier_domain::testing::eventually(Duration::from_secs(90), "the deploy of 2.0.0 to reach its canary", || {
        let db = db.clone();
        async move {
            let mut conn = db.conn().await.unwrap();
            match deploy::running(&mut conn).await.unwrap() {
                Some(d) => deploy::steps(&mut conn, d.id).await.unwrap().iter().any(|s| s.step == "canary"),
                None => false,
            }
        }
    })
    .await;
    assert!(stage.running("green"), "2.0.0 started in green");

    let refused = stage.run(&["deploy", "--version", "3.0.0"]);
    let doc = stage.expect(&refused, 7);
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("held by ci@") && message.contains("atelier deploy --version 2.0.0"), "{message}");

    stalled.kill().unwrap();
    stalled.wait().unwrap();
    // Its lease expires 3 s after its last heartbeat; until then, refused.
    let deadline = Instant::now() + Duration::from_secs(60);
    let resumed = loop {
        let out = stage.run(&["deploy", "--resume"]);
        if out.status.code() != Some(7) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let doc = stage.expect(&resumed, 0);
    assert!(doc["data"]["took_over"]["command"].as_str().unwrap().contains("2.0.0"), "{doc}");
    let reconciled = &doc["data"]["reconciled"]["deployment"];
    assert_eq!(reconciled["status"], "rolled_back", "{doc}");
    assert_eq!(reconciled["failed_step"], "canary", "{doc}");
    assert_eq!(stage.current().await, pair("1.0.0", "blue"));
    assert_eq!(stage.behind_proxy().await, pair("1.0.0", "blue"));
    assert!(!stage.running("green"));

    let status = stage.expect(&stage.run(&["lock", "status"]), 0);
    assert_eq!(status["data"]["held"], false, "{status}");
    let actions: Vec<&str> =
        status["data"]["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"taken_over") && actions.contains(&"refused"), "{actions:?}");
    // And the environment deploys again.
    stage.expect(&stage.deploy("3.0.0"), 0);
    assert_eq!(stage.behind_proxy().await, pair("3.0.0", "green"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maintenance_lock_refuses_deploys_until_released_and_a_dry_run_changes_nothing() {
    let stage = Stage::new(&[]).await;
    let held = stage.expect(&stage.run(&["lock", "acquire", "--message", "database maintenance", "--ttl", "10m"]), 0);
    assert_eq!(held["data"]["lease"]["message"], "database maintenance", "{held}");
    let refused = stage.expect(&stage.run(&["deploy", "--version", "1.0.0"]), 7);
    assert!(refused["error"]["message"].as_str().unwrap().contains("database maintenance"), "{refused}");

    let plan = stage.expect(&stage.run(&["deploy", "--version", "1.0.0", "--dry-run"]), 0);
    assert_eq!(plan["data"]["new_slot"], "blue", "{plan}");
    assert_eq!(plan["data"]["installed"], false, "{plan}");
    assert!(plan["data"]["lock"].as_str().unwrap().contains("database maintenance"), "{plan}");
    let mut conn = stage.db.db().conn().await.unwrap();
    assert!(deploy::history(&mut conn, 10).await.unwrap().is_empty(), "a dry run records nothing");
    assert!(!stage.running("blue"));

    let released = stage.expect(&stage.run(&["lock", "release"]), 0);
    assert_eq!(released["data"]["released"]["message"], "database maintenance", "{released}");
    let status = stage.expect(&stage.run(&["lock", "status"]), 0);
    assert_eq!(status["data"]["held"], false);
    let actions: Vec<&str> =
        status["data"]["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["released", "refused", "acquired"], "{status}");
}
