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

/// A free port below the kernel's ephemeral range (32768 and up), so no
/// client connection of this busy machine holds it when a slot binds it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919) ^ (uuid::Uuid::now_v7().as_u128() as u16);
    for _ in 0..2000 {
        let port = 20000 + (seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(97))) % 12000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
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
    env: String,
    pub db: TestDb,
    ns: String,
    dir: PathBuf,
    pub proxy: String,
    vars: Vec<(String, String)>,
}

impl Stage {
    /// A stage whose deploy settings are `deploy` (key, value) over fast test defaults.
    pub async fn new(deploy: &[(&str, &str)]) -> Stage {
        Stage::of("test", None, deploy).await
    }

    /// A stage of environment `env` from `config_dir` (default: environments/).
    pub async fn of(env: &str, config_dir: Option<&Path>, deploy: &[(&str, &str)]) -> Stage {
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
        if let Some(config_dir) = config_dir {
            vars.push(("ATELIER_CONFIG_DIR".to_owned(), config_dir.display().to_string()));
        }
        Stage { env: env.to_owned(), db, ns, dir, proxy: format!("http://{proxy}"), vars }
    }

    /// `atelier --env ENV -o json ARGS`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
        cmd.args(["--env", &self.env, "--output", "json"])
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

async fn exec(stage: &Stage, sql: &str) {
    use diesel_async::RunQueryDsl;
    let mut conn = stage.db.db().conn().await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
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

    // A contract migration applied since 1.0.0 was deployed would break it.
    exec(
        &stage,
        "INSERT INTO atelier_migrations (version, name, up_sha256, down_sha256, phase, applied_by) \
         VALUES ('2099-01-01-000001', 'drop_legacy_column', 'x', 'x', 'contract', 'ci')",
    )
    .await;
    let refused = stage.expect(&stage.run(&["rollback"]), 5);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("2099-01-01-000001_drop_legacy_column"), "{message}");
    assert_eq!(stage.current().await, pair("2.0.0", "green"));
    exec(&stage, "DELETE FROM atelier_migrations WHERE version = '2099-01-01-000001'").await;

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
    // 10 s: a heartbeat late by seconds on a loaded machine keeps its lease.
    let stage = Stage::new(&[("lease_ttl", "10s")]).await;
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
    // Its lease expires 10 s after its last heartbeat; until then, refused.
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
    for other in [&["migrate", "run"][..], &["rollback"][..]] {
        let refused = stage.expect(&stage.run(other), 7);
        assert!(refused["error"]["message"].as_str().unwrap().contains("database maintenance"), "{refused}");
    }

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
    assert_eq!(actions, ["released", "refused", "refused", "refused", "acquired"], "{status}");
}

/// What a load run saw.
#[derive(Debug, Default)]
struct Load {
    requests: u64,
    writes: u64,
    failed: u64,
    failures: Vec<String>,
    seconds: f64,
}

/// Mixed load on `base` until `stop`: `workers` loops, each one request
/// every `pace` (one in four a sale, the rest reads), a new connection per
/// request (a client's keep-alive race with a proxy closing idle connections
/// is not what is measured here).
async fn load(base: String, token: String, product: i64, stop: tokio::sync::watch::Receiver<bool>) -> Load {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(0).build().unwrap();
    let started = Instant::now();
    let (workers, pace) = (16, Duration::from_millis(64));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (client, base, token, mut stop) = (client.clone(), base.clone(), token.clone(), stop.clone());
        tasks.spawn(async move {
            let mut seen = Load::default();
            let mut n: u64 = w;
            let mut next = Instant::now();
            while !*stop.borrow() {
                n += 1;
                let write = n.is_multiple_of(4);
                let req = if write {
                    client.post(format!("{base}/api/v1/sales")).json(&serde_json::json!({
                        "lines": [{"product_id": product, "quantity": 1}], "channel": "walk_in"
                    }))
                } else {
                    client.get(format!("{base}/api/v1/products"))
                };
                let outcome = req.bearer_auth(&token).send().await;
                seen.requests += 1;
                seen.writes += u64::from(write);
                match outcome {
                    Ok(res) if res.status().is_success() => {}
                    Ok(res) => {
                        seen.failed += 1;
                        seen.failures.push(format!("{} {}", res.status(), res.text().await.unwrap_or_default()));
                    }
                    Err(e) => {
                        seen.failed += 1;
                        seen.failures.push(e.to_string());
                    }
                }
                next += pace;
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = stop.changed() => {}
                }
            }
            seen
        });
    }
    let mut total = Load::default();
    while let Some(seen) = tasks.join_next().await {
        let seen = seen.unwrap();
        total.requests += seen.requests;
        total.writes += seen.writes;
        total.failed += seen.failed;
        total.failures.extend(seen.failures.into_iter().take(5));
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

async fn count(db: &atelier_domain::store::Db, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(sql).get_result::<N>(&mut conn).await.unwrap().n
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_downtime_no_request_failed_no_event_lost_or_doubled_across_a_deploy_and_a_rollback() {
    use atelier_domain::rules::permissions::Role;
    use atelier_domain::store::{products, tenancy};
    let stage = Stage::new(&[("analysis", "3s")]).await;
    stage.expect(&stage.deploy("1.0.0"), 0);
    let db = stage.db.db().clone();
    let tenant = atelier_domain::testing::business(&db, "Zero downtime studio").await;
    let product = {
        let mut c = db.conn().await.unwrap();
        let new = products::NewProduct {
            name: "Hand-dyed saree".into(),
            sku: None,
            unit_price_minor: 2500,
            requires_production: true,
        };
        let id = products::create(&mut c, tenant, new).await.unwrap().id;
        let hash = atelier_domain::auth::hash_password("deploy-test-password").unwrap();
        let user = tenancy::NewUser {
            email: "sre@zero.example",
            name: "sre",
            password_hash: &hash,
            role: Role::Admin,
            location_id: None,
        };
        tenancy::create_user(&mut c, tenant, user).await.unwrap();
        id
    };
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{}/api/v1/auth/login", stage.proxy))
        .json(&serde_json::json!({"email": "sre@zero.example", "password": "deploy-test-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["token"].as_str().unwrap_or_else(|| panic!("{login}")).to_owned();

    // The peer: the same load straight to the live slot, nothing deployed meanwhile.
    let blue =
        format!("http://127.0.0.1:{}", stage.vars.iter().find(|(k, _)| k == "ATELIER__DEPLOY__BLUE_PORT").unwrap().1);
    let (peer_stop, rx) = tokio::sync::watch::channel(false);
    let peer = tokio::spawn(load(blue, token.clone(), product, rx));
    tokio::time::sleep(Duration::from_secs(3)).await;
    peer_stop.send(true).unwrap();
    let peer = peer.await.unwrap();

    let (stop, rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(load(stage.proxy.clone(), token, product, rx));
    let stage = std::sync::Arc::new(stage);
    let s = stage.clone();
    let deployed = tokio::task::spawn_blocking(move || s.deploy("2.0.0")).await.unwrap();
    stage.expect(&deployed, 0);
    assert_eq!(stage.behind_proxy().await, pair("2.0.0", "green"));
    let s = stage.clone();
    let rolled = tokio::task::spawn_blocking(move || s.run(&["rollback"])).await.unwrap();
    stage.expect(&rolled, 0);
    assert_eq!(stage.behind_proxy().await, pair("1.0.0", "blue"));
    stop.send(true).unwrap();
    let seen = running.await.unwrap();

    let sales_sql = "SELECT count(*) AS n FROM sales";
    let orders_sql = "SELECT count(*) AS n FROM production_orders WHERE sale_id IS NOT NULL";
    let db2 = db.clone();
    atelier_domain::testing::eventually(Duration::from_secs(90), "a production order for every sale", || {
        let db = db2.clone();
        async move { count(&db, sales_sql).await == count(&db, orders_sql).await }
    })
    .await;
    let sales = count(&db, sales_sql).await;
    let orders = count(&db, orders_sql).await;
    let doubled = count(
        &db,
        "SELECT count(*) AS n FROM (SELECT sale_id FROM production_orders WHERE sale_id IS NOT NULL \
         GROUP BY sale_id HAVING count(*) > 1) d",
    )
    .await;
    println!(
        "zero downtime across a deploy and a rollback: {} requests ({} writes) in {:.1}s = {:.0} req/s through nginx, \
         {} failed; peer (same load straight to the slot, no deploy): {:.0} req/s; target 250 req/s \
         (16 × 1 per 64 ms); {sales} sales → {orders} production orders, {doubled} doubled",
        seen.requests,
        seen.writes,
        seen.seconds,
        seen.requests as f64 / seen.seconds,
        seen.failed,
        peer.requests as f64 / peer.seconds,
    );
    assert_eq!(seen.failed, 0, "failed requests: {:?}", seen.failures);
    assert_eq!(peer.failed, 0, "{:?}", peer.failures);
    assert!(seen.writes > 0 && sales as u64 >= seen.writes, "{sales} sales for {} writes", seen.writes);
    assert_eq!(orders, sales, "an event was lost");
    assert_eq!(doubled, 0, "an event was applied twice");
}

/// A deploy of `version` that stops once it has journaled the start of `step`.
fn stalled(stage: &Stage, version: &str, step: &str) -> std::process::Child {
    let bin = atelierd();
    stage
        .command(&["deploy", "--version", version, "--artifact", bin.to_str().unwrap()])
        .env(atelier_cli_stall(), step)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the running deployment has journaled the start of `step`.
async fn reached(stage: &Stage, step: &str) {
    let db = stage.db.db().clone();
    atelier_domain::testing::eventually(Duration::from_secs(90), &format!("the deploy to reach {step}"), || {
        let db = db.clone();
        async move {
            let mut conn = db.conn().await.unwrap();
            match deploy::running(&mut conn).await.unwrap() {
                Some(d) => deploy::steps(&mut conn, d.id).await.unwrap().iter().any(|s| s.step == step),
                None => false,
            }
        }
    })
    .await;
}

/// `deploy --resume` once the dead command's lease expired (refused, exit 7, until then).
async fn resume(stage: &Stage) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        let out = stage.run(&["deploy", "--resume"]);
        if out.status.code() != Some(7) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    stage.expect(&out, 0)
}

/// For each of `steps`: a deploy SIGKILLed once it reached the step, then
/// `deploy --resume`: finished when traffic was already on the new slot and
/// analysed (drain, record), else rolled back; never left running.
async fn killed_at_each_of(steps: &[&str]) {
    let stage = Stage::new(&[("lease_ttl", "3s")]).await;
    stage.expect(&stage.deploy("1.0.0"), 0);
    for step in steps {
        let (before, old) = stage.current().await.unwrap();
        let new = if old == "blue" { "green" } else { "blue" };
        let version = format!("2.0.0-{step}");
        let mut child = stalled(&stage, &version, step);
        reached(&stage, step).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let doc = resume(&stage).await;
        let d = &doc["data"]["reconciled"]["deployment"];
        assert_eq!(d["version"], version.as_str(), "{doc}");
        if matches!(*step, "drain" | "record") {
            assert_eq!(d["status"], "succeeded", "killed at {step}: {doc}");
            assert_eq!(stage.current().await, pair(&version, new), "killed at {step}");
            assert_eq!(stage.behind_proxy().await, pair(&version, new), "killed at {step}");
            assert!(!stage.running(&old), "killed at {step}: the old slot was drained");
        } else {
            assert_eq!(d["status"], "rolled_back", "killed at {step}: {doc}");
            assert_eq!(d["failed_step"], *step, "{doc}");
            assert!(d["error"].as_str().unwrap().contains("died"), "{doc}");
            assert_eq!(stage.current().await, pair(&before, &old), "killed at {step}");
            assert_eq!(stage.behind_proxy().await, pair(&before, &old), "killed at {step}");
            assert!(!stage.running(new), "killed at {step}: the new slot was stopped");
        }
        let mut conn = stage.db.db().conn().await.unwrap();
        assert!(deploy::running(&mut conn).await.unwrap().is_none(), "killed at {step}: nothing left running");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_killed_at_lock_preflight_gate_or_migrate_is_rolled_back_by_resume() {
    killed_at_each_of(&["lock", "preflight", "gate", "migrate"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_killed_at_start_ready_or_switch_is_rolled_back_by_resume() {
    killed_at_each_of(&["start", "ready", "switch"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_killed_at_analysis_is_rolled_back_and_at_drain_or_record_finished_by_resume() {
    killed_at_each_of(&["analysis", "drain", "record"]).await;
}

/// A configuration directory with `stg` (staging, on `staging_db`) and
/// `prd` (production: confirms changes, gates on stg) beside base and test.
fn two_environments(staging_db: &str) -> PathBuf {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../environments"));
    let dir = std::env::temp_dir().join(format!("atelier-envs-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["base.toml", "test.toml"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let test = std::fs::read_to_string(src.join("test.toml")).unwrap();
    let url = "url = \"postgres://postgres@127.0.0.1:5432/atelier_test\"";
    assert!(test.contains(url), "test.toml names its database");
    std::fs::write(dir.join("stg.toml"), test.replace(url, &format!("url = \"{staging_db}\""))).unwrap();
    let prd = test.replace("confirm_changes = false", "confirm_changes = true");
    assert_ne!(prd, test, "test.toml states confirm_changes");
    std::fs::write(dir.join("prd.toml"), format!("{prd}\n[deploy]\ngate_env = \"stg\"\nmin_soak = \"0s\"\n")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn production_refuses_a_version_staging_has_not_passed_and_asks_for_confirmation() {
    let staging = Stage::new(&[]).await;
    staging.expect(&staging.deploy("1.0.0"), 0);
    // Staging's gate on the deployment, each its own check.
    let gate = |extra: &[&str]| {
        let mut args = vec!["gate", "--url", staging.proxy.as_str(), "--deployment"];
        args.extend(extra);
        staging.run(&args)
    };
    let passed = staging.expect(&gate(&["--expect-version", "1.0.0", "--min-soak", "0s"]), 0);
    let names: Vec<&str> =
        passed["data"]["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["version", "ready", "deployed", "soak", "dead_letters", "retry_rate", "5xx_ratio", "canary"]);
    let young = staging.expect(&gate(&["--expect-version", "1.0.0", "--min-soak", "1h"]), 5);
    let soak = young["data"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "soak").unwrap().clone();
    assert_eq!(soak["ok"], false, "{young}");
    let dir = two_environments(&staging.db.url().expose());
    let production = Stage::of("prd", Some(&dir), &[]).await;

    let unconfirmed = production.expect(&production.deploy("1.0.0"), 6);
    assert!(unconfirmed["error"]["message"].as_str().unwrap().contains("--yes"), "{unconfirmed}");
    let mut conn = production.db.db().conn().await.unwrap();
    assert!(deploy::history(&mut conn, 10).await.unwrap().is_empty(), "nothing was done unconfirmed");

    let bin = atelierd();
    let deploy = |v: &str| production.run(&["--yes", "deploy", "--version", v, "--artifact", bin.to_str().unwrap()]);
    let refused = production.expect(&deploy("2.0.0"), 8);
    assert_eq!(refused["data"]["deployment"]["failed_step"], "gate", "{refused}");
    let reason = refused["data"]["error"].as_str().unwrap();
    assert!(reason.contains("2.0.0 was never deployed successfully in stg"), "{reason}");
    assert!(!production.running("blue"), "nothing was started");

    let passed = production.expect(&deploy("1.0.0"), 0);
    let gate = steps(&passed).into_iter().find(|(s, _)| s == "gate").unwrap();
    assert_eq!(gate.1, "ok", "{passed}");
    assert_eq!(production.behind_proxy().await, pair("1.0.0", "blue"));
    let _ = std::fs::remove_dir_all(&dir);
}
